"""End to end: Baidu cashier pay notifications, refund audits and refund
notifications through the real daemon, signed with keys generated here."""
import json
import os
import random
import sqlite3
import tempfile
import unittest

import harness
from harness import DaemonTest, RsaKey, baidu_signed, form_body

PAY, AUDIT, REFUND = "/baidu/pay/notify", "/baidu/pay/refund-audit", "/baidu/pay/refund-notify"
FORM = "application/x-www-form-urlencoded"
OK_PAY = b'{"errno":0,"msg":"success","data":{"isConsumed":2}}'
OK_REFUND = b'{"errno":0,"msg":"success","data":{}}'

SHOP_KEY = RsaKey(2048)    # [baidu.app shop], bare base64 in the config
SMALL_KEY = RsaKey(1024)   # [baidu.app small], a PEM file, refund_audit = approve
OTHER_KEY = RsaKey(2048)   # configured nowhere
KEYDIR = tempfile.mkdtemp(prefix="payhookd-keys-")
SMALL_PEM = SMALL_KEY.write_public_pem(KEYDIR, "small.pem")

CONFIG = """
[baidu.app shop]
app_id = 14508451
deal_id = 470193086
platform_public_key = %s

[baidu.app small]
deal_id = 111222
platform_public_key = %s
refund_audit = approve
""" % (SHOP_KEY.spki_b64(), SMALL_PEM)


def new_order_id():
    # Real Baidu order ids exceed 2^53: they must survive as text.
    return str(random.randint(10**17, 10**18))


def pay_fields(order_id, deal="470193086", total=1000, pay=None, status=2, tp_order="T-1", extra=()):
    return [("userId", "2389718"), ("orderId", order_id), ("unitPrice", str(total)), ("count", "1"),
            ("totalMoney", str(total)), ("payMoney", str(total if pay is None else pay)),
            ("promoMoney", "0"), ("hbMoney", "0"), ("hbBalanceMoney", "0"), ("giftCardMoney", "0"),
            ("dealId", deal), ("payTime", "1573099210"), ("promoDetail", ""), ("payType", "1087"),
            ("partnerId", "6000001"), ("status", str(status)), ("tpOrderId", tp_order),
            ("returnData", "")] + list(extra)


def audit_fields(order_id, batch, apply=None, tp_order="T-1"):
    f = [("orderId", order_id), ("userId", "2389718"), ("tpOrderId", tp_order), ("refundBatchId", batch)]
    if apply is not None:
        f.append(("applyRefundMoney", str(apply)))
    return f


def audit_answer(status, money):
    return ('{"errno":0,"msg":"success","data":{"auditStatus":%d,"calculateRes":{"refundPayMoney":%d}}}'
            % (status, money)).encode()


class BaiduPay(DaemonTest):
    extra_config = CONFIG

    def send(self, path, fields, key=SHOP_KEY):
        return self.d.post(path, form_body(baidu_signed(fields, key)), FORM)

    def assert_rejected(self, path, body, status, reason):
        st, data = self.d.post(path, body, FORM)
        self.assertEqual(st, status, data)
        answer = json.loads(data)
        self.assertNotEqual(answer["errno"], 0)   # so Baidu retries
        self.assertEqual(answer["msg"], reason)
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = ?", 1, reason)
        self.assertEqual(self.count("events"), 0)

    # ---- pay notifications ----
    def test_valid_pay_notification(self):
        order = new_order_id()
        fields = baidu_signed(pay_fields(order, total=1999, pay=1899), SHOP_KEY)
        body = form_body(fields)
        self.assertEqual(self.d.post(PAY, body, FORM), (200, OK_PAY))
        row = self.d.query("SELECT provider, kind, app, order_id, merchant_order_id, amount_fen, status, "
                           "verified, deliveries, answer, body FROM events")
        self.assertEqual(row, [("baidu", "pay_notify", "14508451", order, "T-1", 1999, "2", 1, 1,
                                OK_PAY.decode(), body)])
        fields_json = json.loads(self.d.query("SELECT fields FROM events")[0][0])
        self.assertEqual(fields_json["payMoney"], "1899")
        self.assertEqual(fields_json["promoDetail"], "")

    def test_content_type_is_not_required(self):
        # Baidu's header is undocumented: any body that parses as a form is taken.
        st, data = self.d.post(PAY, form_body(baidu_signed(pay_fields(new_order_id()), SHOP_KEY)), None)
        self.assertEqual((st, data), (200, OK_PAY))

    def test_duplicate_is_one_row_same_answer(self):
        body = form_body(baidu_signed(pay_fields(new_order_id()), SHOP_KEY))
        self.assertEqual(self.d.post(PAY, body, FORM), (200, OK_PAY))
        self.assertEqual(self.d.post(PAY, body, FORM), (200, OK_PAY))
        self.assertEqual(self.d.query("SELECT count(*), max(deliveries) FROM events"), [(1, 2)])

    def test_status_change_is_a_new_event(self):
        order = new_order_id()
        self.assertEqual(self.send(PAY, pay_fields(order, status=1)), (200, OK_PAY))
        self.assertEqual(self.send(PAY, pay_fields(order, status=2)), (200, OK_PAY))
        self.assertEqual(self.d.query("SELECT status FROM events ORDER BY id"), [("1",), ("2",)])

    def test_tampered_amount(self):
        fields = baidu_signed(pay_fields(new_order_id(), total=1000), SHOP_KEY)
        fields = [(k, "1" if k == "totalMoney" else v) for k, v in fields]
        self.assert_rejected(PAY, form_body(fields), 401, "bad_signature")

    def test_signed_with_another_key(self):
        self.assert_rejected(PAY, form_body(baidu_signed(pay_fields(new_order_id()), OTHER_KEY)),
                             401, "bad_signature")

    def test_missing_signature(self):
        self.assert_rejected(PAY, form_body(pay_fields(new_order_id())), 401, "missing_signature")

    def test_unknown_deal_id(self):
        fields = baidu_signed(pay_fields(new_order_id(), deal="999"), SHOP_KEY)
        self.assert_rejected(PAY, form_body(fields), 401, "unknown_app")

    def test_nul_byte_in_an_id_is_refused(self):
        # Found by fuzzing: ids are kept as text, so "b%00x" and "b%00y" were
        # both stored as "b" -- the second refund audit then failed to commit
        # for ever (Baidu retries) -- and an orderId was stored cut short.
        order = new_order_id()
        self.assertEqual(self.send(PAY, pay_fields(order)), (200, OK_PAY))
        for batch in ("b\0x", "b\0y"):
            st, data = self.send(AUDIT, audit_fields(order, batch, apply=100))
            self.assertEqual(st, 400, data)
            self.assertEqual(json.loads(data)["msg"], "bad_field")
        st, data = self.send(PAY, pay_fields(order + "\0" + "1"))
        self.assertEqual((st, json.loads(data)["msg"]), (400, "bad_field"))
        self.assertIn("refundBatchId contains a NUL byte", self.d.logtext())
        self.assertEqual(self.count("events"), 1)
        self.assertEqual(self.count("baidu_refunds"), 0)
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = ?", 3, "bad_field")

    def test_nul_byte_in_any_field_is_refused(self):
        # payType is no id and was in no list of fields kept as text, yet a
        # signed "1%00" is refused as well: every field is scanned, so a
        # provider has no list to forget when it starts keeping one as text.
        fields = [(k, "1\0" if k == "payType" else v) for k, v in pay_fields(new_order_id())]
        self.assert_rejected(PAY, form_body(baidu_signed(fields, SHOP_KEY)), 400, "bad_field")
        self.assertIn("field payType contains a NUL byte (%00)", self.d.logtext())

    def test_client_values_cannot_forge_log_lines(self):
        fields = baidu_signed(pay_fields(new_order_id(), deal="999\npayhookd: notice: FORGED"), SHOP_KEY)
        self.assert_rejected(PAY, form_body(fields), 401, "unknown_app")
        lines = self.d.logtext().splitlines()
        self.assertFalse([l for l in lines if l.startswith("payhookd: notice: FORGED")], lines)
        # the newline is shown as an escape, inside the one line it came in
        self.assertTrue([l for l in lines if "dealId '999\\x0apayhookd: notice: FORGED'" in l],
                        lines)

    def test_repeated_key(self):
        fields = baidu_signed(pay_fields(new_order_id()), SHOP_KEY) + [("status", "2")]
        self.assert_rejected(PAY, form_body(fields), 400, "repeated_key")

    def test_bad_percent_encoding(self):
        body = form_body(baidu_signed(pay_fields(new_order_id()), SHOP_KEY)) + b"&x=%G1"
        self.assert_rejected(PAY, body, 400, "bad_form")

    def test_non_integer_amount_after_signature(self):
        fields = baidu_signed(pay_fields(new_order_id()) , SHOP_KEY)
        fields = baidu_signed([(k, "10.5" if k == "totalMoney" else v) for k, v in fields], SHOP_KEY)
        self.assert_rejected(PAY, form_body(fields), 400, "bad_amount")

    def test_plus_in_signature_decoded_as_space_is_accepted(self):
        # A proxy that decoded the body once too often turns '+' into ' ':
        # send rsaSign with raw '+' (which form decoding makes a space).
        for _ in range(20):
            fields = baidu_signed(pay_fields(new_order_id()), SHOP_KEY)
            sig = dict(fields)["rsaSign"]
            if "+" in sig:
                break
        self.assertIn("+", sig)
        rest = [(k, v) for k, v in fields if k != "rsaSign"]
        body = form_body(rest) + b"&rsaSign=" + sig.replace("/", "%2F").replace("=", "%3D").encode()
        self.assertEqual(self.d.post(PAY, body, FORM), (200, OK_PAY))

    def test_empty_values_are_signed(self):
        # promoDetail= and returnData= are empty and part of the signature:
        # removing one breaks it.
        fields = baidu_signed(pay_fields(new_order_id()), SHOP_KEY)
        fields = [(k, v) for k, v in fields if k != "returnData"]
        self.assert_rejected(PAY, form_body(fields), 401, "bad_signature")

    def test_gbk_bytes_verified_raw(self):
        gbk = "测试商品".encode("gbk")
        fields = baidu_signed(pay_fields(new_order_id(), extra=[("goodsName", gbk)]), SHOP_KEY)
        self.assertEqual(self.d.post(PAY, form_body(fields), FORM), (200, OK_PAY))
        self.assertIn(b"%B2%E2", self.d.query("SELECT body FROM events")[0][0])

    def test_1024_bit_key_from_pem_file(self):
        fields = baidu_signed(pay_fields(new_order_id(), deal="111222"), SMALL_KEY)
        self.assertEqual(self.d.post(PAY, form_body(fields), FORM), (200, OK_PAY))
        # events.app is the app id; an app without app_id stores its NAME.
        self.assertEqual(self.d.query("SELECT app, json_extract(fields, '$.dealId') FROM events"),
                         [("small", "111222")])

    def test_unknown_extra_fields_are_signed(self):
        fields = baidu_signed(pay_fields(new_order_id(), extra=[("newField", "x")]), SHOP_KEY)
        self.assertEqual(self.d.post(PAY, form_body(fields), FORM), (200, OK_PAY))

    # ---- refund audits ----
    def paid(self, total=1000, pay=None, deal="470193086", key=SHOP_KEY):
        order = new_order_id()
        self.assertEqual(self.send(PAY, pay_fields(order, total=total, pay=pay, deal=deal), key), (200, OK_PAY))
        return order

    def test_audit_auto_approves_within_paid_amount_and_rejects_over_refund(self):
        order = self.paid(total=1200, pay=1000)  # payMoney is the limit
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 600)), (200, audit_answer(1, 600)))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B2", 500)), (200, audit_answer(2, 500)))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B3", 400)), (200, audit_answer(1, 400)))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B4", 1)), (200, audit_answer(2, 1)))
        rows = self.d.query("SELECT refund_batch_id, audit_status, refund_fen FROM baidu_refunds ORDER BY 1")
        self.assertEqual(rows, [("B1", 1, 600), ("B2", 2, 500), ("B3", 1, 400), ("B4", 2, 1)])
        # The decided amount is refund_fen; amount_fen (the order amount) stays NULL.
        self.assertEqual(self.d.query("SELECT status, amount_fen, refund_fen FROM events "
                                      "WHERE kind = 'refund_audit' ORDER BY id"),
                         [("approve", None, 600), ("reject", None, 500), ("approve", None, 400),
                          ("reject", None, 1)])

    def test_audit_same_batch_gets_the_same_decision(self):
        order = self.paid(total=1000)
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 1000)), (200, audit_answer(1, 1000)))
        # Asked again: same decision, even though the order is now fully refunded.
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 1000)), (200, audit_answer(1, 1000)))
        self.assertEqual(self.d.query("SELECT deliveries FROM events WHERE kind = 'refund_audit'"), [(2,)])

    def test_audit_before_its_pay_notification_is_undecided_then_decided(self):
        # The pay notification may only be late: Baidu is told to ask again
        # (auditStatus 3) and nothing is recorded, so the next ask decides
        # on what is stored then instead of replaying a rejection for ever.
        order = new_order_id()
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 100)), (200, audit_answer(3, 100)))
        self.assertEqual(self.count("baidu_refunds"), 0)
        self.assertEqual(self.count("events", "kind = 'refund_audit'"), 0)
        self.assertIn("undecided", self.d.logtext())
        self.assertEqual(self.send(PAY, pay_fields(order, total=1000)), (200, OK_PAY))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 100)), (200, audit_answer(1, 100)))
        self.assertEqual(self.d.query("SELECT refund_batch_id, audit_status, refund_fen FROM baidu_refunds"),
                         [("B1", 1, 100)])
        # From now on the same batch replays that decision.
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 100)), (200, audit_answer(1, 100)))
        self.assertEqual(self.d.query("SELECT deliveries FROM events WHERE kind = 'refund_audit'"), [(2,)])

    def test_audit_of_unpaid_order_is_undecided(self):
        order = new_order_id()
        self.assertEqual(self.send(PAY, pay_fields(order, status=1)), (200, OK_PAY))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 100)), (200, audit_answer(3, 100)))
        self.assertEqual(self.count("baidu_refunds"), 0)
        self.assertEqual(self.send(PAY, pay_fields(order, status=2)), (200, OK_PAY))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 100)), (200, audit_answer(1, 100)))

    def test_audit_without_amount_asks_for_the_remainder(self):
        order = self.paid(total=1000)
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 300)), (200, audit_answer(1, 300)))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B2")), (200, audit_answer(1, 700)))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B3")), (200, audit_answer(2, 0)))

    def test_failed_refund_frees_its_amount(self):
        order = self.paid(total=1000)
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 1000)), (200, audit_answer(1, 1000)))
        refund = [("orderId", order), ("userId", "2389718"), ("tpOrderId", "T-1"), ("refundBatchId", "B1"),
                  ("refundStatus", "2")]
        self.assertEqual(self.send(REFUND, refund), (200, OK_REFUND))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B2", 1000)), (200, audit_answer(1, 1000)))

    def test_audit_tampered_is_rejected(self):
        order = self.paid()
        fields = baidu_signed(audit_fields(order, "B1", 100), SHOP_KEY)
        fields = [(k, "999" if k == "applyRefundMoney" else v) for k, v in fields]
        st, data = self.d.post(AUDIT, form_body(fields), FORM)
        self.assertEqual(st, 401)
        self.assertNotEqual(json.loads(data)["errno"], 0)
        self.assertEqual(self.count("baidu_refunds"), 0)

    def test_audit_of_known_order_must_use_that_apps_key(self):
        order = self.paid()  # owned by shop
        st, _ = self.send(AUDIT, audit_fields(order, "B1", 100), SMALL_KEY)
        self.assertEqual(st, 401)

    def test_audit_of_unknown_order_finds_the_app_by_key(self):
        # An order never seen: the app whose key verifies owns it. Nothing
        # is paid yet, so it is undecided whatever the policy; the refund
        # notification of such an order is stored under that app.
        order = new_order_id()
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B9", 5), SMALL_KEY), (200, audit_answer(3, 5)))
        refund = [("orderId", order), ("userId", "1"), ("tpOrderId", "T"), ("refundBatchId", "B9"),
                  ("refundStatus", "1")]
        self.assertEqual(self.send(REFUND, refund, SMALL_KEY), (200, OK_REFUND))
        self.assertEqual(self.d.query("SELECT app FROM events WHERE kind = 'refund_notify'"), [("small",)])

    def test_fixed_approve_policy_never_approves_more_than_paid(self):
        order = self.paid(total=100, deal="111222", key=SMALL_KEY)
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 5000), SMALL_KEY), (200, audit_answer(2, 5000)))
        self.assertIn("over-refund", self.d.query("SELECT reason FROM baidu_refunds")[0][0])
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B2", 60), SMALL_KEY), (200, audit_answer(1, 60)))
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B3", 41), SMALL_KEY), (200, audit_answer(2, 41)))
        # Without applyRefundMoney: what remains.
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B4"), SMALL_KEY), (200, audit_answer(1, 40)))

    # ---- refund notifications ----
    def test_refund_notification(self):
        order = self.paid()
        refund = [("orderId", order), ("userId", "2389718"), ("tpOrderId", "T-1"), ("refundBatchId", "B1"),
                  ("refundStatus", "1")]
        self.assertEqual(self.send(REFUND, refund), (200, OK_REFUND))
        self.assertEqual(self.send(REFUND, refund), (200, OK_REFUND))
        self.assertEqual(self.d.query("SELECT status, deliveries, app, amount_fen, refund_fen FROM events "
                                      "WHERE kind = 'refund_notify'"),
                         [("1", 2, "14508451", None, None)])

    def test_refund_notification_carries_the_audited_amount(self):
        order = self.paid(total=1000)
        self.assertEqual(self.send(AUDIT, audit_fields(order, "B1", 250)), (200, audit_answer(1, 250)))
        refund = [("orderId", order), ("userId", "2389718"), ("tpOrderId", "T-1"), ("refundBatchId", "B1"),
                  ("refundStatus", "1")]
        self.assertEqual(self.send(REFUND, refund), (200, OK_REFUND))
        self.assertEqual(self.d.query("SELECT refund_fen FROM events WHERE kind = 'refund_notify'"), [(250,)])

    def test_refund_notification_wrong_key(self):
        refund = [("orderId", new_order_id()), ("userId", "1"), ("tpOrderId", "T"), ("refundBatchId", "B1"),
                  ("refundStatus", "1")]
        self.assert_rejected(REFUND, form_body(baidu_signed(refund, OTHER_KEY)), 401, "bad_signature")


class BaiduStoreFailure(DaemonTest):
    extra_config = CONFIG

    def test_store_failure_answers_nonzero_errno_and_recovers(self):
        with sqlite3.connect(self.d.db_path, timeout=10) as c:
            c.execute("CREATE TRIGGER fail BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        body = form_body(baidu_signed(pay_fields(new_order_id()), SHOP_KEY))
        st, data = self.d.post(PAY, body, FORM)
        self.assertEqual(st, 503)
        self.assertNotEqual(json.loads(data)["errno"], 0)
        self.assertEqual(self.count("events"), 0)
        with sqlite3.connect(self.d.db_path, timeout=10) as c:
            c.execute("DROP TRIGGER fail")
        self.assertEqual(self.d.post(PAY, body, FORM), (200, OK_PAY))
        self.assertEqual(self.count("events"), 1)


class BaiduNotConfigured(DaemonTest):
    def test_no_app_no_route(self):
        st, _ = self.d.post(PAY, b"a=1", FORM)
        self.assertEqual(st, 404)


class CredentialKeys(unittest.TestCase):
    """Under systemd's LoadCredential=, key files named by a relative path
    are found in $CREDENTIALS_DIRECTORY (issue 12, item 3)."""

    def test_a_relative_key_path_is_read_from_the_credentials_directory(self):
        creds = tempfile.mkdtemp(prefix="payhookd-creds-")
        key = RsaKey(2048)
        key.write_public_pem(creds, "shop-platform.pem")
        d = harness.Daemon("[baidu.app creds]\ndeal_id = 470193086\n"
                           "platform_public_key = shop-platform.pem\n")
        self.addCleanup(d.kill)
        # not found from the daemon's working directory: only there
        d.start(env=dict(os.environ, CREDENTIALS_DIRECTORY=creds))
        order = new_order_id()
        st, body = d.post("/baidu/pay/notify", form_body(baidu_signed(pay_fields(order), key)),
                          "application/x-www-form-urlencoded")
        self.assertEqual((st, body), (200, OK_PAY))
        self.assertEqual(d.stop(), 0)
        # without it the relative path names no file: the config is refused
        d2 = harness.Daemon("[baidu.app creds]\ndeal_id = 470193086\n"
                            "platform_public_key = shop-platform.pem\n")
        self.addCleanup(d2.kill)
        env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
        d2.start(env=env, expect_fail=True)
        self.assertNotEqual(d2.stop(), 0)
        self.assertIn("platform_public_key", d2.logtext())


NEXT_KEY = RsaKey(2048)  # the key the platform switches to


class KeySwitch(DaemonTest):
    """During a key switch both platform keys verify (a reload adds the next one)."""
    extra_config = ("[baidu.app shop]\ndeal_id = 470193086\nplatform_public_key = %s\n"
                    "platform_public_key_next = %s\n" % (SHOP_KEY.spki_b64(), NEXT_KEY.spki_b64()))

    def test_both_keys_verify_and_no_other(self):
        for key in (SHOP_KEY, NEXT_KEY):
            st, body = self.d.post("/baidu/pay/notify", form_body(baidu_signed(
                pay_fields(new_order_id()), key)), "application/x-www-form-urlencoded")
            self.assertEqual((st, body), (200, OK_PAY))
        st, _ = self.d.post("/baidu/pay/notify", form_body(baidu_signed(
            pay_fields(new_order_id()), OTHER_KEY)), "application/x-www-form-urlencoded")
        self.assertEqual(st, 401)
        self.assertEqual(self.d.query("SELECT count(*) FROM events"), [(2,)])


if __name__ == "__main__":
    unittest.main()
