"""End to end: the Baidu TP push through the real daemon, its answers and
its rows (issue: core intake, durable store, TP push)."""
import base64
import json
import os
import signal
import threading
import time
import unittest

import harness
from harness import DaemonTest, tp_envelope, tp_encrypt, tp_signature

PATH = "/baidu/tp/events"

PAYMENT_EVENT = {"appId": 14508451, "tpAppId": 10086, "eventTime": "2019-01-14 12:45:10",
                 "event": "APP_PAYMENT_CREATE_ACCOUNT_PASS", "reason": ""}


def event(n, name="APP_PAYMENT_CREATE_ACCOUNT_PASS"):
    e = dict(PAYMENT_EVENT)
    e["appId"] = 14508451 + n
    e["event"] = name
    return e


def signed_envelope(encrypt, token=None, timestamp="1700000000", nonce="12345"):
    token = token or harness.TP_TOKEN
    return json.dumps({"Nonce": nonce, "TimeStamp": timestamp, "Encrypt": encrypt,
                       "MsgSignature": tp_signature(token, timestamp, nonce, encrypt)}).encode()


class TpPush(DaemonTest):
    extra_config = harness.tp_config()

    def assert_rejected(self, status, reason, body, content_type="application/json"):
        st, data = self.d.post(PATH, body, content_type)
        self.assertEqual(st, status, data)
        self.assertNotEqual(data, b"success")
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = ?", 1, reason)
        self.assertEqual(self.count("events"), 0)
        row = self.d.query("SELECT route, remote_addr, status FROM rejections WHERE reason = ?", reason)[0]
        self.assertEqual(row, (PATH if status != 404 else row[0], "127.0.0.1", status))

    def test_valid_push_is_stored_and_answered_success(self):
        body = tp_envelope(PAYMENT_EVENT)
        st, data = self.d.post(PATH, body)
        self.assertEqual((st, data), (200, b"success"))
        rows = self.d.query("SELECT provider, kind, app, status, verified, deliveries, answer, fields, body "
                            "FROM events")
        self.assertEqual(len(rows), 1)
        provider, kind, app, status, verified, deliveries, answer, fields, raw = rows[0]
        self.assertEqual((provider, kind, app, status, verified, deliveries, answer),
                         ("baidu.tp", "tp_push", "14508451", "APP_PAYMENT_CREATE_ACCOUNT_PASS", 1, 1, "success"))
        self.assertEqual(json.loads(fields), PAYMENT_EVENT)
        self.assertEqual(raw, body)
        view = self.d.query("SELECT app_id, tp_app_id, event, event_time FROM tp_events")
        self.assertEqual(view, [(14508451, 10086, "APP_PAYMENT_CREATE_ACCOUNT_PASS", "2019-01-14 12:45:10")])

    def test_same_push_twice_is_one_row_with_two_deliveries(self):
        body = tp_envelope(PAYMENT_EVENT)
        self.assertEqual(self.d.post(PATH, body), (200, b"success"))
        self.assertEqual(self.d.post(PATH, body), (200, b"success"))
        # Re-encrypted (new random prefix, nonce, timestamp): still the same event.
        self.assertEqual(self.d.post(PATH, tp_envelope(PAYMENT_EVENT)), (200, b"success"))
        self.assertEqual(self.d.query("SELECT count(*), max(deliveries) FROM events"), [(1, 3)])

    def test_wrong_msg_signature(self):
        env = json.loads(tp_envelope(PAYMENT_EVENT))
        env["MsgSignature"] = tp_signature("not-the-token", env["TimeStamp"], env["Nonce"], env["Encrypt"])
        self.assert_rejected(401, "bad_signature", json.dumps(env).encode())

    def test_tampered_nonce_fails_the_signature(self):
        env = json.loads(tp_envelope(PAYMENT_EVENT))
        env["Nonce"] = env["Nonce"] + "1"
        self.assert_rejected(401, "bad_signature", json.dumps(env).encode())

    def test_wrong_client_id(self):
        enc = tp_encrypt(harness.TP_AES_KEY, json.dumps(PAYMENT_EVENT).encode(), "someone-else")
        self.assert_rejected(401, "wrong_client_id", signed_envelope(enc))

    def test_truncated_ciphertext(self):
        enc = tp_encrypt(harness.TP_AES_KEY, json.dumps(PAYMENT_EVENT).encode(), harness.TP_CLIENT_ID)
        raw = base64.b64decode(enc)[:-5]  # not a whole number of AES blocks
        self.assert_rejected(400, "bad_ciphertext", signed_envelope(base64.b64encode(raw).decode()))

    def test_non_base64_ciphertext(self):
        self.assert_rejected(400, "bad_ciphertext", signed_envelope("not*base64!"))

    def test_declared_length_beyond_plaintext(self):
        enc = tp_encrypt(harness.TP_AES_KEY, b'{"event":"X"}', harness.TP_CLIENT_ID, length=4000)
        self.assert_rejected(400, "bad_ciphertext", signed_envelope(enc))

    def test_wrong_method(self):
        st, data, headers = self.d.request("GET", PATH)
        self.assertEqual(st, 405)
        self.assertEqual(headers.get("Allow"), "POST")
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = 'bad_method' AND status = 405", 1)
        self.assertEqual(self.count("events"), 0)

    def test_oversized_body(self):
        body = b'{"Encrypt":"' + b"A" * 70000 + b'"}'
        st, data = self.d.post(PATH, body)
        self.assertEqual(st, 413)
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = 'body_too_large'", 1)
        self.assertEqual(self.count("events"), 0)

    def test_malformed_json(self):
        self.assert_rejected(400, "bad_json", b'{"Nonce": "1", "Encrypt": ')

    def test_duplicate_envelope_key_is_refused(self):
        env = tp_envelope(PAYMENT_EVENT).decode()
        body = env[:-1] + ', "Encrypt": "AAAA"}'
        self.assert_rejected(400, "bad_json", body.encode())

    def test_missing_field(self):
        env = json.loads(tp_envelope(PAYMENT_EVENT))
        del env["Nonce"]
        self.assert_rejected(400, "missing_field", json.dumps(env).encode())

    def test_decrypted_message_not_json(self):
        enc = tp_encrypt(harness.TP_AES_KEY, b"<xml>nope</xml>", harness.TP_CLIENT_ID)
        self.assert_rejected(400, "bad_message", signed_envelope(enc))

    def test_plaintext_refused_by_default(self):
        self.assert_rejected(401, "plaintext_refused", json.dumps(PAYMENT_EVENT).encode())

    def test_form_content_type_refused(self):
        self.assert_rejected(415, "unsupported_type", tp_envelope(PAYMENT_EVENT),
                             "application/x-www-form-urlencoded")

    def test_unknown_event_is_stored(self):
        msg = {"appId": 1, "tpAppId": 2, "event": "SOMETHING_NEW", "eventTime": "2026-01-01 00:00:00"}
        self.assertEqual(self.d.post(PATH, tp_envelope(msg)), (200, b"success"))
        self.assertEqual(self.d.query("SELECT status, verified FROM events"), [("SOMETHING_NEW", 1)])

    def test_ticket_is_kept_as_latest(self):
        t1 = {"Ticket": "ticket-one", "MsgType": "ticket", "Event": "push", "CreateTime": 1700000000,
              "FromUserName": "tp"}
        t2 = dict(t1, Ticket="ticket-two", CreateTime=1700000600)
        self.assertEqual(self.d.post(PATH, tp_envelope(t2)), (200, b"success"))
        # An older ticket arriving late does not replace the newer one.
        self.assertEqual(self.d.post(PATH, tp_envelope(t1)), (200, b"success"))
        self.assertEqual(self.d.query("SELECT ticket, create_time FROM tp_ticket"),
                         [("ticket-two", 1700000600)])
        self.assertEqual(self.d.query("SELECT status FROM events ORDER BY id"), [("ticket",), ("ticket",)])

    def test_unknown_path_is_404_and_recorded(self):
        st, _ = self.d.post("/nowhere", b"{}")
        self.assertEqual(st, 404)
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = 'unknown_path'", 1)

    def test_health_ready_metrics(self):
        self.assertEqual(self.d.request("GET", "/healthz")[0], 200)
        self.assertEqual(self.d.request("GET", "/readyz")[0], 200)
        self.d.post(PATH, tp_envelope(PAYMENT_EVENT))
        self.d.post(PATH, b"{bad")
        st, text, headers = self.d.request("GET", "/metrics")
        self.assertEqual(st, 200)
        text = text.decode()
        self.assertIn('payhookd_requests_total{route="%s",status="200"} 1' % PATH, text)
        self.assertIn('payhookd_requests_total{route="%s",status="400"} 1' % PATH, text)
        self.assertIn('payhookd_rejections_total{reason="bad_json"} 1', text)
        self.assertIn("payhookd_commit_batch_rows_bucket", text)
        self.assertIn("payhookd_commit_duration_seconds_count", text)

    def test_x_forwarded_for_from_trusted_proxy(self):
        # 127.0.0.1 is a trusted proxy by default: the client is the rightmost
        # untrusted address; what the client wrote further left is ignored.
        st, _ = self.d.post(PATH, b"{bad", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
        self.assertEqual(st, 400)
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE remote_addr = '203.0.113.7'", 1)


NEXT_TOKEN = "e2e-token-next-" + os.urandom(4).hex()
NEXT_AES_KEY = harness.random_aes_key43()


class TpKeySwitch(DaemonTest):
    """During a switch pushes sealed with token_next and encoding_aes_key_next
    are accepted beside the current pair, each next value defaulting to the
    current one; nothing else is."""
    extra_config = harness.tp_config() + "token_next = %s\nencoding_aes_key_next = %s\n" % (
        NEXT_TOKEN, NEXT_AES_KEY)

    def test_current_and_next_pair_accepted(self):
        for n, (token, key) in enumerate(((None, None), (NEXT_TOKEN, NEXT_AES_KEY))):
            self.assertEqual(self.d.post(PATH, tp_envelope(event(n), token=token, aes_key=key)),
                             (200, b"success"))
        self.assertEqual(self.count("events"), 2)

    def test_mixed_pairs_follow_the_defaults(self):
        # Both next values are set, so the next pair is (token_next,
        # encoding_aes_key_next): the next token with the current key is
        # neither pair, and is refused without storing.
        st, data = self.d.post(PATH, tp_envelope(event(5), token=NEXT_TOKEN))
        self.assertEqual((st, data), (400, b"bad ciphertext"))
        st, _ = self.d.post(PATH, tp_envelope(event(6), token="another-token", aes_key=NEXT_AES_KEY))
        self.assertEqual(st, 401)
        self.assertEqual(self.count("events"), 0)
        # rejections are written on their own queue, after the answer
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = 'bad_signature'", 1)
        detail = self.d.query("SELECT detail FROM rejections WHERE reason = 'bad_signature'")[0][0]
        self.assertEqual(detail, "MsgSignature does not match the token or token_next")
        self.assertNotIn(NEXT_TOKEN, self.d.logtext())


class TpKeyOnlySwitch(DaemonTest):
    """Only the EncodingAESKey changes: the token signs both, and a push the
    current key cannot open is opened with the next one."""
    extra_config = harness.tp_config() + "encoding_aes_key_next = %s\n" % NEXT_AES_KEY

    def test_either_key_under_the_one_token(self):
        for n, key in enumerate((None, NEXT_AES_KEY)):
            self.assertEqual(self.d.post(PATH, tp_envelope(event(n), aes_key=key)), (200, b"success"))
        self.assertEqual(self.d.post(PATH, tp_envelope(event(9), aes_key=harness.random_aes_key43())),
                         (400, b"bad ciphertext"))
        self.assertEqual(self.count("events"), 2)

    def test_an_empty_token_next_is_refused(self):
        self.d.stop()
        self.d.write_config(harness.tp_config() + "token_next =\n")
        self.d.start(expect_fail=True)
        self.assertNotEqual(self.d.proc.wait(60), 0)
        self.d.log.close()
        self.assertIn("token_next is empty", self.d.logtext())


class TpPlaintextAllowed(DaemonTest):
    extra_config = harness.tp_config(allow_plaintext="yes")

    def test_plain_json_stored_unverified(self):
        body = json.dumps(PAYMENT_EVENT).encode()
        self.assertEqual(self.d.post(PATH, body), (200, b"success"))
        self.assertEqual(self.d.query("SELECT verified, status, app FROM events"),
                         [(0, "APP_PAYMENT_CREATE_ACCOUNT_PASS", "14508451")])
        # The authenticated push of the same event is a different row: an
        # unauthenticated body can never stand in for (or block) a verified one.
        self.assertEqual(self.d.post(PATH, tp_envelope(PAYMENT_EVENT)), (200, b"success"))
        self.assertEqual(self.d.query("SELECT verified FROM events ORDER BY id"), [(0,), (1,)])

    def test_plain_ticket_does_not_become_the_ticket(self):
        body = json.dumps({"Ticket": "forged", "MsgType": "ticket", "CreateTime": 1}).encode()
        self.assertEqual(self.d.post(PATH, body), (200, b"success"))
        self.assertEqual(self.d.query("SELECT count(*) FROM tp_ticket"), [(0,)])


class TpRealVectors(unittest.TestCase):
    """Envelopes made by Tencent's message crypto (the same scheme as Baidu's TP push)."""

    def run_vector(self, name):
        v = harness.load_vector(name)
        inp = v["inputs"]
        conf = ("[baidu.tp]\npath = %s\nclient_id = %s\ntoken = %s\nencoding_aes_key = %s\n" %
                (PATH, v["expected_receiver_id"], inp["token"], inp["encoding_aes_key"]))
        d = harness.Daemon(conf).start()
        try:
            st, data = d.post(PATH, inp["baidu_style_envelope"].encode())
            rows = d.query("SELECT fields, verified FROM events")
        finally:
            self.assertEqual(d.stop(), 0)
        return v, st, data, rows

    def test_miniprogram_json_push(self):
        v, st, data, rows = self.run_vector("tp_fallback_wechat_miniprogram_json_push_20200709.json")
        self.assertEqual((st, data), (200, b"success"))
        self.assertEqual(rows, [(v["expected_plaintext"], 1)])

    def test_miniprogram_push_with_changed_nonce_fails(self):
        _, st, _, rows = self.run_vector("tp_fallback_wechat_miniprogram_json_push_20200709__nonce_changed.json")
        self.assertEqual((st, rows), (401, []))

    def test_official_sample_decrypts_but_is_xml(self):
        # Signature and decryption succeed; the message is XML, not the JSON
        # the Baidu TP sends, so it is refused (400) rather than half-stored.
        _, st, data, rows = self.run_vector("tp_fallback_wechat_official_wxbizmsgcrypt_sample.json")
        self.assertEqual((st, rows), (400, []))

    def test_official_sample_with_changed_timestamp_fails(self):
        _, st, _, rows = self.run_vector("tp_fallback_wechat_official_wxbizmsgcrypt_sample__timestamp_changed.json")
        self.assertEqual((st, rows), (401, []))


class Durability(unittest.TestCase):

    def test_restart_keeps_rows(self):
        d = harness.Daemon(harness.tp_config()).start()
        for i in range(5):
            self.assertEqual(d.post(PATH, tp_envelope(event(i))), (200, b"success"))
        self.assertEqual(d.stop(), 0)
        d.start()
        try:
            self.assertEqual(d.query("SELECT count(*) FROM events"), [(5,)])
            self.assertEqual(d.post(PATH, tp_envelope(event(0))), (200, b"success"))
            self.assertEqual(d.query("SELECT count(*), sum(deliveries) FROM events"), [(5, 6)])
        finally:
            self.assertEqual(d.stop(), 0)

    def test_sigterm_with_requests_in_flight_keeps_every_acknowledged_push(self):
        d = harness.Daemon(harness.tp_config()).start()
        acked, lock, stop = [], threading.Lock(), threading.Event()
        bodies = {}

        def sender(t):
            i = 0
            while not stop.is_set():
                msg = event(t * 100000 + i)
                i += 1
                try:
                    st, data = d.post(PATH, tp_envelope(msg))
                except OSError:
                    continue  # refused or cut off while stopping: not acknowledged
                if st == 200 and data == b"success":
                    with lock:
                        acked.append(msg["appId"])

        threads = [threading.Thread(target=sender, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        time.sleep(3 if harness.VALGRIND else 1.5)
        d.send_signal(signal.SIGTERM)
        rc = d.proc.wait(120)
        stop.set()
        for t in threads:
            t.join()
        d.log.close()
        self.assertEqual(rc, 0, d.logtext())
        self.assertGreater(len(acked), 20)
        stored = {int(r[0]) for r in d.query("SELECT app FROM events")}
        missing = set(acked) - stored
        self.assertEqual(missing, set(), "acknowledged but not stored")
        self.assertEqual(d.query("PRAGMA integrity_check"), [("ok",)])


if __name__ == "__main__":
    unittest.main()
