#!/usr/bin/python3
"""reload_test: SIGHUP reloads the catalogue and pkid's own certificate
without dropping connections.

A stream opened before the reload keeps working after it; a name added to
a service in the catalogue becomes issuable; a new server certificate is
what new connections see; a catalogue that changes the CA hierarchy is
refused and the old one kept.

Usage: reload_test.py PKICTL PKID PROTO CATALOG
"""
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pkidtest import AGENT, Pkid, channel, demo_tree, load_proto, method  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO, CATALOG_SRC = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
CATALOG = os.path.join(TMP, "catalog.yaml")
shutil.copy(CATALOG_SRC, CATALOG)
os.chmod(CATALOG, 0o644)
PKI = demo_tree(PKICTL, TMP, catalog=CATALOG)
pki_pb2 = load_proto(PROTO, TMP)
SERVER = Pkid(PKID, PKI, TMP, args=["--catalog", CATALOG]).start()


def wait_for(pattern, count=1, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.findall(pattern, SERVER.log())
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError("no %r in log:\n%s" % (pattern, SERVER.log()))


PORT = SERVER.grpc
BASE = os.path.join(PKI, "service-certificates", AGENT)
CHANNEL = channel(SERVER, PKI)
NEW_NAME = "vault-next.cybersec-framework.local"


def csr(names=()):
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vault")]))
    if names:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                            critical=False)
    return b.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(
        serialization.Encoding.DER)


def request(i, names=()):
    return pki_pb2.IssueRequest(csr=csr(names), service="vault", usage=pki_pb2.USAGE_SERVER,
                                request_id=i)


def sighup_and_wait(what):
    """Sends SIGHUP and waits until pkid has logged the outcome for |what|."""
    pattern = r'"event":"(?:reloaded|reload_refused)","what":"%s"' % what
    before = len(re.findall(pattern, SERVER.log()))
    SERVER.signal(signal.SIGHUP)
    wait_for(pattern, before + 1)


def test_catalogue_reload_keeps_stream():
    # A stream opened before the reload...
    sent = queue.Queue()
    answers = []
    call = method(CHANNEL, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                  streaming=True)

    def requests():
        while True:
            item = sent.get()
            if item is None:
                return
            yield item

    def reader():
        for r in call(requests(), timeout=60):
            answers.append(r)

    t = threading.Thread(target=reader)
    t.start()
    sent.put(request(1, [NEW_NAME]))
    deadline = time.time() + 10
    while not answers and time.time() < deadline:
        time.sleep(0.02)
    assert answers and answers[0].status_code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    # ...the catalogue grants vault a new name, and pkid reloads it...
    text = open(CATALOG).read()
    text = text.replace("dns: [vault.cybersec-framework.local",
                        "dns: [%s, vault.cybersec-framework.local" % NEW_NAME, 1)
    assert NEW_NAME in text
    open(CATALOG, "w").write(text)
    sighup_and_wait("catalogue")
    # ...and the same stream goes on, now allowed the name.
    sent.put(request(2, [NEW_NAME]))
    sent.put(None)
    t.join(timeout=20)
    assert len(answers) == 2, answers
    assert answers[1].status_code == 0, answers[1]
    c = x509.load_der_x509_certificate(answers[1].certificate)
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert NEW_NAME in san.get_values_for_type(x509.DNSName)


def server_cert_serial():
    # s_client also prints what pkid sends after the handshake (HTTP/2
    # SETTINGS, binary): read its output leniently.
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % PORT,
                          "-alpn", "h2", "-cert", BASE + ".crt", "-key", BASE + ".key",
                          "-cert_chain", BASE + "-chain.crt"],
                         input="", capture_output=True, text=True, errors="replace",
                         timeout=20)
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out.stdout,
                    re.S)
    assert pem, out.stdout + out.stderr
    return x509.load_pem_x509_certificate(pem.group(0).encode()).serial_number


def test_server_certificate_reload():
    before = server_cert_serial()
    subprocess.run([PKICTL, "issue", "--offline", "--out", PKI, "--catalog", CATALOG,
                    "--service", "pki-ca", "--passphrase-file", os.path.join(PKI, "ca-passphrase")],
                   check=True)
    new = x509.load_pem_x509_certificate(open(os.path.join(
        PKI, "service-certificates/infrastructure/pki-ca/pki-ca-server.crt"), "rb").read())
    assert new.serial_number != before
    sighup_and_wait("certificate")
    assert server_cert_serial() == new.serial_number
    # The old channel still works.
    r = method(CHANNEL, "GetTrustBundle", pki_pb2.GetTrustBundleRequest, pki_pb2.TrustBundle)(
        pki_pb2.GetTrustBundleRequest(), timeout=10)
    assert len(r.stores) == 4


def test_hierarchy_change_refused():
    # The CA renamed, and its services with it: a valid catalogue, another
    # hierarchy.
    text = open(CATALOG).read().replace("external-ca", "partners-ca")
    open(CATALOG, "w").write(text)
    sighup_and_wait("catalogue")
    assert "the CA hierarchy changed" in SERVER.log()
    r = method(CHANNEL, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)(
        request(3, [NEW_NAME]), timeout=10)
    assert r.serial


try:
    run("catalogue_reload_keeps_stream", test_catalogue_reload_keeps_stream)
    run("server_certificate_reload", test_server_certificate_reload)
    run("hierarchy_change_refused", test_hierarchy_change_refused)
finally:
    CHANNEL.close()
    SERVER.stop()
finish()
