// Helpers of the console's pages: names as bytes (encoding, decoding,
// display), DOM building without innerHTML, the JSON API, formatting.
//
// Names (repos, paths) can hold any bytes.  The daemon sends a byte that is
// not UTF-8 as a lone surrogate U+DC80+byte (PEP 383, docs/names.md) and
// reads %XX escapes of such bytes back the same way.

/** The characters of a name as [text, byte]: ``byte`` is the one a lone
 *  surrogate U+DC80..U+DCFF stands for (PEP 383), -1 for another lone
 *  surrogate (no byte), null for a character. */
function* namePoints(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        yield [s[i] + s[i + 1], null];
        i++;
        continue;
      }
    }
    if (c >= 0xdc80 && c <= 0xdcff) yield [s[i], c - 0xdc00];
    else if (c >= 0xd800 && c <= 0xdfff) yield [s[i], -1];
    else yield [s[i], null];
  }
}

const hex2 = (n) => n.toString(16).padStart(2, "0");

/** A name percent-encoded for a URL: lone surrogates U+DC80..U+DCFF as the
 *  byte they stand for (encodeURIComponent throws on them). */
export function enc(s) {
  let out = "";
  for (const [ch, byte] of namePoints(String(s))) {
    if (byte === null) out += encodeURIComponent(ch);
    else if (byte < 0) out += "%EF%BF%BD"; // another lone surrogate stands for no byte: U+FFFD
    else out += "%" + hex2(byte).toUpperCase();
  }
  return out;
}

/** The bytes a decoded UTF-8 byte sequence stands for, as a string; bytes
 *  that are not UTF-8 become U+DC80+byte (Python's surrogateescape). */
export function utf8Escaped(bytes) {
  let out = "";
  let i = 0;
  const n = bytes.length;
  while (i < n) {
    const x = bytes[i];
    if (x < 0x80) {
      out += String.fromCharCode(x);
      i++;
      continue;
    }
    let len = 0, lo = 0x80, hi = 0xbf, cp = 0;
    if (x >= 0xc2 && x <= 0xdf) { len = 1; cp = x & 0x1f; }
    else if (x >= 0xe0 && x <= 0xef) {
      len = 2; cp = x & 0x0f;
      if (x === 0xe0) lo = 0xa0;
      if (x === 0xed) hi = 0x9f; // no UTF-8 encoded surrogates
    } else if (x >= 0xf0 && x <= 0xf4) {
      len = 3; cp = x & 0x07;
      if (x === 0xf0) lo = 0x90;
      if (x === 0xf4) hi = 0x8f;
    }
    let ok = len > 0 && i + len < n + 1;
    for (let k = 1; ok && k <= len; k++) {
      const b = bytes[i + k];
      const [l, h] = k === 1 ? [lo, hi] : [0x80, 0xbf];
      if (b === undefined || b < l || b > h) ok = false;
      else cp = (cp << 6) | (b & 0x3f);
    }
    if (!ok) {
      out += String.fromCharCode(0xdc00 + x);
      i++;
      continue;
    }
    out += String.fromCodePoint(cp);
    i += len + 1;
  }
  return out;
}

/** The inverse of enc(): a percent-encoded name as the daemon reads it. */
export function dec(s) {
  const bytes = [];
  const utf8 = new TextEncoder();
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === "%" && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      const cp = s.codePointAt(i);
      if (cp > 0xffff) i++;
      for (const b of utf8.encode(String.fromCodePoint(cp))) bytes.push(b);
    }
  }
  return utf8Escaped(bytes);
}

/** A name as shown: the bytes that are not UTF-8, and control characters,
 *  as \xNN. */
export function show(s) {
  let out = "";
  for (const [ch, byte] of namePoints(String(s ?? ""))) {
    const c = ch.charCodeAt(0);
    if (byte === null) out += c < 0x20 || c === 0x7f ? "\\x" + hex2(c) : ch;
    else out += byte < 0 ? "\ufffd" : "\\x" + hex2(byte);
  }
  return out;
}

/** A query string of params (undefined, null and "" left out). */
export function query(params) {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${enc(k)}=${enc(v)}`)
    .join("&");
}

/** The shape of each route's hash (docs/console.md): the params that are
 *  path segments, in order; "*path" takes the rest of the path (a path in a
 *  repo).  Other params go in the query string: #/tree/REPO/REF/PATH?offset=. */
export const ROUTE_SHAPES = {
  repos: [],
  history: ["repo", "ref"],
  commit: ["repo", "ref"],
  tree: ["repo", "ref", "*path"],
  file: ["repo", "ref", "*path"],
  diff: ["repo"],
  status: ["repo", "branch"],
  dag: [],
  pipeline: ["name"],
  job: ["id"],
};
const SEGMENT_DEFAULTS = { ref: "main", branch: "main" };

/** The hash of a console route, e.g. href("tree", {repo, ref, path}). */
export function href(route, params = {}) {
  const shape = ROUTE_SHAPES[route] || [];
  const rest = { ...params };
  const segments = [];
  let missing = 0;
  for (const name of shape) {
    let v = rest[name];
    delete rest[name];
    if (name === "*path") continue;
    if (v === undefined || v === null || v === "") v = SEGMENT_DEFAULTS[name];
    if (v === undefined) {
      missing++;
      continue;
    }
    segments.push(enc(v));
  }
  if (shape.includes("*path") && !missing) {
    const path = params.path;
    delete rest.path;
    for (const part of String(path || "").split("/")) if (part) segments.push(enc(part));
  }
  const head = route === "repos" ? "" : [route, ...segments].join("/");
  const q = query(rest);
  return `#/${head}${q ? "?" + q : ""}`;
}

/** The route of a hash: {name, params}, the inverse of href(). */
export function parseRoute(hash) {
  const raw = hash.replace(/^#\/?/, "");
  const i = raw.indexOf("?");
  const [path, q] = i < 0 ? [raw, ""] : [raw.slice(0, i), raw.slice(i + 1)];
  const [name, ...segments] = path.split("/");
  const params = {};
  for (const part of q.split("&")) {
    if (!part) continue;
    const j = part.indexOf("=");
    params[dec(j < 0 ? part : part.slice(0, j))] = j < 0 ? "" : dec(part.slice(j + 1));
  }
  const shape = ROUTE_SHAPES[name || "repos"] || [];
  shape.forEach((key, k) => {
    if (key === "*path") {
      params.path = "/" + segments.slice(k).filter((s) => s !== "").map(dec).join("/");
    } else if (segments[k] !== undefined && segments[k] !== "") {
      params[key] = dec(segments[k]);
    }
  });
  return { name: name || "repos", params };
}

// -- DOM -----------------------------------------------------------------------

/** An element: h("a", {href, class}, "text", child...).  Strings become text
 *  nodes, never markup. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element, as h() builds HTML ones. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** A link to a console route. */
export function link(route, params, ...children) {
  return h("a", { href: href(route, params) }, ...children);
}

/** A table: head is a list of column titles, rows a list of lists of cells. */
export function table(head, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", null, h("tr", null, head.map((t) => h("th", null, t)))),
    h("tbody", null, rows.map((r) => (r instanceof Node ? r : h("tr", null, r.map((c) => h("td", null, c)))))));
}

// -- the API ---------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET /api/NAME?params: its JSON, or an ApiError. */
export async function api(name, params = {}) {
  const q = query(params);
  let resp;
  try {
    resp = await fetch(`/api/${name}${q ? "?" + q : ""}`, { headers: { accept: "application/json" } });
  } catch (err) {
    throw new ApiError(0, "network", `the daemon did not answer: ${err.message}`);
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const e = (body && body.error) || {};
    throw new ApiError(resp.status, e.code || "http", e.message || `HTTP ${resp.status}`);
  }
  return body;
}

/** A visible error: HTTP status, code and message. */
export function errorBox(err) {
  if (err instanceof ApiError) {
    const what = err.status ? `HTTP ${err.status} ${err.code}` : err.code;
    const box = h("div", { class: "error", role: "alert", dataset: { status: err.status, code: err.code } },
      h("strong", null, what), ": ", err.message);
    if (err.status === 401) {
      box.append(h("p", null, "Your console token is missing or expired: run ",
        h("code", null, "trunkfs console"), " and open the URL it prints."));
    }
    return box;
  }
  console.error(err);
  return h("div", { class: "error", role: "alert" }, h("strong", null, "error"), ": ", String(err && err.message || err));
}

// -- formatting ------------------------------------------------------------------

/** Bytes in binary units: 0 B, 1023 B, 1.5 KiB, 12 MiB ... */
export function human(n) {
  n = Number(n || 0);
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[u]}`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** A time (seconds since the epoch) as local YYYY-MM-DD HH:MM:SS. */
export function when(t) {
  if (t === undefined || t === null) return "";
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** How long ago a time was, roughly. */
export function ago(t) {
  if (t === undefined || t === null) return "";
  const s = Date.now() / 1000 - t;
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  if (s < 86400 * 30) return `${Math.floor(s / 86400)} d ago`;
  return when(t).slice(0, 10);
}

/** A time element: relative, the exact time as its title. */
export function time(t) {
  return h("time", { title: when(t), datetime: t ? new Date(t * 1000).toISOString() : null }, ago(t));
}

/** Seconds, briefly. */
export function secs(x) {
  if (x === undefined || x === null) return "";
  return x < 10 ? `${Number(x).toFixed(3)} s` : `${Number(x).toFixed(1)} s`;
}

/** A commit id, short, in monospace, its full id as the title. */
export function shortId(id, n = 12) {
  return h("code", { class: "id", title: id }, String(id || "").slice(0, n));
}

/** A job state as a coloured badge. */
export function stateBadge(state) {
  const st = state || "none";
  return h("span", { class: `badge state-${cssName(st)}` }, state || "no jobs");
}

/** A string safe in a class name. */
export function cssName(x) {
  return String(x).toLowerCase().replace(/[^a-z0-9_-]/g, "-");
}

/** A path joined to a name in it. */
export function join(dir, name) {
  return (dir.endsWith("/") ? dir : dir + "/") + name;
}

/** A path's parent directory ("/" for a top-level one). */
export function parent(path) {
  const p = path.replace(/\/+$/, "");
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

/** The last name of a path. */
export function basename(path) {
  const p = path.replace(/\/+$/, "");
  return p.slice(p.lastIndexOf("/") + 1);
}
