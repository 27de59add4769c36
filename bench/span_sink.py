"""``python -m bench.span_sink --port N``: a span collector that accepts and drops every batch.

The traced rows of the main comparison export to it, so what they measure is the sidecar's
own cost of tracing (making spans, encoding and sending them) and not a collector's: it runs as
a process of its own, outside the row's measured processes, and answers Zipkin's
``POST /api/v2/spans`` with 202 as Zipkin does.
"""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter's session reuses its connection

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.span_sink")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()


if __name__ == "__main__":
    main()
