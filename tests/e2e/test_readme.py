"""The README's commands work exactly as written: every ```sh block after the
quick start is run (with bash -e) against a daemon started from
etc/demo.conf, with only the port, the store and the binaries' paths
substituted."""
import os
import re
import subprocess
import unittest

import harness

TOP = os.path.abspath(os.path.join(harness.HERE, "..", ".."))


def readme_blocks():
    with open(os.path.join(TOP, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    # The quick start's ./dev commands and the install line are not run here.
    return [b for b in blocks if "./dev " not in b and "autoreconf" not in b]


class Readme(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(TOP, "etc", "demo.conf")) as f:
            demo = f.read()
        self.d = harness.Daemon()
        conf = demo.replace("listen = 127.0.0.1:8080", "listen = 127.0.0.1:%d" % self.d.port)
        conf = conf.replace("path = ./var/payhookd.db", "path = %s" % self.d.db_path)
        self.hook_port = harness.free_port()   # the demo hook's receiver
        self.hook_out = os.path.join(self.d.dir, "hook.out")
        conf = conf.replace("127.0.0.1:8099", "127.0.0.1:%d" % self.hook_port)
        self.assertNotEqual(conf, demo)
        with open(self.d.conf, "w") as f:
            f.write(conf)
        # demo.conf names its keys relative to the top of the repository.
        cwd = os.getcwd()
        os.chdir(TOP)
        try:
            self.d.start()
        finally:
            os.chdir(cwd)

    def tearDown(self):
        self.assertEqual(self.d.stop(), 0)

    def substitute(self, block):
        block = block.replace("build/release/payhookctl", harness.PAYHOOKCTL)
        block = block.replace("127.0.0.1:8080", "127.0.0.1:%d" % self.d.port)
        block = block.replace("--port 8099", "--port %d" % self.hook_port)
        block = block.replace("/tmp/payhookd-hook.out", self.hook_out)
        block = block.replace("var/payhookd.db", self.d.db_path)
        return block.replace("etc/demo.conf", self.d.conf)

    def test_every_command_block_runs(self):
        blocks = readme_blocks()
        self.assertGreaterEqual(len(blocks), 8)
        for block in blocks:
            script = self.substitute(block)
            p = subprocess.run(["bash", "-e", "-c", script], cwd=TOP, capture_output=True, text=True,
                               timeout=120)
            self.assertEqual(p.returncode, 0, "README block failed:\n%s\n--- output:\n%s%s"
                             % (block, p.stdout, p.stderr))
        # What the blocks promise, seen in the store.
        self.assertEqual(self.d.query("SELECT decision, outcome FROM baidu_refunds_readable ORDER BY 1"),
                         [("approved", "refunded"), ("rejected", "pending")])
        kinds = {r[0] for r in self.d.query("SELECT provider FROM events")}
        self.assertEqual(kinds, {"baidu.tp", "baidu", "alipay", "gateway.demo"})
        self.assertEqual(self.d.query("SELECT count(*) FROM tp_ticket"), [(1,)])
        self.d.wait_rows("SELECT count(*) FROM rejections WHERE reason = 'bad_signature'", 1)
        # daily_summary adds up what events holds, per day, app, kind and status.
        self.assertEqual(
            self.d.query("SELECT app, kind, status, events, amount_fen, amount_yuan FROM daily_summary "
                         "WHERE provider = 'baidu' AND kind = 'pay_notify' ORDER BY status"),
            [(a, k, st, n, f, "%d.%02d" % (f // 100, f % 100)) for a, k, st, n, f in self.d.query(
                "SELECT app, kind, status, count(*), sum(amount_fen) FROM events WHERE verified = 1 "
                "AND provider = 'baidu' AND kind = 'pay_notify' GROUP BY status ORDER BY status")])
        self.assertGreater(self.d.query("SELECT sum(events) FROM daily_summary WHERE provider = 'baidu' "
                                        "AND kind = 'pay_notify'")[0][0], 1)
        # The demo hook's receiver checked a signature and the store says delivered.
        with open(self.hook_out) as f:
            self.assertRegex(f.read(), r"^verified delivery msg_\d+ ")
        # (the receiver has answered; the result is committed just after)
        self.d.wait_rows("SELECT count(*) >= 1 FROM deliveries WHERE hook = 'demo' "
                         "AND state = 'delivered'", 1)


if __name__ == "__main__":
    unittest.main()
