#!/usr/bin/env python3
"""Console benchmark: how long the web console's pages take to render in
Debian's chromium (driven by playwright), for a repo with N commits
(default 10,000, with a merge every 500) and a directory of M entries
(default 100,000, shown a page at a time), in one run.

For each page: the median of R in-app navigations (hash change to the
page's ``data-ready`` mark: the API calls and the drawing), and the same
information from the CLI a user would run instead (`trunkfs log -n 100`,
`trunkfs ls`, ...), with the ratio page/CLI.  Target: every page under
300 ms.

  repos_ms, history_ms, tree_ms, file_ms, diff_ms, dag_ms, job_ms
  first_load_ms   the page opened from the token URL (HTML, script, first page)
  max_page_ms     the slowest of the pages (target < 300)

Prints a table and, last, `RESULT key=value ...`.  Progress goes to stderr.

Usage: python bench/console.py [--commits N] [--entries M] [--runs R] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DaemonProcess, cleanup, free_port, log

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_MS = 300.0


def build(d: DaemonProcess, tmp: Path, commits: int, entries: int) -> dict:
    """The repos: ``big`` with ``commits`` commits (a merge of ``dev`` every
    500) and ``/wide`` of ``entries`` files; ``small`` feeding a pipeline."""
    c = d.client()
    c.repo_create("big")
    local = tmp / "one.txt"
    t = time.perf_counter()
    made = 0
    while made < commits:
        local.write_text(f"version {made}\n" + "line\n" * (made % 50))
        if made and made % 500 == 0:
            c.branch_create("big", f"dev{made}", "main")
            c.put_files("big", [(f"/dev/{made}.txt", str(local))], branch=f"dev{made}", message=f"dev {made}")
            made += 1
            c.put_files("big", [("/notes.txt", str(local))], message=f"main {made}")
            made += 1
            c.merge("big", f"dev{made - 2}", message=f"merge dev{made - 2}")
            made += 1
        else:
            c.put_files("big", [("/notes.txt", str(local))], message=f"commit {made}")
            made += 1
        if made % 1000 < 3:
            log(f"  {made} commits, {time.perf_counter() - t:.0f} s")
    wide = tmp / "wide"
    wide.mkdir()
    for i in range(entries):
        (wide / f"f{i:06d}.txt").write_bytes(b"")
    c.put("big", [str(wide)], message="a wide directory")
    log(f"built {made + 1} commits and {entries} entries in {time.perf_counter() - t:.0f} s")
    c.repo_create("small")
    c.pipeline_create({"name": "fails", "input": {"repo": "small", "glob": "/"},
                       "transform": {"cmd": ["/bin/sh", "-c", "echo broken >&2; exit 3"]}, "output": "out"})
    local.write_text("a,b\n1,2\n")
    c.put_files("small", [("/in.csv", str(local))], message="input")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = c.job_list()
        if jobs and all(j.raw["state"] not in ("queued", "running") for j in jobs):
            break
        time.sleep(0.2)
    head = c.show("big").raw["id"]
    old = c.log("big", limit=5000)[-1].raw["id"]
    return {"job": c.job_list()[-1].raw["id"], "head": head, "old": old}


def cli_ms(d: DaemonProcess, *args: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        d.cli(*args)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def browse(url: str, routes: dict[str, str], runs: int) -> tuple[float, dict[str, float]]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            t = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("body[data-ready='repos']", timeout=60_000)
            first = (time.perf_counter() - t) * 1000
            found: dict[str, float] = {}
            for name, route in routes.items():
                times = []
                start, mark = ("#/dag", "dag") if name == "repos" else ("#/", "repos")   # from another page
                for _ in range(runs):
                    page.evaluate("(route) => { location.hash = route; }", start)
                    page.wait_for_selector(f"body[data-ready='{mark}']", timeout=60_000)
                    ms = page.evaluate("""async ([route, name]) => {
                        const t = performance.now();
                        location.hash = route;
                        while (document.body.dataset.ready !== name) {
                            await new Promise(r => requestAnimationFrame(r));
                        }
                        await new Promise(r => requestAnimationFrame(r));   // painted
                        return performance.now() - t;
                    }""", [route, name.split(":")[0]])
                    times.append(ms)
                found[name] = statistics.median(times)
                log(f"  {name}: {found[name]:.0f} ms")
        finally:
            browser.close()
    return first, found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(CHROMIUM):
        print(f"bench/console.py needs Debian's chromium at {CHROMIUM} (setup.sh test installs it)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-console-"))
    port = free_port()
    d = DaemonProcess(tmp, f"file://{tmp / 'state' / 'store'}", extra=["--http", f"127.0.0.1:{port}"],
                      mount=False, log_level="WARNING")
    try:
        d.start(timeout=60)
        ids = build(d, tmp, args.commits, args.entries)
        url = d.cli("console").out.strip()
        routes = {
            "repos": "#/",
            "history": "#/history/big/main",
            "tree": "#/tree/big/main/wide",
            "file": "#/file/big/main/notes.txt",
            "diff": f"#/diff/big?from={ids['old']}&to=main",
            "dag": "#/dag",
            "job": f"#/job/{ids['job']}",
        }
        log("timing the pages in chromium ...")
        first, pages = browse(url, routes, args.runs)
        log("timing the CLI ...")
        cli = {"repos": cli_ms(d, "repo", "list", runs=args.runs),
               "history": cli_ms(d, "log", "big", "-n", "100", runs=args.runs),
               "tree": cli_ms(d, "ls", "big:/wide", runs=args.runs),
               "file": cli_ms(d, "cat", "big:/notes.txt", runs=args.runs),
               "diff": cli_ms(d, "diff", f"big@{ids['old']}", "big@main", runs=args.runs),
               "dag": cli_ms(d, "pipeline", "list", runs=args.runs),
               "job": cli_ms(d, "job", "show", ids["job"], runs=args.runs)}
        print(f"{'page':10} {'console ms':>11} {'CLI ms':>8} {'ratio':>6}")
        for name, ms in pages.items():
            print(f"{name:10} {ms:11.0f} {cli[name]:8.0f} {ms / cli[name]:6.2f}")
        print(f"{'first load':10} {first:11.0f}")
        worst = max(pages.values())
        print(f"slowest page {worst:.0f} ms (target < {TARGET_MS:.0f}): {'met' if worst < TARGET_MS else 'MISSED'}")
        keys = " ".join(f"{name}_ms={ms:.0f}" for name, ms in pages.items())
        ratios = " ".join(f"{name}_ratio_cli={pages[name] / cli[name]:.2f}" for name in pages)
        print(f"RESULT {keys} first_load_ms={first:.0f} max_page_ms={worst:.0f} {ratios} "
              f"commits={args.commits} entries={args.entries}")
    finally:
        d.stop()
        cleanup(tmp, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
