"""End to end: aggregated payment gateway notifications ([gateway NAME],
protocols.md section 6) through the real daemon. Several gateways run in one
daemon, each with its own signing rule; the signatures are computed here with
hashlib and `cryptography`, independently of payhookd's C code."""
import hashlib
import json
import os
import random
import sqlite3
import tempfile
import unittest

from harness import DaemonTest, RsaKey, canonical, form_body

FORM = "application/x-www-form-urlencoded"

# The seed document's example (seeds/003, "签名"): printed with line breaks
# inside `content`, with Markdown eating the backslashes of PHP's "\/" and a
# font where capital I and small l look alike. The exact bytes signed are
# PHP json_encode output ("\/" and "\uXXXX" escapes, no spaces) and the
# secret has a capital I after "UZc".
SEED_SECRET = "B8vX7jfDKHsUZcIkNuJqhoPGg9Ey4Ywz"
SEED_SECRET_AS_PRINTED = "B8vX7jfDKHsUZclkNuJqhoPGg9Ey4Ywz"
SEED_APP_ID = "2017081443803662"
SEED_CONTENT = ('{"merchant_no":"20170815152552020001","out_trade_no":"T1503043962",'
                '"order_name":"\\u652f\\u4ed8\\u5b9d\\u6536\\u6b3e","total_amount":0.01,'
                '"notify_url":"https:\\/\\/api.fengniaofu.com\\/payment\\/notice.php"}')
SEED_FIELDS = [("app_id", SEED_APP_ID), ("content", SEED_CONTENT),
               ("method", "alipay.qr_code_pay"), ("version", "1.0")]
SEED_SIGN = "6f939ce90a0836f1c76e53363a6f5c27"

RSA256_KEY = RsaKey(2048)  # [gateway rsa]: bare base64, rsa_hash default sha256
RSA1_KEY = RsaKey(1024)    # [gateway rsa1]: a PEM file, rsa_hash = sha1
OTHER_KEY = RsaKey(2048)   # configured nowhere
KEYDIR = tempfile.mkdtemp(prefix="payhookd-gw-keys-")
RSA1_PEM = RSA1_KEY.write_public_pem(KEYDIR, "rsa1.pem")


class Gw:
    """One configured gateway as the platform sees it: how it signs."""

    def __init__(self, name, path, ack, mode, secret=None, key=None, hash_name="sha256",
                 exclude=("sign", "sign_type"), drop_empty=True, upper=False, app_id=None):
        self.name, self.path, self.ack, self.mode = name, path, ack.encode(), mode
        self.secret, self.key, self.hash_name = secret, key, hash_name
        self.exclude, self.drop_empty, self.upper, self.app_id = exclude, drop_empty, upper, app_id

    def signature(self, fields, secret=None, key=None, upper=None):
        """The sign this gateway computes (secret/key/upper override for forgeries)."""
        if self.mode == "rsa":
            data = canonical(fields, exclude=self.exclude, drop_empty=self.drop_empty)
            return (key or self.key).sign(data, self.hash_name)
        secret = (secret or self.secret).encode()
        append = b"&key=" + secret if self.mode == "md5_key" else secret
        data = canonical(fields, exclude=self.exclude, drop_empty=self.drop_empty, append=append)
        h = hashlib.md5(data).hexdigest()
        return h.upper() if (self.upper if upper is None else upper) else h

    def signed(self, fields, **kw):
        fields = [(k, v) for k, v in fields if k != "sign"]
        return fields + [("sign", self.signature(fields, **kw))]


LOWER = Gw("lower", "/gateway/lower/notify", "SUCCESS", "md5_key", secret="lower-secret-9f3a2c")
FUBEI = Gw("fubei", "/pay/fubei/callback", "success", "md5_append", secret="FubeiSecret77",
           exclude=("sign",), upper=True)
RSA = Gw("rsa", "/gateway/rsa/notify", "SUCCESS", "rsa", key=RSA256_KEY)
RSA1 = Gw("rsa1", "/gateway/rsa1/notify", "ok", "rsa", key=RSA1_KEY, hash_name="sha1")
SEED = Gw("seed", "/gateway/seed/notify", "SUCCESS", "md5_key", secret=SEED_SECRET,
          app_id=SEED_APP_ID)
KEEP = Gw("keep", "/gateway/keep/notify", "SUCCESS", "md5_key", secret="keep-empty-secret",
          drop_empty=False)
CUSTOM = Gw("custom", "/gateway/custom/notify", "SUCCESS", "md5_key", secret="custom-secret")
ALL = (LOWER, FUBEI, RSA, RSA1, SEED, KEEP)
MD5 = (LOWER, FUBEI, SEED, KEEP)

CONFIG = """
[gateway lower]
secret = %s

[gateway fubei]
notify_path = %s
sign = md5_append
hex = upper
secret = %s
ack = success
exclude = sign

[gateway rsa]
sign = rsa
public_key = %s

[gateway rsa1]
sign = rsa
public_key = %s
rsa_hash = sha1
ack = ok

[gateway seed]
secret = %s
app_id = %s

[gateway keep]
secret = %s
drop_empty = no

[gateway custom]
secret = %s
dedupe_fields = out_trade_no pay_time
""" % (LOWER.secret, FUBEI.path, FUBEI.secret, RSA256_KEY.spki_b64(), RSA1_PEM, SEED.secret,
       SEED_APP_ID, KEEP.secret, "custom-secret")


def notify_fields(gw, out_trade_no=None, trade_no=None, amount="13.88", status="TRADE_SUCCESS",
                  extra=()):
    """A channel-Alipay payment notification as the gateway posts it."""
    f = [("out_trade_no", out_trade_no or "T%d" % random.randint(10**9, 10**10)),
         ("trade_no", trade_no or str(random.randint(10**17, 10**18))),
         ("pay_time", "2017-08-18 16:12:42"), ("sign_type", "MD5" if gw.mode != "rsa" else "RSA"),
         ("buyer_logon_id", "159****5620"), ("subject", "当面付交易")]
    if amount is not None:
        f.append(("total_amount", amount))
    if status is not None:
        f.append(("trade_status", status))
    if gw.app_id:
        f.append(("app_id", gw.app_id))
    return f + list(extra)


def replace(fields, key, value):
    return [(k, value if k == key else v) for k, v in fields]


class Gateway(DaemonTest):
    extra_config = CONFIG

    def post(self, gw, fields, content_type=FORM):
        return self.d.post(gw.path, form_body(fields), content_type)

    def events(self, gw):
        return self.count("events", "provider = ?", "gateway." + gw.name)

    def assert_rejected(self, gw, fields, status, reason, detail=None, body=None):
        before = self.count("rejections", "route = ? AND reason = ?", gw.path, reason)
        events = self.events(gw)
        st, data = self.d.post(gw.path, body if body is not None else form_body(fields), FORM)
        self.assertEqual((st, data), (status, b"FAIL"), "%s %s" % (gw.name, reason))
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE route = ? AND reason = ?",
                         before + 1, gw.path, reason)
        if detail:
            last = self.d.query("SELECT detail FROM rejections WHERE route = ? AND reason = ? "
                                "ORDER BY id DESC LIMIT 1", gw.path, reason)[0][0]
            self.assertIn(detail, last)
        self.assertEqual(self.events(gw), events)

    # ---- known answers ----
    def test_python_side_seed_known_answer(self):
        # The harness's canonical string reproduces the seed document's MD5,
        # and the secret as printed (small l) does not.
        data = canonical(SEED_FIELDS + [("sign_type", "MD5")], exclude=("sign", "sign_type"),
                         drop_empty=True, append=b"&key=" + SEED_SECRET.encode())
        self.assertEqual(hashlib.md5(data).hexdigest(), SEED_SIGN)
        self.assertEqual(SEED.signature(SEED_FIELDS), SEED_SIGN)
        self.assertNotEqual(SEED.signature(SEED_FIELDS, secret=SEED_SECRET_AS_PRINTED), SEED_SIGN)

    def test_seed_document_vector_verifies(self):
        # The seed's request fields with its sign pass the signature and the
        # app_id check; the request is not a notification, so it then lacks
        # out_trade_no: missing_field proves the signature was accepted.
        for sign in (SEED_SIGN, SEED_SIGN.upper()):
            fields = SEED_FIELDS + [("sign_type", "MD5"), ("sign", sign)]
            self.assert_rejected(SEED, fields, 400, "missing_field", "out_trade_no")
        self.assertEqual(self.count("rejections", "reason = 'bad_signature'"), 0)
        # One byte of content changed, or the secret as printed: bad_signature.
        tampered = replace(SEED_FIELDS, "content", SEED_CONTENT.replace("0.01", "0.02"))
        self.assert_rejected(SEED, tampered + [("sign", SEED_SIGN)], 401, "bad_signature")
        forged = SEED.signed(SEED_FIELDS, secret=SEED_SECRET_AS_PRINTED)
        self.assert_rejected(SEED, forged, 401, "bad_signature")

    # ---- accepted notifications ----
    def test_valid_notification_each_gateway(self):
        for gw in ALL:
            with self.subTest(gateway=gw.name):
                fields = gw.signed(notify_fields(gw, amount="13.88"))
                body = form_body(fields)
                self.assertEqual(self.d.post(gw.path, body, FORM), (200, gw.ack))
                got = dict(fields)
                row = self.d.query(
                    "SELECT kind, app, order_id, merchant_order_id, amount_fen, status, verified, "
                    "deliveries, answer, body, dedupe_key FROM events WHERE provider = ?",
                    "gateway." + gw.name)
                self.assertEqual(row, [("notify", gw.app_id or gw.name, got["trade_no"],
                                        got["out_trade_no"], 1388, "TRADE_SUCCESS", 1, 1,
                                        gw.ack.decode(), body,
                                        "gateway:%s:%s:%s:TRADE_SUCCESS" % (
                                            gw.name, got["out_trade_no"], got["trade_no"]))])
                stored = json.loads(self.d.query("SELECT fields FROM events WHERE provider = ?",
                                                 "gateway." + gw.name)[0][0])
                self.assertEqual(stored["subject"], "当面付交易")
                self.assertEqual(stored["sign"], got["sign"])

    def test_answer_is_exact_text_plain(self):
        for gw in (LOWER, FUBEI, RSA1):
            with self.subTest(gateway=gw.name):
                st, data, headers = self.d.request("POST", gw.path,
                                                   form_body(gw.signed(notify_fields(gw))),
                                                   {"Content-Type": FORM})
                self.assertEqual((st, data), (200, gw.ack))
                self.assertTrue(headers["Content-Type"].startswith("text/plain"))

    def test_amounts_in_fen(self):
        cases = [("13.88", 1388), ("1", 100), ("0.01", 1), ("0.5", 50), ("100000000", 10000000000)]
        for amount, fen in cases:
            with self.subTest(amount=amount):
                fields = LOWER.signed(notify_fields(LOWER, amount=amount))
                self.assertEqual(self.post(LOWER, fields), (200, b"SUCCESS"))
                got = self.d.query("SELECT amount_fen FROM events WHERE merchant_order_id = ?",
                                   dict(fields)["out_trade_no"])
                self.assertEqual(got, [(fen,)])

    def test_absent_or_empty_amount_is_null(self):
        for amount in (None, ""):
            fields = LOWER.signed(notify_fields(LOWER, amount=amount))
            self.assertEqual(self.post(LOWER, fields), (200, b"SUCCESS"))
            got = self.d.query("SELECT amount_fen FROM events WHERE merchant_order_id = ?",
                               dict(fields)["out_trade_no"])
            self.assertEqual(got, [(None,)])

    def test_upper_and_lower_hex_accepted(self):
        for gw in MD5:
            for upper in (False, True):
                with self.subTest(gateway=gw.name, upper=upper):
                    fields = gw.signed(notify_fields(gw), upper=upper)
                    sign = dict(fields)["sign"]
                    self.assertEqual(sign, sign.upper() if upper else sign.lower())
                    self.assertEqual(self.post(gw, fields), (200, gw.ack))

    def test_content_type_variants(self):
        fields = LOWER.signed(notify_fields(LOWER))
        for ct in (None, "application/x-www-form-urlencoded; text/html; charset=utf-8"):
            self.assertEqual(self.post(LOWER, fields, ct), (200, b"SUCCESS"))
        st, _ = self.post(LOWER, LOWER.signed(notify_fields(LOWER)), "application/json")
        self.assertEqual(st, 415)

    def test_app_and_status_fallbacks(self):
        # No app_id: app is the gateway's name; app_id present: that value.
        # status: trade_status, else result_code, else status.
        cases = [([("result_code", "SUCCESS")], None, "SUCCESS"),
                 ([("status", "PAID")], None, "PAID"),
                 ([("result_code", "SUCCESS"), ("status", "PAID")], None, "SUCCESS"),
                 ([("result_code", ""), ("status", "PAID")], None, "PAID"),
                 ([("app_id", "A1"), ("trade_status", "TRADE_FINISHED"), ("result_code", "X")],
                  "A1", "TRADE_FINISHED"),
                 ([], None, None)]
        for extra, app, status in cases:
            with self.subTest(extra=extra):
                fields = LOWER.signed(notify_fields(LOWER, status=None, extra=extra))
                self.assertEqual(self.post(LOWER, fields), (200, b"SUCCESS"))
                got = dict(fields)
                row = self.d.query("SELECT app, status, dedupe_key FROM events WHERE "
                                   "merchant_order_id = ?", got["out_trade_no"])
                self.assertEqual(row, [(app or "lower", status, "gateway:lower:%s:%s:%s" % (
                    got["out_trade_no"], got["trade_no"], status or ""))])

    def test_without_trade_no(self):
        fields = [(k, v) for k, v in notify_fields(LOWER) if k != "trade_no"]
        fields = LOWER.signed(fields)
        self.assertEqual(self.post(LOWER, fields), (200, b"SUCCESS"))
        otn = dict(fields)["out_trade_no"]
        self.assertEqual(self.d.query("SELECT order_id, dedupe_key FROM events"),
                         [(None, "gateway:lower:%s::TRADE_SUCCESS" % otn)])

    def test_colon_in_ids_cannot_merge_two_notifications(self):
        # "a:b" + "c" and "a" + "b:c" are different notifications.
        one = LOWER.signed(notify_fields(LOWER, out_trade_no="a:b", trade_no="c"))
        two = LOWER.signed(notify_fields(LOWER, out_trade_no="a", trade_no="b:c"))
        self.assertEqual(self.post(LOWER, one), (200, b"SUCCESS"))
        self.assertEqual(self.post(LOWER, two), (200, b"SUCCESS"))
        self.assertEqual(self.d.query("SELECT count(*), max(deliveries) FROM events"), [(2, 1)])

    def test_nul_byte_in_an_id_is_refused(self):
        # "a%00b" and "a%00c" would both be stored (and deduplicated) as "a".
        fields = LOWER.signed(notify_fields(LOWER, out_trade_no="a\0b"))
        self.assert_rejected(LOWER, fields, 400, "bad_field",
                             "field out_trade_no contains a NUL byte")

    # ---- duplicates and status changes ----
    def test_duplicate_is_one_row_same_answer(self):
        for gw in ALL:
            with self.subTest(gateway=gw.name):
                body = form_body(gw.signed(notify_fields(gw)))
                self.assertEqual(self.d.post(gw.path, body, FORM), (200, gw.ack))
                self.assertEqual(self.d.post(gw.path, body, FORM), (200, gw.ack))
                self.assertEqual(self.d.query("SELECT count(*), max(deliveries) FROM events "
                                              "WHERE provider = ?", "gateway." + gw.name),
                                 [(1, 2)])

    def test_resend_with_other_case_sign_is_a_duplicate(self):
        fields = notify_fields(LOWER)
        self.assertEqual(self.post(LOWER, LOWER.signed(fields)), (200, b"SUCCESS"))
        self.assertEqual(self.post(LOWER, LOWER.signed(fields, upper=True)), (200, b"SUCCESS"))
        self.assertEqual(self.d.query("SELECT count(*), max(deliveries) FROM events"), [(1, 2)])

    def test_status_change_is_a_new_row(self):
        for gw in ALL:
            with self.subTest(gateway=gw.name):
                otn, tn = "T-%s" % gw.name, "2017%d" % random.randint(10**9, 10**10)
                for status in ("WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_SUCCESS"):
                    fields = gw.signed(notify_fields(gw, out_trade_no=otn, trade_no=tn,
                                                     status=status))
                    self.assertEqual(self.post(gw, fields), (200, gw.ack))
                rows = self.d.query("SELECT status, deliveries FROM events WHERE provider = ? "
                                    "ORDER BY id", "gateway." + gw.name)
                self.assertEqual(rows, [("WAIT_BUYER_PAY", 1), ("TRADE_SUCCESS", 2)])

    def test_dedupe_fields_are_configurable(self):
        # [gateway custom] keys on out_trade_no and pay_time only: another
        # trade_no with the same two is the same callback.
        a = notify_fields(CUSTOM, out_trade_no="T-k", trade_no="1")
        b = notify_fields(CUSTOM, out_trade_no="T-k", trade_no="2")
        self.assertEqual(self.post(CUSTOM, CUSTOM.signed(a)), (200, b"SUCCESS"))
        self.assertEqual(self.post(CUSTOM, CUSTOM.signed(b)), (200, b"SUCCESS"))
        self.assertEqual(self.d.query("SELECT count(*), max(deliveries), max(dedupe_key) FROM events"),
                         [(1, 2, "gateway:custom:T-k:2017-08-18 16%3A12%3A42")])

    def test_two_refunds_of_one_order_are_two_events(self):
        # Same out_trade_no, trade_no and status: only the refund ids tell
        # them apart, so the second used to be acknowledged and never stored.
        otn, tn = "T-refunds", "2017%d" % random.randint(10**9, 10**10)
        pay = LOWER.signed(notify_fields(LOWER, out_trade_no=otn, trade_no=tn))
        self.assertEqual(self.post(LOWER, pay), (200, b"SUCCESS"))
        for rno, fee in (("RF-1", "1.00"), ("RF-2", "2.50"), ("RF-2", "2.50")):
            fields = LOWER.signed(notify_fields(LOWER, out_trade_no=otn, trade_no=tn, extra=[
                ("out_refund_no", rno), ("refund_fee", fee)]))
            self.assertEqual(self.post(LOWER, fields), (200, b"SUCCESS"))
        rows = self.d.query("SELECT kind, amount_fen, refund_fen, deliveries, dedupe_key FROM events ORDER BY id")
        self.assertEqual(rows, [
            ("notify", 1388, None, 1, "gateway:lower:%s:%s:TRADE_SUCCESS" % (otn, tn)),
            ("refund_notify", 1388, 100, 1, "gateway:lower:%s:%s:TRADE_SUCCESS:RF-1" % (otn, tn)),
            ("refund_notify", 1388, 250, 2, "gateway:lower:%s:%s:TRADE_SUCCESS:RF-2" % (otn, tn))])

    def test_same_ids_on_two_gateways_are_two_rows(self):
        for gw in (LOWER, KEEP):
            fields = gw.signed(notify_fields(gw, out_trade_no="T1", trade_no="P1"))
            self.assertEqual(self.post(gw, fields), (200, gw.ack))
        self.assertEqual(self.d.query("SELECT provider FROM events ORDER BY id"),
                         [("gateway.lower",), ("gateway.keep",)])

    # ---- rejections ----
    def test_tampered_field(self):
        for gw in ALL:
            for key, value in (("total_amount", "0.01"), ("out_trade_no", "T-other"),
                               ("trade_status", "TRADE_CLOSED")):
                with self.subTest(gateway=gw.name, field=key):
                    fields = replace(gw.signed(notify_fields(gw)), key, value)
                    self.assert_rejected(gw, fields, 401, "bad_signature", "[gateway %s]" % gw.name)

    def test_added_field_breaks_signature(self):
        for gw in ALL:
            with self.subTest(gateway=gw.name):
                fields = gw.signed(notify_fields(gw)) + [("refund_fee", "13.88")]
                self.assert_rejected(gw, fields, 401, "bad_signature")

    def test_wrong_secret_or_key(self):
        for gw in ALL:
            with self.subTest(gateway=gw.name):
                if gw.mode == "rsa":
                    fields = gw.signed(notify_fields(gw), key=OTHER_KEY)
                else:
                    fields = gw.signed(notify_fields(gw), secret=gw.secret + "x")
                self.assert_rejected(gw, fields, 401, "bad_signature")

    def test_wrong_key_append_mode(self):
        # md5_key signed as md5_append and the reverse.
        f1 = notify_fields(LOWER)
        s1 = hashlib.md5(canonical(f1, exclude=LOWER.exclude, drop_empty=True,
                                   append=LOWER.secret.encode())).hexdigest()
        self.assert_rejected(LOWER, f1 + [("sign", s1)], 401, "bad_signature")
        f2 = notify_fields(FUBEI)
        s2 = hashlib.md5(canonical(f2, exclude=FUBEI.exclude, drop_empty=True,
                                   append=b"&key=" + FUBEI.secret.encode())).hexdigest()
        self.assert_rejected(FUBEI, f2 + [("sign", s2)], 401, "bad_signature")

    def test_fubei_signs_sign_type(self):
        # Fubei keeps sign_type in the string: signed without it fails there,
        # and the default rule (sign_type left out) does not accept it either.
        fields = notify_fields(FUBEI)
        wrong = hashlib.md5(canonical(fields, exclude=("sign", "sign_type"), drop_empty=True,
                                      append=FUBEI.secret.encode())).hexdigest().upper()
        self.assert_rejected(FUBEI, fields + [("sign", wrong)], 401, "bad_signature")
        lower = notify_fields(LOWER)
        lower_sig = hashlib.md5(canonical(lower, exclude=("sign",), drop_empty=True,
                                          append=b"&key=" + LOWER.secret.encode())).hexdigest()
        self.assert_rejected(LOWER, lower + [("sign", lower_sig)], 401, "bad_signature")
        # sign_type changed after signing breaks Fubei's signature only.
        self.assert_rejected(FUBEI, replace(FUBEI.signed(notify_fields(FUBEI)), "sign_type", "RSA"),
                             401, "bad_signature")
        ok = replace(LOWER.signed(notify_fields(LOWER)), "sign_type", "RSA")
        self.assertEqual(self.post(LOWER, ok), (200, b"SUCCESS"))

    def test_rsa_hash_must_match(self):
        fields = notify_fields(RSA)
        sig = RSA256_KEY.sign(canonical(fields, exclude=RSA.exclude, drop_empty=True), "sha1")
        self.assert_rejected(RSA, fields + [("sign", sig)], 401, "bad_signature")
        fields = notify_fields(RSA1)
        sig = RSA1_KEY.sign(canonical(fields, exclude=RSA1.exclude, drop_empty=True), "sha256")
        self.assert_rejected(RSA1, fields + [("sign", sig)], 401, "bad_signature")

    def test_malformed_signatures(self):
        # Each variant of a signature that is valid for these very fields.
        for gw in ALL:
            signed = gw.signed(notify_fields(gw))
            good = dict(signed)["sign"]
            for sign in (good[:-1], good[:16], good + "0", good + " ",
                         "z" * len(good), good[:len(good) // 2] + ("g" if good[len(good) // 2] != "g" else "h") + good[len(good) // 2 + 1:]):
                with self.subTest(gateway=gw.name, sign=sign):
                    self.assert_rejected(gw, replace(signed, "sign", sign), 401, "bad_signature")
            # A NUL byte is refused before the signature is looked at.
            with self.subTest(gateway=gw.name, sign=good[:-1] + "\x00"):
                self.assert_rejected(gw, replace(signed, "sign", good[:-1] + "\x00"), 400,
                                     "bad_field", "field sign contains a NUL byte")
            self.assertEqual(self.post(gw, signed), (200, gw.ack))

    def test_missing_or_empty_sign(self):
        for gw in ALL:
            with self.subTest(gateway=gw.name):
                fields = [(k, v) for k, v in gw.signed(notify_fields(gw)) if k != "sign"]
                self.assert_rejected(gw, fields, 401, "missing_signature", "sign")
                self.assert_rejected(gw, fields + [("sign", "")], 401, "missing_signature")

    def test_wrong_app_id(self):
        fields = SEED.signed(replace(notify_fields(SEED), "app_id", "2017081443803663"))
        self.assert_rejected(SEED, fields, 401, "wrong_merchant", "app_id '2017081443803663'")
        missing = SEED.signed([(k, v) for k, v in notify_fields(SEED) if k != "app_id"])
        self.assert_rejected(SEED, missing, 401, "wrong_merchant")
        prefix = SEED.signed(replace(notify_fields(SEED), "app_id", SEED_APP_ID[:-1]))
        self.assert_rejected(SEED, prefix, 401, "wrong_merchant")
        # The check comes after the signature: a forged one is bad_signature.
        forged = SEED.signed(replace(notify_fields(SEED), "app_id", "X"), secret="guess")
        self.assert_rejected(SEED, forged, 401, "bad_signature")

    def test_repeated_key(self):
        for gw in ALL:
            with self.subTest(gateway=gw.name):
                fields = gw.signed(notify_fields(gw))
                self.assert_rejected(gw, fields + [("total_amount", "0.01")], 400,
                                     "repeated_key", "total_amount")

    def test_bad_form(self):
        body = form_body(LOWER.signed(notify_fields(LOWER))) + b"&x=%G1"
        self.assert_rejected(LOWER, None, 400, "bad_form", body=body)

    def test_empty_values_dropped_from_signed_string(self):
        for gw in (LOWER, FUBEI, RSA, SEED):
            with self.subTest(gateway=gw.name):
                base = notify_fields(gw)
                sign = gw.signature(base)  # signed without the empty fields
                fields = base + [("attach", ""), ("buyer_pay_amount", ""), ("sign", sign)]
                self.assertEqual(self.post(gw, fields), (200, gw.ack))
                stored = json.loads(self.d.query("SELECT fields FROM events WHERE provider = ?",
                                                 "gateway." + gw.name)[0][0])
                self.assertEqual(stored["attach"], "")

    def test_empty_values_signed_when_drop_empty_is_no(self):
        base = notify_fields(KEEP)
        with_empty = base + [("attach", "")]
        self.assert_rejected(KEEP, with_empty + [("sign", KEEP.signature(base))], 401,
                             "bad_signature")
        self.assertEqual(self.post(KEEP, KEEP.signed(with_empty)), (200, b"SUCCESS"))

    def test_missing_out_trade_no(self):
        for gw in ALL:
            for value in (None, ""):
                with self.subTest(gateway=gw.name, value=value):
                    fields = [(k, v) for k, v in notify_fields(gw) if k != "out_trade_no"]
                    if value is not None:
                        fields.append(("out_trade_no", value))
                    self.assert_rejected(gw, gw.signed(fields), 400, "missing_field",
                                         "out_trade_no")

    def test_invalid_total_amount(self):
        for gw in (LOWER, FUBEI, RSA, SEED):
            for amount in ("13.888", "-1", "1e2", "0x10", " 1", "1.", ".5", "01", "1,00",
                           "99999999999999999999", "NaN", "１"):
                with self.subTest(gateway=gw.name, amount=amount):
                    fields = gw.signed(notify_fields(gw, amount=amount))
                    self.assert_rejected(gw, fields, 400, "bad_amount", "total_amount")

    def test_signature_of_another_gateway(self):
        # Signed correctly for one gateway, posted to another's path.
        pairs = [(LOWER, KEEP), (KEEP, LOWER), (LOWER, SEED), (FUBEI, LOWER), (RSA, RSA1),
                 (RSA1, RSA), (LOWER, RSA)]
        for signer, target in pairs:
            with self.subTest(signer=signer.name, target=target.name):
                fields = signer.signed(notify_fields(target))
                self.assert_rejected(target, fields, 401, "bad_signature")

    def test_secrets_never_logged(self):
        for gw in MD5:
            self.assert_rejected(gw, gw.signed(notify_fields(gw), secret="nope"), 401,
                                 "bad_signature")
        self.d.stop()
        log = self.d.logtext()
        self.assertIn("bad_signature", log)
        for gw in MD5:
            self.assertNotIn(gw.secret, log)
        details = " ".join(r[0] for r in self.d.query("SELECT detail FROM rejections"))
        for gw in MD5:
            self.assertNotIn(gw.secret, details)

    def test_control_bytes_in_values_are_not_echoed(self):
        fields = SEED.signed(replace(notify_fields(SEED), "app_id", "x\nFORGED line\x1b"))
        self.assert_rejected(SEED, fields, 401, "wrong_merchant", "app_id 'x\\x0aFORGED line\\x1b'")


class GatewayStoreFailure(DaemonTest):
    extra_config = CONFIG

    def test_store_failure_answers_fail_503_then_recovers(self):
        with sqlite3.connect(self.d.db_path, timeout=10) as c:
            c.execute("CREATE TRIGGER fail BEFORE INSERT ON events BEGIN "
                      "SELECT RAISE(ABORT, 'disk on fire'); END")
        body = form_body(LOWER.signed(notify_fields(LOWER)))
        self.assertEqual(self.d.post(LOWER.path, body, FORM), (503, b"FAIL"))
        self.assertEqual(self.count("events"), 0)
        with sqlite3.connect(self.d.db_path, timeout=10) as c:
            c.execute("DROP TRIGGER fail")
        self.assertEqual(self.d.post(LOWER.path, body, FORM), (200, b"SUCCESS"))
        self.assertEqual(self.count("events"), 1)


class GatewayWithoutMd5(DaemonTest):
    """OpenSSL with MD5 unavailable (what FIPS mode does): here an OpenSSL
    config demanding fips=yes with no FIPS provider makes every fetch fail.
    A failed digest (all NULs) must let no sign through: 32 NUL bytes are
    refused as a bad field, any other sign gets 503 so the gateway resends."""
    extra_config = "[gateway lower]\nsecret = %s\n" % LOWER.secret

    def setUp(self):
        conf = os.path.join(KEYDIR, "openssl-nofetch.cnf")
        with open(conf, "w") as f:
            f.write("openssl_conf = init\n[init]\nalg_section = evp\n"
                    "[evp]\ndefault_properties = fips=yes\n")
        old = os.environ.get("OPENSSL_CONF")
        os.environ["OPENSSL_CONF"] = conf
        try:
            super().setUp()
        finally:
            if old is None:
                del os.environ["OPENSSL_CONF"]
            else:
                os.environ["OPENSSL_CONF"] = old

    def test_nul_sign_is_not_a_match_for_a_failed_digest(self):
        # 32 NUL bytes would equal the failed digest; provider_form refuses
        # them before any digest is made, as it does a NUL in any field.
        fields = notify_fields(LOWER, amount="100000") + [("sign", "\x00" * 32)]
        self.assertEqual(self.d.post(LOWER.path, form_body(fields), FORM), (400, b"FAIL"))
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = 'bad_field'", 1)
        self.assertEqual(self.count("events"), 0)

    def test_any_sign_is_a_crypto_failure_when_the_digest_fails(self):
        # A NUL-free sign gets as far as the digest, and a failed digest is
        # 503 crypto_failure (resend later), never a match: not for "0" * 32,
        # a zeroed digest printed as hex, nor for the right sign.
        for sign in ("0" * 32, LOWER.signature(notify_fields(LOWER, amount="100000"))):
            with self.subTest(sign=sign):
                fields = notify_fields(LOWER, amount="100000") + [("sign", sign)]
                self.assertEqual(self.d.post(LOWER.path, form_body(fields), FORM),
                                 (503, b"FAIL"))
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = 'crypto_failure'", 2)
        self.assertEqual(self.count("events"), 0)


NEXT_RSA_KEY = RsaKey(2048)  # [gateway rsa]'s public_key_next in KeySwitch


class KeySwitch(DaemonTest):
    """During a switch a gateway accepts its second secret or key
    (secret_next / public_key_next) beside the first, and nothing else."""
    extra_config = """
[gateway lower]
secret = %s
secret_next = lower-secret-the-new-one

[gateway fubei]
notify_path = %s
sign = md5_append
hex = upper
secret = %s
secret_next = FubeiSecretNext88
ack = success
exclude = sign

[gateway rsa]
sign = rsa
public_key = %s
public_key_next = %s
""" % (LOWER.secret, FUBEI.path, FUBEI.secret, RSA256_KEY.spki_b64(), NEXT_RSA_KEY.spki_b64())

    def post(self, gw, **kw):
        return self.d.post(gw.path, form_body(gw.signed(notify_fields(gw), **kw)), FORM)

    def test_both_secrets_verify_and_no_other(self):
        for gw, new in ((LOWER, "lower-secret-the-new-one"), (FUBEI, "FubeiSecretNext88")):
            self.assertEqual(self.post(gw), (200, gw.ack))
            self.assertEqual(self.post(gw, secret=new), (200, gw.ack))
            self.assertEqual(self.post(gw, secret="neither-of-them"), (401, b"FAIL"))
            self.assertEqual(self.count("events", "provider = ?", "gateway." + gw.name), 2)
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE route = ?", 1, LOWER.path)
        detail = self.d.query("SELECT detail FROM rejections WHERE route = ? ORDER BY id DESC LIMIT 1",
                              LOWER.path)[0][0]
        self.assertIn("secret or secret_next", detail)
        self.assertNotIn("lower-secret", detail)

    def test_both_public_keys_verify_and_no_other(self):
        for key in (RSA256_KEY, NEXT_RSA_KEY):
            self.assertEqual(self.post(RSA, key=key), (200, RSA.ack))
        self.assertEqual(self.post(RSA, key=OTHER_KEY), (401, b"FAIL"))
        self.assertEqual(self.count("events", "provider = ?", "gateway.rsa"), 2)

    def test_a_second_key_of_the_other_kind_is_refused(self):
        for section, why in (("[gateway a]\nsecret = s1\npublic_key_next = %s\n" % OTHER_KEY.spki_b64(),
                              "public_key_next does not apply with sign = md5_key (use secret_next)"),
                             ("[gateway b]\nsign = rsa\npublic_key = %s\nsecret_next = s2\n"
                              % OTHER_KEY.spki_b64(),
                              "secret_next does not apply with sign = rsa (use public_key_next)")):
            self.d.stop()
            self.d.write_config(section)
            self.d.start(expect_fail=True)
            self.assertNotEqual(self.d.proc.wait(60), 0)
            self.d.log.close()
            self.assertIn(why, self.d.logtext())


class GatewayConfig(DaemonTest):
    def test_no_gateway_no_route(self):
        st, _ = self.d.post("/gateway/lower/notify", b"a=1", FORM)
        self.assertEqual(st, 404)

    def test_two_gateways_on_one_path_are_refused(self):
        self.d.stop()
        self.d.write_config("[gateway a]\nsecret = s1\nnotify_path = /gw\n"
                            "[gateway b]\nsecret = s2\nnotify_path = /gw\n")
        self.d.start(expect_fail=True)
        self.assertNotEqual(self.d.proc.wait(60), 0)
        self.d.log.close()
        self.assertIn("[gateway b]: path /gw is used twice", self.d.logtext())


if __name__ == "__main__":
    unittest.main()
