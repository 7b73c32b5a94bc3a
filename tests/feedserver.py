"""A real HTTP server on 127.0.0.1 for tests: serves feeds, ETags, 304s, failures, slow answers.

Pytest-free so benches and other suites can use it too. Routes are registered at run time;
every request is recorded (path, headers) so tests can check what the client actually sent.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class _Route:
    body: bytes = b""
    content_type: str = "application/xml"
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0
    location: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class FeedServer:
    """Threaded HTTP server bound to an ephemeral loopback port."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()
        self._requests: list[tuple[str, dict[str, str]]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._in_flight = 0
        self.max_in_flight = 0  # most requests seen at once: lets tests check client-side limits

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> FeedServer:
        if self._server is not None:
            return self
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._handle(self)

            def do_HEAD(self) -> None:
                owner._handle(self, head=True)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="feedserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # routes ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "FeedServer not started"
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return f"http://127.0.0.1:{self.port}{path}"

    def add(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/rss+xml; charset=utf-8",
        etag: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Serve `body` at `path`; with etag=True also ETag/Last-Modified and 304 answers."""
        route = _Route(body=body, content_type=content_type, headers=tuple((headers or {}).items()))
        if etag:
            route.etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            route.last_modified = formatdate(time.time() - 60, usegmt=True)
        self._set(path, route)

    def fail(self, path: str, status: int = 500) -> None:
        self._set(path, _Route(body=f"error {status}\n".encode(), content_type="text/plain", status=status))

    def slow(self, path: str, seconds: float) -> None:
        """Delay the answer at `path` (keeps any body added before)."""
        with self._lock:
            route = self._routes.setdefault(path, _Route(body=b"<rss version='2.0'><channel/></rss>"))
            route.delay = seconds

    def redirect(self, path: str, to: str, status: int = 302) -> None:
        self._set(path, _Route(status=status, location=to, content_type="text/plain"))

    def _set(self, path: str, route: _Route) -> None:
        with self._lock:
            self._routes[path] = route

    # observation -------------------------------------------------------------------------
    @property
    def requests(self) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            return list(self._requests)

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for p, _ in self._requests if p == path)

    # serving -----------------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler, head: bool = False) -> None:
        path = req.path
        headers = {k.lower(): v for k, v in req.headers.items()}
        with self._lock:
            self._requests.append((path, headers))
            route = self._routes.get(path) or self._routes.get(path.split("?", 1)[0])
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            self._serve(req, route, headers, head)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _serve(self, req: BaseHTTPRequestHandler, route: _Route | None, headers: dict[str, str], head: bool) -> None:
        if route is None:
            self._send(req, 404, b"not found\n", "text/plain", head=head)
            return
        if route.delay:
            # Sleep in small steps so stop() is not held up by a slow route.
            end = time.monotonic() + route.delay
            while time.monotonic() < end and not self._stopping.is_set():
                time.sleep(0.02)
        if route.location is not None:
            self._send(req, route.status, b"", "text/plain", extra=(("Location", route.location),), head=head)
            return
        if route.status != 200:
            self._send(req, route.status, route.body, route.content_type, head=head)
            return
        extra: list[tuple[str, str]] = list(route.headers)
        if route.etag:
            extra += [("ETag", route.etag), ("Last-Modified", route.last_modified or "")]
            if _not_modified(headers, route):
                self._send(req, 304, b"", None, extra=tuple(extra), head=True)
                return
        self._send(req, 200, route.body, route.content_type, extra=tuple(extra), head=head)

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str | None,
        extra: tuple[tuple[str, str], ...] = (),
        head: bool = False,
    ) -> None:
        try:
            req.send_response(status)
            if content_type:
                req.send_header("Content-Type", content_type)
            for k, v in extra:
                req.send_header(k, v)
            if status != 304:
                req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            if not head and status != 304:
                req.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeouts, body caps): that is what some tests want


def _not_modified(headers: dict[str, str], route: _Route) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None:
        return route.etag is not None and route.etag in [t.strip() for t in inm.split(",")]
    ims = headers.get("if-modified-since")
    if ims and route.last_modified:
        try:
            return parsedate_to_datetime(ims) >= parsedate_to_datetime(route.last_modified)
        except (TypeError, ValueError):
            return False
    return False
