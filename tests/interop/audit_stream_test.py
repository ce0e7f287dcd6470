#!/usr/bin/python3
"""audit_stream_test: pki.v1.Pki/StreamAudit, called by Python's grpcio.

pkid on loopback with a demo hierarchy (every catalogue identity has its
client certificate) and small journal segments, so that a stream crosses
and seeks among several. pki-agent issues and revokes; audit-agent (the
catalogue's audit permission) streams the journal's events and checks them
against what was done and against their own JSON; security-agent may too;
pki-agent (admin, not audit) and cissp-training-agent are refused with no
event, a caller without a certificate is unauthenticated, a bad filter is
INVALID_ARGUMENT. With follow, a certificate issued after the stream began
arrives on it; draining pkid ends a following stream with UNAVAILABLE,
and a second pkid with a short max_stream_ms ends one with
DEADLINE_EXCEEDED.

Usage: audit_stream_test.py PKICTL PKID PROTO
"""
import datetime
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from pkidtest import (SERVER_NAME, Pkid, channel, demo_tree, load_proto, make_csr,  # noqa: E402
                      method, service_files)
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
# A token key makes pkid accept connections without a client certificate
# (bootstrap enrollment), so that StreamAudit itself refuses them.
subprocess.run([PKICTL, "token", "create", "--out", PKI, "--service", "vault"], check=True,
               stdout=subprocess.DEVNULL)
# The smallest segments pkid takes: a few hundred certificates fill several.
SERVER = Pkid(PKID, PKI, TMP, args=["--journal-segment-bytes", str(64 << 10)]).start()

DOMAIN = "spiffe://cybersec-framework.local/"
AUDIT = "agents/audit-agent/audit-agent-client"
SECURITY = "agents/security-agent/security-agent-client"
ADMIN = "agents/pki-agent/pki-agent-client"
CISSP = "agents/cissp-training-agent/cissp-agent-client"
PKI_AGENT_ID = DOMAIN + "agents/pki-agent"
DONE = {}  # what test_setup did, for the others


def connect(path=AUDIT, server=None, **kw):
    return channel(server or SERVER, PKI, path=path, **kw)


def audit_call(ch):
    return ch.unary_stream("/pki.v1.Pki/StreamAudit",
                           request_serializer=pki_pb2.StreamAuditRequest.SerializeToString,
                           response_deserializer=pki_pb2.AuditEvent.FromString)


def stream(path=AUDIT, timeout=30, **req):
    """Every event of a stream that ends (follow=False), and its status."""
    events = []
    with connect(path) as ch:
        call = audit_call(ch)(pki_pb2.StreamAuditRequest(**req), timeout=timeout)
        try:
            for ev in call:
                events.append(ev)
        except grpc.RpcError as e:
            return events, e.code(), e.details()
        return events, call.code(), call.details()


def events(**req):
    evs, code, details = stream(**req)
    assert code == grpc.StatusCode.OK, (code, details)
    return evs


def issue(ch, service="", usage=pki_pb2.USAGE_SERVER):
    return method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)(
        pki_pb2.IssueRequest(csr=make_csr(), service=service, usage=usage), timeout=10)


def revoke(ch, serial, reason=pki_pb2.REVOCATION_REASON_SUPERSEDED):
    return method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)(
        pki_pb2.RevokeRequest(serial=serial, reason=reason), timeout=10)


def metric(name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % SERVER.admin, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError("no metric " + name)


def check_json(ev):
    """The json field is pki_audit_json's line and agrees with the fields."""
    j = json.loads(ev.json)
    assert j["seq"] == ev.seq and j["kind"] == ev.kind and j["outcome"] == ev.outcome, (j, ev)
    assert j.get("identity", "") == ev.identity and j.get("service", "") == ev.service, (j, ev)
    assert j.get("serial", "") == ev.serial, (j, ev)
    t = datetime.datetime.strptime(j["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    assert round(t.timestamp() * 1000) == ev.time_ms, (j["time"], ev.time_ms)
    return j


def test_setup():
    """pki-agent issues for itself and, as admin, for vault; revokes two;
    then a few hundred more, so that the journal spans several segments."""
    with connect(ADMIN) as ch:
        own = [issue(ch).serial, issue(ch, usage=pki_pb2.USAGE_CLIENT).serial]
        vault = issue(ch, service="vault").serial
        revoke(ch, own[0])
        revoke(ch, vault, pki_pb2.REVOCATION_REASON_KEY_COMPROMISE)
        # Six streams of a hundred: six commits at least, each of some 100
        # KB, and a segment rolls at the first append after it passed 64 KiB.
        out = []
        for k in range(6):
            reqs = [pki_pb2.IssueRequest(csr=make_csr(), usage=pki_pb2.USAGE_CLIENT,
                                         request_id=i) for i in range(100)]
            out += sorted(method(ch, "IssueStream", pki_pb2.IssueRequest,
                                 pki_pb2.IssueResponse, streaming=True)(iter(reqs), timeout=60),
                          key=lambda r: r.request_id)
    bulk = [r.serial for r in out if r.status_code == 0]
    assert len(bulk) == 600, len(bulk)
    DONE.update(own=own, vault=vault, bulk=bulk)
    segs = [f for f in os.listdir(os.path.join(PKI, "journal")) if f.endswith(".seg")]
    assert len(segs) >= 3, segs


def test_audit_agent_streams_everything():
    evs = events()
    seqs = [e.seq for e in evs]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1, seqs[:5]
    by = {}
    for e in evs:
        check_json(e)
        by.setdefault((e.kind, e.serial), []).append(e)
    own, vault = DONE["own"], DONE["vault"]
    for serial, service in [(own[0], "pki-agent"), (own[1], "pki-agent"), (vault, "vault")]:
        [ev] = by[("issue", serial)]
        assert ev.outcome == "ok" and ev.identity == PKI_AGENT_ID and ev.service == service, ev
    for serial, reason in [(own[0], "superseded"), (vault, "keyCompromise")]:
        [ev] = by[("revoke", serial)]
        assert ev.identity == PKI_AGENT_ID and ev.outcome == "ok", ev
        assert json.loads(ev.json)["reason"] == reason, ev.json
    assert ("issue", own[1]) in by and ("revoke", own[1]) not in by
    # The journal's order is the order things were done.
    assert by[("issue", own[0])][0].seq < by[("issue", vault)][0].seq < \
        by[("revoke", own[0])][0].seq < by[("revoke", vault)][0].seq
    issued = {e.serial for e in evs if e.kind == "issue"}
    assert set(DONE["bulk"]) <= issued, len(set(DONE["bulk"]) - issued)
    # Over several chunks (256 events each at most) and segments.
    assert len(evs) > 600 and "serial_block" in {e.kind for e in evs}
    DONE["all"] = evs
    assert metric("pkid_audit_events_sent_total") >= len(evs)
    assert metric("pkid_audit_streams_total") >= 1


def test_filters():
    evs = DONE["all"]
    vault = events(service="vault")
    assert vault and all(e.service == "vault" for e in vault)
    assert [e.seq for e in vault] == [e.seq for e in evs if e.service == "vault"]
    mine = events(identity=PKI_AGENT_ID)
    assert [e.seq for e in mine] == [e.seq for e in evs if e.identity == PKI_AGENT_ID]
    assert not events(identity=DOMAIN + "agents/nobody")
    # A serial in upper case, as openssl prints it: its issuance and revocation.
    one = events(serial=DONE["vault"].upper())
    assert [(e.kind, e.serial) for e in one] == [("issue", DONE["vault"]),
                                                  ("revoke", DONE["vault"])], one
    revokes = events(kind="revoke")
    assert [e.serial for e in revokes] == [DONE["own"][0], DONE["vault"]]
    # Filters combine; vault's certificates from the demo ceremony (imported
    # at start) are issuances too.
    both = events(kind="issue", service="vault")
    assert [e.seq for e in both] == [e.seq for e in evs
                                     if e.kind == "issue" and e.service == "vault"]
    assert DONE["vault"] in [e.serial for e in both]
    # from_seq: the same events from there on, wherever it falls among the
    # segments (found from their headers).
    for start in (2, len(evs) // 3, len(evs) // 2, evs[-1].seq):
        got = [e.seq for e in events(from_seq=start)]
        want = [e.seq for e in evs if e.seq >= start]
        # Records journaled since (a CRL) may follow.
        assert got[:len(want)] == want, (start, got[:3], want[:3], len(got), len(want))
    assert not events(from_seq=evs[-1].seq + 1000)


def test_follow_receives_new_events():
    q = queue.Queue()
    with connect() as ch:
        call = audit_call(ch)(pki_pb2.StreamAuditRequest(follow=True, kind="issue",
                                                         service="pki-agent"), timeout=60)

        def read():
            try:
                for ev in call:
                    q.put(ev)
            except grpc.RpcError as e:
                q.put(e)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            # Caught up: the last issuance so far has come.
            last = [e for e in DONE["all"]
                    if e.kind == "issue" and e.service == "pki-agent"][-1].serial
            deadline = time.time() + 30
            while True:
                ev = q.get(timeout=max(0.1, deadline - time.time()))
                assert not isinstance(ev, Exception), ev
                if ev.serial == last:
                    break
            with connect(ADMIN) as ch2:
                new = issue(ch2).serial
            ev = q.get(timeout=30)
            assert not isinstance(ev, Exception), ev
            assert ev.serial == new and ev.kind == "issue", (ev, new)
            check_json(ev)
            assert metric("pkid_audit_streams") >= 1
        finally:
            call.cancel()
            reader.join(timeout=10)
    err = q.get(timeout=5)
    assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.CANCELLED, err
    DONE["followed"] = new


def test_security_agent_allowed():
    evs = events(path=SECURITY, serial=DONE["followed"])
    assert [e.kind for e in evs] == ["issue"]


def test_others_denied_with_no_event():
    for path in (ADMIN, CISSP):
        evs, code, details = stream(path=path)
        assert code == grpc.StatusCode.PERMISSION_DENIED and not evs, (path, code, details)
        assert "audit" in details, details
    with connect(anonymous=True) as ch:
        call = audit_call(ch)(pki_pb2.StreamAuditRequest(), timeout=10)
        try:
            got = list(call)
            raise AssertionError("no certificate, %d events" % len(got))
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED, (e.code(), e.details())


def test_bad_filter_invalid_argument():
    for req, words in [({"serial": "xyz"}, "serial"), ({"serial": "00" * 30}, "serial"),
                       ({"kind": "issued"}, "kind"), ({"kind": "record_9"}, "kind")]:
        evs, code, details = stream(**req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and not evs, (req, code, details)
        assert words in details, details
    assert events(kind="event_200") == []  # an event kind this pkid does not know


def test_slow_reader_gets_everything():
    """A client that reads late still gets every event, in order: pkid
    sends a chunk at a time as the client takes them."""
    with connect() as ch:
        call = audit_call(ch)(pki_pb2.StreamAuditRequest(), timeout=60)
        time.sleep(2)
        seqs = [e.seq for e in call]
    assert seqs == [e.seq for e in DONE["all"]] + [
        s for s in seqs if s > DONE["all"][-1].seq], (len(seqs), len(DONE["all"]))


def test_stalled_reader_is_sent_a_bounded_part():
    """A client that does not read is not sent the whole journal: pkid
    sends a chunk, then waits until HTTP/2 has taken it, which flow control
    allows only as the client reads."""
    total = len(DONE["all"])
    # Without BDP probing grpcio keeps its windows at their initial 64 KiB
    # (grpc.http2.lookahead_bytes) instead of growing them to hold it all.
    root = open(os.path.join(PKI, "root-ca/certs/root-ca.crt"), "rb").read()
    key, chain = service_files(PKI, AUDIT)
    creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key,
                                         certificate_chain=chain)
    with grpc.secure_channel("127.0.0.1:%d" % SERVER.grpc, creds, options=[
            ("grpc.ssl_target_name_override", SERVER_NAME), ("grpc.http2.bdp_probe", 0)]) as ch:
        before = metric("pkid_audit_events_sent_total")
        call = audit_call(ch)(pki_pb2.StreamAuditRequest(), timeout=60)
        time.sleep(2)  # the stream runs; nothing is read
        sent = metric("pkid_audit_events_sent_total") - before
        seqs = [e.seq for e in call]
    print("  sent %d of %d events before the client read" % (sent, total))
    assert 0 < sent < total, (sent, total)
    assert seqs[:total] == [e.seq for e in DONE["all"]]


def test_drain_ends_following_stream():
    q = queue.Queue()
    with connect() as ch:
        call = audit_call(ch)(pki_pb2.StreamAuditRequest(follow=True, kind="revoke"),
                              timeout=60)

        def read():
            try:
                for ev in call:
                    q.put(ev)
                q.put(None)
            except grpc.RpcError as e:
                q.put(e)

        reader = threading.Thread(target=read)
        reader.start()
        for _ in range(2):  # the two revocations: caught up
            assert isinstance(q.get(timeout=30), pki_pb2.AuditEvent)
        assert SERVER.stop() == 0
        reader.join(timeout=15)
    err = q.get(timeout=5)
    assert isinstance(err, grpc.RpcError), err
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "resume from seq" in err.details(), (
        err.code(), err.details())


def test_max_stream_ms_ends_following_stream():
    second = Pkid(PKID, PKI, TMP, args=["--max-stream-ms", "1500"],
                  log_name="pkid2.log").start()
    try:
        evs = []
        with connect(server=second) as ch:
            call = audit_call(ch)(pki_pb2.StreamAuditRequest(follow=True, kind="revoke"))
            try:
                for ev in call:
                    evs.append(ev)
                raise AssertionError("a following stream ended with OK")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (e.code(), e.details())
        assert [e.serial for e in evs] == [DONE["own"][0], DONE["vault"]]
        assert second.stop() == 0
    finally:
        second.kill()


try:
    run("setup", test_setup)
    run("audit_agent_streams_everything", test_audit_agent_streams_everything)
    run("filters", test_filters)
    run("follow_receives_new_events", test_follow_receives_new_events)
    run("security_agent_allowed", test_security_agent_allowed)
    run("others_denied_with_no_event", test_others_denied_with_no_event)
    run("bad_filter_invalid_argument", test_bad_filter_invalid_argument)
    run("slow_reader_gets_everything", test_slow_reader_gets_everything)
    run("stalled_reader_is_sent_a_bounded_part", test_stalled_reader_is_sent_a_bounded_part)
    run("drain_ends_following_stream", test_drain_ends_following_stream)
    run("max_stream_ms_ends_following_stream", test_max_stream_ms_ends_following_stream)
finally:
    SERVER.kill()
finish()
