"""End to end: reconciliation sweeps (issue 13). The real daemon sweeps a
mock Baidu order list (tests/e2e/mock_openapi.py, started here on
127.0.0.1) page by page through its job queue and writer, compares it with
the callbacks it stored, and closes the gap: a paid order with no callback
becomes an event with source = sweep that hooks get once; a late callback
is its redelivery; a disagreement is flagged. Alipay and gateway sweeps are
not built yet: asking for them is refused."""
import datetime
import json
import sqlite3
import subprocess
import threading
import time
import unittest

import harness
from harness import Daemon, RsaKey, baidu_signed, form_body
from hook_receiver import HookReceiver, new_secret
from mock_openapi import MockOpenAPI, MockTestCase
from test_baidu_pay import audit_answer, audit_fields, new_order_id, pay_fields

FORM = "application/x-www-form-urlencoded"
PAY = "/baidu/pay/notify"
TOKEN = "baidu-recon-token-Q3"
KEY = RsaKey(2048)
APP_ID = "14508451"
SECRET, RAW = new_secret()
SLOW = 4 if harness.VALGRIND else 1
ZONE = datetime.timezone(datetime.timedelta(hours=8))
# three days back: within give_up_days, outside the daily schedule's days = 1
DAY = (datetime.datetime.now(ZONE).date() - datetime.timedelta(days=3)).isoformat()


def ctl(*args, timeout=120):
    p = subprocess.run([harness.PAYHOOKCTL] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def listed(order, tp, money=1000, sub_status="2", day=DAY, at="10:00:00"):
    """One order of Baidu's order list (seed document 000, 4.1)."""
    return {"id": order, "deal_id": "470193086", "deal_title": "t", "order_id": order,
            "tp_order_id": tp, "phone": "178****2684", "create_time": "%s %s" % (day, at),
            "update_time": "%s %s" % (day, at), "sub_status": sub_status,
            "total_money": str(money), "pay_money": str(money),
            "segment_refunded_money": None, "channel": None}


class Reconcile(MockTestCase):
    hook_url = None

    def daemon_config(self, mock):
        self.recv = HookReceiver().start()
        self.addCleanup(self.recv.stop)
        return """
[openapi]
baidu_base = %s
retry_base = 0
retry_max = 1
max_attempts = 5
timeout = 3

[reconcile]
at = 02:30
zone = Asia/Shanghai
days = 1
give_up_days = 7

[baidu.app shop]
app_id = %s
deal_id = 470193086
app_key = MMMpmkey
platform_public_key = %s
access_token = %s
query = no
reconcile = yes

[hook h]
url = %s
events = baidu.*
secret = %s
retry_base = 0
retry_max = 1
""" % (mock.base, APP_ID, KEY.spki_b64(), TOKEN, self.recv.url, SECRET)

    # ---- helpers ----
    def pay(self, order, tp, total=1000, status=2):
        st, data = self.d.post(PAY, form_body(baidu_signed(
            pay_fields(order, total=total, status=status, tp_order=tp), KEY)), FORM)
        self.assertEqual(st, 200, data)
        return data

    def orders(self, n, day=DAY):
        out = []
        for i in range(n):
            order = new_order_id()
            out.append((order, "T-%s-%d" % (order[-6:], i)))
        self.mock.baidu_order_list.extend(listed(o, t, day=day) for o, t in out)
        return out

    def sweep(self, day=DAY, app="shop", ok=True):
        r, out, err = ctl("-c", self.d.conf, "reconcile", "--app", app, "--date", day, "--json")
        if ok:
            self.assertEqual(r, 0, err + self.d.logtext()[-3000:])
            return json.loads(out)
        return r, out, err

    def report(self, day=DAY):
        return self.d.query("SELECT platform_count, stored_count, missing, mismatched, unknown, state"
                            " FROM reconciliation WHERE app = ? AND day = ?", APP_ID, day)[0]

    def pages(self, day=DAY):
        start = int(datetime.datetime.fromisoformat(day).replace(tzinfo=ZONE).timestamp())
        return [int(r.query["current_page"]) for r in self.mock.requests("baidu.orderlist")
                if int(r.query["start_time"]) == start]

    def wait_state(self, want, day=DAY, timeout=20):
        deadline = time.time() + timeout * SLOW
        got = None
        while time.time() < deadline:
            rows = self.d.query("SELECT state FROM reconciliations WHERE app = ? AND day = ?", APP_ID, day)
            got = rows[0][0] if rows else None
            if got == want:
                return
            time.sleep(0.1)
        self.fail("day %s: state %r, expected %r\n%s" % (day, got, want, self.d.logtext()[-3000:]))

    # ---- tests ----
    def test_all_callbacks_stored_all_matched_across_pages_last_short(self):
        listed_orders = self.orders(205)       # pages of 100: 100, 100, 5
        for o, t in listed_orders:
            self.pay(o, t)
        rep = self.sweep()
        self.assertEqual(self.pages(), [1, 2, 3])
        req = self.mock.requests("baidu.orderlist")[-1]
        self.assertEqual((req.query["access_token"], req.query["status"], req.query["page_size"]),
                         (TOKEN, "all", "100"))
        self.assertEqual(self.report(), (205, 205, 0, 0, 0, "reconciled"))
        self.assertEqual(rep["reconciliations"][0]["state"], "reconciled")
        self.assertEqual(rep["findings"], [])
        self.assertEqual(self.d.query("SELECT count(*) FROM reconciliation_items WHERE finding = 'matched'"
                                      " AND day = ?", DAY)[0][0], 205)
        self.assertEqual(self.d.query("SELECT count(*) FROM events WHERE source = 'sweep'")[0][0], 0)

    def test_missing_payment_synthesised_delivered_once_idempotent_late_callback_redelivery(self):
        (o1, t1), (o2, t2), (o3, t3) = self.orders(3)
        self.mock.baidu_order_list.append(listed(new_order_id(), "T-unpaid", sub_status="1"))
        self.pay(o1, t1)
        self.pay(o2, t2)
        self.recv.wait_for(2, timeout=10 * SLOW)
        rep = self.sweep()
        self.assertEqual(self.report(), (4, 2, 1, 0, 0, "open"))
        [f] = rep["findings"]
        self.assertEqual((f["finding"], f["order_id"], f["merchant_order_id"], f["amount_fen"]),
                         ("missing", o3, t3, 1000))
        eid = f["event_id"]
        row = self.d.query("SELECT provider, kind, app, source, verified, status, amount_fen, deliveries"
                           " FROM events WHERE id = ?", eid)[0]
        self.assertEqual(row, ("baidu", "pay_notify", APP_ID, "sweep", 1, "2", 1000, 1))
        self.assertEqual(self.d.query("SELECT confirmation FROM event_status WHERE id = ?", eid)[0][0],
                         "confirmed")
        # the hook gets it once, like any verified event, and the envelope says source
        got = self.recv.wait_for(3, timeout=10 * SLOW)
        swept = [x for x in got if x.data["order_id"] == o3]
        self.assertEqual(len(swept), 1)
        self.assertTrue(swept[0].verifies_with(RAW))
        data = swept[0].data
        self.assertEqual((data["source"], data["verified"], data["confirmation"], data["amount_fen"]),
                         ("sweep", True, "confirmed", 1000))
        self.assertEqual([x.data["source"] for x in got if x.data["order_id"] == o1], ["callback"])
        # the same sweep again: nothing new
        self.sweep()
        self.assertEqual(self.d.query("SELECT count(*) FROM events")[0][0], 3)
        self.assertEqual(self.report(), (4, 2, 0, 0, 0, "reconciled"))  # stored: callbacks
        # the late callback is the sweep's event delivered again: no second hook delivery
        answer = self.pay(o3, t3)
        self.assertIn(b'"errno":0', answer)
        self.assertEqual(self.d.query("SELECT count(*), max(deliveries) FROM events WHERE order_id = ?", o3)[0],
                         (1, 2))
        time.sleep(1.5 * SLOW)
        self.assertEqual(self.recv.count(), 3)
        st, body, _ = self.d.request("GET", "/metrics")
        self.assertIn(b'payhookd_reconcile_missing_total{app="%s"} 1' % APP_ID.encode(), body)
        self.assertRegex(body.decode(), r'payhookd_reconcile_last_success_timestamp_seconds\{app="%s"\} [1-9]'
                         % APP_ID)

    def test_refunded_order_without_callback_is_found_but_never_synthesised(self):
        """Paid, then refunded (sub_status 5) or refunding (4) on the platform,
        no callback stored: a finding, never a paid event for a ledger."""
        (o1, t1), (o2, t2) = self.orders(2)
        self.mock.baidu_order_list[0]["sub_status"] = "5"
        self.mock.baidu_order_list[1]["sub_status"] = "4"
        rep = self.sweep()
        self.assertEqual(self.report(), (2, 0, 2, 0, 0, "open"))
        self.assertEqual(sorted((f["finding"], f["order_id"], f["event_id"]) for f in rep["findings"]),
                         sorted([("missing", o1, None), ("missing", o2, None)]))
        self.assertEqual(self.d.query("SELECT count(*) FROM events")[0][0], 0)

    def test_a_second_payment_of_one_merchant_order_is_not_hidden(self):
        """Two platform orders paid under one tpOrderId, one callback stored:
        the other is a missing payment, not a match of the stored one."""
        o1, o2 = new_order_id(), new_order_id()
        self.mock.baidu_order_list.extend([listed(o1, "T-same"), listed(o2, "T-same")])
        self.pay(o1, "T-same")
        rep = self.sweep()
        self.assertEqual(self.report(), (2, 1, 1, 0, 0, "open"))
        self.assertEqual([(f["finding"], f["order_id"]) for f in rep["findings"]], [("missing", o2)])

    def test_a_refund_audit_of_a_swept_order_is_decided_on_its_pay_money(self):
        """The synthesised event holds what a refund audit is decided on
        (payMoney, dealId) as the callback would have."""
        (o1, t1), = self.orders(1)
        self.mock.baidu_order_list[0]["pay_money"] = "800"
        self.sweep()
        fields = json.loads(self.d.query("SELECT fields FROM events WHERE order_id = ?", o1)[0][0])
        self.assertEqual((fields["totalMoney"], fields["payMoney"], fields["dealId"]),
                         ("1000", "800", "470193086"))
        st, data = self.d.post("/baidu/pay/refund-audit",
                               form_body(baidu_signed(audit_fields(o1, "B1", 500, tp_order=t1), KEY)), FORM)
        self.assertEqual((st, data), (200, audit_answer(1, 500)))
        st, data = self.d.post("/baidu/pay/refund-audit",
                               form_body(baidu_signed(audit_fields(o1, "B2", 301, tp_order=t1), KEY)), FORM)
        self.assertEqual((st, data), (200, audit_answer(2, 301)))   # 800 paid, 500 approved

    def test_a_callback_stored_under_another_app_is_not_counted_again(self):
        """The order's callback is stored under its dedupe key but labelled
        with another app: the sweep finds it by that key and neither bumps
        its deliveries nor calls the order missing."""
        (o1, t1), = self.orders(1)
        self.pay(o1, t1)
        self.d.stop()
        con = sqlite3.connect(self.d.db_path)
        con.execute("UPDATE events SET app = 'relabelled' WHERE order_id = ?", (o1,))
        con.commit()
        con.close()
        self.d.start()
        self.sweep()
        self.assertEqual(self.d.query("SELECT count(*), max(deliveries) FROM events")[0], (1, 1))
        self.assertEqual(self.d.query("SELECT finding FROM reconciliation_items WHERE order_id = ?", o1),
                         [("matched",)])

    def test_a_total_count_that_says_nothing_does_not_end_the_sweep(self):
        """total_count "0" or "-" beside full pages: the pages go on to the
        short one."""
        self.orders(150)

        def no_total(req):
            a = self.mock._h_baidu_orderlist(req)
            doc = json.loads(a.body)
            doc["data"]["total_count"] = "0" if req.query["current_page"] == "1" else "-"
            a.body = json.dumps(doc).encode()
            return a
        self.mock.handlers["baidu.orderlist"] = no_total
        self.sweep()
        self.assertEqual(self.pages(), [1, 2])
        self.assertEqual(self.report(), (150, 0, 150, 0, 0, "open"))

    def test_a_listed_order_without_an_id_is_refused(self):
        (o1, t1), = self.orders(1)
        self.mock.baidu_order_list[0]["order_id"] = ""
        r, out, err = self.sweep(ok=False)
        self.assertEqual(r, 1)
        self.assertIn("a listed order lacks order_id or sub_status", err)
        self.assertEqual(self.d.query("SELECT count(*) FROM events")[0][0], 0)

    def test_amount_mismatch_flagged_on_the_stored_event(self):
        (o1, t1), = self.orders(1)
        self.mock.baidu_order_list[0]["total_money"] = "900"
        self.pay(o1, t1, total=1000)
        rep = self.sweep()
        self.assertEqual(self.report(), (1, 1, 0, 1, 0, "open"))
        [f] = rep["findings"]
        self.assertEqual(f["finding"], "mismatch")
        self.assertIn("totalMoney: stored 1000, the platform 900", f["detail"])
        self.assertEqual(self.d.query("SELECT reconcile FROM events WHERE order_id = ?", o1)[0][0], "mismatch")
        self.assertIn("disagree with the platform", self.d.logtext())
        st, body, _ = self.d.request("GET", "/metrics")
        self.assertIn(b'payhookd_reconcile_mismatch_total{app="%s"} 1' % APP_ID.encode(), body)

    def test_status_mismatch_cancelled_on_the_platform(self):
        (o1, t1), = self.orders(1)
        self.mock.baidu_order_list[0]["sub_status"] = "7"   # cancelled: never paid
        self.pay(o1, t1)
        self.sweep()
        self.assertEqual(self.report(), (1, 1, 0, 1, 0, "open"))

    def test_stored_paid_callback_not_listed_is_unknown(self):
        today = datetime.datetime.now(ZONE).date().isoformat()
        o1 = new_order_id()
        self.pay(o1, "T-unlisted")
        rep = self.sweep(day=today)
        self.assertEqual(self.report(today), (0, 0, 0, 0, 1, "open"))
        self.assertEqual([(f["finding"], f["order_id"]) for f in rep["findings"]], [("unknown", o1)])

    def test_error_midway_is_retried_at_its_page(self):
        self.orders(250)
        calls = []

        def flaky(req):
            calls.append(int(req.query["current_page"]))
            if calls.count(2) == 1 and calls[-1] == 2:
                return (503, b"busy")
            return self.mock._h_baidu_orderlist(req)
        self.mock.handlers["baidu.orderlist"] = flaky
        self.sweep()
        self.assertEqual(self.pages(), [1, 2, 2, 3])
        self.assertEqual(self.report(), (250, 0, 250, 0, 0, "open"))
        self.assertEqual(self.d.query("SELECT count(*) FROM events WHERE source = 'sweep'")[0][0], 250)

    def sweep_slowly(self, page, seconds, once=False):
        """Start `payhookctl reconcile` whose sweep finds `page` slow (every
        time, or once); returns the payhookctl process once that page is out."""
        out = threading.Event()

        def slow(req):
            if req.query["current_page"] == str(page) and not (once and out.is_set()):
                out.set()
                time.sleep(seconds)
            return self.mock._h_baidu_orderlist(req)
        self.mock.handlers["baidu.orderlist"] = slow
        p = subprocess.Popen([harness.PAYHOOKCTL, "-c", self.d.conf, "reconcile", "--app", "shop",
                              "--date", DAY], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertTrue(out.wait(15 * SLOW))
        return p

    def test_restart_mid_sweep_resumes_at_its_page(self):
        self.orders(250)
        p = self.sweep_slowly(3, 3)
        self.d.kill()                                      # kill -9 while page 3 is out
        p.wait(timeout=30)
        self.assertEqual(self.d.query("SELECT next_page, state, missing FROM reconciliations WHERE day = ?", DAY)[0],
                         (3, "running", 200))
        self.mock.handlers.pop("baidu.orderlist")
        self.d.start()
        self.wait_state("open")
        self.assertEqual(self.pages(), [1, 2, 3, 3])
        self.assertEqual(self.report(), (250, 0, 250, 0, 0, "open"))
        self.assertEqual(self.d.query("SELECT count(*) FROM events WHERE source = 'sweep'")[0][0], 250)
        self.assertEqual(self.recv.wait_for(250, timeout=30 * SLOW)[0].data["source"], "sweep")

    def test_operators_are_answered_while_a_sweep_runs(self):
        """A sweep takes minutes; the control socket (one thread for every
        operator, joined at SIGTERM) is not held by it."""
        self.orders(150)
        p = self.sweep_slowly(2, 2.5, once=True)   # within the 3 s [openapi] timeout
        t = time.monotonic()
        r, out, err = ctl("-c", self.d.conf, "prune", "--older-than", "36500")
        self.assertEqual(r, 0, err)
        self.assertLess(time.monotonic() - t, 1.5 * SLOW, "prune waited for the sweep")
        self.assertEqual(p.wait(timeout=30 * SLOW), 0, p.stderr.read())
        self.assertEqual(self.report(), (150, 0, 150, 0, 0, "open"))

    def test_a_sweep_that_failed_for_good_is_swept_again_by_the_schedule(self):
        """Its job failed (every attempt refused): the day is not left
        'running' for ever; the next daily schedule sweeps it again."""
        self.orders(3)
        self.mock.handlers["baidu.orderlist"] = lambda req: (503, b"busy")
        r, out, err = self.sweep(ok=False)
        self.assertEqual(r, 1)
        self.assertIn("failed", err)
        self.assertEqual(self.report()[5], "running")
        self.mock.handlers.pop("baidu.orderlist")
        self.d.stop()
        with open(self.d.conf) as f:
            conf = f.read()
        with open(self.d.conf, "w") as f:       # today's schedule is due at once
            f.write(conf.replace("at = 02:30", "at = 00:00"))
        con = sqlite3.connect(self.d.db_path)   # and was not queued yet today
        con.execute("DELETE FROM meta WHERE key = 'reconcile_scheduled'")
        con.commit()
        con.close()
        self.d.start()
        self.wait_state("open")
        self.assertEqual(self.report(), (3, 0, 3, 0, 0, "open"))

    def test_report_table_and_json(self):
        (o1, t1), = self.orders(1)
        self.sweep()
        r, out, err = ctl("-c", self.d.conf, "reconcile", "--report", "--date", DAY)
        self.assertEqual(r, 0, err)
        self.assertIn("missing", out)
        self.assertIn("10.00", out)                         # the missing amount in yuan
        r, out, err = ctl("-c", self.d.conf, "reconcile", "--report", "--date", DAY, "--json")
        doc = json.loads(out)
        self.assertEqual(doc["reconciliations"][0]["missing_yuan"], "10.00")
        self.assertEqual(doc["findings"][0]["order_id"], o1)

    def test_bad_requests_are_refused(self):
        r, out, err = self.sweep(day="2026-02-30", ok=False)
        self.assertEqual(r, 1)
        self.assertIn("not a day", err)
        r, out, err = self.sweep(app="nosuch", ok=False)
        self.assertEqual(r, 1)
        self.assertIn("no [baidu.app] named nosuch", err)

    def test_no_daemon_no_sweep(self):
        self.assertEqual(self.d.stop(), 0)
        r, out, err = self.sweep(ok=False)
        self.assertEqual(r, 1)
        self.assertIn("no payhookd holds the store", err)


class Config(unittest.TestCase):
    def check(self, text):
        d = Daemon(text)
        return subprocess.run([harness.PAYHOOKD, "-c", d.conf, "--check"], capture_output=True, text=True)

    def test_unbuilt_platforms_refuse_reconcile_yes(self):
        for section in ("[gateway g]\nsecret = s\n", "[alipay.app a]\napp_id = 1\nalipay_public_key = %s\n"
                        % KEY.spki_b64()):
            r = self.check(section + "reconcile = yes\n")
            self.assertEqual(r.returncode, 1, section)
            self.assertIn("reconcile", r.stdout + r.stderr)
            self.assertIn("not built yet", r.stdout + r.stderr)
            self.assertEqual(self.check(section + "reconcile = no\n").returncode, 0, section)

    def test_reconcile_keys_checked(self):
        for bad in ("at = 25:00", "zone = Mars/Base", "days = 0", "give_up_days = 0"):
            r = self.check("[reconcile]\n%s\n" % bad)
            self.assertEqual(r.returncode, 1, bad)
            self.assertIn(bad.split()[0], r.stdout + r.stderr)
        self.assertEqual(self.check("[reconcile]\nat = 23:05\nzone = +05:30\n").returncode, 0)


if __name__ == "__main__":
    unittest.main()
