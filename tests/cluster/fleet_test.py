#!/usr/bin/python3
"""fleet_test: pkid nodes and the fleet's PostgreSQL (server/fleet/fleet.h),
all real processes on loopback: PostgreSQL 15 made by the test
(tests/lib/pgtest.py), pkid with --postgres.

  - a fresh database gets the schema (deploy/postgres/migrations/) once;
    one at a newer version than pkid knows is used, with a warning;
  - a second node started with a live node's id refuses to start, saying
    who holds it; the node restarted on its own journal takes its id back
    at once;
  - every certificate pkid acknowledged is in pkid_certificates (its DER
    byte for byte), revocations in pkid_revocations, once each;
  - kill -9 of the node right after acknowledging: restarted, it ships
    what it had not, nothing lost or doubled;
  - PostgreSQL stopped: the node keeps issuing and stays ready, says it is
    disconnected and behind (metrics), and catches up when PostgreSQL is
    back;
  - SIGTERM frees the id at once for another journal.

Usage: fleet_test.py PKICTL PKID PROTO
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pgtest import Postgres  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, load_proto, method, wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
PG = Postgres()
STATE = {"acked": {}}  # serial hex -> certificate DER, every issuance pkid answered


def node(journal, node_id=1, log=None, pg=None):
    return Pkid(PKID, PKI, TMP, args=["--node", str(node_id), "--journal",
                                      os.path.join(TMP, journal), "--postgres",
                                      (pg or PG).conninfo()],
                log_name=log or journal + ".log")


def csr():
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet")])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def issue_many(server, n):
    """n certificates for redis through IssueStream, as pki-agent; every
    acknowledged one is remembered."""
    ch = channel(server, PKI)
    stream = method(ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                    streaming=True)
    reqs = [pki_pb2.IssueRequest(csr=csr(), service="redis", usage=pki_pb2.USAGE_CLIENT,
                                 request_id=i + 1) for i in range(n)]
    got = 0
    for r in stream(iter(reqs), timeout=120):
        assert r.status_code == 0, (r.status_code, r.status_message)
        STATE["acked"][r.serial] = r.certificate
        got += 1
    ch.close()
    assert got == n, got


def inventory():
    """serial hex -> DER, from PostgreSQL."""
    rows = PG.psql("SELECT encode(serial, 'hex'), encode(der, 'hex') FROM pkid_certificates")
    return {s: bytes.fromhex(d) for s, d in rows}


def metric(server, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % server.admin, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"(?m)^%s (\S+)$" % re.escape(name), text)
    return float(m.group(1)) if m else None


def ready(server):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % server.admin, timeout=5) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False


def all_shipped():
    inv = inventory()
    return all(inv.get(s) == der for s, der in STATE["acked"].items())


def test_schema_applied():
    PG.start()
    STATE["a"] = node("j1").start()
    rows = PG.psql("SELECT version, name FROM pkid_schema_migrations")
    assert rows == [("1", "0001_fleet.sql"), ("2", "0002_claims.sql"),
                    ("3", "0003_follow.sql"), ("4", "0004_checkpoints.sql")], rows
    rows = PG.psql("SELECT node_id, lease_until > now() FROM pkid_nodes")
    assert rows == [("1", "t")], rows
    # A restart on the same database applies nothing again.
    STATE["a"].stop()
    STATE["a"] = node("j1").start()
    assert "fleet_migrated" not in STATE["a"].log().split('"listening"')[-2], STATE["a"].log()
    assert PG.psql("SELECT count(*) FROM pkid_schema_migrations") == [("4",)]


def test_same_node_id_refused():
    other = node("j2", log="j2.log")
    try:
        other.start(timeout=15)
    except RuntimeError as e:
        text = str(e)
    else:
        other.stop()
        raise AssertionError("a second node with id 1 started")
    assert "node id 1 is held by the pkid on" in text and "--node" in text, text
    assert other.proc.returncode not in (0, None), other.proc.returncode


def test_ships_what_was_acknowledged():
    issue_many(STATE["a"], 300)
    wait_for("the inventory to hold every acknowledged certificate", all_shipped, 30, step=0.2)
    counts = PG.psql("SELECT count(*), count(DISTINCT serial) FROM pkid_certificates"
                     " WHERE service = 'redis' AND node_id = 1")
    assert counts == [("300", "300")], counts
    assert metric(STATE["a"], "pkid_fleet_connected") == 1
    wait_for("lag 0", lambda: metric(STATE["a"], "pkid_fleet_ship_lag_records") == 0, 10)
    # What the operators' command makes of it.
    out = subprocess.run([PKICTL, "fleet", "status", "--postgres", PG.conninfo(), "--json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert PG.password not in out.stdout + out.stderr
    nodes = {n["node_id"]: n for n in json.loads(out.stdout)["nodes"]}
    assert nodes[1]["certificates"] >= 300 and nodes[1]["lag"] == 0, nodes


def test_revocation_shipped():
    serial = next(iter(STATE["acked"]))
    ch = channel(STATE["a"], PKI)
    revoke = method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)
    revoke(pki_pb2.RevokeRequest(serial=serial, reason=pki_pb2.REVOCATION_REASON_SUPERSEDED),
           timeout=10)
    ch.close()
    wait_for("the revocation in PostgreSQL", lambda: PG.psql(
        "SELECT count(*) FROM pkid_revocations WHERE serial = decode(:'s', 'hex')", s=serial)
        == [("1",)], 15, step=0.2)


def test_kill9_nothing_lost_or_doubled():
    for round_ in range(3):
        issue_many(STATE["a"], 100)
        STATE["a"].kill()  # SIGKILL right after the answers: shipping may lag
        STATE["a"] = node("j1").start()  # same journal: its own id back at once
        wait_for("catch-up after kill -9 (round %d)" % round_, all_shipped, 30, step=0.2)
    n = len(STATE["acked"])
    counts = PG.psql("SELECT count(*), count(DISTINCT serial) FROM pkid_certificates"
                     " WHERE service = 'redis' AND node_id = 1")
    assert counts == [(str(n), str(n))], (counts, n)


def test_postgres_down_issuance_goes_on():
    # Ready once it has applied what the fleet had (follow.h): a node that
    # lost PostgreSQL before that stays out of haproxy until it is back.
    wait_for("ready", lambda: ready(STATE["a"]), 15)
    PG.stop()
    before = len(STATE["acked"])
    issue_many(STATE["a"], 100)
    assert len(STATE["acked"]) == before + 100
    wait_for("disconnected", lambda: metric(STATE["a"], "pkid_fleet_connected") == 0, 15)
    wait_for("the lag to show the records not shipped", lambda: (
        metric(STATE["a"], "pkid_fleet_ship_lag_records") or 0) >= 100, 10)
    assert ready(STATE["a"]), ("an unreachable database must not take the node out",
                               STATE["a"].log()[-3000:])
    PG.restart()
    wait_for("catch-up after PostgreSQL returned", all_shipped, 30, step=0.2)
    wait_for("connected", lambda: metric(STATE["a"], "pkid_fleet_connected") == 1, 15)


def test_sigterm_frees_the_id():
    STATE["a"].signal(signal.SIGTERM)
    assert STATE["a"].proc.wait(timeout=20) == 0, STATE["a"].log()[-2000:]
    rows = PG.psql("SELECT lease_until <= now() FROM pkid_nodes WHERE node_id = 1")
    assert rows == [("t",)], rows
    # Another journal takes id 1 at once, its cursor afresh.
    other = node("j3").start()
    wait_for("the new holder ships its own records", lambda: PG.psql(
        "SELECT shipped_seq > 0 FROM pkid_nodes WHERE node_id = 1") == [("t",)], 15)
    other.stop()


def test_newer_schema_is_used():
    PG.psql("INSERT INTO pkid_schema_migrations (version, name) VALUES (999, '0999_future.sql')")
    try:
        s = node("j3").start()
        assert '"fleet_schema_newer"' in s.log(), s.log()
        s.stop()
    finally:
        PG.psql("DELETE FROM pkid_schema_migrations WHERE version = 999")


try:
    run("schema_applied", test_schema_applied)
    run("same_node_id_refused", test_same_node_id_refused)
    run("ships_what_was_acknowledged", test_ships_what_was_acknowledged)
    run("revocation_shipped", test_revocation_shipped)
    run("kill9_nothing_lost_or_doubled", test_kill9_nothing_lost_or_doubled)
    run("postgres_down_issuance_goes_on", test_postgres_down_issuance_goes_on)
    run("sigterm_frees_the_id", test_sigterm_frees_the_id)
    run("newer_schema_is_used", test_newer_schema_is_used)
finally:
    if STATE.get("a") is not None:
        STATE["a"].stop()
    PG.cleanup()
finish()
