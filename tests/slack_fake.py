"""A fake Slack Web API (chat.postMessage) and incoming-webhook endpoint on 127.0.0.1.

The real slack_sdk clients are pointed at it (WebClient(base_url=fake.base_url),
WebhookClient(fake.webhook_url)), so tests exercise the real request/response handling. Failures
are scripted per endpoint and consumed one per request:

    fake.script_api(FakeSlack.http(429, retry_after=3), FakeSlack.http(500))
    fake.script_webhook(FakeSlack.slow(1.0))

What Slack accepted is in `fake.posts` (Web API) and `fake.hooks` (webhook); every request,
accepted or not, is in `fake.requests`. A scripted failure never records a message: the request
did not take effect, as with a real 429/5xx (a timeout is simulated as a request that hangs and
is then dropped).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Action:
    kind: str  # "http" | "slack_error" | "slow"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    error: str = ""
    seconds: float = 0.0


class FakeSlack:
    def __init__(self, token: str = "xoxb-fake-token-0123456789",
                 webhook_path: str = "/services/T0FAKE/B0FAKE/s3cr3tWebhookPart42"):
        self.token = token
        self.webhook_path = webhook_path
        self.posts: list[dict[str, Any]] = []
        self.hooks: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.missing_channels: set[str] = set()
        self._api: deque[Action] = deque()
        self._webhook: deque[Action] = deque()
        self._lock = threading.Lock()
        self._ts = 1_700_000_000_000100
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ------------------------------------------------------------------------

    @staticmethod
    def http(status: int, retry_after: float | None = None, body: str = "") -> Action:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if not body and status != 200:
            # What Slack's edge returns for 5xx: not JSON. For 429, a JSON error.
            body = json.dumps({"ok": False, "error": "ratelimited"}) if status == 429 else (
                "<html><body>upstream error</body></html>")
        return Action("http", status=status, headers=headers, body=body)

    @staticmethod
    def slack_error(error: str) -> Action:
        return Action("slack_error", error=error)

    @staticmethod
    def slow(seconds: float) -> Action:
        return Action("slow", seconds=seconds)

    def script_api(self, *actions: Action) -> None:
        with self._lock:
            self._api.extend(actions)

    def script_webhook(self, *actions: Action) -> None:
        with self._lock:
            self._webhook.extend(actions)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeSlack not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.webhook_path}"

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-slack")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def channel_id(name: str) -> str:
        return "C" + hashlib.sha1(name.encode()).hexdigest()[:8].upper()

    def _next_ts(self) -> str:
        self._ts += 100
        return f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"

    # -- request handling -----------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length).decode("utf-8") if length else ""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"_raw": raw}
        path = h.path.split("?", 1)[0]
        if path == "/api/chat.postMessage":
            endpoint, queue = "api", self._api
        elif path == self.webhook_path:
            endpoint, queue = "webhook", self._webhook
        else:
            self._record(endpoint="unknown", path=path, body=body, headers=h.headers, status=404)
            self._send(h, 404, "no_such_endpoint", "text/plain")
            return
        with self._lock:
            action = queue.popleft() if queue else None
        if action is not None and action.kind == "slow":
            self._record(endpoint=endpoint, path=path, body=body, headers=h.headers,
                         status=0, outcome="slow")
            time.sleep(action.seconds)
            try:  # the client has usually given up by now
                self._send(h, 504, "gateway timeout", "text/plain")
            except OSError:
                pass
            return
        if action is not None and action.kind == "http":
            self._record(endpoint=endpoint, path=path, body=body, headers=h.headers,
                         status=action.status, outcome=f"http {action.status}")
            ctype = "application/json" if action.body.startswith("{") else "text/html"
            self._send(h, action.status, action.body, ctype, action.headers)
            return
        if endpoint == "webhook":
            self._webhook_ok(h, path, body, action)
        else:
            self._api_post(h, path, body, action)

    def _api_post(self, h: BaseHTTPRequestHandler, path: str, body: dict, action: Action | None) -> None:
        def reply(payload: dict[str, Any], outcome: str) -> None:
            self._record(endpoint="api", path=path, body=body, headers=h.headers, status=200,
                         outcome=outcome)
            self._send(h, 200, json.dumps(payload), "application/json")

        if h.headers.get("Authorization") != f"Bearer {self.token}":
            reply({"ok": False, "error": "invalid_auth"}, "invalid_auth")
            return
        if action is not None and action.kind == "slack_error":
            reply({"ok": False, "error": action.error}, action.error)
            return
        channel = body.get("channel")
        if not channel or channel in self.missing_channels:
            reply({"ok": False, "error": "channel_not_found"}, "channel_not_found")
            return
        if not body.get("text") and not body.get("blocks"):
            reply({"ok": False, "error": "no_text"}, "no_text")
            return
        cid = channel if channel.startswith("C") else self.channel_id(channel)
        thread_ts = body.get("thread_ts")
        with self._lock:
            if thread_ts and not any(p["ts"] == thread_ts and p["channel_id"] == cid
                                     for p in self.posts):
                error = "thread_not_found"
            else:
                error = ""
                ts = self._next_ts()
                self.posts.append({**body, "ts": ts, "channel_id": cid})
        if error:
            reply({"ok": False, "error": error}, error)
            return
        reply({"ok": True, "channel": cid, "ts": ts,
               "message": {"text": body.get("text"), "ts": ts}}, "ok")

    def _webhook_ok(self, h: BaseHTTPRequestHandler, path: str, body: dict, action: Action | None) -> None:
        if action is not None and action.kind == "slack_error":
            # Webhooks answer errors as plain text with a 4xx status.
            status = 403 if action.error in ("invalid_token", "no_service") else 404
            self._record(endpoint="webhook", path=path, body=body, headers=h.headers,
                         status=status, outcome=action.error)
            self._send(h, status, action.error, "text/plain")
            return
        with self._lock:
            self.hooks.append(body)
        self._record(endpoint="webhook", path=path, body=body, headers=h.headers, status=200,
                     outcome="ok")
        self._send(h, 200, "ok", "text/plain")

    def _record(self, *, endpoint: str, path: str, body: dict, headers: Any, status: int,
                outcome: str = "") -> None:
        with self._lock:
            self.requests.append({"endpoint": endpoint, "path": path, "body": body,
                                  "authorization": headers.get("Authorization"),
                                  "status": status, "outcome": outcome, "at": time.monotonic()})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: str, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        h.send_response(status)
        h.send_header("Content-Type", f"{ctype}; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
