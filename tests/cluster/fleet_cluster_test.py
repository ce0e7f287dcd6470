#!/usr/bin/python3
"""fleet_cluster_test: the cluster as operators run it, every part real and
on this machine: a PostgreSQL 15 primary and its streaming-replication
standby (tests/lib/pgtest.py), three pkid nodes on distinct loopback
addresses (127.0.0.21-23) sharing them, and haproxy 2.6 in front with
deploy/haproxy/pkid-cluster.cfg as shipped.

  - 10,000 certificates issued through haproxy by four clients, while one
    node after another is killed (kill -9, five rounds) and restarted:
    the clients go on through the others, and pkictl (libpkiclient's
    retries) gets its certificate through haproxy while a node is down;
    serials are unique, each carries its node's prefix, and every
    acknowledged certificate is in PostgreSQL and in its node's journal
    (read by tests/lib/journaltest.py), which verifies;
  - a revocation through node 1 makes node 3's OCSP say revoked and node
    3's CRL list it (the delay is printed);
  - PostgreSQL stopped for 30 s under load: issuance through haproxy goes
    on, Revoke and bootstrap answer UNAVAILABLE, and once it is back the
    inventory catches up completely;
  - the primary killed under load and the standby promoted: the new
    primary ends with every acknowledged certificate, once.

Tagged slow: it runs in the optimized configuration only.

Usage: fleet_cluster_test.py PKICTL PKID PROTO CLUSTER_CFG
"""
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402
from journaltest import journal_serials  # noqa: E402
from pgtest import Postgres  # noqa: E402
from pkidtest import (SERVER_NAME, Pkid, channel, cluster_env, demo_tree,  # noqa: E402
                      expect_status, free_port, haproxy_server_status, load_proto, make_csr,
                      method, service_files, stop, wait_for)
from testlib import finish, run  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
PKICTL, PKID, PROTO, CFG = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
WORK = os.path.join(TMP, "cluster")
os.makedirs(WORK, exist_ok=True)
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
ROOT = open(os.path.join(PKI, "root-ca/certs/root-ca.crt"), "rb").read()
ADDR = {n: "127.0.0.%d" % (20 + n) for n in (1, 2, 3)}
SOCK_DIR = tempfile.mkdtemp(prefix="fleet-cluster-", dir="/tmp")
SOCK = os.path.join(SOCK_DIR, "admin.sock")
HAPROXY_LOG = os.path.join(WORK, "haproxy.log")
TARGET = 10000
APPLY_BOUND_S = 10  # a revocation on every node (the issue's target: 2 s)
UP_BOUND_S = 60

PRIMARY = Postgres()
PROCS = []  # haproxy
NODES = {}
STATE = {}
ACKED = {}  # serial hex -> node that issued it (its prefix)
ACK_LOCK = threading.Lock()


def token(service="vault"):
    out = subprocess.run([PKICTL, "token", "create", "--out", PKI, "--service", service,
                          "--ttl", "1h"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


# Made before the nodes start: they read the token key at start.
DOWN_TOKEN = token()


def conninfo():
    a, b = PRIMARY, STATE["standby"]
    # Both servers: libpq takes the one that accepts writes.
    return ("host=127.0.0.1,127.0.0.1 port=%d,%d dbname=pkid user=%s password=%s"
            " target_session_attrs=read-write connect_timeout=2" % (
                a.port, b.port, a.user, a.password))


def start_node(n, ports=None):
    args = ["--node", str(n), "--journal", os.path.join(WORK, "journal-%d" % n),
            "--postgres", conninfo(), "--max-conns-per-address", "4096"]
    if ports is not None:
        args += ["--listen", "%s:%d" % (ADDR[n], ports[0]), "--ocsp-listen",
                 "%s:%d" % (ADDR[n], ports[1]), "--admin-listen", "%s:%d" % (ADDR[n], ports[2])]
    NODES[n] = Pkid(PKID, PKI, WORK, args, log_name="pkid-%d.log" % n, host=ADDR[n])
    return NODES[n].start(timeout=30)


def haproxy_env():
    return cluster_env(NODES, STATE["grpc_port"], STATE["http_port"], STATE["metrics_port"], SOCK)


def up_in_haproxy(n):
    return haproxy_server_status(SOCK).get(("pkid_grpc", "pkid%d" % n)) == "UP"


def lb_channel(path="agents/pki-agent/pki-agent-client", anonymous=False):
    """A channel through haproxy on a TCP connection of its own."""
    key, chain = (None, None) if anonymous else service_files(PKI, path)
    creds = grpc.ssl_channel_credentials(root_certificates=ROOT, private_key=key,
                                         certificate_chain=chain)
    return grpc.secure_channel("127.0.0.1:%d" % STATE["grpc_port"], creds,
                               options=[("grpc.ssl_target_name_override", SERVER_NAME),
                                        ("grpc.use_local_subchannel_pool", 1)])


CSRS = [make_csr("redis") for _ in range(64)]


class Client(threading.Thread):
    """Issues through haproxy in streams of 50 until told to stop; a broken
    stream (its node killed) is followed by a new connection, which haproxy
    gives to a node that is up."""

    def __init__(self, i, pace_s):
        super().__init__(daemon=True)
        self.i, self.pace_s, self.stop, self.acked, self.dups = i, pace_s, False, 0, 0
        self.errors = {}  # code name -> count

    def error(self, name):
        self.errors[name] = self.errors.get(name, 0) + 1

    def run(self):
        k = self.i
        while not self.stop:
            t_stream = time.monotonic()
            ch = lb_channel()
            stream = method(ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                            streaming=True)
            reqs = []
            for j in range(50):
                k += 1
                reqs.append(pki_pb2.IssueRequest(csr=CSRS[k % len(CSRS)], service="redis",
                                                 usage=pki_pb2.USAGE_CLIENT, request_id=j + 1))
            try:
                for r in stream(iter(reqs), timeout=30):
                    if r.status_code != 0:
                        self.error("item %d" % r.status_code)
                        continue
                    with ACK_LOCK:
                        if r.serial in ACKED:
                            self.dups += 1
                        ACKED[r.serial] = int(r.serial[2:6], 16)
                    self.acked += 1
            except grpc.RpcError as e:
                self.error(e.code().name)
                time.sleep(0.05)
            ch.close()
            # Paced, so that the load is what the test needs and leaves the
            # two cores some room for restarts and catch-up.
            time.sleep(max(0.0, self.pace_s - (time.monotonic() - t_stream)))


def run_clients(while_fn, n=4, pace_s=0.25):
    """Clients issue (each at most 50 per |pace_s|) while |while_fn| runs;
    returns (clients, seconds)."""
    clients = [Client(i * 1000000, pace_s) for i in range(n)]
    t0 = time.monotonic()
    for c in clients:
        c.start()
    try:
        while_fn()
    finally:
        for c in clients:
            c.stop = True
        for c in clients:
            c.join(timeout=60)
    return clients, time.monotonic() - t0


def transient_only(clients):
    """What the clients saw besides certificates: only what a node going
    away explains (UNAVAILABLE, a cancelled stream, a deadline)."""
    seen = {}
    for c in clients:
        for k, v in c.errors.items():
            seen[k] = seen.get(k, 0) + v
        assert c.dups == 0, "a serial acknowledged twice"
    bad = {k: v for k, v in seen.items()
           if k not in ("UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED",
                        "item 14", "item 8")}
    assert not bad, seen
    return seen


def inventory(pg):
    return {s: int(n) for s, n in pg.psql(
        "SELECT encode(serial, 'hex'), node_id FROM pkid_certificates WHERE node_id <> 0")}


def all_in(pg):
    inv = inventory(pg)
    with ACK_LOCK:
        missing = [s for s in ACKED if s not in inv]
    return not missing


# ---------------------------------------------------------------------------


def test_setup():
    PRIMARY.start()
    STATE["standby"] = PRIMARY.standby()
    for n in (1, 2, 3):
        start_node(n)
    STATE.update(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    log = open(HAPROXY_LOG, "a")
    proc = subprocess.Popen([HAPROXY, "-f", CFG, "-db"], env=haproxy_env(), stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    PROCS.append(proc)
    wait_for("haproxy to see three nodes up", lambda: os.path.exists(SOCK) and all(
        up_in_haproxy(n) for n in (1, 2, 3)), UP_BOUND_S, step=0.2)


def test_10k_through_haproxy_kill9_rounds():
    rounds = []

    def kill_rounds():
        for r in range(5):
            n = r % 3 + 1
            with ACK_LOCK:
                before = len(ACKED)
            wait_for("progress before round %d" % r, lambda: len(ACKED) > before + 200, 60,
                     step=0.05)
            node = NODES[n]
            ports = (node.grpc, node.ocsp, node.admin)
            node.kill()
            t_kill = time.monotonic()
            # libpkiclient through haproxy while the node is down: its
            # retries land on a node that is up.
            out = subprocess.run(
                [PKICTL, "issue", "--pki", PKI, "--as", "pki-agent", "--server",
                 "127.0.0.1:%d" % STATE["grpc_port"], "--server-name", SERVER_NAME,
                 "--service", "redis", "--usage", "client",
                 "--out-cert", os.path.join(WORK, "r%d.crt" % r),
                 "--out-key", os.path.join(WORK, "r%d.key" % r)],
                capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stdout + out.stderr
            time.sleep(0.5)
            start_node(n, ports)
            wait_for("node %d back in haproxy" % n, lambda: up_in_haproxy(n), UP_BOUND_S,
                     step=0.1)
            rounds.append((n, time.monotonic() - t_kill))
        wait_for("%d certificates" % TARGET, lambda: len(ACKED) >= TARGET, 300, step=0.2)

    clients, secs = run_clients(kill_rounds)
    seen = transient_only(clients)
    print("%d certificates through haproxy in %.1f s (%.0f/s) by %d clients, 5 kill -9 "
          "rounds (%s), client errors %s" % (
              len(ACKED), secs, len(ACKED) / secs, len(clients),
              ", ".join("node %d back in %.1f s" % r for r in rounds), seen), flush=True)
    assert len(ACKED) >= TARGET
    per_node = {n: sum(1 for v in ACKED.values() if v == n) for n in (1, 2, 3)}
    assert all(per_node[n] > 0 for n in (1, 2, 3)), per_node
    assert set(ACKED.values()) <= {1, 2, 3}, set(ACKED.values())


def test_inventory_and_journals_hold_every_certificate():
    wait_for("the inventory to hold every acknowledged certificate", lambda: all_in(PRIMARY),
             120, step=0.5)
    rows = PRIMARY.psql("SELECT count(*), count(DISTINCT serial) FROM pkid_certificates"
                        " WHERE node_id <> 0")
    assert rows[0][0] == rows[0][1], rows
    inv = inventory(PRIMARY)
    wrong = [s for s, n in ACKED.items() if inv[s] != n]
    assert not wrong, wrong[:5]
    for n in (1, 2, 3):
        journal = os.path.join(WORK, "journal-%d" % n)
        out = subprocess.run([PKICTL, "journal", "verify", journal], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and "result:     ok" in out.stdout, out.stdout + out.stderr
        # Its own certificates, and what it followed of the others'.
        have = set(journal_serials(journal))
        mine = [s for s, m in ACKED.items() if m == n]
        assert all(s in have for s in mine), n
        print("node %d: %d acknowledged, journal has %d ISSUE records" % (
            n, len(mine), len(have)), flush=True)


def node_status(n, serial):
    with channel(NODES[n], PKI) as ch:
        return method(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)(
            pki_pb2.GetStatusRequest(serial=serial), timeout=10)


def ocsp_says(n, cert, issuer):
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    http = urllib.request.Request("http://%s:%d/" % (ADDR[n], NODES[n].ocsp),
                                  data=req.public_bytes(serialization.Encoding.DER),
                                  headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(http, timeout=10) as r:
        resp = ocsp.load_der_ocsp_response(r.read())
    return resp.certificate_status


def crl_lists(n, ca, serial):
    try:
        with urllib.request.urlopen("http://%s:%d/crl/%s.crl" % (ADDR[n], NODES[n].ocsp, ca),
                                    timeout=10) as r:
            crl = x509.load_der_x509_crl(r.read())
    except urllib.error.HTTPError:
        return False
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_revocation_through_node1_on_node3():
    # A certificate node 2 issued, revoked through node 1, seen by node 3.
    with channel(NODES[2], PKI) as ch:
        r = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)(
            pki_pb2.IssueRequest(csr=make_csr(), service="redis", usage=pki_pb2.USAGE_CLIENT),
            timeout=10)
    cert = x509.load_der_x509_certificate(r.certificate)
    wait_for("nodes 1 and 3 to know it", lambda: all(
        ok_status(n, r.serial) for n in (1, 3)), APPLY_BOUND_S)
    ca = node_status(3, r.serial).issuer
    issuer = x509.load_pem_x509_certificate(open(os.path.join(
        PKI, "intermediate-ca", ca, "certs", ca + ".crt"), "rb").read())
    assert ocsp_says(3, cert, issuer) == ocsp.OCSPCertStatus.GOOD
    t0 = time.monotonic()
    with channel(NODES[1], PKI) as ch:
        method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)(
            pki_pb2.RevokeRequest(serial=r.serial,
                                  reason=pki_pb2.REVOCATION_REASON_SUPERSEDED), timeout=10)
    wait_for("node 3's OCSP to say revoked", lambda: ocsp_says(3, cert, issuer) ==
             ocsp.OCSPCertStatus.REVOKED, APPLY_BOUND_S, step=0.01)
    t_ocsp = time.monotonic() - t0
    wait_for("node 3's CRL to list it", lambda: crl_lists(3, ca, cert.serial_number), 30,
             step=0.05)
    t_crl = time.monotonic() - t0
    print("revoked through node 1: node 3's OCSP said revoked after %.3f s, its CRL listed "
          "it after %.3f s" % (t_ocsp, t_crl), flush=True)
    STATE["revoked_cert"] = r.serial


def ok_status(n, serial):
    try:
        return node_status(n, serial)
    except grpc.RpcError:
        return None


def test_postgres_stopped_30s_under_load():
    victim = next(s for s, n in ACKED.items() if n == 1)
    counts = {}

    def outage():
        PRIMARY.stop(standbys=False)
        t0 = time.monotonic()
        with ACK_LOCK:
            counts["at_stop"] = len(ACKED)
        # Let every node notice, then ask for what needs the fleet.
        time.sleep(8)
        with lb_channel() as ch:
            expect_status(lambda: method(ch, "Revoke", pki_pb2.RevokeRequest,
                                         pki_pb2.RevokeResponse)(
                pki_pb2.RevokeRequest(serial=victim), timeout=10),
                grpc.StatusCode.UNAVAILABLE, "PostgreSQL")
        with lb_channel(anonymous=True) as ch:
            expect_status(lambda: method(ch, "Issue", pki_pb2.IssueRequest,
                                         pki_pb2.IssueResponse)(
                pki_pb2.IssueRequest(csr=make_csr(), usage=pki_pb2.USAGE_SERVER,
                                     bootstrap_token=DOWN_TOKEN), timeout=10),
                grpc.StatusCode.UNAVAILABLE, "PostgreSQL")
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        with ACK_LOCK:
            counts["during"] = len(ACKED) - counts["at_stop"]
        PRIMARY.start()
        time.sleep(2)

    clients, secs = run_clients(outage, pace_s=0.5)
    transient_only(clients)
    print("PostgreSQL stopped for 30 s: %d certificates issued through haproxy meanwhile"
          % counts["during"], flush=True)
    assert counts["during"] > 1000, counts
    wait_for("the inventory to catch up after the outage", lambda: all_in(PRIMARY), 120,
             step=0.5)
    # What was refused is not spent: both work now.
    with lb_channel(anonymous=True) as ch:
        def enrolled():
            try:
                return method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)(
                    pki_pb2.IssueRequest(csr=make_csr(), usage=pki_pb2.USAGE_SERVER,
                                         bootstrap_token=DOWN_TOKEN), timeout=10)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                return None
        wait_for("bootstrap to work again", enrolled, 30, step=0.5)


def test_failover_to_standby_under_load():
    standby = STATE["standby"]

    def failover():
        with ACK_LOCK:
            before = len(ACKED)
        wait_for("load", lambda: len(ACKED) > before + 500, 60)
        PRIMARY.kill()
        standby.promote()
        with ACK_LOCK:
            at = len(ACKED)
        wait_for("issuance after the promotion", lambda: len(ACKED) > at + 1000, 60)

    clients, secs = run_clients(failover, pace_s=0.5)
    transient_only(clients)
    wait_for("the new primary to hold every acknowledged certificate", lambda: all_in(standby),
             120, step=0.5)
    rows = standby.psql("SELECT count(*), count(DISTINCT serial) FROM pkid_certificates"
                        " WHERE node_id <> 0")
    assert rows[0][0] == rows[0][1], rows
    print("after the failover the new primary holds all %d acknowledged certificates, once"
          % len(ACKED), flush=True)


def test_clean_exits():
    for n in sorted(NODES):
        code = NODES.pop(n).stop(timeout=30)
        assert code == 0, (n, code)


try:
    run("setup", test_setup)
    run("10k_through_haproxy_kill9_rounds", test_10k_through_haproxy_kill9_rounds)
    run("inventory_and_journals_hold_every_certificate",
        test_inventory_and_journals_hold_every_certificate)
    run("revocation_through_node1_on_node3", test_revocation_through_node1_on_node3)
    run("postgres_stopped_30s_under_load", test_postgres_stopped_30s_under_load)
    run("failover_to_standby_under_load", test_failover_to_standby_under_load)
    run("clean_exits", test_clean_exits)
finally:
    for p in PROCS:
        stop(p)
    for node in NODES.values():
        node.stop()
    PRIMARY.cleanup()
    os.system("rm -rf '%s'" % SOCK_DIR)
finish()
