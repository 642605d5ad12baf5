#!/usr/bin/env python3
"""A Sightline result webhook receiver: the standard library only.

Checks every request as docs/outputs/webhooks.md says a receiver should:

- X-Sightline-Signature is "sha256=" + hex HMAC-SHA256(secret, "<timestamp>.<body>"),
  compared in constant time (hmac.compare_digest);
- X-Sightline-Timestamp is within 5 minutes of now (a captured request cannot be
  replayed later: the timestamp is inside the signature);
- Idempotency-Key (the result's request_id) was not seen before: Sightline
  delivers at least once, so a repeat is answered 200 and not processed again.

Run:  WEBHOOK_SECRET=change-me python3 examples/webhook_receiver.py --port 9000
then: sightline serve --webhook-urls http://127.0.0.1:9000/sightline --webhook-secret change-me

Prints one line per request: "accepted <id> line=… camera=… verdict=… defects=N",
"duplicate <id>" or "rejected <reason>".
"""

import argparse
import collections
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_SKEW_S = 5 * 60
MAX_BODY = 10 * 1024 * 1024
SEEN_MAX = 100_000


class Seen:
    """Idempotency keys already processed, the oldest forgotten beyond SEEN_MAX (use a database in production)."""

    def __init__(self):
        self._keys = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, key):
        """True the first time a key is added."""
        with self._lock:
            if key in self._keys:
                return False
            self._keys[key] = True
            if len(self._keys) > SEEN_MAX:
                self._keys.popitem(last=False)
            return True


def signature_ok(secret, timestamp, body, header):
    expected = "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode())


class Handler(BaseHTTPRequestHandler):
    secret = b""
    seen = Seen()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.reject(413, "body too large")
        body = self.rfile.read(length)
        timestamp = self.headers.get("X-Sightline-Timestamp", "")
        if self.secret:
            if not signature_ok(self.secret, timestamp, body, self.headers.get("X-Sightline-Signature", "")):
                return self.reject(401, "bad signature")
            # Checked after the signature: only a signed timestamp means anything.
            if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_S:
                return self.reject(401, "stale timestamp")
        try:
            event = json.loads(body)
        except ValueError:
            return self.reject(400, "not JSON")
        key = self.headers.get("Idempotency-Key") or event.get("id", "")
        if not self.seen.add(key):
            print(f"duplicate {key}", flush=True)
            return self.answer(200)
        result = event.get("result", {})
        print(
            f"accepted {key} line={event.get('line')} camera={event.get('camera')} "
            f"verdict={event.get('verdict')} defects={len(result.get('detections', []))} "
            f"attempt={self.headers.get('X-Sightline-Attempt')}",
            flush=True,
        )
        # Answer fast (2xx within webhook_timeout_ms) and do slow work elsewhere, or Sightline retries.
        self.answer(204)

    def reject(self, status, reason):
        print(f"rejected {reason}", flush=True)
        self.answer(status)

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # one line per request is printed above
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        print("warning: WEBHOOK_SECRET is not set, signatures are not checked", file=sys.stderr, flush=True)
    Handler.secret = secret.encode()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
