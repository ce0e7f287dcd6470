#!/usr/bin/python3
"""ocsp_pkid_test: pkid's OCSP responder and admin endpoints, end to end.

A certificate issued over gRPC is "good" to `openssl ocsp` at once (its
first response was signed with it), "revoked" after Revoke, and a made-up
serial is "unknown"; the responses verify against the trust bundle, carry
RFC 5019 cache headers over GET, and /metrics, /healthz and /readyz answer.

Usage: ocsp_pkid_test.py PKICTL PKID PROTO
"""
import base64
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, load_proto, method  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
SERVER = Pkid(PKID, PKI, TMP).start()
OCSP, ADMIN = SERVER.ocsp, SERVER.admin
ROOT = os.path.join(PKI, "root-ca/certs/root-ca.crt")
AGENTS_CA = os.path.join(PKI, "intermediate-ca/agents-ca/certs/agents-ca.crt")


def issue():
    k = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pki-agent")])).sign(
        k, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    with channel(SERVER, PKI) as ch:
        r = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)(
            pki_pb2.IssueRequest(csr=csr, usage=pki_pb2.USAGE_SERVER), timeout=10)
    path = os.path.join(TMP, "leaf-%s.pem" % r.serial)
    with open(path, "wb") as f:
        f.write(x509.load_der_x509_certificate(r.certificate).public_bytes(
            serialization.Encoding.PEM))
    return r, path


def openssl_ocsp(*args):
    cafile = os.path.join(TMP, "root-and-agents.pem")
    with open(cafile, "wb") as f:
        f.write(open(ROOT, "rb").read() + open(AGENTS_CA, "rb").read())
    out = subprocess.run(["openssl", "ocsp", "-issuer", AGENTS_CA, "-CAfile", cafile,
                          "-url", "http://127.0.0.1:%d/" % OCSP, "-no_nonce"] + list(args),
                         capture_output=True, text=True, timeout=20)
    return out.stdout + out.stderr


def test_good_then_revoked():
    r, leaf = issue()
    text = openssl_ocsp("-cert", leaf)
    assert "Response verify OK" in text and ": good" in text, text
    with channel(SERVER, PKI) as ch:
        method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)(
            pki_pb2.RevokeRequest(serial=r.serial,
                                  reason=pki_pb2.REVOCATION_REASON_KEY_COMPROMISE), timeout=10)
    text = openssl_ocsp("-cert", leaf)
    assert "Response verify OK" in text and ": revoked" in text, text
    assert "Key Compromise" in text or "keyCompromise" in text, text


def test_unknown_serial():
    text = openssl_ocsp("-serial", "0x01000100000000000000ffffffffffffffffff")
    assert "Response verify OK" in text and ": unknown" in text, text


def test_get_with_cache_headers():
    _, leaf = issue()
    cert = x509.load_pem_x509_certificate(open(leaf, "rb").read())
    issuer = x509.load_pem_x509_certificate(open(AGENTS_CA, "rb").read())
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    der = req.public_bytes(serialization.Encoding.DER)
    url = "http://127.0.0.1:%d/%s" % (OCSP, urllib.request.quote(base64.b64encode(der).decode()))
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
        headers = resp.headers
    assert headers["Content-Type"] == "application/ocsp-response"
    for h in ("Last-Modified", "Expires", "ETag", "Cache-Control"):
        assert headers[h], h
    assert "max-age=" in headers["Cache-Control"]
    parsed = ocsp.load_der_ocsp_response(body)
    assert parsed.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert parsed.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert parsed.serial_number == cert.serial_number


def test_malformed_request():
    data = urllib.request.Request("http://127.0.0.1:%d/" % OCSP, data=b"garbage",
                                  headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(data, timeout=10) as resp:
        body = resp.read()
    assert body == bytes.fromhex("30030a0101"), body.hex()


def get(path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (ADMIN, path), timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_metrics_health_ready():
    assert get("/healthz")[0] == 200
    assert get("/readyz")[0] == 200
    status, text = get("/metrics")
    assert status == 200
    for want in ("# TYPE pkid_issued_total counter", 'cert_expiry_timestamp{cert_name="agents-ca"}',
                 'cert_expiry_timestamp{cert_name="pki-ca-server"}', "pkid_ocsp_requests_total",
                 'pkid_grpc_requests_total{method="Issue",code="OK"}',
                 "pkid_fsync_duration_seconds_bucket", "pkid_queue_depth"):
        assert want in text, want
    issued = re.search(r"^pkid_issued_total (\d+)", text, re.M)
    assert issued and int(issued.group(1)) >= 2, text


try:
    run("good_then_revoked", test_good_then_revoked)
    run("unknown_serial", test_unknown_serial)
    run("get_with_cache_headers", test_get_with_cache_headers)
    run("malformed_request", test_malformed_request)
    run("metrics_health_ready", test_metrics_health_ready)
finally:
    SERVER.stop()
finish()
