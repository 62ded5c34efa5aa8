"""A hook receiver for the end-to-end tests: an HTTP server on 127.0.0.1
that records every delivery and checks its Standard Webhooks signature
itself (the algorithm written here, not taken from payhookd), against every
secret it is given. Answers are scripted: a queue of (status, headers,
delay) per receiver, 200 when the queue is empty."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import socketserver
import threading
import time


def new_secret():
    """A whsec_ secret of 24 random bytes, and its raw key."""
    raw = os.urandom(24)
    return "whsec_" + base64.b64encode(raw).decode(), raw


def sign(raw_key, msg_id, timestamp, body):
    """The Standard Webhooks signature: base64 HMAC-SHA256 of id.timestamp.body."""
    mac = hmac.new(raw_key, b"%s.%s.%s" % (msg_id.encode(), str(timestamp).encode(), body),
                   hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class Delivery:
    def __init__(self, headers, body, at):
        self.headers = headers
        self.body = body
        self.at = at
        self.id = headers.get("webhook-id")
        self.timestamp = headers.get("webhook-timestamp")
        self.signatures = (headers.get("webhook-signature") or "").split(" ")
        self.envelope = json.loads(body)

    def verifies_with(self, raw_key):
        want = "v1," + sign(raw_key, self.id, self.timestamp, self.body)
        return any(hmac.compare_digest(want, s) for s in self.signatures)

    @property
    def data(self):
        return self.envelope["data"]


class HookReceiver:
    def __init__(self, port=0):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.deliveries = []
        self.script = []       # (status, headers, delay) answers, in order
        self.by_order = {}     # order_id: answers for that order's deliveries first
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with recv.lock:
                    d = Delivery(headers, body, time.time())
                    recv.deliveries.append(d)
                    mine = recv.by_order.get(d.data.get("order_id"))
                    if mine:
                        answer = mine.pop(0)
                    else:
                        answer = recv.script.pop(0) if recv.script else (200, {}, 0)
                    recv.in_flight += 1
                    recv.max_in_flight = max(recv.max_in_flight, recv.in_flight)
                    recv.cond.notify_all()
                status, extra, delay = answer
                try:
                    if delay:
                        recv.stopping.wait(delay)
                    text = b"ok %d" % status
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                finally:
                    with recv.lock:
                        recv.in_flight -= 1

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                # a daemon killed mid-request (the crash tests) resets the
                # connection: expected, not worth a traceback
                import sys
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/hook" % self.port

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, status, times=1, headers=None, delay=0):
        with self.lock:
            self.script.extend([(status, headers or {}, delay)] * times)

    def answer_order(self, order_id, status, times=1, headers=None, delay=0):
        """Answers for the deliveries of one order only."""
        with self.lock:
            self.by_order.setdefault(order_id, []).extend([(status, headers or {}, delay)] * times)

    def wait_for(self, n, timeout=10.0):
        """Wait until n deliveries arrived; returns them all."""
        deadline = time.time() + timeout
        with self.lock:
            while len(self.deliveries) < n:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("hook receiver: %d deliveries, expected %d" % (
                        len(self.deliveries), n))
                self.cond.wait(left)
            return list(self.deliveries)

    def count(self):
        with self.lock:
            return len(self.deliveries)


def main():
    """Run it by hand: print each delivery and whether its signature verifies.
    python3 tests/e2e/hook_receiver.py --port 8099 --secret whsec_... [--count N]"""
    import argparse
    import sys
    p = argparse.ArgumentParser(description="a Standard Webhooks receiver that checks payhookd's signatures")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--secret", action="append", required=True, help="whsec_... (repeatable)")
    p.add_argument("--count", type=int, default=0, help="exit after N verified deliveries (0: never)")
    p.add_argument("--timeout", type=float, default=0, help="give up (exit 1) after this many seconds")
    a = p.parse_args()
    keys = [base64.b64decode(s[6:]) for s in a.secret if s.startswith("whsec_")]
    if len(keys) != len(a.secret):
        p.error("--secret: each secret is whsec_<base64>")
    recv = HookReceiver(a.port).start()
    seen = verified = 0
    deadline = time.time() + a.timeout if a.timeout else None
    try:
        while not a.count or verified < a.count:
            left = deadline - time.time() if deadline else 3600
            if left <= 0:
                print("hook receiver: timed out after %d verified deliveries" % verified, file=sys.stderr)
                sys.exit(1)
            try:
                got = recv.wait_for(seen + 1, min(left, 3600))
            except AssertionError:
                continue
            for d in got[seen:]:
                ok = all(d.verifies_with(k) for k in keys)
                verified += ok
                print("%s delivery %s %s event %s %s: %s" % (
                    "verified" if ok else "FORGED", d.id, d.envelope.get("type"), d.data.get("event_id"),
                    d.data.get("order_id"), d.data.get("confirmation")), flush=True)
            seen = len(got)
    finally:
        recv.stop()


if __name__ == "__main__":
    main()
