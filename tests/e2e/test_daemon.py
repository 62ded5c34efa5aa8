"""End to end: the daemon itself -- command line, config errors, reload,
systemd notification, watchdog, socket activation, connection limits."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import unittest

import harness
from harness import Daemon, DaemonTest, tp_envelope

PATH = "/baidu/tp/events"
EVENT = {"appId": 1, "tpAppId": 2, "event": "APP_PAYMENT_CREATE_ACCOUNT_PASS", "eventTime": "2026-01-01 00:00:00"}


def run(*args):
    p = subprocess.run([harness.PAYHOOKD] + list(args), capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def write(path, text):
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


class CommandLine(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="payhookd-cli-")

    def test_version(self):
        rc, out = run("--version")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^payhookd \d+\.\d+\.\d+")

    def test_check_valid(self):
        conf = write(os.path.join(self.dir, "ok.conf"), """
            [server]
            listen = 127.0.0.1:1
            [store]
            path = /nonexistent/never-opened.db
            """)
        rc, out = run("-c", conf, "--check")
        self.assertEqual((rc, out.strip()), (0, conf + ": configuration OK"))

    def test_check_names_file_line_and_key(self):
        conf = write(os.path.join(self.dir, "bad.conf"), """
            [server]
            listen = 127.0.0.1:8080
            max_body = lots
            [store]
            path = x.db
            """)
        rc, out = run("--config", conf, "--check")
        self.assertEqual(rc, 1)
        self.assertIn(conf + ":4: [server] max_body:", out)

    def test_unknown_key_is_an_error(self):
        conf = write(os.path.join(self.dir, "bad.conf"), """
            [server]
            listen = 127.0.0.1:8080
            [store]
            path = x.db
            sync = full
            """)
        rc, out = run("-c", conf, "--check")
        self.assertEqual(rc, 1)
        self.assertIn(conf + ":6: [store] sync: unknown key", out)

    def test_missing_required(self):
        conf = write(os.path.join(self.dir, "bad.conf"), "[server]\nlisten = 127.0.0.1:8080\n")
        rc, out = run("-c", conf, "--check")
        self.assertEqual(rc, 1)
        self.assertIn("[store] path is required", out)

    def test_bad_key_material_is_caught_by_check(self):
        conf = write(os.path.join(self.dir, "bad.conf"), """
            [server]
            listen = 127.0.0.1:8080
            [store]
            path = x.db
            [baidu.app shop]
            deal_id = 1
            platform_public_key = bm90IGEga2V5
            """)
        rc, out = run("-c", conf, "--check")
        self.assertEqual(rc, 1)
        self.assertIn(conf + ":8: [baidu.app shop] platform_public_key:", out)

    def test_no_arguments(self):
        rc, out = run()
        self.assertEqual(rc, 1)
        self.assertIn("-c FILE", out)

    def test_unopenable_store_fails_to_start(self):
        d = Daemon(db_path="/nonexistent/dir/x.db")
        d.start(expect_fail=True)
        self.assertEqual(d.proc.wait(30), 1)
        self.assertIn("cannot open store /nonexistent/dir/x.db", d.logtext())

    def test_a_callback_path_on_a_builtin_path_is_a_config_error(self):
        from test_hooks import APP
        for path, conf in (("/readyz", harness.tp_config(path="/readyz")),
                           ("/metrics", "[baidu]\npay_notify_path = /metrics\n" + APP)):
            d = Daemon(conf)
            d.start(expect_fail=True)
            self.assertEqual(d.proc.wait(30), 1, d.logtext())
            self.assertIn("path %s is payhookd's own" % path, d.logtext())


class Reload(DaemonTest):
    extra_config = harness.tp_config()

    def test_sighup_swaps_keys_and_refuses_a_bad_config(self):
        self.assertEqual(self.d.post(PATH, tp_envelope(EVENT)), (200, b"success"))
        # New token: pushes signed with the old one are refused after SIGHUP.
        with open(self.d.conf) as f:
            good = f.read()
        with open(self.d.conf, "w") as f:
            f.write(good.replace(harness.TP_TOKEN, "rotated-token"))
        self.d.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while time.time() < deadline and "configuration reloaded" not in self.d.logtext():
            time.sleep(0.05)
        self.assertIn("configuration reloaded", self.d.logtext())
        e2 = dict(EVENT, appId=2)
        self.assertEqual(self.d.post(PATH, tp_envelope(e2))[0], 401)
        self.assertEqual(self.d.post(PATH, tp_envelope(e2, token="rotated-token")), (200, b"success"))
        # A broken config is refused and the running one kept.
        with open(self.d.conf, "w") as f:
            f.write(good + "\n[server]\nbogus = 1\n")
        self.d.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while time.time() < deadline and "reload refused" not in self.d.logtext():
            time.sleep(0.05)
        self.assertIn("reload refused", self.d.logtext())
        e3 = dict(EVENT, appId=3)
        self.assertEqual(self.d.post(PATH, tp_envelope(e3, token="rotated-token")), (200, b"success"))


class ReloadRejectionsKeep(DaemonTest):
    extra_config = harness.tp_config()

    def test_a_smaller_rejections_keep_applies_on_reload(self):
        for i in range(15):
            self.assertEqual(self.d.post(PATH, b"{not json")[0], 400)
        self.d.wait_rows("SELECT count(*) FROM rejections", 15)
        with open(self.d.conf) as f:
            conf = f.read()
        self.assertNotIn("rejections_keep", conf)
        with open(self.d.conf, "w") as f:
            f.write(conf.replace("[store]\n", "[store]\nrejections_keep = 10\n", 1))
        self.d.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while time.time() < deadline and "configuration reloaded" not in self.d.logtext():
            time.sleep(0.05)
        self.assertIn("rejections_keep is now 10", self.d.logtext())
        self.assertEqual(self.d.post(PATH, b"{not json")[0], 400)
        # the next rejection trims to the new cap: the newest 10 stay
        self.d.wait_rows("SELECT count(*) FROM rejections", 10)
        self.assertEqual(self.d.query("SELECT count(*), max(id) - min(id) FROM rejections"), [(10, 9)])


class Systemd(unittest.TestCase):
    """sd_notify, the watchdog and socket activation, without systemd: the
    test plays the service manager."""

    def notify_socket(self):
        path = os.path.join(tempfile.mkdtemp(prefix="payhookd-notify-"), "notify")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(0.2)
        return s, path

    def read_messages(self, s, until, timeout=20):
        msgs = []
        deadline = time.time() + timeout * (4 if harness.VALGRIND else 1)
        while time.time() < deadline:
            try:
                msgs.append(s.recv(4096).decode())
            except socket.timeout:
                pass
            if any(until in m for m in msgs):
                break
        return msgs

    def test_ready_status_watchdog_stopping(self):
        s, path = self.notify_socket()
        d = Daemon(harness.tp_config())
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
        # WATCHDOG_PID must be the daemon's pid: leave it unset (any pid is accepted).
        d.start(env=env)
        msgs = self.read_messages(s, "WATCHDOG=1")
        text = "\n".join(msgs)
        self.assertIn("READY=1", text)
        self.assertIn("STATUS=", text)
        self.assertIn("WATCHDOG=1", text)
        self.assertEqual(d.stop(), 0)
        msgs = self.read_messages(s, "STOPPING=1", timeout=5)
        self.assertIn("STOPPING=1", "\n".join(msgs))

    def test_socket_activation_overrides_listen(self):
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(64)
        port = lsock.getsockname()[1]
        d = Daemon(harness.tp_config())  # its config listens elsewhere
        argv = [harness.PAYHOOKD, "-c", d.conf]
        if harness.VALGRIND:
            argv = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
                    "--log-file=" + d.vg_log] + argv
        log = open(d.log_path, "ab")
        pid = os.fork()
        if pid == 0:
            if lsock.fileno() != 3:
                os.dup2(lsock.fileno(), 3)
            os.set_inheritable(3, True)
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
            os.execve(argv[0] if not harness.VALGRIND else "/usr/bin/valgrind", argv, env)
        lsock.close()
        try:
            d.port = port
            deadline = time.time() + (60 if harness.VALGRIND else 10)
            while time.time() < deadline:
                try:
                    if d.request("GET", "/healthz", timeout=2)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            self.assertEqual(d.post(PATH, tp_envelope(EVENT)), (200, b"success"))
            self.assertIn("socket activation", d.logtext())
        finally:
            os.kill(pid, signal.SIGTERM)
            _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, d.logtext())


class PerAddressLimit(DaemonTest):
    # Loopback is not trusted here, so the per-address limit applies to it.
    server_extra = "trusted_proxies =\nmax_connections_per_ip = 4\n"
    extra_config = harness.tp_config()

    def hold_one(self):
        deadline = time.time() + (20 if harness.VALGRIND else 5)
        while True:
            c = socket.create_connection(("127.0.0.1", self.d.port))
            c.settimeout(60 if harness.VALGRIND else 10)
            try:
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                head = c.recv(100)
            except ConnectionResetError:
                head = b""
            if head.startswith(b"HTTP/1.1 200"):
                return c
            c.close()
            self.assertLess(time.time(), deadline, "a connection under the limit was refused")
            time.sleep(0.1)

    def test_limit_refuses_the_extra_connection_and_recovers(self):
        # Each held connection proves it was accepted (and so counted) by
        # getting an answer, then stays open as an idle keep-alive. Holding
        # them any other way races the daemon: a connection the harness has
        # just closed can still be counted when the fourth one arrives.
        # One refused while a connection closed just before (the harness's
        # start-up probe, on a loaded machine) is still counted is tried again.
        held = []
        for _ in range(4):
            held.append(self.hold_one())
        # Probe until the fifth one is refused (each probe that gets in is
        # closed again, and may have been let in while a closed connection was
        # still being counted down).
        refused = False
        deadline = time.time() + (20 if harness.VALGRIND else 5)
        while not refused and time.time() < deadline:
            try:
                c = socket.create_connection(("127.0.0.1", self.d.port), timeout=5)
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                refused = not c.recv(100)
                c.close()
            except OSError:
                refused = True
            if not refused:
                time.sleep(0.1)
        self.assertTrue(refused, "a fifth connection from one address was served")
        for c in held:
            c.close()
        time.sleep(0.3 if not harness.VALGRIND else 2)
        self.assertEqual(self.d.request("GET", "/healthz")[0], 200)
        self.assertIn("max_connections_per_ip", self.d.logtext())


class SlowClient(DaemonTest):
    server_extra = "connection_timeout = 1\n"
    extra_config = harness.tp_config()

    def test_a_stalled_body_is_cut_off_and_others_are_served(self):
        c = socket.create_connection(("127.0.0.1", self.d.port))
        c.sendall(b"POST /baidu/tp/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        self.assertEqual(self.d.post(PATH, tp_envelope(EVENT)), (200, b"success"))
        c.settimeout(10)
        data = b""
        try:
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        self.assertNotIn(b"success", data)
        self.assertEqual(self.count("events"), 1)


if __name__ == "__main__":
    unittest.main()
