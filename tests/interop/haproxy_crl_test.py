#!/usr/bin/python3
"""haproxy_crl_test: a revocation reaches a real haproxy without a reload.

haproxy 2.6 (Debian's /usr/sbin/haproxy) requires client certificates
(`verify required`) and checks them against a crl-file that `pkictl agent`
keeps: the complete CRLs of agents-ca and of the root, fetched from a real
pkid on loopback and pushed through haproxy's runtime API (`set ssl
crl-file` + `commit ssl crl-file`). A client certificate pkid revokes is
refused at its next handshake (alert "certificate revoked") within seconds;
meanwhile a good client's connection opened before the revocation keeps
working (haproxy checks CRLs only at the handshake), good clients connect
all along, haproxy keeps its pid, and `show ssl crl-file` lists the serial.
TLS session resumption is off in haproxy's configuration (no session cache,
no tickets): haproxy resumes a session without checking the certificate,
so with its defaults the revoked client resumes, over TLS 1.2 and 1.3, a
session it had before; the test proves it does not here.
The latency from revocation to the first refusal is printed, with the
steps between (pkid publishes, the agent writes, the agent pushes).

Usage: haproxy_crl_test.py PKICTL PKID
"""
import datetime
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cryptography import x509  # noqa: E402
from pkidtest import (Pkid, demo_tree, free_port, haproxy_command, spawn, stop,  # noqa: E402
                      wait_for)
from testlib import finish, run  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
PKICTL, PKID = (os.path.abspath(p) for p in sys.argv[1:3])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
WORK = os.path.join(TMP, "haproxy")
os.makedirs(WORK, exist_ok=True)
PKI = demo_tree(PKICTL, TMP)
ROOT = os.path.join(PKI, "root-ca/certs/root-ca.crt")
AGENTS_CA = os.path.join(PKI, "intermediate-ca/agents-ca/certs/agents-ca.crt")
AGENT_SVC = os.path.join(PKI, "service-certificates/agents/pki-agent/pki-agent-client")
LB = os.path.join(PKI, "service-certificates/load-balancer/active/lb-current")
CRL_FILE = os.path.join(WORK, "clients-crl.pem")
# A unix socket path is at most ~100 bytes, shorter than Bazel's TEST_TMPDIR
# can be: the socket lives in a short directory of its own, removed below.
SOCK_DIR = tempfile.mkdtemp(prefix="haproxy-crl-", dir="/tmp")
SOCK = os.path.join(SOCK_DIR, "admin.sock")
AGENT_LOG = os.path.join(WORK, "agent.log")
HAPROXY_LOG = os.path.join(WORK, "haproxy.log")
HOOK_LOG = os.path.join(WORK, "hook.log")
# Revocation to refusal: pkid batches CRLs within ~1 s, the agent polls
# every second; 10 s leaves room for a loaded (sanitized) machine.
REFUSAL_BOUND_S = 10.0

PROCS = []  # every process started here, stopped in the finally below


def log_lines(path):
    """The JSON lines of a log, the others skipped."""
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def log_time(entry):
    return datetime.datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def events(path, name, after=0.0):
    return [e for e in log_lines(path) if e.get("event") == name and log_time(e) >= after]


def pkictl(*args):
    out = subprocess.run([PKICTL] + list(args), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, "pkictl %s: exit %d\n%s%s" % (
        args[0], out.returncode, out.stdout, out.stderr)
    return out.stdout


def online(*args):
    return pkictl(*(list(args) + ["--pki", PKI, "--as", "pki-agent",
                                  "--server", "127.0.0.1:%d" % SERVER.grpc]))


def issue_client(name):
    """A fresh pki-agent client certificate from pkid: (cert+chain, key, serial hex)."""
    crt, key, chain = (os.path.join(WORK, name + ext) for ext in (".crt", ".key", "-chain.crt"))
    online("issue", "--service", "pki-agent", "--usage", "client", "--out-cert", crt,
           "--out-key", key, "--out-chain", chain)
    both = os.path.join(WORK, name + "-full.crt")
    with open(both, "wb") as f:
        f.write(open(crt, "rb").read() + open(chain, "rb").read())
    serial = x509.load_pem_x509_certificate(open(crt, "rb").read()).serial_number
    text = "%x" % serial
    return both, key, "0" * (len(text) % 2) + text  # whole octets, as haproxy prints


def client_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ROOT)
    ctx.check_hostname = False  # the load balancer's names are not 127.0.0.1
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(cert, key)
    return ctx


def read_response(s):
    """One HTTP/1.1 response off |s|: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a response (%r)" % data)
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for h in lines[1:]:
        k, _, v = h.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside a response")
        body += chunk
    return int(lines[0].split()[1]), body


def request(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: keep-alive\r\n\r\n")
    return read_response(s)


def connect(ctx):
    raw = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    try:
        return ctx.wrap_socket(raw, server_hostname="lb")
    except BaseException:
        raw.close()
        raise


def attempt(ctx):
    """A new connection and one request: None if served "ok", else why not.
    Under TLS 1.3 the client's handshake ends before haproxy has checked its
    certificate: a refusal shows as an alert on the first read."""
    try:
        s = connect(ctx)
    except (ssl.SSLError, OSError) as e:
        return "handshake: %s" % e
    try:
        status, body = request(s)
        if status == 200 and body == b"ok":
            return None
        return "status %d %r" % (status, body)
    except (ssl.SSLError, OSError) as e:
        return "request: %s" % e
    finally:
        s.close()


def haproxy_cli(command):
    return haproxy_command(SOCK, command)


class GoodClients(threading.Thread):
    """New connections of a good client, back to back, until stopped."""

    def __init__(self, ctx):
        super().__init__(daemon=True)
        self.ctx, self.done = ctx, threading.Event()
        self.ok, self.failures = 0, []

    def run(self):
        while not self.done.is_set():
            why = attempt(self.ctx)
            if why is None:
                self.ok += 1
            else:
                self.failures.append("%.3f %s" % (time.time(), why))
            time.sleep(0.02)


SERVER = Pkid(PKID, PKI, TMP).start()
CRL_BASE = "http://127.0.0.1:%d/crl/" % SERVER.ocsp
AGENT_ARGS = [PKICTL, "agent", "--pki", PKI, "--crl-file", CRL_FILE, "--crl-ca", "agents-ca",
              "--crl-base-url", CRL_BASE, "--timeout-ms", "5000"]
PORT = free_port()
GOOD_CTX = client_context(AGENT_SVC + ".crt", AGENT_SVC + ".key")
STATE = {}


def test_agent_once_writes_file():
    # haproxy will not start without its crl-file: one pass makes it.
    out = subprocess.run(AGENT_ARGS + ["--once"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pem = open(CRL_FILE).read()
    assert pem.count("-----BEGIN X509 CRL-----") == 2, pem
    crls = [x509.load_pem_x509_crl(("-----BEGIN X509 CRL-----" + b).encode())
            for b in pem.split("-----BEGIN X509 CRL-----")[1:]]
    issuers = [c.issuer.rfc4514_string() for c in crls]
    agents = x509.load_pem_x509_certificate(open(AGENTS_CA, "rb").read())
    root = x509.load_pem_x509_certificate(open(ROOT, "rb").read())
    assert issuers == [agents.subject.rfc4514_string(), root.subject.rfc4514_string()], issuers


def test_haproxy_serves_good_clients():
    server_pem = os.path.join(WORK, "lb.pem")
    with open(server_pem, "wb") as f:
        for part in (LB + ".crt", LB + "-chain.crt", LB + ".key"):
            f.write(open(part, "rb").read())
    ca_file = os.path.join(WORK, "clients-ca.pem")
    with open(ca_file, "wb") as f:
        f.write(open(ROOT, "rb").read() + open(AGENTS_CA, "rb").read())
    cfg = os.path.join(WORK, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("""global
    stats socket %s level admin
    # No session cache (and no tickets below): haproxy resumes a session
    # without checking the certificate again, and neither its cache nor
    # its ticket keys are reset by `commit ssl crl-file`, so a revoked
    # client would resume sessions opened before (TLS 1.2 and 1.3 alike).
    tune.ssl.cachesize 0
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend clients
    bind 127.0.0.1:%d ssl crt %s ca-file %s verify required crl-file %s no-tls-tickets
    http-request return status 200 content-type text/plain string ok
""" % (SOCK, PORT, server_pem, ca_file, CRL_FILE))
    check = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    STATE["haproxy"] = spawn(PROCS, [HAPROXY, "-f", cfg, "-db"], HAPROXY_LOG)

    def up():
        if STATE["haproxy"].poll() is not None:
            raise AssertionError("haproxy exited:\n" + open(HAPROXY_LOG).read())
        return os.path.exists(SOCK) and attempt(GOOD_CTX) is None
    wait_for("haproxy to serve", up, 15)
    info = haproxy_cli("show info")
    STATE["pid"] = [line.split(":")[1].strip() for line in info.splitlines()
                    if line.startswith("Pid:")][0]
    assert STATE["pid"] == str(STATE["haproxy"].pid), (STATE["pid"], STATE["haproxy"].pid)


def test_victim_served_before_revocation():
    cert, key, serial = issue_client("victim")
    STATE["victim"] = client_context(cert, key)
    STATE["serial"] = serial
    why = attempt(STATE["victim"])
    assert why is None, why
    # Its TLS sessions, to try resuming after the revocation: a resumed
    # session skips the certificate check.
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(cert, key)
        ctx.minimum_version = ctx.maximum_version = version
        s = connect(ctx)
        assert request(s) == (200, b"ok")
        assert s.session is not None, version
        STATE.setdefault("sessions", []).append((version, ctx, s.session))
        s.close()
    # An unrelated fresh client, never revoked, for the rest of the test.
    cert, key, _ = issue_client("bystander")
    STATE["bystander"] = client_context(cert, key)
    assert attempt(STATE["bystander"]) is None


def test_agent_pushes_at_start():
    STATE["agent"] = spawn(PROCS, AGENT_ARGS + ["--crl-interval", "1s", "--haproxy-socket", SOCK,
                                         "--crl-hook", "echo written >>'%s'" % HOOK_LOG],
                           AGENT_LOG)
    # The file is haproxy's already, but haproxy may hold an older one: the
    # agent pushes once at start.
    wait_for("the agent's first push", lambda: events(AGENT_LOG, "crl_pushed"), 15)
    assert not events(AGENT_LOG, "crl_push_failed"), open(AGENT_LOG).read()


def test_revoked_client_refused():
    # A good client's connection, open across the revocation.
    kept = connect(GOOD_CTX)
    assert request(kept) == (200, b"ok")
    STATE["kept"] = kept
    good = GoodClients(GOOD_CTX)
    good.start()
    STATE["good"] = good
    time.sleep(0.5)

    t_revoke = time.time()
    online("revoke", "--serial", STATE["serial"], "--reason", "key-compromise")
    t_revoked = time.time()
    refusal = None

    def refused():
        nonlocal refusal
        why = attempt(STATE["victim"])
        if why is not None:
            refusal = why
            return time.time()
        return None
    t_refused = wait_for("haproxy to refuse the revoked client", refused, REFUSAL_BOUND_S,
                         step=0.02)
    assert "revoked" in refusal.lower(), "refused, but not as revoked: " + refusal

    # The steps between, by the CRL that lists the serial: pkid publishes
    # CRLs on its own too (an empty one may come between).
    def listing(e):
        return e.get("ca") == "agents-ca" and int(e.get("entries", "0")) > 0
    published = [e for e in events(SERVER.log_path, "crl_published", t_revoke - 0.01)
                 if listing(e)]
    fetched = [e for e in events(AGENT_LOG, "crl_fetched", t_revoke - 0.01) if listing(e)]
    assert published and fetched, (published, fetched)
    # haproxy refuses as soon as the agent's "commit ssl crl-file" lands,
    # which is before the agent logs that it did: wait for the line.
    written = events(AGENT_LOG, "crl_written", log_time(fetched[0]))
    pushed = wait_for("the agent to log its push",
                      lambda: events(AGENT_LOG, "crl_pushed", log_time(fetched[0])), 10)
    assert written and pushed, (written, pushed)
    steps = [("revoke answered", t_revoked), ("pkid published", log_time(published[0])),
             ("agent fetched", log_time(fetched[0])), ("agent wrote", log_time(written[0])), ("agent pushed", log_time(pushed[0])),
             ("first refusal", t_refused)]
    print("revocation -> refusal: %.3f s (%s)" % (t_refused - t_revoke, ", ".join(
        "%s +%.3f" % (name, t - t_revoke) for name, t in steps)), flush=True)
    print("refused with: " + refusal, flush=True)
    STATE["t_refused"] = t_refused


def test_revoked_stays_refused():
    for _ in range(5):
        why = attempt(STATE["victim"])
        assert why is not None and "revoked" in why.lower(), why


def test_revoked_session_not_resumed():
    bad = []
    for version, ctx, session in STATE["sessions"]:
        raw = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        try:
            s = ctx.wrap_socket(raw, server_hostname="lb", session=session)
        except ssl.SSLError as e:
            assert "revoked" in str(e).lower(), (version, e)
            raw.close()
            continue
        try:
            served = request(s) == (200, b"ok")
        except (ssl.SSLError, OSError) as e:
            served = False
            assert "revoked" in str(e).lower(), (version, e)
        reused = s.session_reused
        s.close()
        if served:
            bad.append("%s: the revoked client was served (session reused: %s)" % (
                version.name, reused))
    assert not bad, bad


def test_kept_connection_still_served():
    # haproxy checks the CRL at the handshake only: an established session
    # outlives the new CRL.
    assert request(STATE["kept"]) == (200, b"ok")
    assert request(STATE["kept"]) == (200, b"ok")
    STATE["kept"].close()


def test_good_clients_served_throughout():
    time.sleep(0.5)  # a little past the refusal too
    good = STATE["good"]
    good.done.set()
    good.join(timeout=15)
    assert not good.is_alive()
    print("good clients: %d connections served, %d failed" % (good.ok, len(good.failures)),
          flush=True)
    assert not good.failures, good.failures[:5]
    assert good.ok >= 10, good.ok
    assert attempt(STATE["bystander"]) is None
    assert attempt(GOOD_CTX) is None


def test_no_reload_and_crl_listed():
    assert STATE["haproxy"].poll() is None, "haproxy exited"
    info = haproxy_cli("show info")
    assert "Pid: %s\n" % STATE["pid"] in info, info
    text = haproxy_cli("show ssl crl-file " + CRL_FILE)
    # (haproxy does not print the reason.)
    listed = re.findall(r"Serial Number: ([0-9A-Fa-f]+)", text)
    assert listed == [STATE["serial"].upper()], text
    assert text.count("Certificate Revocation List #") == 2, text
    pushes = events(AGENT_LOG, "crl_pushed")
    assert len(pushes) >= 2, pushes
    # The hook ran once per write (pkid may publish an empty CRL too).
    writes = len(events(AGENT_LOG, "crl_written"))
    assert writes >= 1 and open(HOOK_LOG).read().count("written") == writes, writes
    hooks = [e for e in events(AGENT_LOG, "reload") if e.get("exit_status") == "0"]
    assert len(hooks) == writes, hooks
    assert not events(AGENT_LOG, "crl_push_failed"), open(AGENT_LOG).read()


def test_clean_exits():
    # SIGTERM: the agent stops between passes and exits 0 (under ASan, a
    # leak or error at exit would make that 1); nothing in the logs either.
    agent = STATE["agent"]
    agent.terminate()
    assert agent.wait(timeout=15) == 0, open(AGENT_LOG).read()
    assert events(AGENT_LOG, "agent_stop")
    assert SERVER.stop() == 0, SERVER.log()
    for path in (AGENT_LOG, SERVER.log_path):
        text = open(path).read()
        for word in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert word not in text, "%s in %s:\n%s" % (word, path, text)


try:
    run("agent_once_writes_file", test_agent_once_writes_file)
    run("haproxy_serves_good_clients", test_haproxy_serves_good_clients)
    run("victim_served_before_revocation", test_victim_served_before_revocation)
    run("agent_pushes_at_start", test_agent_pushes_at_start)
    run("revoked_client_refused", test_revoked_client_refused)
    run("revoked_stays_refused", test_revoked_stays_refused)
    run("revoked_session_not_resumed", test_revoked_session_not_resumed)
    run("kept_connection_still_served", test_kept_connection_still_served)
    run("good_clients_served_throughout", test_good_clients_served_throughout)
    run("no_reload_and_crl_listed", test_no_reload_and_crl_listed)
    run("clean_exits", test_clean_exits)
finally:
    if "good" in STATE:
        STATE["good"].done.set()
        STATE["good"].join(timeout=15)
    for p in reversed(PROCS):
        stop(p)
    SERVER.stop()
    shutil.rmtree(SOCK_DIR, ignore_errors=True)
    out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if out:
        for path in (AGENT_LOG, HAPROXY_LOG, SERVER.log_path):
            if os.path.exists(path):
                subprocess.run(["cp", path, out])
finish()
