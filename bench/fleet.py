#!/usr/bin/python3
"""fleet.py: what --postgres costs and how fast a node ships, in one run.

    bench/fleet.py [--seconds 10] [--work DIR]

Builds pkid, pkictl and loadgen (--config=opt), makes a demo tree and a
real PostgreSQL 15 on loopback (tests/lib/pgtest.py, fsync on), then:

  1. alone:     pkid without --postgres, loadgen IssueStream (8 streams of
                64) for --seconds: certificates/s and server CPU per
                certificate;
  2. shipping:  the same with --postgres on a fresh database: the same
                figures, the journal records shipped during the window
                (records/s) and how long the lag takes to reach 0 after;
  3. catch-up:  that node's journal shipped again into an empty database
                (the node restarted with a database that lost everything):
                records/s of shipping alone, no issuance beside it;
  4. cluster:   three nodes (--node 1..3) on one fresh database behind
                haproxy (deploy/haproxy/pkid-cluster.cfg as shipped),
                loadgen through haproxy: certificates/s, the three nodes'
                CPU per certificate (each also follows the others: it
                journals their certificates and signs their first OCSP
                responses), and the records/s the three ship.

The machine is shared (2 cores, load generator and PostgreSQL included):
compare the phases of one run, not runs. The result is one JSON object on
stdout; progress goes to stderr.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
from pgtest import Postgres, free_port  # noqa: E402
from pkidtest import cluster_env  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build():
    subprocess.run(["bazel", "build", "--config=opt", "//server:pkid", "//client:pkictl",
                    "//bench:loadgen"], cwd=REPO, check=True)
    out = subprocess.run(["bazel", "info", "--config=opt", "bazel-bin"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    return (os.path.join(out, "server/pkid"), os.path.join(out, "client/pkictl"),
            os.path.join(out, "bench/loadgen"))


class Node:
    host = "127.0.0.1"  # what pkidtest.cluster_env reads

    def __init__(self, pkid, pki, work, name, extra):
        self.log_path = os.path.join(work, name + ".log")
        log_f = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [pkid, "--pki", pki, "--journal", os.path.join(work, name + "-journal"),
             "--listen", "127.0.0.1:0", "--ocsp-listen", "127.0.0.1:0", "--admin-listen",
             "127.0.0.1:0",
             # One identity makes every call, as in bench/run.sh: no per-identity limit.
             "--identity-rate", "0", "--identity-max-in-flight", "4096"] + extra, stderr=log_f)
        log_f.close()
        deadline = time.time() + 30
        while time.time() < deadline:
            text = open(self.log_path).read()
            g = re.search(r'"listening","grpc":"127\.0\.0\.1:(\d+)"', text)
            a = re.search(r'"listening","admin":"127\.0\.0\.1:(\d+)"', text)
            o = re.search(r'"listening","ocsp":"127\.0\.0\.1:(\d+)"', text)
            if g and a and o:
                self.grpc, self.admin, self.ocsp = (int(g.group(1)), int(a.group(1)),
                                                    int(o.group(1)))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("pkid did not start:\n" + open(self.log_path).read())

    def metric(self, name):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin, timeout=5) as r:
            m = re.search(r"(?m)^%s (\S+)$" % re.escape(name), r.read().decode())
        return float(m.group(1)) if m else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def loadgen(binary, node, pki, seconds):
    out = subprocess.run([binary, "--target", "127.0.0.1:%d" % node.grpc, "--pki", pki,
                          "--server-pid", str(node.proc.pid), "--stream", "--concurrency", "8",
                          "--stream-requests", "64", "--connections", "4", "--threads", "2",
                          "--duration", str(seconds), "--warmup", "2"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster(pkid, pki, work, lg, pg, seconds):
    """Phase 4: three nodes behind haproxy on one database."""
    pg.create_db("pkid_cluster")
    nodes = [Node(pkid, pki, work, "cluster-%d" % n,
                  ["--node", str(n), "--postgres", pg.conninfo(db="pkid_cluster"),
                   "--max-conns-per-address", "4096"]) for n in (1, 2, 3)]
    sock_dir = tempfile.mkdtemp(prefix="fleet-bench-lb-", dir="/tmp")
    lb_port = free_port()
    env = cluster_env(dict(enumerate(nodes, 1)), lb_port, free_port(), free_port(),
                      os.path.join(sock_dir, "admin.sock"))
    lb_log = open(os.path.join(work, "haproxy.log"), "w")
    lb = subprocess.Popen(["/usr/sbin/haproxy", "-f",
                           os.path.join(REPO, "deploy/haproxy/pkid-cluster.cfg"), "-db"],
                          env=env, stdout=lb_log, stderr=subprocess.STDOUT)
    lb_log.close()
    try:
        # haproxy marks a node up after its first good /readyz checks.
        time.sleep(5)
        before = [cpu_s(n.proc.pid) for n in nodes]
        shipped0 = sum(n.metric("pkid_fleet_shipped_records_total") or 0 for n in nodes)
        t0 = time.monotonic()
        out = subprocess.run([lg, "--target", "127.0.0.1:%d" % lb_port, "--pki", pki,
                              "--stream", "--concurrency", "8", "--stream-requests", "64",
                              "--connections", "6", "--threads", "2",
                              # No warm-up: the nodes' CPU is read around
                              # the whole run, so it must count it all.
                              "--duration", str(seconds), "--warmup", "0"],
                             check=True, capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        r = json.loads(out.stdout)
        cpu = sum(cpu_s(n.proc.pid) for n in nodes) - sum(before)
        shipped = sum(n.metric("pkid_fleet_shipped_records_total") or 0 for n in nodes) - shipped0
        ok = r.get("successes") or r.get("ok") or 0
        r["nodes_cpu_us_per_certificate"] = cpu * 1e6 / ok if ok else None
        r["nodes_cpu_s"] = cpu
        r["shipped_records"] = shipped
        r["shipped_per_s_during_load"] = shipped / elapsed
        r["per_node_certificates"] = {
            row[0]: int(row[1]) for row in pg.psql(
                "SELECT node_id, count(*) FROM pkid_certificates WHERE node_id <> 0"
                " GROUP BY node_id ORDER BY node_id", db="pkid_cluster")}
        return r
    finally:
        lb.terminate()
        lb.wait(timeout=30)
        for n in nodes:
            n.stop()
        subprocess.run(["rm", "-rf", sock_dir])


def wait_lag_zero(node, timeout=300):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if node.metric("pkid_fleet_ship_lag_records") == 0:
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError("the lag did not reach 0 in %d s" % timeout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--work")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="fleet-bench-")
    pkid, pkictl, lg = build()
    pki = os.path.join(work, "pki")
    subprocess.run([pkictl, "ceremony", "demo", "--out", pki], check=True,
                   stdout=subprocess.DEVNULL)
    pg = Postgres().start()
    result = {"seconds": args.seconds}
    try:
        log("== alone")
        a = Node(pkid, pki, work, "alone", [])
        try:
            result["alone"] = loadgen(lg, a, pki, args.seconds)
        finally:
            a.stop()

        log("== shipping to PostgreSQL")
        b = Node(pkid, pki, work, "shipping", ["--postgres", pg.conninfo()])
        try:
            before = b.metric("pkid_fleet_shipped_records_total") or 0
            t0 = time.monotonic()
            r = loadgen(lg, b, pki, args.seconds)
            elapsed = time.monotonic() - t0
            shipped = (b.metric("pkid_fleet_shipped_records_total") or 0) - before
            lag_end = b.metric("pkid_fleet_ship_lag_records")
            drain_s = wait_lag_zero(b)
            r["shipped_records"] = shipped
            r["shipped_per_s_during_load"] = shipped / elapsed
            r["lag_at_end_records"] = lag_end
            r["seconds_to_lag_zero_after"] = drain_s
            result["shipping"] = r
        finally:
            b.stop()
        total = int(pg.psql("SELECT count(*) FROM pkid_certificates")[0][0])

        log("== catch-up into an empty database")
        pg.create_db("pkid_empty")
        c = Node(pkid, pki, work, "shipping", ["--postgres", pg.conninfo(db="pkid_empty")])
        try:
            records = c.metric("pkid_fleet_ship_lag_records")
            t0 = time.monotonic()
            # The lag may already be 0 if everything shipped before the
            # first scrape; the log's to_ship gives the count either way.
            secs = wait_lag_zero(c)
            m = re.search(r'"fleet_lease".*?"to_ship":"(\d+)"', open(c.log_path).read())
            records = int(m.group(1)) if m else records
            cpu = None
            with open("/proc/%d/stat" % c.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            result["catch_up"] = {"records": records, "seconds": secs,
                                  "records_per_s": records / secs if secs > 0 else None,
                                  "pkid_cpu_s_total": cpu, "elapsed_check_s": time.monotonic() - t0}
        finally:
            c.stop()
        copied = int(pg.psql("SELECT count(*) FROM pkid_certificates", db="pkid_empty")[0][0])
        result["inventory_rows"] = {"first_database": total, "caught_up_database": copied}

        log("== three nodes behind haproxy")
        result["cluster"] = cluster(pkid, pki, work, lg, pg, args.seconds)
    finally:
        pg.cleanup()
    al, sh = result["alone"], result["shipping"]
    for phase in (al, sh):
        if phase.get("errors_total"):
            log("warning: %d calls failed in a phase" % phase["errors_total"])
    log("alone:    %.0f certificates/s, %.1f us server CPU each" % (
        al.get("throughput_per_s", 0), al.get("server_cpu_us_per_success", 0)))
    log("shipping: %.0f certificates/s, %.1f us server CPU each; %.0f records/s shipped during "
        "the load; lag %s at the end, 0 after %.2f s" % (
            sh.get("throughput_per_s", 0), sh.get("server_cpu_us_per_success", 0),
            sh["shipped_per_s_during_load"], sh["lag_at_end_records"],
            sh["seconds_to_lag_zero_after"]))
    cu = result["catch_up"]
    log("catch-up: %s records in %.2f s" % (cu["records"], cu["seconds"]))
    cl = result["cluster"]
    log("cluster:  %.0f certificates/s through haproxy, %.1f us of the three nodes' CPU each; "
        "%.0f records/s shipped; per node %s" % (
            cl.get("throughput_per_s", 0), cl.get("nodes_cpu_us_per_certificate") or 0,
            cl["shipped_per_s_during_load"], cl["per_node_certificates"]))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
