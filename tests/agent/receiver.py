"""A small InfluxDB-like write endpoint for the agent's tests, run as its own process.

    python receiver.py --port 0 --port-file P --out LINES [--token T] [--status CODE] [--hold-file F]
                       [--tls-cert CERT --tls-key KEY] [--script CODES]

Appends every received line to LINES (gunzipping request bodies) and answers
204, as InfluxDB does. With --status it answers that code instead (and records
nothing). While --hold-file exists, a request is recorded and then held
unanswered: the data reached the server but the agent never learns it (as when
the agent is killed mid-request). With --tls-cert and --tls-key it serves HTTPS. With --script
(comma-separated codes) the first requests are answered those codes in turn (recording nothing),
the rest as usual.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--out", required=True)
    ap.add_argument("--token")
    ap.add_argument("--status", type=int, default=204)
    ap.add_argument("--hold-file")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--script", default="")
    args = ap.parse_args()
    import threading

    script = [int(c) for c in args.script.split(",") if c]
    script_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet
            pass

        def _reply(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if body:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if urlsplit(self.path).path != "/api/v2/write":
                return self._reply(404, b'{"code":"not found","message":"path not found"}')
            if args.token and self.headers.get("Authorization") != f"Token {args.token}":
                return self._reply(401, b'{"code":"unauthorized","message":"unauthorized access"}')
            with script_lock:
                scripted = script.pop(0) if script else None
            if scripted is not None:
                return self._reply(scripted, json.dumps({"code": "invalid", "message": f"scripted {scripted}"}).encode())
            if args.status != 204:
                return self._reply(args.status, json.dumps({"code": "invalid", "message": f"scripted failure {args.status}"}).encode())
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with open(args.out, "ab") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            points = body.count(b"\n")
            with open(args.out + ".requests", "a") as f:
                f.write(f"{self.path} {points}\n")
            while args.hold_file and os.path.exists(args.hold_file):
                time.sleep(0.05)
            self._reply(204)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake happens in accept(); a client that refuses the certificate is an OSError
        # there, which the server skips.
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
