"""End to end: Alipay asynchronous notifications (protocols.md section 4)
through the real daemon, signed here with generated keys, and the real
Alipay-signed vectors of VECTORS_DIR posted byte for byte."""
import datetime
import decimal
import json
import os
import random
import sqlite3
import tempfile
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

import harness
from harness import Daemon, DaemonTest, RsaKey, canonical, form_body

NOTIFY = "/alipay/notify"
FORM = "application/x-www-form-urlencoded"
ALIPAY_CT = "application/x-www-form-urlencoded; text/html; charset=utf-8"  # what Alipay sends
OK, FAIL = b"success", b"fail"

SHOP_APP, SHOP_SELLER = "2021004100000001", "2088000000000001"
FILE_APP, CERT_APP = "2021004100000002", "2021004100000003"
SHOP_KEY = RsaKey(2048)   # [alipay.app shop]: bare base64, seller_id checked
FILE_KEY = RsaKey(2048)   # [alipay.app file]: a PEM file path
CERT_KEY = RsaKey(2048)   # [alipay.app cert]: a public-key certificate file
OTHER_KEY = RsaKey(2048)  # configured nowhere
KEYDIR = tempfile.mkdtemp(prefix="payhookd-alipay-keys-")


def write_certificate(key, directory, name="alipayPublicCert.crt"):
    """A self-signed certificate of key's public half, as Alipay's certificate mode ships one."""
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ant Financial e2e"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "payhookd e2e Alipay public key")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.priv.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key.priv, hashes.SHA256()))
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return path


CONFIG = """
[alipay.app shop]
app_id = %s
alipay_public_key = %s
seller_id = %s

[alipay.app file]
app_id = %s
alipay_public_key = %s

[alipay.app cert]
app_id = %s
alipay_public_key = %s
""" % (SHOP_APP, SHOP_KEY.spki_b64(), SHOP_SELLER, FILE_APP, FILE_KEY.write_public_pem(KEYDIR, "file.pem"),
       CERT_APP, write_certificate(CERT_KEY, KEYDIR))


def digits(n):
    return str(random.randint(10 ** (n - 1), 10 ** n - 1))


def notify_fields(app_id=SHOP_APP, seller=SHOP_SELLER, total="88.88", status="TRADE_SUCCESS",
                  notify_id=None, extra=()):
    """A trade_status_sync notification as Alipay sends it (field order arbitrary)."""
    fields = [("gmt_create", "2024-05-01 12:00:01"), ("charset", "utf-8"), ("seller_email", "shop@example.com"),
              ("subject", "Order 1+1 & more"), ("buyer_id", "2088102122524333"), ("invoice_amount", total),
              ("notify_id", notify_id or "2024050100222" + digits(21)),
              ("fund_bill_list", '[{"amount":"%s","fundChannel":"ALIPAYACCOUNT"}]' % total),
              ("notify_type", "trade_status_sync"), ("trade_status", status), ("receipt_amount", total),
              ("app_id", app_id), ("buyer_pay_amount", total), ("seller_id", seller),
              ("gmt_payment", "2024-05-01 12:00:09"), ("notify_time", "2024-05-01 12:00:10"),
              ("version", "1.0"), ("out_trade_no", "M-" + digits(10)), ("total_amount", total),
              ("trade_no", "2024050122001" + digits(15)), ("auth_app_id", app_id),
              ("buyer_logon_id", "158****1562"), ("point_amount", "0.00")]
    return [(k, v) for k, v in fields if v is not None] + list(extra)


def signed(fields, key=SHOP_KEY, sign_type="RSA2", keep_sign_type=False, drop_empty=True, hash_name=None):
    """Fields plus sign_type (None: left out) and sign, signed as Alipay does:
    V1 (sign and sign_type excluded, empty values dropped), SHA256 for RSA2."""
    fields = [(k, v) for k, v in fields if k not in ("sign", "sign_type")]
    if sign_type is not None:
        fields.append(("sign_type", sign_type))
    exclude = ("sign",) if keep_sign_type else ("sign", "sign_type")
    hash_name = hash_name or ("sha1" if sign_type == "RSA" else "sha256")
    sig = key.sign(canonical(fields, exclude=exclude, drop_empty=drop_empty), hash_name)
    return fields + [("sign", sig)]


def value(fields, key):
    return dict(fields)[key]


def replace(fields, key, value):
    return [(k, value if k == key else v) for k, v in fields]


class Alipay(DaemonTest):
    extra_config = CONFIG

    def post(self, body, content_type=FORM):
        return self.d.post(NOTIFY, body, content_type)

    def send(self, fields, **kw):
        return self.post(form_body(signed(fields, **kw)))

    def assert_rejected(self, body, status, reason, detail):
        st, data = self.post(body)
        self.assertEqual((st, data), (status, FAIL))
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = ?", 1, reason)
        got = self.d.query("SELECT status, detail FROM rejections WHERE reason = ?", reason)[0]
        self.assertEqual(got[0], status)
        self.assertIn(detail, got[1])
        self.assertEqual(self.count("events"), 0)

    def event(self):
        rows = self.d.query("SELECT provider, kind, app, order_id, merchant_order_id, amount_fen, status, "
                            "verified, deliveries, answer, dedupe_key, body FROM events")
        self.assertEqual(len(rows), 1)
        return rows[0]

    # ---- accepted ----
    def test_valid_rsa2(self):
        fields = signed(notify_fields())
        body = form_body(fields)
        st, data, headers = self.d.request("POST", NOTIFY, body, {"Content-Type": FORM})
        self.assertEqual((st, data), (200, b"success"))
        self.assertEqual(len(data), 7)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"), headers)
        f = dict(fields)
        self.assertEqual(self.event(), ("alipay", "notify", SHOP_APP, f["trade_no"], f["out_trade_no"], 8888,
                                        "TRADE_SUCCESS", 1, 1, "success",
                                        "alipay:%s:%s:TRADE_SUCCESS" % (SHOP_APP, f["notify_id"]), body))
        stored = json.loads(self.d.query("SELECT fields FROM events")[0][0])
        self.assertEqual(stored["subject"], "Order 1+1 & more")
        self.assertEqual(stored["sign_type"], "RSA2")

    def test_valid_rsa_sha1(self):
        fields = signed(notify_fields(total="0.01"), sign_type="RSA")
        self.assertEqual(self.post(form_body(fields)), (200, OK))
        self.assertEqual(self.event()[5:8], (1, "TRADE_SUCCESS", 1))

    def test_missing_sign_type_means_rsa2(self):
        fields = signed(notify_fields(), sign_type=None)
        self.assertNotIn("sign_type", dict(fields))
        self.assertEqual(self.post(form_body(fields)), (200, OK))
        self.assertEqual(self.count("events"), 1)

    def test_sign_type_chooses_the_digest(self):
        # Signed with SHA256 but announced as RSA (SHA1): the check must use SHA1 and fail.
        fields = signed(notify_fields(), sign_type="RSA", hash_name="sha256")
        self.assert_rejected(form_body(fields), 401, "bad_signature", "[alipay.app shop]")

    def test_sign_type_kept_in_signed_string_is_retried(self):
        # Service-market notifications sign sign_type too; the SDKs retry that way.
        fields = signed(notify_fields(), keep_sign_type=True)
        self.assertEqual(self.post(form_body(fields)), (200, OK))
        self.assertEqual(self.count("events"), 1)

    def test_alipay_content_type_and_none(self):
        self.assertEqual(self.post(form_body(signed(notify_fields())), ALIPAY_CT), (200, OK))
        self.assertEqual(self.post(form_body(signed(notify_fields())), None), (200, OK))
        st, _ = self.post(form_body(signed(notify_fields())), "application/json")
        self.assertEqual(st, 415)
        self.assertEqual(self.count("events"), 2)

    def test_empty_values_are_dropped_from_signed_string(self):
        fields = signed(notify_fields(extra=[("passback_params", ""), ("body", "")]))
        self.assertEqual(self.post(form_body(fields)), (200, OK))
        stored = json.loads(self.d.query("SELECT fields FROM events")[0][0])
        self.assertEqual((stored["passback_params"], stored["body"]), ("", ""))

    def test_empty_values_signed_by_sender_do_not_verify(self):
        # The converse: a signer that kept "passback_params=" signed another string.
        fields = signed(notify_fields(extra=[("passback_params", "")]), drop_empty=False)
        self.assert_rejected(form_body(fields), 401, "bad_signature", "[alipay.app shop]")

    def test_no_amount_is_stored_as_null(self):
        fields = [(k, v) for k, v in notify_fields() if k != "total_amount"]
        self.assertEqual(self.send(fields), (200, OK))
        self.assertEqual(self.d.query("SELECT amount_fen, status FROM events"), [(None, "TRADE_SUCCESS")])

    def test_no_trade_status_is_null_status(self):
        fields = [(k, v) for k, v in notify_fields() if k not in ("trade_status", "trade_no", "out_trade_no")]
        self.assertEqual(self.send(fields), (200, OK))
        nid = value(fields, "notify_id")
        self.assertEqual(self.d.query("SELECT status, order_id, merchant_order_id, dedupe_key FROM events"),
                         [(None, None, None, "alipay:%s:%s:" % (SHOP_APP, nid))])

    def test_duplicate_is_one_row_same_answer(self):
        body = form_body(signed(notify_fields()))
        self.assertEqual(self.post(body), (200, OK))
        self.assertEqual(self.post(body), (200, OK))
        self.assertEqual(self.d.query("SELECT count(*), max(deliveries), max(answer) FROM events"),
                         [(1, 2, "success")])

    def test_same_notify_id_other_trade_status_is_a_new_event(self):
        nid = "2024050100222" + digits(21)
        self.assertEqual(self.send(notify_fields(notify_id=nid, status="TRADE_SUCCESS")), (200, OK))
        self.assertEqual(self.send(notify_fields(notify_id=nid, status="TRADE_FINISHED")), (200, OK))
        self.assertEqual(self.d.query("SELECT status, deliveries FROM events ORDER BY id"),
                         [("TRADE_SUCCESS", 1), ("TRADE_FINISHED", 1)])

    def refund_fields(self, payment, refund_fee, status="TRADE_SUCCESS"):
        """A refund notification of `payment` as Alipay sends it: the same
        trade, the original total_amount, plus refund_fee, gmt_refund and
        out_biz_no, under a notify_id of its own."""
        f = dict(payment)
        fields = notify_fields(total=f["total_amount"], status=status, extra=[
            ("refund_fee", refund_fee), ("gmt_refund", "2024-05-02 09:30:00.123"),
            ("out_biz_no", "R-" + digits(8))])
        return [(k, f[k] if k in ("out_trade_no", "trade_no") else v) for k, v in fields]

    def test_partial_refund_is_a_refund_not_a_second_payment(self):
        # A partial refund arrives as TRADE_SUCCESS with the original
        # total_amount: it must not count as a payment by kind or by amount.
        pay = notify_fields(total="100.00")
        self.assertEqual(self.send(pay), (200, OK))
        self.assertEqual(self.send(self.refund_fields(pay, "30.5")), (200, OK))
        rows = self.d.query("SELECT kind, status, amount_fen, refund_fen, order_id FROM events ORDER BY id")
        self.assertEqual(rows, [("notify", "TRADE_SUCCESS", 10000, None, value(pay, "trade_no")),
                                ("refund_notify", "TRADE_SUCCESS", 10000, 3050, value(pay, "trade_no"))])
        self.assertEqual(self.d.query("SELECT sum(amount_fen) FROM events WHERE kind = 'notify' "
                                      "AND status = 'TRADE_SUCCESS'"), [(10000,)])

    def test_full_refund_closing_the_trade_is_a_refund(self):
        pay = notify_fields(total="20.00")
        self.assertEqual(self.send(pay), (200, OK))
        self.assertEqual(self.send(self.refund_fields(pay, "20.00", status="TRADE_CLOSED")), (200, OK))
        self.assertEqual(self.d.query("SELECT kind, status, refund_fen FROM events ORDER BY id"),
                         [("notify", "TRADE_SUCCESS", None), ("refund_notify", "TRADE_CLOSED", 2000)])

    def refund_rows(self):
        return self.d.query("SELECT refund_total_fen, refund_fen FROM events WHERE kind = 'refund_notify' "
                            "ORDER BY id")

    def test_refund_fee_is_the_total_refunded_so_two_partial_refunds_add_up(self):
        # Alipay's refund_fee is the trade's total refunded so far: refunds of
        # 10.00 then 20.00 notify 10.00 then 30.00. Summed as refund amounts
        # they said 40.00 were refunded.
        pay = notify_fields(total="100.00")
        self.assertEqual(self.send(pay), (200, OK))
        self.assertEqual(self.send(self.refund_fields(pay, "10.00")), (200, OK))
        self.assertEqual(self.send(self.refund_fields(pay, "30.00")), (200, OK))
        self.assertEqual(self.refund_rows(), [(1000, 1000), (3000, 2000)])
        self.assertEqual(self.d.query("SELECT sum(refund_fen), sum(refund_yuan) FROM daily_summary "
                                      "WHERE kind = 'refund_notify'"), [(3000, 30)])
        # another trade's refunds are its own
        other = notify_fields(total="50.00")
        self.assertEqual(self.send(other), (200, OK))
        self.assertEqual(self.send(self.refund_fields(other, "5.00")), (200, OK))
        self.assertEqual(self.refund_rows()[-1], (500, 500))

    def test_a_refund_told_late_corrects_the_next_one(self):
        pay = notify_fields(total="100.00")
        self.assertEqual(self.send(pay), (200, OK))
        first, second = self.refund_fields(pay, "10.00"), self.refund_fields(pay, "30.00")
        self.assertEqual(self.send(second), (200, OK))   # the first one's notification is late
        self.assertEqual(self.refund_rows(), [(3000, 3000)])
        self.assertEqual(self.send(first), (200, OK))
        self.assertEqual(self.refund_rows(), [(3000, 2000), (1000, 1000)])
        self.assertIn("refund_fen corrected from 3000 to 2000", self.d.logtext())
        # a redelivery changes nothing; the same total told again adds nothing
        self.assertEqual(self.send(first), (200, OK))
        again = [(k, "2024050100333" + digits(21) if k == "notify_id" else v) for k, v in second]
        self.assertEqual(self.send(again), (200, OK))
        self.assertEqual(self.refund_rows(), [(3000, 2000), (1000, 1000), (3000, 0)])
        self.assertEqual(self.d.query("SELECT sum(refund_fen) FROM events"), [(3000,)])

    def test_closed_unpaid_trade_is_not_a_refund(self):
        self.assertEqual(self.send(notify_fields(status="TRADE_CLOSED")), (200, OK))
        self.assertEqual(self.d.query("SELECT kind, refund_fen FROM events"), [("notify", None)])

    def test_refund_fee_not_an_amount_is_refused(self):
        pay = notify_fields()
        self.assert_rejected(form_body(signed(self.refund_fields(pay, "1.234"))), 400, "bad_amount",
                             "refund_fee")

    def test_gbk_body_verified_raw_and_stored_as_utf8(self):
        subject = "测试商品（支付宝）"
        fields = [(k, subject.encode("gbk") if k == "subject" else "gbk" if k == "charset" else v)
                  for k, v in notify_fields()]
        body = form_body(signed(fields))
        self.assertIn(b"%B2%E2%CA%D4", body)  # GBK bytes of the first two characters
        self.assertEqual(self.post(body), (200, OK))
        self.assertEqual(self.d.query("SELECT body FROM events"), [(body,)])
        self.assertEqual(json.loads(self.d.query("SELECT fields FROM events")[0][0])["subject"], subject)

    def test_gbk_body_that_is_not_gbk_keeps_raw_bytes_in_body(self):
        # Not valid GBK: the body keeps the bytes as signed; the fields column
        # stays valid JSON (the undecodable bytes shown as U+FFFD).
        bad = b"\xff\xfe raw"
        fields = [(k, bad if k == "subject" else "gbk" if k == "charset" else v) for k, v in notify_fields()]
        self.assertEqual(self.send(fields), (200, OK))
        self.assertIn(b"subject=%FF%FE+raw", self.d.query("SELECT body FROM events")[0][0])
        self.assertEqual(json.loads(self.d.query("SELECT fields FROM events")[0][0])["subject"],
                         "\ufffd\ufffd raw")
        self.assertEqual(self.d.query("SELECT json_valid(fields) FROM events"), [(1,)])

    def test_plus_in_signature_sent_raw_still_verifies(self):
        # A '+' in sign sent unencoded is decoded as a space; the retry with '+' restores it.
        for _ in range(40):
            fields = signed(notify_fields())
            sig = value(fields, "sign")
            if "+" in sig:
                break
        self.assertIn("+", sig)
        rest = [(k, v) for k, v in fields if k != "sign"]
        body = form_body(rest) + b"&sign=" + sig.replace("/", "%2F").replace("=", "%3D").encode()
        self.assertEqual(self.post(body), (200, OK))

    def test_key_as_pem_file(self):
        self.assertEqual(self.send(notify_fields(app_id=FILE_APP, seller="2088999"), key=FILE_KEY), (200, OK))
        self.assertEqual(self.d.query("SELECT app FROM events"), [(FILE_APP,)])

    def test_key_as_certificate_file(self):
        self.assertEqual(self.send(notify_fields(app_id=CERT_APP), key=CERT_KEY), (200, OK))
        self.assertEqual(self.d.query("SELECT app FROM events"), [(CERT_APP,)])

    def test_apps_keys_are_not_interchangeable(self):
        self.assert_rejected(form_body(signed(notify_fields(app_id=CERT_APP), key=FILE_KEY)), 401,
                             "bad_signature", "[alipay.app cert]")

    # ---- rejected ----
    def test_tampered_field(self):
        fields = [(k, "0.01" if k == "total_amount" else v) for k, v in signed(notify_fields())]
        self.assert_rejected(form_body(fields), 401, "bad_signature", "[alipay.app shop]")

    def test_signed_with_another_key(self):
        self.assert_rejected(form_body(signed(notify_fields(), key=OTHER_KEY)), 401, "bad_signature",
                             "[alipay.app shop]")

    def test_missing_signature(self):
        self.assert_rejected(form_body(notify_fields() + [("sign_type", "RSA2")]), 401, "missing_signature",
                             "sign")

    def test_empty_signature(self):
        self.assert_rejected(form_body(notify_fields() + [("sign_type", "RSA2"), ("sign", "")]), 401,
                             "missing_signature", "sign")

    def test_signature_not_base64(self):
        self.assert_rejected(form_body(notify_fields() + [("sign", "not*base64!")]), 401, "bad_signature",
                             "sign")

    def test_unknown_app_id(self):
        self.assert_rejected(form_body(signed(notify_fields(app_id="2021009999999999"))), 401, "unknown_app",
                             "app_id 2021009999999999")

    def test_missing_app_id(self):
        fields = [(k, v) for k, v in notify_fields() if k != "app_id"]
        self.assert_rejected(form_body(signed(fields)), 400, "missing_field", "app_id")

    def test_missing_notify_id(self):
        fields = [(k, v) for k, v in notify_fields() if k != "notify_id"]
        self.assert_rejected(form_body(signed(fields)), 400, "missing_field", "notify_id")

    def test_nul_byte_in_an_id(self):
        # out_trade_no is stored as text: "A%00x" would be stored as "A".
        fields = signed(replace(notify_fields(), "out_trade_no", "A\0x"))
        self.assert_rejected(form_body(fields), 400, "bad_field",
                             "field out_trade_no contains a NUL byte")

    def test_repeated_key(self):
        body = form_body(signed(notify_fields()) + [("trade_status", "TRADE_SUCCESS")])
        self.assert_rejected(body, 400, "repeated_key", "trade_status")

    def test_bad_percent_encoding(self):
        self.assert_rejected(form_body(signed(notify_fields())) + b"&x=%G1", 400, "bad_form", "x")

    def test_bad_sign_type(self):
        self.assert_rejected(form_body(signed(notify_fields(), sign_type="MD5", hash_name="sha256")), 401,
                             "bad_sign_type", "sign_type 'MD5'")

    def test_invalid_amount_after_signature(self):
        for i, bad in enumerate(["88.888", "1e2", "-1.00", "88,88", " 1.00", "0x10"]):
            with self.subTest(total_amount=bad):
                st, data = self.send(notify_fields(total=bad))
                self.assertEqual((st, data), (400, FAIL))
                self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = 'bad_amount'", i + 1)
        detail = self.d.query("SELECT detail FROM rejections WHERE reason = 'bad_amount' ORDER BY id")[0][0]
        self.assertIn("total_amount '88.888'", detail)
        self.assertEqual(self.count("events"), 0)

    def test_wrong_seller(self):
        self.assert_rejected(form_body(signed(notify_fields(seller="2088000000000002"))), 401, "wrong_seller",
                             "seller_id '2088000000000002'")

    def test_missing_seller_when_configured(self):
        self.assert_rejected(form_body(signed(notify_fields(seller=None))), 401, "wrong_seller", "seller_id")

    def test_query_string_is_not_signed_data(self):
        # Only the POSTed body counts: a notify_id in the query string changes nothing.
        fields = [(k, v) for k, v in notify_fields() if k != "notify_id"]
        st, data, _ = self.d.request("POST", NOTIFY + "?notify_id=1", form_body(signed(fields)),
                                     {"Content-Type": FORM})
        self.assertEqual((st, data), (400, FAIL))
        self.assertEqual(self.count("events"), 0)


class AlipayStoreFailure(DaemonTest):
    extra_config = CONFIG

    def test_store_failure_answers_503_fail_and_recovers(self):
        with sqlite3.connect(self.d.db_path, timeout=10) as c:
            c.execute("CREATE TRIGGER fail BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        body = form_body(signed(notify_fields()))
        self.assertEqual(self.d.post(NOTIFY, body, FORM), (503, FAIL))
        self.assertEqual(self.count("events"), 0)
        with sqlite3.connect(self.d.db_path, timeout=10) as c:
            c.execute("DROP TRIGGER fail")
        self.assertEqual(self.d.post(NOTIFY, body, FORM), (200, OK))
        self.assertEqual(self.count("events"), 1)


class AlipayCustomPath(DaemonTest):
    extra_config = "[alipay]\nnotify_path = /pay/ali\n" + CONFIG

    def test_configured_path(self):
        self.assertEqual(self.d.post("/pay/ali", form_body(signed(notify_fields())), FORM), (200, OK))
        self.assertEqual(self.d.post(NOTIFY, b"a=1", FORM)[0], 404)


class AlipayNotConfigured(DaemonTest):
    def test_no_app_no_route(self):
        self.assertEqual(self.d.post(NOTIFY, b"a=1", FORM)[0], 404)


# ---- the real vectors -------------------------------------------------------

VECTOR_KINDS = ("alipay_async_notify", "alipay_sync_return", "alipay_sdk_sign_fixture")


def load_vectors():
    out = []
    for name in sorted(os.listdir(harness.VECTORS_DIR)):
        if name.endswith(".json"):
            with open(os.path.join(harness.VECTORS_DIR, name), encoding="utf-8") as f:
                v = json.load(f)
            if v.get("kind") in VECTOR_KINDS:
                v["fields_dict"] = dict(v["inputs"]["fields"])
                out.append(v)
    return out


def fen(yuan):
    """Independent of the C conversion: Decimal, exact."""
    return int(decimal.Decimal(yuan) * 100)


def expected_outcome(v):
    """What the daemon must answer: (status, reason or None for stored).
    A vector without app_id (the legacy 2015 mobile.securitypay notification
    identifies its merchant by partner/seller_id only) cannot be matched to an
    app: 400 missing_field before any key is chosen. A correctly signed vector
    without notify_id (synchronous returns, SDK fixtures) passes the signature
    and is then refused 400 missing_field: it is not a notification."""
    f = v["fields_dict"]
    if not f.get("app_id"):
        return 400, "missing_field", "app_id"
    if v["expected"] != "valid":
        return 401, "bad_signature", "[alipay.app "
    if not f.get("notify_id"):
        return 400, "missing_field", "notify_id"
    return 200, None, None


def daemon_groups(vectors, key_of):
    """Assign each (app_id, key) pair to the first daemon whose config does
    not yet use that app_id with another key: a list of {app_id: key}."""
    groups = []
    for v in vectors:
        app_id = v["fields_dict"].get("app_id")
        if not app_id:
            continue
        key = key_of(v)
        for g in groups:
            if g.get(app_id, key) == key:
                g[app_id] = key
                break
        else:
            groups.append({app_id: key})
    return groups or [{}]


class AlipayVectorGrouping(unittest.TestCase):
    def test_one_app_id_with_two_keys_needs_two_daemons(self):
        vs = [{"fields_dict": {"app_id": a}, "k": k} for a, k in
              (("1", "A"), ("2", "B"), ("1", "A"), ("1", "C"), ("3", "A"), ("2", "B"))]
        self.assertEqual(daemon_groups(vs, lambda v: v["k"]), [{"1": "A", "2": "B", "3": "A"}, {"1": "C"}])


class AlipayVectors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Required: without the real vectors this suite fails, never skips.
        assert os.path.isdir(harness.VECTORS_DIR), (
            "vectors not present at %s (set VECTORS_DIR to ../shared/vectors)" % harness.VECTORS_DIR)
        cls.vectors = load_vectors()
        cls.keydir = tempfile.mkdtemp(prefix="payhookd-alipay-vectors-")

    def write(self, text, suffix):
        path = os.path.join(self.keydir, "k%d%s" % (len(os.listdir(self.keydir)), suffix))
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_vectors(self, vectors, key_of):
        """Start as few daemons as the (app_id, key) pairs allow, post every
        vector to the daemon that has its app, check answer and store."""
        self.assertTrue(vectors)
        groups = daemon_groups(vectors, key_of)
        accepted = 0
        for g in groups:
            conf = "".join("[alipay.app a%s]\napp_id = %s\nalipay_public_key = %s\n\n"
                           % (app_id, app_id, self.write(key, ".pem")) for app_id, key in g.items())
            d = Daemon(conf or "[alipay.app none]\napp_id = 0\nalipay_public_key = %s\n"
                       % self.write(vectors[0]["inputs"]["public_key_pem"], ".pem")).start()
            try:
                mine = [v for v in vectors if g.get(v["fields_dict"].get("app_id")) == key_of(v)
                        or (not v["fields_dict"].get("app_id") and g is groups[0])]
                for v in mine:
                    with self.subTest(vector=v["id"]):
                        accepted += self.check_vector(d, v)
            finally:
                rc = d.stop()
            self.assertEqual(rc, 0, d.logtext())
        return accepted

    def check_vector(self, d, v):
        f, body = v["fields_dict"], v["inputs"]["form_body"].encode("ascii")
        status, reason, detail = expected_outcome(v)
        before = d.query("SELECT count(*), coalesce(sum(deliveries), 0) FROM events")[0]
        nrej = d.query("SELECT count(*) FROM rejections")[0][0]
        answer = d.post(NOTIFY, body, ALIPAY_CT)
        if answer[0] != 200:  # its rejection row is written after the answer: wait for it
            d.wait_rows("SELECT count(*) FROM rejections", nrej + 1)
        self.assertEqual(answer, (status, OK if status == 200 else FAIL))
        if status != 200:
            got = d.query("SELECT reason, detail FROM rejections ORDER BY id DESC LIMIT 1")[0]
            self.assertEqual(got[0], reason)
            self.assertIn(detail, got[1])
            self.assertEqual(d.query("SELECT count(*), coalesce(sum(deliveries), 0) FROM events")[0], before)
            return 0
        key = "alipay:%s:%s:%s" % (f["app_id"], f["notify_id"], f.get("trade_status", ""))
        rows = d.query("SELECT app, order_id, merchant_order_id, amount_fen, status, verified, deliveries, "
                       "answer, body FROM events WHERE dedupe_key = ?", key)
        amount = fen(f["total_amount"]) if f.get("total_amount") else None
        self.assertEqual(rows, [(f["app_id"], f.get("trade_no"), f.get("out_trade_no"), amount,
                                 f.get("trade_status"), 1, 1, "success", body)])
        self.assertEqual(d.query("SELECT count(*) FROM events")[0][0], before[0] + 1)
        return 1

    def test_vectors_with_public_keys(self):
        accepted = self.run_vectors(self.vectors, lambda v: v["inputs"]["public_key_pem"])
        self.assertGreaterEqual(accepted, 4)  # the four real notifications: never vacuous

    def test_vectors_with_certificates(self):
        with_cert = [v for v in self.vectors if v["inputs"].get("certificate_pem")]
        accepted = self.run_vectors(with_cert, lambda v: v["inputs"]["certificate_pem"])
        self.assertGreaterEqual(accepted, 1)


NEXT_KEY = RsaKey(2048)  # the key Alipay switches to


class KeySwitch(DaemonTest):
    """During a key switch both keys verify notifications (design: two keys
    accepted per app during the switch)."""
    extra_config = """
[alipay.app shop]
app_id = %s
alipay_public_key = %s
alipay_public_key_next = %s
""" % (SHOP_APP, SHOP_KEY.spki_b64(), NEXT_KEY.spki_b64())

    def test_both_keys_verify_and_no_other(self):
        for key in (SHOP_KEY, NEXT_KEY):
            fields = signed(notify_fields(seller=None), key=key)
            self.assertEqual(self.d.post(NOTIFY, form_body(fields), FORM), (200, OK))
        fields = signed(notify_fields(seller=None), key=OTHER_KEY)
        self.assertEqual(self.d.post(NOTIFY, form_body(fields), FORM), (401, FAIL))
        self.assertEqual(self.d.query("SELECT count(*) FROM events"), [(2,)])


if __name__ == "__main__":
    unittest.main()
