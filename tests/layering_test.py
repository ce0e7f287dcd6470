#!/usr/bin/python3
"""layering_test: the server's layers point down, as ARCHITECTURE.md says.

Run by tests/run.sh outside Bazel (it queries the build graph, which a test
inside Bazel cannot). Two checks, each a JUnit case:

  edges:       every dependency between pkid's own packages (from
               `bazel query --output=graph`) is one the table below allows;
               a lower layer that depends on a higher one fails, naming
               the edge.
  visibility:  Bazel itself refuses such a dependency: no target of a
               higher layer is visible to a lower layer (`bazel query
               'visible(...)'`), so the build breaks before this test runs.

`--self-test` feeds the edge check a graph with a violation and requires it
to be caught, so that the check cannot pass by finding nothing.

Usage: layering_test.py [--junit FILE] [--self-test]
"""
import re
import subprocess
import sys
import xml.sax.saxutils as sax

# Which of pkid's packages each package may depend on (directly). lib/ and
# proto/ are the base anyone may use; external repositories (@...) are not
# checked. Transitive dependencies follow from the direct ones.
BASE = {"lib", "proto", "deploy", "bazel"}  # deploy: the catalogue; bazel: the allocator
ALLOWED = {
    "server/metrics": set(),
    "server/ca": set(),
    "server/store": {"server/ca"},
    "server/pipeline": {"server/store", "server/ca", "server/metrics"},
    "server/transport": {"server/metrics"},
    "server/rpc": {"server/transport", "server/metrics"},
    "server/http": {"server/store", "server/ca", "server/metrics"},
    "server/api": {"server/rpc", "server/pipeline", "server/store", "server/ca",
                   "server/metrics"},
    "server/fleet": {"server/store", "server/metrics"},
    "server/audit": {"server/metrics"},
    "server/acme": {"server/http", "server/pipeline", "server/store", "server/ca",
                    "server/metrics"},
    "server": {"server/api", "server/rpc", "server/transport", "server/http",
               "server/pipeline", "server/store", "server/ca", "server/metrics",
               "server/fleet", "server/audit", "server/acme"},
    "lib": set(),
    "proto": set(),
    "client": set(),
}

# Lower layers and the higher ones that must not be visible to them.
NOT_VISIBLE = {
    "server/ca": ["server/store", "server/pipeline", "server/api", "server/rpc",
                  "server/transport", "server/http", "server/fleet"],
    "server/store": ["server/pipeline", "server/api", "server/rpc", "server/transport",
                     "server/fleet"],
    "server/pipeline": ["server/api", "server/rpc", "server/transport", "server/http",
                        "server/fleet"],
    "server/transport": ["server/rpc", "server/api", "server/fleet"],
    "server/rpc": ["server/api", "server/fleet"],
    "server/api": ["server/fleet"],
    "server/http": ["server/fleet"],
}

LABEL = re.compile(r'"(//[^":]*):([^"]*)"')


def package_of(label_pkg):
    return label_pkg[2:]


def check_edges(edges):
    """Returns the list of (from, to) edges the table does not allow."""
    bad = []
    for a, b in edges:
        pa, pb = package_of(a[0]), package_of(b[0])
        if pa == pb or pb in BASE:
            continue
        if pa not in ALLOWED:
            continue  # tests, bench: anything below them
        if pb not in ALLOWED[pa]:
            bad.append(("%s:%s" % a, "%s:%s" % b))
    return bad


def parse_graph(text):
    edges = []
    for line in text.splitlines():
        if "->" not in line:
            continue
        left, right = line.split("->", 1)
        la, lb = LABEL.search(left), LABEL.search(right)
        if la and lb:
            edges.append(((la.group(1), la.group(2)), (lb.group(1), lb.group(2))))
    return edges


def bazel_query(expr, *flags):
    r = subprocess.run(["bazel", "query", "--noshow_progress", *flags, expr],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("bazel query %s failed: %s" % (expr, r.stderr[-2000:]))
    return r.stdout


def self_test():
    graph = '''digraph {
      "//server/api:api" -> "//server/rpc:rpc"
      "//server/store:store" -> "//server/api:api"
      "//server/rpc:rpc" -> "//lib:err"
      "//server:pkid" -> "//client:ceremony"
    }'''
    bad = check_edges(parse_graph(graph))
    want = {("//server/store:store", "//server/api:api"), ("//server:pkid", "//client:ceremony")}
    return set(bad) == want, "caught %s, want %s" % (bad, sorted(want))


def run_edges():
    text = bazel_query("deps(//server/... + //lib/... + //client/... + //proto/...)",
                       "--output=graph", "--nograph:factored")
    edges = [e for e in parse_graph(text) if not e[1][0].startswith("//external")]
    ours = [e for e in edges if e[0][0].startswith("//server")]
    # The check must have seen the graph: api depends on rpc, at least.
    if not any(a[0] == "//server/api" and b[0] == "//server/rpc" for a, b in ours):
        return False, "the query found no //server/api -> //server/rpc edge: nothing checked"
    bad = check_edges(edges)
    if bad:
        return False, "dependencies that point the wrong way:\n" + "\n".join(
            "  %s -> %s" % e for e in bad)
    return True, "%d edges checked" % len(edges)


def run_visibility():
    problems = []
    for low, highs in NOT_VISIBLE.items():
        for high in highs:
            seen = bazel_query("visible(//%s:all, //%s:all)" % (low, high)).split()
            if seen:
                problems.append("//%s can see %s" % (low, " ".join(seen)))
    return (not problems), "\n".join(problems) or "no upward target visible"


def main(argv):
    junit = None
    if "--junit" in argv:
        junit = argv[argv.index("--junit") + 1]
    cases = [("layering: checker catches a violation", self_test)]
    if "--self-test" not in argv:
        cases += [("layering: dependencies point down", run_edges),
                  ("layering: upper layers invisible to lower ones", run_visibility)]
    results = []
    for name, fn in cases:
        try:
            ok, msg = fn()
        except Exception as e:  # a query that fails is a failure, not a pass
            ok, msg = False, str(e)
        print("%s %s: %s" % ("PASS" if ok else "FAIL", name, msg))
        results.append((name, ok, msg))
    if junit:
        with open(junit, "w") as f:
            f.write('<testsuites><testsuite name="layering">\n')
            for name, ok, msg in results:
                body = "" if ok else "<failure message=%s/>" % sax.quoteattr(msg)
                f.write("<testcase name=%s>%s</testcase>\n" % (sax.quoteattr(name), body))
            f.write("</testsuite></testsuites>\n")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
