"""A local HTTP file server on 127.0.0.1 for download tests: Range support, and switchable misbehaviour."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Served:
    """What the server holds and how it behaves; tests change these between requests."""

    files: dict[str, bytes] = field(default_factory=dict)
    ignore_range: bool = False
    #: Close the connection after this many body bytes (Content-Length still announces the whole body).
    cut_after: int | None = None
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    if_range: list[str | None] = field(default_factory=list)
    url: str = ""

    def add(self, name: str, data: bytes) -> str:
        self.files["/" + name] = data
        return f"{self.url}/{name}"


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        s = self.served
        rng = self.headers.get("Range")
        s.requests.append((self.path, rng))
        s.if_range.append(self.headers.get("If-Range"))
        data = s.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        unchanged = self.headers.get("If-Range") in (None, etag)
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and unchanged and not s.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.end_headers()
        if s.cut_after is not None:
            body = body[: s.cut_after]
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()


@contextmanager
def serve() -> Iterator[Served]:
    """Run a threaded server on an ephemeral port for the duration of the block."""
    served = Served()
    handler = type("Handler", (_Handler,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url(name: str) -> str:
    """A URL on 127.0.0.1 where nothing listens (a port bound and released again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"
