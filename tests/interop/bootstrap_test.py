#!/usr/bin/python3
"""bootstrap_test: first enrollment with one-time bootstrap tokens.

A service with no certificate yet connects to pkid without one and
presents a token made by `pkictl token create`: it gets its certificate
once; the token is then used, also after a restart (its use is
journaled); expired, forged or misdirected tokens are refused, and a
connection without a certificate can do nothing else.

Usage: bootstrap_test.py PKICTL PKID PROTO
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
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, load_proto, method  # noqa: E402
from pkidtest import expect_status as expect  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)


def token(service, ttl="10m"):
    out = subprocess.run([PKICTL, "token", "create", "--out", PKI, "--service", service,
                          "--ttl", ttl], check=True, capture_output=True, text=True)
    return out.stdout.strip()


# Tokens are made before pkid starts: it reads the token key at start.
TOKENS = {name: token("vault") for name in ("first", "bad_csr", "restart")}
TOKENS["short"] = token("vault", "1s")
TOKENS["redis"] = token("redis")


SERVER = Pkid(PKID, PKI, TMP).start()


def anonymous():
    return channel(SERVER, PKI, anonymous=True)


def csr(valid=True):
    if not valid:
        return b"\x30\x00"
    k = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vault")])).sign(
        k, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def issue(tok, service="", valid=True):
    with anonymous() as ch:
        call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
        return call(pki_pb2.IssueRequest(csr=csr(valid), usage=pki_pb2.USAGE_SERVER,
                                         bootstrap_token=tok, service=service), timeout=10)


def test_token_enrolls_once():
    r = issue(TOKENS["first"])
    c = x509.load_der_x509_certificate(r.certificate)
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "vault"
    expect(lambda: issue(TOKENS["first"]), grpc.StatusCode.UNAUTHENTICATED, "already used")


def test_failed_issuance_keeps_token():
    expect(lambda: issue(TOKENS["bad_csr"], valid=False), grpc.StatusCode.INVALID_ARGUMENT)
    issue(TOKENS["bad_csr"])  # the token was not used up by the failure


def test_refusals():
    time.sleep(1.5)
    expect(lambda: issue(TOKENS["short"]), grpc.StatusCode.UNAUTHENTICATED, "expired")
    forged = TOKENS["redis"][:-2] + ("AA" if not TOKENS["redis"].endswith("AA") else "BB")
    expect(lambda: issue(forged), grpc.StatusCode.UNAUTHENTICATED, "not valid")
    expect(lambda: issue(TOKENS["redis"], service="vault"), grpc.StatusCode.PERMISSION_DENIED,
           "for service 'redis'")
    expect(lambda: issue(""), grpc.StatusCode.UNAUTHENTICATED, "client certificate")
    expect(lambda: issue("garbage"), grpc.StatusCode.INVALID_ARGUMENT, "malformed")


def test_no_certificate_can_do_nothing_else():
    with anonymous() as ch:
        # CA certificates are public: a new service may fetch its trust store.
        bundle = method(ch, "GetTrustBundle", pki_pb2.GetTrustBundleRequest,
                        pki_pb2.TrustBundle)
        assert len(bundle(pki_pb2.GetTrustBundleRequest(), timeout=10).stores) == 4
        for name, req_cls, req in (
                ("GetStatus", pki_pb2.GetStatusRequest, pki_pb2.GetStatusRequest(serial="01")),
                ("Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeRequest(serial="01")),
                ("Renew", pki_pb2.RenewRequest, pki_pb2.RenewRequest(csr=csr()))):
            call = ch.unary_unary("/pki.v1.Pki/" + name,
                                  request_serializer=req_cls.SerializeToString,
                                  response_deserializer=lambda b: b)
            expect(lambda: call(req, timeout=10), grpc.StatusCode.UNAUTHENTICATED)


def test_use_survives_restart():
    issue(TOKENS["restart"])
    SERVER.kill()  # no clean shutdown: the journal alone must remember
    SERVER.start()
    expect(lambda: issue(TOKENS["restart"]), grpc.StatusCode.UNAUTHENTICATED, "already used")
    expect(lambda: issue(TOKENS["first"]), grpc.StatusCode.UNAUTHENTICATED, "already used")
    # A clean stop writes a snapshot; the tokens are in it too.
    assert SERVER.stop() == 0
    SERVER.start()
    expect(lambda: issue(TOKENS["first"]), grpc.StatusCode.UNAUTHENTICATED, "already used")


try:
    run("token_enrolls_once", test_token_enrolls_once)
    run("failed_issuance_keeps_token", test_failed_issuance_keeps_token)
    run("refusals", test_refusals)
    run("no_certificate_can_do_nothing_else", test_no_certificate_can_do_nothing_else)
    run("use_survives_restart", test_use_survives_restart)
finally:
    SERVER.stop()
finish()
