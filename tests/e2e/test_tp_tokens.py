"""End to end: the TP's own token (issue 10, item 1). A verified ticket push
that becomes the latest ticket, while the stored TP token is missing or has
less than a day left, brings a job in its transaction that asks the mock
OpenAPI on 127.0.0.1 for the token with the configured client id and that
ticket; the token lands in `tokens` (app 'tp') with its expiry, and never in
query_results or the log. A fresh token means later tickets fetch nothing;
a refused ticket is a job failure with back-off, not a loop."""
import json
import sqlite3
import time
import unittest

import harness
from harness import Daemon, tp_envelope
from mock_openapi import MockTestCase

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


class TpToken(MockTestCase):
    def daemon_config(self, mock):
        return harness.tp_config() + OPENAPI % mock.base

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
        # no confirmation is made of a TP push
        self.assertEqual(self.d.query("SELECT DISTINCT confirmation FROM event_status"), [("none",)])
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


if __name__ == "__main__":
    unittest.main()
