"""The mock OpenAPI server (mock_openapi.py) on its own, without the daemon:
what the end-to-end tests of follow-up queries rely on it for. The Alipay
signatures are checked here with `cryptography` directly over the text cut
out of the body, not only with the mock's own helper."""
import base64
import dataclasses
import http.client
import json
import threading
import time
import unittest

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from harness import RsaKey, form_body
from mock_openapi import (Answer, MockOpenAPI, extract_signed_text, gateway_md5, sign_alipay_request,
                          verify_alipay_request, verify_alipay_response, verify_gateway_request)

FIND = "/rest/2.0/smartapp/pay/paymentservice/findByTpOrderId"
TP_FIND = "/rest/2.0/smartapp/pay/paymentservice/tp/findByTpOrderId"
FORM = {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}
APP_ID = "2021000000000001"
APP_KEY = RsaKey(2048)


def independent_verify(public_pem, data, sign_b64):
    key = serialization.load_pem_public_key(public_pem.encode())
    try:
        key.verify(base64.b64decode(sign_b64), data, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


def alipay_form(biz, method="alipay.trade.query", key=APP_KEY):
    fields = [("app_id", APP_ID), ("method", method), ("format", "JSON"), ("charset", "utf-8"),
              ("sign_type", "RSA2"), ("timestamp", "2026-12-05 20:00:00"), ("version", "1.0"),
              ("biz_content", json.dumps(biz, separators=(",", ":")))]
    return form_body(sign_alipay_request(fields, key))


class MockTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mock = MockOpenAPI().start()

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def setUp(self):
        self.mock.reset()

    def tearDown(self):
        self.assertEqual(self.mock.errors, [])

    def call(self, method, target, body=None, headers=None, timeout=5):
        c = http.client.HTTPConnection("127.0.0.1", self.mock.port, timeout=timeout)
        try:
            c.request(method, target, body, headers or {})
            r = c.getresponse()
            return r.status, r, r.read()
        finally:
            c.close()

    def alipay(self, biz, **kw):
        return self.call("POST", "/gateway.do", alipay_form(biz, **kw), FORM)

    def find(self, tp, token="app-token", path=FIND):
        return self.call("GET", "%s?access_token=%s&tpOrderId=%s&pmAppKey=pk" % (path, token, tp))


class Alipay(MockTest):
    def test_signed_answer_verifies_over_the_raw_text(self):
        self.mock.alipay_trades["A1"] = dict(trade_no="2026120522001", trade_status="TRADE_SUCCESS",
                                             total_amount="12.34", buyer_logon_id="a/b@x")
        status, r, body = self.alipay({"out_trade_no": "A1"})
        self.assertEqual(status, 200)
        text = extract_signed_text(body, "alipay_trade_query_response")
        self.assertTrue(text.startswith(b'{"code":"10000","msg":"Success","out_trade_no":"A1"'), text)
        self.assertIn(b'"a\\/b@x"', text)  # '/' escaped as the real gateway does
        sign = json.loads(body)["sign"]
        self.assertTrue(independent_verify(self.mock.alipay_public_pem, text, sign))
        self.assertFalse(independent_verify(self.mock.alipay_public_pem,
                                            text.replace(b"\\/", b"/"), sign))
        self.assertTrue(verify_alipay_response(body, "alipay.trade.query", self.mock.alipay_public_pem))
        obj = json.loads(body)["alipay_trade_query_response"]
        self.assertEqual((obj["trade_status"], obj["total_amount"]), ("TRADE_SUCCESS", "12.34"))

    def test_unknown_trade_is_a_signed_40004(self):
        status, _, body = self.alipay({"out_trade_no": "nope"})
        obj = json.loads(body)["alipay_trade_query_response"]
        self.assertEqual((obj["code"], obj["sub_code"], obj["sub_msg"]),
                         ("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在"))
        text = extract_signed_text(body, "alipay_trade_query_response")
        self.assertIn("交易不存在".encode(), text)  # UTF-8, not \u escapes
        self.assertTrue(independent_verify(self.mock.alipay_public_pem, text, json.loads(body)["sign"]))

    def test_tampered_forged_and_unsigned_do_not_verify(self):
        obj = self.mock.trade_query_object("none")
        pem = self.mock.alipay_public_pem
        m = "alipay.trade.query"
        self.assertTrue(verify_alipay_response(self.mock.signed_alipay_response(m, obj), m, pem))
        self.assertFalse(verify_alipay_response(self.mock.forged_alipay_response(m, obj), m, pem))
        self.assertFalse(verify_alipay_response(self.mock.alipay_response(m, obj, "unsigned"), m, pem))
        t = self.mock.tampered_alipay_response(m, dict(obj, total_amount="1.00"))
        self.assertIn(b'"total_amount":"99999.99"', t)
        self.assertFalse(verify_alipay_response(t, m, pem))

        # The default handler in tampered mode.
        self.mock.alipay_trades["A2"] = dict(trade_status="TRADE_SUCCESS", total_amount="1.00")
        self.mock.alipay_sign_mode = "tampered"
        try:
            _, _, body = self.alipay({"out_trade_no": "A2"})
        finally:
            self.mock.alipay_sign_mode = "valid"
        self.assertEqual(json.loads(body)["alipay_trade_query_response"]["total_amount"], "99999.99")
        self.assertFalse(verify_alipay_response(body, m, pem))

    def test_request_signature_recorded_and_checked(self):
        self.alipay({"out_trade_no": "A3"})
        req = self.mock.last("alipay.trade.query")
        self.assertEqual((req.method, req.route, req.method_key), ("POST", "alipay", "alipay.trade.query"))
        self.assertEqual(json.loads(req.form["biz_content"]), {"out_trade_no": "A3"})
        self.assertTrue(verify_alipay_request(req, APP_KEY.public_pem()))
        self.assertFalse(verify_alipay_request(req, RsaKey(1024).public_pem()))
        changed = dataclasses.replace(req, body=req.body.replace(b"version=1.0", b"version=1.1"))
        self.assertFalse(verify_alipay_request(changed, APP_KEY.public_pem()))
        twice = dataclasses.replace(req, body=req.body + b"&version=1.0")
        self.assertFalse(verify_alipay_request(twice, APP_KEY.public_pem()))

        # With the app's key known, a badly signed request is refused as Alipay does.
        self.mock.alipay_app_keys = {APP_ID: APP_KEY.public_pem()}
        try:
            _, _, good = self.alipay({"out_trade_no": "A3"})
            _, _, bad = self.alipay({"out_trade_no": "A3"}, key=RsaKey(1024))
        finally:
            self.mock.alipay_app_keys = {}
        self.assertEqual(json.loads(good)["alipay_trade_query_response"]["sub_code"], "ACQ.TRADE_NOT_EXIST")
        self.assertEqual(json.loads(bad)["alipay_trade_query_response"]["sub_code"], "isv.invalid-signature")
        self.assertNotIn(b'"sign"', bad)

    def test_vector_served_byte_for_byte(self):
        v = self.mock.serve_vector("alipay", "alipay_response_sandbox_2023_alipay_trade_query.json")
        status, r, body = self.alipay({"out_trade_no": v.content["out_trade_no"]})
        self.assertEqual(status, 200)
        self.assertEqual(body, v.raw)
        self.assertEqual(self.mock.last().answer, "scripted")
        self.assertTrue(verify_alipay_response(body, v.response_key, v.public_key_pem))
        self.assertFalse(verify_alipay_response(body, v.response_key, self.mock.alipay_public_pem))
        t = self.mock.serve_vector("alipay", "alipay_response_sandbox_2023_alipay_trade_query__tampered")
        _, _, body = self.alipay({"out_trade_no": "x"})
        self.assertEqual(body, t.raw)
        self.assertFalse(verify_alipay_response(body, t.response_key, t.public_key_pem))
        # Queue empty again: the default handler answers.
        _, _, body = self.alipay({"out_trade_no": "x"})
        self.assertIn(b"ACQ.TRADE_NOT_EXIST", body)


class Baidu(MockTest):
    def test_default_answers_from_the_table(self):
        self.mock.baidu_orders["T1"] = dict(orderId="8001", status=2, totalMoney=1234, payMoney=1234)
        _, _, body = self.find("T1")
        self.assertEqual(json.loads(body), {"errno": 0, "msg": "success", "data": {
            "tpOrderId": "T1", "orderId": "8001", "status": 2, "totalMoney": 1234, "payMoney": 1234}})
        _, _, body = self.find("T1", path=TP_FIND)
        self.assertEqual(json.loads(body)["data"]["orderId"], "8001")
        _, _, body = self.find("T9")
        self.assertEqual(json.loads(body)["errno"], 50003)
        reqs = self.mock.requests("baidu.find_order")
        self.assertEqual([r.path for r in reqs], [FIND, TP_FIND, FIND])
        self.assertEqual(reqs[0].query, {"access_token": "app-token", "tpOrderId": "T1", "pmAppKey": "pk"})

    def test_tokens_checked_when_a_set(self):
        self.mock.baidu_tokens = {"good"}
        try:
            _, _, bad = self.find("T1", token="stale")
        finally:
            self.mock.baidu_tokens = None
        self.assertEqual(json.loads(bad)["error_code"], 110)

    def test_refresh_token_is_single_use(self):
        tp = self.mock.baidu_tp_token
        # the TP's token is required
        _, _, body = self.call("GET", "/rest/2.0/oauth/token?access_token=wrong&code=c1"
                                      "&grant_type=app_to_tp_authorization_code")
        self.assertEqual(json.loads(body)["error_code"], 110)
        _, _, body = self.call("GET", "/rest/2.0/oauth/token?access_token=%s&code=c1"
                                      "&grant_type=app_to_tp_authorization_code" % tp)
        first = json.loads(body)
        refresh = ("/rest/2.0/oauth/token?access_token=%s&grant_type=app_to_tp_refresh_token"
                   "&refresh_token=" % tp)
        _, _, body = self.call("GET", refresh + first["refresh_token"])
        self.assertNotEqual(json.loads(body)["access_token"], first["access_token"])
        _, _, body = self.call("GET", refresh + first["refresh_token"])
        self.assertEqual(json.loads(body)["error"], "invalid_grant")
        _, _, body = self.call("GET", "/public/2.0/smartapp/auth/tp/token?client_id=k&ticket=t1")
        self.assertEqual(json.loads(body)["data"]["access_token"], self.mock.baidu_tp_token)
        self.assertEqual(self.mock.count("baidu.app_token"), 4)

    def test_unknown_path(self):
        status, _, body = self.call("GET", "/rest/2.0/nothing")
        self.assertEqual((status, json.loads(body)["error_code"]), (404, 3))
        self.assertIsNone(self.mock.last().route)


class Gateway(MockTest):
    def test_query_and_md5(self):
        self.mock.gateway_trades["G1"] = dict(trade_status="SUCCESS", total_amount="0.01", trade_no="P1")
        fields = {"app_id": "gw", "method": "trade.query", "sign_type": "MD5", "version": "1.0",
                  "content": json.dumps({"merchant_no": "M1", "out_trade_no": "G1"})}
        fields["sign"] = gateway_md5(fields, "s3cret")
        _, _, body = self.call("POST", "/gateway/query", form_body(list(fields.items())), FORM)
        self.assertEqual(json.loads(body), {"out_trade_no": "G1", "trade_status": "SUCCESS",
                                            "total_amount": "0.01", "trade_no": "P1"})
        req = self.mock.last("gateway.query")
        self.assertTrue(verify_gateway_request(req, "s3cret"))
        self.assertFalse(verify_gateway_request(req, "other"))
        _, _, body = self.call("POST", "/gateway/query", b'{"out_trade_no":"G2"}',
                               {"Content-Type": "application/json"})
        self.assertEqual(json.loads(body)["code"], "12002")
        self.assertEqual(self.mock.last().json, {"out_trade_no": "G2"})


class Scripts(MockTest):
    def test_scripted_503s_then_a_delay_then_the_default_in_order(self):
        self.mock.baidu_orders["T1"] = dict(orderId="1", status=2, totalMoney=1)
        self.mock.respond("baidu.find_order", 503, b"busy", times=2)
        self.mock.delay("baidu.find_order", 0.3)
        self.assertEqual(self.mock.pending("baidu.find_order"), 3)
        got = []
        for _ in range(4):
            t = time.monotonic()
            status, _, body = self.find("T1")
            got.append((status, body[:4], time.monotonic() - t >= 0.3))
        self.assertEqual(got, [(503, b"busy", False), (503, b"busy", False),
                               (200, b'{"er', True), (200, b'{"er', False)])
        self.assertEqual([r.answer for r in self.mock.requests()],
                         ["scripted", "scripted", "scripted:default", "default"])

    def test_dropped_connections(self):
        self.mock.close("gateway.query")
        self.mock.close("gateway.query", reset=True)
        self.mock.script("gateway.query", Answer(body=b"0123456789", partial=True))
        for _ in range(2):
            with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError)):
                self.call("GET", "/gateway/query")
        with self.assertRaises(http.client.IncompleteRead):
            self.call("GET", "/gateway/query")
        self.assertEqual([r.answer for r in self.mock.wait_for(3, answered=True)],
                         ["close", "reset", "scripted"])

    def test_oversize(self):
        self.mock.oversize("baidu.find_order", 1 << 20)
        self.mock.oversize("baidu.find_order", 100000, chunked=True)
        status, r, body = self.find("T1")
        self.assertEqual((status, len(body), r.getheader("Content-Length")), (200, 1 << 20, str(1 << 20)))
        json.loads(body)
        status, r, body = self.find("T1")
        self.assertEqual((len(body), r.getheader("Transfer-Encoding")), (100000, "chunked"))

    def test_counts_per_second(self):
        for _ in range(3):
            self.find("T1")
        time.sleep(0.6)
        for _ in range(2):
            self.call("GET", "/gateway/query")
        self.assertEqual(self.mock.count(), 5)
        self.assertEqual(self.mock.count("gateway.query"), 2)
        self.assertEqual(self.mock.per_second(bucket=0.5)[:2], [3, 2])
        self.assertEqual(self.mock.per_second(), [5])
        self.assertEqual(self.mock.max_rate(window=0.5), 3)
        self.assertEqual(self.mock.max_rate("gateway.query", window=0.5), 2)

    def test_threaded(self):
        self.mock.delay("gateway.query", 0.5, times=3)
        t = time.monotonic()
        threads = [threading.Thread(target=self.call, args=("GET", "/gateway/query")) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertLess(time.monotonic() - t, 1.4)
        self.assertEqual(self.mock.max_in_flight("gateway.query"), 3)
        self.assertEqual(self.mock.count(), 3)

    def test_stop_cuts_a_waiting_answer(self):
        m = MockOpenAPI(key_bits=1024).start()
        m.delay("gateway.query", 30)
        errors = []

        def call():
            try:
                c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
                c.request("GET", "/gateway/query")
                c.getresponse().read()
            except Exception as e:
                errors.append(e)
        th = threading.Thread(target=call)
        th.start()
        m.wait_for(1)
        t = time.monotonic()
        m.stop()
        th.join(5)
        self.assertLess(time.monotonic() - t, 2)
        self.assertEqual(len(errors), 1)


if __name__ == "__main__":
    unittest.main()
