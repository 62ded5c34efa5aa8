"""End to end: `payhookctl sample` builds requests the real daemon accepts.

The real payhookctl is run against the real payhookd, for every provider and
kind. Because both link the same crypto.c and form.c, the printed bodies are
also opened here with Python's own AES, SHA-1, MD5 and RSA (`cryptography`),
so a bug shared by the signer and the verifier cannot hide.
"""
import base64
import hashlib
import http.server
import json
import struct
import subprocess
import tempfile
import threading
import unittest
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import harness
from harness import DaemonTest, RsaKey, canonical

PATH = "/baidu/tp/events"
PAY, AUDIT, REFUND = "/baidu/pay/notify", "/baidu/pay/refund-audit", "/baidu/pay/refund-notify"
ALIPAY = "/alipay/notify"
FORM = "application/x-www-form-urlencoded"
ALIPAY_CT = "application/x-www-form-urlencoded; text/html; charset=utf-8"
OK_PAY = '{"errno":0,"msg":"success","data":{"isConsumed":2}}'
OK_REFUND = '{"errno":0,"msg":"success","data":{}}'
DEAL, ALIPAY_APP, SELLER = "470193086", "2021004100000001", "2088000000000001"
BAIDU_APP = "14508451"  # events.app: the app id, not the deal id
LOWER_SECRET, FUBEI_SECRET, FUBEI_APP = "lower-secret-9f3a2c", "FubeiSecret77", "FB-APP-1"

# The platforms' key pairs: the daemon's config holds the public halves, the
# tests (the platform's side) sign with the private ones through payhookctl.
BAIDU_KEY, ALIPAY_KEY, GW_KEY, OTHER_KEY = RsaKey(2048), RsaKey(2048), RsaKey(2048), RsaKey(2048)
KEYDIR = tempfile.mkdtemp(prefix="payhookctl-keys-")
BAIDU_PEM = BAIDU_KEY.write_private_pem(KEYDIR, "baidu.pem")
ALIPAY_PEM = ALIPAY_KEY.write_private_pem(KEYDIR, "alipay.pem")
GW_PEM = GW_KEY.write_private_pem(KEYDIR, "gateway.pem")
OTHER_PEM = OTHER_KEY.write_private_pem(KEYDIR, "other.pem")


def section(header, **keys):
    """One INI section of payhookd's config."""
    return "[%s]\n%s\n" % (header, "".join("%s = %s\n" % kv for kv in keys.items()))


# [gateway NAME] keys, and the payhookctl arguments each needs.
GATEWAYS = {
    "lower": (dict(secret=LOWER_SECRET), []),
    "fubei": (dict(notify_path="/pay/fubei/callback", sign="md5_append", hex="upper", secret=FUBEI_SECRET,
                   ack="success", exclude="sign", app_id=FUBEI_APP), []),
    "rsa": (dict(sign="rsa", public_key=GW_KEY.spki_b64()), ["--private-key", GW_PEM]),
    "rsa1": (dict(sign="rsa", public_key=GW_KEY.spki_b64(), rsa_hash="sha1", ack="ok", drop_empty="no"),
             ["--private-key", GW_PEM]),
}


def gateway_route(name):
    """(path, ack, app column) of [gateway NAME], from its keys or the defaults."""
    keys = GATEWAYS[name][0]
    return (keys.get("notify_path", "/gateway/%s/notify" % name), keys.get("ack", "SUCCESS"),
            keys.get("app_id", name))


FORMS_CONFIG = (section("baidu.app shop", app_id="14508451", deal_id=DEAL,
                        platform_public_key=BAIDU_KEY.spki_b64())
                + section("alipay.app main", app_id=ALIPAY_APP, alipay_public_key=ALIPAY_KEY.spki_b64(),
                          seller_id=SELLER)
                + "".join(section("gateway " + name, **keys) for name, (keys, _) in GATEWAYS.items()))


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


def parse_form(body):
    """A printed form body as (key, value) pairs, strictly (one decode)."""
    return urllib.parse.parse_qsl(body, keep_blank_values=True, strict_parsing=True)


def rsa_verify(key, fields, sig_field, exclude, drop_empty, hash_name):
    """Raise unless fields[sig_field] is key's signature over the canonical string."""
    sig = base64.b64decode(dict(fields)[sig_field], validate=True)
    data = canonical([(k, v) for k, v in fields if k != sig_field], exclude=exclude,
                     drop_empty=drop_empty)
    h = hashes.SHA1() if hash_name == "sha1" else hashes.SHA256()
    key.priv.public_key().verify(sig, data, padding.PKCS1v15(), h)


def audit_answer(status, money):
    return ('{"errno":0,"msg":"success","data":{"auditStatus":%d,"calculateRes":{"refundPayMoney":%d}}}'
            % (status, money))


class Recorder(http.server.BaseHTTPRequestHandler):
    """Keeps the Content-Type and body of every POST; answers 200 ok."""
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.seen.append((self.headers.get("Content-Type"), body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class PayhookctlForms(DaemonTest):
    """baidu, alipay and gateway.NAME samples, posted to the real daemon."""
    extra_config = FORMS_CONFIG

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.d.port, path)

    def sample(self, provider, *args):
        return ctl("-c", self.d.conf, "sample", provider, *args)

    def post_ok(self, provider, args, path, answer, count=1):
        rc, out, err = self.sample(provider, *args, "--post", self.url(path))
        self.assertEqual((rc, out), (0, ("200 %s\n" % answer) * count), err)

    def rows(self, kind):
        return self.d.query("SELECT provider, app, order_id, merchant_order_id, amount_fen, status, verified, "
                            "deliveries FROM events WHERE kind = ? ORDER BY id", kind)

    def pay(self, order, amount="1000"):
        self.post_ok("baidu", ["--private-key", BAIDU_PEM, "--order-id", order, "--amount", amount], PAY, OK_PAY)

    # ---- one request of each kind, stored verified with its amount and ids ----
    def test_baidu_pay_notify(self):
        order = "418337019372630811"
        self.post_ok("baidu", ["pay_notify", "--private-key", BAIDU_PEM, "--amount", "1999", "--order-id", order],
                     PAY, OK_PAY)
        self.assertEqual(self.rows("pay_notify"), [("baidu", BAIDU_APP, order, "TP" + order, 1999, "2", 1, 1)])
        fields = json.loads(self.d.query("SELECT fields FROM events")[0][0])
        self.assertEqual((fields["payMoney"], fields["promoDetail"], fields["returnData"]), ("1999", "", ""))

    def test_baidu_pay_body_verifies_independently(self):
        rc, out, err = self.sample("baidu", "--private-key", BAIDU_PEM, "--order-id", "100000000000000007",
                                   "--amount", "1999", "--timestamp", "1700000000", "--status", "1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count("\n"), 1)
        fields = parse_form(out.strip())
        self.assertEqual([k for k, _ in fields],
                         ["userId", "orderId", "unitPrice", "count", "totalMoney", "payMoney", "promoMoney",
                          "hbMoney", "hbBalanceMoney", "giftCardMoney", "dealId", "payTime", "promoDetail",
                          "payType", "partnerId", "status", "tpOrderId", "returnData", "rsaSign"])
        f = dict(fields)
        self.assertEqual((f["orderId"], f["tpOrderId"], f["totalMoney"], f["dealId"], f["payTime"], f["status"]),
                         ("100000000000000007", "TP100000000000000007", "1999", DEAL, "1700000000", "1"))
        # SHA1withRSA over every field but rsaSign, empty values kept, sorted.
        rsa_verify(BAIDU_KEY, fields, "rsaSign", ("rsaSign", "sign", "sign_type"), False, "sha1")
        self.assertEqual(self.d.post(PAY, out.strip().encode(), FORM), (200, OK_PAY.encode()))
        self.assertEqual(self.rows("pay_notify")[0][5], "1")

    def test_refund_audit_after_pay_is_approved(self):
        order = "555000000000000001"
        self.pay(order, "1000")
        self.post_ok("baidu", ["refund_audit", "--private-key", BAIDU_PEM, "--order-id", order, "--amount", "600",
                               "--refund-batch-id", "9001"], AUDIT, audit_answer(1, 600))
        self.assertEqual(self.rows("refund_audit"), [("baidu", BAIDU_APP, order, "TP" + order, None, "approve", 1, 1)])
        self.assertEqual(self.d.query("SELECT refund_batch_id, audit_status, refund_fen FROM baidu_refunds"),
                         [("9001", 1, 600)])

    def test_refund_notify(self):
        order = "555000000000000002"
        self.pay(order)
        self.post_ok("baidu", ["refund_notify", "--private-key", BAIDU_PEM, "--order-id", order,
                               "--refund-batch-id", "B7"], REFUND, OK_REFUND)
        self.assertEqual(self.rows("refund_notify"), [("baidu", BAIDU_APP, order, "TP" + order, None, "1", 1, 1)])
        self.post_ok("baidu", ["refund_notify", "--private-key", BAIDU_PEM, "--order-id", order,
                               "--refund-batch-id", "B7", "--status", "2"], REFUND, OK_REFUND)
        self.assertEqual([r[5] for r in self.rows("refund_notify")], ["1", "2"])

    def test_alipay_notify(self):
        rc, out, err = self.sample("alipay", "--private-key", ALIPAY_PEM, "--amount", "1999", "--post",
                                   self.url(ALIPAY))
        self.assertEqual((rc, out), (0, "200 success\n"), err)
        rows = self.d.query("SELECT provider, app, amount_fen, status, verified, fields, dedupe_key FROM events")
        self.assertEqual(len(rows), 1)
        f = json.loads(rows[0][5])
        self.assertEqual(rows[0][:5], ("alipay", ALIPAY_APP, 1999, "TRADE_SUCCESS", 1))
        self.assertEqual((f["total_amount"], f["seller_id"], f["sign_type"], f["charset"]),
                         ("19.99", SELLER, "RSA2", "utf-8"))
        self.assertEqual(rows[0][6], "alipay:%s:%s:TRADE_SUCCESS" % (ALIPAY_APP, f["notify_id"]))
        self.assertEqual(self.rows("notify")[0][2:4], (f["trade_no"], f["out_trade_no"]))

    def test_alipay_body_verifies_independently(self):
        rc, out, err = self.sample("alipay", "--private-key", ALIPAY_PEM, "--amount", "5", "--status",
                                   "TRADE_FINISHED", "--timestamp", "1700000000")
        self.assertEqual(rc, 0, err)
        fields = parse_form(out.strip())
        f = dict(fields)
        self.assertEqual((f["total_amount"], f["trade_status"], f["app_id"], f["notify_time"], f["notify_type"]),
                         ("0.05", "TRADE_FINISHED", ALIPAY_APP, "2023-11-15 06:13:20", "trade_status_sync"))
        rsa_verify(ALIPAY_KEY, fields, "sign", ("sign", "sign_type"), True, "sha256")
        self.assertEqual(self.d.post(ALIPAY, out.strip().encode(), ALIPAY_CT), (200, b"success"))

    def test_each_gateway(self):
        for name, (_, extra) in GATEWAYS.items():
            path, ack, app = gateway_route(name)
            with self.subTest(gateway=name):
                self.post_ok("gateway." + name, extra + ["--amount", "1388"], path, ack)
                rows = self.d.query("SELECT app, order_id, merchant_order_id, amount_fen, status, verified, "
                                    "dedupe_key FROM events WHERE provider = ?", "gateway." + name)
                self.assertEqual(len(rows), 1)
                a, order, merchant, fen, status, verified, key = rows[0]
                self.assertEqual((a, merchant, fen, status, verified), (app, "T" + order, 1388, "TRADE_SUCCESS", 1))
                self.assertEqual(key, "gateway:%s:T%s:%s:TRADE_SUCCESS" % (name, order, order))

    def test_gateway_md5_bodies_verify_independently(self):
        for name, secret, append, upper in (("lower", LOWER_SECRET, b"&key=", False),
                                            ("fubei", FUBEI_SECRET, b"", True)):
            with self.subTest(gateway=name):
                rc, out, err = self.sample("gateway." + name, "--amount", "1", "--timestamp", "1700000000")
                self.assertEqual(rc, 0, err)
                fields = parse_form(out.strip())
                f = dict(fields)
                self.assertEqual((f["total_amount"], f["pay_time"], f["sign_type"]),
                                 ("0.01", "2023-11-15 06:13:20", "MD5"))
                self.assertEqual(f.get("app_id"), FUBEI_APP if name == "fubei" else None)
                exclude = ("sign",) if name == "fubei" else ("sign", "sign_type")
                data = canonical([(k, v) for k, v in fields if k != "sign"], exclude=exclude, drop_empty=True,
                                 append=append + secret.encode())
                want = hashlib.md5(data).hexdigest()
                self.assertEqual(f["sign"], want.upper() if upper else want)

    def test_gateway_rsa_body_verifies_independently(self):
        rc, out, err = self.sample("gateway.rsa1", "--private-key", GW_PEM, "--field", "note=")
        self.assertEqual(rc, 0, err)
        fields = parse_form(out.strip())
        self.assertEqual(dict(fields)["sign_type"], "RSA")
        # rsa1: rsa_hash = sha1, drop_empty = no (note= is signed).
        rsa_verify(GW_KEY, fields, "sign", ("sign", "sign_type"), False, "sha1")
        self.assertEqual(self.d.post(gateway_route("rsa1")[0], out.strip().encode(), FORM), (200, b"ok"))

    # ---- --count, --field, --status ----
    def test_count_20_stores_20_distinct_rows_each_kind(self):
        order = "777000000000000001"
        self.pay(order, "2000")
        cases = [
            ("baidu", ["pay_notify", "--private-key", BAIDU_PEM], PAY, OK_PAY, "pay_notify"),
            ("baidu", ["refund_audit", "--private-key", BAIDU_PEM, "--order-id", order, "--amount", "100"],
             AUDIT, audit_answer(1, 100), "refund_audit"),
            ("baidu", ["refund_notify", "--private-key", BAIDU_PEM, "--order-id", order], REFUND, OK_REFUND,
             "refund_notify"),
            ("alipay", ["--private-key", ALIPAY_PEM], ALIPAY, "success", "notify"),
            ("gateway.lower", [], gateway_route("lower")[0], gateway_route("lower")[1], "notify"),
            ("gateway.rsa", ["--private-key", GW_PEM], gateway_route("rsa")[0], gateway_route("rsa")[1],
             "notify"),
        ]
        for provider, args, path, answer, kind in cases:
            with self.subTest(provider=provider, kind=kind):
                before = self.count("events", "kind = ? AND provider LIKE ?", kind, provider.split(".")[0] + "%")
                self.post_ok(provider, args + ["--count", "20"], path, answer, count=20)
                got = self.d.query("SELECT count(*), count(DISTINCT dedupe_key), sum(verified), max(deliveries) "
                                   "FROM events WHERE kind = ? AND provider LIKE ?", kind,
                                   provider.split(".")[0] + "%")
                self.assertEqual(got, [(before + 20, before + 20, before + 20, 1)])
        self.assertEqual(self.d.query("SELECT count(DISTINCT order_id) FROM events WHERE kind = 'pay_notify'"),
                         [(21,)])

    def test_count_with_given_ids_adds_the_index(self):
        rc, out, err = self.sample("baidu", "--private-key", BAIDU_PEM, "--order-id", "100000000000000098",
                                   "--count", "3")
        self.assertEqual(rc, 0, err)
        self.assertEqual([dict(parse_form(b))["orderId"] for b in out.splitlines()],
                         ["100000000000000098", "100000000000000099", "100000000000000100"])
        rc, out, err = self.sample("baidu", "refund_audit", "--private-key", BAIDU_PEM, "--order-id", "5",
                                   "--refund-batch-id", "41", "--count", "2")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(dict(parse_form(b))["orderId"], dict(parse_form(b))["refundBatchId"])
                          for b in out.splitlines()], [("5", "41"), ("5", "42")])

    def test_field_sets_and_adds_before_signing(self):
        rc, out, err = self.sample("baidu", "--private-key", BAIDU_PEM, "--field", "payType=9",
                                   "--field", "goodsName=a b&c=d", "--field", "payType=10")
        self.assertEqual(rc, 0, err)
        fields = parse_form(out.strip())
        self.assertEqual((dict(fields)["payType"], fields[-2]), ("10", ("goodsName", "a b&c=d")))
        self.assertEqual(self.d.post(PAY, out.strip().encode(), FORM), (200, OK_PAY.encode()))
        stored = json.loads(self.d.query("SELECT fields FROM events")[0][0])
        self.assertEqual((stored["payType"], stored["goodsName"]), ("10", "a b&c=d"))
        for provider, args, path, ack in (("alipay", ["--private-key", ALIPAY_PEM], ALIPAY, "success"),
                                          ("gateway.fubei", [], *gateway_route("fubei")[:2])):
            with self.subTest(provider=provider):
                self.post_ok(provider, args + ["--field", "passback_params=x y", "--field", "trade_status=X"],
                             path, ack)
                stored = json.loads(self.d.query("SELECT fields FROM events WHERE provider = ?", provider)[0][0])
                self.assertEqual((stored["passback_params"], stored["trade_status"]), ("x y", "X"))

    def test_post_sends_each_platforms_content_type(self):
        Recorder.seen = []
        server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = "http://127.0.0.1:%d/x" % server.server_address[1]
        try:
            for provider, args in (("baidu", ["--private-key", BAIDU_PEM]),
                                   ("alipay", ["--private-key", ALIPAY_PEM]), ("gateway.lower", [])):
                rc, out, err = self.sample(provider, *args, "--post", url)
                self.assertEqual((rc, out), (0, "200 ok\n"), err)
        finally:
            server.shutdown()
            server.server_close()
        self.assertEqual([ct for ct, _ in Recorder.seen], [FORM, ALIPAY_CT, FORM])

    # ---- what must fail ----
    def test_wrong_private_key_is_rejected_and_exits_1(self):
        for provider, path in (("baidu", PAY), ("alipay", ALIPAY), ("gateway.rsa", gateway_route("rsa")[0])):
            with self.subTest(provider=provider):
                rc, out, err = self.sample(provider, "--private-key", OTHER_PEM, "--post", self.url(path))
                self.assertEqual(rc, 1, err)
                self.assertEqual(out.split()[0], "401", out)
                self.assertIn("not 2xx", err)
        rc, out, err = self.sample("baidu", "refund_audit", "--private-key", OTHER_PEM, "--order-id", "1",
                                   "--post", self.url(AUDIT))
        self.assertEqual((rc, out.split()[0]), (1, "401"), err)
        rc, out, err = self.sample("gateway.lower", "--secret", "not-the-secret", "--post",
                                   self.url(gateway_route("lower")[0]))
        self.assertEqual((rc, out), (1, "401 FAIL\n"), err)
        self.assertEqual(self.count("events"), 0)

    def test_config_dependent_usage_errors(self):
        for args, needle in (
                (["gateway.lower", "--private-key", GW_PEM], "--private-key"),
                (["gateway.rsa", "--private-key", GW_PEM, "--secret", "s"], "--secret"),
                (["gateway.rsa"], "--private-key"),
                (["gateway.nosuch"], "[gateway nosuch]"),
                (["baidu", "--deal-id", "1", "--order-id", "x", "--count", "2", "--private-key", BAIDU_PEM],
                 "--order-id")):
            with self.subTest(args=args):
                rc, out, err = self.sample(*args)
                self.assertEqual((rc, out), (2, ""), err)
                self.assertIn(needle, err)


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

    def test_options_that_do_not_apply_exit_2_naming_the_option(self):
        key = ["--private-key", BAIDU_PEM]
        for args, needle in (
                (["baidu", "--secret", "s"] + key, "--secret"),
                (["baidu", "--nonce", "abc"] + key, "--nonce"),
                (["baidu", "--app-id", "1"] + key, "--app-id"),
                (["baidu", "refund_audit", "--deal-id", "1", "--order-id", "1"] + key, "--deal-id"),
                (["baidu", "refund_audit", "--status", "1", "--order-id", "1"] + key, "--status"),
                (["baidu", "refund_notify", "--amount", "1", "--order-id", "1"] + key, "--amount"),
                (["baidu", "pay_notify", "--refund-batch-id", "1", "--deal-id", "1"] + key, "--refund-batch-id"),
                (["alipay", "--deal-id", "1", "--app-id", "1"] + key, "--deal-id"),
                (["alipay", "--order-id", "1", "--app-id", "1"] + key, "--order-id"),
                (["alipay", "--token", "t", "--app-id", "1"] + key, "--token"),
                (["gateway.x", "--order-id", "1"], "--order-id"),
                (["gateway.x", "--event", "E"], "--event"),
                (["baidu.tp", "--amount", "5"], "--amount"),
                (["baidu.tp", "--secret", "s"], "--secret")):
            with self.subTest(args=args):
                self.assert_usage(["sample"] + args, needle)

    def test_form_usage_errors_name_the_option(self):
        key = ["--private-key", BAIDU_PEM]
        pay = ["sample", "baidu", "--deal-id", "470193086"]
        self.assert_usage(pay + key + ["--amount", "19.99"], "--amount")
        self.assert_usage(pay + key + ["--amount", "-5"], "--amount")
        self.assert_usage(pay + key + ["--amount", "1e3"], "--amount")
        self.assert_usage(pay, "--private-key")
        self.assert_usage(["sample", "baidu"] + key, "--deal-id")
        self.assert_usage(["sample", "baidu", "refund_audit"] + key, "--order-id")
        self.assert_usage(["sample", "baidu", "refund_notify"] + key, "--order-id")
        self.assert_usage(pay + key + ["--count", "2", "--field", "orderId=1"], "--field orderId")
        self.assert_usage(pay + key + ["--field", "rsaSign=x"], "--field rsaSign")
        self.assert_usage(["sample", "baidu", "refund_audit", "--order-id", "1", "--refund-batch-id", "B1",
                           "--count", "2"] + key, "--refund-batch-id")
        self.assert_usage(["sample", "alipay", "--private-key", ALIPAY_PEM], "--app-id")
        self.assert_usage(["sample", "alipay", "--app-id", "1", "--private-key", ALIPAY_PEM, "--count", "2",
                           "--field", "notify_id=1"], "--field notify_id")
        self.assert_usage(["sample", "gateway.x"], "-c CONFIG")
        self.assert_usage(["sample", "gateway."], "gateway.")

    def test_unknown_provider_kind_and_command(self):
        self.assert_usage(["sample", "nosuch"], "nosuch")
        self.assert_usage(["sample", "baidu.tp", "nokind"], "nokind")
        self.assert_usage(["sample"], "PROVIDER")
        self.assert_usage(["frobnicate"], "frobnicate")

    def test_list_help_and_version(self):
        rc, out, _ = ctl("sample", "--list")
        self.assertEqual(rc, 0)
        for pair, path in (("baidu.tp push", PATH), ("baidu pay_notify", PAY), ("baidu refund_audit", AUDIT),
                           ("baidu refund_notify", REFUND), ("alipay notify", ALIPAY),
                           ("gateway.NAME notify", "/gateway/NAME/notify")):
            line = [l for l in out.splitlines() if l.startswith(pair + " ") or l.startswith(pair + "\t")]
            self.assertEqual(len(line), 1, (pair, out))
            self.assertIn("(default path %s)" % path, line[0])
        rc, out, _ = ctl("--help")
        self.assertEqual(rc, 0)
        for opt in ("--post", "--count", "--field", "--token", "--aes-key", "--ticket", "--message",
                    "--private-key", "--amount", "--status", "--order-id", "--deal-id", "--refund-batch-id",
                    "--secret", "--app-id", "Options for baidu:", "Options for alipay:",
                    "Options for gateway.NAME:"):
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
