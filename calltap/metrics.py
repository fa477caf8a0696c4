"""Prometheus metrics over HTTP (text exposition format 0.0.4), served from a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Sample = tuple[str, str, dict[str, str], float]
"""(metric name, type, labels, value)."""


def render(samples: list[Sample]) -> str:
    out: list[str] = []
    typed: set[str] = set()
    for name, kind, labels, value in samples:
        if name not in typed:
            out.append(f"# TYPE {name} {kind}")
            typed.add(name)
        lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        out.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")
    return "\n".join(out) + "\n"


def serve(port: int, collect: Callable[[], list[Sample]], host: str = "127.0.0.1"
          ) -> ThreadingHTTPServer:
    """Serve /metrics on ``host:port`` until the server is shut down."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = render(collect()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
