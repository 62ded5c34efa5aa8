"""End to end: forwarding hooks (issue 11). The real daemon receives signed
callbacks and delivers them to a hook receiver started here on 127.0.0.1
(tests/e2e/hook_receiver.py), which checks the Standard Webhooks signatures
itself against both configured secrets."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Daemon, RsaKey, baidu_signed, form_body
from hook_receiver import HookReceiver, new_secret
from mock_openapi import MockOpenAPI
from test_baidu_pay import new_order_id, pay_fields

FORM = "application/x-www-form-urlencoded"
PAY, REFUND = "/baidu/pay/notify", "/baidu/pay/refund-notify"
KEY = RsaKey(2048)
SECRET_A, RAW_A = new_secret()
SECRET_B, RAW_B = new_secret()
SLOW = 4 if harness.VALGRIND else 1

APP = """
[baidu.app shop]
app_id = 14508451
deal_id = 470193086
platform_public_key = %s
""" % KEY.spki_b64()


def hook(name, url, events="baidu.*", extra=""):
    """A hook signed with both secrets; quick retries unless extra sets them."""
    for k, v in (("retry_base", "0"), ("retry_max", "1")):
        if k not in extra:
            extra += "\n%s = %s" % (k, v)
    return "\n[hook %s]\nurl = %s\nevents = %s\nsecret = %s %s\n%s\n" % (
        name, url, events, SECRET_A, SECRET_B, extra)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(fn, what, timeout=15):
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


class Hooks(unittest.TestCase):
    hook_extra = ""

    def setUp(self):
        self.recv = HookReceiver().start()
        self.addCleanup(self.recv.stop)
        self.d = Daemon(APP + hook("ledger", self.recv.url, extra=self.hook_extra) + self.more_config())
        self.addCleanup(self.d.kill)
        self.d.start()

    def more_config(self):
        return ""

    def tearDown(self):
        if self.d.proc and self.d.proc.poll() is None:
            self.assertEqual(self.d.stop(), 0, self.d.logtext())

    def pay(self, order=None, total=1000, status=2):
        order = order or new_order_id()
        st, data = self.d.post(PAY, form_body(baidu_signed(
            pay_fields(order, total=total, status=status, tp_order="T-" + order[-8:]), KEY)), FORM)
        self.assertEqual(st, 200, data)
        eid = self.d.query("SELECT max(id) FROM events WHERE order_id = ?", order)[0][0]
        return eid, order

    def refund(self, order, batch="B1"):
        f = [("orderId", order), ("userId", "2389718"), ("tpOrderId", "T-" + order[-8:]),
             ("refundBatchId", batch), ("refundStatus", "1")]
        st, data = self.d.post(REFUND, form_body(baidu_signed(f, KEY)), FORM)
        self.assertEqual(st, 200, data)
        return self.d.query("SELECT max(id) FROM events WHERE kind = 'refund_notify' AND order_id = ?",
                            order)[0][0]

    def delivery(self, eid, hook="ledger"):
        rows = self.d.query("SELECT id, state, attempts, last_status, last_error FROM deliveries "
                            "WHERE event_id = ? AND hook = ?", eid, hook)
        return rows[0] if rows else None

    def wait_state(self, eid, state, hook="ledger", timeout=15):
        return wait_until(lambda: (self.delivery(eid, hook) or (0, None))[1] == state and
                          self.delivery(eid, hook), "delivery of event %d to %s: %s\n%s" % (
                              eid, hook, state, self.d.logtext()[-2000:]), timeout)

    def attempts(self, did):
        return self.d.query("SELECT status, error, duration_ms IS NOT NULL, response FROM delivery_attempts "
                            "WHERE delivery_id = ? ORDER BY id", did)


class Delivery(Hooks):
    def test_envelope_headers_and_both_signatures(self):
        eid, order = self.pay(total=1234)
        d = self.recv.wait_for(1, 10 * SLOW)[0]
        self.assertTrue(d.verifies_with(RAW_A), d.headers)
        self.assertTrue(d.verifies_with(RAW_B), d.headers)
        self.assertFalse(d.verifies_with(os.urandom(24)))
        self.assertEqual(len(d.signatures), 2)
        self.assertTrue(all(s.startswith("v1,") for s in d.signatures))
        self.assertEqual(d.headers["content-type"], "application/json")
        self.assertLess(abs(int(d.timestamp) - time.time()), 60)
        row = self.wait_state(eid, "delivered")
        self.assertEqual(d.id, "msg_%d" % row[0])
        env = d.envelope
        self.assertEqual(env["type"], "baidu.pay_notify")
        received = self.d.query("SELECT received_at, body FROM events WHERE id = ?", eid)[0]
        self.assertEqual(env["timestamp"], received[0])
        data = env["data"]
        for k in ("event_id", "provider", "kind", "app", "order_id", "merchant_order_id", "amount_fen",
                  "refund_fen", "refund_total_fen", "status", "verified", "source", "confirmation", "received_at",
                  "deliveries", "fields", "body"):
            self.assertIn(k, data)
        self.assertEqual((data["event_id"], data["provider"], data["kind"], data["app"], data["order_id"]),
                         (eid, "baidu", "pay_notify", "14508451", order))
        self.assertEqual((data["amount_fen"], data["refund_fen"], data["status"]), (1234, None, "2"))
        self.assertIs(data["verified"], True)
        self.assertEqual((data["source"], data["confirmation"], data["deliveries"]), ("callback", "none", 1))
        self.assertEqual(data["fields"]["orderId"], order)
        self.assertEqual(data["body"].encode(), received[1])
        self.assertEqual(row[1:4], ("delivered", 1, 200))
        self.assertEqual(self.attempts(row[0]), [(200, None, 1, b"ok 200")])
        self.assertEqual(self.d.query("SELECT count(*) FROM pending_deliveries")[0][0], 0)

    def test_non_utf8_body_travels_as_base64(self):
        order = new_order_id()
        fields = pay_fields(order, tp_order="T-1", extra=[("userName", b"\xd5\xc5\xc8\xfd")])  # GBK
        body = form_body(baidu_signed(fields, KEY)).replace(b"%D5%C5%C8%FD", b"\xd5\xc5\xc8\xfd")
        self.assertIn(b"\xd5\xc5", body)   # raw GBK bytes, as some senders post them
        st, _ = self.d.post(PAY, body, FORM)
        self.assertEqual(st, 200)
        d = self.recv.wait_for(1, 10 * SLOW)[0]
        self.assertNotIn("body", d.data)
        import base64
        raw = self.d.query("SELECT body FROM events WHERE order_id = ?", order)[0][0]
        self.assertEqual(base64.b64decode(d.data["body_base64"]), raw)
        self.assertTrue(d.verifies_with(RAW_A))

    def test_500_twice_then_200_is_three_attempts_with_one_id_and_one_body(self):
        self.recv.answer(500, times=2)
        eid, _ = self.pay()
        row = self.wait_state(eid, "delivered")
        got = self.recv.wait_for(3)
        self.assertEqual(len(got), 3)
        self.assertEqual({g.id for g in got}, {"msg_%d" % row[0]})
        self.assertEqual({g.body for g in got}, {got[0].body})
        self.assertTrue(all(g.verifies_with(RAW_A) and g.verifies_with(RAW_B) for g in got))
        self.assertEqual(row[1:4], ("delivered", 3, 200))
        self.assertEqual([a[0] for a in self.attempts(row[0])], [500, 500, 200])
        self.assertIn("500", self.attempts(row[0])[0][1])

    def test_redelivered_callback_makes_no_second_delivery(self):
        order = new_order_id()
        body = form_body(baidu_signed(pay_fields(order, tp_order="T-1"), KEY))
        self.assertEqual(self.d.post(PAY, body, FORM)[0], 200)
        self.assertEqual(self.d.post(PAY, body, FORM)[0], 200)
        eid = self.d.query("SELECT id FROM events WHERE order_id = ?", order)[0][0]
        self.wait_state(eid, "delivered")
        time.sleep(0.5)
        self.assertEqual(self.recv.count(), 1)
        self.assertEqual(self.d.query("SELECT count(*) FROM deliveries")[0][0], 1)

    def test_a_hung_receiver_leaves_intake_fast(self):
        self.recv.answer(200, times=40, delay=30)
        median, took = harness.median_seconds(self.pay)
        self.assertLess(median, 0.5 * SLOW, took)
        wait_until(lambda: self.recv.count() >= 4, "4 deliveries in flight")
        time.sleep(0.5)
        self.assertEqual(self.recv.max_in_flight, 4)   # the hook's concurrency (default 4)
        self.recv.stopping.set()   # let the hung answers go so the daemon can stop


class Globs(Hooks):
    def more_config(self):
        return hook("refunds", self.recv.url, events="baidu.refund_*")

    def test_globs_choose_the_hooks(self):
        eid, order = self.pay()
        rid = self.refund(order)
        self.wait_state(eid, "delivered")
        self.wait_state(rid, "delivered")
        self.wait_state(rid, "delivered", hook="refunds")
        self.assertIsNone(self.delivery(eid, "refunds"))
        self.assertEqual(self.d.query("SELECT hook, count(*) FROM deliveries GROUP BY hook ORDER BY 1"),
                         [("ledger", 2), ("refunds", 1)])


class Dead(unittest.TestCase):
    def test_unreachable_receiver_is_dead_after_exactly_max_attempts(self):
        d = Daemon(APP + hook("gone", "http://127.0.0.1:%d/x" % closed_port(), extra="max_attempts = 3"))
        self.addCleanup(d.kill)
        d.start()
        order = new_order_id()
        st, _ = d.post(PAY, form_body(baidu_signed(pay_fields(order, tp_order="T-1"), KEY)), FORM)
        self.assertEqual(st, 200)
        row = wait_until(lambda: d.query("SELECT id, state, attempts, last_status, last_error FROM deliveries "
                                         "WHERE state = 'dead'"), "a dead delivery")[0]
        self.assertEqual(row[1:4], ("dead", 3, None))
        self.assertTrue(row[4])
        tries = d.query("SELECT status, error FROM delivery_attempts WHERE delivery_id = ?", row[0])
        self.assertEqual(len(tries), 3)
        self.assertTrue(all(t[0] is None and t[1] for t in tries), tries)
        self.assertEqual(d.query("SELECT id, state FROM failed_deliveries"), [(row[0], "dead")])
        self.assertIn("is dead after 3 attempts", d.logtext())
        time.sleep(0.5)
        self.assertEqual(d.query("SELECT attempts FROM deliveries")[0][0], 3)   # and nothing more
        st, body, _ = d.request("GET", "/metrics")
        self.assertIn(b'payhookd_job_runs_total{kind="hook.gone",outcome="error"} 3', body)
        self.assertEqual(d.stop(), 0, d.logtext())


def ctl(d, *args):
    """Run payhookctl against the daemon's config: (exit status, stdout, stderr)."""
    r = subprocess.run([harness.PAYHOOKCTL, "-c", d.conf] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


class Gone(Hooks):
    def test_410_disables_the_hook_across_restarts_until_an_operator_enables_it(self):
        self.recv.answer(410)
        eid, _ = self.pay()
        self.recv.wait_for(1, 10 * SLOW)
        wait_until(lambda: "answered 410 Gone: disabled" in self.d.logtext(), "the 410 log line")
        eid2, _ = self.pay()
        time.sleep(1.5)
        self.assertEqual(self.recv.count(), 1)   # nothing more goes to a disabled hook
        self.assertEqual(self.delivery(eid)[1], "queued")
        self.assertEqual(self.delivery(eid2)[1:3], ("queued", 0))
        self.assertEqual([r[0] for r in self.d.query("SELECT hook FROM hook_state")], ["ledger"])
        # a reload or a restart does not send to it
        self.d.send_signal(signal.SIGHUP)
        self.assertEqual(self.d.stop(), 0, self.d.logtext())
        self.d.start()
        time.sleep(1.5)
        self.assertEqual(self.recv.count(), 1)
        self.assertIn("hook ledger is disabled (it answered 410 Gone)", self.d.logtext())
        self.assertEqual(ctl(self.d, "hooks", "enable", "ledger")[:2], (0, "hook ledger enabled\n"))
        self.wait_state(eid, "delivered")
        self.wait_state(eid2, "delivered")
        self.assertEqual(self.recv.count(), 3)
        self.assertEqual(self.d.query("SELECT count(*) FROM hook_state")[0][0], 0)
        self.assertIn("hook ledger enabled by an operator", self.d.logtext())


class GoneAhead(Hooks):
    """A delivery claimed ahead of its call (while the one before it is out)
    is not sent once the hook answers 410: it goes back unspent."""
    hook_extra = "concurrency = 1"

    def test_a_delivery_claimed_ahead_is_not_sent_to_a_gone_hook(self):
        self.recv.answer(410, delay=1.0)
        eid, _ = self.pay()
        self.recv.wait_for(1, 10 * SLOW)
        eid2, _ = self.pay()
        # claimed ahead while the first call is out (concurrency 1, two claims)
        wait_until(lambda: self.delivery(eid2)[1] == "running", "the second delivery claimed")
        wait_until(lambda: "answered 410 Gone: disabled" in self.d.logtext(), "the 410 log line")
        wait_until(lambda: self.delivery(eid2)[1] == "queued", "the claimed one returned")
        time.sleep(1.0)
        self.assertEqual(self.recv.count(), 1)
        self.assertEqual(self.delivery(eid2)[1:3], ("queued", 0))   # its attempt not spent
        self.assertEqual(ctl(self.d, "hooks", "enable", "ledger")[0], 0)
        self.wait_state(eid, "delivered")
        self.wait_state(eid2, "delivered")
        self.assertEqual(self.recv.count(), 3)


class Steer(Hooks):
    """payhookctl replay, retry --dead, hooks enable through the control socket."""
    hook_extra = "max_attempts = 2"

    def more_config(self):
        return hook("refunds", self.recv.url, events="baidu.refund_*")

    def test_replay_sends_the_same_delivery_again(self):
        eid, _ = self.pay()
        did = self.wait_state(eid, "delivered")[0]
        rc, out, err = ctl(self.d, "replay", eid, "--hook", "ledger")
        self.assertEqual((rc, out), (0, "delivery %d queued again\n" % did), err)
        wait_until(lambda: self.recv.count() == 2, "the replay")
        self.wait_state(eid, "delivered")
        a, b = self.recv.deliveries
        self.assertEqual((a.id, a.body), (b.id, b.body))
        self.assertTrue(b.verifies_with(RAW_A))
        self.assertEqual(self.delivery(eid)[2], 1)   # attempts start again
        self.assertEqual(len(self.attempts(did)), 2)  # the history stays
        self.assertIn("operator: event %d replayed to hook ledger" % eid, self.d.logtext())
        # without --hook: every hook it has a delivery to
        self.assertEqual(ctl(self.d, "replay", eid)[0], 0)
        wait_until(lambda: self.recv.count() == 3, "the second replay")

    def test_replay_to_a_hook_that_never_had_it_creates_the_delivery(self):
        eid, _ = self.pay()
        self.wait_state(eid, "delivered")
        rc, out, err = ctl(self.d, "replay", eid, "--hook", "refunds")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^delivery \d+ created\n$")
        self.wait_state(eid, "delivered", hook="refunds")

    def test_bad_replays_are_refused_and_change_nothing(self):
        eid, _ = self.pay()
        self.wait_state(eid, "delivered")
        self.assertEqual(ctl(self.d, "replay", 99999, "--hook", "ledger")[::2], (1, "payhookctl: no event 99999\n"))
        rc, _, err = ctl(self.d, "replay", eid, "--hook", "nope")
        self.assertEqual(rc, 1)
        self.assertIn("no hook nope in the configuration", err)
        self.assertEqual(ctl(self.d, "replay", "x1")[0], 2)
        self.assertEqual(ctl(self.d, "replay", eid, "--bogus")[0], 2)
        self.assertEqual(ctl(self.d, "retry")[0], 2)
        self.assertEqual(ctl(self.d, "hooks", "enable")[0], 2)
        self.assertEqual(ctl(self.d, "hooks", "enable", "nope")[0], 1)
        time.sleep(0.3)
        self.assertEqual(self.recv.count(), 1)
        self.assertEqual(self.d.query("SELECT count(*) FROM deliveries")[0][0], 1)

    def test_retry_dead_queues_them_again(self):
        self.recv.answer(500, times=2)
        eid, _ = self.pay()
        self.wait_state(eid, "dead")
        rc, out, err = ctl(self.d, "retry", "--dead", "--hook", "ledger")
        self.assertEqual((rc, out), (0, "1 queued again\n"), err)
        self.wait_state(eid, "delivered")
        self.assertEqual(ctl(self.d, "retry", "--dead")[1], "0 queued again\n")

    def test_with_no_daemon_payhookctl_writes_the_store_itself(self):
        eid, _ = self.pay()
        self.wait_state(eid, "delivered")
        self.assertEqual(self.d.stop(), 0, self.d.logtext())
        self.assertFalse(os.path.exists(self.d.db_path + ".ctl"))
        rc, out, err = ctl(self.d, "replay", eid, "--hook", "ledger")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.delivery(eid)[1], "queued")
        self.d.start()
        self.wait_state(eid, "delivered")
        self.assertEqual(self.recv.count(), 2)

    def test_the_control_socket_is_the_owners_only(self):
        mode = os.stat(self.d.db_path + ".ctl").st_mode & 0o777
        self.assertEqual(mode, 0o600)


class RetryAfter(Hooks):
    hook_extra = "retry_max = 60"

    def test_429_and_503_retry_after_is_waited(self):
        self.recv.answer(429, headers={"Retry-After": "2"})
        self.recv.answer(503, headers={"Retry-After": "1"})
        eid, _ = self.pay()
        self.wait_state(eid, "delivered", timeout=20)
        got = self.recv.wait_for(3)
        self.assertGreaterEqual(got[1].at - got[0].at, 1.9)
        self.assertGreaterEqual(got[2].at - got[1].at, 0.9)
        self.assertEqual([a[0] for a in self.attempts(self.delivery(eid)[0])], [429, 503, 200])


class RetryAfterCapped(Hooks):
    hook_extra = "retry_max = 1"

    def test_retry_after_is_capped_by_retry_max(self):
        self.recv.answer(429, headers={"Retry-After": "3600"})
        eid, _ = self.pay()
        self.wait_state(eid, "delivered", timeout=10)
        got = self.recv.wait_for(2)
        self.assertLess(got[1].at - got[0].at, 3 * SLOW)


class Order(Hooks):
    def test_an_orders_deliveries_keep_their_order_under_retries_and_block_no_other(self):
        order = new_order_id()
        self.recv.answer_order(order, 500, times=3, delay=0.4)
        eid, _ = self.pay(order)
        self.recv.wait_for(1, 10 * SLOW)
        rid = self.refund(order)
        other, _ = self.pay()
        self.wait_state(rid, "delivered")
        self.wait_state(other, "delivered")
        got = [(g.data["event_id"], g.at) for g in self.recv.deliveries]
        pays = [at for e, at in got if e == eid]
        refunds = [at for e, at in got if e == rid]
        others = [at for e, at in got if e == other]
        self.assertEqual((len(pays), len(refunds), len(others)), (4, 1, 1))
        # the refund went out only after the payment it refunds was delivered,
        # and the other order did not wait for either
        self.assertGreater(refunds[0], pays[-1])
        self.assertLess(others[0], pays[-1])
        self.assertEqual(self.delivery(rid)[2], 1)


@unittest.skipIf(harness.VALGRIND, "kill -9 of valgrind proves nothing about the store")
class Crash(Hooks):
    hook_extra = "max_attempts = 1000\nretry_base = 1"

    def test_kill9_mid_delivery_redelivers_with_the_same_id(self):
        self.recv.answer(200, delay=30)
        eid, _ = self.pay()
        first = self.recv.wait_for(1)[0]
        self.assertEqual(self.delivery(eid)[1], "running")
        self.d.proc.kill()
        self.d.proc.wait()
        self.d.log.close()
        self.d.start()
        row = self.wait_state(eid, "delivered")
        got = self.recv.wait_for(2)
        self.assertEqual(got[1].id, first.id)
        self.assertEqual(got[1].body, first.body)
        self.assertEqual(row[2], 2)   # the cut attempt counts
        self.recv.stopping.set()

    def test_kill9_with_the_receiver_down_delivers_after_restart(self):
        self.recv.stop()
        eids = [self.pay()[0] for _ in range(5)]
        wait_until(lambda: self.d.query("SELECT count(*) FROM deliveries WHERE attempts > 0")[0][0] == 5,
                   "five failed attempts")
        self.d.proc.kill()
        self.d.proc.wait()
        self.d.log.close()
        self.recv = HookReceiver(self.recv.port).start()
        self.addCleanup(self.recv.stop)
        self.d.start()
        for eid in eids:
            self.wait_state(eid, "delivered")
        ids = sorted(g.id for g in self.recv.deliveries)
        self.assertEqual(ids, sorted("msg_%d" % self.delivery(e)[0] for e in eids))


class Confirmed(unittest.TestCase):
    """when = confirmed hooks get only what the platform confirmed."""
    openapi_extra = ""

    def setUp(self):
        self.mock = MockOpenAPI().start()
        self.addCleanup(self.mock.stop)
        self.recv = HookReceiver().start()
        self.addCleanup(self.recv.stop)
        conf = """
[openapi]
baidu_base = %s
retry_base = 0
retry_max = 1
max_attempts = 2
timeout = 2
%s
""" % (self.mock.base, self.openapi_extra) + APP + "access_token = tok-123\napp_key = MMMpmkey\n" + \
            hook("all", self.recv.url) + hook("paid", self.recv.url, events="baidu.pay_notify",
                                              extra="when = confirmed")
        self.d = Daemon(conf)
        self.addCleanup(self.d.kill)
        self.d.start()

    def tearDown(self):
        if self.d.proc and self.d.proc.poll() is None:
            self.assertEqual(self.d.stop(), 0, self.d.logtext())

    def pay(self, total, theirs):
        order = new_order_id()
        tp = "T-" + order[-8:]
        self.mock.baidu_orders[tp] = dict(orderId=order, status=2, totalMoney=theirs)
        st, _ = self.d.post(PAY, form_body(baidu_signed(pay_fields(order, total=total, tp_order=tp), KEY)), FORM)
        self.assertEqual(st, 200)
        return self.d.query("SELECT id FROM events WHERE order_id = ?", order)[0][0]

    def test_waits_for_the_confirmation_and_skips_a_mismatch(self):
        self.mock.delay("baidu.find_order", 1)
        ok = self.pay(1000, 1000)
        bad = self.pay(1000, 900)
        wait_until(lambda: self.d.query("SELECT count(*) FROM event_status WHERE confirmation "
                                        "IN ('confirmed', 'mismatch')")[0][0] == 2, "two answers")
        wait_until(lambda: self.d.query("SELECT count(*) FROM deliveries WHERE state = 'delivered'")[0][0] == 3,
                   "three deliveries")
        rows = self.d.query("SELECT event_id, hook FROM deliveries ORDER BY event_id, hook")
        self.assertEqual(rows, [(ok, "all"), (ok, "paid"), (bad, "all")])
        by_hook = {}
        for g in self.recv.deliveries:
            did = int(g.id[4:])
            hook_name = self.d.query("SELECT hook FROM deliveries WHERE id = ?", did)[0][0]
            by_hook[(g.data["event_id"], hook_name)] = g.data["confirmation"]
        # the received hook saw it pending; the confirmed hook saw it confirmed
        self.assertEqual(by_hook[(ok, "paid")], "confirmed")
        self.assertEqual(by_hook[(ok, "all")], "pending")
        # the confirmed delivery was created after the confirmation, not before
        confirmed_at = self.d.query("SELECT confirmed_at FROM event_status WHERE id = ?", ok)[0][0]
        created = self.d.query("SELECT created_at FROM deliveries WHERE event_id = ? AND hook = 'paid'", ok)[0][0]
        self.assertGreaterEqual(created, confirmed_at)


class HungHook(Confirmed):
    openapi_extra = "workers = 1"

    def test_a_hung_hook_does_not_hold_the_queries(self):
        self.recv.answer(200, times=50, delay=30)
        eids = [self.pay(1000, 1000) for _ in range(6)]
        wait_until(lambda: self.recv.count() >= 4, "the hung deliveries")
        for eid in eids:
            wait_until(lambda: self.d.query("SELECT confirmation FROM event_status WHERE id = ?", eid)[0][0]
                       == "confirmed", "event %d confirmed while the hook hangs" % eid)
        # hooks "all" and "paid", each at most its concurrency (4)
        self.assertLessEqual(self.recv.max_in_flight, 8)
        self.recv.stopping.set()


COMMAND_SCRIPT = r"""
import json, os, subprocess, sys, time
out = sys.argv[1]
body = sys.stdin.buffer.read()
mode = open(out + ".mode").read().strip() if os.path.exists(out + ".mode") else "ok"
n = len([f for f in os.listdir(os.path.dirname(out)) if f.startswith(os.path.basename(out) + ".run")])
with open("%s.run%d" % (out, n), "w") as f:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "body": body.decode(), "pgid": os.getpgrp(),
               "pid": os.getpid()}, f)
print("output of run", n, flush=True)
sys.stderr.write("err line\n")
if mode == "fail" and n < 2:
    sys.exit(3)
if mode == "hang":
    child = subprocess.Popen(["/bin/sleep", "300"])
    with open(out + ".child", "w") as f:
        f.write(str(child.pid))
    time.sleep(300)
"""


def proc_state(pid):
    """A process's state letter, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


class Command(unittest.TestCase):
    """Command hooks: no shell, a clean environment, the envelope on stdin."""

    def start(self, mode="ok", extra=""):
        self.tmp = tempfile.mkdtemp(prefix="payhookd-cmd-")
        script = os.path.join(self.tmp, "hook.py")
        with open(script, "w") as f:
            f.write(COMMAND_SCRIPT)
        self.out = os.path.join(self.tmp, "out")
        with open(self.out + ".mode", "w") as f:
            f.write(mode)
        self.d = Daemon(APP + "\n[hook local]\ncommand = /usr/bin/python3 %s %s $HOME;echo\nevents = baidu.*\n"
                        "retry_base = 0\nretry_max = 1\n%s\n" % (script, self.out, extra))
        self.addCleanup(self.d.kill)
        self.d.start()

    def tearDown(self):
        if self.d and self.d.proc and self.d.proc.poll() is None:
            self.assertEqual(self.d.stop(), 0, self.d.logtext())

    def pay(self):
        order = new_order_id()
        st, _ = self.d.post(PAY, form_body(baidu_signed(pay_fields(order, tp_order="T-1"), KEY)), FORM)
        self.assertEqual(st, 200)
        return self.d.query("SELECT id FROM events WHERE order_id = ?", order)[0][0]

    def runs(self):
        names = sorted(f for f in os.listdir(self.tmp) if f.startswith("out.run"))
        out = []
        for n in names:
            with open(os.path.join(self.tmp, n)) as f:
                out.append(json.load(f))
        return out

    def state(self, eid):
        rows = self.d.query("SELECT id, state, attempts, last_status FROM deliveries WHERE event_id = ?", eid)
        return rows[0] if rows else None

    def test_success_gets_the_envelope_a_clean_environment_and_literal_arguments(self):
        self.start()
        eid = self.pay()
        did, state, attempts, status = wait_until(
            lambda: (self.state(eid) or (0, ""))[1] == "delivered" and self.state(eid), "delivered")
        self.assertEqual((attempts, status), (1, 0))
        run = self.runs()[0]
        self.assertEqual(run["argv"], [self.out, "$HOME;echo"])   # no shell: no expansion, no ;
        env = dict(run["env"])
        env.pop("LC_CTYPE", None)   # python may set it for itself
        self.assertEqual(env, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PAYHOOKD_EVENT_ID": str(eid),
                               "PAYHOOKD_HOOK": "local", "PAYHOOKD_TYPE": "baidu.pay_notify",
                               "PAYHOOKD_WEBHOOK_ID": "msg_%d" % did})
        envelope = json.loads(run["body"])
        self.assertEqual((envelope["type"], envelope["data"]["event_id"]), ("baidu.pay_notify", eid))
        self.assertEqual(run["pgid"], run["pid"])   # its own process group
        self.assertEqual(self.d.query("SELECT status, error, response FROM delivery_attempts WHERE delivery_id = ?",
                                      did), [(0, None, b"output of run 0\nerr line\n")])

    def test_failure_is_retried_with_the_exit_code_recorded(self):
        self.start("fail")
        eid = self.pay()
        did = wait_until(lambda: (self.state(eid) or (0, ""))[1] == "delivered" and self.state(eid),
                         "delivered after two failures")[0]
        self.assertEqual(self.d.query("SELECT status, error FROM delivery_attempts WHERE delivery_id = ? "
                                      "ORDER BY id", did),
                         [(3, "exit status 3"), (3, "exit status 3"), (0, None)])
        self.assertEqual(len({json.dumps(json.loads(r["body"])) for r in self.runs()}), 1)   # one body

    def test_timeout_kills_the_process_group(self):
        self.start("hang", "timeout = 1\nmax_attempts = 1")
        eid = self.pay()
        wait_until(lambda: (self.state(eid) or (0, ""))[1] == "dead", "dead after the timeout")
        error = self.d.query("SELECT error FROM delivery_attempts")[0][0]
        self.assertIn("timed out after 1 s: its process group was killed", error)
        with open(self.out + ".child") as f:
            child = int(f.read())
        # the grandchild (sleep 300) went with the group
        wait_until(lambda: proc_state(child) in (None, "Z"), "the grandchild gone")

    def test_bad_command_hooks_are_refused(self):
        self.d = None
        cases = [("command = python3 x.py\n", "absolute path"),
                 ("command = /nonexistent/prog\n", "not an executable"),
                 ("command = /bin/true\nurl = http://127.0.0.1:9/x\n", "one of url and command"),
                 ("command = /bin/true\nsecret = %s\n" % SECRET_A, "only a url hook is signed")]
        for text, word in cases:
            d = Daemon(APP + "[hook c]\nevents = *\n" + text)
            r = subprocess.run([harness.PAYHOOKD, "-c", d.conf, "--check"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, text)
            self.assertIn(word, r.stdout + r.stderr, text)


class Config(unittest.TestCase):
    def check(self, section):
        d = Daemon(APP + section)
        r = subprocess.run([harness.PAYHOOKD, "-c", d.conf, "--check"], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    def test_bad_hooks_are_refused_naming_the_key(self):
        cases = [
            ("[hook a]\nurl = http://127.0.0.1:9/x\nevents = baidu.*\n", "secret"),
            ("[hook a]\nurl = http://127.0.0.1:9/x\nevents = baidu.*\nsecret = nope\n", "whsec_"),
            ("[hook a]\nurl = http://127.0.0.1:9/x\nevents = baidu.*\nsecret = whsec_AAAA\n", "16 random bytes"),
            ("[hook a]\nurl = http://127.0.0.1:9/x\nsecret = %s\n" % SECRET_A, "events"),
            ("[hook a]\nevents = baidu.*\nsecret = %s\n" % SECRET_A, "url"),
            ("[hook a]\nurl = http://10.0.0.1/x\nevents = baidu.*\nsecret = %s\n" % SECRET_A, "https://"),
            ("[hook a]\nurl = http://127.0.0.1:9/x\nevents = baidu.*\nsecret = %s\nwhen = later\n" % SECRET_A,
             "when"),
            ("[hook a]\nurl = http://127.0.0.1:9/x\nevents = baidu.*\nsecret = %s\nmax_attempts = 0\n" % SECRET_A,
             "max_attempts"),
        ]
        for text, word in cases:
            rc, out = self.check(text)
            self.assertEqual(rc, 1, text + out)
            self.assertIn(word, out, text)
            self.assertIn("hook a", out, text)
            self.assertNotIn(SECRET_A, out)

    def test_a_good_hook_passes_and_the_secret_file_is_read(self):
        path = os.path.join(tempfile.mkdtemp(prefix="payhookd-hook-"), "secret")
        with open(path, "w") as f:
            f.write("%s %s\n" % (SECRET_A, SECRET_B))
        rc, out = self.check("[hook a]\nurl = http://127.0.0.1:9/x\nevents = baidu.* alipay.notify\n"
                             "secret_file = %s\n" % path)
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
