// The rendezvous operator page: polls /api/stats every 2 s. Aggregate counts only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let last = null;
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }
  function set(id, v) { $(id).textContent = String(v); }
  async function poll() {
    try {
      const r = await fetch("/api/stats", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const s = await r.json();
      const now = Date.now();
      set("nodes-online", s.nodes.online);
      set("nodes-active", s.nodes.active);
      set("nodes-total", s.nodes.total);
      set("registry-connections", s.registry.connections);
      set("registry-requests", s.registry.requests);
      set("registry-rate", last ? ((s.registry.requests - last.requests) / ((now - last.at) / 1000)).toFixed(1) : "-");
      set("beacon-registered", s.beacon.registered);
      set("beacon-registrations", s.beacon.registrations);
      set("beacon-punches", s.beacon.punches);
      set("relay-frames", s.beacon.relayed_frames);
      set("relay-bytes", bytes(s.beacon.relayed_bytes));
      set("relay-refused", s.beacon.relay_refused + " / " + s.beacon.relay_rate_limited);
      last = { requests: s.registry.requests, at: now };
      $("live").dataset.state = "live";
      $("live").textContent = "live · updated " + new Date(now).toLocaleTimeString();
      document.body.dataset.ready = "true";
    } catch (e) {
      $("live").dataset.state = "error";
      $("live").textContent = "not answering (" + e.message + "); retrying";
    }
    setTimeout(poll, 2000);
  }
  poll();
})();
