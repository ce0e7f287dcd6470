#!/usr/bin/python3
"""readiness_test: pkid tells systemd what it does (sd_notify(3)), as
pkid.service's Type=notify relies on.

The test plays systemd's part: it binds a unix datagram socket, starts a
real pkid with NOTIFY_SOCKET naming it, and reads what arrives, with the
sender's credentials (SO_PASSCRED), which is how systemd's NotifyAccess=main
tells pkid's messages from others'.

  ready:         READY=1 comes once, from pkid's pid, when the gRPC, OCSP
                 and admin listeners all accept (a connection to each and
                 GET /healthz, made the moment READY=1 arrives) and the
                 journal is open; STATUS names the gRPC address
  no_ready:      a pkid that cannot start (wrong passphrase) sends nothing
  reload:        SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1
  stopping:      SIGTERM: STOPPING=1 while pkid still drains, then exit 0
  no_socket:     without NOTIFY_SOCKET pkid starts, serves and stops as
                 before, and says nothing about notifying
  socket_gone:   NOTIFY_SOCKET naming nothing: pkid still serves (a
                 notify_failed warning, never fatal)
  credential:    the passphrase as systemd 252 hands a LoadCredential= file
                 to the service (0400, the service's own, in a 0500 folder)

Usage: readiness_test.py PKICTL PKID
"""
import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from pkidtest import demo_tree  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID = (os.path.abspath(p) for p in sys.argv[1:3])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
# sun_path holds 108 bytes; Bazel's TEST_TMPDIR can be longer.
SOCK_DIR = tempfile.mkdtemp(prefix="pkid-notify-", dir="/tmp")


class Notify:
    """The service manager's end: a datagram socket pkid writes to."""

    def __init__(self, name):
        self.path = os.path.join(SOCK_DIR, name)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def recv(self, timeout=20):
        """(fields, sender pid) of the next message, or None by |timeout|."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        return fields, pid

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def start(name, notify_path, args=(), env_extra=None):
    """Starts pkid on kernel-picked loopback ports; returns (proc, log path)."""
    log_path = os.path.join(TMP, name + ".log")
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    if notify_path is not None:
        env["NOTIFY_SOCKET"] = notify_path
    env.update(env_extra or {})
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [PKID, "--pki", PKI, "--listen", "127.0.0.1:0", "--ocsp-listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0"] + list(args), stderr=log, env=env)
    return proc, log_path


def ports(log_path):
    """{"grpc": port, "ocsp": port, "admin": port}, of those logged so far."""
    text = open(log_path).read()
    found = {}
    for k in ("grpc", "ocsp", "admin"):
        m = re.findall(r'"listening","%s":"127\.0\.0\.1:(\d+)"' % k, text)
        if m:
            found[k] = int(m[-1])
    return found


def wait_ports(log_path, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = ports(log_path)
        if len(p) == 3:
            return p
        assert proc.poll() is None, "pkid exited:\n" + open(log_path).read()
        time.sleep(0.05)
    raise AssertionError("pkid did not listen:\n" + open(log_path).read())


def healthz(port):
    """(status, body) of GET /healthz (http.client: no proxy in the way)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def accepts(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        return True


def stop(proc, timeout=20):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def kill(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def started(name):
    """A pkid under a Notify, past its READY=1: (notify, proc, log, ports)."""
    n = Notify(name + ".sock")
    proc, log = start(name, n.path)
    try:
        msg = n.recv()
        assert msg is not None, "no READY=1:\n" + open(log).read()
        assert msg[0].get("READY") == "1", msg
        return n, proc, log, wait_ports(log, proc)
    except BaseException:
        kill(proc)
        n.close()
        raise


def case_ready():
    n = Notify("ready.sock")
    proc, log = start("ready", n.path)
    try:
        msg = n.recv()
        assert msg is not None, "no message:\n" + open(log).read()
        fields, pid = msg
        # The first message is READY=1: nothing before it, and the moment it
        # is here, every listener accepts and the loop answers.
        p = ports(log)
        assert fields.get("READY") == "1", fields
        assert pid == proc.pid, "sent by pid %s, pkid is %d" % (pid, proc.pid)
        assert len(p) == 3, "READY=1 before all three listeners: %s" % p
        assert healthz(p["admin"])[0] == 200
        assert accepts(p["grpc"]) and accepts(p["ocsp"])
        assert '"journal_open"' in open(log).read(), "READY=1 before the journal opened"
        assert fields.get("STATUS", "").startswith("serving on 127.0.0.1:%d," % p["grpc"]), fields
        assert "MAINPID" not in fields, fields  # pkid is the main process itself
        # And READY=1 once: the next message is not another one.
        assert n.recv(timeout=1) is None
    finally:
        kill(proc)
        n.close()


def case_no_ready():
    n = Notify("no_ready.sock")
    bad = os.path.join(TMP, "wrong-passphrase")
    with open(bad, "w") as f:
        f.write("not the passphrase\n")
    os.chmod(bad, 0o600)
    proc, log = start("no_ready", n.path, ["--passphrase-file", bad])
    try:
        rc = proc.wait(timeout=30)
        assert rc != 0, "pkid started with a wrong passphrase"
        assert n.recv(timeout=1) is None, "a pkid that failed to start sent something"
    finally:
        kill(proc)
        n.close()


def case_reload():
    n, proc, log, p = started("reload")
    try:
        before = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        msg = n.recv()
        assert msg is not None and msg[0].get("RELOADING") == "1", msg
        assert msg[1] == proc.pid
        # CLOCK_MONOTONIC in microseconds, as time.monotonic() reads it.
        usec = int(msg[0]["MONOTONIC_USEC"])
        assert before - 1 <= usec / 1e6 <= time.monotonic() + 1, (usec, before)
        msg = n.recv()
        assert msg is not None and msg[0].get("READY") == "1", msg
        assert msg[0].get("STATUS", "").startswith("serving on"), msg
        assert '"reloaded"' in open(log).read()
        assert healthz(p["admin"])[0] == 200
    finally:
        kill(proc)
        n.close()


def case_stopping():
    n, proc, log, p = started("stopping")
    try:
        # A connection that never says a word keeps the drain going (until
        # the handshake timeout), so pkid is still there when STOPPING=1 is.
        idle = socket.create_connection(("127.0.0.1", p["grpc"]), timeout=5)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        msg = n.recv()
        assert msg is not None and msg[0].get("STOPPING") == "1", msg
        assert msg[0].get("STATUS") == "draining (SIGTERM)", msg
        assert msg[1] == proc.pid
        assert proc.poll() is None, "STOPPING=1 came after pkid had exited"
        idle.close()
        assert proc.wait(timeout=20) == 0
        assert n.recv(timeout=0.5) is None, "a message after STOPPING=1"
    finally:
        kill(proc)
        n.close()


def case_no_socket():
    proc, log = start("no_socket", None)
    try:
        p = wait_ports(log, proc)
        assert healthz(p["admin"])[0] == 200
        assert stop(proc) == 0
        text = open(log).read()
        assert "notify" not in text, text
        assert '"stopped"' in text
    finally:
        kill(proc)


def case_socket_gone():
    proc, log = start("socket_gone", os.path.join(SOCK_DIR, "nobody-listens.sock"))
    try:
        p = wait_ports(log, proc)
        assert healthz(p["admin"])[0] == 200
        assert stop(proc) == 0
        assert '"notify_failed"' in open(log).read()
    finally:
        kill(proc)


def case_credential():
    # systemd 252 copies a LoadCredential= file into a ramfs, which has no
    # ACLs, so it chowns the file to the service's user, mode 0400, in a
    # folder of mode 0500 (src/core/execute.c, write_credential).
    creds = os.path.join(TMP, "credentials")
    os.makedirs(creds, exist_ok=True)
    dst = os.path.join(creds, "ca-passphrase")
    shutil.copy(os.path.join(PKI, "ca-passphrase"), dst)
    os.chmod(dst, 0o400)
    os.chmod(creds, 0o500)
    n = Notify("credential.sock")
    proc, log = start("credential", n.path, ["--passphrase-file", dst],
                      env_extra={"CREDENTIALS_DIRECTORY": creds})
    try:
        msg = n.recv()
        assert msg is not None and msg[0].get("READY") == "1", open(log).read()
        secret = open(os.path.join(PKI, "ca-passphrase")).read().strip()
        assert secret not in open(log).read(), "the passphrase is in the log"
        assert stop(proc) == 0
    finally:
        kill(proc)
        n.close()
        os.chmod(creds, 0o700)


try:
    run("ready", case_ready)
    run("no_ready", case_no_ready)
    run("reload", case_reload)
    run("stopping", case_stopping)
    run("no_socket", case_no_socket)
    run("socket_gone", case_socket_gone)
    run("credential", case_credential)
finally:
    shutil.rmtree(SOCK_DIR, ignore_errors=True)
finish()
