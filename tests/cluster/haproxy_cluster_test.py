#!/usr/bin/python3
"""haproxy_cluster_test: two pkid nodes behind deploy/haproxy/pkid-cluster.cfg.

The configuration is run as shipped: its node addresses and listening
ports come from the environment (PKID_NODE1, PKID_NODE1_GRPC_PORT, ...),
which the test sets to two pkid nodes on loopback (--node 1 and --node 2,
one pki tree, a journal each) and to free loopback ports for haproxy. The
test runs as root, like the others (the configuration drops to the
haproxy user).

Cases:
  - `haproxy -c -f` accepts the file, and refuses it without PKID_NODE1;
  - gRPC through haproxy, TLS passed through: the client sees pkid's own
    certificate, Issue and GetStatus succeed as the client's identity
    (GetStatus reports it as the requester), an identity pkid refuses is
    still refused (no admin right, no certificate, a certificate of
    another root), and connections are spread over both nodes (the node
    prefix in the serials, each node's pkid_issued_total);
  - at most 64 connections at once per client address (pkid's own
    per-address limit, moved into haproxy);
  - health: a hung node (SIGSTOP) is marked down by its /readyz check,
    the connection a client had on it is closed (on-marked-down
    shutdown-sessions) and that client's next call succeeds on the other
    node, new calls all go there, and after SIGCONT it is up again and
    gets new connections; a stopped node (SIGTERM: drain, /readyz 503, then
    gone) is marked down on its 503s, the IssueStream it was draining is
    cut then, and it is up again once restarted on its journal;
  - a node added and removed through the runtime API as the
    configuration's header says;
  - OCSP in HTTP mode: `openssl ocsp -url` (POST) through haproxy gets a
    verified "good" for a certificate of the ceremony (every node imports
    those) from both nodes in turn; a GET (RFC 6960 A.1, base64) for a
    certificate one node issued is "good" from that node and "unknown"
    from the other, which has not heard of it: nodes do not share their
    certificates yet (issue 12);
  - CRLs in HTTP mode: /crl/root.crl (the same file on every node) and
    /crl/agents-ca.crl (each node's own) are DER CRLs openssl parses;
  - haproxy's Prometheus endpoint reports both nodes.
Every wait is bounded; every process started is stopped in the finally.

Usage: haproxy_cluster_test.py PKICTL PKID PROTO CLUSTER_CFG
"""
import base64
import datetime
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pkidtest import (AGENT, SERVER_NAME, Pkid, cluster_env, demo_tree, expect_status,  # noqa: E402
                      free_port, haproxy_command, haproxy_server_status, load_proto, method,
                      service_files, stop, wait_for)
from testlib import finish, run  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
PKICTL, PKID, PROTO, CFG = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
WORK = os.path.join(TMP, "cluster")
os.makedirs(WORK, exist_ok=True)
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
ROOT_PATH = os.path.join(PKI, "root-ca/certs/root-ca.crt")
ROOT = open(ROOT_PATH, "rb").read()
AGENTS_CA = os.path.join(PKI, "intermediate-ca/agents-ca/certs/agents-ca.crt")
AGENTS_CHAIN = os.path.join(PKI, "intermediate-ca/agents-ca/certs/agents-ca-chain.crt")
AGENT_CERT = os.path.join(PKI, "service-certificates", AGENT + ".crt")
AGENT_ID = "spiffe://cybersec-framework.local/agents/pki-agent"
SECURITY_AGENT = "agents/security-agent/security-agent-client"
SECURITY_ID = "spiffe://cybersec-framework.local/agents/security-agent"
PKI_CA_ID = "spiffe://cybersec-framework.local/infrastructure/pki-ca"
# A unix socket path is at most ~100 bytes, shorter than TEST_TMPDIR can be.
SOCK_DIR = tempfile.mkdtemp(prefix="haproxy-cluster-", dir="/tmp")
SOCK = os.path.join(SOCK_DIR, "admin.sock")
HAPROXY_LOG = os.path.join(WORK, "haproxy.log")
PER_ADDRESS = 64  # the configuration's per-client connection limit
# The configuration marks a node down within about 3 s of a failing check
# (fall 3, fastinter 500ms) and 6 s when it hangs (timeout check 1s), and
# up after rise 2 x downinter 1s: these bounds leave room for a loaded
# (sanitized) machine.
DOWN_BOUND_S = 15
UP_BOUND_S = 15

PROCS = []  # haproxy, stopped in the finally below
NODES = {}  # node number -> Pkid, stopped in the finally below
STATE = {}


def start_node(n, ports=None):
    """pkid --node n on its own journal. |ports| (grpc, ocsp, admin): the
    ports it had, to come back where haproxy expects it."""
    args = ["--node", str(n), "--journal", os.path.join(WORK, "journal-%d" % n),
            "--max-conns-per-address", "4096"]
    if ports is not None:
        args += ["--listen", "127.0.0.1:%d" % ports[0], "--ocsp-listen",
                 "127.0.0.1:%d" % ports[1], "--admin-listen", "127.0.0.1:%d" % ports[2]]
    node = Pkid(PKID, PKI, WORK, args, log_name="pkid-%d.log" % n)
    NODES[n] = node
    return node.start()


class LB:
    grpc = None  # pkidtest-style: .grpc is the port a channel dials


def haproxy_env():
    return cluster_env(NODES, STATE["grpc_port"], STATE["http_port"], STATE["metrics_port"], SOCK)


def haproxy_cli(command):
    return haproxy_command(SOCK, command)


def server_status():
    return haproxy_server_status(SOCK)


def wait_status(node, want, timeout):
    """Waits until pkidN is |want| ("UP" or "DOWN") in both backends."""
    name = "pkid%d" % node

    def ok():
        st = server_status()
        return st[("pkid_grpc", name)] == want and st[("pkid_http", name)] == want
    t0 = time.monotonic()
    wait_for("%s %s in haproxy (%s)" % (name, want, "show stat"), ok, timeout, step=0.1)
    return time.monotonic() - t0


def connect(path=AGENT, key_and_chain=None, anonymous=False):
    """A channel through haproxy with its own TCP connection (grpcio would
    otherwise share one connection among channels to the same target)."""
    key, chain = (None, None) if anonymous else (key_and_chain or service_files(PKI, path))
    creds = grpc.ssl_channel_credentials(root_certificates=ROOT, private_key=key,
                                         certificate_chain=chain)
    return grpc.secure_channel("127.0.0.1:%d" % STATE["grpc_port"], creds,
                               options=[("grpc.ssl_target_name_override", SERVER_NAME),
                                        ("grpc.use_local_subchannel_pool", 1)])


def make_csr():
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe")])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def issue(ch, **kw):
    req = pki_pb2.IssueRequest(csr=make_csr(), usage=kw.pop("usage", pki_pb2.USAGE_CLIENT), **kw)
    return method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)(req, timeout=10)


def get_status(ch, serial):
    return method(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)(
        pki_pb2.GetStatusRequest(serial=serial), timeout=10)


def node_of(serial):
    """The node prefix of a pkid serial: 0x01 | node (2 octets) | ..."""
    assert len(serial) == 38 and serial.startswith("01"), serial
    return int(serial[2:6], 16)


def metric(node, name, labels=""):
    """One sample of a node's /metrics (0 if absent)."""
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % NODES[node].admin,
                                  timeout=5).read().decode()
    want = name + ("{%s}" % labels if labels else "")
    for line in body.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def http_get(path, timeout=5):
    url = "http://127.0.0.1:%d%s" % (STATE["http_port"], path)
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers, r.read()


# ---------------------------------------------------------------------------


def test_config_check():
    for n in (1, 2):
        start_node(n)
    STATE["grpc_port"], STATE["http_port"], STATE["metrics_port"] = (
        free_port(), free_port(), free_port())
    check = subprocess.run([HAPROXY, "-c", "-f", CFG], env=haproxy_env(), capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Configuration file is valid" in check.stdout + check.stderr
    # No warning either (a misspelt or misplaced directive is a warning).
    assert "WARNING" not in check.stdout + check.stderr, check.stdout + check.stderr
    bare = {k: v for k, v in os.environ.items() if not k.startswith("PKID_")}
    check = subprocess.run([HAPROXY, "-c", "-f", CFG], env=bare, capture_output=True, text=True,
                           timeout=30)
    assert check.returncode != 0 and "PKID_NODE1 is not set" in check.stderr, check.stderr


def start_haproxy():
    log = open(HAPROXY_LOG, "a")
    proc = subprocess.Popen([HAPROXY, "-f", CFG, "-db"], env=haproxy_env(), stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    PROCS.append(proc)
    STATE["haproxy"] = proc

    def up():
        if proc.poll() is not None:
            raise AssertionError("haproxy exited:\n" + open(HAPROXY_LOG).read())
        if not os.path.exists(SOCK):
            return False
        st = server_status()
        return all(st.get((b, "pkid%d" % n)) == "UP" for b in ("pkid_grpc", "pkid_http")
                   for n in (1, 2))
    wait_for("haproxy up with both nodes UP", up, UP_BOUND_S, step=0.1)
    assert os.stat(SOCK).st_mode & 0o777 == 0o600, oct(os.stat(SOCK).st_mode)
    st = server_status()
    assert set(st) == {(b, "pkid%d" % n) for b in ("pkid_grpc", "pkid_http") for n in (1, 2)}, st
    # haproxy runs as the haproxy user, not root.
    uid = [line for line in open("/proc/%d/status" % proc.pid) if line.startswith("Uid:")][0]
    assert uid.split()[1] != "0", uid


def test_passthrough_server_certificate():
    # The certificate the client sees through haproxy is pkid's own:
    # haproxy terminates nothing.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ROOT_PATH)
    ctx.load_cert_chain(AGENT_CERT, os.path.join(PKI, "service-certificates", AGENT + ".key"))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", STATE["grpc_port"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as s:
            der = s.getpeercert(binary_form=True)
            assert s.selected_alpn_protocol() == "h2"
    cert = x509.load_der_x509_certificate(der)
    uris = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [PKI_CA_ID], uris


def test_issue_as_client_identity():
    before = {n: metric(n, "pkid_issued_total") for n in (1, 2)}
    channels = [connect() for _ in range(4)]
    serials, certs = [], []
    try:
        # One after the other, each channel's connection stays open: with
        # leastconn the four go two to each node.
        for ch in channels:
            r = issue(ch)
            c = x509.load_der_x509_certificate(r.certificate)
            assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pki-agent"
            # The node that issued it (the one this connection reached)
            # knows it, and lets pki-agent see it.
            st = get_status(ch, r.serial)
            assert st.state == pki_pb2.CertificateStatus.STATE_GOOD, st
            assert st.service == "pki-agent" and st.serial == r.serial, st
            serials.append(r.serial)
            certs.append(c)
    finally:
        for ch in channels:
            ch.close()
    nodes = [node_of(s) for s in serials]
    assert sorted(nodes) == [1, 1, 2, 2], nodes
    after = {n: metric(n, "pkid_issued_total") for n in (1, 2)}
    assert {n: after[n] - before[n] for n in (1, 2)} == {1: 2, 2: 2}, (before, after)
    STATE["issued"] = dict(zip(nodes, serials))
    STATE["certs"] = dict(zip(nodes, certs))
    print("serials by node: %s" % sorted(zip(nodes, serials)), flush=True)


def test_refused_identities_still_refused():
    # security-agent may not see pki-agent's certificates: the node that
    # has one refuses, naming the identity it saw in the client's
    # certificate (the other node does not know the serial at all).
    with connect(path=SECURITY_AGENT) as ch:
        denied = []
        for serial in STATE["issued"].values():
            try:
                get_status(ch, serial)
                raise AssertionError("security-agent saw " + serial)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.PERMISSION_DENIED:
                    denied.append(e.details())
        assert len(denied) == 1, denied
        assert SECURITY_ID + " may not see" in denied[0], denied
    # security-agent may not issue for vault: pkid tells it from pki-agent.
    with connect(path=SECURITY_AGENT) as ch:
        expect_status(lambda: issue(ch, service="vault", usage=pki_pb2.USAGE_SERVER),
                      grpc.StatusCode.PERMISSION_DENIED, "may not issue")
    # No client certificate: pkid refuses the handshake, through haproxy.
    with connect(anonymous=True) as ch:
        expect_status(lambda: issue(ch), grpc.StatusCode.UNAVAILABLE)
    # A certificate of another root, with pki-agent's identity.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pki-agent")])
    now = datetime.datetime.now(datetime.timezone.utc)
    forged = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(hours=1))
              .add_extension(x509.SubjectAlternativeName(
                  [x509.UniformResourceIdentifier(AGENT_ID)]), critical=False)
              .sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with connect(key_and_chain=(pem_key, forged.public_bytes(serialization.Encoding.PEM))) as ch:
        expect_status(lambda: issue(ch), grpc.StatusCode.UNAVAILABLE)


def frontend_stat(field):
    lines = haproxy_cli("show stat").splitlines()
    head = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(head, line.split(",")))
        if row.get("pxname") == "grpc_in" and row.get("svname") == "FRONTEND":
            return int(row[field] or 0)
    raise AssertionError("no grpc_in frontend in show stat")


def table_conn_cur():
    out = haproxy_cli("show table grpc_in")
    return sum(int(v) for v in re.findall(r"conn_cur=(\d+)", out))


def test_per_client_connection_limit():
    held = []
    try:
        wait_for("no connection left from earlier cases", lambda: table_conn_cur() == 0, 10)
        for _ in range(PER_ADDRESS):
            held.append(socket.create_connection(("127.0.0.1", STATE["grpc_port"]), timeout=5))
        wait_for("haproxy to count %d connections" % PER_ADDRESS,
                 lambda: table_conn_cur() == PER_ADDRESS, 10)
        denied = frontend_stat("dcon")
        # The next is closed by haproxy at once: after the connect, or
        # during it (the reset can come before connect() returns).
        try:
            extra = socket.create_connection(("127.0.0.1", STATE["grpc_port"]), timeout=5)
            try:
                data = extra.recv(1)
            except ConnectionResetError:
                data = b""
            finally:
                extra.close()
        except ConnectionResetError:
            data = b""
        assert data == b"", data
        # ... by the tcp-request connection rule (denied connections).
        assert frontend_stat("dcon") == denied + 1, (denied, frontend_stat("dcon"))
        # The 64 are still open (pkid waits for their ClientHello).
        held[0].settimeout(0.2)
        try:
            held[0].recv(1)
            raise AssertionError("a connection within the limit was closed")
        except socket.timeout:
            pass
    finally:
        for s in held:
            s.close()
    wait_for("the limit's connections to go", lambda: table_conn_cur() == 0, 10)


def issue_on_new_channels(count):
    """|count| Issue calls, each on a new connection: their nodes."""
    nodes = []
    for _ in range(count):
        with connect() as ch:
            nodes.append(node_of(issue(ch).serial))
    return nodes


def test_hung_node_marked_down_and_back():
    # A channel whose connection lands on node 2 (leastconn: the first of
    # two new connections goes to one node, the second to the other).
    chs = [connect(), connect()]
    try:
        on = [node_of(issue(ch).serial) for ch in chs]
        assert sorted(on) == [1, 2], on
        pinned = chs[on.index(2)]
        NODES[2].signal(signal.SIGSTOP)
        STATE["stopped"] = True
        took = wait_status(2, "DOWN", DOWN_BOUND_S)
        print("hung node 2 marked down after %.1f s" % took, flush=True)
        assert server_status()[("pkid_grpc", "pkid1")] == "UP"
        # Its connection was closed when it was marked down: the channel
        # reconnects, through haproxy, to node 1.
        r = None
        deadline = time.monotonic() + 10
        while r is None and time.monotonic() < deadline:
            try:
                r = issue(pinned)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                time.sleep(0.2)
        assert r is not None and node_of(r.serial) == 1, r
        nodes = issue_on_new_channels(4)
        assert nodes == [1] * 4, nodes
        # OCSP too goes to node 1 only.
        for _ in range(3):
            assert openssl_ocsp(AGENT_CERT) == "good"
    finally:
        for ch in chs:
            ch.close()
        NODES[2].signal(signal.SIGCONT)
        STATE["stopped"] = False
    took = wait_status(2, "UP", UP_BOUND_S)
    print("node 2 up again %.1f s after SIGCONT" % took, flush=True)
    # With two connections held on node 1, leastconn sends the next to 2.
    held = [connect(), connect()]
    try:
        nodes = [node_of(issue(ch).serial) for ch in held]
        with connect() as ch:
            nodes.append(node_of(issue(ch).serial))
    finally:
        for ch in held:
            ch.close()
    assert 2 in nodes, nodes


def open_stream(ch):
    """An IssueStream kept open: (request queue, call, first response)."""
    q = queue.Queue()

    def requests():
        while True:
            item = q.get()
            if item is None:
                return
            yield item
    call = method(ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                  streaming=True)(requests(), timeout=60)
    q.put(pki_pb2.IssueRequest(csr=make_csr(), usage=pki_pb2.USAGE_CLIENT, request_id=1))
    first = next(call)
    assert first.status_code == 0, first
    return q, call, first


def test_stopped_node_marked_down_and_back():
    node = NODES[2]
    ports = (node.grpc, node.ocsp, node.admin)
    chs = [connect(), connect()]
    streams = []
    try:
        # An IssueStream open on node 2 while it drains: pkid waits for it
        # (up to 10 s) and says 503 on /readyz meanwhile.
        streams = [open_stream(ch) for ch in chs]
        on = [node_of(first.serial) for _, _, first in streams]
        assert sorted(on) == [1, 2], on
        q, call, _ = streams[on.index(2)]
        t0 = time.monotonic()
        node.signal(signal.SIGTERM)
        took = wait_status(2, "DOWN", DOWN_BOUND_S)
        print("draining node 2 marked down after %.1f s" % took, flush=True)
        log = open(HAPROXY_LOG).read()
        assert "pkid_grpc/pkid2 failed, reason: Layer7 wrong status, code: 503" in log, log
        # Marked down, its sessions were shut: the stream ends there,
        # before pkid's own 10 s grace.
        try:
            q.put(pki_pb2.IssueRequest(csr=make_csr(), usage=pki_pb2.USAGE_CLIENT, request_id=2))
            for r in call:
                pass
            raise AssertionError("the stream on node 2 went on")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e
        assert node.proc.wait(timeout=15) == 0, node.log()
        assert time.monotonic() - t0 < 10, "pkid drained until its grace period ended"
        assert issue_on_new_channels(4) == [1] * 4
    finally:
        for q, _, _ in streams:
            q.put(None)
        for ch in chs:
            ch.close()
    start_node(2, ports)
    took = wait_status(2, "UP", UP_BOUND_S)
    print("restarted node 2 up after %.1f s" % took, flush=True)
    held = [connect(), connect()]
    try:
        nodes = [node_of(issue(ch).serial) for ch in held]
        assert sorted(nodes) == [1, 2], nodes
        # It kept its journal: what it issued before is still known there.
        st = get_status(held[nodes.index(2)], STATE["issued"][2])
        assert st.state == pki_pb2.CertificateStatus.STATE_GOOD, st
    finally:
        for ch in held:
            ch.close()


def test_node_added_at_runtime():
    # The runtime API path of the configuration's header: a node added
    # without a restart (here node 2 once more, as "pkid9"), with the check
    # settings spelt out (default-server is not inherited) and its own
    # check in pkid_http (a dynamic server cannot be tracked).
    node = NODES[2]
    settings = ("check port %d inter 2s fastinter 500ms downinter 1s fall 3 rise 2 "
                "on-marked-down shutdown-sessions maxconn 4096" % node.admin)
    for backend, port in (("pkid_grpc", node.grpc), ("pkid_http", node.ocsp)):
        for cmd in ("add server %s/pkid9 127.0.0.1:%d %s" % (backend, port, settings),
                    "enable health %s/pkid9" % backend, "enable server %s/pkid9" % backend):
            out = haproxy_cli(cmd)
            assert out.strip() in ("", "New server registered."), (cmd, out)
    wait_for("pkid9 UP in both backends", lambda: all(
        server_status().get((b, "pkid9")) == "UP" for b in ("pkid_grpc", "pkid_http")),
        UP_BOUND_S, step=0.1)
    for backend in ("pkid_grpc", "pkid_http"):
        for cmd in ("disable server %s/pkid9" % backend, "del server %s/pkid9" % backend):
            out = haproxy_cli(cmd)
            assert out.strip() in ("", "Server deleted."), (cmd, out)
    assert ("pkid_grpc", "pkid9") not in server_status()


def openssl_ocsp(cert, issuer=AGENTS_CA):
    """`openssl ocsp -url` (a POST) through haproxy: the status it verified."""
    out = subprocess.run(
        ["openssl", "ocsp", "-issuer", issuer, "-cert", cert, "-url",
         "http://127.0.0.1:%d/" % STATE["http_port"], "-CAfile", ROOT_PATH, "-verify_other",
         AGENTS_CHAIN, "-no_nonce", "-timeout", "5"], capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "Response verify OK" in text, text
    return re.search(r"^%s: (\w+)" % re.escape(cert), text, re.M).group(1)


def ocsp_results(node):
    return {r: metric(node, "pkid_ocsp_requests_total", 'result="%s"' % r)
            for r in ("good", "unknown")}


def test_ocsp_post_by_openssl():
    before = {n: ocsp_results(n) for n in (1, 2)}
    for _ in range(4):
        assert openssl_ocsp(AGENT_CERT) == "good"
    after = {n: ocsp_results(n) for n in (1, 2)}
    # roundrobin: both nodes answered (each imported the ceremony's
    # certificates from the pki tree).
    for n in (1, 2):
        assert after[n]["good"] - before[n]["good"] >= 1, (n, before, after)


def ocsp_get(cert):
    """A GET (RFC 6960 A.1: the base64 DER request, URL-encoded, in the
    path) for an agents-ca certificate: its status."""
    issuer = x509.load_pem_x509_certificate(open(AGENTS_CA, "rb").read())
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    b64 = base64.b64encode(req.public_bytes(serialization.Encoding.DER)).decode()
    status, headers, body = http_get("/" + urllib.parse.quote(b64, safe=""))
    assert status == 200 and headers["Content-Type"] == "application/ocsp-response", headers
    resp = ocsp.load_der_ocsp_response(body)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.serial_number == cert.serial_number
    return resp.certificate_status


def test_ocsp_get_node_issued():
    cert = STATE["certs"][1]
    before = {n: ocsp_results(n) for n in (1, 2)}
    got = [ocsp_get(cert) for _ in range(4)]
    after = {n: ocsp_results(n) for n in (1, 2)}
    # Node 1 issued it and says good; node 2 has not heard of it (its own
    # journal) and says unknown: with roundrobin, both answers come back.
    assert sorted(s.name for s in got) == ["GOOD", "GOOD", "UNKNOWN", "UNKNOWN"], got
    assert after[1]["good"] - before[1]["good"] == 2, (before, after)
    assert after[2]["unknown"] - before[2]["unknown"] == 2, (before, after)


def openssl_crl(der):
    path = os.path.join(WORK, "got.crl")
    with open(path, "wb") as f:
        f.write(der)
    out = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", path, "-noout", "-issuer",
                          "-crlnumber"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_crls():
    root = x509.load_pem_x509_certificate(ROOT).subject.rfc4514_string()
    bodies = set()
    for _ in range(4):
        status, headers, body = http_get("/crl/root.crl")
        assert status == 200 and headers["Content-Type"] == "application/pkix-crl", headers
        bodies.add(body)
        assert x509.load_der_x509_crl(body).issuer.rfc4514_string() == root
    assert len(bodies) == 1  # the same signed file, whichever node answered
    text = openssl_crl(bodies.pop())
    cn = x509.load_pem_x509_certificate(ROOT).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)[0].value
    assert cn in text, (cn, text)

    agents = x509.load_pem_x509_certificate(open(AGENTS_CA, "rb").read())

    def fetch():
        try:
            return http_get("/crl/agents-ca.crl")
        except urllib.error.HTTPError as e:
            if e.code == 503:  # "CRL not built yet" right after a start
                return None
            raise
    numbers = set()
    for _ in range(4):
        status, headers, body = wait_for("agents-ca's CRL", fetch, 10, step=0.2)
        text = openssl_crl(body)
        assert "crlNumber=" in text, text
        numbers.add(text.split("crlNumber=")[1].strip())
        assert x509.load_der_x509_crl(body).issuer == agents.subject
    print("agents-ca CRL numbers seen through haproxy: %s" % sorted(numbers), flush=True)
    # Each node builds and signs its own (its journal's revocations, its
    # own cRLNumber sequence): what each serves, for the record.
    for n, node in NODES.items():
        with urllib.request.urlopen("http://127.0.0.1:%d/crl/agents-ca.crl" % node.ocsp,
                                    timeout=5) as r:
            crl = x509.load_der_x509_crl(r.read())
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            print("node %d: agents-ca CRL number %d, thisUpdate %s, ETag %s" % (
                n, number, crl.last_update, r.headers["ETag"]), flush=True)
    status, headers, body = http_get("/ca/agents-ca.crt")
    assert x509.load_der_x509_certificate(body).subject == agents.subject


def test_haproxy_metrics():
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % STATE["metrics_port"],
                                  timeout=5).read().decode()
    for b in ("pkid_grpc", "pkid_http"):
        for n in (1, 2):
            assert 'haproxy_server_status{proxy="%s",server="pkid%d",state="UP"} 1' % (b, n) \
                in body, (b, n)


def test_clean_exits():
    # SIGTERM: each node drains and exits 0 (under ASan a leak or an error
    # at exit would make it 1), nothing in the logs either; haproxy said
    # no alert in all this.
    stop(STATE["haproxy"])
    for n, node in NODES.items():
        assert node.stop() == 0, node.log()
        text = node.log()
        for word in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert word not in text, "%s in node %d's log:\n%s" % (word, n, text)
    assert "[ALERT]" not in open(HAPROXY_LOG).read(), open(HAPROXY_LOG).read()


try:
    run("config_check", test_config_check)
    run("haproxy_starts_nodes_up", start_haproxy)
    run("passthrough_server_certificate", test_passthrough_server_certificate)
    run("issue_as_client_identity", test_issue_as_client_identity)
    run("refused_identities_still_refused", test_refused_identities_still_refused)
    run("per_client_connection_limit", test_per_client_connection_limit)
    run("ocsp_post_by_openssl", test_ocsp_post_by_openssl)
    run("ocsp_get_node_issued", test_ocsp_get_node_issued)
    run("crls", test_crls)
    run("haproxy_metrics", test_haproxy_metrics)
    run("hung_node_marked_down_and_back", test_hung_node_marked_down_and_back)
    run("stopped_node_marked_down_and_back", test_stopped_node_marked_down_and_back)
    run("node_added_at_runtime", test_node_added_at_runtime)
    run("clean_exits", test_clean_exits)
finally:
    if STATE.get("stopped"):
        NODES[2].signal(signal.SIGCONT)
    for p in reversed(PROCS):
        stop(p)
    for node in NODES.values():
        try:
            node.stop()
        except subprocess.TimeoutExpired:
            node.kill()
    shutil.rmtree(SOCK_DIR, ignore_errors=True)
    out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if out:
        for path in [HAPROXY_LOG] + [n.log_path for n in NODES.values()]:
            if os.path.exists(path):
                shutil.copy(path, out)
finish()
