"""rsyslogtest.py: Debian's rsyslogd (deploy/setup.sh installs rsyslog and
rsyslog-gnutls) as a syslog-over-TLS collector (RFC 5425) for tests.

    from rsyslogtest import Rsyslog, parse_message
    collector = Rsyslog(work, port, ca, cert, key, peer).start()
    collector.messages()     # the raw messages received, in order
    collector.stop()         # SIGTERM; rsyslog writes what it has read

It runs as the current user in its own work directory, on 127.0.0.1 only,
with imtcp and the gtls stream driver: TLS required (StreamDriver.Mode 1),
the client's certificate checked against |ca| and, with |peer|, its name
(x509/name, PermittedPeer) or else only its chain (x509/certvalid). Every
message is written raw (%rawmsg%, what followed the octet count) to one
file, one line each (this rsyslog has no property for the client's
port: a test tells connections apart by what the messages say)."""
import os
import re
import subprocess
import time

RSYSLOGD = "/usr/sbin/rsyslogd"

CONF = """\
global(
  workDirectory="{work}"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp"
       streamDriver.name="gtls"
       streamDriver.mode="1"
       streamDriver.authMode="{auth}"
       {peers})
input(type="imtcp" address="127.0.0.1" port="{port}" name="siem")
template(name="raw" type="string" string="%rawmsg%\\n")
action(type="omfile" file="{out}" template="raw")
"""


class Rsyslog:
    """One rsyslogd; its own log (stderr, and its internal messages) in
    WORK/rsyslogd.log."""

    def __init__(self, work, port, ca, cert, key, peer=None):
        self.work, self.port = work, port
        os.makedirs(work, exist_ok=True)
        self.out = os.path.join(work, "received.log")
        self.conf = os.path.join(work, "rsyslog.conf")
        self.pidfile = os.path.join(work, "rsyslogd.pid")
        self.log_path = os.path.join(work, "rsyslogd.log")
        peers = 'permittedPeer=["%s"]' % peer if peer else ""
        with open(self.conf, "w") as f:
            f.write(CONF.format(work=work, ca=ca, cert=cert, key=key, port=port, out=self.out,
                                auth="x509/name" if peer else "x509/certvalid", peers=peers))
        self.proc = None

    def start(self, timeout=15):
        """Starts rsyslogd and waits until it accepts on its port."""
        import socket
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", self.conf, "-i", self.pidfile],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("rsyslogd exited %d:\n%s" % (self.proc.returncode,
                                                                self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("rsyslogd did not listen on %d:\n%s" % (self.port, self.log()))

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, timeout=15):
        """SIGTERM, then the exit status; SIGKILL if it does not stop."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("rsyslogd did not stop on SIGTERM")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def messages(self):
        """Every raw message written so far, in order."""
        try:
            with open(self.out, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        return [line for line in data.split(b"\n") if line]


# <PRI>1 TIMESTAMP HOSTNAME APP PROCID MSGID [SD] MSG (RFC 5424 section 6)
MESSAGE = re.compile(
    rb'^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) \[pkid@32473 seq="(\d+)" node="(\d+)"\] '
    rb'(?:\xef\xbb\xbf)?(\{.*\})$')


def parse_message(raw):
    """A pkid SIEM message as a dict (pri, timestamp, hostname, app,
    procid, msgid, seq, node, json), or None when it is not one."""
    m = MESSAGE.match(raw)
    if m is None:
        return None
    import json
    return {"pri": int(m.group(1)), "timestamp": m.group(2).decode(),
            "hostname": m.group(3).decode(), "app": m.group(4).decode(),
            "procid": m.group(5).decode(), "msgid": m.group(6).decode(),
            "seq": int(m.group(7)), "node": int(m.group(8)),
            "json": json.loads(m.group(9).decode("utf-8"))}
