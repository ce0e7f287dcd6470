#!/usr/bin/python3
"""audit_trail_test: every kind of operation pkid performs is on its
journal's audit trail, and `pkictl audit` finds it with the right fields,
with a real pkid:

  - issuance, renewal (the record names the certificate it renews),
    revocation (reason, who), a bootstrap token's use, CRL publications,
    serial reservations;
  - refusals: 40 requests refused for the same reason are one record
    with count 40 and the window's first and last time, not 40 records;
    refusals of different reasons or identities are apart; a caller with
    no client certificate is recorded too;
  - catalogue reloads (SIGHUP) with the catalogue's SHA-256, and a reload
    refused (a broken catalogue), outcome failed;
  - a load balancer's rotation reported by ReportRotation (its own
    service's certificate only: another's is PERMISSION_DENIED, and that
    refusal is on the trail too);
  - the offline ceremonies (root, CRL, intermediates, issue --offline,
    token create) from pki/ceremony.log, each entry once and whole, with
    the custodian shares used; one made while pkid runs comes in at the
    next SIGHUP; a log cut or rewritten (its hashes recomputed) keeps pkid
    from starting, and nothing is imported twice across a restart;
  - the filters (--service, --identity, --serial, --kind, --since,
    --until) select exactly what they say; --table prints one row per
    event; a journal with a broken chain stops the query.

Usage: audit_trail_test.py PKICTL PKID PROTO CATALOG (deploy/catalog.yaml)
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pkidtest import (Pkid, channel, demo_tree, expect_status, load_proto, make_csr,  # noqa: E402
                      method, wait_for)
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO, DEPLOY_CATALOG = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
JOURNAL = os.path.join(TMP, "journal")
CATALOG = os.path.join(TMP, "catalog.yaml")
shutil.copy(DEPLOY_CATALOG, CATALOG)  # a file of its own, for the reloads
AGENT_ID = "spiffe://cybersec-framework.local/agents/pki-agent"
REDIS_ID = "spiffe://cybersec-framework.local/infrastructure/redis"
TOKEN = subprocess.run([PKICTL, "token", "create", "--out", PKI, "--service", "vault", "--ttl",
                        "10m"], check=True, capture_output=True, text=True).stdout.strip()
SERVER = Pkid(PKID, PKI, TMP, args=["--journal", JOURNAL, "--catalog", CATALOG,
                                    "--refusal-window-s", "1"]).start()
STATE = {"start_ms": int(time.time() * 1000)}


def audit(*args, check=True):
    out = subprocess.run([PKICTL, "audit", JOURNAL] + list(args), capture_output=True,
                         text=True, timeout=60)
    if check:
        assert out.returncode == 0, "pkictl audit %s: exit %d\n%s" % (args, out.returncode,
                                                                       out.stderr)
    return out


def events(*args):
    return [json.loads(line) for line in audit(*args).stdout.splitlines()]


def issue_with_key(ch, service, usage):
    """A certificate and its key, as (key PEM, cert + chain PEM, serial)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service)])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
    r = call(pki_pb2.IssueRequest(csr=csr, service=service, usage=usage), timeout=10)
    pem = b"".join(x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
                   for d in [r.certificate] + list(r.chain))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, pem, r.serial


def same_serial(a, b):
    return int(a, 16) == int(b, 16)


def test_issue_renew_revoke():
    with channel(SERVER, PKI) as ch:
        key, chain, serial = issue_with_key(ch, "redis", pki_pb2.USAGE_CLIENT)
    STATE["redis"] = (key, chain, serial)
    with channel(SERVER, PKI, key_and_chain=(key, chain)) as ch:
        renew = method(ch, "Renew", pki_pb2.RenewRequest, pki_pb2.IssueResponse)
        renewed = renew(pki_pb2.RenewRequest(csr=make_csr("redis")), timeout=10).serial
    STATE["renewed"] = renewed
    with channel(SERVER, PKI) as ch:
        revoke = method(ch, "Revoke", pki_pb2.RevokeRequest, pki_pb2.RevokeResponse)
        revoke(pki_pb2.RevokeRequest(serial=serial, reason=pki_pb2.REVOCATION_REASON_SUPERSEDED),
               timeout=10)
    issued = events("--kind", "issue", "--serial", serial)
    assert len(issued) == 1, issued
    e = issued[0]
    assert e["identity"] == AGENT_ID and e["service"] == "redis", e
    assert e["ca"] == "infrastructure-ca" and e["usage"] == "client", e
    assert e["outcome"] == "ok" and "renews" not in e, e
    der = x509.load_pem_x509_certificate(chain).public_bytes(serialization.Encoding.DER)
    assert e["cert_sha256"] == hashlib.sha256(der).hexdigest(), e
    rn = events("--kind", "renew")
    assert len(rn) == 1 and same_serial(rn[0]["serial"], renewed), rn
    assert same_serial(rn[0]["renews"], serial) and rn[0]["identity"] == REDIS_ID, rn
    rv = events("--kind", "revoke", "--serial", serial)
    assert len(rv) == 1 and rv[0]["reason"] == "superseded", rv
    assert rv[0]["identity"] == AGENT_ID, rv
    # --serial finds the certificate's whole story: issued, renewed, revoked.
    kinds = [x["kind"] for x in events("--serial", serial)]
    assert kinds == ["issue", "revoke"], kinds
    assert [x["kind"] for x in events("--identity", REDIS_ID)] == ["renew"]


def test_bootstrap_token_used():
    with channel(SERVER, PKI, anonymous=True) as ch:
        call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
        r = call(pki_pb2.IssueRequest(csr=make_csr("vault"), usage=pki_pb2.USAGE_SERVER,
                                      bootstrap_token=TOKEN), timeout=10)
    used = events("--kind", "token_used")
    assert len(used) == 1 and len(used[0]["token_sha256"]) == 64, used
    issued = events("--serial", r.serial)
    assert [x["kind"] for x in issued] == ["issue"], issued
    assert issued[0]["identity"] == "bootstrap:vault" and issued[0]["service"] == "vault"
    # The token's use comes just before the issuance it authorized.
    assert used[0]["seq"] + 1 == issued[0]["seq"], (used, issued)


def test_refusals_aggregated():
    with channel(SERVER, PKI, path="infrastructure/redis/redis-client") as ch:
        call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
        for _ in range(40):
            expect_status(lambda: call(pki_pb2.IssueRequest(
                csr=make_csr("postgres"), service="postgres", usage=pki_pb2.USAGE_SERVER),
                timeout=10), grpc.StatusCode.PERMISSION_DENIED, "may not issue")
        status = method(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)
        for _ in range(3):
            expect_status(lambda: status(pki_pb2.GetStatusRequest(serial="7777"), timeout=10),
                          grpc.StatusCode.NOT_FOUND)
    with channel(SERVER, PKI, anonymous=True) as ch:
        status = method(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)
        expect_status(lambda: status(pki_pb2.GetStatusRequest(serial="01"), timeout=10),
                      grpc.StatusCode.UNAUTHENTICATED)

    def refused():
        return events("--kind", "refused")
    wait_for("the refusals' window to be journaled", lambda: len(refused()) >= 3, timeout=15)
    time.sleep(1.5)  # and nothing more comes of the same refusals
    got = refused()
    denied = [e for e in got if e["detail"].startswith("Issue: PERMISSION_DENIED")]
    assert len(denied) == 1, got
    d = denied[0]
    assert d["count"] == 40 and d["outcome"] == "refused", d
    assert d["identity"] == REDIS_ID and d["service"] == "redis", d
    assert "may not issue for service 'postgres'" in d["detail"], d
    assert d["first"] <= d["last"], d
    missing = [e for e in got if e["detail"].startswith("GetStatus: NOT_FOUND")]
    assert len(missing) == 1 and missing[0]["count"] == 3, got
    anon = [e for e in got if "UNAUTHENTICATED" in e["detail"]]
    assert len(anon) == 1 and "identity" not in anon[0] and anon[0]["count"] == 1, got
    assert sum(e["count"] for e in got) == 44, got


def test_catalogue_reloads():
    SERVER.signal(signal.SIGHUP)
    wait_for("a reload event", lambda: len(events("--kind", "reload")) >= 2, timeout=15)
    digest = hashlib.sha256(open(CATALOG, "rb").read()).hexdigest()
    ok = [e for e in events("--kind", "reload") if e["detail"].startswith("catalogue")]
    assert len(ok) == 1 and ok[0]["outcome"] == "ok", ok
    assert ok[0]["identity"] == "signal:SIGHUP" and digest in ok[0]["detail"], ok
    cert = [e for e in events("--kind", "reload") if e["detail"].startswith("server certificate")]
    assert len(cert) == 1 and cert[0]["outcome"] == "ok", cert
    # A broken catalogue is refused, and the refusal is on the trail.
    good = open(CATALOG).read()
    with open(CATALOG, "w") as f:
        f.write(good + "\nnot: [valid\n")
    try:
        SERVER.signal(signal.SIGHUP)
        wait_for("a refused reload", lambda: any(
            e["outcome"] == "failed" for e in events("--kind", "reload")), timeout=15)
    finally:
        with open(CATALOG, "w") as f:
            f.write(good)
    failed = [e for e in events("--kind", "reload") if e["outcome"] == "failed"]
    assert len(failed) == 1 and "refused" in failed[0]["detail"], failed


def test_lb_rotation_reported():
    with channel(SERVER, PKI) as ch:
        _, _, first = issue_with_key(ch, "load-balancer", pki_pb2.USAGE_SERVER)
        _, _, second = issue_with_key(ch, "load-balancer", pki_pb2.USAGE_SERVER)
        report = method(ch, "ReportRotation", pki_pb2.RotationReport, pki_pb2.RotationReceipt)
        report(pki_pb2.RotationReport(frontend="/etc/haproxy/certs/lb.pem", serial=second,
                                      previous_serial=first), timeout=10)
        expect_status(lambda: report(pki_pb2.RotationReport(frontend="", serial=second),
                                     timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
    # redis may not report the load balancer's certificate.
    with channel(SERVER, PKI, path="infrastructure/redis/redis-client") as ch:
        report = method(ch, "ReportRotation", pki_pb2.RotationReport, pki_pb2.RotationReceipt)
        expect_status(lambda: report(pki_pb2.RotationReport(frontend="x", serial=second),
                                     timeout=10), grpc.StatusCode.PERMISSION_DENIED)
    got = events("--kind", "lb_rotation")
    assert len(got) == 1, got
    e = got[0]
    assert same_serial(e["serial"], second) and e["service"] == "load-balancer", e
    assert e["identity"] == AGENT_ID, e
    assert e["detail"].startswith("/etc/haproxy/certs/lb.pem: "), e
    wait_for("the refused report on the trail", lambda: any(
        "ReportRotation: PERMISSION_DENIED" in x["detail"] for x in events("--kind", "refused")),
        timeout=15)


def test_crl_and_reservations():
    crls = events("--kind", "crl")
    assert crls and all(c["number"] >= 1 and c["ca"] for c in crls), crls
    blocks = events("--kind", "serial_block")
    assert blocks and blocks[0]["count"] > 0, blocks


def test_filters_and_table():
    every = events()
    seqs = [e["seq"] for e in every]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for e in every:
        assert e["kind"] in ("issue", "renew", "revoke", "token_used", "crl", "serial_block",
                             "refused", "reload", "lb_rotation", "ceremony"), e
    redis = events("--service", "redis")
    assert redis and all(e.get("service") == "redis" for e in redis), redis
    assert len(redis) == sum(1 for e in every if e.get("service") == "redis")
    # Time: everything is after the test began; nothing is before it.
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(STATE["start_ms"] // 1000 - 1))
    assert len(events("--since", since)) == len(every)
    assert events("--until", since) == []
    assert len(events("--since", str(STATE["start_ms"] // 1000 - 1))) == len(every)
    table = audit("--table").stdout.splitlines()
    assert table[0].split()[:4] == ["SEQ", "TIME", "KIND", "OUTCOME"], table[0]
    assert len(table) == 1 + len(every), (len(table), len(every))
    assert "events matched of" in audit("--kind", "issue").stderr
    for bad in (["--kind", "nonsense"], ["--serial", "xyz"], ["--since", "yesterday"],
                ["--frobnicate", "1"]):
        assert audit(*bad, check=False).returncode == 2, bad


def test_broken_chain_stops_the_query():
    copy = os.path.join(TMP, "journal-copy")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(JOURNAL, copy)
    seg = sorted(n for n in os.listdir(copy) if n.endswith(".seg"))[0]
    path = os.path.join(copy, seg)
    data = bytearray(open(path, "rb").read())
    data[200] ^= 0x01  # inside an early record
    open(path, "wb").write(bytes(data))
    out = subprocess.run([PKICTL, "audit", copy], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and seg in out.stderr, out.stderr


CEREMONY_LOG = os.path.join(PKI, "ceremony.log")


def ceremony_lines():
    return open(CEREMONY_LOG).read().splitlines()


def test_offline_ceremonies():
    lines = ceremony_lines()
    got = events("--kind", "ceremony")
    assert [e["detail"] for e in got] == lines, (len(got), len(lines))
    fields = [dict(f.split("=", 1) for f in line.split(" ")[2:]) for line in lines]
    kinds = [f["kind"] for f in fields]
    assert kinds[:2] == ["root", "crl"] and kinds[-1] == "token", kinds
    assert {"intermediate", "issue"} <= set(kinds), kinds
    for e, f in zip(got, fields):
        assert e["identity"] == "ceremony:" + f["kind"] and e["service"] == f["name"], e
        assert e["outcome"] == "ok", e
    # The root's entry: its certificate, and all five shares it made; the
    # intermediates the root signed name the three shares that opened it.
    root = x509.load_pem_x509_certificate(
        open(os.path.join(PKI, "root-ca", "certs", "root-ca.crt"), "rb").read())
    assert int(got[0]["serial"], 16) == root.serial_number, got[0]
    assert fields[0]["sha256"] == hashlib.sha256(
        root.public_bytes(serialization.Encoding.DER)).hexdigest()
    made = fields[0]["shares"].split(",")
    assert [m.split(":")[0] for m in made] == ["1", "2", "3", "4", "5"], made
    share = open(os.path.join(PKI, "root-ca", "shares", "custodian-3.share"), "rb").read()
    assert "3:" + hashlib.sha256(share).hexdigest()[:16] in made, made
    below_root = [f for f in fields if f["kind"] == "intermediate" and f["ca"] == "root"]
    assert below_root and all(f["key"] == "shares" and
                              [s.split(":")[0] for s in f["shares"].split(",")] ==
                              ["1", "3", "5"] for f in below_root), below_root
    # The token's entry is the id its use journaled: created and used, linked.
    used = events("--kind", "token_used")
    assert fields[-1]["sha256"] == used[0]["token_sha256"], (fields[-1], used)
    assert fields[-1]["name"] == "vault"
    # A ceremony step while pkid runs comes in at the next SIGHUP, once.
    subprocess.run([PKICTL, "token", "create", "--out", PKI, "--service", "redis"], check=True,
                   capture_output=True)
    SERVER.signal(signal.SIGHUP)
    wait_for("the new entry imported",
             lambda: len(events("--kind", "ceremony")) == len(lines) + 1, timeout=15)
    assert events("--kind", "ceremony")[-1]["detail"] == ceremony_lines()[-1]


def rechain(lines):
    """The log's lines with each prev and hash recomputed, as a forger with
    the file (but not the journal) would."""
    out, prev = [], "0" * 64
    for line in lines:
        body = line.split(" hash=")[0]
        head, _ = body.rsplit(" prev=", 1)
        body = head + " prev=" + prev
        prev = hashlib.sha256(body.encode()).hexdigest()
        out.append(body + " hash=" + prev)
    return out


def start_refused(words):
    proc = subprocess.Popen([PKID, "--pki", PKI, "--journal", JOURNAL, "--catalog", CATALOG,
                             "--listen", "127.0.0.1:0", "--ocsp-listen", "127.0.0.1:0",
                             "--admin-listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError("pkid started on a tampered ceremony log:\n" + err[-2000:])
    assert proc.returncode == 1 and words in err, (proc.returncode, err[-2000:])


def test_ceremony_log_tampering_refused():
    """After the stop: the journal holds the log's hashes, so a log cut or
    rewritten cannot be passed off, even with its chain recomputed."""
    good = open(CEREMONY_LOG).read()
    lines = good.splitlines()
    try:
        with open(CEREMONY_LOG, "w") as f:
            f.write("\n".join(lines[:-2]) + "\n")
        start_refused("the log was cut or replaced")
        edited = list(lines)
        edited[4] = edited[4].replace(" time=", " time=1", 1)
        with open(CEREMONY_LOG, "w") as f:
            f.write("\n".join(rechain(edited)) + "\n")
        start_refused("entry %d is not the one the journal holds" % len(lines))
        with open(CEREMONY_LOG, "w") as f:
            f.write("\n".join(lines[:3] + [lines[4]] + lines[3:4] + lines[5:]) + "\n")
        start_refused("does not follow")
    finally:
        with open(CEREMONY_LOG, "w") as f:
            f.write(good)
    # Restored, it starts; nothing is imported twice (the snapshot holds
    # where the import is).
    again = Pkid(PKID, PKI, TMP, args=["--journal", JOURNAL, "--catalog", CATALOG],
                 log_name="pkid-again.log").start()
    try:
        time.sleep(0.5)
        assert len(events("--kind", "ceremony")) == len(lines)
    finally:
        assert again.stop() == 0


def test_clean_stop():
    assert SERVER.stop() == 0


try:
    run("issue_renew_revoke", test_issue_renew_revoke)
    run("bootstrap_token_used", test_bootstrap_token_used)
    run("refusals_aggregated", test_refusals_aggregated)
    run("catalogue_reloads", test_catalogue_reloads)
    run("lb_rotation_reported", test_lb_rotation_reported)
    run("crl_and_reservations", test_crl_and_reservations)
    run("filters_and_table", test_filters_and_table)
    run("offline_ceremonies", test_offline_ceremonies)
    run("broken_chain_stops_the_query", test_broken_chain_stops_the_query)
    run("clean_stop", test_clean_stop)
    run("ceremony_log_tampering_refused", test_ceremony_log_tampering_refused)
finally:
    SERVER.kill()
finish()
