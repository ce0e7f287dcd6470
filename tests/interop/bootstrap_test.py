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
import re
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
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = os.path.join(TMP, "pki")

subprocess.run([PKICTL, "ceremony", "demo", "--out", PKI], check=True, stdout=subprocess.DEVNULL)
gen = os.path.join(TMP, "gen")
os.makedirs(gen, exist_ok=True)
subprocess.run(["protoc", "--proto_path=" + os.path.dirname(os.path.dirname(os.path.dirname(PROTO))),
                "--python_out=" + gen, PROTO], check=True)
sys.path.insert(0, gen)
from pki.v1 import pki_pb2  # noqa: E402


def token(service, ttl="10m"):
    out = subprocess.run([PKICTL, "token", "create", "--out", PKI, "--service", service,
                          "--ttl", ttl], check=True, capture_output=True, text=True)
    return out.stdout.strip()


# Tokens are made before pkid starts: it reads the token key at start.
TOKENS = {name: token("vault") for name in ("first", "bad_csr", "restart")}
TOKENS["short"] = token("vault", "1s")
TOKENS["redis"] = token("redis")


def start_pkid():
    log = open(os.path.join(TMP, "pkid.log"), "a+")
    proc = subprocess.Popen([PKID, "--pki", PKI, "--listen", "127.0.0.1:0",
                             "--ocsp-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"], stderr=log)
    deadline = time.time() + 15
    while time.time() < deadline:
        log.seek(0)
        ports = re.findall(r'"event":"listening","grpc":"127\.0\.0\.1:(\d+)"', log.read())
        if len(ports) > start_pkid.count:
            start_pkid.count += 1
            return proc, int(ports[-1])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("pkid did not start")


start_pkid.count = 0
PROC, PORT = start_pkid()
ROOT = open(os.path.join(PKI, "root-ca/certs/root-ca.crt"), "rb").read()


def anonymous():
    creds = grpc.ssl_channel_credentials(root_certificates=ROOT)
    return grpc.secure_channel("127.0.0.1:%d" % PORT, creds, options=[
        ("grpc.ssl_target_name_override", "pki-ca.cybersec-framework.local")])


def csr(valid=True):
    if not valid:
        return b"\x30\x00"
    k = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vault")])).sign(
        k, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def issue(tok, service="", valid=True):
    with anonymous() as ch:
        call = ch.unary_unary("/pki.v1.Pki/Issue",
                              request_serializer=pki_pb2.IssueRequest.SerializeToString,
                              response_deserializer=pki_pb2.IssueResponse.FromString)
        return call(pki_pb2.IssueRequest(csr=csr(valid), usage=pki_pb2.USAGE_SERVER,
                                         bootstrap_token=tok, service=service), timeout=10)


def expect(fn, code, words=""):
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, "got %s %s, want %s" % (e.code(), e.details(), code)
        assert words in (e.details() or ""), "%r lacks %r" % (e.details(), words)
        return
    raise AssertionError("call succeeded, want %s" % code)


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
        bundle = ch.unary_unary("/pki.v1.Pki/GetTrustBundle",
                                request_serializer=pki_pb2.GetTrustBundleRequest.SerializeToString,
                                response_deserializer=pki_pb2.TrustBundle.FromString)
        assert len(bundle(pki_pb2.GetTrustBundleRequest(), timeout=10).stores) == 4
        for method, req_cls, req in (
                ("GetStatus", pki_pb2.GetStatusRequest, pki_pb2.GetStatusRequest(serial="01")),
                ("Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeRequest(serial="01")),
                ("Renew", pki_pb2.RenewRequest, pki_pb2.RenewRequest(csr=csr()))):
            call = ch.unary_unary("/pki.v1.Pki/" + method,
                                  request_serializer=req_cls.SerializeToString,
                                  response_deserializer=lambda b: b)
            expect(lambda: call(req, timeout=10), grpc.StatusCode.UNAUTHENTICATED)


def test_use_survives_restart():
    global PROC, PORT
    issue(TOKENS["restart"])
    PROC.kill()  # no clean shutdown: the journal alone must remember
    PROC.wait()
    PROC, PORT = start_pkid()
    expect(lambda: issue(TOKENS["restart"]), grpc.StatusCode.UNAUTHENTICATED, "already used")
    expect(lambda: issue(TOKENS["first"]), grpc.StatusCode.UNAUTHENTICATED, "already used")
    # A clean stop writes a snapshot; the tokens are in it too.
    PROC.terminate()
    assert PROC.wait(timeout=15) == 0
    PROC, PORT = start_pkid()
    expect(lambda: issue(TOKENS["first"]), grpc.StatusCode.UNAUTHENTICATED, "already used")


try:
    run("token_enrolls_once", test_token_enrolls_once)
    run("failed_issuance_keeps_token", test_failed_issuance_keeps_token)
    run("refusals", test_refusals)
    run("no_certificate_can_do_nothing_else", test_no_certificate_can_do_nothing_else)
    run("use_survives_restart", test_use_survives_restart)
finally:
    if PROC.poll() is None:
        PROC.terminate()
        PROC.wait(timeout=15)
finish()
