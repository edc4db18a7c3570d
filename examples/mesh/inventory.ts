/**
 * Inventory service of the REST mesh, on Pilot port 80.
 *
 *   bun examples/mesh/inventory.ts
 *
 *   GET /api/inventory               -> every item
 *   GET /api/inventory/check?sku=ID  -> {"sku","available","count"}, or 404 {"error":"sku not found"}
 */
import type http from "node:http";
import { connectToDaemon, serveOrExit, logRequests, sendJson, stopOnSignal } from "../common.ts";

export interface InventoryItem {
  sku: string;
  name: string;
  available: number;
}

export const inventory: InventoryItem[] = [
  { sku: "gpu-a100", name: "GPU Cluster Hours (A100)", available: 48 },
  { sku: "dataset-01", name: "ImageNet License", available: 999 },
  { sku: "train-spot", name: "Spot Training Instance", available: 12 },
];

export function inventoryService(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://pilot");
  if (url.pathname === "/api/inventory") {
    sendJson(res, 200, inventory);
  } else if (url.pathname === "/api/inventory/check") {
    const item = inventory.find((i) => i.sku === url.searchParams.get("sku"));
    if (item) sendJson(res, 200, { sku: item.sku, available: item.available > 0, count: item.available });
    else sendJson(res, 404, { error: "sku not found" });
  } else {
    sendJson(res, 404, { error: "not found" });
  }
}

if (import.meta.main) {
  const pilot = await connectToDaemon();
  const server = await serveOrExit(pilot, 80, logRequests("inventory", inventoryService));
  console.log(`inventory service listening on pilot port ${server.port} (${pilot.address})`);
  stopOnSignal("inventory", async () => {
    await server.close();
    await pilot.close();
  });
}
