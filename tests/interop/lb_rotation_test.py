#!/usr/bin/python3
"""lb_rotation_test: `pkictl lb rotate` swaps the load balancer's certificate
in a real haproxy 2.6 (Debian's /usr/sbin/haproxy) with a real pkid, on
loopback.

  - refused before any swap (exit 1, lb_cert_rotation_success 0, active/
    and what haproxy serves untouched): a next certificate whose key does
    not match, one expiring within 24 hours, one missing a catalogue name,
    one pkid has revoked (OCSP), one from another CA;
  - rolled back when the probe does not see the new certificate: the swap
    is committed for a crt file (a second frontend's) that the probed bind
    does not use, so the probe keeps seeing the old one; the previous one
    is put back through the same runtime API;
  - zero dropped: 20 rotations through the runtime API while client
    threads make new TLS handshakes and requests back to back and one
    keep-alive connection sends a request every 100 ms: every handshake
    and request succeeds, the keep-alive connection is the same socket
    throughout, and after each rotation a handshake sees the new serial;
  - the same through a graceful reload of haproxy in master-worker mode
    (SIGUSR2 to the master), without the stats socket, except that the
    keep-alive connection is closed gracefully at each reload (its next
    request is served by the old worker with `Connection: close`, `option
    idle-close-on-response`) and opened again: still no request fails and
    none is sent again;
  - `openssl s_client -status` through haproxy shows a good stapled OCSP
    response after each rotation, and "revoked" once the serving
    certificate is revoked and `pkictl lb staple` refreshed it;
  - haproxy killed (-9) and started again serves the active certificate.

Timings (validation, swap, probe, from the rotation's own log lines) and
counts are printed; nothing is asserted about speed.

Usage: lb_rotation_test.py PKICTL PKID CATALOG SAMPLE_CFG LB_RULES
    (deploy/catalog.yaml, deploy/haproxy/haproxy.cfg, deploy/prometheus/lb-rules.yml)
"""
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cryptography import x509  # noqa: E402
from pkidtest import Pkid, copy_tree, demo_tree, free_port, spawn, stop, wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
PKICTL, PKID, CATALOG, SAMPLE_CFG, LB_RULES = (os.path.abspath(p) for p in sys.argv[1:6])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
WORK = os.path.join(TMP, "lb")
os.makedirs(WORK, exist_ok=True)
PKI = demo_tree(PKICTL, TMP)
ROOT = os.path.join(PKI, "root-ca/certs/root-ca.crt")
LB_DIR = os.path.join(PKI, "service-certificates/load-balancer")
ACTIVE = os.path.join(LB_DIR, "active")
ROTATION = os.path.join(LB_DIR, "rotation")
BACKUP = os.path.join(LB_DIR, "backup")
BUNDLE = os.path.join(ACTIVE, "lb-current.pem")
OTHER_BUNDLE = os.path.join(WORK, "other.pem")  # the second frontend's crt
METRICS = os.path.join(WORK, "lb.prom")
# A unix socket path is at most ~100 bytes, shorter than Bazel's TEST_TMPDIR
# can be: the socket lives in a short directory of its own, removed below.
SOCK_DIR = tempfile.mkdtemp(prefix="lb-rot-", dir="/tmp")
SOCK = os.path.join(SOCK_DIR, "admin.sock")
LB_LOG = os.path.join(WORK, "lb.log")
HAPROXY_LOG = os.path.join(WORK, "haproxy.log")
SNI = "api.cybersec-framework.local"
ROTATIONS = 20
RELOAD_ROTATIONS = 5

PROCS = []  # every process started here, stopped in the finally below
STATE = {}
TIMINGS = []  # (path, validate_ms, swap_ms, probe_ms) per rotation


PORT, PORT2, PORT_W = free_port(), free_port(), free_port()


def pkictl(*args, check=True):
    out = subprocess.run([PKICTL] + list(args), capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, "pkictl %s: exit %d\n%s%s" % (
            args[0], out.returncode, out.stdout, out.stderr)
    return out


def online(*args):
    return pkictl(*(list(args) + ["--pki", PKI, "--as", "pki-agent",
                                  "--server", "127.0.0.1:%d" % SERVER.grpc]))


def lb(command, *extra, socket_path=SOCK, cert=BUNDLE, probe=None, check=False, ocsp=None):
    """`pkictl lb COMMAND`; its JSON log lines go to LB_LOG too."""
    args = [PKICTL, "lb", command, "--pki", PKI, "--as", "pki-agent",
            "--server", "127.0.0.1:%d" % SERVER.grpc,
            "--ocsp-url", ocsp or "http://127.0.0.1:%d/" % SERVER.ocsp,
            "--probe", probe or "127.0.0.1:%d" % PORT, "--probe-name", SNI,
            "--metrics-file", METRICS, "--backups", "3", "--timeout-ms", "5000"]
    if socket_path is not None:
        args += ["--haproxy-socket", socket_path, "--haproxy-cert", cert]
    out = subprocess.run(args + list(extra), capture_output=True, text=True, timeout=90)
    with open(LB_LOG, "a") as f:
        f.write(out.stderr)
    if check:
        assert out.returncode == 0, "lb %s: exit %d\n%s" % (command, out.returncode, out.stderr)
    lines = []
    for line in out.stderr.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    return out.returncode, lines, out.stderr


def metrics():
    out = {}
    for line in open(METRICS):
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def served(port=None):
    """(serial hex, SHA-256 of the DER) of what haproxy presents now."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port or PORT), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=SNI) as s:
            der = s.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return "%x" % cert.serial_number, hashlib.sha256(der).hexdigest()


def file_serial(path):
    return "%x" % x509.load_pem_x509_certificate(open(path, "rb").read()).serial_number


def active_serial():
    return file_serial(os.path.join(ACTIVE, "lb-current.crt"))


def snapshot(directory):
    return {n: open(os.path.join(directory, n), "rb").read() for n in sorted(os.listdir(directory))}


def haproxy_config(path, socket_line, port, port2=None):
    with open(path, "w") as f:
        f.write("""global
    %s
    # No session cache or tickets: each probe and client is a full
    # handshake, so the certificate it sees is the one served now.
    tune.ssl.cachesize 0
    # As deploy/haproxy/haproxy.cfg: an old worker of a reload lingers at
    # most 30 s.
    hard-stop-after 30s
    log stderr format raw local0 info

defaults
    mode http
    log global
    # As deploy/haproxy/haproxy.cfg: on a reload's soft-stop, an idle
    # keep-alive connection is served its next request by the old worker
    # and closed after that response, not dropped under it.
    option idle-close-on-response
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend lb
    bind 127.0.0.1:%d ssl crt %s no-tls-tickets
    http-request return status 200 content-type text/plain string ok
""" % (socket_line, port, BUNDLE))
        if port2 is not None:
            f.write("""
frontend other
    bind 127.0.0.1:%d ssl crt %s no-tls-tickets
    http-request return status 200 content-type text/plain string ok
""" % (port2, OTHER_BUNDLE))
    check = subprocess.run([HAPROXY, "-c", "-f", path], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def start_haproxy():
    proc = spawn(PROCS, [HAPROXY, "-f", os.path.join(WORK, "haproxy.cfg"), "-db"], HAPROXY_LOG)

    def up():
        if proc.poll() is not None:
            raise AssertionError("haproxy exited:\n" + open(HAPROXY_LOG).read())
        try:
            served()
            return os.path.exists(SOCK)
        except OSError:
            return False
    wait_for("haproxy to serve", up, 15)
    return proc


def rotation_timing(lines, path):
    done = [e for e in lines if e.get("event") == "lb_rotated"]
    assert done, lines
    e = done[-1]
    TIMINGS.append((path, int(e["validate_ms"]), int(e["swap_ms"]), int(e["probe_ms"])))


def stapled_status(port=None):
    """What `openssl s_client -status` says of the stapled response."""
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % (port or PORT),
                          "-servername", SNI, "-status", "-CAfile", ROOT],
                         input="", capture_output=True, text=True, timeout=30)
    m = re.search(r"Cert Status: (\w+)", out.stdout)
    return m.group(1) if m else ("none: " + out.stdout[:400])


SERVER = Pkid(PKID, PKI, TMP).start()


def test_setup_haproxy():
    # 30 days left, renew_before 24 h: nothing to rotate, but the bundle
    # haproxy's crt loads is written from active/.
    assert not os.path.exists(BUNDLE)
    before = snapshot(ACTIVE)
    rc, lines, err = lb("rotate")
    assert rc == 0, err
    assert [e for e in lines if e.get("event") == "lb_bundle_written"], err
    assert not [e for e in lines if e.get("event") == "lb_rotation_start"], err
    assert os.stat(BUNDLE).st_mode & 0o777 == 0o600
    after = snapshot(ACTIVE)
    assert after.pop("lb-current.pem") and after == before
    shutil.copy(BUNDLE, OTHER_BUNDLE)
    haproxy_config(os.path.join(WORK, "haproxy.cfg"), "stats socket %s level admin" % SOCK,
                   PORT, PORT2)
    STATE["haproxy"] = start_haproxy()
    assert served()[0] == active_serial()


def test_sample_config():
    # deploy/haproxy/haproxy.cfg, its paths pointed here, is a valid
    # configuration that serves this bundle.
    text = open(SAMPLE_CFG).read()
    assert "level admin" in text and "stats socket /" in text
    assert not re.search(r"stats socket (ipv4@|ipv6@)?[0-9\[]", text), "the socket must be local"
    text = text.replace("/etc/ssl/certs/active/lb-current.pem", BUNDLE).replace(
        "/run/haproxy/admin.sock", os.path.join(SOCK_DIR, "sample.sock"))
    path = os.path.join(WORK, "sample.cfg")
    with open(path, "w") as f:
        f.write(text)
    check = subprocess.run([HAPROXY, "-c", "-f", path], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_not_due():
    # 30 days left, renew_before 24 h: nothing to do.
    before = snapshot(ACTIVE)
    rc, lines, err = lb("rotate")
    assert rc == 0, err
    assert not [e for e in lines if e.get("event") == "lb_rotation_start"], err
    assert snapshot(ACTIVE) == before


def test_repair_after_crash():
    # A promotion writes the bundle first: pkictl stopped right after it
    # leaves lb-current.pem newer than lb-current.crt. The next run makes
    # the three files again from the bundle, what haproxy loads.
    crt, key, chain = issue_lb("crashed")
    with open(BUNDLE + ".tmp", "wb") as f:
        for part in (crt, chain, key):
            f.write(open(part, "rb").read())
    os.chmod(BUNDLE + ".tmp", 0o600)
    os.rename(BUNDLE + ".tmp", BUNDLE)
    rc, lines, err = lb("rotate")
    assert rc == 0, err
    assert [e for e in lines if e.get("event") == "lb_active_repaired"], err
    for part, name in ((crt, "lb-current.crt"), (key, "lb-current.key"),
                       (chain, "lb-current-chain.crt")):
        assert open(os.path.join(ACTIVE, name), "rb").read().strip() == \
            open(part, "rb").read().strip(), name
    assert os.stat(os.path.join(ACTIVE, "lb-current.key")).st_mode & 0o777 == 0o600
    # Once consistent, nothing more is rewritten.
    before = snapshot(ACTIVE)
    rc, lines, err = lb("rotate")
    assert rc == 0 and "lb_active_repaired" not in err and snapshot(ACTIVE) == before, err


def test_rotate_now():
    old = active_serial()
    nxt = file_serial(os.path.join(ROTATION, "lb-next.crt"))
    rc, lines, err = lb("rotate", "--now")
    assert rc == 0, err
    rotation_timing(lines, "runtime_api")
    assert active_serial() == nxt and served()[0] == nxt, (old, nxt, served())
    # Promoted: a new lb-next from pkid, keys 0600, a backup of the old one.
    new_next = file_serial(os.path.join(ROTATION, "lb-next.crt"))
    assert new_next not in (old, nxt)
    for path in (os.path.join(ACTIVE, "lb-current.key"), BUNDLE,
                 os.path.join(ROTATION, "lb-next.key")):
        assert os.stat(path).st_mode & 0o777 == 0o600, path
    backups = sorted(n for n in os.listdir(BACKUP) if n.endswith(".crt") and "-chain" not in n)
    assert len(backups) == 1 and file_serial(os.path.join(BACKUP, backups[0])) == old, backups
    base = backups[0][:-4]
    assert os.stat(os.path.join(BACKUP, base + ".key")).st_mode & 0o777 == 0o600
    assert os.path.exists(os.path.join(BACKUP, base + "-chain.crt"))
    m = metrics()
    assert m["lb_cert_rotation_success"] == 1, m
    assert m['lb_cert_rotations_total{result="ok"}'] == 1, m
    assert m['cert_expiry_timestamp{cert_name="lb-current"}'] > time.time() + 86400, m
    assert 'cert_expiry_timestamp{cert_name="lb-next"}' in m, m
    assert abs(m["lb_cert_last_rotation_timestamp_seconds"] - time.time()) < 60, m
    events = [e["event"] for e in lines]
    for step in ("lb_rotation_start", "lb_validated", "lb_backup", "lb_swapped", "lb_probed",
                 "lb_rotated", "lb_rotation_reported", "lb_next_made"):
        assert step in events, (step, events)
    # The rotation is on pkid's audit trail, reported by the lb's identity.
    out = pkictl("audit", os.path.join(PKI, "journal"), "--kind", "lb_rotation", "--serial", nxt)
    rotated = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rotated) == 1, out.stdout
    assert rotated[0]["identity"].endswith("/agents/pki-agent"), rotated
    assert rotated[0]["service"] == "load-balancer", rotated
    said = re.fullmatch(r"(.+): ([0-9a-f]+) in service, replacing ([0-9a-f]+)",
                        rotated[0]["detail"])
    assert said and said.group(1) == BUNDLE, rotated
    assert (int(said.group(2), 16), int(said.group(3), 16)) == (int(nxt, 16), int(old, 16))
    # The stapled response, handed over in the same transaction.
    assert stapled_status() == "good", stapled_status()
    assert os.path.exists(BUNDLE + ".ocsp")
    # No key material in the logs.
    assert "PRIVATE KEY" not in err


def put_next(crt, key, chain):
    for src, name in ((crt, "lb-next.crt"), (key, "lb-next.key"), (chain, "lb-next-chain.crt")):
        shutil.copy(src, os.path.join(ROTATION, name))
    os.chmod(os.path.join(ROTATION, "lb-next.key"), 0o600)


def issue_lb(name, *extra):
    crt, key, chain = (os.path.join(WORK, name + ext) for ext in (".crt", ".key", "-chain.crt"))
    online("issue", "--service", "load-balancer", "--usage", "server", "--out-cert", crt,
           "--out-key", key, "--out-chain", chain, *extra)
    return crt, key, chain


def offline_variant(name, edit):
    """A load-balancer certificate signed offline from a copy of the tree
    under an edited catalogue (another CA, fewer names): pkid never saw it."""
    other = os.path.join(WORK, name + "-pki")
    copy_tree(PKI, other)
    cat = open(CATALOG).read()
    edited = edit(cat)
    assert edited != cat
    path = os.path.join(WORK, name + ".yaml")
    with open(path, "w") as f:
        f.write(edited)
    subprocess.run([PKICTL, "issue", "--offline", "--out", other, "--catalog", path, "--service",
                    "load-balancer", "--usage", "server", "--passphrase-file",
                    os.path.join(PKI, "ca-passphrase")], check=True, stdout=subprocess.DEVNULL)
    base = os.path.join(other, "service-certificates/load-balancer/active/lb-current")
    return base + ".crt", base + ".key", base + "-chain.crt"


def expect_refused(case, check, crt, key, chain):
    before_active = snapshot(ACTIVE)
    before_served = served()
    before = metrics()
    put_next(crt, key, chain)
    rc, lines, err = lb("rotate", "--now")
    assert rc == 1, (case, err)
    failed = [e for e in lines if e.get("event") == "lb_validate_failed"]
    assert failed and failed[0]["check"] == check, (case, err)
    assert not [e for e in lines if e.get("event") == "lb_swapped"], (case, err)
    assert snapshot(ACTIVE) == before_active, case
    assert served() == before_served, case
    m = metrics()
    assert m["lb_cert_rotation_success"] == 0, (case, m)
    assert m['lb_cert_rotations_total{result="refused"}'] == \
        before['lb_cert_rotations_total{result="refused"}'] + 1, (case, m)
    print("refused %-12s check=%-8s %s" % (case, check, failed[0]["error"]), flush=True)


def test_refused_key_mismatch():
    a = issue_lb("mismatch-a")
    b = issue_lb("mismatch-b")
    expect_refused("key", "key", a[0], b[1], a[2])


def test_refused_expiring():
    expect_refused("expiring", "lifetime", *issue_lb("short", "--validity", "12h"))


def test_refused_missing_name():
    variant = offline_variant("fewer", lambda c: c.replace(
        "        - api.cybersec-framework.local\n", "", 1))
    expect_refused("names", "names", *variant)


def test_refused_revoked():
    crt, key, chain = issue_lb("revoked")
    online("revoke", "--serial", file_serial(crt), "--reason", "key-compromise")
    expect_refused("revoked", "ocsp", crt, key, chain)


def test_refused_other_ca():
    variant = offline_variant("otherca", lambda c: re.sub(
        r"(- name: load-balancer\n\s+ca: )load-balancer-ca", r"\1infrastructure-ca", c))
    expect_refused("other-ca", "issuer", *variant)


def test_rollback_when_probe_fails():
    # A good next certificate again.
    for n in os.listdir(ROTATION):
        os.unlink(os.path.join(ROTATION, n))
    cur = active_serial()
    before_active = snapshot(ACTIVE)
    before = metrics()
    # The swap commits for the second frontend's crt file, which the probed
    # bind does not use: the probe keeps seeing the old certificate. The
    # staple on file is garbage, which the rollback hands back as it found
    # it: haproxy 2.6 takes it in the transaction and the rollback stands.
    other_before = served(PORT2)
    staple = open(BUNDLE + ".ocsp", "rb").read()
    with open(BUNDLE + ".ocsp", "wb") as f:
        f.write(b"not an OCSP response")
    try:
        rc, lines, err = lb("rotate", "--now", cert=OTHER_BUNDLE)
    finally:
        with open(BUNDLE + ".ocsp", "wb") as f:
            f.write(staple)
    assert rc == 1, err
    events = [e["event"] for e in lines]
    assert "lb_swapped" in events and "lb_probe_failed" in events, events
    rolled = [e for e in lines if e.get("event") == "lb_rolled_back"]
    assert rolled and rolled[0]["probe_sees_previous"] == "true", err
    assert served()[0] == cur
    # The second frontend had the new one for a moment and has the previous
    # one back (the rollback went through the same API).
    assert served(PORT2)[0] == cur, (served(PORT2), other_before)
    assert snapshot(ACTIVE) == before_active
    m = metrics()
    assert m["lb_cert_rotation_success"] == 0, m
    assert m['lb_cert_rotations_total{result="rolled_back"}'] == \
        before['lb_cert_rotations_total{result="rolled_back"}'] + 1, m


def test_promotion_fails_rolled_back():
    # active/ cannot be written after a good swap and probe (the .ocsp
    # path is a directory here): haproxy goes back to the previous
    # certificate, so that it never serves what a restart would not, and
    # active/ stays as it was.
    cur = active_serial()
    staple = open(BUNDLE + ".ocsp", "rb").read()
    os.unlink(BUNDLE + ".ocsp")
    os.mkdir(BUNDLE + ".ocsp")
    before_active = {n: open(os.path.join(ACTIVE, n), "rb").read() for n in os.listdir(ACTIVE)
                     if os.path.isfile(os.path.join(ACTIVE, n))}
    try:
        rc, lines, err = lb("rotate", "--now")
    finally:
        os.rmdir(BUNDLE + ".ocsp")
        with open(BUNDLE + ".ocsp", "wb") as f:
            f.write(staple)
    assert rc == 1, err
    failed = [e for e in lines if e.get("event") == "lb_promote_failed"]
    assert failed and failed[0]["rolled_back"] == "true", err
    assert served()[0] == cur
    after = snapshot(ACTIVE)
    after.pop("lb-current.pem.ocsp")
    assert after == before_active, [n for n in after if after[n] != before_active.get(n)]


def ocsp_of(crt_path, chain_path):
    """pkid's DER OCSP response about a certificate, by GET (RFC 6960 A.1)."""
    import base64
    import urllib.parse
    import urllib.request
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp
    cert = x509.load_pem_x509_certificate(open(crt_path, "rb").read())
    chain = open(chain_path, "rb").read()
    end = b"-----END CERTIFICATE-----"
    issuer = x509.load_pem_x509_certificate(chain[:chain.index(end) + len(end)])
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    der = req.public_bytes(serialization_der())
    url = "http://127.0.0.1:%d/%s" % (SERVER.ocsp, urllib.parse.quote(
        base64.b64encode(der).decode(), safe=""))
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def serialization_der():
    from cryptography.hazmat.primitives import serialization
    return serialization.Encoding.DER


def test_refused_hostile_ocsp():
    # A responder that is not pkid's, or answers wrongly: each refused at
    # the OCSP check, before the swap.
    import http.server
    nxt = (os.path.join(ROTATION, "lb-next.crt"), os.path.join(ROTATION, "lb-next.key"),
           os.path.join(ROTATION, "lb-next-chain.crt"))
    saved = [open(p, "rb").read() for p in nxt]
    genuine = ocsp_of(nxt[0], nxt[2])
    other = ocsp_of(os.path.join(ACTIVE, "lb-current.crt"), os.path.join(ACTIVE, "lb-current-chain.crt"))
    flipped = genuine[:-1] + bytes([genuine[-1] ^ 1])
    body = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(body["v"])))
            self.end_headers()
            self.wfile.write(body["v"])

        def log_message(self, *args):
            pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = "http://127.0.0.1:%d/" % httpd.server_address[1]
        for case, v in (("garbage", b"not an OCSP response"),
                        ("tryLater", bytes([0x30, 0x03, 0x0a, 0x01, 0x03])),
                        ("another serial", other), ("bad signature", flipped)):
            body["v"] = v
            before_active = snapshot(ACTIVE)
            rc, lines, err = lb("rotate", "--now", ocsp=url)
            failed = [e for e in lines if e.get("event") == "lb_validate_failed"]
            assert rc == 1 and failed and failed[0]["check"] == "ocsp", (case, err)
            assert snapshot(ACTIVE) == before_active, case
            print("refused %-14s %s" % (case, failed[0]["error"]), flush=True)
        # The genuine response, served by the same stand-in, passes.
        body["v"] = genuine
        rc, lines, err = lb("rotate", "--now", ocsp=url)
        assert rc == 0, err
        rotation_timing(lines, "runtime_api")
        assert served()[0] == "%x" % x509.load_pem_x509_certificate(saved[0]).serial_number
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


class NewConnections(threading.Thread):
    """New TLS connections, one request each, back to back, until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.done = port, threading.Event()
        self.ok, self.failures = 0, []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.load_verify_locations(ROOT)
        self.ctx.check_hostname = True

    def run(self):
        while not self.done.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
                    with self.ctx.wrap_socket(raw, server_hostname=SNI) as s:
                        s.sendall(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
                        data = b""
                        while True:
                            chunk = s.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                if data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok"):
                    self.ok += 1
                else:
                    self.failures.append("%.3f bad response %r" % (time.time(), data[:80]))
            except (ssl.SSLError, OSError) as e:
                self.failures.append("%.3f %s" % (time.time(), e))


class KeepAlive(threading.Thread):
    """One keep-alive connection, a request every 100 ms. With |reconnect|
    (the reload path), the server's graceful end of the connection is
    followed by a new one for the next request: a response carrying
    `Connection: close`, or an orderly close (EOF) already there right
    after a complete response. Those are counted in |closed|. Nothing is
    ever sent again: a request that gets no complete response is a
    failure, on either path. haproxy's old worker
    of a graceful reload, with `option idle-close-on-response`, serves the
    next request of an idle connection and closes it after that response
    (haproxy cannot hand an established connection to the new worker)."""

    def __init__(self, port, reconnect=False):
        super().__init__(daemon=True)
        self.port, self.reconnect, self.done = port, reconnect, threading.Event()
        self.ok, self.failures, self.closed, self.eof_closed = 0, [], 0, 0
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.load_verify_locations(ROOT)
        self.sock = self.connect()
        self.first = self.sock

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return self.ctx.wrap_socket(raw, server_hostname=SNI)

    def closed_by_server(self):
        """Whether the server ended the connection, in order, right after
        the complete response just read: EOF (or a TLS close_notify)
        already waiting, looked for at once, not after the pause. A close
        during the pause is not graceful: the next request, sent into it,
        fails (haproxy without idle-close-on-response closes idle
        connections so at a reload). Any byte waiting is a failure
        (nothing was asked)."""
        if not self.sock.pending() and not select.select([self.sock], [], [], 0)[0]:
            return False
        self.sock.settimeout(0.05)
        try:
            data = self.sock.recv(4096)
        except (ssl.SSLWantReadError, socket.timeout):
            return False  # a TLS record that carried no application data
        finally:
            self.sock.settimeout(5)
        if data:
            raise ConnectionError("unsolicited bytes from haproxy: %r" % data[:80])
        return True

    def one(self):
        """One request on the connection: the status line of its complete
        response, and whether haproxy asked to close the connection."""
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed by haproxy before a complete response")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        head = head.decode("latin-1")
        m = re.search(r"(?im)^content-length:\s*(\d+)\s*$", head)
        if not m:
            raise ConnectionError("response without Content-Length: %r" % head[:200])
        while len(body) < int(m.group(1)):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed by haproxy before a complete response")
            body += chunk
        if body != b"ok":
            raise ConnectionError("unexpected body %r" % body[:80])
        close = re.search(r"(?im)^connection:.*\bclose\b", head) is not None
        return head.split("\r\n", 1)[0], close

    def reopen(self):
        self.sock.close()
        self.sock = self.connect()

    def run(self):
        while not self.done.is_set():
            try:
                status, close = self.one()
                if " 200 " in status:
                    self.ok += 1
                else:
                    self.failures.append("status " + status)
                if close or (self.reconnect and self.closed_by_server()):
                    if not self.reconnect:
                        self.failures.append("%.3f Connection: close" % time.time())
                        return
                    self.closed += 1
                    self.eof_closed += not close
                    self.reopen()
            except (ssl.SSLError, OSError) as e:
                self.failures.append("%.3f %s" % (time.time(), e))
                if not self.reconnect:
                    return
                try:
                    self.reopen()
                except (ssl.SSLError, OSError) as e2:
                    self.failures.append("%.3f reconnect: %s" % (time.time(), e2))
                    return
            time.sleep(0.1)


def zero_drop(path, rotations, port, extra, socket_path):
    clients = [NewConnections(port) for _ in range(2)]
    kept = KeepAlive(port, reconnect=socket_path is None)
    for t in clients + [kept]:
        t.start()
    time.sleep(0.3)
    seen, staples = [], []
    failures = []
    try:
        for i in range(rotations):
            # Both kinds of client are served between any two rotations.
            served_before = (kept.ok, sum(c.ok for c in clients))
            wait_for("clients served before rotation %d" % i, lambda: (
                kept.ok > served_before[0] and sum(c.ok for c in clients) > served_before[1]
            ) or kept.failures or not kept.is_alive(), 10)
            rc, lines, err = lb("rotate", "--now", *extra, socket_path=socket_path,
                                probe="127.0.0.1:%d" % port)
            if rc != 0:
                failures.append("rotation %d: %s" % (i, err[-600:]))
                break
            rotation_timing(lines, path)
            serial = served(port)[0]
            if serial != active_serial() or serial in seen:
                failures.append("rotation %d: served %s, active %s" % (i, serial, active_serial()))
            seen.append(serial)
            staple = stapled_status(port)
            if staple != "good":
                failures.append("rotation %d: stapled OCSP %s" % (i, staple))
            staples.append(staple)
        time.sleep(0.3)
    finally:
        for t in clients + [kept]:
            t.done.set()
        for t in clients + [kept]:
            t.join(timeout=15)
    new_ok = sum(c.ok for c in clients)
    new_failed = [f for c in clients for f in c.failures]
    print("%s: %d rotations, %d distinct serials seen by the probe; new connections: %d ok, "
          "%d failed; keep-alive connection: %d requests ok, %d failed, closed gracefully "
          "by haproxy and reopened %d times (%d after Connection: close, %d by an orderly "
          "close after a complete response), no request sent again; stapled OCSP good "
          "after %d of %d rotations" % (
              path, len(seen), len(set(seen)), new_ok, len(new_failed), kept.ok,
              len(kept.failures), kept.closed, kept.closed - kept.eof_closed, kept.eof_closed,
              staples.count("good"), len(seen)),
          flush=True)
    kept.sock.close()
    assert not failures, failures
    assert len(set(seen)) == rotations, seen
    assert not new_failed, new_failed[:5]
    assert not kept.failures, kept.failures[:5]
    assert new_ok >= rotations and kept.ok >= rotations, (new_ok, kept.ok)
    if socket_path is not None:
        # The runtime API keeps every connection: the same socket throughout.
        assert kept.closed == 0 and kept.sock is kept.first
    return seen


def test_zero_drop_runtime_api():
    before = metrics()['lb_cert_rotations_total{result="ok"}']
    zero_drop("runtime_api", ROTATIONS, PORT, [], SOCK)
    assert metrics()['lb_cert_rotations_total{result="ok"}'] == before + ROTATIONS
    assert metrics()["lb_cert_rotation_success"] == 1
    # Retention: --backups 3.
    assert len([n for n in os.listdir(BACKUP) if n.endswith(".key")]) == 3, os.listdir(BACKUP)
    assert stapled_status() == "good"


def test_staple_revoked():
    assert stapled_status() == "good"
    online("revoke", "--serial", active_serial(), "--reason", "superseded")
    rc, lines, err = lb("staple", check=True)
    status = stapled_status()
    print("after revoking the serving certificate and lb staple: %s" % status, flush=True)
    assert status == "revoked", status


def test_watch():
    # The daemon, started with --now and a revoked lb-next: the rotation is
    # refused, that lb-next set aside and a new one made through pkid; the
    # serving certificate is stapled (good again after the rotation above);
    # SIGTERM stops it.
    for n in os.listdir(ROTATION):
        os.unlink(os.path.join(ROTATION, n))
    revoked = os.path.join(WORK, "revoked")
    put_next(revoked + ".crt", revoked + ".key", revoked + "-chain.crt")
    serial = active_serial()
    log = os.path.join(WORK, "watch.log")
    args = [PKICTL, "lb", "watch", "--pki", PKI, "--as", "pki-agent",
            "--server", "127.0.0.1:%d" % SERVER.grpc,
            "--ocsp-url", "http://127.0.0.1:%d/" % SERVER.ocsp,
            "--probe", "127.0.0.1:%d" % PORT, "--probe-name", SNI, "--metrics-file", METRICS,
            "--haproxy-socket", SOCK, "--haproxy-cert", BUNDLE, "--check-interval-ms", "200",
            "--now"]
    proc = spawn(PROCS, args, log)
    wait_for("lb watch to make lb-next and staple", lambda: os.path.exists(
        os.path.join(ROTATION, "lb-next.crt")) and "lb_ocsp_stapled" in open(log).read(), 20)
    proc.terminate()
    assert proc.wait(timeout=15) == 0, open(log).read()
    text = open(log).read()
    assert "lb_watch_stop" in text and text.count("lb_rotation_start") == 1, text
    assert '"check":"ocsp"' in text and "lb_next_set_aside" in text, text
    assert file_serial(os.path.join(ROTATION, "lb-next.refused.crt")) == file_serial(
        revoked + ".crt")
    assert file_serial(os.path.join(ROTATION, "lb-next.crt")) != file_serial(revoked + ".crt")
    assert active_serial() == serial and served()[0] == serial
    assert 'cert_expiry_timestamp{cert_name="lb-next"}' in metrics()


def test_haproxy_killed_restarted():
    serial = active_serial()
    STATE["haproxy"].send_signal(signal.SIGKILL)
    STATE["haproxy"].wait()
    os.unlink(SOCK)
    STATE["haproxy"] = start_haproxy()
    assert served()[0] == serial, (served(), serial)
    # The .ocsp file beside the bundle is stapled at start.
    assert stapled_status() == "revoked"
    # And rotation works on the new process (the revoked one is replaced).
    rc, lines, err = lb("rotate", "--now")
    assert rc == 0, err
    rotation_timing(lines, "runtime_api")
    assert served()[0] == active_serial() != serial
    assert stapled_status() == "good"


def lb_args(command, *extra):
    return [PKICTL, "lb", command, "--pki", PKI, "--as", "pki-agent",
            "--server", "127.0.0.1:%d" % SERVER.grpc,
            "--ocsp-url", "http://127.0.0.1:%d/" % SERVER.ocsp,
            "--probe", "127.0.0.1:%d" % PORT, "--probe-name", SNI, "--metrics-file", METRICS,
            "--backups", "3", "--timeout-ms", "5000", "--haproxy-socket", SOCK,
            "--haproxy-cert", BUNDLE] + list(extra)


def test_killed_mid_rotation():
    # haproxy killed (-9) while a rotation runs, at a different moment each
    # time: whatever step it hit, the rotation either completed or failed,
    # and haproxy started again serves what active/ holds.
    outcomes = []
    for delay in (0.0, 0.02, 0.04, 0.06, 0.08, 0.12):
        rot = subprocess.Popen(lb_args("rotate", "--now"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        PROCS.append(rot)
        time.sleep(delay)
        STATE["haproxy"].send_signal(signal.SIGKILL)
        STATE["haproxy"].wait()
        err = rot.communicate(timeout=60)[1]
        with open(LB_LOG, "a") as f:
            f.write(err)
        result = re.findall(r'"event":"lb_rotation_failed","result":"(\w+)"', err)
        outcomes.append("ok" if rot.returncode == 0 else (result or ["?"])[0])
        os.unlink(SOCK)
        STATE["haproxy"] = start_haproxy()
        assert served()[0] == active_serial(), (delay, outcomes, err[-800:])
    print("haproxy killed mid-rotation: outcomes %s; each restart served active/" % outcomes,
          flush=True)
    # And the next rotation goes through.
    rc, lines, err = lb("rotate", "--now")
    assert rc == 0, err
    assert served()[0] == active_serial()


def test_reload_path():
    # haproxy in master-worker mode, no stats socket: the swap is the files
    # and SIGUSR2 to the master.
    cfg = os.path.join(WORK, "haproxy-w.cfg")
    haproxy_config(cfg, "# no stats socket", PORT_W)
    master = spawn(PROCS, [HAPROXY, "-W", "-db", "-f", cfg], os.path.join(WORK, "haproxy-w.log"))
    STATE["master"] = master

    def up():
        if master.poll() is not None:
            raise AssertionError("haproxy -W exited:\n" + open(os.path.join(WORK, "haproxy-w.log")).read())
        try:
            return served(PORT_W)[0] == active_serial()
        except OSError:
            return False
    wait_for("haproxy -W to serve", up, 15)
    # A reload that does not happen (the command does nothing): the probe
    # keeps seeing the old certificate, so the files go back and the
    # reload runs again; active/ is as it was.
    before_active, cur = snapshot(ACTIVE), active_serial()
    rc, lines, err = lb("rotate", "--now", "--reload-command", "true", "--reload-wait-ms", "500",
                        socket_path=None, probe="127.0.0.1:%d" % PORT_W)
    assert rc == 1, err
    rolled = [e for e in lines if e.get("event") == "lb_rolled_back"]
    assert rolled and rolled[0]["probe_sees_previous"] == "true", err
    after = snapshot(ACTIVE)
    assert after == before_active, [n for n in set(after) | set(before_active)
                                     if after.get(n) != before_active.get(n)]
    assert served(PORT_W)[0] == cur
    zero_drop("reload", RELOAD_ROTATIONS, PORT_W, ["--reload-pid", str(master.pid)], None)
    assert master.poll() is None


def test_prometheus():
    # The rules load, and the metrics file pkictl wrote is valid exposition
    # text with the series the rules use.
    out = subprocess.run(["promtool", "check", "rules", LB_RULES], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(["promtool", "check", "metrics"], input=open(METRICS).read(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    m = metrics()
    for name in ("lb_cert_rotation_success", 'cert_expiry_timestamp{cert_name="lb-current"}',
                 "lb_cert_last_rotation_timestamp_seconds"):
        assert name in m, (name, m)
    print("metrics: " + ", ".join("%s %g" % (k, v) for k, v in sorted(m.items())
                                  if "rotations_total" in k), flush=True)


def test_timings():
    for path in ("runtime_api", "reload"):
        rows = [t for t in TIMINGS if t[0] == path]
        if not rows:
            continue
        parts = []
        for i, name in ((1, "validate"), (2, "swap"), (3, "probe")):
            vals = [r[i] for r in rows]
            parts.append("%s median %d ms max %d ms" % (name, statistics.median(vals), max(vals)))
        print("%s: %d rotations: %s" % (path, len(rows), ", ".join(parts)), flush=True)


def test_clean_exit():
    assert SERVER.stop() == 0, SERVER.log()
    for path in (LB_LOG, SERVER.log_path, os.path.join(WORK, "watch.log")):
        text = open(path).read()
        for word in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert word not in text, "%s in %s" % (word, path)


try:
    run("setup_haproxy", test_setup_haproxy)
    run("sample_config", test_sample_config)
    run("not_due", test_not_due)
    run("repair_after_crash", test_repair_after_crash)
    run("rotate_now", test_rotate_now)
    run("refused_key_mismatch", test_refused_key_mismatch)
    run("refused_expiring", test_refused_expiring)
    run("refused_missing_name", test_refused_missing_name)
    run("refused_revoked", test_refused_revoked)
    run("refused_other_ca", test_refused_other_ca)
    run("rollback_when_probe_fails", test_rollback_when_probe_fails)
    run("promotion_fails_rolled_back", test_promotion_fails_rolled_back)
    run("refused_hostile_ocsp", test_refused_hostile_ocsp)
    run("zero_drop_runtime_api", test_zero_drop_runtime_api)
    run("staple_revoked", test_staple_revoked)
    run("haproxy_killed_restarted", test_haproxy_killed_restarted)
    run("killed_mid_rotation", test_killed_mid_rotation)
    run("watch", test_watch)
    run("reload_path", test_reload_path)
    run("prometheus", test_prometheus)
    run("timings", test_timings)
    run("clean_exit", test_clean_exit)
finally:
    for p in reversed(PROCS):
        stop(p)
    SERVER.stop()
    shutil.rmtree(SOCK_DIR, ignore_errors=True)
    out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if out:
        for path in (LB_LOG, HAPROXY_LOG, SERVER.log_path):
            if os.path.exists(path):
                subprocess.run(["cp", path, out])
finish()
