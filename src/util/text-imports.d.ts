/** Files the dashboards (src/daemon/dashboard, src/registry/dashboard) embed as text (Bun's `import x from "…" with { type: "text" }`); .html is typed by @types/bun (as a bundle: server.ts casts it). */
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "*/page.js" {
  const text: string;
  export default text;
}
declare module "uplot/dist/uPlot.iife.min.js" {
  const text: string;
  export default text;
}
