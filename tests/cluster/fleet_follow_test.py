#!/usr/bin/python3
"""fleet_follow_test: every node answers for every certificate of the
fleet and applies a revocation made on any node (server/fleet/follow.h,
server/pipeline/import.h), with real pkid nodes sharing one real
PostgreSQL 15 on loopback:

  - a certificate issued on node 2 is known to node 1: GetStatus good, and
    node 1's OCSP responder (Python cryptography's request, by HTTP POST)
    says good, signed;
  - a row no CA of ours signed (the CA's name and key id, another key),
    put into the database as if node 2 had shipped it, is refused;
  - node 1 revokes node 2's certificate: node 2 says revoked by GetStatus
    and OCSP within the bound (the delay is printed), and its CRL for the
    CA lists the serial; the other way round too;
  - the nodes' CRLs of one CA read as one sequence: each number carries
    its node's id in its low 15 bits and a later CRL from another node has
    a higher number (RFC 5280 5.2.3, pipeline/crl.h fleet_node);
  - a node started later on an empty journal is not ready until it has
    applied what the fleet had, then answers for all of it, the revoked
    ones revoked; restarted, it follows from the cursor its journal keeps;
  - each node's signed checkpoints are in PostgreSQL and verify its journal;
  - the follower's own records are not shipped again (each certificate is
    in the inventory once, by the node that issued it).

Usage: fleet_follow_test.py PKICTL PKID PROTO
"""
import datetime
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402
from pgtest import Postgres  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, load_proto, make_csr, method  # noqa: E402
from pkidtest import wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
PG = Postgres()
NODES = {}
CERTS = {}  # serial hex -> (node that issued it, certificate)
# A revocation made on one node is applied on every other within this
# (the issue's bound is 2 s; the test allows for a loaded CI machine).
APPLY_BOUND_S = 10
GOOD = pki_pb2.CertificateStatus.STATE_GOOD
REVOKED = pki_pb2.CertificateStatus.STATE_REVOKED


def node(node_id):
    return Pkid(PKID, PKI, TMP, args=["--node", str(node_id), "--journal",
                                      os.path.join(TMP, "j%d" % node_id), "--postgres",
                                      PG.conninfo(), "--checkpoint-interval-s", "1"],
                log_name="node%d.log" % node_id)


def issue(n, count=1):
    """|count| client certificates for redis from node |n|, as pki-agent."""
    out = []
    with channel(NODES[n], PKI) as ch:
        call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
        for _ in range(count):
            r = call(pki_pb2.IssueRequest(csr=make_csr("redis"), service="redis",
                                          usage=pki_pb2.USAGE_CLIENT), timeout=15)
            CERTS[r.serial] = (n, x509.load_der_x509_certificate(r.certificate))
            out.append(r.serial)
    return out


def status(n, serial):
    with channel(NODES[n], PKI) as ch:
        call = method(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)
        return call(pki_pb2.GetStatusRequest(serial=serial), timeout=15)


def known(n, serial):
    try:
        return status(n, serial)
    except Exception:  # NOT_FOUND until the certificate is followed
        return None


def revoke(n, serial):
    with channel(NODES[n], PKI) as ch:
        call = method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)
        call(pki_pb2.RevokeRequest(serial=serial,
                                   reason=pki_pb2.REVOCATION_REASON_KEY_COMPROMISE), timeout=15)


def issuer_cert(name):
    path = os.path.join(PKI, "intermediate-ca", name, "certs", name + ".crt")
    return x509.load_pem_x509_certificate(open(path, "rb").read())


def ocsp_status(n, serial):
    """Node |n|'s OCSP answer for |serial|, its signature checked."""
    cert = CERTS[serial][1]
    issuer = issuer_cert(status(n, serial).issuer)
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    http = urllib.request.Request("http://127.0.0.1:%d/" % NODES[n].ocsp,
                                  data=req.public_bytes(serialization.Encoding.DER),
                                  headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(http, timeout=10) as r:
        resp = ocsp.load_der_ocsp_response(r.read())
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, resp.response_status
    assert resp.serial_number == cert.serial_number
    issuer.public_key().verify(resp.signature, resp.tbs_response_bytes,
                               ec.ECDSA(resp.signature_hash_algorithm))
    return resp.certificate_status


def crl_lists(n, serial):
    name = status(n, serial).issuer
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/crl/%s.crl" % (NODES[n].ocsp, name),
                                    timeout=10) as r:
            crl = x509.load_der_x509_crl(r.read())
    except urllib.error.HTTPError:
        return False
    return crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def crl_number(n, ca):
    with urllib.request.urlopen("http://127.0.0.1:%d/crl/%s.crl" % (NODES[n].ocsp, ca),
                                timeout=10) as r:
        crl = x509.load_der_x509_crl(r.read())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_crl_numbers_one_order_across_nodes():
    # Behind one load balancer the nodes' CRLs of a CA must read as one
    # sequence (RFC 5280 5.2.3): the number is the time over the node id.
    serial = issue(1)[0]
    ca = status(1, serial).issuer
    first = crl_number(1, ca)
    assert first & 0x7fff == 1, hex(first)
    time.sleep(0.01)
    revocation_applied(1, 2)  # both nodes build new CRLs of this CA
    wait_for("node 2's next CRL", lambda: crl_number(2, ca) > first, 30, step=0.1)
    later = crl_number(2, ca)
    assert later & 0x7fff == 2, hex(later)
    print("CRL numbers of %s: node 1 %d, later node 2 %d" % (ca, first, later), flush=True)


def ready(n):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % NODES[n].admin,
                                    timeout=5) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False


def test_other_nodes_certificates_known():
    PG.start()
    NODES[1] = node(1).start()
    NODES[2] = node(2).start()
    serials = issue(2, 5)
    for s in serials:
        st = wait_for("node 1 to know %s" % s, lambda: known(1, s), APPLY_BOUND_S, step=0.05)
        assert st.state == GOOD and st.service == "redis", st
        assert ocsp_status(1, s) == ocsp.OCSPCertStatus.GOOD


def revocation_applied(by, on):
    serial = issue(on)[0]
    wait_for("node %d to know %s" % (by, serial), lambda: known(by, serial), APPLY_BOUND_S)
    t0 = time.monotonic()
    revoke(by, serial)
    wait_for("node %d to apply the revocation" % on,
             lambda: status(on, serial).state == REVOKED, APPLY_BOUND_S, step=0.01)
    delay = time.monotonic() - t0
    assert ocsp_status(on, serial) == ocsp.OCSPCertStatus.REVOKED
    print("revoked on node %d, applied on node %d after %.3f s (Revoke's answer included)"
          % (by, on, delay), flush=True)
    wait_for("node %d's CRL to list %s" % (on, serial), lambda: crl_lists(on, serial), 30,
             step=0.2)
    return serial


def test_forged_row_not_vouched_for():
    # A certificate row no CA of ours signed (the issuer's name and key id,
    # another key): the database cannot make a node vouch for it.
    genuine = CERTS[next(iter(CERTS))][1]
    ca_cert = issuer_cert(status(1, next(iter(CERTS))).issuer)
    forger = ec.generate_private_key(ec.SECP256R1())
    serial = int("01" + "0002" + os.urandom(16).hex(), 16)
    now = datetime.datetime.now(datetime.timezone.utc)
    forged = x509.CertificateBuilder().subject_name(genuine.subject).issuer_name(
        ca_cert.subject).public_key(forger.public_key()).serial_number(serial).not_valid_before(
        now).not_valid_after(now + datetime.timedelta(days=1)).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
        critical=False).sign(forger, hashes.SHA256())
    der = forged.public_bytes(serialization.Encoding.DER)
    hex_serial = "%x" % serial
    hex_serial = "0" * (len(hex_serial) % 2) + hex_serial
    PG.psql("INSERT INTO pkid_certificates (serial, node_id, journal_seq, ca, service, identity,"
            " usage, not_before, not_after, key_sha256, der, issued_at) VALUES"
            " (decode(:'s', 'hex'), 2, 0, 'x', 'redis', 'forger', 'client', now(), now(),"
            " decode('00', 'hex'), decode(:'d', 'hex'), now())", s=hex_serial, d=der.hex())
    wait_for("node 1 to refuse the forged row", lambda: "not signed by" in NODES[1].log(), 15)
    assert known(1, hex_serial) is None


def test_revocation_on_one_node_applied_on_the_other():
    revocation_applied(1, 2)
    revocation_applied(2, 1)


def test_late_node_syncs_before_ready():
    issue(1, 20)
    NODES[3] = node(3).start()
    wait_for("node 3 ready", lambda: ready(3), 30, step=0.1)
    log = NODES[3].log()
    assert '"fleet_synced"' in log, log[-2000:]
    for serial, (n, _) in CERTS.items():
        want = status(n, serial).state
        assert status(3, serial).state == want, serial


def test_restart_follows_from_its_cursor():
    # Node 3 keeps its cursor in its journal: restarted, it reads only
    # what came since (fleet_following logs where it starts).
    NODES[3].stop()
    issue(1, 3)
    NODES[3] = node(3).start()
    wait_for("node 3 ready again", lambda: ready(3), 30, step=0.1)
    starts = [line for line in NODES[3].log().splitlines() if '"fleet_following"' in line]
    assert len(starts) == 2, starts
    assert '"from":"0"' in starts[0] and '"from":"0"' not in starts[1], starts
    for serial, (n, _) in CERTS.items():
        assert status(3, serial).state == status(n, serial).state, serial


def test_checkpoints_published_in_postgres():
    # Each node's signed checkpoints reach the fleet's database, where the
    # node's own disk cannot take them back; one verifies its journal.
    wait_for("checkpoints of nodes 1 and 2", lambda: PG.psql(
        "SELECT count(DISTINCT node_id) FROM pkid_checkpoints WHERE node_id IN (1, 2)")
        == [("2",)], 30, step=0.2)
    text = PG.psql("SELECT text FROM pkid_checkpoints WHERE node_id = 1"
                   " ORDER BY seq DESC LIMIT 1")[0][0]
    path = os.path.join(TMP, "node1.checkpoint")
    with open(path, "w") as f:
        f.write(text)
    out = subprocess.run([PKICTL, "journal", "verify", os.path.join(TMP, "j1"), "--checkpoint",
                          path, "--pki", PKI], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "is unchanged" in out.stdout, out.stdout + out.stderr


def test_followed_records_not_shipped_again():
    rows = PG.psql("SELECT count(*), count(DISTINCT serial) FROM pkid_certificates"
                   " WHERE service = 'redis' AND node_id <> 0 AND identity <> 'forger'")
    assert rows == [(str(len(CERTS)), str(len(CERTS)))], (rows, len(CERTS))
    rows = PG.psql("SELECT node_id, count(*) FROM pkid_certificates"
                   " WHERE service = 'redis' AND node_id <> 0 AND identity <> 'forger'"
                   " GROUP BY node_id ORDER BY node_id")
    want = sorted({n for n, _ in CERTS.values()})
    assert [int(r[0]) for r in rows] == want, rows


def test_clean_exits():
    # 0: drained, and (under ThreadSanitizer) no report, which would have
    # ended the process (halt_on_error).
    for n in sorted(NODES):
        code = NODES.pop(n).stop(timeout=30)
        assert code == 0, (n, code)


try:
    run("other_nodes_certificates_known", test_other_nodes_certificates_known)
    run("forged_row_not_vouched_for", test_forged_row_not_vouched_for)
    run("revocation_on_one_node_applied_on_the_other",
        test_revocation_on_one_node_applied_on_the_other)
    run("crl_numbers_one_order_across_nodes", test_crl_numbers_one_order_across_nodes)
    run("late_node_syncs_before_ready", test_late_node_syncs_before_ready)
    run("restart_follows_from_its_cursor", test_restart_follows_from_its_cursor)
    run("checkpoints_published_in_postgres", test_checkpoints_published_in_postgres)
    run("followed_records_not_shipped_again", test_followed_records_not_shipped_again)
    run("clean_exits", test_clean_exits)
finally:
    for s in NODES.values():
        s.stop()
    PG.cleanup()
finish()
