"""harness.py: start the real payhookd on a loopback port, talk HTTP to it,
look at its SQLite store, and build correctly signed platform requests with
an implementation independent of payhookd's own C code (Python's
`cryptography`), so a bug shared by signer and verifier cannot hide.

Environment:
  PAYHOOKD          the binary under test (set by `make check`)
  PAYHOOKCTL        the control tool
  PAYHOOKD_VALGRIND when "1", run the daemon under valgrind and fail the
                    test on any error or leak it reports
  VECTORS_DIR       ../shared/vectors (required: a test that needs them fails
                    when they are missing; it never skips)
"""
import base64
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import textwrap
import time
import unittest

import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = os.path.dirname(os.path.abspath(__file__))
PAYHOOKD = os.environ.get("PAYHOOKD") or os.path.join(HERE, "..", "..", "build", "debug", "payhookd")
PAYHOOKCTL = os.environ.get("PAYHOOKCTL") or os.path.join(os.path.dirname(PAYHOOKD), "payhookctl")
VECTORS_DIR = os.environ.get("VECTORS_DIR") or os.path.join(HERE, "..", "..", "..", "shared", "vectors")
VALGRIND = os.environ.get("PAYHOOKD_VALGRIND") == "1"

# Test-only TP credentials (generated per run where it matters).
TP_TOKEN = "e2e-token-" + "%08x" % random.getrandbits(32)
TP_CLIENT_ID = "e2e-client-id"


def random_aes_key43():
    """A fresh EncodingAESKey: 43 base64 characters of 32 random bytes."""
    return base64.b64encode(os.urandom(32)).decode()[:43]


TP_AES_KEY = random_aes_key43()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- Baidu TP message crypto (protocols.md section 2), written afresh ----

def tp_key(aes_key43):
    return base64.b64decode(aes_key43 + "=")


def tp_encrypt(aes_key43, message, client_id, prefix=None, length=None):
    """Encrypt message bytes the way the platform does; `length` overrides
    the declared length (to build hostile plaintexts)."""
    key = tp_key(aes_key43)
    prefix = prefix if prefix is not None else os.urandom(16)
    n = len(message) if length is None else length
    plain = prefix + struct.pack(">I", n) + message + client_id.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def tp_signature(token, timestamp, nonce, encrypt):
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


def tp_envelope(message, token=None, aes_key=None, client_id=None, timestamp=None, nonce=None):
    """A JSON envelope body (bytes) carrying message (dict or bytes)."""
    token = token or TP_TOKEN
    aes_key = aes_key or TP_AES_KEY
    client_id = client_id or TP_CLIENT_ID
    if isinstance(message, dict):
        message = json.dumps(message, ensure_ascii=False).encode()
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(random.randint(10**8, 10**9))
    encrypt = tp_encrypt(aes_key, message, client_id)
    env = {"Nonce": nonce, "TimeStamp": timestamp, "Encrypt": encrypt,
           "MsgSignature": tp_signature(token, timestamp, nonce, encrypt)}
    return json.dumps(env).encode()


def tp_config(path="/baidu/tp/events", allow_plaintext="no"):
    return textwrap.dedent("""
        [baidu.tp]
        path = %s
        client_id = %s
        token = %s
        encoding_aes_key = %s
        allow_plaintext = %s
        """) % (path, TP_CLIENT_ID, TP_TOKEN, TP_AES_KEY, allow_plaintext)


# ---- RSA keys and signed forms (Baidu cashier, Alipay, gateways) ---------

class RsaKey:
    """A key pair generated for the test run (the platform's side)."""

    def __init__(self, bits=2048):
        self.priv = rsa.generate_private_key(public_exponent=65537, key_size=bits)

    def spki_b64(self):
        der = self.priv.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def public_pem(self):
        return self.priv.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def private_pem(self):
        return self.priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()

    def write_public_pem(self, directory, name="key.pem"):
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(self.public_pem())
        return path

    def write_private_pem(self, directory, name="private.pem"):
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(self.private_pem())
        return path

    def sign(self, data, hash_name="sha1"):
        h = hashes.SHA1() if hash_name == "sha1" else hashes.SHA256()
        return base64.b64encode(self.priv.sign(data, padding.PKCS1v15(), h)).decode()


def as_bytes(v):
    return v if isinstance(v, bytes) else str(v).encode()


def canonical(fields, exclude=(), drop_empty=False, append=b""):
    """The signed string: fields (list of (key, value)) minus excluded keys
    (and empty values when drop_empty), sorted by key bytes, k=v joined by &."""
    items = [(as_bytes(k), as_bytes(v)) for k, v in fields
             if k not in exclude and not (drop_empty and as_bytes(v) == b"")]
    items.sort(key=lambda kv: kv[0])
    return b"&".join(k + b"=" + v for k, v in items) + append


def form_body(fields):
    """application/x-www-form-urlencoded bytes (values may be bytes, e.g. GBK)."""
    return "&".join(urllib.parse.quote_plus(as_bytes(k)) + "=" + urllib.parse.quote_plus(as_bytes(v))
                    for k, v in fields).encode()


def baidu_signed(fields, key):
    """Fields plus rsaSign, signed as Baidu's cashier does (SHA1withRSA, empty values kept)."""
    fields = [(k, v) for k, v in fields if k != "rsaSign"]
    sig = key.sign(canonical(fields, exclude=("rsaSign", "sign", "sign_type")), "sha1")
    return fields + [("rsaSign", sig)]


# ---- the daemon ------------------------------------------------------------

class Daemon:
    """One payhookd process with its own directory, config and store."""

    def __init__(self, extra_config="", server_extra="", store_extra="", workdir=None, db_path=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="payhookd-e2e-")
        self.port = free_port()
        self.db_path = db_path or os.path.join(self.dir, "payhookd.db")
        self.conf = os.path.join(self.dir, "payhookd.conf")
        self.log_path = os.path.join(self.dir, "payhookd.log")
        self.vg_log = os.path.join(self.dir, "valgrind.log")
        self.proc = None
        self.write_config(extra_config, server_extra, store_extra)

    def write_config(self, extra_config="", server_extra="", store_extra=""):
        text = "[server]\nlisten = 127.0.0.1:%d\nthreads = 2\n%s\n[store]\npath = %s\n%s\n%s\n" % (
            self.port, server_extra, self.db_path, store_extra, extra_config)
        with open(self.conf, "w") as f:
            f.write(text)

    def start(self, wait=True, expect_fail=False, env=None):
        argv = [PAYHOOKD, "-c", self.conf]
        if VALGRIND:
            argv = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
                    "--show-leak-kinds=definite,indirect,possible", "--errors-for-leak-kinds=definite,indirect,possible",
                    "--log-file=" + self.vg_log] + argv
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if not wait:
            return self
        deadline = time.time() + (60 if VALGRIND else 10)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                if expect_fail:
                    return self
                raise AssertionError("payhookd exited with %s:\n%s" % (self.proc.returncode, self.logtext()))
            try:
                st, _, _ = self.request("GET", "/healthz", timeout=2)
                if st == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("payhookd did not come up:\n" + self.logtext())

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Stop the daemon; returns its exit status. Fails on valgrind errors."""
        if not self.proc or self.proc.poll() is not None:
            if self.proc and not self.log.closed:
                self.log.close()  # it exited by itself
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout or (120 if VALGRIND else 30))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("payhookd did not stop:\n" + self.logtext())
        self.log.close()
        if VALGRIND and sig != signal.SIGKILL:
            with open(self.vg_log) as f:
                report = f.read()
            if rc == 99 or report.strip():
                raise AssertionError("valgrind reported problems:\n" + report)
        return rc

    def age_events(self, days):
        """Make every stored event `days` older (for prune): the daemon is
        stopped (cleanly: exit 0) while the store is changed, then started."""
        rc = self.stop()
        if rc != 0:
            raise AssertionError("payhookd exited %s:\n%s" % (rc, self.logtext()))
        con = sqlite3.connect(self.db_path)
        con.execute("UPDATE events SET received_at = strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now', '-%d days')"
                    % int(days))
        con.commit()
        con.close()
        self.start()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()

    # ---- HTTP ----
    def request(self, method, path, body=None, headers=None, timeout=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout or (60 if VALGRIND else 10))
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            c.close()

    def post(self, path, body, content_type="application/json", headers=None):
        h = {"Content-Type": content_type} if content_type else {}
        h.update(headers or {})
        st, data, _ = self.request("POST", path, body, h)
        return st, data

    # ---- the store ----
    def db(self):
        return sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)

    def query(self, sql, *args):
        with self.db() as c:
            return c.execute(sql, args).fetchall()

    def wait_rows(self, sql, n, *args, timeout=10):
        """Poll until `sql` (a COUNT) returns n: rejection rows are written
        asynchronously, after the answer."""
        deadline = time.time() + (timeout * 4 if VALGRIND else timeout)
        got = None
        while time.time() < deadline:
            got = self.query(sql, *args)[0][0]
            if got == n:
                return got
            time.sleep(0.05)
        raise AssertionError("%s gave %r, expected %r" % (sql, got, n))


def preload_unusable():
    """Why an LD_PRELOAD shim cannot run under this build, or None: valgrind
    replaces the allocator the shim wraps (and is too slow). ASan builds run
    it: the test's environment lets the shim come before the runtime."""
    return "under valgrind" if VALGRIND else None


def preload_env(shim, asan_extra="", **more):
    """The environment that runs payhookd with an LD_PRELOAD shim: under
    ASan the shim then comes before the sanitizer's runtime."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = dict(os.environ, LD_PRELOAD=shim, **more)
    env["ASAN_OPTIONS"] = ":".join(p for p in (asan, "verify_asan_link_order=0", asan_extra) if p)
    return env


def build_preload(directory, name, source):
    """Compile a test's LD_PRELOAD shim (C source) into directory/name.so."""
    src, out = os.path.join(directory, name + ".c"), os.path.join(directory, name + ".so")
    with open(src, "w") as f:
        f.write(source)
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", out, src, "-ldl"], check=True)
    return out


def median_seconds(fn, n=20):
    """Call fn n times; the median wall time of one call, and all of them."""
    took = []
    for _ in range(n):
        t0 = time.monotonic()
        fn()
        took.append(time.monotonic() - t0)
    took.sort()
    return took[len(took) // 2], took


class DaemonTest(unittest.TestCase):
    """A test case with a daemon started per test (stopped and checked after)."""

    extra_config = ""
    server_extra = ""
    store_extra = ""

    def setUp(self):
        self.d = Daemon(self.extra_config, self.server_extra, self.store_extra).start()

    def tearDown(self):
        if self.d.proc and self.d.proc.poll() is None:
            rc = self.d.stop()
            self.assertEqual(rc, 0, self.d.logtext())

    def count(self, table="events", where="1", *args):
        return self.d.query("SELECT count(*) FROM %s WHERE %s" % (table, where), *args)[0][0]


def load_vector(name):
    path = os.path.join(VECTORS_DIR, name)
    if not os.path.exists(path):
        raise AssertionError("vector %s not found in %s: the real platform-signed vectors are "
                             "required (set VECTORS_DIR to ../shared/vectors)" % (name, VECTORS_DIR))
    with open(path, encoding="utf-8") as f:
        return json.load(f)
