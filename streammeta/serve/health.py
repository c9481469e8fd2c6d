"""One HTTP port for ``/metrics``, ``/healthz`` (the loop is alive) and ``/readyz``."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streammeta.errors import ConfigError


class LoopHealth:
    """What the loop tells the probes: a heartbeat per iteration and a readiness flag."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self.clock = clock
        self._last_beat: float | None = None
        self._ready = False
        self.stopping = False

    def beat(self) -> None:
        self._last_beat = self.clock()

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def alive(self) -> tuple[bool, str]:
        if self._last_beat is None:
            return False, "loop not started"
        silent = self.clock() - self._last_beat
        if silent > self.stall_after_s:
            return False, f"loop stalled: no iteration for {silent:.1f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        alive, why = self.alive()
        if not alive:
            return False, why
        if self.stopping:
            return False, "stopping"
        return (True, "ok") if self._ready else (False, "not assigned or not connected")


class HealthServer:
    """Serves the probes and metrics from a background thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: LoopHealth):
        handler = _make_handler(registry, health)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:  # a port taken (another daemon on the host), a bad host
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise ConfigError("metrics.port", port, f"a port free to listen on at {host} "
                                  f"({exc.strerror}; 0 takes any free one)") from None
            raise ConfigError("metrics.host", host, f"an address of this machine to listen "
                              f"on ({exc.strerror or exc})") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="streammeta-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever on one never started
            self._server.shutdown()
        self._server.server_close()


def _make_handler(registry: CollectorRegistry, health: LoopHealth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, why = health.alive() if path == "/healthz" else health.ready()
                self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the prober gave up waiting (a loaded host): nothing to tell it

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the daemon's log

    return Handler
