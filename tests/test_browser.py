"""The reports site in a real browser: headless Chromium (Debian's package) driven over the
DevTools protocol, the site served by http.server on 127.0.0.1.

Starting from index.html, every internal link of a small demo site is followed (external links
are listed, never followed). The test fails on any console error or uncaught exception, any
broken internal link (a 4xx/5xx answer or a missing #fragment), and any request a page makes to a
host other than the local server. Screenshots of one page of each kind are saved under
test-artifacts/browser/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import http.server
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest

from conftest import require_service

CHROMIUM = os.environ.get("WATCHKEEPER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]
XSS = "<script>alert(1)</script>"


# --------------------------------------------------------------------------------------------
# A minimal DevTools-protocol client
# --------------------------------------------------------------------------------------------


class Chromium:
    """One headless Chromium with a new, empty profile; commands over the browser websocket."""

    def __init__(self, binary: str = CHROMIUM):
        self.profile = Path(tempfile.mkdtemp(prefix="wk-chromium-"))
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.ws = None
        self._id = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._listeners: dict[str, list] = {}
        self._reader = None

    async def connect(self, timeout: float = 30.0) -> None:
        from websockets.asyncio.client import connect

        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{CHROMIUM} exited with {self.proc.returncode}: {err}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{CHROMIUM} did not open its DevTools port in {timeout} s")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = await connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self._pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            else:
                for callback in self._listeners.get(msg.get("sessionId", ""), []):
                    callback(msg["method"], msg.get("params", {}))

    async def send(self, method: str, params: dict | None = None, session: str | None = None,
                   timeout: float = 60.0) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self._pending[self._id] = fut
        await self.ws.send(json.dumps(msg))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget",
                                   {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self._listeners.setdefault(page.session, []).append(page.on_event)
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable", session=page.session)
        # A laptop-sized window for the screenshots.
        await self.send("Emulation.setDeviceMetricsOverride", {
            "width": 1366, "height": 900, "deviceScaleFactor": 1, "mobile": False}, page.session)
        return page

    async def close(self) -> None:
        try:
            if self.ws is not None:
                await self.ws.close()
            if self._reader is not None:
                self._reader.cancel()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


@dataclass
class Page:
    browser: Chromium
    session: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    documents: dict[str, int] = field(default_factory=dict)
    dialogs: list[str] = field(default_factory=list)
    _loaded: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def on_event(self, method: str, p: dict) -> None:
        where = self.url
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.errors.append(f"{where}: console.{p['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            what = d.get("exception", {}).get("description") or d.get("text")
            self.errors.append(f"{where}: uncaught {what}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.errors.append(f"{where}: {e.get('source')}: {e.get('text')} {e.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(p["request"]["url"])
        elif method == "Network.responseReceived" and p.get("type") == "Document":
            self.documents[p["response"]["url"]] = p["response"]["status"]
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            self.errors.append(f"{where}: request failed: {p.get('errorText')} ({p.get('type')})")
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(f"{where}: {p.get('type')} dialog: {p.get('message')}")
            asyncio.ensure_future(self.browser.send("Page.handleJavaScriptDialog",
                                                    {"accept": True}, self.session))

    async def goto(self, url: str, timeout: float = 60.0) -> int | None:
        self.url = url
        self._loaded.clear()
        nav = await self.browser.send("Page.navigate", {"url": url}, self.session)
        if nav.get("errorText"):
            self.errors.append(f"{url}: navigation failed: {nav['errorText']}")
            return None
        await asyncio.wait_for(self._loaded.wait(), timeout)
        return self.documents.get(url)

    async def eval(self, expression: str):
        r = await self.browser.send("Runtime.evaluate", {"expression": expression,
                                                          "returnByValue": True}, self.session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:60]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        metrics = await self.browser.send("Page.getLayoutMetrics", session=self.session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": min(size["width"], 1400),
                "height": min(size["height"], 6000), "scale": 1}
        shot = await self.browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True, "clip": clip}, self.session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


IDS_JS = "Array.from(document.querySelectorAll('[id]')).map(e => e.id)"
LINKS_JS = """(() => Array.from(document.querySelectorAll('a[href]')).map(a =>
    new URL(a.getAttribute('href'), document.baseURI).href))()"""


@dataclass
class CrawlReport:
    visited: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    external_links: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)


def _kind(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if len(parts) <= 1:
        return "index"
    name = parts[-1]
    if len(parts) == 2:
        return "model"
    return "day" if name == "index.html" else name.removesuffix(".html")


async def crawl(base: str, start: str, shots: Path | None) -> CrawlReport:
    report = CrawlReport()
    browser = Chromium()
    try:
        await browser.connect()
        page = await browser.new_page()
        queue, seen, fragments, ids = [start], set(), {}, {}
        shot_kinds: set[str] = set()
        while queue:
            url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            status = await page.goto(url)
            report.visited.append(url)
            if status is None or status >= 400:
                report.broken.append(f"{url}: HTTP {status}")
                continue
            report.texts[url] = await page.eval("document.body.innerText")
            ids[url] = set(await page.eval(IDS_JS) or [])
            kind = _kind(urlsplit(url).path)
            if shots is not None and kind not in shot_kinds:
                shot_kinds.add(kind)
                path = shots / f"{kind}.png"
                await page.screenshot(path)
                report.screenshots.append(path)
            for link in await page.eval(LINKS_JS) or []:
                target, frag = urldefrag(link)
                if not target.startswith(base):
                    report.external_links.add(link)
                    continue
                if frag:
                    fragments.setdefault(target, set()).add(frag)
                if target.endswith((".html", "/")):
                    if target not in seen:
                        queue.append(target)
                elif target not in seen:
                    seen.add(target)
                    try:
                        urllib.request.urlopen(target, timeout=10).close()
                    except urllib.error.HTTPError as err:
                        report.broken.append(f"{target} (linked from {url}): HTTP {err.code}")
        for target, frags in fragments.items():
            for frag in sorted(frags - ids.get(target, frags)):
                report.broken.append(f"{target}#{frag}: no element with that id")
        report.errors = list(page.errors)
        report.dialogs = list(page.dialogs)
        report.foreign_requests = sorted({r for r in page.requests
                                          if not r.startswith((base, "data:", "blob:", "about:"))})
    finally:
        await browser.close()
    return report


# --------------------------------------------------------------------------------------------
# The site under test
# --------------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reports what matters
        pass


@pytest.fixture
def served(tmp_path):
    """serve(folder) -> base URL of an http.server on 127.0.0.1 (a free port) for `folder`."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def _build_demo_site(small_demo) -> Path:
    """A few monitored days of both models, an Evidently page, a triage page and the site."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import pandas as pd

    from watchkeeper import monitor, paths, reports
    from watchkeeper.spec import get_spec, load_all
    from watchkeeper.store import MetricRecord, open_store

    store = open_store()
    days = {"fraud": [small_demo.ds(n) for n in range(26, 31)],
            "eta": [small_demo.ds(n) for n in range(29, 31)]}
    for name, model_days in days.items():
        spec = get_spec(name)
        for ds in model_days:
            loaded = monitor.load(spec, ds, store)
            monitor.check(spec, ds, "ingestion", store, loaded)
            monitor.check(spec, ds, "features", store, loaded)
            monitor.record_slis(spec, ds, store)
    fraud = get_spec("fraud")
    day29 = small_demo.ds(29)
    # An Evidently page for the incident day, sharing the site's one copy of Evidently's bundle.
    from watchkeeper import drift, evidently_html

    features = [drift.FeatureSpec(f.name, f.kind) for f in fraud.features]
    reference = pd.read_parquet(fraud.resolve_path(fraud.reference.training))
    current = pd.read_parquet(monitor.batch_path("fraud", day29))
    evidently_html.render_report(reference, current, features, {},
                                 paths.day_report_dir("fraud", day29) / "drift.html",
                                 title=f"fraud {day29}: drift", max_rows=2000)
    # Data-derived strings that must render as text, never as markup.
    store.write_metrics("fraud", day29, "drift", day29, [
        MetricRecord(subject="merchant_category", value=0.4,
                     payload={"threshold": 0.1, "drifted": True, "note": f"new value {XSS}"}),
        MetricRecord(subject=f"merchant_category|merchant_category={XSS}", value=0.9,
                     payload={"threshold": 0.1, "drifted": True})])
    store.record_event("fraud", "deployment", "fraud-v3", small_demo.ds(26),
                       {"version": "fraud-v3", "note": XSS}, created_by=XSS)
    reports.triage(fraud, day29, store)
    reports.build_site(store, load_all()[0])
    return paths.reports_dir()


def test_every_page_of_a_demo_site_in_headless_chromium(demo_home, small_demo, served):
    if not Path(CHROMIUM).exists():
        require_service("Chromium", f"{CHROMIUM} not found (`make test` installs Debian's chromium)")
    root = _build_demo_site(small_demo)
    base = served(root)
    shots = ARTIFACTS
    shutil.rmtree(shots, ignore_errors=True)
    report = asyncio.run(crawl(base, base + "index.html", shots))

    day29 = small_demo.ds(29)
    visited = {urlsplit(u).path for u in report.visited}
    expected = {"/index.html", "/fraud/index.html", "/eta/index.html",
                f"/fraud/{day29}/index.html", f"/fraud/{day29}/triage.html",
                f"/fraud/{day29}/drift.html", f"/fraud/{day29}/validation-features.html",
                f"/eta/{small_demo.ds(30)}/index.html"}
    assert expected <= visited, sorted(expected - visited)
    assert not report.broken, report.broken
    assert not report.errors, report.errors
    assert not report.foreign_requests, report.foreign_requests
    assert not report.dialogs, report.dialogs  # the injected <script> never ran
    # ...and it shows as text where the data put it.
    day_text = report.texts[f"{base}fraud/{day29}/index.html"]
    model_text = report.texts[f"{base}fraud/index.html"]
    assert XSS in day_text and XSS in model_text
    # The index says what a reviewer looks for first.
    index_text = report.texts[f"{base}index.html"]
    assert "fraud" in index_text and "eta" in index_text
    assert {"index", "model", "day", "triage", "drift"} <= {p.stem for p in report.screenshots}
    for p in report.screenshots:
        assert p.stat().st_size > 5000, f"{p} looks blank"
    print(f"\n{len(report.visited)} pages, {len(report.external_links)} external link(s) listed "
          f"(not followed): {sorted(report.external_links)[:10]}; screenshots in {shots}")
