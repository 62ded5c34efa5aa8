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
wrong answer in the plain build; the ASan build runs it too, and stops at
the first bad access."""
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
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* $OOM_CTL is a page shared with the test: word 0 counts allocations down
 * while it is positive, and the one that takes it to 0 fails; word 1 is set
 * to 1 when that happened. The real allocator is the next one in the
 * lookup order: glibc's, or the sanitizer's in an ASan build. */
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int *ctl;

static void oom_resolve(void)
{
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
}

static int resolving; /* not thread-local: TLS is not set up that early */
static void oom_resolve_once(void)
{
    if (resolving)
        return;
    resolving = 1;
    oom_resolve();
    resolving = 0;
}

__attribute__((constructor)) static void oom_init(void)
{
    const char *path = getenv("OOM_CTL");
    int fd = path ? open(path, O_RDWR) : -1;

    if (!real_malloc)
        oom_resolve_once();
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

/* dlsym itself may allocate before the pointers are set: from a small
 * static pool, never freed (it is used only then). */
static char boot[4096];
static size_t boot_used;
static void *boot_alloc(size_t n)
{
    void *p = boot + boot_used;
    boot_used += (n + 15) & ~(size_t)15;
    return boot_used <= sizeof(boot) ? p : NULL;
}

void *malloc(size_t n)
{
    if (!real_malloc)
        oom_resolve_once();
    if (!real_malloc)
        return boot_alloc(n);
    return oom_now() ? NULL : real_malloc(n);
}
void *calloc(size_t k, size_t n)
{
    if (!real_calloc)
        oom_resolve_once();
    if (!real_calloc)
        return boot_alloc(k * n); /* static: already zero */
    return oom_now() ? NULL : real_calloc(k, n);
}
static int is_boot(const void *p)
{
    return (const char *)p >= boot && (const char *)p < boot + sizeof(boot);
}
void *realloc(void *p, size_t n)
{
    if (!real_realloc || is_boot(p))
        return NULL; /* not during start-up */
    return oom_now() ? NULL : real_realloc(p, n);
}
void free(void *p)
{
    if (p && !is_boot(p) && real_free)
        real_free(p);
}
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
        # The platforms' OpenAPIs at a closed loopback port: their calls fail
        # at once, and no resolver thread starts while allocations fail.
        closed = harness.free_port()
        openapi = ("\n[openapi]\nbaidu_base = http://127.0.0.1:%d\n"
                   "alipay_gateway = http://127.0.0.1:%d/gateway.do\n" % (closed, closed))
        config = (harness.tp_config() + openapi + test_baidu_pay.CONFIG + test_alipay.CONFIG
                  + test_gateway.CONFIG + hook)
        self.d = harness.Daemon(config)
        # Under ASan the shim comes first in the lookup order and calls the
        # sanitizer's allocator; leaks that third-party libraries make on
        # their own failure paths are not what this test is about.
        self.env = harness.preload_env(self.shim, asan_extra="detect_leaks=0",
                                       OOM_CTL=self.ctl_path, MALLOC_PERTURB_="165",
                                       MALLOC_CHECK_="3")
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
