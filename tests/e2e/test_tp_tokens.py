"""End to end: the TP's own token (issue 10, item 1). A verified ticket push
that becomes the latest ticket, while the stored TP token is missing or has
less than a day left, brings a job in its transaction that asks the mock
OpenAPI on 127.0.0.1 for the token with the configured client id and that
ticket; the token lands in `tokens` (app 'tp') with its expiry, and never in
query_results or the log. A fresh token means later tickets fetch nothing;
a refused ticket is a job failure with back-off, not a loop.

And the apps' tokens (item 2): an AUTHORIZED push's code is exchanged once
with the TP token; the pair is stored and refreshed before it expires with
the stored single-use refresh token; a refused refresh (or code) is
recovered through retrieve/authorizationcode; UPDATE_AUTHORIZED refreshes at
once, one refresh per app at a time; UNAUTHORIZED deletes the tokens and
cancels the app's queued jobs; a [baidu.app] without access_token asks with
the stored one."""
import json
import sqlite3
import time
import unittest

import harness
from harness import baidu_signed, form_body, tp_envelope
from mock_openapi import MockTestCase
from test_baidu_pay import new_order_id, pay_fields
from test_hooks import ctl

OPENAPI = """
[openapi]
baidu_base = %s
retry_base = 0
retry_max = 1
max_attempts = 3
timeout = 2
"""


def ticket(t, create_time):
    return tp_envelope({"Ticket": t, "MsgType": "ticket", "Event": "push",
                        "CreateTime": create_time, "FromUserName": "tp"})


class TokenCase(MockTestCase):
    """A daemon with [baidu.tp] (and `extra`) against a mock OpenAPI."""
    extra = ""

    def daemon_config(self, mock):
        return harness.tp_config() + OPENAPI % mock.base + self.extra

    def push(self, t, create_time):
        self.assertEqual(self.d.post("/baidu/tp/events", ticket(t, create_time)), (200, b"success"))

    def wait(self, sql, want, timeout=15):
        deadline = time.time() + timeout * (4 if harness.VALGRIND else 1)
        got = None
        while time.time() < deadline:
            got = self.d.query(sql)
            if got == want:
                return got
            time.sleep(0.05)
        self.fail("%s gave %r, expected %r\n%s" % (sql, got, want, self.d.logtext()[-3000:]))

    def token_jobs(self):
        return self.d.query("SELECT state, outcome FROM jobs WHERE kind = 'baidu.tp_token' ORDER BY id")


class TpToken(TokenCase):
    def test_ticket_push_fetches_the_tp_token_once_and_keeps_it_secret(self):
        self.push("ticket-one", 1700000000)
        self.wait("SELECT count(*) FROM tokens WHERE app = 'tp'", [(1,)])
        self.assertEqual(self.d.query("SELECT access_token FROM tokens WHERE app = 'tp'"),
                         [(self.mock.baidu_tp_token,)])
        req = self.mock.last("baidu.tp_token")
        self.assertEqual((req.params["client_id"], req.params["ticket"]),
                         (harness.TP_CLIENT_ID, "ticket-one"))
        # expires_in 2592000 s: about 30 days from now
        left = self.d.query("SELECT julianday(expires_at) - julianday('now') FROM tokens")[0][0]
        self.assertAlmostEqual(left, 30, delta=0.01)
        self.wait("SELECT state, outcome FROM jobs WHERE kind = 'baidu.tp_token'", [("done", "done")])
        # the token is nowhere else: not in the attempt's row, not in the log
        rows = self.d.query("SELECT endpoint, outcome, detail, coalesce(body, '') FROM query_results")
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0][1], "done")
        for v in rows[0]:
            self.assertNotIn(self.mock.baidu_tp_token, str(v))
            self.assertNotIn("ticket-one", str(v))
        self.assertNotIn(self.mock.baidu_tp_token, self.d.logtext())
        # no confirmation is made of a TP push; the run is counted as done
        self.assertEqual(self.d.query("SELECT DISTINCT confirmation FROM event_status"), [("none",)])
        _, metrics, _ = self.d.request("GET", "/metrics")
        self.assertIn(b'payhookd_job_runs_total{kind="baidu.tp_token",outcome="done"} 1\n', metrics)
        # later tickets, with the token fresh: kept, nothing fetched
        self.push("ticket-two", 1700000600)
        self.assertEqual(self.d.query("SELECT ticket FROM tp_ticket"), [("ticket-two",)])
        time.sleep(0.5)
        self.assertEqual(self.mock.count("baidu.tp_token"), 1)
        self.assertEqual(len(self.token_jobs()), 1)

    def test_a_token_near_its_end_is_fetched_again_with_the_latest_ticket(self):
        self.push("ticket-one", 1700000000)
        self.wait("SELECT count(*) FROM tokens", [(1,)])
        # an operator's row (design.md): it expires within the day
        with sqlite3.connect(self.d.db_path, timeout=10) as db:
            db.execute("UPDATE tokens SET access_token = 'old', expires_at = "
                       "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+3600 seconds')")
        # an older ticket arriving late is not the latest: nothing fetched with it
        self.push("ticket-older", 1699999000)
        time.sleep(0.5)
        self.assertEqual(self.mock.count("baidu.tp_token"), 1)
        self.push("ticket-three", 1700001200)
        self.wait("SELECT access_token FROM tokens", [(self.mock.baidu_tp_token,)])
        self.assertEqual(self.mock.baidu_tickets, ["ticket-one", "ticket-three"])

    def test_a_refused_ticket_is_a_failed_job_not_a_loop(self):
        refused = json.dumps({"errno": 110, "msg": "ticket invalid"})
        self.mock.respond("baidu.tp_token", 200, refused, times=10)
        self.push("ticket-bad", 1700000000)
        self.wait("SELECT state FROM jobs WHERE kind = 'baidu.tp_token'", [("failed",)])
        time.sleep(0.5)
        self.assertEqual(self.mock.count("baidu.tp_token"), 3)  # max_attempts, then no more
        self.assertEqual(self.d.query("SELECT count(*) FROM tokens"), [(0,)])
        self.assertEqual(self.d.query("SELECT last_error FROM jobs WHERE kind = 'baidu.tp_token'"),
                         [("errno 110: ticket invalid",)])
        self.assertEqual(self.d.logtext().count("(baidu.tp_token) failed after 3 attempts"), 1)
        # the next ticket (a new one) may try again
        self.mock.clear("baidu.tp_token")
        self.push("ticket-good", 1700000600)
        self.wait("SELECT count(*) FROM tokens", [(1,)])


APP = "14508451"
BAIDU_KEY = harness.RsaKey(2048)
APP_SECTION = """
workers = 4

[baidu.app shop]
app_id = %s
deal_id = 470193086
app_key = MMMpmkey
platform_public_key = %s
""" % (APP, BAIDU_KEY.spki_b64())


def auth_push(event, app=APP, code=None, at="2026-12-07 10:00:00"):
    msg = {"appId": int(app), "tpAppId": 777, "eventTime": at, "event": event}
    if code:
        msg["authorizationCode"] = code
    return tp_envelope(msg)


class AppTokens(TokenCase):
    extra = APP_SECTION

    def setUp(self):
        super().setUp()
        self.mock.baidu_codes = {"code-1"}
        self.push("ticket-one", 1700000000)
        self.wait("SELECT count(*) FROM tokens WHERE app = 'tp'", [(1,)])

    def send(self, body):
        self.assertEqual(self.d.post("/baidu/tp/events", body), (200, b"success"))

    def new_paid_order(self):
        """An order the mock knows as paid (1000 fen, the app's deal)."""
        order = new_order_id()
        self.mock.baidu_orders["T-" + order[-8:]] = {
            "orderId": order, "status": 2, "totalMoney": 1000, "dealId": 470193086}
        return order

    def pay(self, order):
        """The app's signed pay notification for the order, acknowledged."""
        st, _ = self.d.post("/baidu/pay/notify", form_body(baidu_signed(
            pay_fields(order, total=1000, tp_order="T-" + order[-8:]), BAIDU_KEY)),
            "application/x-www-form-urlencoded")
        self.assertEqual(st, 200)

    def app_row(self):
        return self.d.query("SELECT access_token, refresh_token FROM tokens WHERE app = ?", APP)

    def assert_secrets_kept(self):
        secrets = [t for a in self.mock.baidu_issued for t in (a["access_token"], a["refresh_token"])]
        secrets += [self.mock.baidu_tp_token, "code-1"]
        log = self.d.logtext()
        rows = str(self.d.query("SELECT endpoint, platform_code, outcome, detail, body FROM query_results"))
        for t in secrets:
            self.assertNotIn(t, log)
            self.assertNotIn(t, rows)

    def test_authorized_code_exchanged_once_and_refreshed_before_expiry(self):
        # the first pair lives 4 s: refreshed at 2 s (half its life); the next 3600 s
        self.mock.baidu_app_expires_in = lambda n: 4 if not self.mock.baidu_issued else 3600
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        first = self.mock.baidu_issued[0]
        self.assertEqual(self.app_row(), [(first["access_token"], first["refresh_token"])])
        req = self.mock.requests("baidu.app_token")[0]
        self.assertEqual((req.params["grant_type"], req.params["code"], req.params["access_token"]),
                         ("app_to_tp_authorization_code", "code-1", self.mock.baidu_tp_token))
        # the refresh, with the stored refresh token, once; the new pair stored
        self.wait("SELECT count(*) FROM jobs WHERE kind = 'baidu.app_refresh' AND state = 'done'", [(1,)])
        second = self.mock.baidu_issued[1]
        self.assertEqual(self.app_row(), [(second["access_token"], second["refresh_token"])])
        refresh = self.mock.requests("baidu.app_token")[1]
        self.assertEqual((refresh.params["grant_type"], refresh.params["refresh_token"]),
                         ("app_to_tp_refresh_token", first["refresh_token"]))
        # the next refresh is queued for later (3600 s - 600 s), not run now
        time.sleep(0.5)
        self.assertEqual(self.mock.count("baidu.app_token"), 2)
        self.assertEqual(self.d.query("SELECT state, round((julianday(due_at) - julianday('now')) * 86400 / 60)"
                                      " FROM jobs WHERE kind = 'baidu.app_refresh' AND state = 'queued'"),
                         [("queued", 50.0)])
        self.assert_secrets_kept()

    def test_a_pay_notification_is_confirmed_with_the_stored_token(self):
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        order = self.new_paid_order()
        self.pay(order)
        self.wait("SELECT confirmation FROM event_status WHERE order_id = '%s'" % order, [("confirmed",)])
        self.assertEqual(self.mock.last("baidu.find_order").params["access_token"],
                         self.mock.baidu_issued[0]["access_token"])

    def test_a_refused_tp_token_is_fetched_again_with_the_latest_ticket(self):
        # the platform says the stored TP token is no longer valid (its gateway
        # error 110) when the AUTHORIZED code is exchanged with it
        self.push("ticket-two", 1700000600)
        invalid = json.dumps({"error_code": 110, "error_msg": "Access token invalid or no longer valid"})
        self.mock.respond("baidu.app_token", 200, invalid, times=1)
        self.send(auth_push("AUTHORIZED", code="code-1"))
        # the token is fetched again at once, with the latest ticket, by a job
        # no push made; then the exchange is retried with it and succeeds
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        self.assertEqual(self.mock.baidu_tickets, ["ticket-one", "ticket-two"])
        self.assertEqual(self.d.query("SELECT event_id, state FROM jobs WHERE kind = 'baidu.tp_token'"
                                      " ORDER BY id"), [(1, "done"), (None, "done")])
        left = self.d.query("SELECT julianday(expires_at) - julianday('now') FROM tokens WHERE app = 'tp'")
        self.assertAlmostEqual(left[0][0], 30, delta=0.01)
        self.assertEqual(self.mock.count("baidu.app_token"), 2)
        self.assertEqual(self.d.logtext().count("refused the stored access token of tp"), 1)
        self.assert_secrets_kept()

    def test_a_refused_app_token_is_refreshed(self):
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        first = self.mock.baidu_issued[0]
        order = self.new_paid_order()
        expired = json.dumps({"error_code": 111, "error_msg": "Access token expired"})
        self.mock.respond("baidu.find_order", 200, expired, times=1)
        self.pay(order)
        # the query is retried (its own back-off) and confirms; the refused
        # token is refreshed with the stored refresh token, the new pair kept
        self.wait("SELECT confirmation FROM event_status WHERE order_id = '%s'" % order, [("confirmed",)])
        self.wait("SELECT count(*) FROM jobs WHERE kind = 'baidu.app_refresh' AND state = 'done'", [(1,)])
        self.assertEqual(self.mock.requests("baidu.app_token")[1].params["refresh_token"],
                         first["refresh_token"])
        second = self.mock.baidu_issued[1]
        self.assertEqual(self.app_row(), [(second["access_token"], second["refresh_token"])])
        self.assertEqual(self.mock.count("baidu.find_order"), 2)
        self.assert_secrets_kept()

    def test_payhookctl_tokens_lists_expiry_never_the_token(self):
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        rc, out, err = ctl(self.d, "tokens", "--json")
        self.assertEqual(rc, 0, err)
        rows = json.loads(out)["tokens"]
        self.assertEqual([(r["app"], r["state"], r["refresh_token"]) for r in rows],
                         [("tp", "valid", "no"), (APP, "valid", "yes")])
        self.assertIsNotNone(rows[1]["next_fetch"])  # the app's next refresh is queued
        rc, text, err = ctl(self.d, "tokens")
        self.assertEqual(rc, 0, err)
        self.assertIn(APP, text)
        for t in (self.mock.baidu_tp_token, self.mock.baidu_issued[0]["access_token"],
                  self.mock.baidu_issued[0]["refresh_token"]):
            self.assertNotIn(t, out + text)

    def test_no_stored_token_means_no_query(self):
        order = new_order_id()
        st, _ = self.d.post("/baidu/pay/notify", form_body(baidu_signed(
            pay_fields(order, total=1000), BAIDU_KEY)), "application/x-www-form-urlencoded")
        self.assertEqual(st, 200)
        self.assertEqual(self.d.query("SELECT confirmation FROM event_status WHERE order_id = ?", order),
                         [("none",)])

    def test_a_refused_refresh_is_recovered_through_a_retrieved_code(self):
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        # the stored refresh token was spent already (a crash before our commit)
        self.mock.baidu_refresh_tokens.clear()
        self.send(auth_push("UPDATE_AUTHORIZED"))
        self.wait("SELECT outcome FROM jobs WHERE kind = 'baidu.app_refresh' AND state = 'done'",
                  [("done",)])
        self.assertEqual(self.mock.count("baidu.retrieve_code"), 1)
        self.assertEqual(self.mock.last("baidu.retrieve_code").form.get("app_id"), APP)
        last = self.mock.baidu_issued[-1]
        self.assertEqual(len(self.mock.baidu_issued), 2)
        self.assertEqual(self.app_row(), [(last["access_token"], last["refresh_token"])])
        self.assertIn("recovered", self.d.query(
            "SELECT detail FROM query_results r JOIN jobs j ON j.id = r.job_id"
            " WHERE j.kind = 'baidu.app_refresh' ORDER BY r.id DESC LIMIT 1")[0][0])
        self.assert_secrets_kept()

    def test_kill_9_between_a_refresh_and_its_commit_is_recovered(self):
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        first = self.mock.baidu_issued[0]
        # the refresh reaches the platform, which spends the refresh token and
        # issues a new pair; payhookd is killed before that answer is committed
        self.mock.delay("baidu.app_token", 30, times=1)
        self.send(auth_push("UPDATE_AUTHORIZED"))
        self.mock.wait_for(2, "baidu.app_token")
        with self.mock.lock:
            self.mock.baidu_refresh_tokens.discard(first["refresh_token"])
        self.d.proc.kill()  # SIGKILL
        self.d.proc.wait()
        self.d.log.close()
        self.assertEqual(self.app_row(), [(first["access_token"], first["refresh_token"])])
        self.assertEqual(self.d.query("SELECT state FROM jobs WHERE kind = 'baidu.app_refresh'"),
                         [("running",)])
        # restarted: the job runs again, its refresh is refused (spent), and the
        # recovery through a retrieved code stores a new pair
        self.d.start()
        self.wait("SELECT attempts FROM jobs WHERE kind = 'baidu.app_refresh' AND state = 'done'", [(2,)])
        self.assertEqual(self.mock.count("baidu.retrieve_code"), 1)
        last = self.mock.baidu_issued[-1]
        self.assertEqual(self.app_row(), [(last["access_token"], last["refresh_token"])])
        self.assertIn(last["refresh_token"], self.mock.baidu_refresh_tokens)
        # nothing stays broken: the app's next refresh is queued, and its
        # payments are confirmed with the new token
        self.assertEqual(self.d.query("SELECT count(*) FROM jobs WHERE kind = 'baidu.app_refresh'"
                                      " AND state = 'queued'"), [(1,)])
        order = self.new_paid_order()
        self.pay(order)
        self.wait("SELECT confirmation FROM event_status WHERE order_id = '%s'" % order, [("confirmed",)])
        self.assertEqual(self.mock.last("baidu.find_order").params["access_token"], last["access_token"])
        self.assert_secrets_kept()

    def test_a_refused_code_is_recovered_too(self):
        self.send(auth_push("AUTHORIZED", code="code-expired"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        self.assertEqual(self.mock.count("baidu.retrieve_code"), 1)

    def test_update_authorized_pushes_refresh_one_at_a_time(self):
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        # held long enough for the next push to queue a refresh, and well
        # within [openapi] timeout (2 s), also under valgrind: a refresh cut
        # off by the timeout would have spent its refresh token
        self.mock.delay("baidu.app_token", 1.5, times=3)
        for i in range(3):
            body = tp_envelope({"appId": int(APP), "tpAppId": 777, "event": "UPDATE_AUTHORIZED",
                                "eventTime": "2026-12-07 10:00:0%d" % i})
            self.send(body)
            if i == 0:
                # the first refresh is with the platform: the next push queues another
                self.mock.wait_for(2, "baidu.app_token")
        self.wait("SELECT count(*) FROM jobs WHERE kind = 'baidu.app_refresh' AND state IN ('queued', 'running')"
                  " AND due_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [(0,)])
        self.assertEqual(self.mock.count("baidu.app_token"), 3)  # the code, then two refreshes
        # each refresh used the refresh token the one before it was issued: none refused
        self.assertEqual(self.mock.count("baidu.retrieve_code"), 0)
        self.assertEqual(self.mock.max_in_flight("baidu.app_token"), 1)
        last = self.mock.baidu_issued[-1]
        self.assertEqual(self.app_row(), [(last["access_token"], last["refresh_token"])])

    def test_unauthorized_deletes_the_tokens_and_cancels_queued_jobs(self):
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        self.wait("SELECT count(*) FROM jobs WHERE kind = 'baidu.app_refresh' AND state = 'queued'", [(1,)])
        self.send(auth_push("UNAUTHORIZED"))
        self.assertEqual(self.app_row(), [])
        self.assertEqual(self.d.query("SELECT state, outcome FROM jobs WHERE kind = 'baidu.app_refresh'"),
                         [("failed", "cancelled")])
        # the TP's own token stays
        self.assertEqual(self.d.query("SELECT count(*) FROM tokens WHERE app = 'tp'"), [(1,)])

    def test_unauthorized_while_a_payment_query_runs_keeps_its_confirmation(self):
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        order = self.new_paid_order()
        self.mock.delay("baidu.find_order", 1.0, times=1)
        self.pay(order)
        self.mock.wait_for(1, "baidu.find_order")
        # the app withdraws while the platform is being asked about its payment:
        # the platform's answer on the payment is still recorded
        self.send(auth_push("UNAUTHORIZED"))
        self.wait("SELECT confirmation FROM event_status WHERE order_id = '%s'" % order, [("confirmed",)])

    def test_unauthorized_while_a_refresh_runs_keeps_its_tokens_out(self):
        self.send(auth_push("AUTHORIZED", code="code-1"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])
        self.mock.delay("baidu.app_token", 1.0, times=1)
        self.send(auth_push("UPDATE_AUTHORIZED"))
        self.mock.wait_for(2, "baidu.app_token")
        # the app withdraws while its refresh is with the platform
        self.send(auth_push("UNAUTHORIZED"))
        self.mock.wait_for(2, "baidu.app_token", answered=True)
        self.wait("SELECT count(*) FROM query_results r JOIN jobs j ON j.id = r.job_id"
                  " WHERE j.kind = 'baidu.app_refresh'", [(1,)])
        # the answer is kept as an attempt, but its tokens are not written
        # back, and no next refresh is queued
        self.assertEqual(self.app_row(), [])
        self.assertEqual(self.d.query("SELECT state, outcome FROM jobs WHERE kind = 'baidu.app_refresh'"
                                      " ORDER BY id"), [("failed", "cancelled")])


if __name__ == "__main__":
    unittest.main()
