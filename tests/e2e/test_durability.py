"""End to end: with synchronous = full an answer waits until its row is on
disk. An LD_PRELOAD shim, built here, slows down or fails fdatasync() of the
store's WAL file while the daemon runs (controlled through a file), which
shows that the answer waits for the sync and that a failed sync is never
acknowledged."""
import http.client
import os
import shutil
import subprocess
import re
import tempfile
import threading
import time
import unittest

import harness
from harness import baidu_signed, form_body, tp_envelope
import test_baidu_pay
from test_baidu_pay import OK_PAY, audit_answer, audit_fields, new_order_id, pay_fields

PATH = "/baidu/tp/events"

SHIM = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* fdatasync of a "-wal" file obeys the first word of $SHIM_CTL: ok, slow, fail. */
int fdatasync(int fd)
{
    static int (*real)(int);
    char link[64], path[4096], mode[16] = "ok";
    const char *ctl = getenv("SHIM_CTL");
    ssize_t n;
    FILE *f;

    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof(path) - 1);
    if (n > 4 && ctl && (f = fopen(ctl, "r"))) {
        path[n] = '\0';
        if (fscanf(f, "%15s", mode) != 1)
            strcpy(mode, "ok");
        fclose(f);
        if (strcmp(path + n - 4, "-wal") == 0 && strcmp(mode, "slow") == 0)
            usleep(400000);
        if (strcmp(path + n - 4, "-wal") == 0 && strcmp(mode, "fail") == 0) {
            errno = EIO;
            return -1;
        }
    }
    return real(fd);
}
'''


class SyncBeforeAnswer(unittest.TestCase):
    def setUp(self):
        why = harness.preload_unusable()
        if why:
            self.skipTest("LD_PRELOAD shim not usable: " + why)
        self.tmp = tempfile.mkdtemp(prefix="payhookd-shim-")
        self.shim = harness.build_preload(self.tmp, "shim", SHIM)
        self.ctl = os.path.join(self.tmp, "ctl")
        self.mode("ok")

    def mode(self, m):
        with open(self.ctl, "w") as f:
            f.write(m)

    def start(self, sync):
        d = harness.Daemon(harness.tp_config(), store_extra="synchronous = %s\n" % sync)
        env = harness.preload_env(self.shim, SHIM_CTL=self.ctl)
        return d.start(env=env)

    def timed_post(self, d, n):
        t0 = time.monotonic()
        answer = d.post(PATH, tp_envelope({"appId": n, "event": "E", "tpAppId": 1}))
        return answer, time.monotonic() - t0

    def test_full_answers_after_the_wal_is_synced(self):
        d = self.start("full")
        try:
            self.mode("slow")
            answer, took = self.timed_post(d, 1)
            self.assertEqual(answer, (200, b"success"))
            self.assertGreaterEqual(took, 0.39, "answered before fdatasync returned")
        finally:
            self.mode("ok")
            self.assertEqual(d.stop(), 0)

    def commits(self, d):
        st, text, _ = d.request("GET", "/metrics")
        self.assertEqual(st, 200)
        m = re.search(rb"^payhookd_commit_batch_rows_count (\d+)", text, re.M)
        return int(m.group(1)) if m else 0

    def test_arrivals_during_a_sync_share_one_commit(self):
        """The writer commits the next batch once the fdatasync in progress is
        over: callbacks arriving one by one while the disk is slow are
        committed together, not one transaction each."""
        d = self.start("full")
        answers = []

        def post(n, delay):
            time.sleep(delay)
            answers.append(self.timed_post(d, n)[0])

        try:
            before = self.commits(d)
            self.mode("slow")
            first = threading.Thread(target=post, args=(100, 0))
            first.start()
            time.sleep(0.05)  # its fdatasync (400 ms) is under way
            rest = [threading.Thread(target=post, args=(101 + i, 0.015 * i)) for i in range(20)]
            for t in rest:
                t.start()
            for t in [first] + rest:
                t.join()
            self.assertEqual(answers, [(200, b"success")] * 21)
            self.assertEqual(d.query("SELECT count(*) FROM events"), [(21,)])
            # 21 arrivals 15 ms apart under a 400 ms sync: the first, then
            # the 20 that came during its sync together (two spare).
            self.assertLessEqual(self.commits(d) - before, 4)
        finally:
            self.mode("ok")
            self.assertEqual(d.stop(), 0)

    def test_a_forged_flood_at_a_slow_disk_costs_genuine_callbacks_nothing(self):
        """Forged pushes keep arriving while every fdatasync takes 400 ms and
        the write queue is small: rejections have their own dropping queue,
        so the genuine callbacks among them are all stored and answered 200,
        and the log shows a bounded sample of the rejections."""
        d = harness.Daemon(harness.tp_config(), store_extra="queue_max = 32\n")
        d.start(env=harness.preload_env(self.shim, SHIM_CTL=self.ctl))
        stop, forged, answers = threading.Event(), [0], []

        def flood():
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
            while not stop.is_set():
                body = tp_envelope({"appId": 1, "event": "E"}, token="not-the-token")
                c.request("POST", PATH, body, {"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 401)
                forged[0] += 1

        def genuine(n):
            answers.append(d.post(PATH, tp_envelope({"appId": 5000 + n, "event": "E",
                                                     "tpAppId": 1})))

        try:
            self.mode("slow")
            floods = [threading.Thread(target=flood) for _ in range(4)]
            for t in floods:
                t.start()
            time.sleep(0.5)
            calls = []
            for n in range(40):
                calls.append(threading.Thread(target=genuine, args=(n,)))
                calls[-1].start()
                time.sleep(0.05)
            for t in calls:
                t.join()
            stop.set()
            for t in floods:
                t.join()
            self.assertEqual(answers, [(200, b"success")] * 40)
            self.assertEqual(d.query("SELECT count(*) FROM events"), [(40,)])
            self.assertGreater(forged[0], 200, "the flood was not a flood")
            # every one counted, a sample logged (the next line logged after
            # the window says how many were left out)
            st, text, _ = d.request("GET", "/metrics")
            m = re.search(rb'^payhookd_rejections_total\{reason="bad_signature"\} (\d+)', text, re.M)
            self.assertEqual(int(m.group(1)), forged[0])
            logged = d.logtext().count("401 bad_signature")
            self.assertGreater(logged, 0)
            self.assertLessEqual(logged, 50, "every rejection was logged")
        finally:
            stop.set()
            self.mode("ok")
            self.assertEqual(d.stop(), 0)

    # ---- Baidu decisions made in one transaction --------------------------

    def baidu_daemon(self):
        d = harness.Daemon(harness.tp_config() + test_baidu_pay.CONFIG)
        return d.start(env=harness.preload_env(self.shim, SHIM_CTL=self.ctl))

    def in_one_batch(self, d, posts):
        """Send (path, fields) posts in order, 30 ms apart, while the
        fdatasync of an earlier commit takes 400 ms, so the writer takes them
        all in its next transaction; their answers, in order."""
        answers = [None] * len(posts)

        def send(i):
            path, fields = posts[i]
            answers[i] = d.post(path, form_body(baidu_signed(fields, test_baidu_pay.SHOP_KEY)),
                                test_baidu_pay.FORM)

        before = self.commits(d)
        self.mode("slow")
        try:
            gate = threading.Thread(target=self.timed_post, args=(d, 900))
            gate.start()
            time.sleep(0.1)  # the gate's fdatasync is under way
            threads = []
            for i in range(len(posts)):
                threads.append(threading.Thread(target=send, args=(i,)))
                threads[-1].start()
                time.sleep(0.03)
            for t in [gate] + threads:
                t.join()
        finally:
            self.mode("ok")
        self.assertEqual(self.commits(d) - before, 2, "the gate's transaction, then one for all")
        return answers

    def test_pay_notification_then_its_audit_in_one_transaction(self):
        d = self.baidu_daemon()
        try:
            order = new_order_id()
            got = self.in_one_batch(d, [(test_baidu_pay.PAY, pay_fields(order, total=1000)),
                                        (test_baidu_pay.AUDIT, audit_fields(order, "B1", 600))])
            # the audit decides on the pay row written before it in the same transaction
            self.assertEqual(got, [(200, OK_PAY), (200, audit_answer(1, 600))])
            self.assertEqual(d.query("SELECT refund_batch_id, audit_status, refund_fen FROM baidu_refunds"),
                             [("B1", 1, 600)])
        finally:
            self.assertEqual(d.stop(), 0)

    def test_audit_then_its_pay_notification_in_one_transaction(self):
        d = self.baidu_daemon()
        try:
            order = new_order_id()
            got = self.in_one_batch(d, [(test_baidu_pay.AUDIT, audit_fields(order, "B1", 600)),
                                        (test_baidu_pay.PAY, pay_fields(order, total=1000))])
            # nothing paid was stored when the audit was decided: ask again, nothing recorded
            self.assertEqual(got, [(200, audit_answer(3, 600)), (200, OK_PAY)])
            self.assertEqual(d.query("SELECT count(*) FROM baidu_refunds"), [(0,)])
            self.assertEqual(d.query("SELECT kind FROM events WHERE provider = 'baidu'"), [("pay_notify",)])
            # Baidu's next ask is decided on the stored payment
            st = d.post(test_baidu_pay.AUDIT, form_body(baidu_signed(audit_fields(order, "B1", 600),
                                                                     test_baidu_pay.SHOP_KEY)),
                        test_baidu_pay.FORM)
            self.assertEqual(st, (200, audit_answer(1, 600)))
        finally:
            self.assertEqual(d.stop(), 0)

    def test_two_audits_of_one_order_in_one_transaction(self):
        d = self.baidu_daemon()
        try:
            order = new_order_id()
            self.assertEqual(d.post(test_baidu_pay.PAY, form_body(baidu_signed(
                pay_fields(order, total=1000), test_baidu_pay.SHOP_KEY)), test_baidu_pay.FORM),
                (200, OK_PAY))
            got = self.in_one_batch(d, [(test_baidu_pay.AUDIT, audit_fields(order, "B1", 600)),
                                        (test_baidu_pay.AUDIT, audit_fields(order, "B2", 500))])
            # the second sees the first's approval: 600 + 500 would exceed the 1000 paid
            self.assertEqual(got, [(200, audit_answer(1, 600)), (200, audit_answer(2, 500))])
            self.assertEqual(d.query("SELECT refund_batch_id, audit_status FROM baidu_refunds ORDER BY 1"),
                             [("B1", 1), ("B2", 2)])
        finally:
            self.assertEqual(d.stop(), 0)

    def test_normal_does_not_wait_for_the_disk(self):
        d = self.start("normal")
        try:
            self.mode("slow")
            answer, took = self.timed_post(d, 1)
            self.assertEqual(answer, (200, b"success"))
            self.assertLess(took, 0.39)
        finally:
            self.mode("ok")
            self.assertEqual(d.stop(), 0)

    def test_failed_sync_is_never_acknowledged_and_the_daemon_restarts(self):
        """After a failed fdatasync nothing may be acknowledged by this
        process: a later fdatasync that succeeds proves nothing about the
        rows the failed one should have written (Linux reports a writeback
        error once), so a redelivery answered as a duplicate could be a
        callback that a crash then loses. The daemon refuses everything and
        exits non-zero, for systemd to restart it on what is on disk."""
        d = self.start("full")
        try:
            self.mode("fail")
            st, data = d.post(PATH, tp_envelope({"appId": 7, "event": "E", "tpAppId": 1}))
            self.assertEqual(st, 503)
            self.assertNotEqual(data, b"success")
            self.mode("ok")  # the disk "works" again: it must not matter
            st = d.request("GET", "/readyz")[0] if d.proc.poll() is None else None
            self.assertIn(st, (None, 503))
            rc = d.proc.wait(timeout=30)
            self.assertNotEqual(rc, 0)
            self.assertIn("not made durable", d.logtext())
            self.assertIn("cannot be trusted any more", d.logtext())
            d.stop()  # it has exited: this only closes its log
            # Restarted, it serves again; the platform's resend is stored once
            # (as new, or as a redelivery if the failed write did reach the disk).
            d.start(env=harness.preload_env(self.shim, SHIM_CTL=self.ctl))
            self.assertEqual(d.post(PATH, tp_envelope({"appId": 7, "event": "E", "tpAppId": 1})),
                             (200, b"success"))
            self.assertEqual(d.query("SELECT count(*) FROM events"), [(1,)])
        finally:
            self.mode("ok")
            self.assertEqual(d.stop(), 0)

    def test_writes_after_a_failed_sync_are_refused_until_the_restart(self):
        """Between the failure and the exit (the main loop notices it within
        a second), every further write is refused, though its own fdatasync
        would succeed -- above all the platform's redelivery of the callback
        whose sync failed: its row is committed in SQLite and readable from
        the page cache, so answering it as a duplicate would acknowledge a
        row that may never reach the disk."""
        d = self.start("full")
        try:
            body = tp_envelope({"appId": 8, "event": "E", "tpAppId": 1})
            self.mode("fail")
            self.assertEqual(d.post(PATH, body)[0], 503)
            self.mode("ok")
            st, data = d.post(PATH, body)  # the redelivery, at once: the daemon still runs
            self.assertEqual(st, 503)
            self.assertNotEqual(data, b"success")
            # its reason says it was never written, and why
            self.assertIn("not written: a fdatasync of the WAL failed earlier", d.logtext())
            self.assertNotEqual(d.proc.wait(timeout=30), 0)
        finally:
            self.mode("ok")
            d.stop()

    def test_redelivery_during_the_originals_slow_sync_waits_for_it(self):
        """A redelivery that arrives while the first copy's fdatasync is
        under way is answered only once that copy is durable: it is written
        in the next transaction, after the sync, and found there."""
        d = self.start("full")
        body = tp_envelope({"appId": 11, "event": "E", "tpAppId": 1})
        took = {}

        def post(name):
            t0 = time.monotonic()
            took[name] = (d.post(PATH, body), time.monotonic() - t0)

        try:
            self.mode("slow")
            first = threading.Thread(target=post, args=("first",))
            first.start()
            time.sleep(0.1)  # the first copy's 400 ms sync is under way
            post("again")
            first.join()
            self.assertEqual(took["first"][0], (200, b"success"))
            self.assertEqual(took["again"][0], (200, b"success"))
            # answered after the first sync ended (0.3 s after it was sent) and its own
            self.assertGreaterEqual(took["again"][1], 0.29)
            self.assertEqual(d.query("SELECT count(*), max(deliveries) FROM events"), [(1, 2)])
        finally:
            self.mode("ok")
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
