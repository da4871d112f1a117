// The pages of repos: the list, a branch's history, a commit, the tree
// browser and file previews, diffs, staged changes.

import { Lanes, rowSvg, widthOf } from "./graph.js";
import {
  api, basename, errorBox, h, href, human, join, link, parent, query, shortId, show, table, time, when,
} from "./util.js";

const TREE_PAGE = 200; // entries of a directory page
const GRAPH_PAGE = 100; // commits of a history page
const GRAPH_MAX = 1000; // what one request may ask for

// -- shared pieces -----------------------------------------------------------------

/** A heading: "What repo@ref" with the names as text. */
function title(...parts) {
  return h("h1", null, parts);
}

function repoRef(repo, ref) {
  const shown = ref && /^[0-9a-f]{40,64}$/.test(ref) ? ref.slice(0, 12) : ref;
  return h("span", { class: "name" }, show(repo), ref ? h("span", { class: "at", title: ref }, "@", show(shown)) : null);
}

/** A chooser of a ref: a branch or tag from a list, or a commit id typed in. */
function refChooser(refs, currentRef, go, label = "at") {
  const sel = h("select", { "aria-label": "branch or tag", class: "ref-select" });
  const names = new Set();
  const group = (what, list) => {
    if (!list.length) return;
    const g = h("optgroup", { label: what });
    for (const name of list) {
      names.add(name);
      const opt = h("option", null, show(name));
      opt.value = name; // the name itself, lone surrogates included
      g.append(opt);
    }
    sel.append(g);
  };
  group("branches", refs.branches.map((b) => b.name));
  group("tags", refs.tags.map((t) => t.tag));
  if (currentRef && !names.has(currentRef)) {
    const opt = h("option", null, `commit ${currentRef.slice(0, 12)}`);
    opt.value = currentRef;
    sel.prepend(opt);
  }
  sel.value = currentRef;
  sel.addEventListener("change", () => go(sel.value));
  const input = h("input", { type: "text", placeholder: "commit id", size: 14, class: "mono", "aria-label": "commit id",
    pattern: "[0-9a-f]{6,64}" });
  const form = h("form", { class: "ref-chooser" }, h("label", null, label, " ", sel), " or ", input,
    h("button", { type: "submit" }, "Go"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (v) go(v);
  });
  return form;
}

/** Breadcrumbs of a path in a repo at a ref, each a link to its directory. */
function crumbs(repo, ref, path) {
  const parts = path.split("/").filter((p) => p !== "");
  const out = [link("tree", { repo, ref }, h("span", { class: "name" }, show(repo))), h("span", { class: "sep" }, ":/")];
  let sofar = "";
  parts.forEach((p, i) => {
    sofar += "/" + p;
    if (i > 0) out.push(h("span", { class: "sep" }, "/"));
    out.push(i === parts.length - 1 ? h("span", { class: "here name" }, show(p))
      : link("tree", { repo, ref, path: sofar }, show(p)));
  });
  return h("nav", { class: "crumbs", "aria-label": "path" }, out);
}

/** Where a commit came from: a user, or a pipeline's job (links). */
function origin(o) {
  if (!o || o.kind !== "pipeline") return h("span", { class: "origin user" }, (o && o.kind) || "user");
  return h("span", { class: "origin pipeline" }, "pipeline ",
    link("pipeline", { name: o.pipeline }, show(o.pipeline)), o.version ? ` v${o.version}` : "",
    o.job ? [" · job ", link("job", { id: o.job }, h("code", { class: "id" }, String(o.job).slice(0, 12)))] : null);
}

/** Links to the upstream commits a commit was made from. */
function provenance(list) {
  if (!list || !list.length) return "";
  return h("span", { class: "prov" }, list.map((p, i) => [i ? ", " : "",
    link("commit", { repo: p.repo, ref: p.commit }, show(p.repo), "@", h("code", { class: "id" }, p.commit.slice(0, 12)))]));
}

function author(a) {
  if (!a) return "";
  return h("span", { class: "author", title: `uid ${a.uid}` }, show(a.name ?? a.uid));
}

function statusBadge(st) {
  return h("span", { class: `change change-${st}`, title: { A: "added", M: "modified", D: "deleted" }[st] || st }, st);
}

// -- repos -----------------------------------------------------------------------

export async function repos(page) {
  const list = await api("repos");
  page.append(title("Repositories"));
  if (!list.length) {
    page.append(h("p", { class: "empty" }, "No repository you may read. Make one with ",
      h("code", null, "trunkfs repo create NAME"), "."));
    return;
  }
  const rows = list.map((r) => h("tr", { dataset: { repo: r.name } },
    h("td", null, link("history", { repo: r.name }, h("strong", { class: "name" }, show(r.name)))),
    h("td", null, r.branches.map((b) => link("history", { repo: r.name, ref: b }, h("span", { class: "chip" }, show(b))))),
    h("td", null, r.tags.map((t) => link("tree", { repo: r.name, ref: t.tag }, h("span", { class: "chip tag" }, show(t.tag))))),
    h("td", { class: "num", title: `${r.size} bytes` }, human(r.size)),
    h("td", { class: "last" }, r.last ? [
      link("commit", { repo: r.name, ref: r.last.id }, h("span", { class: "msg" }, r.last.message || "(no message)")),
      h("div", { class: "meta" }, author(r.last.author), " · ", time(r.last.time), " · ", origin(r.last.origin))]
      : h("span", { class: "muted" }, "no commits yet")),
    h("td", { class: "actions" }, link("tree", { repo: r.name }, "files"), " ", link("diff", { repo: r.name }, "diff"),
      " ", link("status", { repo: r.name }, "staged"))));
  page.append(table(["Repo", "Branches", "Tags", "Size", "Last commit", ""], rows, { class: "repos" }));
}

// -- history ---------------------------------------------------------------------

export async function history(page, params, state) {
  const repo = params.repo;
  const ref = params.ref || "main";
  const pageSize = Math.min(GRAPH_MAX, Number(params.limit) || GRAPH_PAGE);
  // a live update loads as many commits as were shown
  const limit = Math.min(GRAPH_MAX, Math.max(pageSize, state.loaded || 0));
  const [refs, graph] = await Promise.all([api("refs", { repo }), api("graph", { repo, ref, limit })]);
  page.append(title("History of ", repoRef(repo, ref)),
    refChooser(refs, ref, (r) => { location.hash = href("history", { repo, ref: r }); }, "ref"));
  const lanes = new Lanes();
  const svgs = [];
  let widest = 1;
  const body = h("tbody");
  const addRows = (commits) => {
    for (const c of commits) {
      const row = lanes.place(c);
      widest = Math.max(widest, row.width);
      const svg = rowSvg(row);
      svgs.push(svg);
      body.append(h("tr", { class: "commit", dataset: { id: c.id, parents: (c.parents || []).length } },
        h("td", { class: "graph" }, svg),
        h("td", null, link("commit", { repo, ref: c.id }, shortId(c.id))),
        h("td", { class: "msg", title: c.message || "" }, c.message || h("span", { class: "muted" }, "(no message)")),
        h("td", null, author(c.author)),
        h("td", null, origin(c.origin)),
        h("td", null, provenance(c.provenance)),
        h("td", { class: "when" }, time(c.time)),
        h("td", { class: "actions" }, link("tree", { repo, ref: c.id }, "files"))));
    }
    for (const svg of svgs) svg.setAttribute("width", widthOf(widest));
    state.loaded = body.children.length;
    page.dataset.loaded = String(state.loaded);
  };
  addRows(graph.commits);
  if (!graph.commits.length) {
    page.append(h("p", { class: "empty" }, "No commits yet."));
    return;
  }
  page.append(h("table", { class: "history" },
    h("thead", null, h("tr", null, ["", "Commit", "Message", "Author", "Origin", "Provenance", "Time", ""].map((t) => h("th", null, t)))),
    body));
  let next = graph.next;
  const problems = h("div");
  const more = h("button", { type: "button", class: "more" }, "More");
  more.hidden = !next;
  more.addEventListener("click", async () => {
    more.disabled = true;
    problems.replaceChildren();
    try {
      const got = await api("graph", { repo, ref, limit: pageSize, after: next });
      addRows(got.commits);
      next = got.next;
      more.hidden = !next;
    } catch (err) {
      problems.append(errorBox(err));
    }
    more.disabled = false;
  });
  page.append(h("div", { class: "pager" }, more, problems));
}

// -- a commit ----------------------------------------------------------------------

export async function commit(page, params) {
  const repo = params.repo;
  const ref = params.ref || "main";
  const c = await api("commit", { repo, ref });
  const changes = await api("diff", { repo, to: c.id });
  page.append(title("Commit ", h("code", { class: "id" }, c.id.slice(0, 12)), " of ", repoRef(repo)));
  const parents = (c.parents || []).map((p, i) => [i ? ", " : "", link("commit", { repo, ref: p }, shortId(p))]);
  page.append(h("dl", { class: "facts" },
    h("dt", null, "id"), h("dd", null, h("code", { class: "id" }, c.id)),
    h("dt", null, "message"), h("dd", { class: "message" }, c.message || ""),
    h("dt", null, "author"), h("dd", null, author(c.author)),
    h("dt", null, "time"), h("dd", null, when(c.time), " (", time(c.time), ")"),
    h("dt", null, "origin"), h("dd", null, origin(c.origin)),
    h("dt", null, "parents"), h("dd", null, parents.length ? parents : h("span", { class: "muted" }, "none")),
    h("dt", null, "size"), h("dd", null, human(c.size), ` in ${c.files} files`),
    h("dt", null, "browse"), h("dd", null, link("tree", { repo, ref: c.id }, "files at this commit"), " · ",
      link("history", { repo, ref: c.id }, "history from here"))));
  const up = (c.upstream || []).filter((u) => u.depth > 0);
  page.append(h("h2", null, "Provenance"));
  if (!up.length) page.append(h("p", { class: "muted" }, "Made by a user: no upstream commits."));
  else {
    page.append(table(["Depth", "Upstream commit", "Origin"], up.map((u) => [String(u.depth),
      link("commit", { repo: u.repo, ref: u.commit }, show(u.repo), "@", shortId(u.commit)), origin(u.origin)]),
    { class: "upstream" }));
  }
  page.append(h("h2", null, "Changes"), h("p", { class: "meta" }, counted(changes)), changeList(repo, changes));
  if (changes.total > changes.changes.length) {
    page.append(link("diff", { repo, to: c.id }, `all ${changes.total} changes`));
  }
}

/** "3 changes: 1 added, 2 modified, 0 deleted". */
function counted(d) {
  const c = d.counts || {};
  if (d.complete === false) { // the server stopped counting: these are the first ones
    return `more than ${d.total} changes (counted: ${c.A || 0} added, ${c.M || 0} modified, ${c.D || 0} deleted)`;
  }
  return `${d.total} change${d.total === 1 ? "" : "s"}: ${c.A || 0} added, ${c.M || 0} modified, ${c.D || 0} deleted`;
}

/** The changes of a diff, each a link to its text diff; ``refs``: the
 *  from and to of those links (the diff's commits unless the page has refs). */
function changeList(repo, d, refs = { from: d.from || "", to: d.to }) {
  if (!d.changes.length) return h("p", { class: "muted" }, "No changes.");
  return h("ul", { class: "changes" }, d.changes.map((ch) => h("li", { dataset: { status: ch.status } },
    statusBadge(ch.status), " ",
    link("diff", { repo, ...refs, path: ch.path }, h("span", { class: "name" }, show(ch.path))),
    ch.status !== "D" ? [" ", link("file", { repo, ref: d.to, path: ch.path }, h("span", { class: "small" }, "view"))] : null)));
}

// -- the tree browser --------------------------------------------------------------

export async function tree(page, params) {
  const repo = params.repo;
  const ref = params.ref || "main";
  const path = params.path || "/";
  const offset = Math.max(0, Number(params.offset) || 0);
  const limit = Math.min(5000, Number(params.limit) || TREE_PAGE);
  const [refs, t] = await Promise.all([api("refs", { repo }), api("tree", { repo, ref, path, offset, limit })]);
  if (t.entry.type === "file") {
    await file(page, params);
    return;
  }
  page.append(title("Files of ", repoRef(repo, ref)),
    refChooser(refs, ref, (r) => { location.hash = href("tree", { repo, ref: r, path }); }),
    h("p", { class: "meta" }, "commit ", link("commit", { repo, ref: t.commit }, shortId(t.commit))),
    crumbs(repo, ref, path));
  if (t.entry.type !== "dir") {
    page.append(h("p", null, `${show(path)} is a ${t.entry.type}.`));
    return;
  }
  const rows = [];
  if (path !== "/" && offset === 0) {
    rows.push(h("tr", { class: "up" }, h("td", null, link("tree", { repo, ref, path: parent(path) }, "..")),
      h("td"), h("td"), h("td"), h("td")));
  }
  for (const e of t.entries) {
    const p = join(path, e.name);
    const dir = e.type === "dir";
    const target = dir ? link("tree", { repo, ref, path: p }, show(e.name), "/")
      : link("file", { repo, ref, path: p }, show(e.name));
    target.classList.add("name", dir ? "dir" : "file");
    rows.push(h("tr", { dataset: { type: e.type } },
      h("td", null, target, e.type === "symlink" && e.target !== undefined ? [" → ", h("span", { class: "name" }, show(e.target))] : null),
      h("td", null, e.type),
      h("td", { class: "num", title: `${e.size ?? ""} bytes` }, dir ? `${e.files ?? "?"} files` : human(e.size)),
      h("td", { class: "mono" }, e.mode !== undefined ? (e.mode & 0o7777).toString(8).padStart(4, "0") : ""),
      h("td", { class: "when" }, e.mtime ? time(e.mtime / 1e9) : "")));
  }
  page.append(table(["Name", "Type", "Size", "Mode", "Modified"], rows, { class: "tree" }));
  page.append(pager(t.total, offset, limit, (o) => href("tree", { repo, ref, path, offset: o || null, limit: params.limit })));
}

/** "entries X–Y of total" and links to the pages before and after. */
function pager(total, offset, limit, at, what = "entries", partial = false) {
  const end = Math.min(total, offset + limit);
  const prev = offset > 0 ? h("a", { href: at(Math.max(0, offset - limit)), class: "prev", rel: "prev" }, "← Prev")
    : h("span", { class: "prev disabled" }, "← Prev");
  const next = end < total ? h("a", { href: at(end), class: "next", rel: "next" }, "Next →")
    : h("span", { class: "next disabled" }, "Next →");
  const range = total ? `${what} ${offset + 1}–${end} of ${total}${partial ? "+" : ""}`
    : what === "entries" ? "empty directory" : `no ${what}`;
  return h("div", { class: "pager" }, prev, h("span", { class: "range" }, range), next);
}

// -- a file --------------------------------------------------------------------------

export async function file(page, params) {
  const repo = params.repo;
  const ref = params.ref || "main";
  const path = params.path || "/";
  const [refs, p] = await Promise.all([api("refs", { repo }), api("preview", { repo, ref, path })]);
  const raw = (extra) => `/api/raw?${query({ repo, ref: p.commit, path, ...extra })}`;
  page.append(title(h("span", { class: "name" }, show(basename(path))), " in ", repoRef(repo, ref)),
    refChooser(refs, ref, (r) => { location.hash = href("file", { repo, ref: r, path }); }),
    crumbs(repo, ref, path),
    h("p", { class: "meta" }, human(p.size), ` (${p.size} bytes) · commit `, link("commit", { repo, ref: p.commit }, shortId(p.commit)),
      " · ", h("a", { href: raw({ download: 1 }), class: "download", download: basename(path) || "file" }, "Download"),
      " · ", link("diff", { repo, to: p.commit }, "what this commit changed")));
  const box = h("div", { class: `preview preview-${p.kind}`, dataset: { kind: p.kind } });
  if (p.error) box.append(h("p", { class: "preview-error" }, p.error));
  switch (p.kind) {
    case "text":
      box.append(h("pre", { class: "text" }, p.text));
      break;
    case "csv":
      if (p.rows) {
        const [head, ...rest] = p.rows;
        box.append(h("div", { class: "scroll" }, table(head || [], rest, { class: "csv" })));
      } else if (p.text) box.append(h("pre", { class: "text" }, p.text));
      break;
    case "image":
      box.append(h("img", { src: raw({}), alt: show(basename(path)), class: "image" }));
      break;
    case "parquet":
      if (p.columns) {
        box.append(h("h2", null, "Schema"), table(["Column", "Type"], p.columns.map((c) => [show(c.name), c.type]), { class: "schema" }),
          h("h2", null, `First rows (${p.rows.length} of ${p.num_rows}, ${p.row_groups} row groups)`),
          h("div", { class: "scroll" }, table(p.columns.map((c) => show(c.name)), p.rows, { class: "rows" })));
      }
      break;
    case "empty":
      box.append(h("p", { class: "muted" }, "An empty file."));
      break;
    default:
      box.append(h("p", { class: "muted" }, `A binary file of ${human(p.size)}: download it to look inside.`));
  }
  if (p.truncated && (p.kind === "text" || p.kind === "csv")) {
    box.append(h("p", { class: "muted" }, `Only the beginning of the file is shown; it is ${human(p.size)}.`));
  }
  page.append(box);
}

// -- diff between two refs ------------------------------------------------------------

export async function diff(page, params) {
  const repo = params.repo;
  const from = params.from || "";
  const to = params.to || "main";
  const refs = await api("refs", { repo });
  const names = [...refs.branches.map((b) => b.name), ...refs.tags.map((t) => t.tag)];
  const list = h("datalist", { id: "refnames" }, names.map((n) => {
    const o = h("option");
    o.value = n;
    return o;
  }));
  const fromIn = h("input", { type: "text", name: "from", list: "refnames", placeholder: "parent of “to”", class: "mono" });
  const toIn = h("input", { type: "text", name: "to", list: "refnames", class: "mono", required: true });
  fromIn.value = from;
  toIn.value = to;
  const form = h("form", { class: "diff-form" }, list,
    h("label", null, "from ", fromIn), h("label", null, "to ", toIn), h("button", { type: "submit" }, "Compare"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = href("diff", { repo, from: fromIn.value.trim(), to: toIn.value.trim() || "main" });
  });
  page.append(title("Diff of ", repoRef(repo)), form);
  const offset = Math.max(0, Number(params.offset) || 0);
  const d = await api("diff", { repo, from, to, offset, limit: params.limit });
  page.append(h("p", { class: "meta" }, d.from ? ["from ", link("commit", { repo, ref: d.from }, shortId(d.from))] : "from nothing",
    " to ", link("commit", { repo, ref: d.to }, shortId(d.to)), ` · ${counted(d)}`));
  page.append(changeList(repo, d, { from, to, offset: offset || null, limit: params.limit }));
  if (d.total > d.changes.length || offset) {
    page.append(pager(d.total, d.offset, d.limit, (o) => href("diff", { repo, from, to, offset: o || null, limit: params.limit }),
      "changes", d.complete === false));
  }
  if (params.path) {
    const section = h("section", { class: "filediff" }, h("h2", null, "Text diff of ", h("span", { class: "name" }, show(params.path))));
    page.append(section);
    try {
      const fd = await api("filediff", { repo, from: d.from || "", to: d.to, path: params.path });
      section.append(unified(fd));
    } catch (err) {
      section.append(errorBox(err));
    }
  }
}

/** A unified diff, each line coloured by what it is. */
function unified(fd) {
  if (fd.kind === "too_large") return h("p", { class: "muted" }, `Too large for a text diff (over ${human(fd.limit)}).`);
  if (fd.kind === "binary") return h("p", { class: "muted" }, "Not a text file: no text diff.");
  if (!fd.diff) return h("p", { class: "muted" }, "The same text on both sides.");
  const lines = fd.diff.replace(/\n$/, "").split("\n");
  return h("pre", { class: "udiff" }, lines.map((l) => {
    const cls = l.startsWith("+++") || l.startsWith("---") ? "hdr" : l.startsWith("@@") ? "hunk"
      : l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "ctx";
    return h("span", { class: `line ${cls}` }, l, "\n");
  }));
}

// -- staged changes ---------------------------------------------------------------------

export async function status(page, params) {
  const repo = params.repo;
  const branch = params.branch || "main";
  const [refs, st] = await Promise.all([api("refs", { repo }), api("status", { repo, branch })]);
  const sel = h("select", { "aria-label": "branch" }, refs.branches.map((b) => {
    const o = h("option", null, show(b.name));
    o.value = b.name;
    return o;
  }));
  sel.value = branch;
  sel.addEventListener("change", () => { location.hash = href("status", { repo, branch: sel.value }); });
  page.append(title("Staged changes of ", repoRef(repo, branch)), h("form", { class: "ref-chooser" }, h("label", null, "branch ", sel)),
    h("p", { class: "meta" }, "against the head ", st.head ? link("commit", { repo, ref: st.head }, shortId(st.head)) : "(no commits yet)",
      " · read-only: commit or discard with ", h("code", null, "trunkfs commit"), " / ", h("code", null, "trunkfs discard")));
  if (!st.changes.length) {
    page.append(h("p", { class: "empty" }, "Nothing staged."));
    return;
  }
  page.append(table(["", "Path"], st.changes.map((c) => [statusBadge(c.status), h("span", { class: "name" }, show(c.path))]),
    { class: "staged" }));
}
