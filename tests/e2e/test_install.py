"""make install, as an operator deploying payhookd under systemd runs it: the
binaries, units, sysusers.d entry, example configuration, manual pages and
nginx snippet land where the build was configured to put them; the units name
the installed paths (not /usr/local by accident) and keep their hardening;
systemd-analyze finds the installed units clean; an existing configuration is
never overwritten, and make uninstall takes back exactly what it installed.
It installs the build under test (DESTDIR into a temporary directory)."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness

TOP = os.path.abspath(os.path.join(harness.HERE, "..", ".."))
BUILD = os.path.dirname(os.path.abspath(harness.PAYHOOKD))
# Under make check (and distcheck) the parent make's flags are in the
# environment; the makes run here must not inherit its jobserver or options.
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
DIRS = ["sbindir", "bindir", "sysconfdir", "docdir", "mandir", "systemdsystemunitdir", "sysusersdir"]


def make_vars(names):
    """The build's installation directories, fully expanded, as make sees them."""
    rules = "print:\n" + "".join("\t@echo '%s=$(%s)'\n" % (n, n) for n in names)
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", BUILD, "-f", "Makefile", "-f", "-", "print"],
                       input=rules, capture_output=True, text=True, check=True, env=MAKE_ENV)
    found = dict(re.findall(r"^(\w+)=(.*)$", r.stdout, re.M))
    if sorted(found) != sorted(names):
        raise AssertionError("make did not print %s:\n%s%s" % (names, r.stdout, r.stderr))
    return found


def make(dest, target):
    r = subprocess.run(["make", "-s", "-C", BUILD, target, "DESTDIR=" + dest], capture_output=True, text=True,
                       env=MAKE_ENV)
    if r.returncode != 0:
        raise AssertionError("make %s failed:\n%s%s" % (target, r.stdout, r.stderr))


def files_under(root):
    return sorted("/" + os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.v = make_vars(DIRS)
        cls.dest = tempfile.mkdtemp(prefix="payhookd-install-")
        # An operator's configuration, there before the install.
        conf_dir = cls.dest + cls.v["sysconfdir"] + "/payhookd"
        os.makedirs(conf_dir)
        cls.own_conf = conf_dir + "/payhookd.conf"
        with open(cls.own_conf, "w") as f:
            f.write("; mine\n")
        make(cls.dest, "install")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def path(self, var, name):
        return self.dest + self.v[var] + "/" + name

    def unit(self, name):
        with open(self.path("systemdsystemunitdir", name)) as f:
            return f.read()

    def test_every_file_lands_where_configured(self):
        v = self.v
        expected = sorted(os.path.normpath(p) for p in [
            v["sbindir"] + "/payhookd", v["bindir"] + "/payhookctl",
            v["sysconfdir"] + "/payhookd/payhookd.conf", v["sysconfdir"] + "/payhookd/payhookd.conf.example",
            v["systemdsystemunitdir"] + "/payhookd.service", v["systemdsystemunitdir"] + "/payhookd.socket",
            v["sysusersdir"] + "/payhookd.conf",
            v["mandir"] + "/man1/payhookctl.1", v["mandir"] + "/man5/payhookd.conf.5",
            v["mandir"] + "/man8/payhookd.8",
            v["docdir"] + "/README.md", v["docdir"] + "/operations.md",
            v["docdir"] + "/payhookd.rules.yml", v["docdir"] + "/nginx/payhookd.conf"])
        self.assertEqual(files_under(self.dest), expected)
        for exe in (self.path("sbindir", "payhookd"), self.path("bindir", "payhookctl")):
            self.assertTrue(os.access(exe, os.X_OK), exe)
        for installed, source in ((self.path("sysconfdir", "payhookd/payhookd.conf.example"), "etc/payhookd.conf"),
                                  (self.path("docdir", "nginx/payhookd.conf"), "etc/nginx/payhookd.conf"),
                                  (self.path("systemdsystemunitdir", "payhookd.socket"), "systemd/payhookd.socket")):
            with open(installed) as a, open(os.path.join(TOP, source)) as b:
                self.assertEqual(a.read(), b.read(), installed)

    def test_the_man_pages_name_the_installed_configuration(self):
        conf = "%s/payhookd/payhookd.conf" % self.v["sysconfdir"]
        for page in ("man8/payhookd.8", "man5/payhookd.conf.5"):
            with open(self.path("mandir", page)) as f:
                text = f.read()
            self.assertIn(conf, text, page)
            self.assertEqual(re.findall(r"@[a-z_]+@", text), [], page)
            if conf != "/etc/payhookd/payhookd.conf":
                self.assertNotIn("/etc/payhookd/payhookd.conf", text.replace(conf, ""), page)

    def test_an_existing_configuration_is_not_overwritten(self):
        with open(self.own_conf) as f:
            self.assertEqual(f.read(), "; mine\n")

    def test_the_service_runs_the_installed_binary_with_the_installed_config(self):
        unit = self.unit("payhookd.service")
        daemon = "%s/payhookd -c %s/payhookd/payhookd.conf" % (self.v["sbindir"], self.v["sysconfdir"])
        self.assertEqual(re.findall(r"^ExecStart=(.*)$", unit, re.M), [daemon])
        self.assertEqual(re.findall(r"^ExecStartPre=(.*)$", unit, re.M), [daemon + " --check"])
        self.assertIn("file:%s/README.md" % self.v["docdir"], unit)
        self.assertEqual(re.findall(r"@[a-z_]+@", unit), [], "a configure variable left in the unit (not substituted)")

    def test_the_service_keeps_every_line_of_its_template(self):
        """Only the @...@ paths change: the hardening is the template's, line for line."""
        with open(os.path.join(TOP, "systemd", "payhookd.service.in")) as f:
            template = f.read().splitlines()
        installed = self.unit("payhookd.service").splitlines()
        self.assertEqual(len(installed), len(template))
        for t, i in zip(template, installed):
            if not re.search(r"@(sbindir|sysconfdir|docdir)@", t):
                self.assertEqual(i, t)
        self.assertIn("CapabilityBoundingSet=", installed)

    def test_the_system_user_is_the_one_the_service_runs_as(self):
        with open(self.path("sysusersdir", "payhookd.conf")) as f:
            users = [l.split() for l in f if l.strip() and not l.startswith("#")]
        self.assertEqual([(u[0], u[1]) for u in users], [("u", "payhookd")])
        unit = self.unit("payhookd.service")
        self.assertIn("\nUser=payhookd\n", unit)
        self.assertIn("\nGroup=payhookd\n", unit)

    def test_systemd_analyze_finds_the_installed_units_clean(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed: the units were not verified")
        # verify resolves ExecStart= and the units' dependencies inside --root:
        # the DESTDIR tree, with the host's own units beside ours.
        root = tempfile.mkdtemp(prefix="payhookd-verify-")
        self.addCleanup(shutil.rmtree, root, True)
        shutil.copytree(self.dest, root, dirs_exist_ok=True, symlinks=True)
        units = root + "/usr/lib/systemd/system"
        shutil.copytree("/usr/lib/systemd/system", units, dirs_exist_ok=True, symlinks=True)
        for u in ("payhookd.service", "payhookd.socket"):
            shutil.copy(self.path("systemdsystemunitdir", u), units)
        r = subprocess.run([analyze, "verify", "--root=" + root, units + "/payhookd.service",
                            units + "/payhookd.socket"], capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))
        r = subprocess.run([analyze, "security", "--offline=yes", self.path("systemdsystemunitdir", "payhookd.service")],
                           capture_output=True, text=True)
        exposure = re.search(r"Overall exposure level for payhookd.service: ([\d.]+)", r.stdout)
        self.assertIsNotNone(exposure, r.stdout + r.stderr)
        self.assertLessEqual(float(exposure.group(1)), 1.4)

    def test_uninstall_removes_what_install_put_there_and_nothing_else(self):
        dest = tempfile.mkdtemp(prefix="payhookd-uninstall-")
        self.addCleanup(shutil.rmtree, dest, True)
        conf = dest + self.v["sysconfdir"] + "/payhookd/payhookd.conf"
        os.makedirs(os.path.dirname(conf))
        with open(conf, "w") as f:
            f.write("; mine\n")
        make(dest, "install")
        make(dest, "uninstall")
        self.assertEqual(files_under(dest), [self.v["sysconfdir"] + "/payhookd/payhookd.conf"])


if __name__ == "__main__":
    unittest.main()
