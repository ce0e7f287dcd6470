#!/usr/bin/python3
"""bundle_root_test: `pkictl bundle` refuses a trust bundle that changes the
root, unless told --accept-new-root, and never installs a store the
bundle's root does not certify.

The peer is hostile on purpose, written here with Debian's python3-grpcio:
a server that presents demo tree A's genuine pki-ca certificate (so it
passes the client's check of who pkid is: a stolen pkid key, or a pkid
gone wrong) and answers GetTrustBundle with what each case asks for, such
as the root of a second demo tree B. The real pkid cannot be made to do
that, which is the point of the check.

Usage: bundle_root_test.py PKICTL PROTO
"""
import hashlib
import os
import subprocess
import sys
import tempfile
from concurrent import futures

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from pkidtest import demo_tree, load_proto  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PROTO = (os.path.abspath(p) for p in sys.argv[1:3])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
os.makedirs(os.path.join(TMP, "a"), exist_ok=True)
os.makedirs(os.path.join(TMP, "b"), exist_ok=True)
A = demo_tree(PKICTL, os.path.join(TMP, "a"))
B = demo_tree(PKICTL, os.path.join(TMP, "b"))
pki_pb2 = load_proto(PROTO, TMP)
CAS = ("infrastructure-ca", "agents-ca", "external-ca", "load-balancer-ca")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def pem_certs(data):
    """Every certificate of PEM text (Debian's cryptography 38 reads one at a
    time)."""
    end = b"-----END CERTIFICATE-----"
    blocks = [b + end for b in data.split(end) if b"-----BEGIN CERTIFICATE-----" in b]
    return [x509.load_pem_x509_certificate(b[b.index(b"-----BEGIN"):]) for b in blocks]


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def root_der(tree):
    return der(pem_certs(read(os.path.join(tree, "root-ca/certs/root-ca.crt")))[0])


def store(tree, ca, pem=None):
    """TrustBundle.Store for |ca| of |tree|, as pkid makes it; |pem| replaces
    the file's text."""
    text = pem if pem is not None else read(os.path.join(tree, "trust-stores",
                                                        ca + "-truststore.pem"))
    certs = pem_certs(read(os.path.join(tree, "trust-stores", ca + "-truststore.pem")))
    return pki_pb2.TrustBundle.Store(ca=ca, certificate=der(certs[0]),
                                     chain=[der(c) for c in certs[1:]], pem=text.decode())


def bundle(tree):
    return pki_pb2.TrustBundle(root=root_der(tree), stores=[store(tree, ca) for ca in CAS])


class Hostile:
    """A gRPC server with A's genuine pki-ca certificate and key, asking for
    a client certificate under A's root as pkid does; GetTrustBundle answers
    with |self.answer|."""

    def __init__(self):
        base = os.path.join(A, "service-certificates/infrastructure/pki-ca/pki-ca-server")
        creds = grpc.ssl_server_credentials(
            [(read(base + ".key"), read(base + ".crt") + read(base + "-chain.crt"))],
            root_certificates=read(os.path.join(A, "root-ca/certs/root-ca.crt")),
            require_client_auth=True)
        self.answer = bundle(A)
        self.calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler("pki.v1.Pki", {
            "GetTrustBundle": grpc.unary_unary_rpc_method_handler(
                self.get_trust_bundle,
                request_deserializer=pki_pb2.GetTrustBundleRequest.FromString,
                response_serializer=pki_pb2.TrustBundle.SerializeToString)})
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    def get_trust_bundle(self, request, context):
        self.calls += 1
        if not request.ca:
            return self.answer
        picked = [s for s in self.answer.stores if s.ca == request.ca]
        if not picked:
            context.abort(grpc.StatusCode.NOT_FOUND, "no CA " + request.ca)
        return pki_pb2.TrustBundle(root=self.answer.root, stores=picked)


PEER = Hostile()


def bundle_cmd(out, *args):
    """Runs pkictl bundle against the hostile peer as A's pki-agent."""
    return subprocess.run([PKICTL, "bundle", "--pki", A, "--as", "pki-agent", "--server",
                           "127.0.0.1:%d" % PEER.port, "--timeout-ms", "10000", "--out", out]
                          + list(args), capture_output=True, text=True)


def fingerprint(cert_der):
    d = hashlib.sha256(cert_der).hexdigest()
    return ":".join(d[i:i + 2] for i in range(0, len(d), 2))


def expect_refused(res, *words):
    assert res.returncode == 1, "exit %d, want 1: %s %s" % (res.returncode, res.stdout,
                                                            res.stderr)
    for w in words:
        assert w in res.stderr, "%r lacks %r" % (res.stderr, w)


def scratch(name):
    path = os.path.join(TMP, "out", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # What a refused bundle must leave alone.
    with open(path, "w") as f:
        f.write("old\n")
    return path


def test_same_root_accepted():
    # The peer works and the refusals below are about the root: A's own
    # bundle is installed without any flag.
    PEER.answer = bundle(A)
    out = scratch("same-root.pem")
    res = bundle_cmd(out)
    assert res.returncode == 0, res.stderr
    assert der(pem_certs(read(out))[0]) == root_der(A)
    out = scratch("same-agents.pem")
    res = bundle_cmd(out, "--ca", "agents-ca")
    assert res.returncode == 0, res.stderr
    assert read(out) == read(os.path.join(A, "trust-stores/agents-ca-truststore.pem"))


def test_new_root_refused():
    PEER.answer = bundle(B)
    before = PEER.calls
    out = scratch("new-root.pem")
    expect_refused(bundle_cmd(out), "FAILED_PRECONDITION", "not the root this client trusts",
                   fingerprint(root_der(B)), "--accept-new-root", "Nothing was written")
    assert PEER.calls == before + 1, "pkictl did not ask the peer"
    assert read(out) == b"old\n", "a refused root was written"
    out = scratch("new-agents.pem")
    expect_refused(bundle_cmd(out, "--ca", "agents-ca"), "not the root this client trusts",
                   "--accept-new-root")
    assert read(out) == b"old\n", "a refused store was written"


def test_new_root_accepted_when_asked():
    PEER.answer = bundle(B)
    out = scratch("accepted-root.pem")
    res = bundle_cmd(out, "--accept-new-root")
    assert res.returncode == 0, res.stderr
    assert "warning" in res.stderr and "--accept-new-root" in res.stderr, res.stderr
    assert der(pem_certs(read(out))[0]) == root_der(B)
    out = scratch("accepted-agents.pem")
    res = bundle_cmd(out, "--ca", "agents-ca", "--accept-new-root")
    assert res.returncode == 0, res.stderr
    assert read(out) == read(os.path.join(B, "trust-stores/agents-ca-truststore.pem"))


def test_store_with_other_root_refused_even_with_flag():
    # The bundle names A's root (trusted), but the store file ends in B's:
    # installing it would trust B's root all the same.
    smuggled = bundle(A)
    del smuggled.stores[:]
    smuggled.stores.append(store(A, "agents-ca",
                                 pem=read(os.path.join(B, "trust-stores/agents-ca-truststore.pem"))))
    PEER.answer = smuggled
    for flags in ([], ["--accept-new-root"]):
        out = scratch("smuggled.pem")
        expect_refused(bundle_cmd(out, "--ca", "agents-ca", *flags), "FAILED_PRECONDITION",
                       "does not end with the bundle's root", fingerprint(root_der(B)))
        assert read(out) == b"old\n"


def test_store_not_certified_by_root_refused():
    # B's root, accepted on purpose, above A's agents-ca, which B's root never
    # signed: an extra trust anchor riding along.
    forged = pki_pb2.TrustBundle(root=root_der(B))
    a_agents = read(os.path.join(A, "intermediate-ca/agents-ca/certs/agents-ca.crt"))
    b_root = read(os.path.join(B, "root-ca/certs/root-ca.crt"))
    forged.stores.append(store(B, "agents-ca", pem=a_agents + b_root))
    PEER.answer = forged
    out = scratch("forged.pem")
    expect_refused(bundle_cmd(out, "--ca", "agents-ca", "--accept-new-root"),
                   "FAILED_PRECONDITION", "certificate 1", "is not certified by")
    assert read(out) == b"old\n"


try:
    run("same_root_accepted", test_same_root_accepted)
    run("new_root_refused", test_new_root_refused)
    run("new_root_accepted_when_asked", test_new_root_accepted_when_asked)
    run("store_with_other_root_refused_even_with_flag",
        test_store_with_other_root_refused_even_with_flag)
    run("store_not_certified_by_root_refused", test_store_not_certified_by_root_refused)
finally:
    PEER.server.stop(0)
finish()
