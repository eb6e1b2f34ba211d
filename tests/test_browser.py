"""The built book in a real browser: every page of _toc.yml opened in headless Chromium.

For each page: its figures load (every image has a non-zero ``naturalWidth``, and there are
at least as many figures as the chapter's source declares), its theorem-like blocks render as
sphinx-proof admonitions with their labels as anchors, and every internal link resolves to a
file, and anchor, under ``_build/html``. A screenshot of the introduction is kept at
``tests/artifacts/intro.png``.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON), so the test needs no extra Python package and opens
no debugging port. The book is served by ``http.server`` on 127.0.0.1 at a free port; every
other host name resolves to nothing (``--host-resolver-rules``), so the test never touches the
network (CDN scripts such as MathJax simply fail to load).

Run after ``make book``:  ``.venv/bin/python -m pytest tests -m browser``.
Needs ``/usr/bin/chromium`` (Debian: ``apt-get install chromium``) and ``_build/html``.
"""
from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# BOOK_HTML / BOOK_TOC point the test at another build (e.g. one made with --path-output)
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
TOC = Path(os.environ.get("BOOK_TOC", ROOT / "_toc.yml"))
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "",
                             shutil.which("chromium-browser") or "") if p and os.path.exists(p)),
                None)
BASH = shutil.which("bash") or "/bin/bash"
TIMEOUT = 60.0          # seconds for one page to load, or one protocol reply

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None,
                       reason="Chromium not found at /usr/bin/chromium (apt-get install chromium)"),
    pytest.mark.skipif(not (HTML / "index.html").exists(),
                       reason=f"no built book at {HTML} (run `make book` first)"),
    pytest.mark.skipif(not TOC.exists(), reason=f"no table of contents at {TOC}"),
]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--no-default-browser-check", "--window-size=1280,1600",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
         "--remote-debugging-pipe", "about:blank"]


# ------------------------------------------------------------------------------------------
# The pages, and what their sources promise
# ------------------------------------------------------------------------------------------

def toc_files() -> list[str]:
    """Every file of _toc.yml, root first, without extension (e.g. ``book/intro``)."""
    if not TOC.exists():
        return []
    toc = yaml.safe_load(TOC.read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", [{"chapters": toc.get("chapters")}]):
        walk(part.get("chapters"))
    return [str(Path(f).with_suffix("")) for f in files]


PAGES = toc_files()
PRF = re.compile(r"^```+\{prf:(?P<kind>[a-z]+)\}", re.M)
LABEL = re.compile(r"^:label:\s*(?P<label>\S+)", re.M)


def expected(page: str) -> dict:
    """Figures, proof-like directives and their labels declared in the page's source."""
    src = ROOT / f"{page}.md"
    text = src.read_text() if src.exists() else ""
    kinds = [m.group("kind") for m in PRF.finditer(text) if m.group("kind") != "proof"]
    labels = []
    for m in PRF.finditer(text):            # the :label: option right under a directive
        block = text[m.end(): m.end() + 400].split("\n```")[0]
        lab = LABEL.search(block)
        if lab and m.group("kind") != "proof":
            labels.append(lab.group("label"))
    figures = len(re.findall(r"^\s+name:\s*fig-", text, re.M))
    figures += len(re.findall(r"^```+\{figure\}", text, re.M))
    return {"kinds": kinds, "labels": labels, "figures": figures}


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


# ------------------------------------------------------------------------------------------
# A static server and a DevTools client over a pipe
# ------------------------------------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):   # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(_Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, chromium: str, profile: str, log: Path):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        # move the child's ends above fd 10, so that bash (dash only knows fds 0-9) can put
        # them at 3 and 4 without clobbering one with the other
        a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        script = f'exec "$0" "$@" 3<&{a} 4>&{b} {a}<&- {b}>&-'
        self._log = open(log, "wb")
        self.proc = subprocess.Popen([BASH, "-c", script, chromium,
                                      f"--user-data-dir={profile}", *FLAGS],
                                     pass_fds=(a, b), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        os.close(a)
        os.close(b)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from Chromium in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._w, data):]
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        os.close(self._w)
        os.close(self._r)
        self._log.close()


class Tab:
    """One page target: navigate, wait for the load event, evaluate, screenshot."""

    def __init__(self, cdp: DevTools):
        self.cdp = cdp
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = cdp.send("Target.attachToTarget",
                                {"targetId": target, "flatten": True})["sessionId"]
        cdp.send("Page.enable", session=self.session)
        cdp.send("Runtime.enable", session=self.session)

    def open(self, url: str) -> None:
        self.cdp.events = [e for e in self.cdp.events if e.get("sessionId") != self.session]
        nav = self.cdp.send("Page.navigate", {"url": url}, self.session)
        assert "errorText" not in nav, f"{url}: {nav.get('errorText')}"
        self.cdp.wait_event("Page.loadEventFired", self.session)

    def eval(self, expression: str):
        res = self.cdp.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                 "awaitPromise": True}, self.session)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JavaScript error: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.cdp.send("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        path.write_bytes(base64.b64decode(data))


@pytest.fixture(scope="module")
def tab(tmp_path_factory):
    profile = tempfile.mkdtemp(prefix="chromium-profile-")      # a fresh profile every run
    log = tmp_path_factory.mktemp("chromium") / "chromium.log"
    cdp = DevTools(CHROMIUM, profile, log)
    try:
        yield Tab(cdp)
    finally:
        cdp.close()
        shutil.rmtree(profile, ignore_errors=True)


# What the page shows once loaded: images, proof blocks, links (absolute URLs).
PROBE = """(async () => {
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
  return {
    url: location.href,
    title: document.title,
    images: [...document.images].map(img => ({
      src: img.currentSrc || img.src, width: img.naturalWidth, complete: img.complete,
      figure: !!img.closest('figure'), alt: img.alt})),
    proofs: [...document.querySelectorAll('div.proof')].map(d => ({
      classes: [...d.classList], id: d.id,
      title: (d.querySelector('.admonition-title') || {}).textContent || ''})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  };
})()"""


def _local_file(url: str, base: str) -> tuple[Path, str] | None:
    """The file under _build/html and the fragment an internal URL points to (None if external)."""
    if not url.startswith(base + "/"):
        return None
    path, frag = urldefrag(url)
    rel = unquote(urlsplit(path).path).lstrip("/")
    target = HTML / rel
    if rel == "" or target.is_dir():
        target = target / "index.html"
    return target, unquote(frag)


# ------------------------------------------------------------------------------------------
# The tests
# ------------------------------------------------------------------------------------------

def test_index_redirects_to_the_root_page(server, tab):
    tab.open(f"{server}/index.html")
    deadline = time.monotonic() + TIMEOUT
    root = PAGES[0] + ".html"
    while not tab.eval("location.pathname").endswith(root):   # meta refresh after load
        assert time.monotonic() < deadline, f"index.html did not redirect to {root}"
        time.sleep(0.1)


def test_intro_screenshot(server, tab):
    page = HTML / f"{PAGES[0]}.html"
    assert page.exists(), f"the root page {page} was not built"
    tab.open(f"{server}/{PAGES[0]}.html")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / "intro.png"
    tab.screenshot(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(server, tab, page):
    path = HTML / f"{page}.html"
    assert path.exists(), f"{page}.html was not built"
    tab.open(f"{server}/{page}.html")
    shown = tab.eval(PROBE)
    want = expected(page)

    # figures: every image loads, and the page has every figure its source declares
    broken = [i["src"] for i in shown["images"] if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"{page}: images that did not load: {broken}"
    figures = [i for i in shown["images"] if i["figure"] and i["width"] > 0]
    assert len(figures) >= want["figures"], (
        f"{page}: {len(figures)} figure images rendered, the source declares {want['figures']}")

    # theorem-like blocks: one sphinx-proof admonition per directive, anchored at its label
    for kind in set(want["kinds"]):
        have = sum(kind in p["classes"] and "admonition" in p["classes"] for p in shown["proofs"])
        assert have >= want["kinds"].count(kind), (
            f"{page}: {have} rendered prf:{kind} blocks, the source has {want['kinds'].count(kind)}")
    ids = {p["id"] for p in shown["proofs"]}
    missing = [lab for lab in want["labels"] if lab not in ids]
    assert not missing, f"{page}: no rendered block carries the labels {missing}"

    # links: every internal link resolves to a file and, with a fragment, to an anchor in it
    bad = []
    for url in sorted(set(shown["links"])):
        local = _local_file(url, server)
        if local is None:
            continue
        target, frag = local
        if not target.exists():
            bad.append(f"{url} (no file {target.relative_to(HTML)})")
        elif frag and target.suffix == ".html" and frag not in anchors(target):
            bad.append(f"{url} (no anchor #{frag} in {target.relative_to(HTML)})")
    assert not bad, f"{page}: broken internal links:\n" + "\n".join(bad)
