"""End to end: `payhookctl sample` builds requests the real daemon accepts.

The real payhookctl is run against the real payhookd. Because both link the
same crypto.c, the printed bodies are also opened here with Python's own
AES and SHA-1, so a bug shared by the signer and the verifier cannot hide.
"""
import base64
import hashlib
import json
import struct
import subprocess
import unittest

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import harness
from harness import DaemonTest

PATH = "/baidu/tp/events"


def ctl(*args, timeout=120):
    """Run payhookctl; returns (exit status, stdout, stderr) as text."""
    p = subprocess.run([harness.PAYHOOKCTL] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def tp_open(body, token=None, aes_key=None):
    """Check a TP envelope's signature and decrypt it; returns (client id, message)."""
    env = json.loads(body)
    token = token or harness.TP_TOKEN
    parts = sorted([token, env["TimeStamp"], env["Nonce"], env["Encrypt"]])
    assert hashlib.sha1("".join(parts).encode()).hexdigest() == env["MsgSignature"], env
    key = harness.tp_key(aes_key or harness.TP_AES_KEY)
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = dec.update(base64.b64decode(env["Encrypt"], validate=True)) + dec.finalize()
    pad = plain[-1]
    assert 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad, "bad padding"
    plain = plain[:-pad]
    n = struct.unpack(">I", plain[16:20])[0]
    return plain[20 + n:].decode(), json.loads(plain[20:20 + n])


class PayhookctlSample(DaemonTest):
    extra_config = harness.tp_config()

    def url(self):
        return "http://127.0.0.1:%d%s" % (self.d.port, PATH)

    def sample(self, *args):
        return ctl("-c", self.d.conf, "sample", "baidu.tp", *args)

    def test_post_from_config_is_answered_success_and_stored_verified(self):
        rc, out, err = self.sample("--event", "APP_PAYMENT_CREATE_ACCOUNT_PASS", "--post", self.url())
        self.assertEqual((rc, out), (0, "200 success\n"), err)
        rows = self.d.query("SELECT provider, kind, app, status, verified, deliveries FROM events")
        self.assertEqual(rows, [("baidu.tp", "tp_push", "14508451",
                                 "APP_PAYMENT_CREATE_ACCOUNT_PASS", 1, 1)])

    def test_printed_body_opens_with_an_independent_implementation(self):
        rc, out, err = self.sample("--app-id", "42", "--tp-app-id", "7", "--event", "APP_PAYMENT_CREATE_PAYMENT_FAIL",
                                   "--timestamp", "1700000000", "--nonce", "abc123")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.endswith("\n") and out.count("\n") == 1, out)
        body = out[:-1].encode()
        env = json.loads(body)
        self.assertEqual(list(env), ["Nonce", "TimeStamp", "Encrypt", "MsgSignature"])
        self.assertEqual((env["Nonce"], env["TimeStamp"]), ("abc123", "1700000000"))
        client_id, msg = tp_open(body)
        self.assertEqual(client_id, harness.TP_CLIENT_ID)
        # 1700000000 is 2023-11-14 22:13:20 UTC, 06:13:20 the next day in UTC+8.
        self.assertEqual(msg, {"appId": 42, "tpAppId": 7, "eventTime": "2023-11-15 06:13:20",
                               "event": "APP_PAYMENT_CREATE_PAYMENT_FAIL", "reason": ""})
        self.assertEqual(self.d.post(PATH, body), (200, b"success"))
        self.assertEqual(self.d.query("SELECT app, status, verified FROM events"),
                         [("42", "APP_PAYMENT_CREATE_PAYMENT_FAIL", 1)])

    def test_count_50_posts_50_distinct_rows(self):
        rc, out, err = self.sample("--count", "50", "--post", self.url())
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines(), ["200 success"] * 50)
        self.assertEqual(self.d.query("SELECT count(*), count(DISTINCT app), sum(verified), "
                                      "max(deliveries) FROM events"), [(50, 50, 50, 1)])
        apps = sorted(int(a) for (a,) in self.d.query("SELECT app FROM events"))
        self.assertEqual(apps, list(range(14508451, 14508451 + 50)))

    def test_count_prints_distinct_single_line_bodies(self):
        rc, out, err = self.sample("--count", "5", "--ticket", "TK", "--timestamp", "1700000000")
        self.assertEqual(rc, 0, err)
        lines = out.split("\n")
        self.assertEqual(lines[-1], "")
        bodies = lines[:-1]
        self.assertEqual(len(bodies), 5)
        msgs = [tp_open(b)[1] for b in bodies]
        self.assertEqual([m["CreateTime"] for m in msgs], list(range(1700000000, 1700000005)))
        self.assertEqual({(m["Ticket"], m["MsgType"], m["Event"]) for m in msgs},
                         {("TK", "ticket", "push")})

    def test_ticket_is_kept_as_the_latest(self):
        rc, out, err = self.sample("--ticket", "ticket-from-ctl", "--post", self.url())
        self.assertEqual((rc, out), (0, "200 success\n"), err)
        self.assertEqual([r[0] for r in self.d.query("SELECT ticket FROM tp_ticket")], ["ticket-from-ctl"])

    def test_field_overrides_and_adds(self):
        rc, out, err = self.sample("--field", "reason=no licence", "--field", "appId=99",
                                   "--field", "extra=true")
        self.assertEqual(rc, 0, err)
        msg = tp_open(out.strip())[1]
        self.assertEqual((msg["reason"], msg["appId"], msg["extra"]), ("no licence", 99, True))

    def test_wrong_token_is_refused_and_exits_1(self):
        rc, out, err = self.sample("--token", "not-the-token", "--post", self.url())
        self.assertEqual(rc, 1, err)
        status = int(out.split()[0])
        self.assertFalse(200 <= status < 300, out)
        self.assertIn("not 2xx", err)
        self.assertEqual(self.count("events"), 0)

    def test_options_win_over_the_config(self):
        # A key and client id other than the daemon's: the daemon must refuse it.
        key = harness.random_aes_key43()
        rc, out, err = self.sample("--aes-key", key, "--client-id", "other", "--timestamp", "1700000000")
        self.assertEqual(rc, 0, err)
        self.assertEqual(tp_open(out.strip(), aes_key=key)[0], "other")
        self.assertIn(self.d.post(PATH, out.strip().encode())[0], (400, 401))


class PayhookctlUsage(unittest.TestCase):
    """Usage errors exit 2 and name what was wrong; no daemon is needed."""

    def assert_usage(self, args, needle):
        rc, out, err = ctl(*args)
        self.assertEqual(rc, 2, (args, out, err))
        self.assertIn(needle, err)
        self.assertEqual(out, "")

    def test_usage_errors_name_the_option(self):
        creds = ["--token", "t", "--client-id", "c", "--aes-key", harness.random_aes_key43()]
        self.assert_usage(["sample", "baidu.tp", "--count", "0"] + creds, "--count")
        self.assert_usage(["sample", "baidu.tp", "--count", "x"] + creds, "--count")
        self.assert_usage(["sample", "baidu.tp", "--count"], "--count")
        self.assert_usage(["sample", "baidu.tp", "--aes-key", "short", "--token", "t", "--client-id", "c"],
                          "--aes-key")
        self.assert_usage(["sample", "baidu.tp", "--client-id", "c", "--aes-key", harness.random_aes_key43()],
                          "--token")
        self.assert_usage(["sample", "baidu.tp", "--no-such-option"], "--no-such-option")
        self.assert_usage(["sample", "baidu.tp", "--field", "novalue"] + creds, "--field")
        self.assert_usage(["sample", "baidu.tp", "--ticket", "T", "--app-id", "1"] + creds, "--app-id")
        self.assert_usage(["sample", "baidu.tp", "--message", "{}", "--count", "2"] + creds, "--count")
        self.assert_usage(["sample", "baidu.tp", "--post", "ftp://x"] + creds, "--post")
        self.assert_usage(["sample", "baidu.tp", "--private-key", "/k.pem"] + creds, "--private-key")

    def test_unknown_provider_kind_and_command(self):
        self.assert_usage(["sample", "nosuch"], "nosuch")
        self.assert_usage(["sample", "baidu.tp", "nokind"], "nokind")
        self.assert_usage(["sample"], "PROVIDER")
        self.assert_usage(["frobnicate"], "frobnicate")

    def test_list_help_and_version(self):
        rc, out, _ = ctl("sample", "--list")
        self.assertEqual(rc, 0)
        self.assertIn("baidu.tp push", out)
        rc, out, _ = ctl("--help")
        self.assertEqual(rc, 0)
        for opt in ("--post", "--count", "--field", "--token", "--aes-key", "--ticket", "--message"):
            self.assertIn(opt, out)
        rc, out, _ = ctl("--version")
        self.assertEqual((rc, out.split()[0]), (0, "payhookctl"))

    def test_unreachable_url_exits_1(self):
        creds = ["--token", "t", "--client-id", "c", "--aes-key", harness.random_aes_key43()]
        port = harness.free_port()
        rc, out, err = ctl("sample", "baidu.tp", "--post", "http://127.0.0.1:%d/x" % port, *creds)
        self.assertEqual(rc, 1, err)
        self.assertIn("POST", err)


if __name__ == "__main__":
    unittest.main()
