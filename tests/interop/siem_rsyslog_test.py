#!/usr/bin/python3
"""siem_rsyslog_test: pkid's SIEM feed (server/audit/siem.h) received by a
real collector, Debian's rsyslogd with imtcp and the gtls driver (TLS
required, pkid's client certificate checked by name).

  errors_at_start      a bad address, a missing file, a key that does not
                       match: pkid stops at once, saying which
  events_arrive        issued and revoked certificates arrive as RFC 5424
                       messages with the right PRI, MSGID, SD and JSON
  kill9                pkid killed with SIGKILL under load, restarted: the
                       feed resumes from its cursor
  collector_restart    rsyslog stopped (SIGTERM) while pkid issues, then
                       started again: pkid reconnects and sends the rest
  clean_restart        after a clean stop (drain), a restart (from the config
                       file's siem: section) sends nothing twice
  every_seq_once       at the end, against the journal read independently
                       (journaltest): every seq received, in order within
                       a connection (a seq follows the one before, or goes
                       back to a resend), duplicates counted and only after
                       a crash or a collector restart
  foreign_collector    a collector whose certificate does not chain to the
                       configured CA gets nothing, and pkid says why

Usage: siem_rsyslog_test.py PKICTL PKID PROTO
"""
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from journaltest import read_journal  # noqa: E402
from pkidtest import (Pkid, channel, demo_tree, free_port, load_proto, make_csr,  # noqa: E402
                      method, wait_for)
from rsyslogtest import Rsyslog, parse_message  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
JOURNAL = os.path.join(TMP, "journal")
EXT = os.path.join(PKI, "service-certificates", "external")
ROOT = os.path.join(PKI, "root-ca", "certs", "root-ca.crt")
FEED_NAME = "siem-feed.cybersec-framework.local"
CSR = make_csr("siem")


def cert_with_chain(tree, name, usage, out):
    """The service's certificate and its chain in one PEM file."""
    base = os.path.join(tree, "service-certificates", "external", name, "%s-%s" % (name, usage))
    with open(out, "wb") as f:
        f.write(open(base + ".crt", "rb").read() + open(base + "-chain.crt", "rb").read())
    return out, base + ".key"


FEED_CERT, FEED_KEY = cert_with_chain(PKI, "siem-feed", "client", os.path.join(TMP, "feed.pem"))
COLL_CERT, COLL_KEY = cert_with_chain(PKI, "siem-collector", "server",
                                      os.path.join(TMP, "collector.pem"))
PORT = free_port()
COLLECTOR = Rsyslog(os.path.join(TMP, "rsyslog"), PORT, ROOT, COLL_CERT, COLL_KEY,
                    peer=FEED_NAME)


def siem_args(port=PORT, journal=JOURNAL):
    return ["--journal", journal, "--siem", "127.0.0.1:%d" % port, "--siem-name", "localhost",
            "--siem-ca", ROOT, "--siem-cert", FEED_CERT, "--siem-key", FEED_KEY,
            "--siem-hostname", "ca-test"]


SERVER = None
# What each phase began at: index into the received messages, and whether
# duplicates may follow (after a crash or a collector restart).
PHASES = []


def start_pkid(log_name):
    global SERVER
    SERVER = Pkid(PKID, PKI, TMP, args=siem_args(), log_name=log_name).start(timeout=60)
    return SERVER


def metrics(server):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % server.admin, timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(pkid_siem_\w+) (\S+)$", text, re.M)}


def received():
    out = []
    for raw in COLLECTOR.messages():
        m = parse_message(raw)
        assert m is not None, "not a pkid message: %r" % raw[:200]
        out.append(m)
    return out


def wait_delivered(server):
    """Until pkid has confirmed every durable record (lag 0) and rsyslog
    has written them: seqs 1..max all there, and no more coming."""
    wait_for("the SIEM feed to confirm everything",
             lambda: metrics(server).get("pkid_siem_lag_records") == 0, 60, step=0.2)
    last = [None]

    def settled():
        seqs = {m["seq"] for m in received()}
        now = (len(seqs), max(seqs, default=0))
        done = now == last[0] and seqs == set(range(1, now[1] + 1))
        last[0] = now
        return done
    wait_for("the collector to have written them", settled, 30, step=0.5)


def issue(ch, n, service=""):
    call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
    return [call(pki_pb2.IssueRequest(csr=CSR, usage=pki_pb2.USAGE_CLIENT, service=service),
                 timeout=15).serial for _ in range(n)]


def revoke(ch, serial):
    method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)(
        pki_pb2.RevokeRequest(serial=serial,
                              reason=pki_pb2.REVOCATION_REASON_AFFILIATION_CHANGED), timeout=15)


def run_pkid_expecting_failure(args, words):
    log_path = os.path.join(TMP, "bad-start.log")
    with open(log_path, "w") as log:
        import subprocess
        proc = subprocess.Popen([PKID, "--pki", PKI, "--listen", "127.0.0.1:0", "--ocsp-listen",
                                 "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"] + args,
                                stderr=log)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("pkid started with %s" % args)
    text = open(log_path).read()
    assert rc != 0 and words in text, (rc, words, text)


def test_errors_at_start():
    good = siem_args()
    bad_addr = list(good)
    bad_addr[bad_addr.index("--siem") + 1] = "127.0.0.1:notaport"
    run_pkid_expecting_failure(bad_addr, "127.0.0.1:notaport")
    missing = list(good)
    missing[missing.index("--siem-ca") + 1] = os.path.join(TMP, "nothing.crt")
    run_pkid_expecting_failure(missing, "nothing.crt")
    mismatch = list(good)
    mismatch[mismatch.index("--siem-key") + 1] = COLL_KEY
    run_pkid_expecting_failure(mismatch, "does not match")
    run_pkid_expecting_failure(["--siem-ca", ROOT], "need --siem")


def test_events_arrive():
    COLLECTOR.start()
    PHASES.append((0, False))
    server = start_pkid("pkid1.log")
    with channel(server, PKI) as ch:
        serials = issue(ch, 4) + issue(ch, 2, service="vault")
        for s in serials[:2]:
            revoke(ch, s)
    wait_delivered(server)
    got = received()
    by_serial = {}
    for m in got:
        j = m["json"]
        assert m["app"] == "pkid" and m["procid"] == str(server.proc.pid), m
        assert m["hostname"] == "ca-test" and m["node"] == 1, m
        assert j["seq"] == m["seq"] and j["time"] == m["timestamp"], m
        assert m["msgid"] == j["kind"], m
        # authpriv (10) * 8 + notice (5) or warning (4).
        assert m["pri"] == (85 if j["outcome"] == "ok" else 84), m
        by_serial.setdefault(j.get("serial"), []).append(j["kind"])
    for s in serials[:2]:
        assert by_serial.get(s) == ["issue", "revoke"], (s, by_serial.get(s))
    for s in serials[2:]:
        assert by_serial.get(s) == ["issue"], (s, by_serial.get(s))
    assert any(m["json"]["kind"] == "issue" and m["json"].get("service") == "vault"
               for m in got)
    wait_for("pkid_siem_connected 1", lambda: metrics(server).get("pkid_siem_connected") == 1,
             10)
    assert metrics(server)["pkid_siem_events_sent_total"] >= len(got)
    log = server.log()
    assert '"event":"siem_connected"' in log and "TLSv1" in log, log


def load(server, stop, counts):
    """Issues in streams of 8 until pkid is gone or |stop| is set."""
    try:
        with channel(server, PKI) as ch:
            call = method(ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                          streaming=True)
            while not stop.is_set():
                reqs = [pki_pb2.IssueRequest(csr=CSR, usage=pki_pb2.USAGE_CLIENT, request_id=i)
                        for i in range(8)]
                for r in call(iter(reqs), timeout=10):
                    counts.append(r.status_code)
    except grpc.RpcError:
        return


def test_kill9():
    server = SERVER
    stop, counts = threading.Event(), []
    threads = [threading.Thread(target=load, args=(server, stop, counts)) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for("load", lambda: len(counts) >= 40, 30)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a client hung"
    PHASES.append((len(received()), True))
    server = start_pkid("pkid2.log")
    assert '"event":"siem_cursor"' in server.log(), server.log()
    with channel(server, PKI) as ch:
        issue(ch, 3)
    wait_delivered(server)


def test_collector_restart():
    server = SERVER
    assert COLLECTOR.stop() == 0
    wait_for("pkid to see the collector gone",
             lambda: metrics(server).get("pkid_siem_connected") == 0, 20, step=0.1)
    with channel(server, PKI) as ch:
        issue(ch, 5)  # the collector's outage does not stop issuance
    wait_for("the lag to show", lambda: metrics(server).get("pkid_siem_lag_records", 0) > 0, 10)
    PHASES.append((len(received()), True))
    COLLECTOR.start()
    wait_delivered(server)
    assert '"event":"siem_disconnected"' in server.log()


def test_clean_restart():
    global SERVER
    assert SERVER.stop() == 0
    PHASES.append((len(received()), False))
    # This time from the config file's siem: section (server/config.h).
    conf = os.path.join(TMP, "pkid.yaml")
    with open(conf, "w") as f:
        f.write("journal: %s\nsiem:\n  collector: 127.0.0.1:%d\n  ca: %s\n  name: localhost\n"
                "  cert: %s\n  key: %s\n  hostname: ca-test\n" % (JOURNAL, PORT, ROOT,
                                                                  FEED_CERT, FEED_KEY))
    server = SERVER = Pkid(PKID, PKI, TMP, args=["--config", conf],
                           log_name="pkid3.log").start(timeout=60)
    assert '"event":"siem_connected"' in wait_for(
        "siem_connected", lambda: "siem_connected" in server.log() and server.log(), 20)
    with channel(server, PKI) as ch:
        issue(ch, 2)
    wait_delivered(server)
    assert server.stop() == 0
    SERVER = None


def test_every_seq_once():
    records = read_journal(JOURNAL)
    kinds = {1: "serial_block", 2: "issue", 3: "revoke"}
    got = received()
    seqs = [m["seq"] for m in got]
    assert set(seqs) == set(range(1, len(records) + 1)), (
        "missing %s" % sorted(set(range(1, len(records) + 1)) - set(seqs))[:10])
    for m in got:
        rtype = records[m["seq"] - 1][0]
        assert kinds.get(rtype, m["msgid"]) == m["msgid"], (m["seq"], rtype, m["msgid"])
    # In order: each message follows the one before, or goes back (a new
    # connection resending from the cursor); never a gap.
    resends = 0
    for i in range(1, len(seqs)):
        assert seqs[i] <= seqs[i - 1] + 1, "gap after seq %d: %d" % (seqs[i - 1], seqs[i])
        resends += seqs[i] <= seqs[i - 1]
    # Duplicates, per phase: only a crash or a collector restart may cause them.
    bounds = PHASES + [(len(got), False)]
    seen, total = set(), 0
    for (start, allowed), (end, _) in zip(bounds, bounds[1:]):
        dups = 0
        for m in got[start:end]:
            dups += m["seq"] in seen
            seen.add(m["seq"])
        total += dups
        print("phase at message %d (%s): %d messages, %d duplicates" % (
            start, "after a crash or collector restart" if allowed else "clean",
            end - start, dups))
        assert allowed or dups == 0, "duplicates in a clean phase"
    print("journal records %d, messages received %d, duplicates %d, resends %d" % (
        len(records), len(got), total, resends))


def test_foreign_collector():
    other = demo_tree(PKICTL, os.path.join(TMP, "other"))
    cert, key = cert_with_chain(other, "siem-collector", "server",
                                os.path.join(TMP, "other-collector.pem"))
    port = free_port()
    foreign = Rsyslog(os.path.join(TMP, "rsyslog-foreign"), port,
                      os.path.join(other, "root-ca", "certs", "root-ca.crt"), cert, key)
    journal = os.path.join(TMP, "journal-foreign")
    shutil.rmtree(journal, ignore_errors=True)
    foreign.start()
    server = Pkid(PKID, PKI, TMP, args=siem_args(port, journal), log_name="pkid-foreign.log")
    try:
        server.start(timeout=60)
        wait_for("pkid to refuse the collector",
                 lambda: '"event":"siem_unavailable"' in server.log(), 20, step=0.1)
        line = [l for l in server.log().splitlines() if "siem_unavailable" in l][0]
        assert "does not verify" in line, line
        assert metrics(server).get("pkid_siem_connected") == 0
        time.sleep(1)
        assert foreign.messages() == [], foreign.messages()[:2]
    finally:
        server.kill()
        foreign.stop()


def cleanup():
    if SERVER is not None:
        SERVER.kill()
    COLLECTOR.kill()


try:
    run("errors_at_start", test_errors_at_start)
    run("events_arrive", test_events_arrive)
    run("kill9", test_kill9)
    run("collector_restart", test_collector_restart)
    run("clean_restart", test_clean_restart)
    run("every_seq_once", test_every_seq_once)
    run("foreign_collector", test_foreign_collector)
finally:
    cleanup()
finish()
