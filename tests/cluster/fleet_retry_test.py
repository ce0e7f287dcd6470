#!/usr/bin/python3
"""fleet_retry_test: a revocation another node made, which this node could
not journal (its disk full), is never passed over (server/fleet/follow.h,
pkid_follow_retry). Two real nodes on one real PostgreSQL 15; node 2's
journal fails every write into its third segment (tests/fault's
libfaultfs.so, ENOSPC: the journal goes on, each commit refused):

  - node 1 revokes a certificate node 2 issued; node 2 cannot journal the
    revocation and says it will read it again (fleet_follow_retry);
  - the cursor node 2 keeps in its journal stays before the revocation,
    through a kill -9;
  - restarted on a working disk, node 2 applies it: revoked.

Usage: fleet_retry_test.py PKICTL PKID PROTO LIBFAULTFS
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from pgtest import Postgres  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, load_proto, make_csr, method  # noqa: E402
from pkidtest import wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO, SHIM = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
PG = Postgres()
NODES = {}
STATE = {}
J2 = os.path.join(TMP, "j2")
# Every write into node 2's third journal segment fails, as on a full disk.
FULL_DISK = ",".join("%s:ENOSPC:1+:0000000000000003.seg" % call
                     for call in ("write", "pwrite", "fdatasync"))


def node(n, faulty=False):
    env = None
    if faulty:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PKID_FAULT")}
        env.update({"LD_PRELOAD": SHIM, "PKID_FAULT": FULL_DISK, "PKID_FAULT_LOG": "1"})
    NODES[n] = Pkid(PKID, PKI, TMP, args=[
        "--node", str(n), "--journal", os.path.join(TMP, "j%d" % n), "--postgres",
        PG.conninfo(), "--journal-segment-bytes", "65536"],
        log_name="node%d.log" % n, env=env).start()
    return NODES[n]


def issue(n):
    with channel(NODES[n], PKI) as ch:
        return method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)(
            pki_pb2.IssueRequest(csr=make_csr("redis"), service="redis",
                                 usage=pki_pb2.USAGE_CLIENT), timeout=15).serial


def state(n, serial):
    with channel(NODES[n], PKI) as ch:
        return method(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)(
            pki_pb2.GetStatusRequest(serial=serial), timeout=15).state


def test_node2_disk_fills():
    PG.start()
    node(1)
    node(2, faulty=True)
    STATE["victim"] = issue(2)
    wait_for("node 1 to know it", lambda: known(1, STATE["victim"]), 15)
    # Node 2 issues until its journal reaches the third segment.
    for _ in range(1000):
        try:
            issue(2)
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                grpc.StatusCode.UNAVAILABLE), (e.code(), e.details())
            break
    else:
        raise AssertionError("node 2's journal never reached its third segment")
    assert "faultfs: " in NODES[2].log()


def known(n, serial):
    try:
        return state(n, serial)
    except grpc.RpcError:
        return None


def test_revocation_not_journaled_is_read_again():
    with channel(NODES[1], PKI) as ch:
        method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)(
            pki_pb2.RevokeRequest(serial=STATE["victim"],
                                  reason=pki_pb2.REVOCATION_REASON_SUPERSEDED), timeout=15)
    STATE["rev_seq"] = int(PG.psql("SELECT fleet_seq FROM pkid_revocations"
                                   " WHERE serial = decode(:'s', 'hex')",
                                   s=STATE["victim"])[0][0])
    wait_for("node 2 to retry the revocation it could not journal",
             lambda: '"fleet_follow_retry"' in NODES[2].log(), 30, step=0.1)
    assert state(2, STATE["victim"]) == pki_pb2.CertificateStatus.STATE_GOOD


def test_cursor_stays_before_it():
    NODES[2].kill()
    path = os.path.join(J2, "fleet-follow")
    saved = int(open(path).read()) if os.path.exists(path) else 0
    assert saved < STATE["rev_seq"], (saved, STATE["rev_seq"])


def test_restarted_node_applies_it():
    node(2)
    wait_for("node 2 to apply the revocation", lambda: known(2, STATE["victim"]) ==
             pki_pb2.CertificateStatus.STATE_REVOKED, 30, step=0.1)


def test_clean_exits():
    for n in sorted(NODES):
        code = NODES.pop(n).stop(timeout=30)
        assert code == 0, (n, code)


try:
    run("node2_disk_fills", test_node2_disk_fills)
    run("revocation_not_journaled_is_read_again", test_revocation_not_journaled_is_read_again)
    run("cursor_stays_before_it", test_cursor_stays_before_it)
    run("restarted_node_applies_it", test_restarted_node_applies_it)
    run("clean_exits", test_clean_exits)
finally:
    for s in NODES.values():
        s.stop()
    PG.cleanup()
finish()
