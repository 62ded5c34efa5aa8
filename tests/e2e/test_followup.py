"""End to end: follow-up queries (issue 9). The real daemon receives signed
callbacks, then asks a mock OpenAPI (tests/e2e/mock_openapi.py, started here
on 127.0.0.1) what the platform knows, and records confirmed, mismatch or
unconfirmed. The Alipay answers are signed by the mock's own platform key,
or are the real Alipay-signed vectors of ../shared/vectors byte for byte."""
import json
import os
import signal
import tempfile
import threading
import time
import unittest

import harness
from harness import Daemon, RsaKey, baidu_signed, canonical, form_body
from mock_openapi import MockOpenAPI, MockTestCase, verify_alipay_request, verify_gateway_request
from test_baidu_pay import new_order_id, pay_fields
import test_alipay

FORM = "application/x-www-form-urlencoded"
PAY = "/baidu/pay/notify"
BAIDU_TOKEN = "baidu-access-token-Z7q9"  # must never appear in the log or the store
BAIDU_KEY = RsaKey(2048)
APP_KEY = RsaKey(2048)      # the Alipay app's own key (signs its OpenAPI requests)
NOTIFY_KEY = RsaKey(2048)   # "Alipay's" key for notifications in these tests
KEYDIR = tempfile.mkdtemp(prefix="payhookd-followup-keys-")
ALIPAY_APP = "2021004100000009"
GW_SECRET = "gw-query-secret-1"
SLOW = 4 if harness.VALGRIND else 1


def write_private_pem(key, name):
    from cryptography.hazmat.primitives import serialization
    path = os.path.join(KEYDIR, name)
    with open(path, "wb") as f:
        f.write(key.priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def public_pem(key):
    from cryptography.hazmat.primitives import serialization
    return key.priv.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode()


APP_PRIV = write_private_pem(APP_KEY, "app_private.pem")


def config(mock, openapi="", alipay_next=None, baidu_query="yes"):
    text = """
[openapi]
baidu_base = %s
alipay_gateway = %s
retry_base = 0
retry_max = 1
max_attempts = 3
timeout = 2
%s

[baidu.app shop]
app_id = 14508451
deal_id = 470193086
app_key = MMMpmkey
platform_public_key = %s
access_token = %s
query = %s

[alipay.app main]
app_id = %s
alipay_public_key = %s
app_private_key = %s
""" % (mock.base, mock.alipay_gateway, openapi, BAIDU_KEY.spki_b64(), BAIDU_TOKEN, baidu_query,
       ALIPAY_APP, mock.write_alipay_public_pem(KEYDIR, "alipay_%d.pem" % mock.port), APP_PRIV)
    if alipay_next:
        text += "alipay_public_key_next = %s\n" % alipay_next
    text += """
[gateway demo]
sign = md5_key
secret = %s
query_url = %s
merchant_no = M100
""" % (GW_SECRET, mock.gateway_query_url)
    return text


class FollowUp(MockTestCase):
    """A daemon per test, pointed at a mock OpenAPI per test."""
    openapi = ""

    def daemon_config(self, mock):
        return config(mock, self.openapi)

    # ---- helpers ----
    def pay(self, total=1000, status=2, tp_order=None, order=None):
        order = order or new_order_id()
        tp_order = tp_order or "T-" + order[-8:]
        st, data = self.d.post(PAY, form_body(baidu_signed(
            pay_fields(order, total=total, status=status, tp_order=tp_order), BAIDU_KEY)), FORM)
        self.assertEqual(st, 200, data)
        eid = self.d.query("SELECT id FROM events WHERE order_id = ?", order)[0][0]
        return eid, order, tp_order

    def confirmation(self, eid):
        return self.d.query("SELECT confirmation FROM event_status WHERE id = ?", eid)[0][0]

    def wait_confirmation(self, eid, want, timeout=15):
        deadline = time.time() + timeout * SLOW
        got = None
        while time.time() < deadline:
            got = self.confirmation(eid)
            if got == want:
                return
            time.sleep(0.05)
        self.fail("event %d: confirmation %r, expected %r\njobs: %r\nresults: %r\n%s" % (
            eid, got, want, self.d.query("SELECT * FROM jobs"),
            self.d.query("SELECT job_id, endpoint, http_status, platform_code, outcome, detail FROM query_results"),
            self.d.logtext()[-3000:]))

    def job(self, eid):
        return self.d.query("SELECT state, attempts, outcome, last_error FROM jobs WHERE event_id = ?", eid)

    def assert_no_secret(self):
        """No token, secret or private key in the log or anywhere in the store."""
        self.assertNotIn(BAIDU_TOKEN, self.d.logtext())
        self.assertNotIn(GW_SECRET, self.d.logtext())
        with open(self.d.db_path, "rb") as f:
            raw = f.read()
        wal = self.d.db_path + "-wal"
        if os.path.exists(wal):
            with open(wal, "rb") as f:
                raw += f.read()
        self.assertNotIn(BAIDU_TOKEN.encode(), raw)
        self.assertNotIn(GW_SECRET.encode(), raw)


class BaiduFollowUp(FollowUp):
    def test_confirmed_with_the_token_and_keys_sent_and_no_token_kept(self):
        order = new_order_id()
        tp = "T-" + order[-8:]
        self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=1000)
        eid, _, _ = self.pay(order=order, tp_order=tp)
        self.wait_confirmation(eid, "confirmed")
        req = self.mock.last("baidu.find_order")
        self.assertEqual(req.query["access_token"], BAIDU_TOKEN)
        self.assertEqual(req.query["tpOrderId"], tp)
        self.assertEqual(req.query["pmAppKey"], "MMMpmkey")
        self.assertEqual(self.job(eid), [("done", 1, "confirmed", None)])
        endpoint, status, outcome = self.d.query(
            "SELECT endpoint, http_status, outcome FROM query_results WHERE event_id = ?", eid)[0]
        self.assertTrue(endpoint.endswith("/findByTpOrderId"), endpoint)
        self.assertEqual((status, outcome), (200, "confirmed"))
        self.d.stop()
        self.assert_no_secret()

    def test_amount_mismatch_is_logged_with_ours_and_theirs(self):
        order = new_order_id()
        tp = "T-" + order[-8:]
        self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney="900")  # a string: lenient
        eid, _, _ = self.pay(order=order, tp_order=tp, total=1000)
        self.wait_confirmation(eid, "mismatch")
        self.assertEqual(self.mock.count("baidu.find_order"), 1)   # an answer ends the job
        self.assertIn("event %d (baidu pay_notify, order %s): the platform disagrees: totalMoney: ours 1000, "
                      "theirs 900" % (eid, tp), self.d.logtext())
        st, body, _ = self.d.request("GET", "/metrics")
        self.assertIn(b'payhookd_confirmations_total{result="mismatch"} 1', body)
        self.assertIn(b'payhookd_job_runs_total{kind="baidu.find_order",outcome="mismatch"} 1', body)

    def test_status_mismatch(self):
        order = new_order_id()
        tp = "T-" + order[-8:]
        self.mock.baidu_orders[tp] = dict(orderId=order, status=1, totalMoney=1000)
        eid, _, _ = self.pay(order=order, tp_order=tp)
        self.wait_confirmation(eid, "mismatch")
        self.assertIn("status: ours 2, theirs 1", self.job(eid)[0][3])

    def test_two_503_then_success_is_exactly_three_calls(self):
        order = new_order_id()
        tp = "T-" + order[-8:]
        self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=1000)
        self.mock.respond("baidu.find_order", 503, b"busy", times=2)
        eid, _, _ = self.pay(order=order, tp_order=tp)
        self.wait_confirmation(eid, "confirmed")
        self.assertEqual(self.mock.count("baidu.find_order"), 3)
        self.assertEqual(self.job(eid)[0][:3], ("done", 3, "confirmed"))
        self.assertEqual([r[0] for r in self.d.query(
            "SELECT http_status FROM query_results WHERE event_id = ? ORDER BY id", eid)], [503, 503, 200])

    def test_gives_up_after_max_attempts_unconfirmed(self):
        self.mock.respond("baidu.find_order", 503, b"busy", times=10)
        eid, _, _ = self.pay()
        self.wait_confirmation(eid, "unconfirmed")
        time.sleep(0.3)
        self.assertEqual(self.mock.count("baidu.find_order"), 3)   # max_attempts = 3
        state, attempts, outcome, err = self.job(eid)[0]
        self.assertEqual((state, attempts), ("failed", 3))
        self.assertEqual(err, "HTTP 503")
        self.assertIn("unconfirmed: job", self.d.logtext())

    def test_errors_timeouts_malformed_and_oversize_are_retried(self):
        order = new_order_id()
        tp = "T-" + order[-8:]
        self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=1000)
        self.mock.delay("baidu.find_order", 3)          # over timeout = 2
        self.mock.respond("baidu.find_order", 200, b'{"errno":0,"data":')   # malformed
        eid, _, _ = self.pay(order=order, tp_order=tp)
        self.wait_confirmation(eid, "confirmed")
        details = [r[0] for r in self.d.query(
            "SELECT detail FROM query_results WHERE event_id = ? ORDER BY id", eid)]
        self.assertEqual(len(details), 3, details)
        self.assertIn("timed out", details[0])
        self.assertIn("not JSON", details[1])

    def test_oversize_answer_is_an_error_not_a_truncation(self):
        self.mock.oversize("baidu.find_order", 600 * 1024, times=3)
        eid, _, _ = self.pay()
        self.wait_confirmation(eid, "unconfirmed")
        self.assertIn("answer longer than", self.job(eid)[0][3])

    def test_business_error_and_unknown_order(self):
        # errno != 0 (a token error): no answer about the order -> unconfirmed
        self.mock.respond("baidu.find_order", 200, {"errno": 110, "msg": "invalid token"}, times=3)
        eid, _, _ = self.pay()
        self.wait_confirmation(eid, "unconfirmed")
        self.assertIn("errno 110", self.job(eid)[0][3])
        # success without the order: the platform does not know it -> retried, then mismatch
        self.mock.respond("baidu.find_order", 200, {"errno": 0, "msg": "success", "data": {}}, times=3)
        eid2, _, _ = self.pay()
        self.wait_confirmation(eid2, "mismatch")
        self.assertEqual(self.job(eid2)[0][:2], ("done", 3))

    def test_redelivery_makes_no_second_job(self):
        order = new_order_id()
        tp = "T-" + order[-8:]
        self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=1000)
        body = form_body(baidu_signed(pay_fields(order, tp_order=tp), BAIDU_KEY))
        for _ in range(3):
            self.assertEqual(self.d.post(PAY, body, FORM)[0], 200)
        eid = self.d.query("SELECT id FROM events WHERE order_id = ?", order)[0][0]
        self.wait_confirmation(eid, "confirmed")
        time.sleep(0.3)
        self.assertEqual(self.count_jobs(), 1)
        self.assertEqual(self.mock.count("baidu.find_order"), 1)

    def count_jobs(self):
        return self.d.query("SELECT count(*) FROM jobs")[0][0]

    def test_second_payhookd_on_the_store_refuses_naming_the_first(self):
        other = Daemon(config(self.mock), db_path=self.d.db_path)
        other.start(expect_fail=True)
        rc = other.proc.wait(30 * SLOW)
        other.log.close()
        self.assertNotEqual(rc, 0)
        self.assertIn("is in use by another payhookd (pid %d on " % self.d.proc.pid, other.logtext())


class NoQuery(FollowUp):
    def daemon_config(self, mock):
        return config(mock, baidu_query="no")

    def test_query_no_means_confirmation_none_and_no_call(self):
        eid, _, _ = self.pay()
        time.sleep(0.5)
        self.assertEqual(self.confirmation(eid), "none")
        self.assertEqual(self.mock.count("baidu.find_order"), 0)
        self.assertEqual(self.d.query("SELECT count(*) FROM jobs")[0][0], 0)


class AlipayFollowUp(FollowUp):
    def notify(self, total="88.88", status="TRADE_SUCCESS", out_trade_no=None, trade_no=None):
        fields = test_alipay.notify_fields(app_id=ALIPAY_APP, seller="2088000000000009", total=total,
                                           status=status)
        fields = [(k, out_trade_no if k == "out_trade_no" and out_trade_no else
                   trade_no if k == "trade_no" and trade_no else v) for k, v in fields]
        st, data = self.d.post("/alipay/notify", form_body(test_alipay.signed(fields, NOTIFY_KEY)), FORM)
        self.assertEqual(st, 200, data)
        d = dict(fields)
        eid = self.d.query("SELECT id FROM events WHERE merchant_order_id = ?", d["out_trade_no"])[0][0]
        return eid, d

    def setUp(self):
        self.mock = MockOpenAPI().start()
        self.addCleanup(self.mock.stop)
        self.d = Daemon(config(self.mock).replace(
            "alipay_public_key = %s" % os.path.join(KEYDIR, "alipay_%d.pem" % self.mock.port),
            "alipay_public_key = %s" % NOTIFY_KEY.spki_b64()) + self.extra)
        self.addCleanup(self.d.kill)
        self.d.start()
        # the mock signs answers with its own platform key: accept it as the "next" key
        self.mock_pem = self.mock.write_alipay_public_pem(KEYDIR, "mock_%d.pem" % self.mock.port)

    extra = ""

    def restart_with_next_key(self, pem):
        self.d.stop()
        with open(self.d.conf) as f:
            text = f.read().replace("[alipay.app main]\n",
                                    "[alipay.app main]\nalipay_public_key_next = %s\n" % pem)
        with open(self.d.conf, "w") as f:
            f.write(text)
        self.d.start()

    def test_confirmed_by_a_signed_answer_to_a_signed_request(self):
        self.restart_with_next_key(self.mock_pem)
        self.mock.alipay_app_keys = {ALIPAY_APP: public_pem(APP_KEY)}   # the mock checks our signature
        eid, f = self.notify()
        self.mock.alipay_trades[f["out_trade_no"]] = dict(trade_status="TRADE_SUCCESS", total_amount="88.88",
                                                          trade_no=f["trade_no"])
        self.wait_confirmation(eid, "confirmed")
        req = self.mock.last("alipay")
        self.assertTrue(verify_alipay_request(req, public_pem(APP_KEY)))
        self.assertEqual(req.params["method"], "alipay.trade.query")
        self.assertIn('"out_trade_no":"%s"' % f["out_trade_no"], req.params["biz_content"])

    def test_forged_and_tampered_answers_never_confirm(self):
        self.restart_with_next_key(self.mock_pem)
        for mode in ("forged", "tampered", "unsigned"):
            self.mock.alipay_sign_mode = mode
            eid, f = self.notify()
            self.mock.alipay_trades[f["out_trade_no"]] = dict(
                trade_status="TRADE_SUCCESS", total_amount="88.88", trade_no=f["trade_no"])
            self.wait_confirmation(eid, "unconfirmed")
            err = self.job(eid)[0][3]
            self.assertIn("not trusted", err, mode)

    def test_trade_not_exist_is_retried_then_mismatch(self):
        self.restart_with_next_key(self.mock_pem)
        eid, f = self.notify()
        self.wait_confirmation(eid, "mismatch")
        self.assertEqual(self.job(eid)[0][:2], ("done", 3))
        self.assertEqual(self.d.query("SELECT platform_code FROM query_results WHERE event_id = ? LIMIT 1",
                                      eid)[0][0], "ACQ.TRADE_NOT_EXIST")

    def refund(self, pay, refund_fee, out_biz_no):
        """A refund notification of payment `pay` (a dict of its fields)."""
        fields = test_alipay.notify_fields(app_id=ALIPAY_APP, seller="2088000000000009",
                                           total=pay["total_amount"], extra=[
                                               ("refund_fee", refund_fee), ("out_biz_no", out_biz_no),
                                               ("gmt_refund", "2024-05-02 09:30:00.123")])
        fields = [(k, pay[k] if k in ("out_trade_no", "trade_no") else v) for k, v in fields]
        st, data = self.d.post("/alipay/notify", form_body(test_alipay.signed(fields, NOTIFY_KEY)), FORM)
        self.assertEqual(st, 200, data)
        return self.d.query("SELECT id FROM events WHERE kind = 'refund_notify' AND json_extract(fields, '$.out_biz_no') = ?",
                            out_biz_no)[0][0]

    def test_refunds_are_confirmed_by_the_refund_query_with_their_own_amount(self):
        self.restart_with_next_key(self.mock_pem)
        self.mock.alipay_app_keys = {ALIPAY_APP: public_pem(APP_KEY)}
        eid, pay = self.notify(total="100.00")
        self.mock.alipay_trades[pay["out_trade_no"]] = dict(trade_status="TRADE_SUCCESS", total_amount="100.00",
                                                            trade_no=pay["trade_no"])
        self.wait_confirmation(eid, "confirmed")
        # two partial refunds: refund_fee is the total so far, refund_amount each one's own
        self.mock.alipay_refunds["R-1"] = dict(refund_status="REFUND_SUCCESS", refund_amount="10.00",
                                               out_request_no="R-1")
        self.mock.alipay_refunds["R-2"] = dict(refund_status="REFUND_SUCCESS", refund_amount="20.00",
                                               out_request_no="R-2")
        r1 = self.refund(pay, "10.00", "R-1")
        r2 = self.refund(pay, "30.00", "R-2")
        self.wait_confirmation(r1, "confirmed")
        self.wait_confirmation(r2, "confirmed")
        # the two refund queries may run at once: find R-2's by what it asks
        asked = {}
        for req in self.mock.requests("alipay"):
            if req.params.get("method") == "alipay.trade.fastpay.refund.query":
                biz = json.loads(req.params["biz_content"])
                asked[biz["out_request_no"]] = (req, biz)
        req, biz = asked["R-2"]
        self.assertTrue(verify_alipay_request(req, public_pem(APP_KEY)))
        self.assertEqual(biz, {"out_trade_no": pay["out_trade_no"], "out_request_no": "R-2"})
        self.assertEqual(asked["R-1"][1], {"out_trade_no": pay["out_trade_no"], "out_request_no": "R-1"})
        self.assertEqual(self.d.query("SELECT kind FROM jobs WHERE event_id = ?", r2), [("alipay.refund_query",)])

    def test_a_refund_alipay_does_not_report_done_or_of_another_amount_is_not_confirmed(self):
        self.restart_with_next_key(self.mock_pem)
        eid, pay = self.notify(total="100.00")
        # unknown to the refund query (no refund_status): retried, then mismatch
        r1 = self.refund(pay, "10.00", "R-9")
        self.wait_confirmation(r1, "mismatch")
        self.assertEqual(self.job(r1)[0][:2], ("done", 3))
        self.assertIn("refund_status absent", self.job(r1)[0][3])
        # another amount than the refund's own
        self.mock.alipay_refunds["R-10"] = dict(refund_status="REFUND_SUCCESS", refund_amount="5.00")
        r2 = self.refund(pay, "30.00", "R-10")
        self.wait_confirmation(r2, "mismatch")
        self.assertIn("refund_amount (fen): ours 2000, theirs 500", self.job(r2)[0][3])

    def test_amount_and_status_mismatch(self):
        self.restart_with_next_key(self.mock_pem)
        eid, f = self.notify(total="88.88")
        self.mock.alipay_trades[f["out_trade_no"]] = dict(trade_status="TRADE_SUCCESS", total_amount="8.88",
                                                          trade_no=f["trade_no"])
        self.wait_confirmation(eid, "mismatch")
        self.assertIn("total_amount (fen): ours 8888, theirs 888", self.job(eid)[0][3])
        eid, f = self.notify()
        self.mock.alipay_trades[f["out_trade_no"]] = dict(trade_status="WAIT_BUYER_PAY", total_amount="88.88",
                                                          trade_no=f["trade_no"])
        self.wait_confirmation(eid, "mismatch")
        # TRADE_FINISHED is a later state of TRADE_SUCCESS: confirmed
        eid, f = self.notify()
        self.mock.alipay_trades[f["out_trade_no"]] = dict(trade_status="TRADE_FINISHED", total_amount="88.88",
                                                          trade_no=f["trade_no"])
        self.wait_confirmation(eid, "confirmed")

    def test_real_alipay_signed_vector_confirms_and_its_tampered_twin_does_not(self):
        v = self.mock.serve_vector("alipay", "alipay_response_sandbox_2023_alipay_trade_query")
        self.restart_with_next_key(v.write_public_pem(KEYDIR))
        c = v.content
        eid, f = self.notify(total=c["total_amount"], out_trade_no=c["out_trade_no"], trade_no=c["trade_no"])
        self.wait_confirmation(eid, "confirmed")
        for _ in range(3):
            self.mock.serve_vector("alipay", "alipay_response_sandbox_2023_alipay_trade_query__tampered")
        eid2, _ = self.notify(total=c["total_amount"], out_trade_no=c["out_trade_no"] + "9",
                              trade_no=c["trade_no"])
        self.wait_confirmation(eid2, "unconfirmed")
        self.assertIn("signature", self.job(eid2)[0][3])


class GatewayFollowUp(FollowUp):
    def test_confirmed_by_an_md5_signed_trade_query(self):
        fields = [("out_trade_no", "G-" + new_order_id()), ("trade_no", "GT" + new_order_id()),
                  ("total_amount", "12.34"), ("trade_status", "SUCCESS"), ("pay_time", "2026-12-05 10:00:00"),
                  ("sign_type", "MD5")]
        data = canonical(fields, exclude=("sign", "sign_type"), drop_empty=True, append=b"&key=" + GW_SECRET.encode())
        import hashlib
        fields.append(("sign", hashlib.md5(data).hexdigest()))
        st, body = self.d.post("/gateway/demo/notify", form_body(fields), FORM)
        self.assertEqual((st, body), (200, b"SUCCESS"))
        otn = dict(fields)["out_trade_no"]
        self.mock.gateway_trades[otn] = dict(trade_status="SUCCESS", total_amount=12.34, trade_no="x")
        eid = self.d.query("SELECT id FROM events WHERE merchant_order_id = ?", otn)[0][0]
        self.wait_confirmation(eid, "confirmed")
        req = self.mock.last("gateway.query")
        self.assertTrue(verify_gateway_request(req, GW_SECRET))
        self.assertEqual(req.params["method"], "trade.query")
        self.assertIn('"merchant_no":"M100"', req.params["content"])
        self.d.stop()
        self.assert_no_secret()


class Crash(FollowUp):
    @unittest.skipIf(harness.VALGRIND, "kill -9 of valgrind proves nothing about the store")
    def test_kill9_mid_query_runs_the_job_again_after_restart(self):
        order = new_order_id()
        tp = "T-" + order[-8:]
        self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=1000)
        self.mock.delay("baidu.find_order", 5)
        eid, _, _ = self.pay(order=order, tp_order=tp)
        self.mock.wait_for(1, "baidu.find_order")
        self.assertEqual(self.job(eid)[0][:2], ("running", 1))
        self.d.proc.kill()
        self.d.proc.wait()
        self.d.log.close()
        self.d.start()
        self.wait_confirmation(eid, "confirmed")
        self.assertEqual(self.d.query("SELECT count(*) FROM jobs")[0][0], 1)
        self.assertEqual(self.job(eid)[0][:3], ("done", 2, "confirmed"))   # the cut attempt counts

    def test_sigterm_with_calls_running_loses_no_job(self):
        tps = []
        for _ in range(6):
            order = new_order_id()
            tp = "T-" + order[-8:]
            self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=1000)
            tps.append(self.pay(order=order, tp_order=tp)[0])
        self.mock.delay("baidu.find_order", 1, times=6)
        self.mock.wait_for(1, "baidu.find_order")
        self.assertEqual(self.d.stop(), 0, self.d.logtext())
        states = dict(self.d.query("SELECT state, count(*) FROM jobs GROUP BY state"))
        self.assertNotIn("running", states)    # finished or released, none left claimed
        self.d.start()
        for eid in tps:
            self.wait_confirmation(eid, "confirmed")
        self.assertEqual(self.d.query("SELECT count(*) FROM jobs")[0][0], 6)


class Caps(FollowUp):
    openapi = "rate = 5\nworkers = 4\n"

    def test_rate_cap_per_platform(self):
        eids = []
        for _ in range(15):
            order = new_order_id()
            tp = "T-" + order[-8:]
            self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=1000)
            eids.append(self.pay(order=order, tp_order=tp)[0])
        for eid in eids:
            self.wait_confirmation(eid, "confirmed", timeout=30)
        self.assertLessEqual(self.mock.max_rate("baidu.find_order", window=1.0), 6)   # 5/s, one token of burst

    def test_sighup_changes_workers_without_losing_a_job(self):
        eids = []
        self.mock.delay("baidu.find_order", 0.3, times=8)
        for i in range(8):
            order = new_order_id()
            tp = "T-" + order[-8:]
            self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=1000)
            eids.append(self.pay(order=order, tp_order=tp)[0])
            if i == 3:
                with open(self.d.conf) as f:
                    text = f.read().replace("workers = 4", "workers = 1").replace("rate = 5", "rate = 0")
                with open(self.d.conf, "w") as f:
                    f.write(text)
                self.d.send_signal(signal.SIGHUP)
        for eid in eids:
            self.wait_confirmation(eid, "confirmed", timeout=30)
        self.assertEqual(self.d.query("SELECT count(*), sum(attempts) FROM jobs")[0], (8, 8))


class ConcurrencyCap(FollowUp):
    """Jobs are claimed ahead of the workers; the cap holds at the calls."""
    openapi = "workers = 6\nconcurrency = 2\n"

    def paid_orders(self, n):
        """n paid events whose orders the mock knows."""
        eids = []
        for _ in range(n):
            order = new_order_id()
            tp = "T-" + order[-8:]
            self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=1000)
            eids.append(self.pay(order=order, tp_order=tp)[0])
        return eids

    def test_claimed_ahead_the_calls_keep_the_platforms_concurrency(self):
        self.mock.delay("baidu.find_order", 0.3, times=10)
        eids = self.paid_orders(10)
        for eid in eids:
            self.wait_confirmation(eid, "confirmed", timeout=30)
        self.assertEqual(self.mock.max_in_flight("baidu.find_order"), 2)
        self.assertEqual(self.mock.count("baidu.find_order"), 10)
        self.assertEqual(self.d.query("SELECT count(*), sum(attempts) FROM jobs")[0], (10, 10))

    def test_sigterm_returns_the_jobs_claimed_ahead_unspent(self):
        self.mock.delay("baidu.find_order", 1.0, times=6)
        eids = self.paid_orders(6)
        self.mock.wait_for(2, "baidu.find_order")
        self.assertEqual(self.d.stop(), 0, self.d.logtext())
        called = self.mock.count("baidu.find_order")
        rows = self.d.query("SELECT state, attempts FROM jobs")
        self.assertNotIn("running", [r[0] for r in rows])
        # an attempt counted for each call made, none for a job only claimed
        self.assertEqual(sum(r[1] for r in rows), called)
        self.d.start()
        for eid in eids:
            self.wait_confirmation(eid, "confirmed", timeout=30)


class SlowPlatform(FollowUp):
    openapi = "workers = 2\n"

    def test_a_slow_platform_leaves_intake_fast(self):
        self.mock.delay("baidu.find_order", 1.5, times=50)
        median, took = harness.median_seconds(self.pay)
        # intake answers in milliseconds while every query takes 1.5 s
        self.assertLess(median, 0.5 * SLOW, took)
        self.assertGreaterEqual(self.mock.count("baidu.find_order"), 1)


if __name__ == "__main__":
    unittest.main()
