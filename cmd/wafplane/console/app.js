// wafplane console: reads the admin endpoint's JSON every few seconds and renders it. It
// never changes anything. Every value from the server is inserted as text (textContent,
// never innerHTML): the events show attack payloads all day.

const REFRESH_MS = 3000;
const state = { gateway: "", window: "15", eventFilter: null, selectedEvent: null, overview: null };

// el builds an element; string and number children become text nodes.
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "9", class: "muted" }, empty))]));
}

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (r.status === 404) return null; // not served by this command
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

const when = (t) => (t && !t.startsWith("0001") ? new Date(t).toLocaleString() : "");

function renderGateways(snap, inj, sourceKind) {
  const tbody = document.querySelector('[data-testid="gateways"] tbody');
  const rows = [];
  for (const g of snap?.gateways ?? []) {
    rows.push(el("tr", { class: g.error ? "bad" : "", "data-gateway": g.gateway },
      el("td", {}, g.gateway), el("td", {}, sourceKind), el("td", {}, g.mode ?? ""),
      el("td", {}, g.listeners ?? ""), el("td", {}, g.routes ?? ""), el("td", {}, when(g.publishedAt)),
      el("td", { class: "bad" }, g.error ?? "")));
  }
  for (const g of inj?.gateways ?? []) {
    const name = `${g.namespace}/${g.name}`;
    // A pod without its sidecar runs uninspected (or failing): as loud as an error.
    const missing = g.sidecarMissing ? `${g.sidecarMissing} pod(s) without the processor sidecar: ${(g.sidecarMissingPods ?? []).join(", ")}` : "";
    const problem = [g.lastError, missing].filter(Boolean).join("; ");
    rows.push(el("tr", { class: problem ? "bad" : "", "data-gateway": name },
      el("td", {}, name), el("td", {}, `injected (${g.proxy}, ${g.mode || "external"})`), el("td", {}, g.protection?.mode || "block"),
      el("td", {}, ""), el("td", {}, ""), el("td", {}, when((g.objects ?? []).map((o) => o.at).sort().pop())),
      el("td", { class: "bad" }, problem)));
  }
  fill(tbody, rows, "no gateways");
  document.getElementById("source-error").textContent = snap?.sourceError ? `source: ${snap.sourceError.error}` : "";
  document.getElementById("gateways-section").hidden = snap === null && inj === null;
}

// A node is in sync when every type it was sent is ACKed at that version and no NACK is newer.
function inSync(n) {
  return Object.values(n.types ?? {}).every((t) => t.acked === t.sent && !(t.lastNack && t.lastNack.at > (t.ackedAt ?? "")));
}

function renderNodes(nodes) {
  const section = document.getElementById("envoys-section");
  section.hidden = nodes === null;
  if (nodes === null) return;
  const rows = (nodes.nodes ?? []).map((n) => {
    const sync = n.connected && !n.refused && inSync(n);
    const types = Object.entries(n.types ?? {}).sort().map(([typ, t]) =>
      el("div", { class: t.acked === t.sent ? "" : "bad" }, `${typ}: ${t.sent} / ${t.acked ?? "—"}`));
    const nack = Object.entries(n.types ?? {}).filter(([, t]) => t.lastNack).map(([typ, t]) =>
      el("div", { class: "bad" }, `${typ} ${t.lastNack.version}: ${t.lastNack.error}`));
    const status = n.refused ? `refused: ${n.refused}` : !n.connected ? "disconnected" : sync ? "in sync" : "out of sync";
    return el("tr", { class: sync ? "" : "bad", "data-node": n.id, "data-state": status },
      el("td", {}, n.id), el("td", {}, n.gateway), el("td", { class: sync ? "ok" : "bad" }, status),
      el("td", {}, when(n.connectedSince)), el("td", {}, n.delta ? "delta" : "SotW"),
      el("td", {}, ...types), el("td", {}, ...nack));
  });
  fill(section.querySelector("tbody"), rows, "no Envoy has connected");
}

function renderChart(traffic) {
  const minutes = traffic.minutes ?? [];
  let req = 0, blocked = 0, monitored = 0;
  for (const m of minutes) { req += m.requests; blocked += m.blocked; monitored += m.monitored; }
  document.getElementById("total-requests").textContent = req;
  document.getElementById("total-blocked").textContent = blocked;
  document.getElementById("total-monitored").textContent = monitored;
  const ns = "http://www.w3.org/2000/svg";
  const W = 600, H = 150, bw = W / Math.max(minutes.length, 1);
  const top = Math.max(1, ...minutes.map((m) => m.requests));
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  minutes.forEach((m, i) => {
    let y = H;
    for (const [cls, n] of [["blocked", m.blocked], ["monitored", m.monitored], ["allowed", m.requests - m.blocked - m.monitored]]) {
      if (n <= 0) continue;
      const h = (n / top) * (H - 10);
      y -= h;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("class", cls);
      r.setAttribute("x", i * bw + 1);
      r.setAttribute("y", y);
      r.setAttribute("width", Math.max(bw - 2, 1));
      r.setAttribute("height", h);
      r.setAttribute("data-count", n);
      const tip = document.createElementNS(ns, "title");
      tip.textContent = `${new Date(m.minute).toLocaleTimeString()}: ${n} ${cls}`;
      r.append(tip);
      svg.append(r);
    }
  });
  document.getElementById("chart").replaceChildren(svg);
  const select = document.getElementById("gateway-filter");
  const known = new Set([...select.options].map((o) => o.value));
  for (const g of traffic.gateways ?? []) {
    if (!known.has(g)) select.append(el("option", { value: g }, g || "(no gateway)"));
  }
}

function renderTop(top) {
  const list = (id, items, filterKey) => document.getElementById(id).replaceChildren(...items.map((it) =>
    el("li", {}, el("a", { "data-key": it.key, on: { click: () => setEventFilter(filterKey, it.key) } }, it.key || "(unknown)"), ` ${it.count}`)));
  list("top-rules", top.rules ?? [], "rule");
  list("top-ips", top.client_ips ?? [], "client_ip");
  list("top-paths", top.paths ?? [], "path");
}

function setEventFilter(key, value) {
  state.eventFilter = value === null ? null : { key, value };
  const p = document.getElementById("event-filter");
  if (state.eventFilter) {
    p.replaceChildren(`showing events where ${key} = `, el("code", {}, value), " ",
      el("a", { on: { click: () => setEventFilter(null, null) } }, "(show all)"));
  } else {
    p.replaceChildren();
  }
  refresh();
}

function renderEvents(events) {
  const rows = (events.events ?? []).map((e, i) => {
    const rule = e.rules?.[0];
    const param = rule?.parameters?.[0];
    return el("tr", { "data-event": i, on: { click: () => showEvent(e) } },
      el("td", { class: "nowrap" }, when(e.time)), el("td", { class: e.action === "blocked" ? "bad nowrap" : "nowrap" }, e.action),
      el("td", {}, rule ? `${rule.id} ${rule.name}` : ""), el("td", {}, e.client_ip ?? ""),
      el("td", { class: "nowrap" }, e.method ?? ""), el("td", {}, e.path ?? ""), el("td", {}, e.gateway ?? ""),
      el("td", {}, e.route ?? ""), el("td", {}, el("code", {}, param?.value ?? "")));
  });
  fill(document.querySelector('[data-testid="events"] tbody'), rows, "no security events");
}

function showEvent(e) {
  const pre = document.getElementById("event-detail");
  pre.textContent = JSON.stringify(e, null, 2);
  pre.hidden = false;
}

// schemaText writes libddwaf's schema notation ([type], [[item], {len}], [{key: schema}])
// the way a person reads it: {page: string, tags: [string]}.
const TYPES = { 1: "null", 2: "bool", 4: "int", 8: "string", 16: "float" };
function schemaText(s) {
  if (!Array.isArray(s) || s.length === 0) return "?";
  const x = s[0];
  if (typeof x === "number") return TYPES[x] ?? `type ${x}`;
  if (Array.isArray(x)) return `[${x.map(schemaText).join(" | ")}]`; // the schemas of its items
  if (x && typeof x === "object") return `{${Object.entries(x).map(([k, v]) => `${k}: ${schemaText(v)}`).join(", ")}}`;
  return "?";
}

function renderCatalog(cat) {
  const rows = [];
  for (const ep of cat?.endpoints ?? []) {
    const parts = Object.entries({ ...(ep.request ?? {}), ...(ep.response ?? {}) }).sort().map(([part, s]) =>
      el("div", {}, el("b", {}, part), " ", el("code", {}, schemaText(s))));
    rows.push(el("tr", {}, el("td", {}, ep.gateway ?? ""), el("td", {}, ep.route ?? ""), el("td", {}, ep.method ?? ""),
      el("td", {}, ...parts, el("span", { class: "muted" }, `${ep.samples} samples`))));
  }
  fill(document.querySelector('[data-testid="api-catalog"] tbody'), rows, "nothing sampled yet");
}

function renderRules(r) {
  const dl = document.getElementById("rules");
  const item = (k, ...v) => [el("dt", {}, k), el("dd", {}, ...v)];
  const sets = (r.rulesets ?? []).map((s) => el("div", {},
    `${s.name} ${s.version ?? ""}: ${s.enabled ? `${s.rules_loaded} rules on` : "off"}` +
    (s.sensitivity ? `, sensitivity ${s.sensitivity}` : "") + (s.replaces ? `, replaces ${s.replaces.join(", ")}` : "")));
  dl.replaceChildren(
    ...item("rules version", r.version ?? ""), ...item("rules loaded", r.rules_loaded ?? 0),
    ...item("rulesets", ...sets), ...item("libddwaf", r.libddwaf_version ?? ""),
    ...item("policy", r.policy_file || "none"),
    ...item("rule overrides", ...(r.rule_overrides ?? []).map((o) => el("div", {},
      `${o.id}: ${[o.enabled === false ? "off" : o.enabled ? "on" : "", o.block === false ? "reports only" : o.block ? "blocks" : ""].filter(Boolean).join(", ")}`))),
    ...item("exclusions", (r.exclusions ?? []).join(", ")),
    ...item("policy error", el("span", { class: "bad" }, r.policy_error ? `${r.policy_error} (previous policy in force)` : "")));
}

async function refresh() {
  const q = new URLSearchParams();
  if (state.gateway) q.set("gateway", state.gateway);
  const ev = new URLSearchParams({ limit: "50" });
  if (state.eventFilter) ev.set(state.eventFilter.key, state.eventFilter.value);
  try {
    const [overview, snap, nodes, inj, traffic, top, events, cat, rules] = await Promise.all([
      getJSON("/ui/api/overview"), getJSON("/snapshots"), getJSON("/nodes"), getJSON("/injections"),
      getJSON(`/ui/api/traffic?${q}`), getJSON(`/ui/api/top?minutes=${state.window}`), getJSON(`/events?${ev}`),
      getJSON("/api-catalog"), getJSON("/rules")]);
    document.getElementById("command").textContent = `wafplane ${overview.command}`;
    document.getElementById("version").textContent = overview.version;
    renderGateways(snap, inj?.gateways ? inj : null, overview.source);
    renderNodes(nodes);
    renderChart(traffic);
    renderTop(top);
    renderEvents(events);
    renderCatalog(cat);
    renderRules(rules);
    document.getElementById("fetch-error").textContent = "";
    document.getElementById("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    document.getElementById("fetch-error").textContent = String(err);
  }
}

document.getElementById("gateway-filter").addEventListener("change", (e) => { state.gateway = e.target.value; refresh(); });
document.getElementById("window").addEventListener("change", (e) => { state.window = e.target.value; refresh(); });
refresh();
setInterval(refresh, REFRESH_MS);
