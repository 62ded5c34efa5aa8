"""etc/payhookd.rules.yml: a well-formed Prometheus rules file whose every
metric is one a running payhookd exposes (issue 12 item 5). promtool is not
used (the prometheus package is ~100 MB); the YAML is parsed with PyYAML and
the expressions are read for their metric names and label matchers."""
import os
import re
import unittest

import yaml

import harness
from harness import DaemonTest, tp_envelope

RULES = os.path.join(harness.HERE, "..", "..", "etc", "payhookd.rules.yml")
KEYWORDS = {"by", "without", "on", "ignoring", "and", "or", "unless", "bool", "offset",
            "group_left", "group_right"}
# Label values registered at run time (a route, a rejection reason, a job
# kind appear once used): only the label's name can be checked for them.
RUNTIME_LABELS = {"route", "reason", "kind", "status"}


def load_rules():
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"]]


def selectors(expr):
    """(metric, [(label, op, value)]) for every series selector in expr;
    any other bare identifier is reported as a metric too."""
    expr = re.sub(r"\[[^\]]*\]", "", expr)                     # range durations
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    out = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{([^}]*)\})?(\s*\()?", expr):
        name, matchers, call = m.group(1), m.group(3), m.group(4)
        if call or name in KEYWORDS:
            continue
        labels = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers or "")
        out.append((name, labels))
    return out


def exposition(text):
    """{family or sample name: set of (label, value)} from Prometheus text."""
    seen = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            seen.setdefault(m.group(1), set())
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s", line)
        labels = set(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        seen.setdefault(m.group(1), set()).update(labels)
    return seen


class RulesFile(unittest.TestCase):
    def test_structure(self):
        with open(RULES) as f:
            doc = yaml.safe_load(f)
        self.assertEqual(list(doc), ["groups"])
        names = set()
        for g in doc["groups"]:
            self.assertTrue(g["name"])
            self.assertTrue(g["rules"])
            for r in g["rules"]:
                with self.subTest(rule=r.get("alert")):
                    self.assertLessEqual(set(r), {"alert", "expr", "for", "labels", "annotations"})
                    self.assertRegex(r["alert"], r"^Payhookd[A-Za-z]+$")
                    self.assertNotIn(r["alert"], names)
                    names.add(r["alert"])
                    self.assertIsInstance(r["expr"], str)
                    self.assertEqual(r["expr"].count("("), r["expr"].count(")"))
                    self.assertEqual(r["expr"].count("{"), r["expr"].count("}"))
                    if "for" in r:
                        self.assertRegex(r["for"], r"^\d+[smh]$")
                    self.assertIn(r["labels"]["severity"], ("critical", "warning"))
                    self.assertTrue(r["annotations"]["summary"])
        # What issue 12 asks to be alerted on is there.
        exprs = " ".join(r["expr"] for r in load_rules())
        for needle in ("payhookd_requests_total", 'state="failed"', 'result="mismatch"',
                       "payhookd_commit_failures_total", "payhookd_write_queue_depth"):
            self.assertIn(needle, exprs)

    def test_selector_parser(self):
        # The parser this test relies on finds what it must.
        self.assertEqual(selectors('sum by (instance) (increase(a_b{x="1",y=~"z"}[5m])) > 0 '
                                   'and on (instance) c > 3 or vector(0)'),
                         [("a_b", [("x", "=", "1"), ("y", "=~", "z")]), ("c", [])])


class RulesAgainstMetrics(DaemonTest):
    extra_config = harness.tp_config()

    def test_every_metric_and_label_in_the_rules_is_exposed(self):
        # A stored push and a refused one register a route and a reason.
        self.assertEqual(self.d.post("/baidu/tp/events", tp_envelope({"event": "X", "appId": 1})),
                         (200, b"success"))
        self.assertEqual(self.d.post("/baidu/tp/events", b"{")[0], 400)
        st, text, _ = self.d.request("GET", "/metrics")
        self.assertEqual(st, 200)
        seen = exposition(text.decode())
        self.assertIn("payhookd_requests_total", seen)
        for rule in load_rules():
            for name, matchers in selectors(rule["expr"]):
                with self.subTest(rule=rule["alert"], metric=name):
                    self.assertIn(name, seen, "%s uses %s, which /metrics does not have" %
                                  (rule["alert"], name))
                    labels = seen[name]
                    if not labels:
                        continue  # no series yet (e.g. no job kind has run)
                    label_names = {k for k, _ in labels}
                    for label, op, value in matchers:
                        self.assertIn(label, label_names)
                        if op == "=" and label not in RUNTIME_LABELS:
                            self.assertIn((label, value), labels)


if __name__ == "__main__":
    unittest.main()
