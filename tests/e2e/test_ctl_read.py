"""End to end: payhookctl's read commands (issue 11): events, show, jobs,
deliveries, hooks, stats. The real daemon stores signed callbacks and
delivers them to a hook receiver started here; payhookctl reads the store
(read-only, while the daemon runs) and its answers are checked against the
database itself, as tables and as --json."""
import json
import os
import sqlite3
import time
import unittest

import harness
from harness import Daemon, baidu_signed, form_body
from hook_receiver import HookReceiver
from test_baidu_pay import new_order_id, pay_fields
from test_hooks import APP, FORM, KEY, PAY, REFUND, SLOW, closed_port, ctl, hook, wait_until


class Read(unittest.TestCase):
    """One daemon, one hook that delivers and one that never can."""

    def setUp(self):
        self.recv = HookReceiver().start()
        self.addCleanup(self.recv.stop)
        dead = "http://127.0.0.1:%d/x" % closed_port()
        self.d = Daemon(APP + hook("ledger", self.recv.url + "?tenant=t1&key=s3cr3t") +
                        hook("archive", dead, events="baidu.pay_*", extra="max_attempts = 1"))
        self.addCleanup(self.d.kill)
        self.d.start()

    def tearDown(self):
        if self.d.proc and self.d.proc.poll() is None:
            self.assertEqual(self.d.stop(), 0, self.d.logtext())

    def pay(self, total=1000, return_data=""):
        order = new_order_id()
        fields = [(k, return_data if k == "returnData" else v)
                  for k, v in pay_fields(order, total=total, tp_order="T-" + order[-8:])]
        st, data = self.d.post(PAY, form_body(baidu_signed(fields, KEY)), FORM)
        self.assertEqual(st, 200, data)
        return self.d.query("SELECT id FROM events WHERE order_id = ? AND kind = 'pay_notify'", order)[0][0], order

    def refund(self, order):
        f = [("orderId", order), ("userId", "2389718"), ("tpOrderId", "T-" + order[-8:]),
             ("refundBatchId", "B1"), ("refundStatus", "1")]
        st, data = self.d.post(REFUND, form_body(baidu_signed(f, KEY)), FORM)
        self.assertEqual(st, 200, data)
        return self.d.query("SELECT id FROM events WHERE kind = 'refund_notify' AND order_id = ?", order)[0][0]

    def settled(self, n_ledger, n_dead):
        """Waits until the ledger has n_ledger delivered and the archive n_dead dead."""
        sql = "SELECT count(*) FROM deliveries WHERE hook = ? AND state = ?"
        wait_until(lambda: self.d.query(sql, "ledger", "delivered")[0][0] == n_ledger and
                   self.d.query(sql, "archive", "dead")[0][0] == n_dead, "deliveries settled\n" +
                   self.d.logtext()[-2000:])

    def ok(self, *args):
        rc, out, err = ctl(self.d, *args)
        self.assertEqual(rc, 0, (args, out, err))
        self.assertEqual(err, "", args)
        return out

    def js(self, *args):
        return json.loads(self.ok(*(args + ("--json",))))

    def usage(self, *args):
        rc, out, err = ctl(self.d, *args)
        self.assertEqual((rc, out), (2, ""), (args, err))
        return err

    def fails(self, *args):
        rc, out, err = ctl(self.d, *args)
        self.assertEqual((rc, out), (1, ""), (args, err))
        return err


class Events(Read):
    def test_events_newest_first_with_filters_table_and_json(self):
        e1, o1 = self.pay(total=1234)
        e2, o2 = self.pay(total=4321)
        r1 = self.refund(o1)
        self.settled(3, 2)
        got = self.js("events")["events"]
        self.assertEqual([e["id"] for e in got], [r1, e2, e1])
        row = got[2]
        self.assertEqual((row["provider"], row["kind"], row["app"], row["order_id"], row["amount_fen"],
                          row["status"], row["confirmation"], row["deliveries"]),
                         ("baidu", "pay_notify", "14508451", o1, 1234, "2", "none", 1))
        self.assertIs(got[0]["amount_fen"], None)
        db = self.d.query("SELECT received_at, merchant_order_id FROM events WHERE id = ?", e1)[0]
        self.assertEqual((row["received_at"], row["merchant_order_id"]), db)
        table = self.ok("events").splitlines()
        self.assertEqual(table[0].split()[:4], ["id", "received_at", "provider", "kind"])
        self.assertEqual([int(line.split()[0]) for line in table[1:]], [r1, e2, e1])
        self.assertIn("1234", table[3])
        # filters
        ids = lambda *a: [e["id"] for e in self.js("events", *a)["events"]]
        self.assertEqual(ids("--kind", "baidu.refund_*"), [r1])
        self.assertEqual(ids("--kind", "pay_notify"), [e2, e1])
        self.assertEqual(ids("--order", o1), [r1, e1])
        self.assertEqual(ids("--provider", "alipay"), [])
        self.assertEqual(ids("--app", "14508451", "--limit", "2"), [r1, e2])
        self.assertEqual(ids("--status", "2"), [e2, e1])
        self.assertEqual(ids("--confirmation", "none", "--since", "1h"), [r1, e2, e1])
        self.assertEqual(ids("--until", "2000-01-01"), [])
        self.assertEqual(self.ok("events", "--since", "2099-01-01T00:00:00Z"), "no events\n")

    def test_bad_event_arguments_exit_2_naming_the_option(self):
        self.assertIn("--limit x", self.usage("events", "--limit", "x"))
        self.assertIn("--limit 0", self.usage("events", "--limit", "0"))
        self.assertIn("--since yesterday", self.usage("events", "--since", "yesterday"))
        self.assertIn("--until 2026-13-01", self.usage("events", "--until", "2026-13-01"))
        self.assertIn("--bogus", self.usage("events", "--bogus"))
        self.assertIn("--kind", self.usage("events", "--kind"))
        self.assertIn("--dead", self.usage("events", "--dead"))   # an option of another command
        self.assertIn("stray", self.usage("events", "stray"))
        self.assertIn("unknown subcommand", self.usage("hooks", "list"))

    def test_every_command_has_its_help(self):
        for cmd in ("events", "show", "jobs", "deliveries", "hooks", "stats", "replay", "retry"):
            out = self.ok(cmd, "--help")
            self.assertTrue(out.startswith("usage: payhookctl -c CONFIG " + cmd), (cmd, out))


class Show(Read):
    def test_show_has_the_body_and_every_delivery_and_attempt(self):
        eid, order = self.pay(total=777)
        self.settled(1, 1)
        got = self.js("show", eid)
        self.assertEqual(sorted(got), ["deliveries", "delivery_attempts", "event", "jobs", "query_results"])
        ev = got["event"]
        body = self.d.query("SELECT body FROM events WHERE id = ?", eid)[0][0]
        self.assertEqual((ev["id"], ev["order_id"], ev["amount_fen"], ev["body"]), (eid, order, 777, body.decode()))
        self.assertEqual(ev["fields"]["orderId"], order)   # the parsed fields, not a string
        self.assertEqual(sorted((d["hook"], d["state"]) for d in got["deliveries"]),
                         [("archive", "dead"), ("ledger", "delivered")])
        self.assertEqual(sorted((a["hook"], a["status"]) for a in got["delivery_attempts"]),
                         [("archive", None), ("ledger", 200)])
        self.assertEqual(got["jobs"], [])
        text = self.ok("show", eid)
        for heading in ("event %d" % eid, "follow-up jobs", "query results", "deliveries", "delivery attempts"):
            self.assertIn("\n" + heading + "\n", "\n" + text)
        self.assertIn(body.decode(), text)   # the record shows the whole body

    def test_control_bytes_reach_no_terminal(self):
        # Raw control bytes in the stored body, as a sender may post them unencoded.
        order = new_order_id()
        fields = [(k, "red\x1b[31m\nx\x07" if k == "returnData" else v)
                  for k, v in pay_fields(order, tp_order="T-1")]
        body = form_body(baidu_signed(fields, KEY))
        for enc, raw in ((b"%1B", b"\x1b"), (b"%0A", b"\n"), (b"%07", b"\x07")):
            body = body.replace(enc, raw)
        self.assertIn(b"\x1b%5B", body)
        st, data = self.d.post(PAY, body, FORM)
        self.assertEqual(st, 200, data)
        eid = self.d.query("SELECT id FROM events WHERE order_id = ?", order)[0][0]
        text = self.ok("show", eid)
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x07", text)
        self.assertIn("returnData=red\\x1b%5B31m\\nx\\x07&", text)
        got = self.js("show", eid)["event"]
        self.assertEqual(got["fields"]["returnData"], "red\x1b[31m\nx\x07")
        self.assertIn("returnData=red\x1b%5B31m\nx\x07&", got["body"])   # JSON keeps the bytes

    def test_unknown_and_malformed_ids(self):
        self.assertEqual(self.fails("show", 424242), "payhookctl: no event 424242\n")
        self.assertIn("x1", self.usage("show", "x1"))
        self.assertIn("EVENT_ID", self.usage("show"))
        self.assertIn("2", self.usage("show", "1", "2"))


class Deliveries(Read):
    def test_failed_dead_and_hook_filters(self):
        e1, _ = self.pay()
        e2, _ = self.pay()
        self.settled(2, 2)
        allrows = self.js("deliveries")["deliveries"]
        self.assertEqual(len(allrows), 4)
        dead = self.js("deliveries", "--dead")["deliveries"]
        self.assertEqual(sorted((d["event_id"], d["hook"], d["state"]) for d in dead),
                         [(e1, "archive", "dead"), (e2, "archive", "dead")])
        self.assertEqual([d["id"] for d in self.js("deliveries", "--failed")["deliveries"]],
                         [d["id"] for d in dead])
        self.assertTrue(all(d["last_error"] for d in dead))
        ledger = self.js("deliveries", "--hook", "ledger")["deliveries"]
        self.assertEqual({(d["hook"], d["state"], d["last_status"]) for d in ledger}, {("ledger", "delivered", 200)})
        self.assertEqual(self.ok("deliveries", "--hook", "ledger", "--state", "queued"), "no deliveries\n")
        self.assertIn("no hook nope", self.fails("deliveries", "--hook", "nope"))
        err = self.usage("deliveries", "--failed", "--dead")
        self.assertIn("--failed", err)
        self.assertIn("--state sideways", self.usage("deliveries", "--state", "sideways"))

    def test_hooks_state_counts_and_a_target_without_its_secret_query(self):
        self.pay()
        self.pay()
        self.settled(2, 2)
        hooks = {h["name"]: h for h in self.js("hooks")["hooks"]}
        self.assertEqual(sorted(hooks), ["archive", "ledger"])
        led, arc = hooks["ledger"], hooks["archive"]
        self.assertEqual((led["type"], led["state"], led["delivered"], led["dead"], led["queued"]),
                         ("http", "enabled", 2, 0, 0))
        self.assertEqual((arc["delivered"], arc["dead"]), (0, 2))
        self.assertTrue(led["last_delivered_at"])
        text = self.ok("hooks")
        self.assertNotIn("s3cr3t", text)   # a target's query string may carry a credential
        self.assertNotIn("s3cr3t", json.dumps(hooks))
        self.assertIn(self.recv.url.split("?")[0], text)


class Actions(Read):
    def test_replay_retry_and_enable_answer_json(self):
        eid, _ = self.pay()
        self.settled(1, 1)
        got = self.js("replay", eid)["replayed"]
        self.assertEqual(sorted((g["hook"], g["result"]) for g in got),
                         [("archive", "queued again"), ("ledger", "queued again")])
        ids = dict(self.d.query("SELECT hook, id FROM deliveries WHERE event_id = ?", eid))
        self.assertEqual({g["hook"]: g["delivery_id"] for g in got}, ids)
        self.settled(1, 1)
        self.assertEqual(self.js("retry", "--dead", "--hook", "archive"), {"queued": 1, "hook": "archive"})
        self.settled(1, 1)
        self.assertEqual(self.js("retry", "--dead"), {"queued": 1})
        self.assertEqual(self.fails("hooks", "enable", "nope", "--json"),
                         "payhookctl: no hook nope in the configuration\n")
        self.assertIn("--hook", self.usage("hooks", "enable", "ledger", "--hook", "x"))
        self.assertIn("--dead", self.usage("replay", eid, "--dead"))


class Prune(Read):
    def test_prune_compacts_what_is_done_and_keeps_every_callback_a_duplicate(self):
        e1, order = self.pay()                   # its archive delivery ends dead: kept
        f = [("orderId", order), ("userId", "2389718"), ("tpOrderId", "T-" + order[-8:]),
             ("refundBatchId", "B7"), ("refundStatus", "1")]
        body = form_body(baidu_signed(f, KEY))
        self.assertEqual(self.d.post(REFUND, body, FORM)[0], 200)
        r1 = self.d.query("SELECT id FROM events WHERE kind = 'refund_notify'")[0][0]   # delivered: prunable
        self.settled(2, 1)
        self.d.age_events(40)
        e3, _ = self.pay()                       # recent: kept
        self.settled(3, 2)
        before = self.d.query("SELECT id, confirmation FROM event_status ORDER BY id")
        attempts = "SELECT id, at, http_status, outcome, detail, duration_ms FROM query_results WHERE event_id = ?"
        r1_attempts = self.d.query(attempts, r1)
        r1_delivery = self.d.query("SELECT state, attempts, last_status, delivered_at FROM deliveries "
                                   "WHERE event_id = ?", r1)
        self.assertEqual(r1_delivery[0][2], 200)
        self.assertIn("--older-than 0", self.usage("prune", "--older-than", "0"))
        self.assertIn("--older-than", self.usage("prune"))
        got = self.js("prune", "--older-than", "30")
        self.assertEqual((got["events"], got["attempt_answers"]), (1, 1))
        rows = self.d.query("SELECT id, length(body), pruned_at IS NOT NULL FROM events ORDER BY id")
        self.assertEqual([(r[0], r[1] > 0, r[2]) for r in rows], [(e1, True, 0), (r1, False, 1), (e3, True, 0)])
        # the answers' bodies go; what each attempt was (status, outcome,
        # time) stays, so the delivery still says how it ended
        self.assertEqual(self.d.query("SELECT count(*) FROM query_results WHERE event_id = ? "
                                      "AND body IS NOT NULL", r1), [(0,)])
        self.assertEqual(self.d.query(attempts, r1), r1_attempts)
        self.assertEqual(self.d.query("SELECT state, attempts, last_status, delivered_at FROM deliveries "
                                      "WHERE event_id = ?", r1), r1_delivery)
        self.assertEqual(self.d.query("SELECT id, confirmation FROM event_status ORDER BY id"), before)
        # the old callback told again is a duplicate: no new event, no new delivery
        self.assertEqual(self.d.post(REFUND, body, FORM)[0], 200)
        time.sleep(0.3)
        self.assertEqual(self.d.query("SELECT count(*) FROM events"), [(3,)])
        self.assertEqual(self.d.query("SELECT deliveries FROM events WHERE id = ?", r1), [(2,)])
        self.assertEqual(self.d.query("SELECT count(*) FROM deliveries WHERE event_id = ?", r1), [(1,)])
        self.assertIn("was pruned", self.fails("replay", r1, "--hook", "ledger"))
        self.assertIn("0 events pruned", self.ok("prune", "--older-than", "30"))   # done once
        self.assertIn("operator: pruned 1 events", self.d.logtext())


class Stats(Read):
    def test_a_days_sums_and_the_backlog(self):
        self.pay(total=1000)
        self.pay(total=2345)
        self.settled(2, 2)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        got = self.js("stats")
        self.assertEqual(got["day"], day)
        rows = [r for r in got["summary"] if r["kind"] == "pay_notify"]
        self.assertEqual([(r["events"], r["amount_fen"], r["amount_yuan"]) for r in rows], [(2, 3345, "33.45")])
        want = self.d.query("SELECT count(*) FROM deliveries WHERE state = 'dead'")[0][0]
        self.assertEqual(got["backlog"]["deliveries_dead"], want)
        self.assertEqual(self.js("stats", "--date", "2001-02-03")["summary"], [])
        self.assertIn("33.45", self.ok("stats"))
        self.assertIn("--date 03/02/2001", self.usage("stats", "--date", "03/02/2001"))


class Store(Read):
    def test_reads_change_nothing_and_work_with_the_daemon_stopped(self):
        self.pay()
        self.settled(1, 1)
        self.assertEqual(self.d.stop(), 0, self.d.logtext())
        before = self.d.query("SELECT count(*), max(id) FROM events")
        mtime = os.stat(self.d.db_path).st_mtime_ns
        for args in (("events",), ("jobs",), ("deliveries",), ("hooks",), ("stats",), ("show", 1)):
            self.ok(*args)
        self.assertEqual(os.stat(self.d.db_path).st_mtime_ns, mtime)
        self.assertEqual(self.d.query("SELECT count(*), max(id) FROM events"), before)
        self.d.start()

    def test_a_store_of_another_schema_is_refused(self):
        self.assertEqual(self.d.stop(), 0, self.d.logtext())
        con = sqlite3.connect(self.d.db_path)
        version = con.execute("PRAGMA user_version").fetchone()[0]
        con.execute("PRAGMA user_version = %d" % (version + 1))
        con.commit()
        err = self.fails("events")
        self.assertIn(str(version + 1), err)
        con.execute("PRAGMA user_version = %d" % version)
        con.commit()
        con.close()
        self.d.start()


class Jobs(unittest.TestCase):
    def test_jobs_and_failed_jobs(self):
        d = Daemon(APP + "app_key = MMMpmkey\naccess_token = tok-never-printed\n" +
                   "\n[openapi]\nbaidu_base = http://127.0.0.1:%d\nretry_base = 0\nretry_max = 1\n"
                   "max_attempts = 1\ntimeout = 1\nfirst_delay = 0\n" % closed_port())
        self.addCleanup(d.kill)
        d.start()
        order = new_order_id()
        st, _ = d.post(PAY, form_body(baidu_signed(pay_fields(order, tp_order="T-1"), KEY)), FORM)
        self.assertEqual(st, 200)
        wait_until(lambda: d.query("SELECT state FROM jobs WHERE state = 'failed'"), "a failed job\n" + d.logtext())
        rc, out, err = ctl(d, "jobs", "--failed", "--json")
        self.assertEqual(rc, 0, err)
        jobs = json.loads(out)["jobs"]
        self.assertEqual(len(jobs), 1)
        self.assertEqual((jobs[0]["state"], jobs[0]["attempts"]), ("failed", 1))
        self.assertTrue(jobs[0]["last_error"])
        rc, out, _ = ctl(d, "show", jobs[0]["event_id"])
        self.assertEqual(rc, 0)
        self.assertNotIn("tok-never-printed", out)
        self.assertEqual(ctl(d, "jobs", "--state", "queued")[1], "no jobs\n")
        self.assertEqual(ctl(d, "jobs", "--state", "nope")[0], 2)
        self.assertEqual(d.stop(), 0, d.logtext())


if __name__ == "__main__":
    unittest.main()
