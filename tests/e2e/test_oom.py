"""End to end: out of memory anywhere in a callback's path is never a wrong
answer. An LD_PRELOAD shim, built here, makes the Nth allocation from the
moment the test arms it fail (malloc, calloc, realloc, in any thread), for
N = 1, 2, ... until a callback goes through without reaching it. Each run
checks what a platform relies on: no crash, no acknowledgement without its
row, no row that differs from the body sent, no answer that would stop the
platform's retries (a 4xx to a genuine callback), and the redelivery of the
same callback once memory is back is stored exactly once.

glibc's MALLOC_PERTURB_ fills freed memory, so a use after free (an object
freed by a failed arena_own and used anyway) shows up as a wrong row or a
wrong answer even in this non-ASan build."""
import http.client
import mmap
import os
import struct
import sys
import tempfile
import time
import unittest

import harness
from harness import baidu_signed, form_body, tp_envelope
import test_alipay
import test_baidu_pay
import test_gateway
from hook_receiver import HookReceiver, new_secret

SHIM = r'''
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* $OOM_CTL is a page shared with the test: word 0 counts allocations down
 * while it is positive, and the one that takes it to 0 fails; word 1 is set
 * to 1 when that happened. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static int *ctl;

__attribute__((constructor)) static void oom_init(void)
{
    const char *path = getenv("OOM_CTL");
    int fd = path ? open(path, O_RDWR) : -1;

    if (fd < 0)
        return;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED)
        ctl = p;
}

static int oom_now(void)
{
    int left;

    if (!ctl || __atomic_load_n(&ctl[0], __ATOMIC_SEQ_CST) <= 0)
        return 0;
    left = __atomic_sub_fetch(&ctl[0], 1, __ATOMIC_SEQ_CST);
    if (left != 0)
        return 0;
    __atomic_store_n(&ctl[1], 1, __ATOMIC_SEQ_CST);
    errno = ENOMEM;
    return 1;
}

void *malloc(size_t n) { return oom_now() ? NULL : __libc_malloc(n); }
void *calloc(size_t k, size_t n) { return oom_now() ? NULL : __libc_calloc(k, n); }
void *realloc(void *p, size_t n) { return oom_now() ? NULL : __libc_realloc(p, n); }
'''

FORM = "application/x-www-form-urlencoded"
TP_PATH = "/baidu/tp/events"
MAX_N = 3000   # far above what one callback allocates: the loop ends before


class OutOfMemory(unittest.TestCase):
    def setUp(self):
        why = harness.preload_unusable()
        if why:
            self.skipTest("LD_PRELOAD shim not usable: " + why)
        self.tmp = tempfile.mkdtemp(prefix="payhookd-oom-")
        self.shim = harness.build_preload(self.tmp, "oom", SHIM)
        self.ctl_path = os.path.join(self.tmp, "ctl")
        with open(self.ctl_path, "wb") as f:
            f.write(b"\0" * 4096)
        self.ctl_file = open(self.ctl_path, "r+b")
        self.ctl = mmap.mmap(self.ctl_file.fileno(), 4096)
        # Every event also goes to a hook: its delivery is made while later
        # allocations fail, and must still arrive.
        self.recv = HookReceiver().start()
        self.addCleanup(self.recv.stop)
        hook = ("\n[hook ledger]\nurl = %s\nevents = baidu.* alipay.* gateway.*\nsecret = %s\n"
                "retry_base = 0\nretry_max = 1\nmax_attempts = 1000\n"
                % (self.recv.url, new_secret()[0]))
        config = (harness.tp_config() + test_baidu_pay.CONFIG + test_alipay.CONFIG
                  + test_gateway.CONFIG + hook)
        self.d = harness.Daemon(config)
        self.env = dict(os.environ, LD_PRELOAD=self.shim, OOM_CTL=self.ctl_path,
                        MALLOC_PERTURB_="165", MALLOC_CHECK_="3")
        self.d.start(env=self.env)

    def tearDown(self):
        if hasattr(self, "d"):
            self.arm(0)
            self.assert_all_delivered()
            rc = self.d.stop()
            self.assertEqual(rc, 0, self.d.logtext()[-4000:])
            self.ctl.close()
            self.ctl_file.close()

    def assert_all_delivered(self):
        # Memory is back: every event's delivery arrives, none is lost or dead.
        want = self.d.query("SELECT count(*) FROM events")[0][0]
        deadline = time.time() + 20
        while time.time() < deadline:
            left = self.d.query("SELECT count(*) FROM deliveries WHERE state != 'delivered'")
            if left == [(0,)]:
                break
            time.sleep(0.1)
        self.assertEqual(self.d.query("SELECT count(*), count(DISTINCT event_id) FROM deliveries "
                                      "WHERE state = 'delivered'"), [(want, want)],
                         "not delivered: %r\n%s" % (self.d.query(
                             "SELECT d.*, e.kind FROM deliveries d JOIN events e ON e.id = d.event_id "
                             "WHERE d.state != 'delivered'"), "\n".join(l for l in self.d.logtext().splitlines() if "could not store" not in l and "rejected" not in l)[-6000:]))
        with self.recv.lock:
            ids = {d.id for d in self.recv.deliveries}
        self.assertEqual(len(ids), want, "one webhook-id per event at the receiver")

    def arm(self, n):
        self.ctl[4:8] = struct.pack("i", 0)
        self.ctl[0:4] = struct.pack("i", n)

    def hit(self):
        return struct.unpack("i", self.ctl[4:8])[0] == 1

    def post(self, path, body, content_type):
        try:
            return self.d.post(path, body, content_type)
        except (OSError, http.client.HTTPException) as e:
            return None, repr(e)   # the connection dropped: nothing acknowledged

    def rows(self, body):
        return self.d.query("SELECT id, deliveries FROM events WHERE body = ?", body)

    def check_run(self, n, path, body, content_type, ack):
        self.arm(n)
        status, answer = self.post(path, body, content_type)
        hit = self.hit()
        self.arm(0)
        self.assertIsNone(self.d.proc.poll(), "payhookd died at allocation %d:\n%s"
                          % (n, self.d.logtext()[-4000:]))
        where = "allocation %d failed, answer %r %r" % (n, status, answer)
        if status == 200:
            self.assertEqual(answer, ack, where)
            self.assertEqual(len(self.rows(body)), 1, "acknowledged without its row: " + where)
        else:
            self.assertIn(status, (None, 503), "a genuine callback must be retried: " + where)
        # Memory is back: the platform's redelivery is stored, exactly once.
        status, answer = self.post(path, body, content_type)
        self.assertEqual((status, answer), (200, ack), "redelivery after " + where)
        self.assertEqual(len(self.rows(body)), 1, "redelivery after " + where)
        self.assertIsNone(self.d.proc.poll(), "payhookd died after " + where)
        return hit

    def sweep(self, path, make_body, content_type, ack):
        for n in range(1, MAX_N):
            self.runs = n
            if not self.check_run(n, path, make_body(), content_type, ack):
                self.assertGreater(n, 5, "the shim never made an allocation fail")
                print("%s: %d allocations swept" % (self.id(), n), file=sys.stderr)
                return n
        self.fail("a callback still allocated after %d allocations" % MAX_N)

    def test_tp_push(self):
        seq = iter(range(10**6))
        self.sweep(TP_PATH, lambda: tp_envelope({"appId": 1000 + next(seq), "event": "AUTHORIZED",
                                                 "tpAppId": 1}), "application/json", b"success")

    def test_baidu_pay_notification(self):
        def body():
            fields = test_baidu_pay.pay_fields(test_baidu_pay.new_order_id())
            return form_body(baidu_signed(fields, test_baidu_pay.SHOP_KEY))
        self.sweep("/baidu/pay/notify", body, FORM, test_baidu_pay.OK_PAY)

    def test_tp_ticket_push(self):
        # The ticket is written by in_tx on the writer thread, from the parsed tree.
        seq = iter(range(10**6))
        self.sweep(TP_PATH, lambda: tp_envelope({"Ticket": "t-%d" % next(seq), "MsgType": "ticket",
                                                 "Event": "push", "CreateTime": 1700000000}),
                   "application/json", b"success")
        self.assertEqual(self.d.query("SELECT count(*) FROM tp_ticket"), [(1,)])

    def test_baidu_refund_audit(self):
        # Decided in the transaction on what is stored: each run's order is paid first.
        def body():
            order = test_baidu_pay.new_order_id()
            pay = form_body(baidu_signed(test_baidu_pay.pay_fields(order), test_baidu_pay.SHOP_KEY))
            self.assertEqual(self.post("/baidu/pay/notify", pay, FORM), (200, test_baidu_pay.OK_PAY))
            audit = test_baidu_pay.audit_fields(order, "B-" + order, 600)
            return form_body(baidu_signed(audit, test_baidu_pay.SHOP_KEY))
        self.sweep("/baidu/pay/refund-audit", body, FORM, test_baidu_pay.audit_answer(1, 600))
        # One decision per audit, however many failed tries came before it.
        self.assertEqual(self.d.query("SELECT count(*), count(DISTINCT refund_batch_id), "
                                      "sum(audit_status = 1) FROM baidu_refunds"),
                         [(self.runs, self.runs, self.runs)])

    def test_alipay_notification(self):
        def body():
            return form_body(test_alipay.signed(test_alipay.notify_fields()))
        self.sweep("/alipay/notify", body, FORM, b"success")

    def test_gateway_md5_and_rsa_notifications(self):
        for gw in (test_gateway.LOWER, test_gateway.RSA):
            def body():
                return form_body(gw.signed(test_gateway.notify_fields(gw)))
            self.sweep(gw.path, body, FORM, gw.ack)


if __name__ == "__main__":
    unittest.main()
