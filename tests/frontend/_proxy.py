"""A tiny HTTP forwarder on a chosen port: lets a test make "the API" appear at an address."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

__all__ = ["forward"]

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


def _handler(target: str) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"host"}}
            with httpx.Client(base_url=target, timeout=30) as client:
                reply = client.request(self.command, self.path, headers=headers, content=body)
            self.send_response(reply.status_code)
            for key, value in reply.headers.items():
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            self.send_header("content-length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            return

    return Forward


@contextmanager
def forward(port: int, target: str) -> Iterator[None]:
    """Serve on ``127.0.0.1:port`` and forward every request to ``target``."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(target))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
