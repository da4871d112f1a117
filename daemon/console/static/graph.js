// A branch's history as lanes: each commit a dot in a column, a line from
// each commit down to each of its parents, so a merge commit is where two
// lines join.  Commits come newest first (children before parents); the
// lanes carry over from one page of history to the next.

import { s } from "./util.js";

export const ROW = 28; // px: the height of a history row (console.css agrees)
const LANE = 14; // px between two lanes
const COLOURS = 6; // lane-0 .. lane-5 in console.css

function x(i) {
  return 9 + i * LANE;
}

export class Lanes {
  constructor() {
    this.lanes = []; // the commit id each column waits for, or null
  }

  _free() {
    const i = this.lanes.indexOf(null);
    return i < 0 ? this.lanes.length : i;
  }

  /** Place one commit: its column, the lines that pass its row, those that
   *  end in it (from its children), those from it to its parents. */
  place(commit) {
    const lanes = this.lanes;
    const into = [];
    lanes.forEach((v, i) => {
      if (v === commit.id) into.push(i);
    });
    const pass = [];
    lanes.forEach((v, i) => {
      if (v !== null && v !== commit.id) pass.push(i);
    });
    let col = into.length ? into[0] : this._free();
    for (const i of into) lanes[i] = null;
    const out = [];
    (commit.parents || []).forEach((p, k) => {
      let j = lanes.indexOf(p);
      if (j < 0) {
        j = k === 0 && (col >= lanes.length || lanes[col] === null) ? col : this._free();
        lanes[j] = p;
      }
      out.push(j);
    });
    const width = Math.max(lanes.length, col + 1, ...pass.map((i) => i + 1), ...into.map((i) => i + 1));
    while (lanes.length && lanes[lanes.length - 1] === null) lanes.pop();
    return { col, into, pass, out, width, merge: out.length > 1 };
  }
}

/** The SVG of one row of the graph. */
export function rowSvg(row) {
  const mid = ROW / 2;
  const parts = [];
  for (const i of row.pass) {
    parts.push(s("line", { x1: x(i), y1: 0, x2: x(i), y2: ROW, class: `edge pass lane-${i % COLOURS}` }));
  }
  for (const i of row.into) {
    const d = i === row.col ? `M${x(i)} 0 L${x(i)} ${mid}`
      : `M${x(i)} 0 C${x(i)} ${mid / 2} ${x(row.col)} ${mid / 2} ${x(row.col)} ${mid}`;
    parts.push(s("path", { d, class: `edge into lane-${i % COLOURS}` }));
  }
  for (const j of row.out) {
    const d = j === row.col ? `M${x(j)} ${mid} L${x(j)} ${ROW}`
      : `M${x(row.col)} ${mid} C${x(row.col)} ${mid * 1.5} ${x(j)} ${mid * 1.5} ${x(j)} ${ROW}`;
    parts.push(s("path", { d, class: `edge out lane-${j % COLOURS}` }));
  }
  parts.push(s("circle", {
    cx: x(row.col), cy: mid, r: row.merge ? 5 : 4,
    class: `dot lane-${row.col % COLOURS}${row.merge ? " merge" : ""}`,
  }));
  return s("svg", { class: "lanes", height: ROW, width: widthOf(row.width), "aria-hidden": "true" }, parts);
}

/** The pixel width of a graph of n lanes. */
export function widthOf(n) {
  return x(Math.max(n, 1) - 1) + 9;
}
