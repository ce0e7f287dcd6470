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
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO, CATALOG_SRC = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = os.path.join(TMP, "pki")
CATALOG = os.path.join(TMP, "catalog.yaml")
shutil.copy(CATALOG_SRC, CATALOG)
os.chmod(CATALOG, 0o644)
subprocess.run([PKICTL, "ceremony", "demo", "--out", PKI, "--catalog", CATALOG], check=True,
               stdout=subprocess.DEVNULL)
gen = os.path.join(TMP, "gen")
os.makedirs(gen, exist_ok=True)
subprocess.run(["protoc", "--proto_path=" + os.path.dirname(os.path.dirname(os.path.dirname(PROTO))),
                "--python_out=" + gen, PROTO], check=True)
sys.path.insert(0, gen)
from pki.v1 import pki_pb2  # noqa: E402

LOG = open(os.path.join(TMP, "pkid.log"), "w+")
PROC = subprocess.Popen([PKID, "--pki", PKI, "--catalog", CATALOG, "--listen", "127.0.0.1:0",
                         "--ocsp-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                        stderr=LOG)


def log_text():
    LOG.seek(0)
    return LOG.read()


def wait_for(pattern, count=1, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.findall(pattern, log_text())
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError("no %r in log:\n%s" % (pattern, log_text()))


PORT = int(wait_for(r'"listening","grpc":"127\.0\.0\.1:(\d+)"')[0])
ROOT = open(os.path.join(PKI, "root-ca/certs/root-ca.crt"), "rb").read()
BASE = os.path.join(PKI, "service-certificates/agents/pki-agent/pki-agent-client")
CHANNEL = grpc.secure_channel("127.0.0.1:%d" % PORT, grpc.ssl_channel_credentials(
    root_certificates=ROOT, private_key=open(BASE + ".key", "rb").read(),
    certificate_chain=open(BASE + ".crt", "rb").read() + open(BASE + "-chain.crt", "rb").read()),
    options=[("grpc.ssl_target_name_override", "pki-ca.cybersec-framework.local")])
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
    before = len(re.findall(pattern, log_text()))
    PROC.send_signal(signal.SIGHUP)
    wait_for(pattern, before + 1)


def test_catalogue_reload_keeps_stream():
    # A stream opened before the reload...
    sent = queue.Queue()
    answers = []
    call = CHANNEL.stream_stream("/pki.v1.Pki/IssueStream",
                                 request_serializer=pki_pb2.IssueRequest.SerializeToString,
                                 response_deserializer=pki_pb2.IssueResponse.FromString)

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
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % PORT,
                          "-alpn", "h2", "-cert", BASE + ".crt", "-key", BASE + ".key",
                          "-cert_chain", BASE + "-chain.crt"],
                         input="", capture_output=True, text=True, timeout=20)
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
    r = CHANNEL.unary_unary("/pki.v1.Pki/GetTrustBundle",
                            request_serializer=pki_pb2.GetTrustBundleRequest.SerializeToString,
                            response_deserializer=pki_pb2.TrustBundle.FromString)(
        pki_pb2.GetTrustBundleRequest(), timeout=10)
    assert len(r.stores) == 4


def test_hierarchy_change_refused():
    text = open(CATALOG).read().replace("name: external-ca", "name: partners-ca", 1)
    open(CATALOG, "w").write(text)
    sighup_and_wait("catalogue")
    assert "the CA hierarchy changed" in log_text()
    r = CHANNEL.unary_unary("/pki.v1.Pki/Issue",
                            request_serializer=pki_pb2.IssueRequest.SerializeToString,
                            response_deserializer=pki_pb2.IssueResponse.FromString)(
        request(3, [NEW_NAME]), timeout=10)
    assert r.serial


try:
    run("catalogue_reload_keeps_stream", test_catalogue_reload_keeps_stream)
    run("server_certificate_reload", test_server_certificate_reload)
    run("hierarchy_change_refused", test_hierarchy_change_refused)
finally:
    CHANNEL.close()
    PROC.terminate()
    PROC.wait(timeout=15)
finish()
