#!/usr/bin/python3
"""fleet_claims_test: what must hold across the fleet is decided in its
PostgreSQL before a node journals it (server/fleet/fleet.h, Claims), with
two real pkid nodes sharing one real PostgreSQL 15 on loopback:

  - a bootstrap token used on one node is refused on the other, which has
    never seen it used (its own journal does not know);
  - the same token sent to both nodes at once enrolls exactly once;
  - a revocation is in pkid_revocations when Revoke answers, not only when
    the journal is shipped (which later fills its journal position in);
  - with PostgreSQL down, Revoke and bootstrap are refused UNAVAILABLE, the
    token is not spent by the refusal, and issuance without a token goes
    on; with PostgreSQL back, both work again.

Usage: fleet_claims_test.py PKICTL PKID PROTO
"""
import os
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from pgtest import Postgres  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, expect_status, load_proto, make_csr  # noqa: E402
from pkidtest import method  # noqa: E402
from pkidtest import wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
PG = Postgres()
NODES = {}


def token(service="vault"):
    out = subprocess.run([PKICTL, "token", "create", "--out", PKI, "--service", service,
                          "--ttl", "10m"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


# Tokens are made before the nodes start: they read the token key at start.
TOKENS = {name: token() for name in ("across", "race", "down")}


def node(node_id):
    return Pkid(PKID, PKI, TMP, args=["--node", str(node_id), "--journal",
                                      os.path.join(TMP, "j%d" % node_id), "--postgres",
                                      PG.conninfo()],
                log_name="node%d.log" % node_id)


def enroll(server, tok):
    with channel(server, PKI, anonymous=True) as ch:
        call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
        return call(pki_pb2.IssueRequest(csr=make_csr("vault"), usage=pki_pb2.USAGE_SERVER,
                                         bootstrap_token=tok), timeout=15)


def issue(server):
    """A client certificate for redis, as pki-agent (no token)."""
    with channel(server, PKI) as ch:
        call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
        return call(pki_pb2.IssueRequest(csr=make_csr("redis"), service="redis",
                                         usage=pki_pb2.USAGE_CLIENT), timeout=15)


def revoke(server, serial):
    with channel(server, PKI) as ch:
        call = method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)
        return call(pki_pb2.RevokeRequest(serial=serial,
                                          reason=pki_pb2.REVOCATION_REASON_SUPERSEDED),
                    timeout=15)


def revocation_row(serial):
    return PG.psql("SELECT node_id, journal_seq FROM pkid_revocations"
                   " WHERE serial = decode(:'s', 'hex')", s=serial)


def test_token_single_use_across_nodes():
    PG.start()
    NODES[1] = node(1).start()
    NODES[2] = node(2).start()
    enroll(NODES[1], TOKENS["across"])
    # Node 2's journal has never seen this token: only the fleet knows.
    expect_status(lambda: enroll(NODES[2], TOKENS["across"]), grpc.StatusCode.UNAUTHENTICATED,
                  "already used")
    rows = PG.psql("SELECT node_id, claimed_at IS NOT NULL FROM pkid_tokens")
    assert rows == [("1", "t")], rows


def test_token_race_enrolls_once():
    outcomes = []

    def attempt(server):
        try:
            enroll(server, TOKENS["race"])
            outcomes.append("ok")
        except grpc.RpcError as e:
            outcomes.append(e.code())
    threads = [threading.Thread(target=attempt, args=(NODES[n],)) for n in (1, 2, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(map(str, outcomes)) == sorted(
        ["ok"] + [str(grpc.StatusCode.UNAUTHENTICATED)] * 3), outcomes


def test_revocation_claimed_before_answer():
    serial = issue(NODES[2]).serial
    revoke(NODES[2], serial)
    # Read at once: the row was committed before Revoke answered.
    rows = revocation_row(serial)
    assert len(rows) == 1 and rows[0][0] == "2", rows
    # The shipper fills the journal position in when it ships the record.
    wait_for("the revocation's journal position", lambda: revocation_row(serial)[0][1] != "",
             15, step=0.2)
    # Revoking it again changes nothing, and still answers.
    revoke(NODES[2], serial)
    assert len(revocation_row(serial)) == 1


def test_postgres_down_refuses_fleet_operations():
    serial = issue(NODES[1]).serial
    PG.stop()
    # Until the shipper notices, a claim fails on its own connection: also
    # UNAVAILABLE. Both paths end in the same refusal.
    expect_status(lambda: revoke(NODES[1], serial), grpc.StatusCode.UNAVAILABLE, "PostgreSQL")
    expect_status(lambda: enroll(NODES[1], TOKENS["down"]), grpc.StatusCode.UNAVAILABLE,
                  "PostgreSQL")
    issue(NODES[1])  # the journal is durable: issuance goes on
    PG.restart()
    # The refusal did not spend the token; the revocation goes through.
    def works():
        try:
            revoke(NODES[1], serial)
            return True
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
            return False
    wait_for("Revoke to work again", works, 30, step=0.3)
    enroll(NODES[1], TOKENS["down"])
    assert len(revocation_row(serial)) == 1


def test_clean_exits():
    # 0: drained, and (under ThreadSanitizer) no report, which would have
    # ended the process (halt_on_error).
    for n in sorted(NODES):
        code = NODES.pop(n).stop(timeout=30)
        assert code == 0, (n, code)


try:
    run("token_single_use_across_nodes", test_token_single_use_across_nodes)
    run("token_race_enrolls_once", test_token_race_enrolls_once)
    run("revocation_claimed_before_answer", test_revocation_claimed_before_answer)
    run("postgres_down_refuses_fleet_operations", test_postgres_down_refuses_fleet_operations)
    run("clean_exits", test_clean_exits)
finally:
    for s in NODES.values():
        s.stop()
    PG.cleanup()
finish()
