// The trunkfs web console: a single page whose routes live in the URL's
// hash, #/route/SEGMENT/...?name=value (ROUTE_SHAPES in util.js, and
// docs/console.md).  Each route renders into a fresh element that replaces
// the page's content when done; then body[data-ready] names the route
// (tests and the benchmark wait for it).  The history, DAG, pipeline and
// job pages render again, debounced, when /api/events reports a commit or
// a job of theirs.

import { api, errorBox, h, href, link, parseRoute, show } from "./util.js";
import * as repoPages from "./pages-repo.js";
import * as pipelinePages from "./pages-pipeline.js";

const ROUTES = {
  repos: repoPages.repos,
  history: repoPages.history,
  commit: repoPages.commit,
  tree: repoPages.tree,
  file: repoPages.file,
  diff: repoPages.diff,
  status: repoPages.status,
  dag: pipelinePages.dag,
  pipeline: pipelinePages.pipeline,
  job: pipelinePages.job,
};
const LIVE_DELAY = 400; // ms: events closer together than this render once

const main = document.getElementById("main");
const repoNav = document.getElementById("repo-nav");
let current = null; // {name, params, state, gen}
let generation = 0;

/** Render the route of the hash (a navigation: the page starts over). */
async function navigate() {
  const { name, params } = parseRoute(location.hash);
  delete document.body.dataset.ready;
  current = { name, params, state: {}, gen: ++generation };
  updateNav(name, params);
  main.setAttribute("aria-busy", "true");
  await render(current, false);
}

/** Render the current route into a fresh element and swap it in, unless
 *  another navigation began meanwhile. */
async function render(route, live) {
  const fn = ROUTES[route.name];
  const page = h("div", { class: `page page-${route.name}` });
  const seq = (route.seq = (route.seq || 0) + 1);
  document.title = `trunkfs · ${route.name}`;
  try {
    if (!fn) throw new Error(`no page ${route.name}: see the links above`);
    await fn(page, route.params, route.state);
  } catch (err) {
    page.append(errorBox(err));
  }
  if (route !== current || seq !== route.seq) return; // left, or rendered again, meanwhile
  const y = window.scrollY;
  main.replaceChildren(page);
  main.removeAttribute("aria-busy");
  if (live) {
    window.scrollTo(0, y);
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  } else {
    route.done = true;
    document.body.dataset.ready = route.name;
  }
}

function updateNav(name, params) {
  for (const a of document.querySelectorAll("#nav a[data-route]")) {
    a.classList.toggle("active", a.dataset.route === name);
  }
  const repo = params.repo;
  if (!repo) {
    repoNav.replaceChildren();
    return;
  }
  const ref = params.ref || params.branch || params.to || "main";
  const branch = params.branch || (params.ref && !/^[0-9a-f]{12,64}$/.test(params.ref) ? params.ref : "main");
  const items = [
    ["history", "History", { repo, ref }],
    ["tree", "Files", { repo, ref }],
    ["diff", "Diff", { repo, to: ref }],
    ["status", "Staged", { repo, branch }],
  ];
  repoNav.replaceChildren(h("span", { class: "repo-name" }, show(repo)),
    ...items.map(([route, text, p]) => {
      const a = link(route, p, text);
      if (route === name) a.classList.add("active");
      return a;
    }));
}

// -- live updates ----------------------------------------------------------------

let timer = null;

/** Whether an event concerns the page shown. */
function concerns(route, ev) {
  const p = route.params;
  switch (route.name) {
    case "repos":
      return ev.type === "commit";
    case "history":
      return ev.type === "commit" && ev.repo === p.repo;
    case "dag":
      return ev.type === "job" || ev.type === "commit";
    case "pipeline":
      return ev.type === "job" && ev.pipeline === p.name;
    case "job":
      return ev.type === "job" && ev.id === p.id;
    default:
      return false;
  }
}

function onEvent(ev) {
  if (!current || !current.done || !concerns(current, ev)) return;
  const route = current;
  clearTimeout(timer);
  timer = setTimeout(() => {
    if (route === current) render(route, true);
  }, LIVE_DELAY);
}

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  const parse = (e) => {
    try {
      onEvent(JSON.parse(e.data));
    } catch (err) {
      console.error("bad event", err);
    }
  };
  source.addEventListener("commit", parse);
  source.addEventListener("job", parse);
  source.addEventListener("message", parse);
  source.onopen = () => {
    live.className = "live on";
    live.title = "live: pages update as commits and jobs happen";
  };
  source.onerror = () => {
    live.className = "live off";
    live.title = "live updates disconnected (retrying)";
  };
}

async function whoami() {
  const who = document.getElementById("who");
  try {
    const me = await api("whoami");
    who.textContent = `${show(me.user)} (uid ${me.uid})`;
  } catch (err) {
    who.replaceChildren(h("span", { class: "error inline" }, err.message));
  }
}

for (const a of document.querySelectorAll("#nav a[data-route]")) a.href = href(a.dataset.route);
window.addEventListener("hashchange", navigate);
whoami();
listen();
navigate();
