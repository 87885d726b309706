"""The project's Verify v2 double (``tests/fakes/verify_server.FakeVerifyServer``) in a
process of its own, with injected latency, plus a plain-HTTP side door on loopback from
which the load clients read the codes it "sent" (as a voter reads an SMS).

    python -m benchmarks.verify_double --latency 0.3 --info-file /tmp/x.json

It writes ``{"host", "ca_bundle", "codes_url"}`` to the info file once both listen, then
serves until SIGTERM. Its own process keeps its TLS and JSON work off the load clients'
interpreter, and the Pollstr worker and the synchronous baseline reach the same double.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from tests.fakes.verify_server import FakeVerifyServer  # noqa: E402


def latest_code(messages: list[dict[str, Any]], number: str) -> str | None:
    """The code most recently sent to ``number`` (E.164, with or without the +)."""
    wanted = number.lstrip("+")
    for message in reversed(messages):
        if str(message.get("to", "")).lstrip("+") == wanted:
            return str(message["code"])
    return None


class _CodesHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeVerifyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        number = (parse_qs(parts.query).get("to") or [""])[0]
        if parts.path == "/code" and number:
            with self.fake._lock:
                code = latest_code(list(self.fake.messages), number)
            self._send(200 if code else 404, code or "")
        elif parts.path == "/stats":
            with self.fake._lock:
                counts: dict[str, int] = {}
                for request in self.fake.requests_log:
                    name = request.operation or "other"
                    counts[name] = counts.get(name, 0) + 1
            self._send(200, json.dumps(counts))
        else:
            self._send(404, "")

    def _send(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(latency: float, info_file: Path) -> None:
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    with FakeVerifyServer(latency=latency) as fake:
        handler = type("CodesHandler", (_CodesHandler,), {"fake": fake})
        codes = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        codes.daemon_threads = True
        threading.Thread(target=codes.serve_forever, daemon=True).start()
        info = {
            "host": fake.host,
            "ca_bundle": fake.ca_bundle_path,
            "codes_url": f"http://127.0.0.1:{codes.server_address[1]}",
        }
        tmp = info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(info_file)
        stop.wait()
        codes.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per API call")
    parser.add_argument("--info-file", type=Path, required=True)
    args = parser.parse_args(argv)
    if not 0 <= args.latency <= 30:
        parser.error("--latency must be between 0 and 30 seconds")
    serve(args.latency, args.info_file)


if __name__ == "__main__":
    main()
