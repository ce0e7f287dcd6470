#!/usr/bin/python3
"""crash_test: kill -9 during sustained issuance, then restart.

Ten rounds: clients issue over IssueStream while pkid is killed with
SIGKILL at a random moment, then pkid starts again on the same journal.
Afterwards every certificate a client received must be known to pkid (it
was durable before the client heard of it), no serial may appear twice,
and the journal's chain must verify, by pkictl and by an independent
reader of the documented format (lib/journal.h, server/store.h). Then a
torn tail is cut at start, and corruption in the middle stops start-up
naming the segment and offset.

Usage: crash_test.py PKICTL PKID PROTO
"""
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from journaltest import journal_serials  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, load_proto, method  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
JOURNAL = os.path.join(TMP, "journal")
ROUNDS = 10

CSR = x509.CertificateSigningRequestBuilder().subject_name(
    x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(
    ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(
    serialization.Encoding.DER)


def start_pkid(log_name):
    return Pkid(PKID, PKI, TMP, args=["--journal", JOURNAL], log_name=log_name).start()


received = []
received_lock = threading.Lock()


def issue_until_gone(server, stop):
    """Issues in streams of 16 until pkid dies; keeps every serial received."""
    with channel(server, PKI) as ch:
        call = method(ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                      streaming=True)
        while not stop.is_set():
            reqs = [pki_pb2.IssueRequest(csr=CSR, usage=pki_pb2.USAGE_CLIENT, request_id=i)
                    for i in range(16)]
            try:
                for r in call(iter(reqs), timeout=5):
                    if r.status_code == 0:
                        with received_lock:
                            received.append(r.serial)
            except grpc.RpcError:
                return


def test_kill9_rounds():
    random.seed(1234)
    for rnd in range(ROUNDS):
        server = start_pkid("round%d.log" % rnd)
        stop = threading.Event()
        threads = [threading.Thread(target=issue_until_gone, args=(server, stop))
                   for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.4, 1.0))
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=20)
            assert not t.is_alive(), "client hung"
    assert len(received) > ROUNDS, "too few certificates issued: %d" % len(received)
    assert len(set(received)) == len(received), "a serial was delivered twice"


def test_every_received_certificate_is_known():
    server = start_pkid("after.log")
    try:
        with channel(server, PKI) as ch:
            status = method(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)
            for s in received:
                st = status(pki_pb2.GetStatusRequest(serial=s), timeout=10)
                assert st.state == pki_pb2.CertificateStatus.STATE_GOOD, (s, st)
    finally:
        assert server.stop() == 0


def test_journal_chain_and_no_duplicates():
    out = subprocess.run([PKICTL, "journal", "verify", JOURNAL], capture_output=True, text=True)
    assert out.returncode == 0 and "result:     ok" in out.stdout, out.stdout + out.stderr
    serials = journal_serials(JOURNAL)
    assert len(serials) == len(set(serials)), "a serial appears twice in the journal"
    missing = set(received) - set(serials)
    assert not missing, "received but not journaled: %s" % sorted(missing)[:3]


def last_segment():
    segs = sorted(f for f in os.listdir(JOURNAL) if f.endswith(".seg"))
    return os.path.join(JOURNAL, segs[-1])


def test_torn_tail_is_cut():
    # Issue a little more without a clean shutdown, then tear the last record.
    server = start_pkid("torn1.log")
    stop = threading.Event()
    t = threading.Thread(target=issue_until_gone, args=(server, stop))
    t.start()
    time.sleep(0.5)
    server.kill()
    stop.set()
    t.join(timeout=20)
    # The segment ends in zeros written ahead (lib/journal.h, WRITTEN
    # AHEAD): tear the last record itself, 7 bytes short of its end.
    seg = last_segment()
    data = open(seg, "rb").read()
    end = len(data.rstrip(b"\0"))
    with open(seg, "r+b") as f:
        f.truncate(end - 7)
    server = start_pkid("torn2.log")
    assert server.stop() == 0
    m = re.search(r'"truncated_bytes":"(\d+)"', server.log())
    assert m and int(m.group(1)) > 0, "no torn tail reported"
    assert '"truncated":"torn"' in server.log(), server.log()
    out = subprocess.run([PKICTL, "journal", "verify", JOURNAL], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_corruption_in_the_middle_stops_startup():
    seg = last_segment()
    # Remove the snapshots so that start-up must read the damaged records.
    for f in os.listdir(JOURNAL):
        if f.endswith(".snap"):
            os.remove(os.path.join(JOURNAL, f))
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0x40]))
    log = open(os.path.join(TMP, "corrupt.log"), "w+")
    proc = subprocess.Popen([PKID, "--pki", PKI, "--journal", JOURNAL, "--ocsp-listen", "127.0.0.1:0",
                             "--admin-listen", "127.0.0.1:0", "--listen",
                             "127.0.0.1:0"], stderr=log)
    try:
        rc = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("pkid started on a corrupt journal")
    log.seek(0)
    text = log.read()
    assert rc != 0, text
    assert os.path.basename(seg) in text and "offset" in text, text
    out = subprocess.run([PKICTL, "journal", "verify", JOURNAL], capture_output=True, text=True)
    assert out.returncode != 0 and "offset" in (out.stdout + out.stderr), out.stdout


run("kill9_rounds", test_kill9_rounds)
run("every_received_certificate_is_known", test_every_received_certificate_is_known)
run("journal_chain_and_no_duplicates", test_journal_chain_and_no_duplicates)
run("torn_tail_is_cut", test_torn_tail_is_cut)
run("corruption_in_the_middle_stops_startup", test_corruption_in_the_middle_stops_startup)
finish()
