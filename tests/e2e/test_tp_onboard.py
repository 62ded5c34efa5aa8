"""End to end: a TP-managed app onboarded with no config edit (issue 10,
items 4 and 5). The config has only [baidu.tp] and [openapi] pointing at a
mock OpenAPI on 127.0.0.1: a ticket gives the TP token, an AUTHORIZED push
the app's tokens, APP_PAYMENT_CREATE_PAYMENT_PASS makes payhookd learn the
app's deal id, pmAppKey and platform public key from getbindservice; from
that commit on a pay notification for the deal verifies with the learned
key (and only with it), and is confirmed through the TP query path with
the app's token and the learned pmAppKey, also after a restart. A key that
does not parse is a failed job and no app."""
import time
import unittest

import harness
from test_hooks import ctl
from harness import Daemon, baidu_signed, form_body, tp_envelope
from test_baidu_pay import new_order_id, pay_fields
from test_tp_tokens import TokenCase, auth_push

APP = "14508451"
DEAL = "470193086"
PM_KEY = "MMMpmkey-learned"
KEY = harness.RsaKey(2048)
OTHER = harness.RsaKey(2048)
FORM = "application/x-www-form-urlencoded"


def bindservice(key_text):
    return {"pm_app_id": 9001, "app_name": "shop", "pm_app_key": PM_KEY,
            "platform_public_key": key_text, "deal_id": int(DEAL), "open_status": 2,
            "fail_reason": ""}


class Onboard(TokenCase):
    def setUp(self):
        super().setUp()
        self.mock.baidu_codes = {"code-1"}
        self.mock.baidu_bindservice["*"] = bindservice(KEY.spki_b64())
        self.push("ticket-one", 1700000000)
        self.wait("SELECT count(*) FROM tokens WHERE app = 'tp'", [(1,)])
        self.assertEqual(self.d.post("/baidu/tp/events", auth_push("AUTHORIZED", code="code-1")),
                         (200, b"success"))
        self.wait("SELECT count(*) FROM tokens WHERE app = '%s'" % APP, [(1,)])

    def pass_push(self, at="2026-12-07 10:00:00"):
        self.assertEqual(self.d.post("/baidu/tp/events", auth_push("APP_PAYMENT_CREATE_PAYMENT_PASS", at=at)),
                         (200, b"success"))

    def wait_learned(self, n):
        """The keys are in use once their commit is durable: the daemon says
        so (the row is readable a moment earlier, before the fdatasync)."""
        line = "app %s: keys learned" % APP
        deadline = time.time() + 15 * (4 if harness.VALGRIND else 1)
        while time.time() < deadline and self.d.logtext().count(line) < n:
            time.sleep(0.05)
        self.assertEqual(self.d.logtext().count(line), n, self.d.logtext()[-3000:])

    def pay(self, key, order=None):
        order = order or new_order_id()
        tp = "T-" + order[-8:]
        self.mock.baidu_orders[tp] = {"orderId": order, "status": 2, "totalMoney": 1000,
                                      "dealId": int(DEAL)}
        st, body = self.d.post("/baidu/pay/notify", form_body(baidu_signed(
            pay_fields(order, deal=DEAL, total=1000, tp_order=tp), key)), FORM)
        return st, body, order

    def test_a_learned_app_verifies_and_is_confirmed_with_no_config_edit(self):
        # before its keys are learned, the deal is unknown
        st, body, _ = self.pay(KEY)
        self.assertEqual(st, 401, body)
        self.pass_push()
        self.wait("SELECT app_id, deal_id, pm_app_key FROM app_keys", [(APP, DEAL, PM_KEY)])
        self.wait_learned(1)
        req = self.mock.last("baidu.getbindservice")
        self.assertEqual(req.params["access_token"], self.mock.baidu_issued[0]["access_token"])
        st, body, order = self.pay(KEY)
        self.assertEqual(st, 200, body)
        self.assertEqual(self.d.query("SELECT verified, app FROM events WHERE order_id = ?", order),
                         [(1, APP)])
        self.wait("SELECT confirmation FROM event_status WHERE order_id = '%s'" % order, [("confirmed",)])
        q = self.mock.last("baidu.find_order")
        self.assertEqual(q.path, "/rest/2.0/smartapp/pay/paymentservice/tp/findByTpOrderId")
        self.assertEqual((q.params["access_token"], q.params["pmAppKey"]),
                         (self.mock.baidu_issued[0]["access_token"], PM_KEY))
        # signed with another key: refused, nothing stored
        st, body, other = self.pay(OTHER)
        self.assertEqual(st, 401, body)
        self.assertEqual(self.d.query("SELECT count(*) FROM events WHERE order_id = ?", other), [(0,)])
        # a restart keeps the learned key
        self.assertEqual(self.d.stop(), 0, self.d.logtext())
        self.d = Daemon(self.daemon_config(self.mock), db_path=self.d.db_path)
        self.addCleanup(self.d.kill)
        self.d.start()
        st, body, order = self.pay(KEY)
        self.assertEqual(st, 200, body)
        self.wait("SELECT confirmation FROM event_status WHERE order_id = '%s'" % order, [("confirmed",)])
        # no token or code anywhere but tokens
        log = self.d.logtext()
        rows = str(self.d.query("SELECT endpoint, platform_code, outcome, detail, body FROM query_results"))
        for secret in [self.mock.baidu_tp_token, "code-1"] + [a[k] for a in self.mock.baidu_issued
                                                            for k in ("access_token", "refresh_token")]:
            self.assertNotIn(secret, log)
            self.assertNotIn(secret, rows)

    def test_a_bad_key_from_getbindservice_is_a_failed_job_and_no_app(self):
        self.mock.baidu_bindservice["*"] = bindservice("bm90IGEga2V5")  # "not a key"
        self.pass_push()
        self.wait("SELECT state FROM jobs WHERE kind = 'baidu.getbindservice'", [("failed",)])
        self.assertEqual(self.d.query("SELECT count(*) FROM app_keys"), [(0,)])
        self.assertIn("platform_public_key is not an RSA public key",
                      self.d.query("SELECT last_error FROM jobs WHERE kind = 'baidu.getbindservice'")[0][0])
        st, body, _ = self.pay(KEY)
        self.assertEqual(st, 401, body)

    def test_a_key_that_names_a_file_is_refused(self):
        self.mock.baidu_bindservice["*"] = bindservice("/etc/ssl/certs/ca-certificates.crt")
        self.pass_push()
        self.wait("SELECT state FROM jobs WHERE kind = 'baidu.getbindservice'", [("failed",)])
        self.assertIn("names a file",
                      self.d.query("SELECT last_error FROM jobs WHERE kind = 'baidu.getbindservice'")[0][0])

    def test_new_keys_replace_the_old_ones_at_once(self):
        self.pass_push()
        self.wait("SELECT count(*) FROM app_keys", [(1,)])
        self.wait_learned(1)
        self.mock.baidu_bindservice["*"] = bindservice(OTHER.spki_b64())
        self.pass_push(at="2026-12-07 11:00:00")
        self.wait("SELECT count(*) FROM jobs WHERE kind = 'baidu.getbindservice' AND state = 'done'", [(2,)])
        self.wait_learned(2)
        self.assertEqual(self.pay(OTHER)[0], 200)
        self.assertEqual(self.pay(KEY)[0], 401)

    def test_payhookctl_keys_refresh_learns_them_again(self):
        self.pass_push()
        self.wait_learned(1)
        self.mock.baidu_bindservice["*"] = bindservice(OTHER.spki_b64())
        rc, out, err = ctl(self.d, "keys", "refresh", APP)
        self.assertEqual((rc, out), (0, "getbindservice queued for app %s\n" % APP), err)
        self.wait("SELECT count(*) FROM jobs WHERE kind = 'baidu.getbindservice' AND state = 'done'", [(2,)])
        self.assertIsNone(self.d.query("SELECT event_id FROM jobs WHERE kind = 'baidu.getbindservice'"
                                       " ORDER BY id DESC LIMIT 1")[0][0])
        self.wait_learned(2)
        self.assertEqual(self.pay(OTHER)[0], 200)
        self.assertEqual(self.pay(KEY)[0], 401)
        self.assertIn("operator: keys of app %s asked for again" % APP, self.d.logtext())
        # an app without a token, and a malformed id: refused, nothing queued
        rc, out, err = ctl(self.d, "keys", "refresh", "99999")
        self.assertEqual(rc, 1)
        self.assertIn("app 99999 has no token in tokens", err)
        rc, out, err = ctl(self.d, "keys", "refresh", "1;2")
        self.assertEqual(rc, 1)
        self.assertIn("usage: keys refresh APP", err)
        rc, out, err = ctl(self.d, "keys", "refresh")
        self.assertEqual(rc, 2)
        self.assertEqual(self.d.query("SELECT count(*) FROM jobs WHERE kind = 'baidu.getbindservice'"), [(2,)])

    def test_tp_apps_shows_where_an_app_is_in_onboarding(self):
        self.mock.baidu_account_audit["*"] = {"status": 4, "verify_message": ""}
        self.mock.baidu_pay_service_audit["*"] = {"status": 1, "fail_reason": ""}
        self.assertEqual(self.d.post("/baidu/tp/events", auth_push("APP_PAYMENT_CREATE_ACCOUNT_PASS")),
                         (200, b"success"))
        self.assertEqual(self.d.post("/baidu/tp/events", auth_push("APP_PAYMENT_UPDATE_DEVELOP_CONFIG_PASS")),
                         (200, b"success"))
        self.wait("SELECT app_id, authorized, account_audit, develop_config_audit, pay_service_audit,"
                  " deal_id FROM tp_apps", [(APP, 1, "approved", "in review", None, None)])
        self.mock.baidu_pay_service_audit["*"] = {"status": 2, "fail_reason": ""}
        self.pass_push()
        self.wait("SELECT pay_service_audit, deal_id, keys_learned_at IS NOT NULL,"
                  " token_expires_at IS NOT NULL FROM tp_apps", [("approved", DEAL, 1, 1)])
        self.assertEqual(self.mock.count("baidu.account_audit"), 1)
        # each job points at the push that caused it
        self.assertEqual(self.d.query(
            "SELECT e.status FROM jobs j JOIN events e ON e.id = j.event_id"
            " WHERE j.kind = 'baidu.getbindservice'"), [("APP_PAYMENT_CREATE_PAYMENT_PASS",)])
        self.assertEqual(self.d.post("/baidu/tp/events", auth_push("UNAUTHORIZED")), (200, b"success"))
        self.assertEqual(self.d.query("SELECT authorized, token_expires_at FROM tp_apps"), [(0, None)])

    def test_prune_keeps_what_tp_apps_shows(self):
        """The audit answers are the app's onboarding state, not history:
        compacting old pushes keeps them."""
        self.mock.baidu_account_audit["*"] = {"status": 4, "verify_message": ""}
        self.assertEqual(self.d.post("/baidu/tp/events", auth_push("APP_PAYMENT_CREATE_ACCOUNT_PASS")),
                         (200, b"success"))
        shown = "SELECT app_id, account_audit FROM tp_apps"
        self.wait(shown, [(APP, "approved")])
        self.d.age_events(40)
        rc, out, err = ctl(self.d, "prune", "--older-than", "30")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.d.query("SELECT pruned_at IS NOT NULL FROM events"
                                      " WHERE status = 'APP_PAYMENT_CREATE_ACCOUNT_PASS'"), [(1,)])
        self.assertEqual(self.d.query(shown), [(APP, "approved")])


if __name__ == "__main__":
    unittest.main()
