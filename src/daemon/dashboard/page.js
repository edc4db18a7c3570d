// The dashboard page's script: polls /api/state every second and redraws the
// page from it. Served as-is (no build step). Every value from the daemon goes
// into the page as text (textContent), never as HTML: event data and hostnames
// come from other nodes.
"use strict";
(function () {
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);
  const plots = { throughput: null, rtt: null, rttKey: "" };

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function bytes(n) {
    if (typeof n !== "number") return "-";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }
  const rate = (n) => (typeof n === "number" ? bytes(Math.round(n)) + "/s" : "-");
  const ms = (n) => (typeof n === "number" ? n.toFixed(n < 10 ? 2 : 1) + " ms" : "-");
  const time = (t) => (typeof t === "number" ? new Date(t).toLocaleTimeString() : "-");
  function duration(s) {
    if (typeof s !== "number") return "-";
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return d ? d + "d " + h + "h" : h ? h + "h " + m + "m" : m ? m + "m " + (s % 60) + "s" : s + "s";
  }

  function facts(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v, id] of pairs) {
      dl.appendChild(el("dt", k));
      const dd = el("dd", v);
      if (id) dd.id = id;
      dl.appendChild(dd);
    }
  }

  function rows(tbody, list, cells, empty, key) {
    tbody.replaceChildren();
    if (!list.length) {
      const tr = el("tr", null, "empty");
      const td = el("td", empty);
      td.colSpan = tbody.parentElement.querySelectorAll("th").length;
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    for (const item of list) {
      const tr = el("tr");
      if (key) tr.dataset.address = key(item);
      for (const c of cells(item)) {
        const td = Array.isArray(c) ? el("td", c[0], c[1]) : el("td", c);
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }

  function renderNode(n) {
    if (!n) return;
    $("node-title").textContent = (n.hostname || "(no hostname)") + "  " + n.address + "  " + (n.public ? "public" : "private");
    facts($("node-facts"), [
      ["Address", n.address, "node-address"],
      ["Hostname", n.hostname || "-"],
      ["Visibility", n.public ? "public" : "private"],
      ["Tags", (n.tags || []).join(", ") || "-"],
      ["Tunnel", "udp " + n.endpoint],
      ["Seen by beacon", n.observed_endpoint || "-"],
      ["Registry", n.registry + (n.registry_connected ? " (connected)" : " (unreachable)")],
      ["Uptime", duration(n.uptime_secs)],
      ["Version", n.version],
      ["Tunnel peers", n.peers],
      ["Connections", n.connections],
      ["Sent", bytes(n.bytes_sent), "node-sent"],
      ["Received", bytes(n.bytes_recv), "node-recv"],
    ]);
  }

  function renderPeers(s) {
    rows($("peers").tBodies[0], s.peers, (p) => [
      p.hostname || "node " + p.node_id,
      p.address,
      p.session ? ["online (connected)", "state-online"] : p.online === true ? ["online", "state-online"] : p.online === false ? ["offline" + (p.last_seen ? ", seen " + time(p.last_seen) : ""), "state-offline"] : ["unknown", "state-unknown"],
      p.path,
      p.endpoint || "-",
      [ms(p.rtt_ms), "num"],
      [bytes(p.bytes_sent), "num peer-sent"],
      [bytes(p.bytes_recv), "num peer-recv"],
    ], "No trusted peers yet: pilot handshake NODE \"why\"", (p) => p.address);
    for (const tr of $("peers").tBodies[0].rows) {
      const p = s.peers.find((x) => x.address === tr.dataset.address);
      if (p) { tr.dataset.bytesSent = String(p.bytes_sent); tr.dataset.bytesRecv = String(p.bytes_recv); }
    }
    const notes = [];
    if (s.peers_total > s.peers.length) notes.push("Showing " + s.peers.length + " of " + s.peers_total + " trusted peers (those with a tunnel first): pilot status --json has all.");
    if (s.other_tunnel_peers > 0) notes.push(s.other_tunnel_peers + " untrusted tunnel peer(s) (see pilot peers).");
    notes.push("Connected: a tunnel session is up. Otherwise online/offline is the registry's (a heartbeat in the last 90 s), asked every 30 s for up to 20 peers.");
    $("peers-note").textContent = notes.join(" ");
  }

  function renderTrust(s) {
    rows($("pending").tBodies[0], s.pending, (p) => [p.hostname || "node " + p.node_id, p.address, p.reason || "", time(p.received_at)], "No requests waiting", (p) => p.address);
    $("outgoing").textContent = s.outgoing.length ? "Waiting for approval by: " + s.outgoing.map((o) => o.address).join(", ") : "";
  }

  function renderServices(sv) {
    const pairs = [];
    const m = sv.messages, f = sv.files, t = sv.tasks, ps = sv.pubsub;
    pairs.push(["Messages", m ? m.inbox + " in inbox (" + m.unread + " unread, " + bytes(m.inbox_bytes) + "), " + m.outbox_queued + " queued out, " + m.outbox_failed + " failed" : "off"]);
    pairs.push(["Files", f ? f.received + " received (" + bytes(f.received_bytes) + "), " + f.partial + " partial, " + f.transfers + " in transfer" : "off"]);
    pairs.push(["Tasks", t ? t.active + " active of " + t.limit + " (" + t.queued + " queued, " + t.accepted + " accepted, " + t.running + " running)" : "off"]);
    pairs.push(["Pub/sub", ps ? ps.connections + " connections, " + ps.subscriptions + " subscriptions, " + bytes(ps.queued_bytes) + " queued" : "off"]);
    facts($("services"), pairs);
  }

  function renderExposes(list) {
    rows($("exposes").tBodies[0], list || [], (x) => [x.port, x.target, x.active ? "active" : "inactive" + (x.error ? ": " + x.error : ""), [x.connections, "num"], [bytes(x.bytes_in), "num"], [bytes(x.bytes_out), "num"]], list ? "No exposed ports (pilot expose PORT --to HOST:PORT)" : "unknown");
  }

  function renderGateway(g) {
    rows($("gateway").tBodies[0], g ? g.mappings : [], (m) => [
      m.local_ip,
      (m.hostname ? m.hostname + " " : "") + m.pilot_addr,
      m.ports.map((p) => (m.secure_ports.includes(p) ? p + " (secure)" : String(p))).join(", "),
      [m.connections, "num"],
      [bytes(m.bytes_up), "num"],
      [bytes(m.bytes_down), "num"],
    ], g ? "No mappings (pilot gateway map AGENT)" : "No gateway running for this node (pilot gateway map AGENT starts one)", (m) => m.pilot_addr);
    $("gateway-note").textContent = g ? "Gateway pid " + g.pid + ", subnet " + g.subnet + (g.total > g.mappings.length ? "; showing " + g.mappings.length + " of " + g.total + " (pilot gateway list)" : "") : "";
  }

  function renderEvents(events) {
    const ol = $("events");
    ol.replaceChildren();
    if (!events.length) ol.appendChild(el("li", "No events yet", "note"));
    for (const e of events) {
      const li = el("li");
      li.appendChild(el("span", time(e.time), "time"));
      li.appendChild(el("span", e.type, "type"));
      li.appendChild(el("span", e.text));
      ol.appendChild(li);
    }
  }

  function plotWidth(id) {
    return Math.max(300, $(id).clientWidth || 600);
  }

  function renderPlots(h) {
    if (typeof uPlot !== "function") return;
    const axes = (label, fmt) => [
      { stroke: "#8a96a3", grid: { stroke: "#2a323c" } },
      { stroke: "#8a96a3", grid: { stroke: "#2a323c" }, label, size: 90, values: (u, vals) => vals.map(fmt) },
    ];
    const tData = [h.t, h.tx, h.rx];
    if (!plots.throughput) {
      plots.throughput = new uPlot({
        width: plotWidth("plot-throughput"), height: 180, title: "Tunnel throughput",
        series: [{}, { label: "sent", stroke: "#58a6ff", value: (u, v) => rate(v) }, { label: "received", stroke: "#3fb950", value: (u, v) => rate(v) }],
        axes: axes("bytes/s", (v) => bytes(v)),
      }, tData, $("plot-throughput"));
    } else plots.throughput.setData(tData);

    const key = h.rtt.map((r) => r.address).join(",");
    const rData = [h.t, ...h.rtt.map((r) => r.values)];
    if (plots.rtt && plots.rttKey !== key) { plots.rtt.destroy(); plots.rtt = null; }
    if (!plots.rtt) {
      const colors = ["#d29922", "#bc8cff", "#39c5cf", "#f778ba"];
      plots.rtt = new uPlot({
        width: plotWidth("plot-rtt"), height: 180, title: "RTT to peers",
        series: [{}, ...h.rtt.map((r, i) => ({ label: r.label, stroke: colors[i % colors.length], spanGaps: true, value: (u, v) => ms(v) }))],
        axes: axes("ms", (v) => v + " ms"),
      }, rData, $("plot-rtt"));
      plots.rttKey = key;
    } else plots.rtt.setData(rData);
  }

  function render(s) {
    renderNode(s.node);
    renderPeers(s);
    renderTrust(s);
    renderServices(s.services || {});
    renderExposes(s.exposes);
    renderGateway(s.gateway);
    renderEvents(s.events || []);
    renderPlots(s.history);
    $("errors").textContent = (s.errors || []).join("; ");
    const live = $("live");
    live.dataset.state = "live";
    live.dataset.generatedAt = String(s.generated_at);
    live.textContent = "live · updated " + time(s.generated_at);
    document.body.dataset.ready = "true";
  }

  async function poll() {
    try {
      const r = await fetch("/api/state", { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) {
        $("live").dataset.state = "error";
        $("live").textContent = "not authorized: open the address `pilot dashboard` prints";
        return; // polling again would only repeat the 401
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
    } catch (e) {
      $("live").dataset.state = "error";
      $("live").textContent = "daemon not answering (" + e.message + "); retrying";
    }
    setTimeout(poll, POLL_MS);
  }

  window.addEventListener("resize", () => {
    if (plots.throughput) plots.throughput.setSize({ width: plotWidth("plot-throughput"), height: 180 });
    if (plots.rtt) plots.rtt.setSize({ width: plotWidth("plot-rtt"), height: 180 });
  });
  poll();
})();
