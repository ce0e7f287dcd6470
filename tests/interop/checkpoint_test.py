#!/usr/bin/python3
"""checkpoint_test: signed checkpoints of pkid's journal (lib/checkpoint.h,
server/store/checkpoints.h) against tampering, with a real pkid and
pkictl:

  - pkid signs its journal's head with the audit key the ceremony made
    (pki/audit/), at its interval and only when the journal grew, into
    JOURNAL/checkpoint and JOURNAL/checkpoints.log, and serves the newest
    at the admin endpoint's /checkpoint; the signature verifies with Python
    cryptography and the audit public key;
  - `pkictl journal verify --checkpoint` passes on the untouched journal,
    with an older checkpoint as well as the newest;
  - it fails, saying what happened, for: the last records removed; a
    record in the middle edited and every chain hash after it recomputed
    (the journal verifies on its own); the journal replaced by a shorter
    valid one; a checkpoint altered, or checked against another key.

Usage: checkpoint_test.py PKICTL PKID PROTO
"""
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402
from journaltest import read_journal, rewrite  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, load_proto, make_csr, method, wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
JOURNAL = os.path.join(TMP, "journal")
AUDIT_PUB = os.path.join(PKI, "audit", "audit.pub")
STATE = {}


def start(journal=JOURNAL, log="pkid.log"):
    return Pkid(PKID, PKI, TMP, args=["--journal", journal, "--checkpoint-interval-s", "1"],
                log_name=log).start()


def issue(server, n):
    with channel(server, PKI) as ch:
        call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
        for _ in range(n):
            call(pki_pb2.IssueRequest(csr=make_csr("redis"), service="redis",
                                      usage=pki_pb2.USAGE_CLIENT), timeout=10)


def parse(text):
    """(fields, body, key id, signature) of a checkpoint's text."""
    body, sig_line = text.split("\n\n")
    fields = dict(line.split(" ", 1) for line in body.splitlines()[1:])
    assert sig_line.startswith("\u2014 pkid-audit ") and sig_line.endswith("\n"), sig_line
    raw = base64.b64decode(sig_line[len("\u2014 pkid-audit "):-1], validate=True)
    return fields, (body + "\n").encode(), raw[:4], raw[4:]


def current():
    with open(os.path.join(JOURNAL, "checkpoint")) as f:
        return f.read()


def verify(journal, checkpoint, *extra):
    out = subprocess.run([PKICTL, "journal", "verify", journal, "--checkpoint", checkpoint]
                         + (list(extra) or ["--pki", PKI]), capture_output=True, text=True,
                         timeout=60)
    return out.returncode, out.stdout + out.stderr


def save(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_pkid_signs_checkpoints():
    server = start()
    STATE["server"] = server
    issue(server, 10)

    def covers_issues():
        if not os.path.exists(os.path.join(JOURNAL, "checkpoint")):
            return None
        text = current()
        return text if int(parse(text)[0]["seq"]) >= 10 else None
    first = wait_for("a checkpoint of the issuances", covers_issues, 15)
    fields, body, key_id, sig = parse(first)
    assert fields["origin"] == "pkid node 1", fields
    # Python cryptography checks pkid's Ed25519 signature with the public key
    # the ceremony left in the tree.
    pub = serialization.load_pem_public_key(open(AUDIT_PUB, "rb").read())
    assert isinstance(pub, ed25519.Ed25519PublicKey)
    pub.verify(sig, body)
    spki = pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    assert digest.finalize()[:4] == key_id
    # The journal's records agree: the chain hash after record seq.
    assert len(read_journal(JOURNAL)) >= int(fields["seq"])
    with urllib.request.urlopen("http://127.0.0.1:%d/checkpoint" % server.admin,
                                timeout=5) as r:
        served = r.read().decode()
    assert served == current(), served
    STATE["older"] = save("older.checkpoint", first)
    time.sleep(2.5)  # idle: a checkpoint only when the journal grew (below)
    issue(server, 10)
    wait_for("a later checkpoint", lambda: current() != first, 15)
    server.stop()
    STATE["newest"] = save("newest.checkpoint", current())
    log = open(os.path.join(JOURNAL, "checkpoints.log")).read()
    assert log.count("pkid journal checkpoint\n") >= 2 and first in log
    seqs = [int(line.split()[1]) for line in log.splitlines() if line.startswith("seq ")]
    assert seqs == sorted(set(seqs)), "a checkpoint of a journal that did not grow: %s" % seqs


def test_untouched_journal_passes():
    for name in ("older", "newest"):
        rc, out = verify(JOURNAL, STATE[name])
        assert rc == 0 and "result:     ok" in out and "is unchanged" in out, out
    rc, out = verify(JOURNAL, STATE["newest"], "--audit-key", AUDIT_PUB)
    assert rc == 0, out


def tampered(name):
    copy = os.path.join(TMP, name)
    shutil.copytree(JOURNAL, copy)
    return copy


def newest_seq():
    return int(parse(open(STATE["newest"]).read())[0]["seq"])


def test_last_records_removed():
    copy = tampered("cut")
    rewrite(copy, last_seq=newest_seq() - 3)
    alone = subprocess.run([PKICTL, "journal", "verify", copy], capture_output=True, text=True)
    assert alone.returncode == 0, "cut at a record, it verifies on its own: " + alone.stdout
    rc, out = verify(copy, STATE["newest"])
    assert rc != 0 and "records it covered were removed" in out, out


def test_middle_record_edited_and_rechained():
    copy = tampered("edited")
    # A record both checkpoints cover.
    target = max(1, int(parse(open(STATE["older"]).read())[0]["seq"]) // 2)

    def edit(seq, rtype, payload):
        if seq != target:
            return payload
        return payload[:-1] + bytes([payload[-1] ^ 1])
    rewrite(copy, edit=edit)
    out = subprocess.run([PKICTL, "journal", "verify", copy], capture_output=True, text=True)
    assert out.returncode == 0, "rechained, it verifies on its own: " + out.stdout
    for name in ("older", "newest"):
        rc, text = verify(copy, STATE[name])
        assert rc != 0 and "were rewritten" in text, text


def test_replaced_by_shorter_valid_journal():
    other = os.path.join(TMP, "other")
    server = start(other, "other.log")
    issue(server, 2)
    server.stop()
    rc, out = verify(other, STATE["newest"])
    assert rc != 0 and ("were removed" in out or "were rewritten" in out), out


def test_altered_checkpoint_or_other_key_fails():
    text = open(STATE["newest"]).read()
    fields = parse(text)[0]
    bumped = text.replace("seq %s\n" % fields["seq"], "seq %d\n" % (int(fields["seq"]) - 1))
    rc, out = verify(JOURNAL, save("bumped.checkpoint", bumped))
    assert rc != 0 and "altered" in out, out
    other = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    rc, out = verify(JOURNAL, STATE["newest"], "--audit-key", save("other.pub", other.decode()))
    assert rc != 0 and "another key" in out, out
    rc, out = verify(JOURNAL, save("junk.checkpoint", "pkid journal checkpoint\nseq 1\n"))
    assert rc != 0 and "not a pkid checkpoint" in out, out


try:
    run("pkid_signs_checkpoints", test_pkid_signs_checkpoints)
    run("untouched_journal_passes", test_untouched_journal_passes)
    run("last_records_removed", test_last_records_removed)
    run("middle_record_edited_and_rechained", test_middle_record_edited_and_rechained)
    run("replaced_by_shorter_valid_journal", test_replaced_by_shorter_valid_journal)
    run("altered_checkpoint_or_other_key_fails", test_altered_checkpoint_or_other_key_fails)
finally:
    if STATE.get("server") is not None:
        STATE["server"].stop()
finish()
