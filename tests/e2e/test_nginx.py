"""End to end: a real nginx, configured with the project's own
etc/nginx/payhookd.conf, in front of the real payhookd (issue 12 item 4).

nginx runs unprivileged on 127.0.0.1 with a temporary prefix. The snippet is
included as it is: the test substitutes only the ports (payhookd's and the
listen port) and the certificate paths, and fails if one of them is no
longer where it expects, so a changed snippet is tested, never skipped.

The client is 127.0.0.2 (its socket is bound there): nginx connects to
payhookd from 127.0.0.1, payhookd's only trusted proxy, so an address that
reaches the store as 127.0.0.2 went through X-Forwarded-For.
"""
import http.client
import json
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Daemon, VALGRIND, free_port, tp_envelope

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))
SNIPPET = os.path.join(ROOT, "etc", "nginx", "payhookd.conf")
EXAMPLE_CONF = os.path.join(ROOT, "etc", "payhookd.conf")
PATH = "/baidu/tp/events"
CLIENT = "127.0.0.2"
FORGED = "203.0.113.9"
TIMEOUT = 60 if VALGRIND else 10

_app = [24508451]


def push():
    """A fresh signed TP push, and the appId (the app column) that finds its row."""
    _app[0] += 1
    message = {"appId": _app[0], "tpAppId": 10086, "eventTime": "2019-01-14 12:45:10",
               "event": "APP_PAYMENT_CREATE_ACCOUNT_PASS", "reason": ""}
    return tp_envelope(message), str(_app[0])


def substitute(text, old, new):
    """Replace the one occurrence of old; fail when the snippet no longer has it."""
    if text.count(old) != 1:
        raise AssertionError("etc/nginx/payhookd.conf: expected %r exactly once (update "
                             "test_nginx.py with the snippet)" % old)
    return text.replace(old, new)


def parse_size(text):
    """An nginx or payhookd size (64k, 1M, 65536) in bytes."""
    m = re.fullmatch(r"(\d+)([kKmM]?)", text.strip())
    if not m:
        raise AssertionError("not a size: %r" % text)
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


class Nginx:
    """One nginx master (and worker) in its own prefix directory."""

    def __init__(self, upstream_port):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(binary, os.X_OK):
            raise AssertionError("nginx is not installed: ./dev deps (or ./dev test) installs "
                                 "the Debian package nginx")
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="payhookd-nginx-")
        self.port = free_port()
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.error_log = os.path.join(self.dir, "error.log")
        self.proc = None
        self._make_cert()
        self._write_config(upstream_port)

    def _make_cert(self):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                        "-subj", "/CN=pay.example.com",
                        "-addext", "subjectAltName=DNS:pay.example.com,IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _write_config(self, upstream_port):
        with open(SNIPPET) as f:
            text = f.read()
        text = substitute(text, "server 127.0.0.1:8080;", "server 127.0.0.1:%d;" % upstream_port)
        text = substitute(text, "listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % self.port)
        text = substitute(text, "listen [::]:443 ssl;", "listen [::1]:%d ssl;" % self.port)
        text = substitute(text, "/etc/ssl/certs/pay.example.com.pem", self.cert)
        text = substitute(text, "/etc/ssl/private/pay.example.com.key", self.key)
        with open(os.path.join(self.dir, "payhookd.conf"), "w") as f:
            f.write(text)
        temp = os.path.join(self.dir, "temp")
        os.mkdir(temp)
        main = ["worker_processes 1;", "events { worker_connections 64; }", "http {",
                "    access_log %s/access.log;" % self.dir]
        main += ["    %s_temp_path %s/%s;" % (k, temp, k)
                 for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
        main += ["    include %s/payhookd.conf;" % self.dir, "}", ""]
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write("\n".join(main))

    def start(self):
        argv = [self.binary, "-e", self.error_log, "-p", self.dir,
                "-c", os.path.join(self.dir, "nginx.conf"),
                "-g", "daemon off; pid %s/nginx.pid; error_log %s info;" % (self.dir, self.error_log)]
        kw = {}
        if os.getuid() == 0:
            # Unprivileged even when the tests run as root.
            nobody = pwd.getpwnam("nobody")
            for d, dirs, files in os.walk(self.dir):
                for name in [d] + [os.path.join(d, x) for x in dirs + files]:
                    os.chown(name, nobody.pw_uid, nobody.pw_gid)
            kw = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, **kw)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not come up:\n" + self.log())

    def log(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """SIGQUIT (graceful), then SIGKILL to the whole group if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(3)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class NginxInFront(unittest.TestCase):
    """One payhookd and one nginx for the class; both stopped on the way out,
    whatever happened (class cleanups run even when setUpClass fails)."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(harness.tp_config(), server_extra="trusted_proxies = 127.0.0.1\n")
        cls.addClassCleanup(cls.stop_daemon)
        cls.d.start()
        cls.nginx = Nginx(cls.d.port)
        cls.addClassCleanup(cls.nginx.stop)
        cls.nginx.start()

    @classmethod
    def stop_daemon(cls):
        rc = cls.d.stop()
        if rc not in (0, None):
            raise AssertionError("payhookd exited %s:\n%s" % (rc, cls.d.logtext()))

    # ---- clients ----
    def via_nginx(self, method, path, body=None, headers=None, source=CLIENT):
        """A request over TLS to nginx from `source`, the certificate verified."""
        ctx = ssl.create_default_context(cafile=self.nginx.cert)
        c = http.client.HTTPSConnection("127.0.0.1", self.nginx.port, timeout=TIMEOUT,
                                        context=ctx, source_address=(source, 0))
        return self._exchange(c, method, path, body, headers)

    def direct(self, method, path, body=None, headers=None, source=CLIENT):
        """A request straight to payhookd from `source` (an untrusted peer)."""
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=TIMEOUT,
                                       source_address=(source, 0))
        return self._exchange(c, method, path, body, headers)

    @staticmethod
    def _exchange(c, method, path, body, headers):
        try:
            c.putrequest(method, path, skip_accept_encoding=True)
            for k, v in headers or []:
                c.putheader(k, v)  # a list of pairs: a header may come twice
            if body is not None:
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def post_push(self, send, extra_headers=(), source=CLIENT):
        body, app = push()
        st, data = send("POST", PATH, body, [("Content-Type", "application/json")] + list(extra_headers),
                        source=source)
        self.assertEqual((st, data), (200, b"success"), self.d.logtext()[-2000:])
        return self.d.query("SELECT remote_addr FROM events WHERE app = ?", app)

    def forged_rejection_remote(self, send, extra_headers):
        """Post a push with a wrong signature; the remote_addr of its rejection row."""
        env = json.loads(push()[0])
        env["MsgSignature"] = "0" * 40
        marker = "nonce-%d" % _app[0]
        env["Nonce"] = marker
        st, _ = send("POST", PATH, json.dumps(env).encode(),
                     [("Content-Type", "application/json")] + list(extra_headers))
        self.assertEqual(st, 401)
        sql = "SELECT count(*) FROM rejections WHERE CAST(body_prefix AS TEXT) LIKE ?"
        self.d.wait_rows(sql, 1, "%" + marker + "%")
        return self.d.query("SELECT remote_addr FROM rejections WHERE CAST(body_prefix AS TEXT) LIKE ?",
                            "%" + marker + "%")

    # ---- the client address ----
    def test_callback_through_nginx_is_stored_with_the_clients_address(self):
        self.assertEqual(self.post_push(self.via_nginx), [(CLIENT,)])
        # The rejection log line names the client too (not nginx's 127.0.0.1).
        self.assertEqual(self.forged_rejection_remote(self.via_nginx, []), [(CLIENT,)])
        self.assertIn("from %s: 401" % CLIENT, self.d.logtext())

    def test_clients_sharing_an_upstream_connection_keep_their_own_address(self):
        # nginx reuses its keepalive connections to payhookd: the address is
        # each request's, never the first request's on that connection.
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.4"):
            with self.subTest(source=source):
                self.assertEqual(self.post_push(self.via_nginx, source=source), [(source,)])

    def test_forged_forwarded_for_from_an_untrusted_peer_is_ignored(self):
        xff = [("X-Forwarded-For", FORGED)]
        self.assertEqual(self.post_push(self.direct, xff), [(CLIENT,)])
        self.assertEqual(self.forged_rejection_remote(self.direct, xff), [(CLIENT,)])

    def test_forged_forwarded_for_through_nginx_does_not_replace_the_client(self):
        # What a client could write to pass for someone else: a plain
        # address, a chain ending in the trusted proxy, the header twice.
        forgeries = [[("X-Forwarded-For", FORGED)],
                     [("X-Forwarded-For", "%s, 127.0.0.1" % FORGED)],
                     [("X-Forwarded-For", "%s, 127.0.0.1, garbage" % FORGED)],
                     [("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-For", FORGED + ", 127.0.0.1")]]
        for headers in forgeries:
            with self.subTest(headers=headers):
                self.assertEqual(self.post_push(self.via_nginx, headers), [(CLIENT,)])
                self.assertEqual(self.forged_rejection_remote(self.via_nginx, headers), [(CLIENT,)])

    # ---- the body limit ----
    def test_body_limits_agree_and_an_oversize_body_is_refused(self):
        with open(SNIPPET) as f:
            nginx_limit = parse_size(re.search(r"^\s*client_max_body_size\s+(\S+);", f.read(), re.M).group(1))
        with open(EXAMPLE_CONF) as f:
            daemon_limit = parse_size(re.search(r"^max_body\s*=\s*(\S+)", f.read(), re.M).group(1))
        self.assertEqual(nginx_limit, daemon_limit, "nginx client_max_body_size != payhookd max_body")
        # The Daemon here runs with the default max_body; the example states it.
        with open(self.d.conf) as f:
            self.assertNotIn("max_body", f.read())

        # Exactly the limit passes nginx and payhookd: stored.
        body, app = push()
        body += b" " * (daemon_limit - len(body))
        st, data = self.via_nginx("POST", PATH, body, [("Content-Type", "application/json")])
        self.assertEqual((st, data), (200, b"success"))
        self.assertEqual(self.d.query("SELECT remote_addr FROM events WHERE app = ?", app), [(CLIENT,)])

        # One byte more: nginx answers 413 and payhookd never sees it.
        before = self.d.query("SELECT count(*) FROM rejections WHERE reason = 'body_too_large'")[0][0]
        body, app = push()
        body += b" " * (daemon_limit + 1 - len(body))
        st, _ = self.via_nginx("POST", PATH, body, [("Content-Type", "application/json")])
        self.assertEqual(st, 413)
        self.assertEqual(self.d.query("SELECT count(*) FROM events WHERE app = ?", app)[0][0], 0)
        # Sent straight to payhookd, the same body gets payhookd's own 413.
        st, _ = self.direct("POST", PATH, body, [("Content-Type", "application/json")])
        self.assertEqual(st, 413)
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = 'body_too_large'", before + 1)

    # ---- what nginx exposes ----
    def test_health_and_metrics_are_not_reachable_from_outside(self):
        for path in ("/metrics", "/healthz", "/readyz", "/metrics?x=1", "//metrics",
                     "/baidu/../metrics", "/baidu/%2e%2e/metrics", "/metrics/", "/METRICS"):
            with self.subTest(path=path):
                st, data = self.via_nginx("GET", path)
                self.assertIn(st, (403, 404), data[:200])
                self.assertNotIn(b"payhookd_", data)
                self.assertNotIn(b"ready", data)
        # A path payhookd does not serve is not passed on either.
        st, _ = self.via_nginx("GET", "/")
        self.assertEqual(st, 404)
        # From nginx's own host (where Prometheus scrapes) they are reachable,
        # so the 403s above are the snippet's allow/deny, not a broken proxy.
        st, data = self.via_nginx("GET", "/metrics", source="127.0.0.1")
        self.assertEqual(st, 200)
        self.assertIn(b"payhookd_requests_total", data)
        for path, answer in (("/healthz", 200), ("/readyz", 200)):
            self.assertEqual(self.via_nginx("GET", path, source="127.0.0.1")[0], answer)


if __name__ == "__main__":
    unittest.main()
