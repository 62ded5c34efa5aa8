"""End to end: crash consistency. The daemon is loaded with unique signed
callbacks (Baidu TP pushes and Baidu cashier pay notifications) from several
client threads and killed with SIGKILL at a random moment, round after
round, on the same store. After every restart the store must hold every
acknowledged callback exactly once, every unanswered one at most once, and
nothing it was never sent; SQLite's integrity check must pass and the
daemon must start cleanly (recovering the WAL left by the kill).

Every pay notification also makes a follow-up job (answered by a mock
OpenAPI started here): each stored one has exactly one job, no job lacks
its event, and after the last restart every job ends done and confirmed
(a job cut off by a kill runs again).

Every event is also forwarded to a hook (a receiver started here): each
stored event has exactly one delivery, created with it, and after the last
restart every delivery ends delivered, the receiver having had each one
under its webhook-id, with one body per id however often it was retried.

Environment:
  PAYHOOK_CRASH_ROUNDS   kill -9 rounds (default 20)
  PAYHOOK_CRASH_SEED     the random seed (printed with the results), to replay a run
  PAYHOOK_CRASH_VERBOSE  "1": one line of figures per round on stderr
"""
import collections
import http.client
import os
import random
import sys
import threading
import time
import unittest

import harness
from harness import RsaKey, baidu_signed, form_body, tp_envelope
from hook_receiver import HookReceiver, new_secret
from mock_openapi import MockOpenAPI

ROUNDS = int(os.environ.get("PAYHOOK_CRASH_ROUNDS") or 20)
SEED = int(os.environ.get("PAYHOOK_CRASH_SEED") or random.randrange(2**32))
VERBOSE = os.environ.get("PAYHOOK_CRASH_VERBOSE") == "1"
CLIENTS = 8
MAX_LOAD_SECONDS = 0.6

TP_PATH, PAY_PATH = "/baidu/tp/events", "/baidu/pay/notify"
FORM = "application/x-www-form-urlencoded"
TP_OK = b"success"
PAY_OK = b'{"errno":0,"msg":"success","data":{"isConsumed":2}}'

KEY = RsaKey(2048)
DEAL = "880001"
CONFIG = harness.tp_config() + """
[baidu.app crash]
deal_id = %s
platform_public_key = %s
app_key = crash-pm-key
access_token = crash-token

[openapi]
baidu_base = %s
workers = 2
retry_base = 0
retry_max = 1
max_attempts = 20

[hook crash]
url = %s
events = *
secret = %s
retry_base = 0
retry_max = 1
max_attempts = 1000
"""
HOOK_SECRET, HOOK_KEY = new_secret()

# Outcomes of one send.
ACKED, CUT, REFUSED, OTHER = "acked", "cut", "refused", "other"


class Callback:
    """One distinct callback and what happened to each of its sends."""

    def __init__(self, kind, ident, path, body, content_type, ok):
        self.kind, self.ident = kind, ident  # ident: TP appId / Baidu orderId
        self.path, self.body, self.content_type, self.ok = path, body, content_type, ok
        self.acked = 0      # sends answered with the platform's success body
        self.maybe = 0      # sends that may have reached the store without an answer
        self.seen = False   # observed stored after a restart: committed, must stay
        self.last = None    # outcome of the latest send

    def key(self):
        return (self.kind, self.ident)


def make_callback(n):
    """The n-th distinct callback of the run: TP push or Baidu pay notification."""
    if n % 2:
        app = 7_000_000_000 + n
        # a code-audit event: it brings no job (payment-service events bring
        # audit queries, which have no token to ask with here)
        msg = {"appId": app, "tpAppId": 10086, "event": "PACKAGE_AUDIT_PASS",
               "eventTime": "2026-01-01 00:00:00", "reason": "crash-%d" % n}
        return Callback("tp", str(app), TP_PATH, tp_envelope(msg), "application/json", TP_OK)
    order = str(5 * 10**17 + n)  # > 2^53, unique per run
    fields = [("userId", "1"), ("orderId", order), ("unitPrice", "100"), ("count", "1"),
              ("totalMoney", str(100 + n)), ("payMoney", str(100 + n)), ("promoMoney", "0"),
              ("hbMoney", "0"), ("hbBalanceMoney", "0"), ("giftCardMoney", "0"), ("dealId", DEAL),
              ("payTime", "1573099210"), ("promoDetail", ""), ("payType", "1087"),
              ("partnerId", "6000001"), ("status", "2"), ("tpOrderId", "crash-%d" % n),
              ("returnData", "")]
    return Callback("baidu", order, PAY_PATH, form_body(baidu_signed(fields, KEY)), FORM, PAY_OK)


def send(port, cb, timeout=10):
    """POST a callback once; the outcome (ACKED, CUT, REFUSED, OTHER) and the status."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            c.connect()
        except OSError:
            return REFUSED, None
        try:
            c.request("POST", cb.path, body=cb.body, headers={"Content-Type": cb.content_type})
            r = c.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            return CUT, None
        if r.status == 200 and data == cb.ok:
            return ACKED, 200
        return OTHER, r.status
    finally:
        c.close()


@unittest.skipIf(harness.VALGRIND, "crash consistency is not run under valgrind: kill -9 of valgrind "
                                   "proves nothing about payhookd's store and is slow; this class runs "
                                   "in the debug and ASan passes")
class CrashConsistency(unittest.TestCase):

    def setUp(self):
        self.rng = random.Random(SEED)
        self.mock = MockOpenAPI().start()
        self.addCleanup(self.mock.stop)
        self.recv = HookReceiver().start()
        self.addCleanup(self.recv.stop)
        self.d = harness.Daemon(CONFIG % (DEAL, KEY.spki_b64(), self.mock.base, self.recv.url, HOOK_SECRET))
        self.addCleanup(self.d.kill)
        self.ledger = collections.OrderedDict()  # key -> Callback
        self.next_n = 0
        self.lock = threading.Lock()
        self.stats = collections.Counter()

    def note(self, text):
        if VERBOSE:
            sys.stderr.write("\n  crash: " + text)
            sys.stderr.flush()

    def fail_with(self, what, round_no):
        self.fail("round %d (seed %d, replay with PAYHOOK_CRASH_SEED=%d): %s\n--- log tail ---\n%s"
                  % (round_no, SEED, SEED, what, self.d.logtext()[-3000:]))

    def new_callback(self):
        with self.lock:
            n = self.next_n
            self.next_n += 1
        cb = make_callback(n)
        if cb.kind == "baidu":   # what the platform knows of it
            self.mock.baidu_orders["crash-%d" % n] = dict(orderId=cb.ident, status=2, totalMoney=100 + n)
        return cb

    def record(self, cb, outcome, status):
        with self.lock:
            self.ledger[cb.key()] = cb
            cb.last = outcome
            if outcome == ACKED:
                cb.acked += 1
            else:
                cb.maybe += 1
            self.stats[outcome] += 1
            if outcome == OTHER:
                self.stats["status_%s" % status] += 1

    # ---- the three phases of a round ----

    def start(self, round_no):
        """Start on the store left by the kill; it must come up cleanly."""
        try:
            size = os.path.getsize(self.d.log_path)
        except OSError:
            size = 0
        try:
            self.d.start()
        except AssertionError as e:
            self.fail_with("payhookd did not restart after kill -9: %s" % e, round_no)
        with open(self.d.log_path, "rb") as f:
            f.seek(size)
            lines = f.read().decode("utf-8", "replace").splitlines()
        bad = [l for l in lines if l.startswith(("payhookd: error:", "payhookd: crit:", "payhookd: alert:",
                                                 "payhookd: emerg:"))]
        if bad:
            self.fail_with("errors logged while starting on the crashed store: %s" % bad, round_no)
        st = self.d.request("GET", "/readyz")[0]
        if st != 200:
            self.fail_with("/readyz answered %d after the restart" % st, round_no)

    def verify(self, round_no):
        """The store against the ledger; returns {key: deliveries} of what is stored."""
        d = self.d
        integrity = d.query("PRAGMA integrity_check")
        if integrity != [("ok",)]:
            self.fail_with("PRAGMA integrity_check: %r" % integrity, round_no)
        dup_keys = d.query("SELECT dedupe_key, count(*) FROM events GROUP BY dedupe_key HAVING count(*) > 1")
        if dup_keys:
            self.fail_with("dedupe_key stored more than once: %r" % dup_keys[:5], round_no)
        stored = collections.Counter()
        deliveries = {}
        for provider, app, order_id, n in d.query("SELECT provider, app, order_id, deliveries FROM events"):
            key = ("tp", app) if provider == "baidu.tp" else (provider, order_id)
            stored[key] += 1
            deliveries[key] = n
        dups = [k for k, n in stored.items() if n > 1]
        if dups:
            self.fail_with("the same callback stored more than once (by order id / app id): %r" % dups[:5],
                           round_no)
        phantoms = [k for k in stored if k not in self.ledger]
        if phantoms:
            self.fail_with("rows for callbacks never sent: %r" % phantoms[:5], round_no)
        for key, cb in self.ledger.items():
            here = stored.get(key, 0)
            if (cb.acked or cb.seen) and here != 1:
                self.fail_with("%s %s was %s but is not stored after the restart"
                               % (cb.kind, cb.ident, "acknowledged" if cb.acked else "stored before"),
                               round_no)
            if here:
                cb.seen = True
                lo, hi = max(1, cb.acked), cb.acked + cb.maybe
                if not lo <= deliveries[key] <= hi:
                    self.fail_with("%s %s: deliveries = %d, but it was acknowledged %d times and sent "
                                   "unanswered %d times (expected %d..%d)"
                                   % (cb.kind, cb.ident, deliveries[key], cb.acked, cb.maybe, lo, hi),
                                   round_no)
        self.verify_jobs(round_no)
        return deliveries

    def verify_jobs(self, round_no):
        """Exactly one follow-up job per stored pay notification, none without one."""
        bad = self.d.query("SELECT e.id, count(j.id) FROM events e LEFT JOIN jobs j ON j.event_id = e.id"
                           " AND j.kind NOT LIKE 'hook.%' WHERE e.provider = 'baidu' GROUP BY e.id"
                           " HAVING count(j.id) != 1")
        if bad:
            self.fail_with("pay notifications without exactly one job: %r" % bad[:5], round_no)
        orphans = self.d.query("SELECT j.id FROM jobs j LEFT JOIN events e ON e.id = j.event_id"
                               " WHERE e.id IS NULL OR (e.provider != 'baidu' AND j.kind NOT LIKE 'hook.%')")
        if orphans:
            self.fail_with("jobs without their event: %r" % orphans[:5], round_no)
        bad = self.d.query("SELECT e.id, count(d.id) FROM events e LEFT JOIN deliveries d ON d.event_id = e.id"
                           " GROUP BY e.id HAVING count(d.id) != 1")
        if bad:
            self.fail_with("events without exactly one delivery: %r" % bad[:5], round_no)

    def wait_jobs_end(self):
        """After the last restart every job ends, confirmed."""
        deadline = time.time() + 120
        while time.time() < deadline:
            left = self.d.query("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")[0][0]
            if not left:
                break
            time.sleep(0.2)
        ends = dict(self.d.query("SELECT coalesce(outcome, state), count(*) FROM jobs"
                                 " WHERE kind NOT LIKE 'hook.%' GROUP BY 1"))
        self.assertEqual(set(ends), {"confirmed"}, "jobs did not all end confirmed: %r\n%s"
                         % (ends, self.d.logtext()[-3000:]))
        return ends["confirmed"]

    def verify_deliveries(self):
        """Every delivery ended delivered, and the receiver had each one under
        its id, signed, with the same body on every try."""
        states = dict(self.d.query("SELECT state, count(*) FROM deliveries GROUP BY 1"))
        self.assertEqual(set(states), {"delivered"}, states)
        ids = {"msg_%d" % r[0] for r in self.d.query("SELECT id FROM deliveries")}
        bodies = collections.defaultdict(set)
        for g in list(self.recv.deliveries):
            bodies[g.id].add(g.body)
            self.assertTrue(g.verifies_with(HOOK_KEY), g.id)
        self.assertEqual(ids - set(bodies), set(), "deliveries the receiver never had")
        self.assertEqual(set(bodies) - ids, set(), "deliveries the store does not know")
        self.assertEqual([i for i, b in bodies.items() if len(b) != 1], [], "ids sent with two bodies")
        return len(ids), len(self.recv.deliveries)

    def resend(self, round_no, deliveries):
        """Resend the callbacks cut off by the last kill, and a few acknowledged ones,
        as the platform would: each is answered success and counted once more."""
        unanswered = [cb for cb in self.ledger.values() if cb.last in (CUT, REFUSED, OTHER)]
        cut = [cb for cb in unanswered if cb.last == CUT]
        picks = cut + self.rng.sample([cb for cb in unanswered if cb.last != CUT],
                                      min(5, len(unanswered) - len(cut)))
        acked = [cb for cb in self.ledger.values() if cb.last == ACKED]
        picks += self.rng.sample(acked, min(5, len(acked)))
        before = {cb.key(): deliveries.get(cb.key(), 0) for cb in picks}
        for cb in picks:
            outcome, status = send(self.d.port, cb)
            if outcome != ACKED:
                self.fail_with("resending %s %s after the restart: %s (status %s)"
                               % (cb.kind, cb.ident, outcome, status), round_no)
            self.record(cb, outcome, status)
        after = self.verify(round_no)
        for cb in picks:
            was = before[cb.key()]
            want = was + 1
            if after.get(cb.key()) != want:
                self.fail_with("resent %s %s: deliveries %r, expected %d (%s)"
                               % (cb.kind, cb.ident, after.get(cb.key()), want,
                                  "a redelivery" if was else "new"), round_no)
            if cb in cut:
                self.stats["cut_resent_redelivery" if was else "cut_resent_new"] += 1
            else:
                self.stats["resent_redelivery" if was else "resent_new"] += 1
        return len(picks)

    def load_and_kill(self, round_no):
        """Client threads send new callbacks until the daemon is killed at a random moment."""
        stop = threading.Event()
        port = self.d.port

        def client():
            while not stop.is_set():
                cb = self.new_callback()
                outcome, status = send(port, cb)
                self.record(cb, outcome, status)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        delay = self.rng.uniform(0.02, MAX_LOAD_SECONDS)
        time.sleep(delay)
        # No new requests from here on; those in flight are cut off by the kill.
        # (Connecting to the dead port could also, rarely, self-connect a client
        # socket to it and keep the daemon from listening again.)
        stop.set()
        self.d.proc.kill()  # SIGKILL
        self.d.proc.wait()
        self.d.log.close()
        for t in threads:
            t.join(30)
        self.assertFalse(any(t.is_alive() for t in threads), "a client thread hung after the kill")
        wal = self.d.db_path + "-wal"
        return delay, os.path.getsize(wal) if os.path.exists(wal) else 0

    def test_kill9_under_load_loses_and_duplicates_nothing(self):
        t_start = time.time()
        per_round = []
        for r in range(ROUNDS + 1):
            self.start(r)
            deliveries = self.verify(r)
            resent = self.resend(r, deliveries) if r else 0
            if r == ROUNDS:
                break
            before = dict(self.stats)
            delay, wal = self.load_and_kill(r)
            got = {k: self.stats[k] - before.get(k, 0) for k in (ACKED, CUT, REFUSED, OTHER)}
            per_round.append(got[ACKED])
            self.note("round %2d: killed after %.3f s: %4d acked, %d cut off, %d refused, %d other; "
                      "WAL %d bytes at the kill; %d resent after the previous restart"
                      % (r, delay, got[ACKED], got[CUT], got[REFUSED], got[OTHER], wal, resent))
        confirmed = self.wait_jobs_end()
        hooked, sent = self.verify_deliveries()
        self.assertEqual(self.d.stop(), 0, self.d.logtext()[-3000:])
        stored = self.d.query("SELECT count(*), sum(deliveries) FROM events")[0]
        cut_stored = self.stats["cut_resent_redelivery"]
        summary = ("seed %d, %d rounds in %.1f s: %d callbacks, %d stored (%d deliveries); %d sends acked "
                   "(per round min %d, median %d, max %d); %d cut off by the kill (%d of them had been "
                   "committed: resent = redelivery, %d not: resent = new); %d refused; %d other answers; "
                   "%d acknowledged ones resent as redeliveries; %d follow-up jobs, all confirmed; "
                   "%d hook deliveries, all delivered (%d requests)"
                   % (SEED, ROUNDS, time.time() - t_start, len(self.ledger), stored[0], stored[1] or 0,
                      self.stats[ACKED], min(per_round or [0]), sorted(per_round or [0])[len(per_round) // 2],
                      max(per_round or [0]), self.stats[CUT], cut_stored, self.stats["cut_resent_new"],
                      self.stats[REFUSED], self.stats[OTHER], self.stats["resent_redelivery"], confirmed,
                      hooked, sent))
        sys.stderr.write("\n  crash: " + summary + " ... ")
        sys.stderr.flush()
        # Only 503 (store or queue unavailable) may answer a valid callback.
        others = {k: v for k, v in self.stats.items() if k.startswith("status_") and k != "status_503"}
        self.assertEqual(others, {}, "valid callbacks answered with an error: " + summary)
        self.assertGreater(self.stats[ACKED], ROUNDS, "the load did not get through: " + summary)
        self.assertEqual(stored[0], len([cb for cb in self.ledger.values() if cb.seen]), summary)


if __name__ == "__main__":
    unittest.main()
