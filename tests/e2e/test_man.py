"""The manual pages: man --warnings clean, installed by make install, and
payhookd.conf(5) (generated from etc/payhookd.conf) documenting exactly the
keys the code knows, section by section, so neither can drift."""
import os
import re
import subprocess
import tempfile
import unittest

import harness

TOP = os.path.abspath(os.path.join(harness.HERE, "..", ".."))
BUILD = os.path.dirname(os.path.abspath(harness.PAYHOOKD))
PAGES = [os.path.join(BUILD, "payhookd.8"), os.path.join(TOP, "man", "payhookctl.1"),
         os.path.join(BUILD, "payhookd.conf.5")]


def code_keys():
    """{section: {key}} from src/config.c's key tables and section table."""
    with open(os.path.join(TOP, "src", "config.c")) as f:
        src = f.read()
    tables = {}
    for name, body in re.findall(r"static const struct conf_key (\w+)\[\] = \{(.*?)\n\};", src, re.S):
        tables[name] = set(re.findall(r'^\s*\{"(\w+)", conf_', body, re.M))
    sections = re.findall(r'^\s*\{"([\w.]+)", (\w+_keys),', src, re.M)
    return {sec: tables[t] for sec, t in sections}


def documented_keys():
    """{section: {key}} from etc/payhookd.conf, commented-out sections too."""
    out, sec = {}, None
    with open(os.path.join(TOP, "etc", "payhookd.conf")) as f:
        for line in f:
            line = re.sub(r"^; ?", "", line.rstrip("\n"))
            m = re.match(r"^\[([\w.]+)(?: [\w.-]+)?\]$", line)
            if m:
                sec = m.group(1)
                out.setdefault(sec, set())
                continue
            m = re.match(r"^([a-z_]+) = ", line)
            if m and sec:
                out[sec].add(m.group(1))
    return out


class Man(unittest.TestCase):
    def test_pages_render_without_warnings(self):
        for page in PAGES:
            self.assertTrue(os.path.exists(page), page)
            r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", page], capture_output=True,
                               text=True, env=dict(os.environ, MANWIDTH="80"))
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)
            self.assertIn("NAME", r.stdout)

    def test_the_config_page_documents_every_key_the_code_knows(self):
        code, doc = code_keys(), documented_keys()
        self.assertGreaterEqual(len(code), 10)
        for sec, keys in code.items():
            self.assertIn(sec, doc, "section [%s] is not in etc/payhookd.conf" % sec)
            self.assertEqual(keys - doc[sec], set(), "[%s] keys undocumented in etc/payhookd.conf" % sec)
            self.assertEqual(doc[sec] - keys, set(), "[%s] keys documented but unknown to the code" % sec)
        with open(PAGES[2]) as f:
            page = f.read()
        for sec, keys in code.items():
            for k in keys:
                self.assertIn("\\fB%s\\fR = " % k, page)

    def test_make_install_installs_them(self):
        dest = tempfile.mkdtemp(prefix="payhookd-man-")
        subprocess.run(["make", "-s", "-C", BUILD, "install-man", "DESTDIR=" + dest], check=True,
                       capture_output=True)
        found = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)
        self.assertEqual([os.path.basename(f) for f in found], ["payhookctl.1", "payhookd.conf.5", "payhookd.8"])


if __name__ == "__main__":
    unittest.main()


class NginxExample(unittest.TestCase):
    def test_upstream_keepalive_ends_before_payhookd_closes_idle_connections(self):
        """nginx reusing a connection payhookd is closing answers the platform 502."""
        with open(os.path.join(TOP, "etc", "nginx", "payhookd.conf")) as f:
            nginx = f.read()
        upstream = re.search(r"upstream payhookd \{(.*?)\}", nginx, re.S).group(1)
        nginx_idle = int(re.search(r"^\s*keepalive_timeout\s+(\d+)s;", upstream, re.M).group(1))
        with open(os.path.join(TOP, "etc", "payhookd.conf")) as f:
            conf = f.read()
        payhookd_idle = int(re.search(r"^connection_timeout = (\d+)$", conf, re.M).group(1))
        self.assertLess(nginx_idle, payhookd_idle)
