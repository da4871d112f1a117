"""The web console in a real headless browser: Debian's chromium driven by
playwright (the browser comes from the distribution; nothing is downloaded
at run time), against a real daemon serving ``--http``.

It opens the console with the token ``trunkfs console`` prints, sees a
repo and its history (a merge drawn as two lines joining, a new commit
showing up live), browses to a file at an older commit and reads its
preview, previews CSV, PNG and Parquet files, opens a diff and a file's
text diff, sees the pipeline DAG with a failed job in red and reads the
stderr that job's command wrote; it is refused without a token, and another
user's token does not show a repo that user may not read.  Hostile names
render as text.  A screenshot of each page is saved under
``$TRUNKFS_ARTIFACTS/console`` (default: the temp dir's trunkfs-artifacts)."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import log_problems, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("TRUNKFS_ARTIFACTS", tempfile.gettempdir() + "/trunkfs-artifacts")) / "console"
NOBODY = 65534
HOSTILE = "<img src=x onerror=alert(1)>.txt"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"Debian's chromium is not installed ({CHROMIUM}): apt-get install chromium")


# -- the browser and the daemon ----------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def console_daemon(daemon_factory: Any, *extra: str) -> tuple[Any, str]:
    """A daemon serving the console; it and its base URL."""
    port = free_port()
    d = daemon_factory(extra=["--http", f"127.0.0.1:{port}", *extra])
    return d, f"http://127.0.0.1:{port}"


def console_url(d: Any) -> str:
    out = d.cli("console").out
    found = re.search(r"http://\S+/\?token=\S+", out)
    assert found, out
    return found.group(0)


class Console:
    """One browser context (its own cookies) on the console, failing on
    script errors and on anything the page's CSP refused."""

    def __init__(self, browser: Any, base: str, name: str) -> None:
        self.base = base
        self.name = name
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("console", self._console)
        self.page.on("dialog", self._dialog)

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and "Content Security Policy" in msg.text:
            self.problems.append(f"CSP: {msg.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, url: str) -> Any:
        """Open a token URL: the cookie is set, the repos page renders."""
        resp = self.page.goto(url)
        self.wait("repos")
        assert "token=" not in self.page.url      # the redirect took it out of the address bar
        return resp

    def wait(self, route: str) -> None:
        try:
            self.page.wait_for_selector(f"body[data-ready='{route}']")
        except Exception as exc:
            self.shot(f"timeout-{route}")
            raise AssertionError(f"the {route} page did not render: at {self.page.url}, "
                                 f"ready={self.page.evaluate('document.body.dataset.ready')!r}, "
                                 f"page: {self.page.inner_text('main')[:500]!r}") from exc

    def go(self, hash_: str) -> None:
        """Navigate to a route (#/name/SEGMENTS?params, docs/console.md) and wait until it rendered."""
        self.page.evaluate("h => { delete document.body.dataset.ready; if (location.hash === h) "
                           "window.dispatchEvent(new HashChangeEvent('hashchange')); else location.hash = h; }", hash_)
        self.wait(hash_.lstrip("#/").split("?")[0].split("/")[0] or "repos")

    def click(self, locator: Any, route: str) -> None:
        """Click a link and wait until the page it leads to rendered."""
        self.page.evaluate("delete document.body.dataset.ready")
        locator.click()
        self.wait(route)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def no_error(self) -> None:
        errors = self.page.locator(".error")
        assert errors.count() == 0, errors.all_inner_texts()

    def shot(self, what: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{what}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        assert not self.problems, self.problems
        assert not self.dialogs, f"a script ran from data: {self.dialogs}"


@pytest.fixture
def consoles(browser: Any) -> Iterator[Any]:
    opened: list[Console] = []

    def make(base: str, name: str) -> Console:
        c = Console(browser, base, name)
        opened.append(c)
        return c
    yield make
    for c in opened:
        c.close()


# -- test data -------------------------------------------------------------------------

def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour, written by hand (zlib and struct only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                             "species": ["alpaca", "bison", "capybara"],
                             "weight": [61.5, 900.0, 50.25]}), path)


def wait_for_jobs(d: Any, n: int) -> list[dict]:
    """Wait until ``n`` jobs exist and none is queued or running."""
    def done() -> list[dict] | None:
        jobs = d.cli("job", "list", "--json").json()
        return jobs if len(jobs) >= n and all(j["state"] not in ("queued", "running") for j in jobs) else None
    return wait_for(done, 60, f"{n} finished jobs", interval=0.2)


def rgb(css: str) -> tuple[int, ...]:
    found = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, [\d.]+)?\)", css)
    assert found, css
    return tuple(int(x) for x in found.groups())


# -- the tests ----------------------------------------------------------------------------

def test_console_shows_repos_history_files_previews_and_diffs(daemon_factory: Any, workdir: Path,
                                                              consoles: Any) -> None:
    d, base = console_daemon(daemon_factory)
    src = workdir / "src"
    src.mkdir()
    d.cli("repo", "create", "raw")
    (src / "notes.txt").write_text("the first version of the notes\n")
    (src / "table.csv").write_text("city,population\nLyon,522250\nNantes,320732\n")
    (src / "pixel.png").write_bytes(png(3, 2, (200, 30, 30)))
    parquet(src / "animals.parquet")
    (src / HOSTILE).write_text("a hostile name, shown as text\n")
    latin1 = os.fsencode(src) + b"/caf\xe9.txt"          # a name that is not UTF-8
    with open(latin1, "wb") as f:
        f.write(b"bytes of a Latin-1 name\n")
    first = d.cli("put", "raw", *[str(p) for p in sorted(src.iterdir())], "-m", "first import").out.strip()
    (src / "notes.txt").write_text("the second version of the notes\n")
    d.cli("put", "raw", str(src / "notes.txt"), "-m", "notes, again")
    d.cli("branch", "create", "raw@dev")
    (src / "feature.txt").write_text("made on dev\n")
    d.cli("put", "raw@dev", str(src / "feature.txt"), "-m", "a feature on dev")
    (src / "main.txt").write_text("made on main\n")
    d.cli("put", "raw", str(src / "main.txt"), "-m", "meanwhile on main")
    d.cli("merge", "raw@dev", "-m", "merge dev into main")
    (src / "staged.txt").write_text("staged, not committed\n")
    with d.client() as client:
        client.stage_files("raw", [("/staged.txt", str(src / "staged.txt"))])

    c = consoles(base, "main")
    c.open(console_url(d))
    row = c.page.locator("tr[data-repo='raw']")
    assert "dev" in row.inner_text() and "main" in row.inner_text()
    assert "merge dev into main" in row.inner_text()
    assert re.search(r"\d+(\.\d)? (B|KiB)", row.locator("td.num").inner_text())
    assert "(uid 0)" in c.text("#who")
    c.no_error()
    c.shot("repos")

    # history: the merge joins two lines; a new commit appears without a reload
    c.click(row.locator("a", has_text="raw").first, "history")
    commits = c.page.locator("tr.commit")
    assert commits.count() == 5
    merge = c.page.locator("tr.commit[data-parents='2']")
    assert merge.count() == 1 and "merge dev into main" in merge.inner_text()
    assert merge.locator("path.out").count() == 2       # lines to both parents
    lanes = {c.page.locator("tr.commit").nth(i).locator("circle").get_attribute("cx") for i in range(5)}
    assert len(lanes) == 2                               # the dev commit has a lane of its own
    c.page.evaluate("window.notReloaded = true")
    (src / "live.txt").write_text("live\n")
    d.cli("put", "raw", str(src / "live.txt"), "-m", "arrives live")
    c.page.locator("tr.commit", has_text="arrives live").wait_for()
    assert c.page.evaluate("window.notReloaded") is True
    assert commits.count() == 6
    c.shot("history")
    c.go("#/history/raw/main?limit=2")                   # pages: "More" loads the next one
    assert commits.count() == 2
    c.page.locator("button.more").click()
    c.page.wait_for_function("() => document.querySelectorAll('tr.commit').length === 4")

    # a file at an older commit: the text of then, not of now
    c.go("#/history/raw/main")
    c.click(c.page.locator("tr.commit", has_text="first import").locator("a", has_text="files"), "tree")
    assert c.page.locator(".pager .range").inner_text() == "entries 1–6 of 6"
    c.shot("tree-old")
    c.click(c.page.locator("table.tree a", has_text="notes.txt"), "file")
    assert c.text(".preview pre.text") == "the first version of the notes\n"
    assert first[:12] in c.text(".meta")
    c.shot("file-old")
    c.go("#/file/raw/main/notes.txt")
    assert c.text(".preview pre.text") == "the second version of the notes\n"
    # the download link gives the file's bytes
    link = c.page.locator("a.download").get_attribute("href")
    assert link and "download=1" in link
    got = c.context.request.get(base + link)
    assert got.status == 200 and got.body() == b"the second version of the notes\n"

    # paged directories: two entries a page
    c.go("#/tree/raw/main?limit=2")
    assert c.text(".pager .range") == "entries 1–2 of 9"
    c.click(c.page.locator(".pager a.next"), "tree")
    assert c.text(".pager .range") == "entries 3–4 of 9"
    c.click(c.page.locator(".pager a.prev"), "tree")
    assert c.text(".pager .range") == "entries 1–2 of 9"

    # CSV as a table, an image, a Parquet file's schema and first rows
    c.go("#/tree/raw/main")
    c.click(c.page.locator("table.tree a", has_text="table.csv"), "file")
    assert c.page.locator("table.csv th").all_inner_texts() == ["city", "population"]
    assert c.page.locator("table.csv tbody tr").nth(1).locator("td").all_inner_texts() == ["Nantes", "320732"]
    c.shot("file-csv")
    c.go("#/file/raw/main/pixel.png")
    c.page.wait_for_function("() => document.querySelector('img.image').complete")
    assert c.page.evaluate("document.querySelector('img.image').naturalWidth") == 3
    c.shot("file-png")
    c.go("#/file/raw/main/animals.parquet")
    schema = c.page.locator("table.schema tbody tr")
    assert [schema.nth(i).locator("td").all_inner_texts() for i in range(schema.count())] == \
        [["id", "int64"], ["species", "string"], ["weight", "double"]]
    rows = c.page.locator("table.rows tbody tr")
    assert rows.count() == 3 and rows.nth(2).locator("td").all_inner_texts() == ["3", "capybara", "50.25"]
    c.no_error()
    c.shot("file-parquet")

    # hostile and non-UTF-8 names: text, and links that reach them
    c.go("#/tree/raw/main")
    hostile = c.page.locator("table.tree a.file", has_text="onerror")
    assert hostile.inner_text() == HOSTILE
    assert c.page.locator("main img").count() == 0
    latin = c.page.locator("table.tree a.file", has_text="caf")
    assert latin.inner_text() == "caf\\xe9.txt"
    c.click(latin, "file")
    assert c.text(".preview pre.text") == "bytes of a Latin-1 name\n"
    c.go("#/tree/raw/main")
    c.click(c.page.locator("table.tree a.file", has_text="onerror"), "file")
    assert c.text(".preview pre.text") == "a hostile name, shown as text\n"
    assert HOSTILE in c.text("h1")
    c.shot("file-hostile")

    # a diff between two refs, then the text diff of the modified file
    c.go("#/diff/raw")
    c.page.fill("input[name=from]", first[:12])
    c.page.fill("input[name=to]", "main")
    c.page.evaluate("delete document.body.dataset.ready")
    c.page.click("form.diff-form button")
    c.wait("diff")
    changes = {li.get_attribute("data-status") + " " + li.locator("a").first.inner_text()
               for li in c.page.locator("ul.changes li").all()}
    assert changes == {"M /notes.txt", "A /feature.txt", "A /main.txt", "A /live.txt"}
    assert "4 changes: 3 added, 1 modified, 0 deleted" in c.text("p.meta")
    c.click(c.page.locator("ul.changes li[data-status=M] a").first, "diff")
    assert c.page.locator("pre.udiff .del").all_inner_texts() == ["-the first version of the notes\n"]
    assert c.page.locator("pre.udiff .add").all_inner_texts() == ["+the second version of the notes\n"]
    added = rgb(c.page.eval_on_selector("pre.udiff .add", "e => getComputedStyle(e).backgroundColor"))
    assert added[1] > added[0] and added[1] > added[2]   # green
    c.no_error()
    c.shot("diff")
    c.go(f"#/diff/raw?from={first}&to=main&limit=3")     # a page of the changes
    assert c.page.locator("ul.changes li").count() == 3 and c.text(".pager .range") == "changes 1–3 of 4"
    c.click(c.page.locator(".pager a.next"), "diff")
    assert c.page.locator("ul.changes li").count() == 1

    # staged changes of a branch, and a commit's page
    c.go("#/status/raw/main")
    assert c.page.locator("table.staged tbody tr").all_inner_texts() == ["A\t/staged.txt"]
    c.shot("status")
    c.go(f"#/commit/raw/{first}")
    assert "first import" in c.text("dl.facts") and "/notes.txt" in c.text("ul.changes")
    c.no_error()
    c.shot("commit")


@pytest.mark.allow_warnings    # the daemon logs the failed job as a warning (checked below)
def test_dag_shows_the_failed_job_in_red_and_its_stderr(daemon_factory: Any, workdir: Path, consoles: Any) -> None:
    d, base = console_daemon(daemon_factory)
    d.cli("repo", "create", "raw")
    pipelines = [
        {"name": "upper", "input": {"repo": "raw", "glob": "/*"},
         "transform": {"cmd": ["/bin/sh", "-c", 'for f in "$TRUNKFS_INPUT"/*; do '
                                                'tr a-z A-Z < "$f" > "$TRUNKFS_OUTPUT/$(basename "$f")"; done']}},
        {"name": "explode", "input": {"repo": "upper", "glob": "/"},
         "transform": {"cmd": ["/bin/sh", "-c", 'echo "explode: cannot parse $(ls "$TRUNKFS_INPUT")" >&2; '
                                                'echo "to stdout"; exit 7']}},
    ]
    for spec in pipelines:
        (workdir / "p.json").write_text(json.dumps(spec))
        d.cli("pipeline", "create", "-f", str(workdir / "p.json"))
    (workdir / "in.txt").write_text("hello\n")
    d.cli("put", "raw", str(workdir / "in.txt"), "-m", "input")
    jobs = {j["pipeline"]: j for j in wait_for_jobs(d, 2)}
    assert jobs["upper"]["state"] == "succeeded" and jobs["explode"]["state"] == "failed"

    c = consoles(base, "dag")
    c.open(console_url(d))
    c.go("#/dag")
    failed = c.page.locator("svg.dag g.node[data-id='pipeline:explode']")
    assert "state-failed" in (failed.get_attribute("class") or "")
    r, g, b = rgb(failed.locator("rect").evaluate("e => getComputedStyle(e).fill"))
    assert r > 170 and g < 90 and b < 90, (r, g, b)      # a clear red
    ok = c.page.locator("svg.dag g.node[data-id='pipeline:upper']")
    r, g, b = rgb(ok.locator("rect").evaluate("e => getComputedStyle(e).fill"))
    assert g > r and g > b, (r, g, b)                    # green
    assert c.page.locator("svg.dag path.dag-edge").count() == 4
    assert c.page.locator("ul.legend .swatch.state-failed").count() == 1
    c.shot("dag")

    # the DAG follows the jobs live: a new commit, the pipelines run again
    before = int(c.page.evaluate("document.body.dataset.refreshes || '0'"))
    (workdir / "more.txt").write_text("more\n")
    d.cli("put", "raw", str(workdir / "more.txt"), "-m", "more input")
    c.page.wait_for_function(f"() => Number(document.body.dataset.refreshes || 0) > {before}")

    # the failed pipeline, its job, the stderr its command wrote
    c.click(c.page.locator("svg.dag a:has(g[data-id='pipeline:explode'])"), "pipeline")
    assert "exit 7" in c.text("pre.spec")
    c.page.locator("table.jobs tbody tr").first.wait_for()
    c.shot("pipeline")
    wait_for_jobs(d, 4)
    c.go("#/pipeline/explode")
    assert c.page.locator("table.jobs tbody tr").count() == 2
    assert c.page.locator("table.versions tbody tr").all_inner_texts()[0].startswith("v1")
    c.click(c.page.locator("table.jobs tbody tr").last.locator("a", has_text=jobs["explode"]["id"]), "job")
    assert "failed" in c.text("h1")
    assert "exited with 7" in c.text(".job-error")
    stderr = c.page.locator("details.datum-log[data-datum='0'] pre.stderr")
    assert "explode: cannot parse in.txt" in stderr.inner_text()
    assert c.page.locator("details.datum-log[data-datum='0'] pre.stdout").inner_text() == "to stdout\n"
    datum = c.page.locator("table.datums tbody tr[data-datum='0']").locator("td").all_inner_texts()
    assert datum[3] == "1" and "exited with 7" in datum[9]    # attempts, error
    assert c.page.locator("dd.input a").first.get_attribute("href").startswith("#/commit/upper/")
    c.no_error()
    c.shot("job-failed")

    # a job's output commit, and that commit's provenance back to its input
    c.go(f"#/job/{jobs['upper']['id']}")
    c.click(c.page.locator("dd.output a").first, "commit")
    assert "pipeline upper" in c.text("dl.facts")
    upstream = c.page.locator("table.upstream a").first
    assert upstream.inner_text().startswith("raw@")
    c.click(upstream, "commit")
    assert "input" in c.text("dd.message")
    c.shot("commit-provenance")

    expected = re.compile(r"job \S+ of pipeline explode failed")
    assert [p for p in log_problems(d.log()) if not expected.search(p)] == []


def test_no_token_and_another_users_token_are_refused(daemon_factory: Any, workdir: Path, consoles: Any) -> None:
    d, base = console_daemon(daemon_factory, "--socket-group", "nogroup")
    for p in (workdir, workdir / "d", workdir / "d" / "sock"):
        os.chmod(p, 0o755)
    src = workdir / "src"
    src.mkdir()
    (src / "open.txt").write_text("for everyone\n")
    (src / "plans.txt").write_text("for root only\n")
    d.cli("repo", "create", "public")
    d.cli("put", "public", str(src / "open.txt"))
    d.cli("repo", "create", "secret")
    d.cli("put", "secret", str(src / "plans.txt"))
    d.cli("repo", "acl", "secret", "--revoke", "everyone")

    # no token: the page and the API say so
    anon = consoles(base, "anon")
    resp = anon.page.goto(base + "/")
    assert resp.status == 401 and "needs a token" in anon.page.inner_text("body")
    assert "trunkfs console" in anon.page.inner_text("body")
    anon.shot("no-token")
    api = anon.context.request.get(base + "/api/repos")
    assert api.status == 401 and api.json()["error"]["code"] == "unauthorized"
    assert anon.context.request.get(base + "/api/raw?repo=secret&path=/plans.txt").status == 401
    assert anon.page.goto(base + "/?token=not-a-token").status == 401

    # nobody's token: the public repo, not the secret one
    reply = subprocess.run(["/usr/bin/python3", "-I", "-c",
                            "import json, socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                            "s.sendall(b'{\"op\": \"console\", \"args\": {}}\\n'); print(s.makefile().readline())",
                            d.socket], user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, timeout=60,
                           cwd="/")
    assert reply.returncode == 0, reply.stderr
    issued = json.loads(reply.stdout)["result"]
    assert issued["uid"] == NOBODY
    other = consoles(base, "nobody")
    other.open(issued["url"])
    assert f"(uid {NOBODY})" in other.text("#who")
    assert other.page.locator("tr[data-repo='public']").count() == 1
    assert other.page.locator("tr[data-repo='secret']").count() == 0
    other.shot("repos")
    for call in ("tree?repo=secret&path=/", "graph?repo=secret", "preview?repo=secret&path=/plans.txt",
                 "raw?repo=secret&path=/plans.txt&download=1", "refs?repo=secret"):
        got = other.context.request.get(f"{base}/api/{call}")
        assert got.status in (403, 404), (call, got.status)
        assert b"for root only" not in got.body()
    assert other.context.request.get(base + "/api/preview?repo=public&path=/open.txt").json()["text"] == "for everyone\n"
    other.go("#/file/secret/main/plans.txt")
    box = other.page.locator(".error")
    assert box.count() == 1 and box.get_attribute("data-status") in ("403", "404")
    assert "for root only" not in other.page.inner_text("main")
    other.shot("refused")

    # root's token sees the secret; revoked, the page says to get a new one
    root = consoles(base, "root")
    root.open(console_url(d))
    assert root.page.locator("tr[data-repo='secret']").count() == 1
    d.cli("console", "--revoke")
    root.go("#/tree/secret/main")
    assert root.page.locator(".error").get_attribute("data-status") == "401"
    assert "trunkfs console" in root.text(".error")
    root.shot("revoked")
