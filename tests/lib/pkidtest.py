"""pkidtest.py: what the Python tests of pkid share.

    from pkidtest import Pkid, demo_tree, load_proto, channel
    pki = demo_tree(pkictl, tmp)            # pkictl ceremony demo
    pki_pb2 = load_proto(proto, tmp)        # message classes, by Debian's protoc
    server = Pkid(pkid, pki, tmp).start()   # on 127.0.0.1, ports picked by the kernel
    with channel(server, pki) as ch: ...    # grpcio, as pki-agent, mutual TLS
    server.stop()                           # SIGTERM; returns the exit status

Every pkid a test starts, it stops: Pkid.stop (or kill) in a finally.
Other processes (haproxy, pkictl agent): spawn() them into a list and
stop() each in a finally; wait_for() polls with a deadline; free_port()
picks a loopback port for a configuration file."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import grpc

AGENT = "agents/pki-agent/pki-agent-client"
SERVER_NAME = "pki-ca.cybersec-framework.local"


def demo_tree(pkictl, tmp, catalog=None):
    pki = os.path.join(tmp, "pki")
    args = [pkictl, "ceremony", "demo", "--out", pki]
    if catalog is not None:
        args += ["--catalog", catalog]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return pki


def copy_tree(pki, dst, skip=("journal",)):
    """A copy of a (perhaps running) server's tree, without the names in
    skip. A running pkid writes CRLs to temporary names it renames into
    place, so one may vanish between listing and copying: those are
    never copied."""
    shutil.copytree(pki, dst, ignore=shutil.ignore_patterns("*.tmp.*", *skip))
    return dst


def load_proto(proto, tmp):
    """Generates pki_pb2 from proto/pki/v1/pki.proto and imports it."""
    gen = os.path.join(tmp, "gen")
    os.makedirs(gen, exist_ok=True)
    root = os.path.dirname(os.path.dirname(os.path.dirname(proto)))
    subprocess.run(["protoc", "--proto_path=" + root, "--python_out=" + gen, proto], check=True)
    sys.path.insert(0, gen)
    from pki.v1 import pki_pb2  # noqa: E402
    return pki_pb2


def service_files(pki, path):
    """(key PEM, certificate + chain PEM) of a service certificate."""
    base = os.path.join(pki, "service-certificates", path)
    return (open(base + ".key", "rb").read(),
            open(base + ".crt", "rb").read() + open(base + "-chain.crt", "rb").read())


class Pkid:
    """One pkid process on loopback; its log is a file the test can read."""

    def __init__(self, binary, pki, tmp, args=(), log_name="pkid.log", host="127.0.0.1",
                 env=None):
        """|host|: the loopback address its three listeners take (ports
        chosen by the kernel unless |args| give --listen and the others).
        |env|: pkid's whole environment (None: the test's)."""
        self.binary, self.pki, self.args, self.host = binary, pki, list(args), host
        self.env = env
        self.log_path = os.path.join(tmp, log_name)
        self.proc = None
        self.grpc = self.ocsp = self.admin = None

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def start(self, timeout=30):
        """Starts pkid and waits for its three listeners to report ports."""
        log = open(self.log_path, "a")
        starts = self.log().count('"listening","grpc"') if os.path.exists(self.log_path) else 0
        self.proc = subprocess.Popen(
            [self.binary, "--pki", self.pki, "--listen", self.host + ":0", "--ocsp-listen",
             self.host + ":0", "--admin-listen", self.host + ":0"] + self.args, stderr=log,
            env=self.env)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.log()
            ports = {k: re.findall(r'"listening","%s":"%s:(\d+)"' % (k, re.escape(self.host)),
                                   text)
                     for k in ("grpc", "ocsp", "admin")}
            if all(len(v) > starts for v in ports.values()):
                self.grpc, self.ocsp, self.admin = (int(ports[k][-1])
                                                    for k in ("grpc", "ocsp", "admin"))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("pkid did not start:\n" + self.log())

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM, then the exit status (pkid drains first)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def channel(server, pki, path=AGENT, key_and_chain=None, anonymous=False):
    """A grpcio channel to |server| with a client certificate (a service's,
    or |key_and_chain|), or none when |anonymous|."""
    root = open(os.path.join(pki, "root-ca/certs/root-ca.crt"), "rb").read()
    key, chain = (None, None) if anonymous else (key_and_chain or service_files(pki, path))
    creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key,
                                         certificate_chain=chain)
    return grpc.secure_channel("%s:%d" % (server.host, server.grpc), creds,
                               options=[("grpc.ssl_target_name_override", SERVER_NAME)])


def method(ch, name, req_cls, resp_cls, streaming=False):
    """A callable for /pki.v1.Pki/|name|."""
    make = ch.stream_stream if streaming else ch.unary_unary
    return make("/pki.v1.Pki/" + name, request_serializer=req_cls.SerializeToString,
                response_deserializer=resp_cls.FromString)


def make_csr(cn="probe"):
    """A CSR (DER) for a fresh P-256 key, subject CN=|cn|: pkid takes the
    names from the catalogue, so the subject only labels it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def expect_status(fn, code, words=""):
    """Runs |fn|, which must fail with gRPC status |code| and |words| in its
    message."""
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, "got %s %s, want %s" % (e.code(), e.details(), code)
        assert words in (e.details() or ""), "%r lacks %r" % (e.details(), words)
        return
    raise AssertionError("call succeeded, want %s" % code)


def free_port():
    """A TCP port on 127.0.0.1 nothing listens on now (for a configuration
    file that cannot say 0)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(procs, args, log_path):
    """Starts |args| with stdout and stderr appended to |log_path|, and adds
    it to |procs|, the list the test stops in its finally."""
    log = open(log_path, "a")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    procs.append(proc)
    return proc


def stop(proc):
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(what, fn, timeout, step=0.05):
    """Calls |fn| until it returns something true (returned), at most
    |timeout| seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def haproxy_command(sock_path, command):
    """One command on haproxy's runtime API (a unix stats socket), and its
    whole answer: haproxy closes the connection after it."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock_path)
    s.sendall(command.encode() + b"\n")
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out.decode()


def cluster_env(nodes, grpc_port, http_port, metrics_port, sock_path):
    """The environment deploy/haproxy/pkid-cluster.cfg reads: |nodes| maps
    a node number to its Pkid (its .host and ports); the load balancer's
    own listeners are on 127.0.0.1."""
    env = dict(os.environ)
    for n, node in nodes.items():
        env["PKID_NODE%d" % n] = node.host
        env["PKID_NODE%d_GRPC_PORT" % n] = str(node.grpc)
        env["PKID_NODE%d_OCSP_PORT" % n] = str(node.ocsp)
        env["PKID_NODE%d_ADMIN_PORT" % n] = str(node.admin)
    env["PKID_LB_GRPC"] = "127.0.0.1:%d" % grpc_port
    env["PKID_LB_HTTP"] = "127.0.0.1:%d" % http_port
    env["PKID_LB_METRICS"] = "127.0.0.1:%d" % metrics_port
    env["PKID_LB_SOCKET"] = sock_path
    return env


def haproxy_server_status(sock_path):
    """{(backend, server): status} from haproxy's `show stat` ("UP",
    "DOWN", "UP 1/3"...)."""
    lines = haproxy_command(sock_path, "show stat").splitlines()
    head = lines[0].lstrip("# ").split(",")
    out = {}
    for line in lines[1:]:
        if not line:
            continue
        row = dict(zip(head, line.split(",")))
        if row["svname"] not in ("FRONTEND", "BACKEND"):
            out[(row["pxname"], row["svname"])] = row["status"]
    return out
