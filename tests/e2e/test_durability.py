"""End to end: with synchronous = full an answer waits until its row is on
disk. An LD_PRELOAD shim, built here, slows down or fails fdatasync() of the
store's WAL file while the daemon runs (controlled through a file), which
shows that the answer waits for the sync and that a failed sync is never
acknowledged."""
import os
import shutil
import subprocess
import re
import tempfile
import threading
import time
import unittest

import harness
from harness import tp_envelope

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
        env = dict(os.environ, LD_PRELOAD=self.shim, SHIM_CTL=self.ctl)
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
            d.start(env=dict(os.environ, LD_PRELOAD=self.shim, SHIM_CTL=self.ctl))
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
