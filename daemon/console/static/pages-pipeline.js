// The pages of pipelines: the DAG, a pipeline (spec, versions, jobs) and a
// job (state, error, input and output commits, datums with stats and logs).

import { dagSvg, legend } from "./dag.js";
import { api, errorBox, h, human, link, secs, shortId, show, stateBadge, table, time, when } from "./util.js";

const LOGS_AT_ONCE = 200; // datums of a job whose logs load with the page; more: one by one

function commitLink(repo, id) {
  if (!id) return h("span", { class: "muted" }, "none");
  return link("commit", { repo, ref: id }, h("span", { class: "name" }, show(repo)), "@", shortId(id));
}

function datumCounts(d) {
  if (!d) return "";
  return `${d.processed} processed, ${d.skipped} skipped, ${d.failed} failed of ${d.total}`;
}

// -- the DAG -----------------------------------------------------------------------

export async function dag(page) {
  const d = await api("dag");
  page.append(h("h1", null, "Pipelines"));
  const pipelines = d.nodes.filter((n) => n.kind === "pipeline");
  if (!d.nodes.length) {
    page.append(h("p", { class: "empty" }, "No repos or pipelines you may see."));
    return;
  }
  page.append(h("div", { class: "dag-box" }, dagSvg(d)), legend());
  if (!pipelines.length) {
    page.append(h("p", { class: "empty" }, "No pipelines yet: create one with ", h("code", null, "trunkfs pipeline create -f SPEC.json"), "."));
    return;
  }
  const inputs = new Map(), outputs = new Map();
  for (const e of d.edges) {
    if (e.to.startsWith("pipeline:")) inputs.set(e.to, e.from.slice(5));
    if (e.from.startsWith("pipeline:")) outputs.set(e.from, e.to.slice(5));
  }
  page.append(h("h2", null, "Last jobs"), table(["Pipeline", "Input", "Output", "Last job", "State"],
    pipelines.map((p) => h("tr", { dataset: { pipeline: p.name } },
      h("td", null, link("pipeline", { name: p.name }, h("span", { class: "name" }, show(p.name)))),
      h("td", null, inputs.has(p.id) ? link("history", { repo: inputs.get(p.id) }, show(inputs.get(p.id))) : ""),
      h("td", null, outputs.has(p.id) ? link("history", { repo: outputs.get(p.id) }, show(outputs.get(p.id))) : ""),
      h("td", null, p.job ? link("job", { id: p.job }, h("code", { class: "id" }, p.job)) : h("span", { class: "muted" }, "none")),
      h("td", null, stateBadge(p.state)))), { class: "last-jobs" }));
}

// -- a pipeline ---------------------------------------------------------------------

export async function pipeline(page, params) {
  const got = await api("pipeline", { name: params.name });
  const p = got.pipeline;
  const spec = p.spec;
  const jobs = got.jobs; // newest first
  page.append(h("h1", null, "Pipeline ", h("span", { class: "name" }, show(spec.name)), " ",
    stateBadge(jobs.length ? jobs[0].state : null)));
  page.append(h("dl", { class: "facts" },
    h("dt", null, "input"), h("dd", null, link("history", { repo: spec.input.repo, ref: spec.input.branch },
      h("span", { class: "name" }, show(spec.input.repo)), "@", show(spec.input.branch || "main")),
    " glob ", h("code", null, show(spec.input.glob))),
    h("dt", null, "output"), h("dd", null, link("history", { repo: spec.output }, h("span", { class: "name" }, show(spec.output)))),
    h("dt", null, "version"), h("dd", null, `${p.version} (updated ${when(p.updated)})`),
    h("dt", null, "owner"), h("dd", null, `uid ${p.owner.uid}, gid ${p.owner.gid}`),
    h("dt", null, "created"), h("dd", null, when(p.created)),
    h("dt", null, "id"), h("dd", null, h("code", { class: "id" }, p.id || ""))));
  // every recorded version (its spec and when it was made), with the jobs each ran
  const versions = new Map();
  for (const v of got.versions || [p]) versions.set(v.version, { record: v, jobs: [] });
  for (const j of jobs) {
    if (!versions.has(j.version)) versions.set(j.version, { record: null, jobs: [] });
    versions.get(j.version).jobs.push(j);
  }
  const vrows = [...versions.entries()].sort((a, b) => b[0] - a[0]).map(([v, info]) => {
    const last = info.jobs[0];
    const rec = info.record;
    return h("tr", { dataset: { version: v } },
      h("td", null, `v${v}`, v === p.version ? h("span", { class: "chip" }, "current") : null),
      h("td", null, rec ? when(rec.updated) : h("span", { class: "muted" }, "not recorded")),
      h("td", { class: "num" }, String(info.jobs.length)),
      h("td", null, last ? [link("job", { id: last.id }, h("code", { class: "id" }, last.id)), " ", stateBadge(last.state)] : ""),
      h("td", null, rec ? h("details", null, h("summary", null, "spec"),
        h("pre", { class: "version-spec" }, JSON.stringify(rec.spec, null, 2))) : ""));
  });
  page.append(h("h2", null, "Versions"), table(["Version", "Made", "Jobs", "Last job", "Spec"], vrows, { class: "versions" }));
  page.append(h("h2", null, "Spec"), h("pre", { class: "spec" }, JSON.stringify(spec, null, 2)));
  page.append(h("h2", null, `Jobs (${jobs.length})`));
  if (!jobs.length) {
    page.append(h("p", { class: "muted" }, "No jobs yet: one runs on the next commit to the input branch."));
    return;
  }
  page.append(table(["Job", "Version", "State", "Input", "Output", "Datums", "Started", "Took"], jobs.map((j) => h("tr", { dataset: { job: j.id, state: j.state } },
    h("td", null, link("job", { id: j.id }, h("code", { class: "id" }, j.id))),
    h("td", null, `v${j.version}`),
    h("td", null, stateBadge(j.state)),
    h("td", null, commitLink(j.input.repo, j.input.commit)),
    h("td", null, commitLink(j.output, j.output_commit)),
    h("td", null, datumCounts(j.datums)),
    h("td", { class: "when" }, time(j.started || j.created)),
    h("td", { class: "num" }, j.duration !== undefined && j.duration !== null ? secs(j.duration) : ""))), { class: "jobs" }));
}

// -- a job ----------------------------------------------------------------------------

export async function job(page, params, state) {
  const j = await api("job", { id: params.id });
  const total = (j.datums && j.datums.total) || 0;
  let logs = null;
  if (total <= LOGS_AT_ONCE) {
    try {
      logs = (await api("job/logs", { id: j.id })).logs;
    } catch (err) {
      page.append(errorBox(err));
    }
  }
  page.prepend(h("h1", null, "Job ", h("code", { class: "id" }, j.id), " of ",
    link("pipeline", { name: j.pipeline }, h("span", { class: "name" }, show(j.pipeline))), " ", stateBadge(j.state)));
  if (j.error) page.append(h("div", { class: "job-error" }, h("strong", null, "failed: "), j.error));
  const st = j.stats || {};
  page.append(h("dl", { class: "facts" },
    h("dt", null, "state"), h("dd", { class: "state" }, stateBadge(j.state)),
    h("dt", null, "pipeline"), h("dd", null, link("pipeline", { name: j.pipeline }, show(j.pipeline)), ` v${j.version}`),
    h("dt", null, "input"), h("dd", { class: "input" }, commitLink(j.input.repo, j.input.commit), ` (branch ${show(j.input.branch)}) · `,
      link("tree", { repo: j.input.repo, ref: j.input.commit }, "files")),
    h("dt", null, "output"), h("dd", { class: "output" }, commitLink(j.output, j.output_commit),
      j.output_commit ? [" · ", link("tree", { repo: j.output, ref: j.output_commit }, "files")] : null),
    h("dt", null, "datums"), h("dd", null, datumCounts(j.datums)),
    h("dt", null, "time"), h("dd", null, `created ${when(j.created)}`, j.started ? `, started ${when(j.started)}` : "",
      j.finished ? `, finished ${when(j.finished)}` : "", j.duration !== undefined && j.duration !== null ? ` (${secs(j.duration)})` : ""),
    h("dt", null, "totals"), h("dd", null, `download ${secs(st.download_s || 0)} / ${human(st.download_bytes)}, `,
      `process ${secs(st.process_s || 0)}, upload ${secs(st.upload_s || 0)} / ${human(st.upload_bytes)}`),
    h("dt", null, "workers"), h("dd", null, Object.entries(st.workers || {}).map(([w, n]) => `${w}: ${n}`).join(", ") || "–"),
    (j.downstream_jobs || []).length ? [h("dt", null, "downstream"),
      h("dd", null, j.downstream_jobs.map((id, i) => [i ? ", " : "", link("job", { id }, h("code", { class: "id" }, id))]))] : null));

  const stats = j.datum_stats || {};
  const keys = [...new Set([...Object.keys(stats), ...Object.keys(logs || {})])].sort((a, b) => Number(a) - Number(b));
  page.append(h("h2", null, `Datums (${total})`));
  if (!keys.length) {
    page.append(h("p", { class: "muted" }, total ? "No datum has run yet." : "No datums."));
    return;
  }
  const logBoxes = h("div", { class: "logs" });
  const rows = keys.map((k) => {
    const d = stats[k] || (logs && logs[k] && logs[k].stats) || {};
    const paths = d.paths || (logs && logs[k] && logs[k].paths) || [];
    const error = d.error || (logs && logs[k] && logs[k].error) || "";
    const attempts = d.attempts ?? (logs && logs[k] && logs[k].attempts);
    const more = paths.length > 3 ? ` and ${paths.length - 3} more` : "";
    const show_ = h("button", { type: "button", class: "link" }, "logs");
    show_.addEventListener("click", () => {
      const box = document.getElementById(`datum-${k}`);
      if (box) {
        box.open = true;
        box.scrollIntoView({ block: "nearest" });
      }
    });
    let cell = h("td", null, show_);
    if (!logs) {
      const btn = h("button", { type: "button" }, "logs");
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        try {
          const got = await api("job/logs", { id: j.id, datum: k });
          logBoxes.append(logBox(k, got.logs[k] || {}, true));
        } catch (err) {
          logBoxes.append(errorBox(err));
        }
      });
      cell = h("td", null, btn);
    }
    return h("tr", { dataset: { datum: k }, class: error ? "failed" : null },
      h("td", { class: "num" }, k),
      h("td", { class: "paths" }, paths.slice(0, 3).map((p) => show(p)).join(", ") + more),
      h("td", null, d.worker || ""),
      h("td", { class: "num" }, attempts ?? ""),
      h("td", { class: "num" }, secs(d.download_s)),
      h("td", { class: "num" }, d.download_bytes !== undefined ? human(d.download_bytes) : ""),
      h("td", { class: "num" }, secs(d.process_s)),
      h("td", { class: "num" }, secs(d.upload_s)),
      h("td", { class: "num" }, d.upload_bytes !== undefined ? human(d.upload_bytes) : ""),
      h("td", { class: error ? "err" : "" }, error),
      cell);
  });
  page.append(table(["#", "Paths", "Worker", "Attempts", "Download", "Bytes in", "Process", "Upload", "Bytes out", "Error", ""], rows,
    { class: "datums" }));
  page.append(h("h2", null, "Logs"), logBoxes);
  if (logs) {
    state.open = state.open || {};
    for (const k of keys) {
      if (logs[k]) logBoxes.append(logBox(k, logs[k], keys.length <= 5 || Boolean(logs[k].error) || state.open[k], state));
    }
  } else {
    logBoxes.append(h("p", { class: "muted" }, "Many datums: open the logs of one with its button."));
  }
}

/** One datum's logs: stdout and stderr in <pre>. */
function logBox(k, l, open, state) {
  const box = h("details", { class: "datum-log", id: `datum-${k}`, dataset: { datum: k }, open: open || null },
    h("summary", null, `datum ${k}`, l.exit !== undefined && l.exit !== null ? ` · exit ${l.exit}` : "",
      l.error ? h("span", { class: "err" }, ` · ${l.error}`) : "",
      ` · ${(l.paths || []).slice(0, 3).map((p) => show(p)).join(", ")}${(l.paths || []).length > 3 ? " …" : ""}`),
    h("h4", null, "stdout"), h("pre", { class: "stdout" }, l.stdout || ""),
    h("h4", null, "stderr"), h("pre", { class: "stderr" }, l.stderr || ""));
  if (state) box.addEventListener("toggle", () => { state.open[k] = box.open; });
  return box;
}
