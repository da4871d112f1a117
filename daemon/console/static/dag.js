// The pipeline DAG as a picture: repos and pipelines as boxes in layers (a
// node's layer is its longest path from a source), edges as arrows, each
// pipeline filled by the state of its last job (class state-<state>).

import { cssName, h, href, s, show } from "./util.js";

const W = 170, H = 44, GAP_X = 70, GAP_Y = 22, PAD = 16;
const STATES = ["succeeded", "failed", "running", "queued", "none"];

/** Positions of the nodes: {id: {x, y, layer}}, and the picture's size. */
export function layout(nodes, edges) {
  const ids = nodes.map((n) => n.id);
  const preds = new Map(ids.map((i) => [i, []]));
  const succs = new Map(ids.map((i) => [i, []]));
  for (const e of edges) {
    if (!preds.has(e.from) || !preds.has(e.to)) continue;
    preds.get(e.to).push(e.from);
    succs.get(e.from).push(e.to);
  }
  // longest path from a source, in topological order (Kahn); nodes of a
  // cycle, which the daemon refuses anyway, keep the layer they reached
  const layer = new Map(ids.map((i) => [i, 0]));
  const waiting = new Map(ids.map((i) => [i, preds.get(i).length]));
  const ready = ids.filter((i) => waiting.get(i) === 0);
  while (ready.length) {
    const n = ready.shift();
    for (const m of succs.get(n)) {
      layer.set(m, Math.max(layer.get(m), layer.get(n) + 1));
      waiting.set(m, waiting.get(m) - 1);
      if (waiting.get(m) === 0) ready.push(m);
    }
  }
  const byName = new Map(nodes.map((n) => [n.id, n.name]));
  const columns = [];
  for (const i of ids) {
    const l = layer.get(i);
    (columns[l] = columns[l] || []).push(i);
  }
  const row = new Map();
  columns.forEach((col, l) => {
    const key = (i) => {
      const ps = preds.get(i).filter((p) => row.has(p));
      return ps.length ? ps.reduce((a, p) => a + row.get(p), 0) / ps.length : Infinity;
    };
    col.sort((a, b) => (l === 0 ? 0 : key(a) - key(b)) || String(byName.get(a)).localeCompare(String(byName.get(b))));
    col.forEach((i, k) => row.set(i, k));
  });
  const tallest = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const pos = {};
  columns.forEach((col, l) => {
    const shift = ((tallest - col.length) * (H + GAP_Y)) / 2;
    col.forEach((i, k) => {
      pos[i] = { x: PAD + l * (W + GAP_X), y: PAD + shift + k * (H + GAP_Y), layer: l };
    });
  });
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GAP_X;
  const height = PAD * 2 + tallest * H + (tallest - 1) * GAP_Y;
  return { pos, width, height };
}

function clip(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

/** The SVG picture of the DAG. */
export function dagSvg(dag) {
  const { pos, width, height } = layout(dag.nodes, dag.edges);
  const defs = s("defs", null,
    s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8,
      orient: "auto-start-reverse" }, s("path", { d: "M0 0 L10 5 L0 10 z", class: "arrowhead" })));
  const edges = dag.edges.filter((e) => pos[e.from] && pos[e.to]).map((e) => {
    const a = pos[e.from], b = pos[e.to];
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 2, y2 = b.y + H / 2;
    const dx = Math.max(20, (x2 - x1) / 2);
    return s("path", { d: `M${x1} ${y1} C${x1 + dx} ${y1} ${x2 - dx} ${y2} ${x2} ${y2}`, class: "dag-edge",
      "marker-end": "url(#arrow)", dataset: { from: e.from, to: e.to } });
  });
  const nodes = dag.nodes.map((n) => {
    const p = pos[n.id];
    const name = show(n.name);
    if (n.kind === "pipeline") {
      const st = n.state ? cssName(n.state) : "none";
      return s("a", { href: href("pipeline", { name: n.name }), class: "dag-link" },
        s("g", { class: `node pipeline state-${st}`, dataset: { id: n.id, state: n.state || "" } },
          s("title", null, `pipeline ${name}: last job ${n.state || "none"}`),
          s("rect", { x: p.x, y: p.y, width: W, height: H, rx: 8 }),
          s("text", { x: p.x + W / 2, y: p.y + 18, class: "name" }, clip(name, 22)),
          s("text", { x: p.x + W / 2, y: p.y + 34, class: "sub" }, n.state || "no jobs yet")));
    }
    return s("a", { href: href("history", { repo: n.name }), class: "dag-link" },
      s("g", { class: "node repo", dataset: { id: n.id } },
        s("title", null, `repo ${name}`),
        s("rect", { x: p.x, y: p.y, width: W, height: H, rx: 3 }),
        s("text", { x: p.x + W / 2, y: p.y + 18, class: "name" }, clip(name, 22)),
        s("text", { x: p.x + W / 2, y: p.y + 34, class: "sub" }, "repo")));
  });
  return s("svg", { class: "dag", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "pipeline DAG" }, defs, edges, nodes);
}

/** The legend of the node colours. */
export function legend() {
  return h("ul", { class: "legend" },
    h("li", null, h("span", { class: "swatch repo" }), "repo"),
    STATES.map((st) => h("li", null, h("span", { class: `swatch state-${st}` }),
      st === "none" ? "no jobs / other" : `last job ${st}`)));
}
