#!/usr/bin/python3
"""grpc_python_test: pkid on loopback, called by Python's grpcio.

Debian's python3-grpcio (a gRPC stack we did not write) calls pkid over
TLS with client certificates from a demo hierarchy. The message classes
are generated at test time from proto/pki/v1/pki.proto by Debian's protoc;
methods are called through grpcio's generic unary_unary/stream_stream.

Usage: grpc_python_test.py PKICTL PKID PROTO
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402
from pkidtest import (AGENT, Pkid, channel, demo_tree, expect_status, load_proto,  # noqa: E402
                      method, service_files)
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
SERVER = Pkid(PKID, PKI, TMP).start()
ROOT = open(os.path.join(PKI, "root-ca/certs/root-ca.crt"), "rb").read()
SECURITY_AGENT = "agents/security-agent/security-agent-client"


def connect(**kw):
    """A channel to SERVER (see pkidtest.channel for |kw|)."""
    return channel(SERVER, PKI, **kw)


def issue_stub(ch):
    return method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)


def make_csr(key=None, names=()):
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe")]))
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(key, algo).public_bytes(serialization.Encoding.DER)


def verify_chain(resp, ca_name):
    """The issued certificate verifies against the trust bundle, by OpenSSL."""
    d = os.path.join(TMP, "verify")
    os.makedirs(d, exist_ok=True)
    leaf = os.path.join(d, "leaf.pem")
    chain = os.path.join(d, "chain.pem")
    with open(leaf, "wb") as f:
        f.write(x509.load_der_x509_certificate(resp.certificate).public_bytes(
            serialization.Encoding.PEM))
    with open(chain, "wb") as f:
        for c in resp.chain:
            f.write(x509.load_der_x509_certificate(c).public_bytes(serialization.Encoding.PEM))
    root = os.path.join(PKI, "root-ca/certs/root-ca.crt")
    subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", root, "-untrusted", chain,
                    leaf], check=True, stdout=subprocess.DEVNULL)


def test_issue_own_service():
    with connect() as ch:
        r = issue_stub(ch)(pki_pb2.IssueRequest(csr=make_csr(), usage=pki_pb2.USAGE_SERVER),
                           timeout=10)
    c = x509.load_der_x509_certificate(r.certificate)
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pki-agent"
    assert format(c.serial_number, "x") == r.serial.lstrip("0")
    assert int(c.not_valid_after.timestamp()) == r.not_after
    eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    verify_chain(r, "agents-ca")


def test_issue_every_key_type():
    keys = [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate(),
            rsa.generate_private_key(65537, 2048)]
    with connect() as ch:
        for k in keys:
            r = issue_stub(ch)(pki_pb2.IssueRequest(csr=make_csr(k), usage=pki_pb2.USAGE_CLIENT),
                               timeout=10)
            c = x509.load_der_x509_certificate(r.certificate)
            assert c.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
                k.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)


def test_admin_issues_for_others():
    # pki-agent holds the admin permission in the catalogue.
    with connect() as ch:
        r = issue_stub(ch)(pki_pb2.IssueRequest(csr=make_csr(), service="vault",
                                                usage=pki_pb2.USAGE_SERVER), timeout=10)
    c = x509.load_der_x509_certificate(r.certificate)
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "vault"
    verify_chain(r, "infrastructure-ca")


def test_non_admin_denied_for_others():
    with connect(path=SECURITY_AGENT) as ch:
        expect_status(lambda: issue_stub(ch)(pki_pb2.IssueRequest(
            csr=make_csr(), service="vault", usage=pki_pb2.USAGE_SERVER), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED, "may not issue")


def test_names_outside_grant_denied():
    with connect() as ch:
        expect_status(lambda: issue_stub(ch)(pki_pb2.IssueRequest(
            csr=make_csr(names=[x509.DNSName("evil.example.com")]),
            usage=pki_pb2.USAGE_SERVER), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED, "evil.example.com")


def test_bad_csr_invalid_argument():
    with connect() as ch:
        expect_status(lambda: issue_stub(ch)(pki_pb2.IssueRequest(
            csr=b"\x30\x03\x02\x01\x00", usage=pki_pb2.USAGE_SERVER), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT, "CSR")
        expect_status(lambda: issue_stub(ch)(pki_pb2.IssueRequest(
            csr=make_csr(), usage=pki_pb2.USAGE_UNSPECIFIED), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT, "usage")


def test_malformed_protobuf():
    with connect() as ch:
        raw = ch.unary_unary("/pki.v1.Pki/Issue", request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
        expect_status(lambda: raw(b"\xff\xff\xff\xff", timeout=10),
                      grpc.StatusCode.INVALID_ARGUMENT, "malformed")


def test_oversize_message():
    with connect() as ch:
        raw = ch.unary_unary("/pki.v1.Pki/Issue", request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
        expect_status(lambda: raw(b"\x0a" + b"\x00" * 70000, timeout=10),
                      grpc.StatusCode.RESOURCE_EXHAUSTED, "limit")


def test_unknown_method():
    with connect() as ch:
        raw = ch.unary_unary("/pki.v1.Pki/Frobnicate", request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
        expect_status(lambda: raw(b"", timeout=10), grpc.StatusCode.UNIMPLEMENTED)


def test_no_client_certificate_refused():
    with connect(anonymous=True) as ch:
        expect_status(lambda: issue_stub(ch)(pki_pb2.IssueRequest(
            csr=make_csr(), usage=pki_pb2.USAGE_SERVER), timeout=5),
            grpc.StatusCode.UNAVAILABLE)


def test_untrusted_ca_refused():
    # A self-made CA with the same names: pkid's root does not vouch for it.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cybersec Framework Agents CA")])
    import datetime
    now = datetime.datetime.utcnow()
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pki-agent")]))
            .issuer_name(name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                "spiffe://cybersec-framework.local/agents/pki-agent")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    kc = (key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
          leaf.public_bytes(pem) + ca.public_bytes(pem))
    with connect(key_and_chain=kc) as ch:
        expect_status(lambda: issue_stub(ch)(pki_pb2.IssueRequest(
            csr=make_csr(), usage=pki_pb2.USAGE_SERVER), timeout=5),
            grpc.StatusCode.UNAVAILABLE)


def test_issue_stream():
    good = make_csr()
    reqs = []
    for i in range(40):
        csr = good if i != 17 else b"garbage"
        reqs.append(pki_pb2.IssueRequest(csr=csr, usage=pki_pb2.USAGE_CLIENT, request_id=1000 + i))
    with connect() as ch:
        out = list(method(ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                          streaming=True)(iter(reqs), timeout=20))
    assert sorted(r.request_id for r in out) == [1000 + i for i in range(40)]
    bad = [r for r in out if r.status_code != 0]
    assert len(bad) == 1 and bad[0].request_id == 1017, bad
    assert bad[0].status_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    serials = {r.serial for r in out if r.status_code == 0}
    assert len(serials) == 39


def test_issue_stream_slow_reader():
    """Every request of a stream is answered, also when the client reads
    its answers late: pkid stops reading requests while too much of what
    it answered waits unsent, and must not end the stream on the ones
    still unread once the client has half-closed."""
    n = 4000
    good = make_csr()
    reqs = [pki_pb2.IssueRequest(csr=good, usage=pki_pb2.USAGE_CLIENT, request_id=i)
            for i in range(n)]
    with connect(path=SECURITY_AGENT) as ch:
        call = method(ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                      streaming=True)(iter(reqs), timeout=120)
        time.sleep(3)  # every request sent; the answers pile up unread
        ids = [r.request_id for r in call]
        assert call.code() == grpc.StatusCode.OK, call.code()
    missing = sorted(set(range(n)) - set(ids))
    assert len(ids) == n and not missing, "%d answers for %d requests; missing %s..." % (
        len(ids), n, missing[:5])


def test_renew_with_own_certificate():
    with connect() as ch:
        r = method(ch, "Renew", pki_pb2.RenewRequest, pki_pb2.IssueResponse)(
            pki_pb2.RenewRequest(csr=make_csr()), timeout=10)
    c = x509.load_der_x509_certificate(r.certificate)
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "spiffe://cybersec-framework.local/agents/pki-agent" in \
        san.get_values_for_type(x509.UniformResourceIdentifier)
    eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_trust_bundle():
    with connect() as ch:
        b = method(ch, "GetTrustBundle", pki_pb2.GetTrustBundleRequest, pki_pb2.TrustBundle)(
            pki_pb2.GetTrustBundleRequest(), timeout=10)
        one = method(ch, "GetTrustBundle", pki_pb2.GetTrustBundleRequest, pki_pb2.TrustBundle)(
            pki_pb2.GetTrustBundleRequest(ca="agents-ca"), timeout=10)
        expect_status(lambda: method(ch, "GetTrustBundle", pki_pb2.GetTrustBundleRequest,
                                     pki_pb2.TrustBundle)(
            pki_pb2.GetTrustBundleRequest(ca="nope"), timeout=10), grpc.StatusCode.NOT_FOUND)
    assert b.root == x509.load_pem_x509_certificate(ROOT).public_bytes(serialization.Encoding.DER)
    assert sorted(s.ca for s in b.stores) == sorted(
        ["infrastructure-ca", "agents-ca", "external-ca", "load-balancer-ca"])
    assert [s.ca for s in one.stores] == ["agents-ca"]
    with open(os.path.join(PKI, "trust-stores/agent-truststore.pem")) as f:
        assert one.stores[0].pem == f.read()


def test_wrong_content_type():
    # nghttp (nghttp2-client) speaks HTTP/2 but not gRPC: pkid answers 415.
    key = os.path.join(PKI, "service-certificates/agents/pki-agent/pki-agent-client.key")
    crt = os.path.join(TMP, "client-fullchain.crt")
    with open(crt, "wb") as f:
        f.write(b"".join(service_files(PKI, AGENT)[1:]))
    body = os.path.join(TMP, "body")
    with open(body, "wb") as f:
        f.write(b"hello")
    out = subprocess.run(["nghttp", "-v", "--key=" + key, "--cert=" + crt, "-d", body,
                          "-H", "content-type: text/plain",
                          "https://127.0.0.1:%d/pki.v1.Pki/Issue" % SERVER.grpc],
                         capture_output=True, text=True, timeout=20)
    assert ":status: 415" in out.stdout, out.stdout + out.stderr


def status_stub(ch):
    return method(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)


def revoke_stub(ch):
    return method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)


def test_status_and_revoke():
    with connect() as ch:
        r = issue_stub(ch)(pki_pb2.IssueRequest(csr=make_csr(), usage=pki_pb2.USAGE_SERVER),
                           timeout=10)
        st = status_stub(ch)(pki_pb2.GetStatusRequest(serial=r.serial), timeout=10)
        assert st.state == pki_pb2.CertificateStatus.STATE_GOOD, st
        assert st.service == "pki-agent" and st.issuer == "agents-ca", st
        assert st.usage == pki_pb2.USAGE_SERVER and st.not_after == r.not_after, st
        rv = revoke_stub(ch)(pki_pb2.RevokeRequest(
            serial=r.serial, reason=pki_pb2.REVOCATION_REASON_KEY_COMPROMISE), timeout=10)
        assert rv.revoked_at > 0
        st = status_stub(ch)(pki_pb2.GetStatusRequest(serial=r.serial), timeout=10)
        assert st.state == pki_pb2.CertificateStatus.STATE_REVOKED, st
        assert st.revocation_reason == pki_pb2.REVOCATION_REASON_KEY_COMPROMISE
        assert st.revoked_at == rv.revoked_at
        # Revoking again reports the first revocation.
        again = revoke_stub(ch)(pki_pb2.RevokeRequest(serial=r.serial), timeout=10)
        assert again.revoked_at == rv.revoked_at
        expect_status(lambda: status_stub(ch)(pki_pb2.GetStatusRequest(
            serial="01" + "00" * 18), timeout=10), grpc.StatusCode.NOT_FOUND)
        expect_status(lambda: status_stub(ch)(pki_pb2.GetStatusRequest(serial="xyz"),
                                              timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
        expect_status(lambda: revoke_stub(ch)(pki_pb2.RevokeRequest(
            serial="01" + "00" * 18), timeout=10), grpc.StatusCode.NOT_FOUND)


def test_large_answer_is_delivered():
    """An answer larger than the connection's write queue (64 KiB) goes out
    whole without the client sending anything more: a keyCompromise
    revocation of one of 8,000 certificates of a key lists every serial
    (some 320 KB). Before, the answer stalled once the queue drained and the
    stream was reset (CANCEL) ten seconds after the status."""
    n = 8000
    csr = make_csr()
    reqs = [pki_pb2.IssueRequest(csr=csr, usage=pki_pb2.USAGE_CLIENT, request_id=i)
            for i in range(n)]
    serials = set()
    with connect(path=SECURITY_AGENT) as ch:
        stream = method(ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                        streaming=True)
        for _ in range(10):  # the identity's rate limit answers some "try again"
            out = list(stream(iter(reqs), timeout=60))
            serials |= {r.serial for r in out if r.status_code == 0}
            done = {r.request_id for r in out if r.status_code == 0}
            reqs = [r for r in reqs if r.request_id not in done]
            if not reqs:
                break
            time.sleep(1)
        assert not reqs, "%d never issued" % len(reqs)
        first = sorted(serials)[0]
        start = time.time()
        rv = revoke_stub(ch)(pki_pb2.RevokeRequest(
            serial=first, reason=pki_pb2.REVOCATION_REASON_KEY_COMPROMISE,
            revoke_same_key=True), timeout=30)
        took = time.time() - start
    print("  revocation by key: %d serials, %d bytes of answer in %.2f s" % (
        len(rv.revoked_serials), rv.ByteSize(), took))
    assert set(rv.revoked_serials) == serials, (len(rv.revoked_serials), len(serials))


def test_revoke_someone_elses_denied():
    with connect() as ch:  # admin issues a vault certificate...
        r = issue_stub(ch)(pki_pb2.IssueRequest(csr=make_csr(), service="vault",
                                                usage=pki_pb2.USAGE_SERVER), timeout=10)
    # ...which security-agent (not admin, not vault) may not revoke.
    with connect(path=SECURITY_AGENT) as ch:
        expect_status(lambda: revoke_stub(ch)(pki_pb2.RevokeRequest(serial=r.serial),
                                              timeout=10),
                      grpc.StatusCode.PERMISSION_DENIED, "may not revoke")


def test_revoked_certificate_refused():
    # An agent gets a client certificate, it is revoked, and calls made with
    # it are refused even on a new connection.
    key = ec.generate_private_key(ec.SECP256R1())
    with connect() as ch:
        r = issue_stub(ch)(pki_pb2.IssueRequest(csr=make_csr(key), usage=pki_pb2.USAGE_CLIENT),
                           timeout=10)
    pem = serialization.Encoding.PEM
    chain = x509.load_der_x509_certificate(r.certificate).public_bytes(pem) + b"".join(
        x509.load_der_x509_certificate(c).public_bytes(pem) for c in r.chain)
    kc = (key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()), chain)
    with connect(key_and_chain=kc) as ch:
        # Valid before the revocation...
        status_stub(ch)(pki_pb2.GetStatusRequest(serial=r.serial), timeout=10)
        revoke_stub(ch)(pki_pb2.RevokeRequest(serial=r.serial), timeout=10)
        # ...refused after it.
        expect_status(lambda: issue_stub(ch)(pki_pb2.IssueRequest(
            csr=make_csr(), usage=pki_pb2.USAGE_CLIENT), timeout=10),
            grpc.StatusCode.UNAUTHENTICATED, "revoked")


def test_expired_certificate_refused():
    # A client certificate that lives two seconds, used after it expired.
    key = ec.generate_private_key(ec.SECP256R1())
    with connect() as ch:
        r = issue_stub(ch)(pki_pb2.IssueRequest(csr=make_csr(key), usage=pki_pb2.USAGE_CLIENT,
                                                validity_seconds=2), timeout=10)
    c = x509.load_der_x509_certificate(r.certificate)
    assert (c.not_valid_after - c.not_valid_before).total_seconds() <= 2 + 300
    pem = serialization.Encoding.PEM
    kc = (key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()),
          c.public_bytes(pem) + b"".join(
              x509.load_der_x509_certificate(d).public_bytes(pem) for d in r.chain))
    time.sleep(3.5)
    with connect(key_and_chain=kc) as ch:
        expect_status(lambda: issue_stub(ch)(pki_pb2.IssueRequest(
            csr=make_csr(), usage=pki_pb2.USAGE_CLIENT), timeout=5),
            grpc.StatusCode.UNAVAILABLE)


def test_graceful_shutdown():
    assert SERVER.stop() == 0
    text = SERVER.log()
    assert '"event":"draining"' in text and '"event":"stopped"' in text, text


try:
    run("issue_own_service", test_issue_own_service)
    run("issue_every_key_type", test_issue_every_key_type)
    run("admin_issues_for_others", test_admin_issues_for_others)
    run("non_admin_denied_for_others", test_non_admin_denied_for_others)
    run("names_outside_grant_denied", test_names_outside_grant_denied)
    run("bad_csr_invalid_argument", test_bad_csr_invalid_argument)
    run("malformed_protobuf", test_malformed_protobuf)
    run("oversize_message", test_oversize_message)
    run("unknown_method", test_unknown_method)
    run("no_client_certificate_refused", test_no_client_certificate_refused)
    run("untrusted_ca_refused", test_untrusted_ca_refused)
    run("issue_stream", test_issue_stream)
    run("issue_stream_slow_reader", test_issue_stream_slow_reader)
    run("renew_with_own_certificate", test_renew_with_own_certificate)
    run("trust_bundle", test_trust_bundle)
    run("wrong_content_type", test_wrong_content_type)
    run("status_and_revoke", test_status_and_revoke)
    run("large_answer_is_delivered", test_large_answer_is_delivered)
    run("revoke_someone_elses_denied", test_revoke_someone_elses_denied)
    run("revoked_certificate_refused", test_revoked_certificate_refused)
    run("expired_certificate_refused", test_expired_certificate_refused)
    run("graceful_shutdown", test_graceful_shutdown)
finally:
    SERVER.kill()
finish()
