"""The built book in a real browser: every page of _toc.yml opened in headless Chromium.

Every page is opened once, at a 1280 x 1600 px viewport, and checked for:

* **figures, theorem blocks, links** -- every image loads (non-zero ``naturalWidth``) and there
  are at least as many figures as the chapter's source declares; its theorem-like blocks render
  as sphinx-proof admonitions with their labels as anchors; every internal link resolves to a
  file, and anchor, under ``_build/html``;
* **no sideways scrolling** -- no code block, code cell, output block or verdict box is wider
  inside than its box (``scrollWidth > clientWidth``), or reaches past the page's article
  column, by more than ``TOLERANCE_PX`` (collapsed cells are opened first); a failure lists each
  offending block with its longest line;
* **math typeset offline** -- every formula holds a MathJax container, MathJax 3 was loaded from
  the site itself (``_static/mathjax/``, see ``_ext/local_mathjax.py``), it reported no error
  (no ``merror``: undefined macros are errors too, see ``mathjax3_config``), and no raw
  ``\\(``, ``\\[``, ``$$`` or ``\\begin{`` is left in the page's text outside code;
* **nothing fetched from outside** -- every request of the page goes to the local server and
  succeeds, and no script throws;
* **verdicts at a glance** -- the theorem chapters (``THEOREM_CHAPTERS``) show verdict boxes,
  every box states its outcome in words that match its colour class, its text is legible
  (contrast >= 4.5) in the light and the dark theme, no box is shown twice, and no verdict is
  left as a plain ``[result] predicted: ...; holds: ...`` line in an output;
* **Thebe** -- every notebook page has the Live Code button, and its Thebe configuration names
  the repository, branch and BinderHub of _config.yml and the page's kernel.

The checks are plain functions of what one probe (``PROBE``) returns; the ``test_control_*``
tests run the same probe and functions on small static pages that break each rule and on one
that breaks none, so every check is shown to be able to fail.

A full-page screenshot of every page is kept as a test artifact in ``_build/screenshots/``
(``intro.png``, ``supervised.png``, ``appendix-api.png``, ...; ``BOOK_SCREENSHOTS`` moves it).

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON), so the test needs no extra Python package and opens
no debugging port. The book is served by ``http.server`` on 127.0.0.1 at a free port; every
other host name resolves to nothing (``--host-resolver-rules``), so the test never touches the
network, and a page that would need it fails.

Run after ``make book``:  ``.venv/bin/python -m pytest tests -m browser``.
Needs ``/usr/bin/chromium`` (Debian: ``apt-get install chromium``; ``CHROMIUM=/path`` names
another Chromium or Chrome); the page tests need
``_build/html`` (the control tests do not).
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
import sys
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
CONFIG = ROOT / "_config.yml"
SCREENSHOTS = Path(os.environ.get("BOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM", ""), "/usr/bin/chromium", shutil.which("chromium") or "",
                             shutil.which("chromium-browser") or "") if p and os.path.exists(p)),
                None)
BASH = shutil.which("bash") or "/bin/bash"
TIMEOUT = 60.0          # seconds for one page to load, or one protocol reply
WIDTH, HEIGHT = 1280, 1600
TOLERANCE_PX = 2        # sub-pixel rounding; a clipped character is wider than this
SHOT_MAX_PX = 16000     # full-page screenshots are cut at this height
MIN_CONTRAST = 4.5      # WCAG AA for text: every part of a verdict box, light and dark theme
# The chapters that test the paper's theorems: each must show its verdicts as boxes.
THEOREM_CHAPTERS = ("book/supervised", "book/pretraining", "book/finetuning",
                    "book/label_complexity")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None,
                       reason="Chromium not found at /usr/bin/chromium (apt-get install chromium)"),
]
needs_book = [
    pytest.mark.skipif(not (HTML / "index.html").exists(),
                       reason=f"no built book at {HTML} (run `make book` first)"),
    pytest.mark.skipif(not TOC.exists(), reason=f"no table of contents at {TOC}"),
]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--no-default-browser-check", f"--window-size={WIDTH},{HEIGHT}",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
         "--remote-debugging-pipe", "about:blank"]


# ------------------------------------------------------------------------------------------
# The pages, and what their sources and the configuration promise
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
FRONT = re.compile(r"\A---\n(?P<yaml>.*?)\n---\n", re.S)
PLAIN_VERDICT = re.compile(r"^\[[^\]\n]+\] predicted: .*; holds: (yes|NO)\s*$", re.M)


def source(page: str) -> str:
    src = ROOT / f"{page}.md"
    return src.read_text() if src.exists() else ""


def expected(page: str) -> dict:
    """Figures, proof-like directives and their labels declared in the page's source."""
    text = source(page)
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


def kernel(page: str) -> str | None:
    """The kernel name of a notebook page (its jupytext kernelspec), None for a plain page."""
    m = FRONT.match(source(page))
    meta = yaml.safe_load(m.group("yaml")) if m else None
    spec = (meta or {}).get("kernelspec") or {}
    return spec.get("name")


def thebe_expected() -> dict:
    """What every page's Thebe configuration must say, from _config.yml."""
    conf = yaml.safe_load(CONFIG.read_text())
    url = conf["repository"]["url"].rstrip("/")
    org_repo = "/".join(url.split("github.com/")[-1].split("/")[:2])
    launch = conf.get("launch_buttons", {})
    return {"repo": org_repo, "ref": conf["repository"].get("branch", "master"),
            "binderUrl": launch.get("binderhub_url", "").rstrip("/"),
            "thebe": launch.get("thebe", False)}


def shot_name(page: str) -> str:
    rel = page[len("book/"):] if page.startswith("book/") else page
    return rel.replace("/", "-") + ".png"


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
def serve():
    """``serve(folder)`` -> the base URL of a static server for that folder (module scope)."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(folder))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(serve):
    return serve(HTML)


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
    """One page target at a 1280-px viewport: navigate, evaluate, screenshot, watch requests."""

    def __init__(self, cdp: DevTools):
        self.cdp = cdp
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = cdp.send("Target.attachToTarget",
                                {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            cdp.send(f"{domain}.enable", session=self.session)
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True}, self.session)
        self.metrics(HEIGHT)

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

    def metrics(self, height: int) -> None:
        self.cdp.send("Emulation.setDeviceMetricsOverride",
                      {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
                      self.session)

    def screenshot(self, path: Path, full: bool = True) -> None:
        """A PNG of the page, 1280 px wide; ``full``: as tall as the page (at most SHOT_MAX_PX),
        taken with a viewport that tall (``captureBeyondViewport`` misplaces some pages)."""
        height = HEIGHT
        if full:
            size = self.cdp.send("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
            height = int(min(max(size["height"], HEIGHT), SHOT_MAX_PX))
            self.metrics(height)
        try:
            data = self.cdp.send("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        finally:
            if full:
                self.metrics(HEIGHT)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def traffic(self, base: str) -> dict:
        """Requests made since the last ``open``: the external ones, failed ones, exceptions."""
        urls, failed, exceptions = {}, [], []
        for ev in self.cdp.events:
            if ev.get("sessionId") != self.session:
                continue
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Network.requestWillBeSent":
                urls[p["requestId"]] = p["request"]["url"]
            elif method == "Network.loadingFailed" and not p.get("canceled"):
                failed.append(f"{urls.get(p['requestId'], '?')} ({p.get('errorText')})")
            elif (method == "Network.responseReceived" and p["response"]["status"] >= 400
                  and not p["response"]["url"].endswith("/favicon.ico")):  # the browser's own
                failed.append(f"{p['response']['url']} (HTTP {p['response']['status']})")
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                exceptions.append((d.get("exception") or {}).get("description") or d.get("text"))
        external = sorted({u for u in urls.values()
                           if not u.startswith((base + "/", "data:", "blob:", "about:"))})
        return {"external": external, "failed": failed, "exceptions": exceptions}


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


# ------------------------------------------------------------------------------------------
# The probe: everything a check needs, measured in the page
# ------------------------------------------------------------------------------------------

# Waits for images, MathJax's first typesetting (at most 15 s) and fonts, then reports.
PROBE_LOAD = r"""(async () => {
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
  const hasMath = document.querySelector('.math') !== null;
  let mathjax = 'none';
  if (hasMath) {
    const t0 = performance.now();
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)
           && performance.now() - t0 < 15000)
      await new Promise(r => setTimeout(r, 50));
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      try { await MathJax.startup.promise; mathjax = 'typeset'; }
      catch (e) { mathjax = 'failed: ' + e; }
    } else mathjax = 'not loaded';
  }
  await document.fonts.ready;
  return mathjax;
})()"""

# Measures the page as the reader sees it, after opening every collapsed block.
PROBE = r"""((mathjax) => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const TOL = %(tol)d;
  const article = document.querySelector('article.bd-article, article, main') || document.body;
  const limit = article.getBoundingClientRect().right;
  const longest = el => (el.innerText || el.textContent || '').split('\n')
      .reduce((a, b) => (b.length > a.length ? b : a), '');
  const kindOf = el => el.matches('div.verdict') ? 'verdict'
      : el.closest('.cell_output') ? 'output'
      : el.closest('.cell_input') ? 'code cell' : 'code block';
  const blocks = [];
  const seen = new Set();
  for (const el of document.querySelectorAll(
        'div.highlight > pre, div.cell_output > .output, div.verdict')) {
    if (seen.has(el)) continue;
    seen.add(el);
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;                 // not displayed
    if (el.matches('.output') && el.querySelector('div.highlight > pre, div.verdict')) continue;
    const line = longest(el);
    blocks.push({kind: kindOf(el), scroll: el.scrollWidth, client: el.clientWidth,
                 right: Math.round(r.right), limit: Math.round(limit),
                 chars: line.length, line: line.slice(0, 100)});
  }
  // text outside code and typeset math
  const skip = 'pre, code, script, style, textarea, template, mjx-container, .highlight';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: n => (n.parentElement && !n.parentElement.closest(skip))
        ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT});
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n.textContent;
    for (const tok of ['\\(', '\\[', '$$', '\\begin{']) {
      const i = t.indexOf(tok);
      if (i >= 0) raw.push(tok + ' in "' + t.slice(Math.max(0, i - 30), i + 50).trim() + '"');
    }
  }
  const math = [...document.querySelectorAll('.math')];
  const scripts = [...document.scripts].map(s => s.src).filter(Boolean);
  const thebeConf = [...document.querySelectorAll('script[type="text/x-thebe-config"]')]
      .map(s => { try { return new Function('return (' + s.textContent + ')')(); }
                  catch (e) { return {error: String(e)}; } });
  const outputs = [...document.querySelectorAll('div.cell_output')]
      .map(o => o.innerText || '');
  // WCAG contrast of an element's text on its composited background, in the light and dark theme
  const rgba = c => { const m = /rgba?\(([^)]+)\)/.exec(c);
    const p = m ? m[1].split(/[ ,\/]+/).filter(Boolean).map(Number) : [0, 0, 0, 0];
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const background = el => { const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break; }
    let out = [255, 255, 255];
    for (const c of layers.reverse()) out = out.map((v, i) => c[i] * c[3] + v * (1 - c[3]));
    return out; };
  const lum = rgb => rgb.map(v => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const contrast = el => { const a = lum(rgba(getComputedStyle(el).color).slice(0, 3));
    const b = lum(background(el));
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
  const parts = '.verdict-result, .verdict-outcome, .verdict-row, .verdict-key';
  const themes = {};
  const before = document.documentElement.getAttribute('data-theme');
  for (const theme of ['light', 'dark']) {
    document.documentElement.setAttribute('data-theme', theme);
    themes[theme] = [...document.querySelectorAll('div.verdict')].map(v =>
      Math.min(...[...v.querySelectorAll(parts)].map(contrast)));
  }
  if (before === null) document.documentElement.removeAttribute('data-theme');
  else document.documentElement.setAttribute('data-theme', before);
  return {
    url: location.href,
    title: document.title,
    viewport: innerWidth,
    page_scroll: document.scrollingElement.scrollWidth,
    images: [...document.images].map(img => ({
      src: img.currentSrc || img.src, width: img.naturalWidth, complete: img.complete,
      figure: !!img.closest('figure'), alt: img.alt})),
    proofs: [...document.querySelectorAll('div.proof')].map(d => ({
      classes: [...d.classList], id: d.id,
      title: (d.querySelector('.admonition-title') || {}).textContent || ''})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    blocks,
    math: {status: mathjax, count: math.length,
           untypeset: math.filter(m => !m.querySelector('mjx-container'))
                          .map(m => m.textContent.trim().slice(0, 80)),
           errors: [...document.querySelectorAll('mjx-merror, [data-mjx-error]')]
                       .map(e => e.getAttribute('data-mjx-error') || e.textContent),
           version: (window.MathJax && MathJax.version) || null,
           scripts: scripts.filter(s => /mathjax/i.test(s)),
           raw},
    verdicts: [...document.querySelectorAll('div.verdict')].map((v, i) => ({
      contrast: {light: themes.light[i], dark: themes.dark[i]},
      classes: [...v.classList],
      result: (v.querySelector('.verdict-result') || {}).textContent || '',
      outcome: (v.querySelector('.verdict-outcome') || {}).textContent || '',
      visible: v.getBoundingClientRect().height > 0,
      outcome_color: getComputedStyle(v.querySelector('.verdict-outcome') || v).color,
      border_color: getComputedStyle(v).borderLeftColor})),
    outputs,
    thebe: {buttons: [...document.querySelectorAll('button[onclick*="initThebe"]')]
                       .map(b => b.getAttribute('onclick')),
            init: typeof window.initThebeSBT === 'function',
            js_url: (typeof THEBE_JS_URL === 'string') ? THEBE_JS_URL : null,
            config: thebeConf,
            binder_links: [...document.querySelectorAll('a[href*="/v2/gh/"]')]
                            .map(a => a.href)},
  };
})(%(mathjax)s)"""


def probe(tab: Tab, url: str, shot: Path | None = None) -> dict:
    """Open ``url``, wait for it to settle, screenshot it, and measure it."""
    tab.open(url)
    status = tab.eval(PROBE_LOAD)
    if shot is not None:
        tab.screenshot(shot)
    shown = tab.eval(PROBE % {"tol": TOLERANCE_PX, "mathjax": json.dumps(status)})
    base = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    shown["traffic"] = tab.traffic(base)
    shown["base"] = base
    return shown


@pytest.fixture(scope="module")
def shown(server, tab):
    """``shown(page)``: the probe of one built page, measured once per session."""
    cache: dict[str, dict] = {}

    def get(page: str) -> dict:
        if page not in cache:
            path = HTML / f"{page}.html"
            assert path.exists(), f"{page}.html was not built"
            cache[page] = probe(tab, f"{server}/{page}.html", SCREENSHOTS / shot_name(page))
        return cache[page]

    return get


# ------------------------------------------------------------------------------------------
# The checks: each returns the list of problems it found (empty: the page passes)
# ------------------------------------------------------------------------------------------

def overflowing(shown: dict, kinds=("code block", "code cell", "output", "verdict"),
                whole_page: bool = True) -> list[str]:
    """Blocks wider inside than their box, or reaching past the article column (and, with
    ``whole_page``, a page wider than the viewport)."""
    bad = []
    if shown["viewport"] != WIDTH:
        bad.append(f"viewport is {shown['viewport']} px wide, not {WIDTH}")
    for b in shown["blocks"]:
        if b["kind"] not in kinds:
            continue
        inner = b["scroll"] > b["client"] + TOLERANCE_PX
        outer = b["right"] > b["limit"] + TOLERANCE_PX
        if inner or outer:
            why = (f"content {b['scroll']} px in a {b['client']} px box" if inner
                   else f"right edge at {b['right']} px, the column ends at {b['limit']} px")
            bad.append(f"{b['kind']}: {why}; longest line ({b['chars']} chars): {b['line']!r}")
    if whole_page and shown["page_scroll"] > WIDTH + TOLERANCE_PX:
        bad.append(f"the page itself is {shown['page_scroll']} px wide")
    return bad


def math_problems(shown: dict) -> list[str]:
    """Formulas not typeset, MathJax not local or not version 3, MathJax errors, raw LaTeX."""
    m, bad = shown["math"], []
    if m["count"]:
        if m["status"] != "typeset":
            bad.append(f"MathJax did not typeset the page ({m['status']})")
        if not (m["version"] or "").startswith("3."):
            bad.append(f"MathJax version {m['version']!r}, expected 3.x")
        if not m["scripts"]:
            bad.append("no MathJax script on a page with math")
        foreign = [s for s in m["scripts"] if not s.startswith(shown["base"] + "/_static/mathjax/")]
        if foreign:
            bad.append(f"MathJax loaded from outside the site's _static/mathjax/: {foreign}")
        bad += [f"formula not typeset: {t!r}" for t in m["untypeset"]]
    bad += [f"MathJax error: {e!r}" for e in m["errors"]]
    bad += [f"raw LaTeX: {r}" for r in m["raw"]]
    return bad


def traffic_problems(shown: dict) -> list[str]:
    t = shown["traffic"]
    return ([f"request to outside the site: {u}" for u in t["external"]]
            + [f"failed request: {f}" for f in t["failed"]]
            + [f"script error: {e}" for e in t["exceptions"]])


def verdict_problems(shown: dict, required: bool) -> list[str]:
    """Verdict boxes: present where required, outcome in words matching the colour class,
    in a colour that differs between outcomes, fitting the page; no plain verdict lines."""
    bad = []
    words = {"verdict-holds": "holds", "verdict-fails": "does NOT hold"}
    if required and not shown["verdicts"]:
        bad.append("no verdict box on a theorem chapter")
    colours = {}
    for v in shown["verdicts"]:
        cls = [c for c in v["classes"] if c in words]
        if len(cls) != 1:
            bad.append(f"verdict {v['result']!r}: classes {v['classes']}")
            continue
        if not v["visible"]:
            bad.append(f"verdict {v['result']!r} is not displayed")
        if not v["result"].strip():
            bad.append(f"verdict with no result name: {v}")
        if v["outcome"].strip() != words[cls[0]]:
            bad.append(f"verdict {v['result']!r}: outcome {v['outcome']!r} under {cls[0]}")
        colours.setdefault(cls[0], set()).add(v["outcome_color"])
        for theme, ratio in v["contrast"].items():
            if not ratio >= MIN_CONTRAST:
                bad.append(f"verdict {v['result']!r}: text contrast {ratio:.2f} in the {theme} "
                           f"theme (WCAG AA needs {MIN_CONTRAST})")
    names = [v["result"] for v in shown["verdicts"]]
    bad += [f"verdict {n!r} shown {names.count(n)} times (result names are unique in the book)"
            for n in sorted(set(names)) if names.count(n) > 1]
    if len(colours) == 2 and colours["verdict-holds"] & colours["verdict-fails"]:
        bad.append(f"'holds' and 'does NOT hold' share a colour: {colours}")
    for text in shown["outputs"]:
        bad += [f"verdict shown as plain text, not a box: {m.group(0)!r}"
                for m in PLAIN_VERDICT.finditer(text)]
    bad += overflowing(shown, kinds=("verdict",), whole_page=False)
    return bad


def thebe_problems(shown: dict, want: dict, kernel_name: str) -> list[str]:
    """The Live Code button and a Thebe configuration for this repository, Binder and kernel."""
    t, bad = shown["thebe"], []
    if "initThebeSBT()" not in t["buttons"]:
        bad.append(f"no Live Code (Thebe) launch button; buttons: {t['buttons']}")
    if not t["init"]:
        bad.append("initThebeSBT is not defined (sphinx-book-theme's Thebe script missing)")
    if not t["js_url"]:
        bad.append("THEBE_JS_URL is not defined (sphinx-thebe not loaded)")
    if len(t["config"]) != 1:
        bad.append(f"{len(t['config'])} Thebe configurations, expected one")
    for conf in t["config"]:
        binder = conf.get("binderOptions", {})
        kern = conf.get("kernelOptions", {})
        for key, have, should in [("repo", binder.get("repo"), want["repo"]),
                                  ("ref", binder.get("ref"), want["ref"]),
                                  ("binderUrl", binder.get("binderUrl"), want["binderUrl"]),
                                  ("repoProvider", binder.get("repoProvider"), "github"),
                                  ("kernel", kern.get("name"), kernel_name),
                                  ("requestKernel", conf.get("requestKernel"), True)]:
            if have != should:
                bad.append(f"Thebe {key} is {have!r}, expected {should!r}")
    launch = f"{want['binderUrl']}/v2/gh/{want['repo']}/{want['ref']}"
    if not any(u.startswith(launch) for u in t["binder_links"]):
        bad.append(f"no Binder launch link to {launch}: {t['binder_links']}")
    return bad


# ------------------------------------------------------------------------------------------
# The tests of the built book
# ------------------------------------------------------------------------------------------

def _mark(f):
    """The page tests need a built book."""
    for m in needs_book:
        f = m(f)
    return f


@_mark
def test_index_redirects_to_the_root_page(server, tab):
    tab.open(f"{server}/index.html")
    deadline = time.monotonic() + TIMEOUT
    root = PAGES[0] + ".html"
    while not tab.eval("location.pathname").endswith(root):   # meta refresh after load
        assert time.monotonic() < deadline, f"index.html did not redirect to {root}"
        time.sleep(0.1)


@_mark
@pytest.mark.parametrize("page", PAGES)
def test_page_renders(shown, server, page):
    seen = shown(page)
    want = expected(page)

    # figures: every image loads, and the page has every figure its source declares
    broken = [i["src"] for i in seen["images"] if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"{page}: images that did not load: {broken}"
    figures = [i for i in seen["images"] if i["figure"] and i["width"] > 0]
    assert len(figures) >= want["figures"], (
        f"{page}: {len(figures)} figure images rendered, the source declares {want['figures']}")

    # theorem-like blocks: one sphinx-proof admonition per directive, anchored at its label
    for kind in set(want["kinds"]):
        have = sum(kind in p["classes"] and "admonition" in p["classes"] for p in seen["proofs"])
        assert have >= want["kinds"].count(kind), (
            f"{page}: {have} rendered prf:{kind} blocks, the source has {want['kinds'].count(kind)}")
    ids = {p["id"] for p in seen["proofs"]}
    missing = [lab for lab in want["labels"] if lab not in ids]
    assert not missing, f"{page}: no rendered block carries the labels {missing}"

    # links: every internal link resolves to a file and, with a fragment, to an anchor in it
    bad = []
    for url in sorted(set(seen["links"])):
        local = _local_file(url, server)
        if local is None:
            continue
        target, frag = local
        if not target.exists():
            bad.append(f"{url} (no file {target.relative_to(HTML)})")
        elif frag and target.suffix == ".html" and frag not in anchors(target):
            bad.append(f"{url} (no anchor #{frag} in {target.relative_to(HTML)})")
    assert not bad, f"{page}: broken internal links:\n" + "\n".join(bad)


@_mark
@pytest.mark.parametrize("page", PAGES)
def test_no_block_scrolls_sideways(shown, page):
    bad = overflowing(shown(page))
    assert not bad, f"{page} at {WIDTH} px: {len(bad)} blocks wider than their box:\n" + \
        "\n".join(bad)


@_mark
@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset_offline(shown, page):
    bad = math_problems(shown(page))
    assert not bad, f"{page}:\n" + "\n".join(bad)


@_mark
@pytest.mark.parametrize("page", PAGES)
def test_nothing_is_fetched_from_outside(shown, page):
    bad = traffic_problems(shown(page))
    assert not bad, f"{page}:\n" + "\n".join(bad)


@_mark
@pytest.mark.parametrize("page", PAGES)
def test_verdict_boxes(shown, page):
    bad = verdict_problems(shown(page), required=page in THEOREM_CHAPTERS)
    assert not bad, f"{page}:\n" + "\n".join(bad)


FIT_80 = r"""(() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const res = [];
  const seen = new Set();
  for (const pre of document.querySelectorAll('div.highlight > pre')) {
    const kind = (pre.closest('.cell_output') ? 'output'
                  : pre.closest('.cell_input') ? 'code cell' : 'code block')
                 + (pre.closest('details') ? ' (collapsible)' : '');
    if (seen.has(kind) || pre.getBoundingClientRect().width === 0) continue;
    seen.add(kind);
    const widths = {};
    for (const n of [80, 100]) {
      const clone = pre.cloneNode(false);
      clone.textContent = 'x = ' + '0123456789'.repeat(10).slice(0, n - 4);
      pre.parentElement.appendChild(clone);
      widths[n] = [clone.scrollWidth, clone.clientWidth];
      clone.remove();
    }
    res.push({kind, widths});
  }
  return res;
})()"""


@_mark
def test_an_80_character_line_fits(server, tab):
    """The chapters' line limit (80 characters, the style guide) fits every kind of code and
    output box at 1280 px; a 100-character line does not fit a code cell (the measurement can
    fail) and wraps in an output (_static/code.css: outputs never scroll sideways)."""
    pages = [p for p in THEOREM_CHAPTERS if p in PAGES] or PAGES
    tab.open(f"{server}/{pages[0]}.html")
    found = tab.eval(FIT_80)
    kinds = {f["kind"] for f in found}
    assert {"code cell", "output"} <= kinds, f"{pages[0]}: no code cell or output found: {kinds}"
    for f in found:
        scroll, client = f["widths"]["80"]
        assert scroll <= client + TOLERANCE_PX, (
            f"{pages[0]}: an 80-character line needs {scroll} px in a {client} px {f['kind']}")
        scroll, client = f["widths"]["100"]
        if f["kind"] == "output":
            assert scroll <= client + TOLERANCE_PX, "a 100-character output line scrolls"
        else:
            assert scroll > client + TOLERANCE_PX, f"a 100-character line fits a {f['kind']}?"


@_mark
def test_theorem_chapters_are_in_the_book():
    missing = [p for p in THEOREM_CHAPTERS if p not in PAGES]
    assert not missing, f"THEOREM_CHAPTERS names pages that _toc.yml does not have: {missing}"


@_mark
@pytest.mark.parametrize("page", [p for p in PAGES if kernel(p)])
def test_thebe_live_code_is_configured(shown, page):
    want = thebe_expected()
    assert want["thebe"] is True, "launch_buttons.thebe is not on in _config.yml"
    bad = thebe_problems(shown(page), want, kernel(page))
    assert not bad, f"{page}:\n" + "\n".join(bad)


def test_binder_environment_runs_the_chapters():
    """The environment Thebe and Binder start (binder/) can run a chapter: a kernel, the
    library's dependencies, widgets, jupytext; postBuild installs the library itself."""
    reqs = (ROOT / "binder" / "requirements.txt").read_text()
    names = {re.split(r"[<>=!~\[ ;]", line.strip())[0].lower()
             for line in reqs.splitlines() if line.strip() and not line.startswith(("#", "-"))}
    missing = {"ipykernel", "ipywidgets", "jupytext", "torch", "numpy", "matplotlib"} - names
    assert not missing, f"binder/requirements.txt lacks {sorted(missing)}"
    assert "pip install" in (ROOT / "binder" / "postBuild").read_text()


@_mark
def test_screenshot_of_every_page(shown):
    for page in PAGES:
        shown(page)
    for page in PAGES:
        out = SCREENSHOTS / shot_name(page)
        assert out.exists(), f"no screenshot of {page} at {out}"
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f"{out} is not a page"
        width = int.from_bytes(data[16:20], "big")
        assert width == WIDTH, f"{out} is {width} px wide, not {WIDTH}"


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
# Controls: the same probe and checks on pages that break each rule, and on one that does not
# ------------------------------------------------------------------------------------------

MATHJAX_CONFIG = """<script>window.MathJax = {tex: {inlineMath: [['\\\\(', '\\\\)']],
  displayMath: [['\\\\[', '\\\\]']], packages: {'[-]': ['noundefined']}},
  options: {processHtmlClass: 'math', ignoreHtmlClass: 'tex2jax_ignore'}};</script>"""

PAGE = """<!DOCTYPE html><html data-theme="light"><head><meta charset="utf-8">
<link rel="stylesheet" href="verdict.css">{head}
<style>body {{ margin: 0; font: 16px sans-serif; }}
article {{ width: 700px; margin-left: 100px; }} pre {{ overflow-x: auto; }}
html[data-theme=dark] body {{ background: #14181e; color: #ced6dd;
  --pst-color-text-base: #ced6dd; --pst-color-text-muted: #9ca4af; }}
html[data-theme=dark] .light-card {{ background: #ced6dd; }}</style>
</head><body class="tex2jax_ignore"><article class="bd-article">{body}</article></body></html>"""

GOOD = """
<p>Inline <span class="math notranslate nohighlight">\\(n \\cdot \\mathrm{{SNR}}^q\\)</span> and</p>
<div class="math notranslate nohighlight">\\[\\|w\\|_2 \\leq 1\\]</div>
<div class="cell_input"><div class="highlight"><pre>x = 1  # a short line</pre></div></div>
<div class="cell_output"><div class="output text_html">{verdict_holds}</div></div>
<div class="cell_output"><div class="output text_html">{verdict_fails}</div></div>
<p>Text with a dollar sign: 5 $ and a backslash \\ alone.</p>
"""

BAD = """
<p>Unrendered \\(n\\cdot\\mathrm{{SNR}}^q\\) and $$x^2$$ in the prose.</p>
<p><span class="math notranslate nohighlight">\\(\\frac{{1}}{{2\\)</span>
   <span class="math notranslate nohighlight">\\(\\undefinedmacro x\\)</span></p>
<div class="cell_input"><div class="highlight"><pre>{long}</pre></div></div>
<div class="cell_output"><div class="output text_plain"><div class="highlight"><pre>[Theorem 4.3] predicted: n &gt;= 1; measured: n = 3; holds: yes</pre></div></div></div>
<div class="cell_output"><div class="output text_html"><table style="width: 1400px"><tr><td>wide</td></tr></table></div></div>
<div class="cell_output"><div class="output text_html light-card"><div class="verdict verdict-holds" style="min-width: 1500px"><div class="verdict-head"><span class="verdict-result">Theorem 9.9</span><span class="verdict-outcome">does NOT hold</span></div></div></div></div>
"""


def _verdict_html(holds: bool) -> str:
    root = str(ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    from simclr_lib.report import Verdict
    return Verdict(f"Theorem 4.{2 if holds else 3} (a long name, n = 16, SNR = 0.1)",
                   "test error <= 0.05 " + "and so on " * 30,
                   "test error 0.012 (95% CI 0.004 to 0.031) " + "0.123456789" * 12,
                   holds)._repr_html_()


@pytest.fixture(scope="module")
def control(serve, tmp_path_factory):
    """A small site of control pages served like the book, with the same MathJax files."""
    site = tmp_path_factory.mktemp("control")
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        import local_mathjax
        (site / "_static").mkdir()
        (site / "_static" / "mathjax").symlink_to(local_mathjax.es5_dir())
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    shutil.copy(ROOT / "_static" / "verdict.css", site / "verdict.css")
    local = MATHJAX_CONFIG + '<script defer src="_static/mathjax/tex-mml-chtml.js"></script>'
    cdn = MATHJAX_CONFIG + ('<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/'
                            'tex-mml-chtml.js"></script>')
    good = GOOD.format(verdict_holds=_verdict_html(True), verdict_fails=_verdict_html(False))
    bad = BAD.format(long="y = " + "1 + " * 60 + "1")
    (site / "good.html").write_text(PAGE.format(head=local, body=good))
    (site / "bad.html").write_text(PAGE.format(head=local, body=bad))
    (site / "cdn.html").write_text(PAGE.format(head=cdn, body=good))
    return serve(site)


def test_control_clean_page_passes_every_check(control, tab):
    shown = probe(tab, f"{control}/good.html")
    assert shown["math"]["count"] == 2 and shown["math"]["status"] == "typeset"
    assert len(shown["verdicts"]) == 2
    assert overflowing(shown) == []
    assert math_problems(shown) == []
    assert verdict_problems(shown, required=True) == []
    assert traffic_problems(shown) == []


def test_control_flags_overflow_raw_latex_and_mathjax_errors(control, tab):
    shown = probe(tab, f"{control}/bad.html")
    wide = overflowing(shown)
    assert any(w.startswith("code cell: content") and "1 + 1 + " in w for w in wide), wide
    assert any(w.startswith("output: content") for w in wide), wide       # the wide table
    assert any(w.startswith("verdict: ") for w in wide), wide             # the wide verdict
    math = math_problems(shown)
    assert any(m.startswith("raw LaTeX: \\(") for m in math), math
    assert any(m.startswith("raw LaTeX: $$") for m in math), math
    errors = [m for m in math if m.startswith("MathJax error")]
    assert len(errors) == 2, math                  # the unbalanced brace, the undefined macro
    verdicts = verdict_problems(shown, required=True)
    assert any("outcome 'does NOT hold' under verdict-holds" in v for v in verdicts), verdicts
    assert any(v.startswith("verdict shown as plain text") for v in verdicts), verdicts
    assert any("contrast" in v and "dark theme" in v for v in verdicts), verdicts  # light card
    assert verdict_problems({**shown, "verdicts": [], "outputs": [], "blocks": []},
                            required=True) == ["no verdict box on a theorem chapter"]
    twice = {**shown, "verdicts": shown["verdicts"] * 2, "outputs": [], "blocks": []}
    assert "verdict 'Theorem 9.9' shown 2 times" in " ".join(verdict_problems(twice, False))


def test_control_flags_mathjax_from_a_cdn(control, tab):
    shown = probe(tab, f"{control}/cdn.html")
    math = math_problems(shown)
    assert any(m.startswith("MathJax did not typeset") for m in math), math
    assert any(m.startswith("MathJax loaded from outside") for m in math), math
    assert any(m.startswith("formula not typeset") for m in math), math
    assert any(t.startswith("request to outside the site: https://cdn.jsdelivr.net")
               for t in traffic_problems(shown)), shown["traffic"]


def test_control_flags_a_page_without_thebe(control, tab):
    shown = probe(tab, f"{control}/good.html")
    want = {"repo": "org/repo", "ref": "main", "binderUrl": "https://mybinder.org"}
    bad = thebe_problems(shown, want, "python3")
    assert any(b.startswith("no Live Code") for b in bad), bad
    assert any(b.startswith("0 Thebe configurations") for b in bad), bad
    conf = {"requestKernel": True, "kernelOptions": {"name": "python3"},
            "binderOptions": {"repo": "org/other", "ref": "main", "repoProvider": "github"}}
    wrong = {**shown, "thebe": {**shown["thebe"], "config": [conf]}}
    bad = thebe_problems(wrong, want, "python3")
    assert "Thebe repo is 'org/other', expected 'org/repo'" in bad, bad
    assert "Thebe binderUrl is None, expected 'https://mybinder.org'" in bad, bad
