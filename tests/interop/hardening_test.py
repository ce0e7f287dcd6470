#!/usr/bin/python3
"""hardening_test: identity, revocation and secrets, against a real pkid.

  - an identity counts only from a certificate of the CA the catalogue
    assigns to it: pki-agent's URI in a certificate of external-ca is not
    the admin;
  - a client certificate that expires while its connection stays open
    stops working on that connection, and cannot be renewed;
  - certificates the ceremonies issued offline are known to pkid: GetStatus
    answers, `openssl ocsp` says good, then revoked after a Revoke;
  - the catalogue's key policy: a key type the service does not take is
    refused; a compressed P-256 point becomes pkid's uncompressed encoding;
  - two revocations of one serial at once: one time and reason stand, in
    both answers, GetStatus, OCSP and after a restart;
  - GetStatus is for the holder's service and admins only;
  - pkid runs without core dumps, drops PKID_CA_PASSPHRASE from its
    environment, and refuses a passphrase file others can read.

Usage: hardening_test.py PKICTL PKID PROTO CATALOG
"""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pkidtest import (Pkid, channel, copy_tree, demo_tree, expect_status, load_proto, method,  # noqa: E402
                      service_files)
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO, CATALOG = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
SERVER = Pkid(PKID, PKI, TMP).start()

AGENT = "agents/pki-agent/pki-agent-client"
IAM = "agents/iam-agent/iam-agent-client"
REDIS = "infrastructure/redis/redis-client"
AGENTS_CA = os.path.join(PKI, "intermediate-ca/agents-ca/certs/agents-ca.crt")


def call(ch, name, req_cls, resp_cls):
    return method(ch, name, req_cls, resp_cls)


def csr_for(key, cn="x"):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, algo).public_bytes(
        serialization.Encoding.DER)


def issue(ch, service="", usage=None, key=None, validity=0):
    key = key or ec.generate_private_key(ec.SECP256R1())
    req = pki_pb2.IssueRequest(csr=csr_for(key), usage=usage or pki_pb2.USAGE_CLIENT,
                               service=service, validity_seconds=validity)
    return call(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)(req, timeout=10), key


def status(ch, serial):
    return call(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)(
        pki_pb2.GetStatusRequest(serial=serial), timeout=10)


def revoke(ch, serial, reason):
    return call(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)(
        pki_pb2.RevokeRequest(serial=serial, reason=reason), timeout=10)


def cert_of(path):
    return x509.load_pem_x509_certificate(
        open(os.path.join(PKI, "service-certificates", path + ".crt"), "rb").read())


def serial_hex(cert):
    return "%x" % cert.serial_number


def ocsp_status(cert_path, issuer):
    out = subprocess.run(["openssl", "ocsp", "-issuer", issuer, "-cert", cert_path, "-url",
                          "http://127.0.0.1:%d/" % SERVER.ocsp, "-CAfile",
                          os.path.join(PKI, "root-ca/certs/root-ca.crt"), "-no_nonce",
                          "-resp_text"], capture_output=True, text=True, timeout=20)
    text = out.stdout + out.stderr
    m = re.search(r"%s: (good|revoked|unknown)" % re.escape(cert_path), text)
    return (m.group(1) if m else None), text


def pem_chain(cert, chain_certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert] + chain_certs)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_identity_only_from_its_ca():
    """pki-agent's identity in a certificate of external-ca: it verifies
    (external-ca is one of pkid's), but it is not pki-agent."""
    other = os.path.join(TMP, "other-pki")
    copy_tree(PKI, other)
    cat = open(CATALOG).read()
    cat2 = re.sub(r"(- name: pki-agent\n\s+ca: )agents-ca", r"\1external-ca", cat)
    assert cat2 != cat
    path = os.path.join(TMP, "cross-ca.yaml")
    with open(path, "w") as f:
        f.write(cat2)
    subprocess.run([PKICTL, "issue", "--offline", "--out", other, "--catalog", path, "--service",
                    "pki-agent", "--usage", "client", "--passphrase-file",
                    os.path.join(PKI, "ca-passphrase")], check=True, stdout=subprocess.DEVNULL)
    forged = x509.load_pem_x509_certificate(
        open(os.path.join(other, "service-certificates", AGENT + ".crt"), "rb").read())
    assert forged.issuer.rfc4514_string().find("External") >= 0, forged.issuer
    key = open(os.path.join(other, "service-certificates", AGENT + ".key"), "rb").read()
    chain = open(os.path.join(other, "service-certificates", AGENT + "-chain.crt"), "rb").read()
    full = forged.public_bytes(serialization.Encoding.PEM) + chain
    with channel(SERVER, PKI, key_and_chain=(key, full)) as ch:
        expect_status(lambda: issue(ch, service="vault", usage=pki_pb2.USAGE_SERVER),
                      grpc.StatusCode.UNAUTHENTICATED, "only by CA 'agents-ca'")
        expect_status(lambda: status(ch, serial_hex(cert_of(AGENT))),
                      grpc.StatusCode.UNAUTHENTICATED, "agents-ca")
    # The genuine one still is.
    with channel(SERVER, PKI) as ch:
        issue(ch, service="vault", usage=pki_pb2.USAGE_SERVER)


def test_expiry_on_an_open_connection():
    """A 3-second client certificate: good on its connection, refused on
    the same connection once expired, and not renewable."""
    with channel(SERVER, PKI) as ch:
        resp, key = issue(ch, validity=3)
    cert = x509.load_der_x509_certificate(resp.certificate)
    chain = [x509.load_der_x509_certificate(c) for c in resp.chain]
    with channel(SERVER, PKI, key_and_chain=(key_pem(key), pem_chain(cert, chain))) as ch:
        status(ch, serial_hex(cert))  # valid now: served
        left = cert.not_valid_after.timestamp() - time.time()
        time.sleep(max(0, left) + 1.5)
        expect_status(lambda: status(ch, serial_hex(cert)), grpc.StatusCode.UNAUTHENTICATED,
                      "not valid now")
        renew = call(ch, "Renew", pki_pb2.RenewRequest, pki_pb2.IssueResponse)
        expect_status(lambda: renew(pki_pb2.RenewRequest(
            csr=csr_for(ec.generate_private_key(ec.SECP256R1()))), timeout=10),
            grpc.StatusCode.UNAUTHENTICATED, "not valid now")


def test_offline_certificates_known_and_revocable():
    """pki-agent's own certificate, made by `ceremony demo`: known to pkid,
    and once revoked (by iam-agent, an admin), OCSP says so."""
    agent = cert_of(AGENT)
    agent_path = os.path.join(PKI, "service-certificates", AGENT + ".crt")
    deadline = time.time() + 10
    with channel(SERVER, PKI, IAM) as ch:
        while True:  # the import runs in the background at start
            try:
                st = status(ch, serial_hex(agent))
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND or time.time() > deadline:
                    raise
                time.sleep(0.2)
        assert st.service == "pki-agent" and st.issuer == "agents-ca", st
        assert st.state == pki_pb2.CertificateStatus.STATE_GOOD
        got, text = ocsp_status(agent_path, AGENTS_CA)
        assert got == "good", text
        revoke(ch, serial_hex(agent), pki_pb2.REVOCATION_REASON_KEY_COMPROMISE)
        got, text = ocsp_status(agent_path, AGENTS_CA)
        assert got == "revoked", text
        assert "keyCompromise" in text, text
        # And a revoked admin certificate authorizes nothing any more.
    with channel(SERVER, PKI, AGENT) as ch:
        expect_status(lambda: issue(ch), grpc.StatusCode.UNAUTHENTICATED, "revoked")


def test_key_policy():
    with channel(SERVER, PKI, IAM) as ch:
        # vault takes only ecdsa-p256 keys (deploy/catalog.yaml).
        expect_status(lambda: issue(ch, service="vault", usage=pki_pb2.USAGE_SERVER,
                                    key=ed25519.Ed25519PrivateKey.generate()),
                      grpc.StatusCode.PERMISSION_DENIED, "does not take ed25519 keys")
        expect_status(lambda: issue(ch, service="vault", usage=pki_pb2.USAGE_SERVER,
                                    key=ec.generate_private_key(ec.SECP384R1())),
                      grpc.StatusCode.PERMISSION_DENIED, "does not take ecdsa-p384 keys")
        # redis takes P-256 and P-384.
        issue(ch, service="redis", key=ec.generate_private_key(ec.SECP384R1()))


def der(tag, body):
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def compressed_csr(key):
    """A PKCS#10 request whose SubjectPublicKeyInfo holds the compressed
    P-256 point (X9.62 allows it; no library here makes one), signed."""
    point = key.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.CompressedPoint)
    alg = der(0x30, der(0x06, bytes.fromhex("2a8648ce3d0201")) +
              der(0x06, bytes.fromhex("2a8648ce3d030107")))
    spki = der(0x30, alg + der(0x03, b"\x00" + point))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis")]).public_bytes()
    info = der(0x30, der(0x02, b"\x00") + name + spki + b"\xa0\x00")
    sig = key.sign(info, ec.ECDSA(hashes.SHA256()))
    ecdsa_sha256 = der(0x30, der(0x06, bytes.fromhex("2a8648ce3d040302")))
    return der(0x30, info + ecdsa_sha256 + der(0x03, b"\x00" + sig)), point


def test_compressed_point_is_reencoded():
    """A CSR whose P-256 point is compressed: the certificate carries the
    uncompressed point (RFC 5480 2.2), which every verifier takes (Go's
    crypto/x509 refuses the compressed form)."""
    csr, sent = compressed_csr(ec.generate_private_key(ec.SECP256R1()))
    assert len(sent) == 33 and sent in csr
    with channel(SERVER, PKI, IAM) as ch:
        resp = call(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)(
            pki_pb2.IssueRequest(csr=csr, usage=pki_pb2.USAGE_CLIENT, service="redis"),
            timeout=10)
    cert = x509.load_der_x509_certificate(resp.certificate)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    point = cert.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    assert point in resp.certificate and sent not in resp.certificate
    assert spki in resp.certificate and len(point) == 65 and point[0] == 4


def test_concurrent_revocations_one_stands():
    with channel(SERVER, PKI) as ch:
        resp, _ = issue(ch, service="redis")
    serial = resp.serial
    answers = {}

    def one(reason):
        with channel(SERVER, PKI, IAM if reason == pki_pb2.REVOCATION_REASON_KEY_COMPROMISE else AGENT) as ch:
            answers[reason] = revoke(ch, serial, reason).revoked_at

    # Same second, different reasons: whichever is durable first stands.
    threads = [threading.Thread(target=one, args=(r,))
               for r in (pki_pb2.REVOCATION_REASON_KEY_COMPROMISE, pki_pb2.REVOCATION_REASON_SUPERSEDED)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(answers.values())) == 1, answers

    def current():
        with channel(SERVER, PKI, IAM) as ch:
            return status(ch, serial)

    st = current()
    assert st.state == pki_pb2.CertificateStatus.STATE_REVOKED
    assert st.revoked_at == list(answers.values())[0]
    assert st.revocation_reason in (pki_pb2.REVOCATION_REASON_KEY_COMPROMISE, pki_pb2.REVOCATION_REASON_SUPERSEDED)
    path = os.path.join(TMP, "revoked.crt")
    with open(path, "wb") as f:
        f.write(x509.load_der_x509_certificate(resp.certificate).public_bytes(
            serialization.Encoding.PEM))
    infra = os.path.join(PKI, "intermediate-ca/infrastructure-ca/certs/infrastructure-ca.crt")
    got, text = ocsp_status(path, infra)
    want = "keyCompromise" if st.revocation_reason == pki_pb2.REVOCATION_REASON_KEY_COMPROMISE \
        else "superseded"
    assert got == "revoked" and want in text, text
    # The journal holds both; a restart keeps the same one.
    SERVER.stop()
    SERVER.start()
    again = current()
    assert (again.revoked_at, again.revocation_reason) == (st.revoked_at, st.revocation_reason)


def test_status_for_holders_and_admins():
    with channel(SERVER, PKI, IAM) as ch:
        vault, _ = issue(ch, service="vault", usage=pki_pb2.USAGE_SERVER)
    with channel(SERVER, PKI, REDIS) as ch:
        expect_status(lambda: status(ch, vault.serial), grpc.StatusCode.PERMISSION_DENIED,
                      "may not see")
    with channel(SERVER, PKI, "infrastructure/vault/vault-client") as ch:
        assert status(ch, vault.serial).service == "vault"
    with channel(SERVER, PKI, IAM) as ch:
        assert status(ch, vault.serial).service == "vault"


def start_alone(args, env=None, log="alone.log"):
    """A second pkid on the same tree's copy, its output kept."""
    tree = os.path.join(TMP, "alone-" + log)
    if not os.path.exists(tree):
        copy_tree(PKI, tree)
    return tree, subprocess.Popen(
        [PKID, "--pki", tree, "--listen", "127.0.0.1:0", "--ocsp-listen", "127.0.0.1:0",
         "--admin-listen", "127.0.0.1:0"] + args, env=env, stderr=subprocess.PIPE, text=True)


def test_secrets_and_core_dumps():
    # No core dumps: the prepared ECDSA nonces alone would give the CA keys.
    with open("/proc/%d/limits" % SERVER.proc.pid) as f:
        line = [li for li in f if li.startswith("Max core file size")][0]
    assert line.split()[4:6] == ["0", "0"], line
    # The passphrase in the environment is wiped once read.
    tree = os.path.join(TMP, "env-pki")
    copy_tree(PKI, tree)
    secret = open(os.path.join(PKI, "ca-passphrase")).read().strip()
    os.remove(os.path.join(tree, "ca-passphrase"))
    env = dict(os.environ, PKID_CA_PASSPHRASE=secret)
    p = Pkid(PKID, tree, TMP, log_name="env.log")
    saved = os.environ.get("PKID_CA_PASSPHRASE")
    os.environ["PKID_CA_PASSPHRASE"] = secret  # Pkid inherits the environment
    try:
        p.start()
        with open("/proc/%d/environ" % p.proc.pid, "rb") as f:
            environ = f.read()
        assert secret.encode() not in environ, "the passphrase is still in the environment"
    finally:
        p.stop()
        if saved is None:
            del os.environ["PKID_CA_PASSPHRASE"]
        else:
            os.environ["PKID_CA_PASSPHRASE"] = saved
    del env
    # A passphrase file others can read is refused.
    loose = os.path.join(TMP, "loose-passphrase")
    with open(loose, "w") as f:
        f.write(secret + "\n")
    os.chmod(loose, 0o644)
    _, proc = start_alone(["--passphrase-file", loose], log="loose")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "readable by others" in err, err


try:
    run("identity_only_from_its_ca", test_identity_only_from_its_ca)
    run("expiry_on_an_open_connection", test_expiry_on_an_open_connection)
    run("key_policy", test_key_policy)
    run("compressed_point_is_reencoded", test_compressed_point_is_reencoded)
    run("status_for_holders_and_admins", test_status_for_holders_and_admins)
    run("concurrent_revocations_one_stands", test_concurrent_revocations_one_stands)
    run("secrets_and_core_dumps", test_secrets_and_core_dumps)
    # Last: it revokes the admin certificate the other cases use.
    run("offline_certificates_known_and_revocable", test_offline_certificates_known_and_revocable)
finally:
    SERVER.stop()
finish()
