#!/usr/bin/python3
"""fleet_failover_test: a pkid node ships to a PostgreSQL primary with a
streaming-replication standby; the primary is killed (SIGKILL) under load
and the standby promoted. The node, given both in one libpq conninfo
(host=A,B target_session_attrs=read-write), finds the new primary and
resumes shipping from the cursor the new primary has: batches the dead
primary had committed but not replicated (replication is asynchronous)
are shipped again, so every certificate pkid acknowledged ends up in the
new primary, once. Issuance never stops meanwhile. To make sure rows are
lost in the failover, the primary's WAL sender is stopped (SIGSTOP) for
two rounds before the primary dies, so the new primary lacks them.

Usage: fleet_failover_test.py PKICTL PKID PROTO
"""
import os
import signal
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pgtest import Postgres, _children  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, load_proto, method, wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
PRIMARY = Postgres()
STATE = {"acked": {}, "errors": []}
ROUNDS = 12  # of 50 certificates each
CUT_AT, FAIL_AT = 3, 5  # replication stops after round 3; the primary dies after round 5


def csr():
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "failover")])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def issue_round(server, n):
    ch = channel(server, PKI)
    stream = method(ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                    streaming=True)
    reqs = [pki_pb2.IssueRequest(csr=csr(), service="redis", usage=pki_pb2.USAGE_CLIENT,
                                 request_id=i + 1) for i in range(n)]
    for r in stream(iter(reqs), timeout=120):
        if r.status_code != 0:
            STATE["errors"].append((r.status_code, r.status_message))
        else:
            STATE["acked"][r.serial] = r.certificate
    ch.close()


def conninfo(a, b):
    # Both servers; libpq takes the first that accepts writes.
    return ("host=127.0.0.1,127.0.0.1 port=%d,%d dbname=pkid user=%s password=%s"
            " target_session_attrs=read-write connect_timeout=2" % (
                a.port, b.port, a.user, a.password))


def test_setup():
    PRIMARY.start()
    STATE["standby"] = PRIMARY.standby()
    assert STATE["standby"].in_recovery()
    STATE["node"] = Pkid(PKID, PKI, TMP, args=[
        "--postgres", conninfo(PRIMARY, STATE["standby"])]).start()


def walsender(primary):
    """The primary's WAL sender process (the standby's connection)."""
    for pid in _children(primary.proc.pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"walsender" in f.read():
                    return pid
        except OSError:
            pass
    return None


def test_issuance_goes_on_through_failover():
    node, standby = STATE["node"], STATE["standby"]
    done = threading.Event()
    marks = {CUT_AT: threading.Event(), FAIL_AT: threading.Event()}
    resume = threading.Event()

    def load():
        try:
            for i in range(1, ROUNDS + 1):
                issue_round(node, 50)
                if i in marks:
                    marks[i].set()
                    resume.wait(60)
                    resume.clear()
        finally:
            done.set()
    t = threading.Thread(target=load)
    t.start()
    # Replication stops: what the primary commits from here is not on the
    # standby (asynchronous replication loses it when the primary dies).
    assert marks[CUT_AT].wait(120)
    pid = wait_for("the primary's WAL sender", lambda: walsender(PRIMARY), 15)
    os.kill(pid, signal.SIGSTOP)
    wait_for("shipping to the primary", lambda: PRIMARY.psql(
        "SELECT count(*) FROM pkid_certificates WHERE node_id = 1") == [
        (str(len(STATE["acked"])),)], 30, step=0.2)
    resume.set()
    assert marks[FAIL_AT].wait(120)
    wait_for("shipping to the primary", lambda: PRIMARY.psql(
        "SELECT count(*) FROM pkid_certificates WHERE node_id = 1") == [
        (str(len(STATE["acked"])),)], 30, step=0.2)
    STATE["acked_at_failure"] = len(STATE["acked"])
    PRIMARY.kill()  # and the stopped WAL sender with it, unsent WAL and all
    standby.promote()
    STATE["on_new_primary_at_promotion"] = int(standby.psql(
        "SELECT count(*) FROM pkid_certificates WHERE node_id = 1")[0][0])
    resume.set()
    t.join(180)
    assert done.is_set() and not t.is_alive()
    assert not STATE["errors"], STATE["errors"][:5]
    assert len(STATE["acked"]) == ROUNDS * 50, len(STATE["acked"])
    # The failover did lose shipped rows: the test is of the re-shipping.
    print("at the failure: %d acknowledged and in the old primary, %d in the new one" % (
        STATE["acked_at_failure"], STATE["on_new_primary_at_promotion"]), flush=True)
    assert STATE["on_new_primary_at_promotion"] < STATE["acked_at_failure"]


def test_new_primary_has_everything_once():
    standby = STATE["standby"]

    def shipped():
        rows = standby.psql("SELECT encode(serial, 'hex'), encode(der, 'hex')"
                            " FROM pkid_certificates WHERE node_id = 1")
        inv = {s: bytes.fromhex(d) for s, d in rows}
        return all(inv.get(s) == der for s, der in STATE["acked"].items())
    wait_for("the new primary to hold every acknowledged certificate", shipped, 60, step=0.3)
    rows = standby.psql("SELECT count(*), count(DISTINCT serial) FROM pkid_certificates"
                        " WHERE node_id = 1 AND service = 'redis'")
    n = str(len(STATE["acked"]))
    assert rows == [(n, n)], (rows, n)
    log = STATE["node"].log()
    assert '"event":"fleet_unavailable"' in log and log.count('"event":"fleet_connected"') >= 1, \
        log[-3000:]


try:
    run("setup", test_setup)
    run("issuance_goes_on_through_failover", test_issuance_goes_on_through_failover)
    run("new_primary_has_everything_once", test_new_primary_has_everything_once)
finally:
    if STATE.get("node") is not None:
        STATE["node"].stop()
    PRIMARY.cleanup()
finish()
