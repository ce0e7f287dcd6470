#!/usr/bin/python3
"""fault_test: pkid on a failing disk, made by tests/fault's libfaultfs.so.

The shim is preloaded into pkid only (never into this process) and makes
one of the journal's calls fail during sustained issuance from a few
concurrent clients:

  - fdatasync EIO, and pwrite EIO (a failing disk): the clients of that
    commit get an error (INTERNAL), pkid stops issuing (UNAVAILABLE), stops
    and exits 75; /readyz is never 200 again, and answers 503 while pkid
    drains (an IssueStream held open keeps it draining for a second);
  - pwrite ENOSPC (a full disk), and EMFILE on the open of a segment roll
    (no descriptors): the clients of the failing commits get
    RESOURCE_EXHAUSTED, /readyz turns false, pkid keeps running, and the
    next commit that succeeds makes /readyz true again.

Each case then restarts pkid on the same journal without the shim: every
certificate a client received is GOOD (GetStatus), the journal holds
exactly the certificates the clients were given beside what it held before
(so none that a client was told failed), and the chain verifies, by
`pkictl journal verify` and by an independent reader of the format.

Usage: fault_test.py PKICTL PKID PROTO LIBFAULTFS
"""
import http.client
import os
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
from pkidtest import Pkid, channel, demo_tree, load_proto, method, wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO, SHIM = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
CLIENTS = 3
EXIT_JOURNAL_FAILED = 75
# pkid samples its last commit every 200 ms for /readyz: wait longer.
READY_WAIT = 1.5
SEGMENT_BYTES = 65536

CSRS = [x509.CertificateSigningRequestBuilder().subject_name(
    x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fault-%d" % i)])).sign(
    ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(
    serialization.Encoding.DER) for i in range(CLIENTS)]


class FaultyPkid(Pkid):
    """A Pkid whose process gets |env| added to the environment: the shim
    and its rules go to pkid alone."""

    def __init__(self, *args, env=None, **kw):
        own = {k: v for k, v in os.environ.items() if not k.startswith("PKID_FAULT")}
        own.update(env or {})
        super().__init__(*args, env=own, **kw)


def pkid_args(journal, segment_bytes=None):
    args = ["--journal", journal]
    if segment_bytes is not None:
        args += ["--journal-segment-bytes", str(segment_bytes)]
    return args


def start_clean(journal, log_name, segment_bytes=None):
    return FaultyPkid(PKID, PKI, TMP, args=pkid_args(journal, segment_bytes),
                      log_name=log_name).start()


def start_faulty(journal, log_name, rules, segment_bytes=None):
    env = {"LD_PRELOAD": SHIM, "PKID_FAULT": rules, "PKID_FAULT_LOG": "1"}
    return FaultyPkid(PKID, PKI, TMP, args=pkid_args(journal, segment_bytes),
                      log_name=log_name, env=env).start()


def injections(server):
    """The shim's own report of each failure it injected."""
    return re.findall(r"^faultfs: .*$", server.log(), re.M)


def readyz(server):
    """GET /readyz: the HTTP status, or None when nothing answers."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", server.admin, timeout=1)
        try:
            c.request("GET", "/readyz")
            return c.getresponse().status
        finally:
            c.close()
    except OSError:
        return None


def wait_readyz(server, want, seconds=READY_WAIT):
    """Polls /readyz until it answers |want|; returns whether it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if readyz(server) == want:
            return True
        time.sleep(0.02)
    return False


class ReadyzWatcher:
    """Samples /readyz every 10 ms in a thread: (monotonic time, status)."""

    def __init__(self, server):
        self.server, self.samples = server, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop)

    def loop(self):
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), readyz(self.server)))
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def transitions(samples, t0):
    """The changes of status in |samples|, with times relative to |t0|."""
    out, last = [], object()
    for t, s in samples:
        if s != last:
            out.append("%+.3f %s" % (t - t0, s))
            last = s
    return ", ".join(out)


def verify(directory):
    """pkictl journal verify passes, with no torn tail; returns its count of
    ISSUE records."""
    out = subprocess.run([PKICTL, "journal", "verify", directory], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "result:     ok" in out.stdout, out.stdout + out.stderr
    assert "torn tail" not in out.stdout, out.stdout
    m = re.search(r"type +2: (\d+)", out.stdout)
    return int(m.group(1)) if m else 0


def no_cut_marker(directory):
    marks = [f for f in os.listdir(directory) if f.endswith(".cut") or ".tmp" in f]
    assert not marks, "left in the journal: %s" % marks


# ---- issuance

class Outcome:
    """What the clients were told: serials received, errors by code."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = []   # serials
        self.acked_at = []  # monotonic time of each
        self.errors = []  # (monotonic time, code, details)

    def ok(self, serial):
        with self.lock:
            self.acked.append(serial)
            self.acked_at.append(time.monotonic())

    def fail(self, e):
        with self.lock:
            self.errors.append((time.monotonic(), e.code(), e.details()))

    def codes(self):
        with self.lock:
            return [c for _, c, _ in self.errors]

    def summary(self, name):
        codes = self.codes()
        by = ", ".join("%s %d" % (c.name, codes.count(c)) for c in sorted(set(codes),
                                                                      key=lambda c: c.name))
        print("  %s: %d issued; refused: %s" % (name, len(self.acked), by or "none"),
              flush=True)


def issue_stub(ch):
    return method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)


def check_issued(resp):
    c = x509.load_der_x509_certificate(resp.certificate)
    assert format(c.serial_number, "x") == resp.serial.lstrip("0"), resp.serial


def issue_until_exit(server, outcome, csr, deadline):
    """One client: Issue after Issue until pkid has exited (or |deadline|)."""
    with channel(server, PKI) as ch:
        issue = issue_stub(ch)
        for _ in range(5000):
            if time.monotonic() > deadline or server.proc.poll() is not None:
                return
            try:
                r = issue(pki_pb2.IssueRequest(csr=csr, usage=pki_pb2.USAGE_CLIENT), timeout=10)
            except grpc.RpcError as e:
                outcome.fail(e)
                time.sleep(0.01)
                continue
            check_issued(r)
            outcome.ok(r.serial)


class Holder:
    """An IssueStream that has had one answer and then sends nothing more,
    open until release(): pkid's drain waits for it, so the time between
    "stopping" and exit is long enough to see what /readyz says then."""

    def __init__(self, server, outcome):
        self.outcome, self.release_ev = outcome, threading.Event()
        self.answered = threading.Event()
        self.ch = channel(server, PKI)
        self.call = method(self.ch, "IssueStream", pki_pb2.IssueRequest, pki_pb2.IssueResponse,
                           streaming=True)
        self.thread = threading.Thread(target=self.loop)
        self.thread.start()
        if not self.answered.wait(10):
            self.release()
            raise AssertionError("the held stream got no answer")

    def requests(self):
        yield pki_pb2.IssueRequest(csr=CSRS[0], usage=pki_pb2.USAGE_CLIENT, request_id=1)
        self.release_ev.wait(30)

    def loop(self):
        try:
            for r in self.call(self.requests(), timeout=40):
                if r.status_code == 0:
                    check_issued(r)
                    self.outcome.ok(r.serial)
                self.answered.set()
        except grpc.RpcError:
            pass

    def release(self):
        self.release_ev.set()
        self.ch.close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "held stream hung"


class Round:
    """CLIENTS channels; each round sends one Issue on each at once and
    waits for all: at most CLIENTS commits per round."""

    def __init__(self, server, outcome):
        self.outcome = outcome
        self.chans = [channel(server, PKI) for _ in range(CLIENTS)]
        self.stubs = [issue_stub(ch) for ch in self.chans]

    def go(self):
        """Returns this round's failures: [(code, details)]."""
        futs = [s.future(pki_pb2.IssueRequest(csr=CSRS[i], usage=pki_pb2.USAGE_CLIENT),
                         timeout=10) for i, s in enumerate(self.stubs)]
        failed = []
        for f in futs:
            try:
                r = f.result()
            except grpc.RpcError as e:
                self.outcome.fail(e)
                failed.append((e.code(), e.details()))
                continue
            check_issued(r)
            self.outcome.ok(r.serial)
        return failed

    def close(self):
        for ch in self.chans:
            ch.close()


def statuses(server, serials):
    """GetStatus of each serial: {serial: state or grpc code}."""
    out = {}
    with channel(server, PKI) as ch:
        status = method(ch, "GetStatus", pki_pb2.GetStatusRequest, pki_pb2.CertificateStatus)
        for s in serials:
            try:
                out[s] = status(pki_pb2.GetStatusRequest(serial=s), timeout=10).state
            except grpc.RpcError as e:
                out[s] = e.code()
    return out


def prepare(name, segment_bytes=None):
    """A journal of its own, opened once by a clean pkid (which imports the
    ceremonies' certificates and reserves serials), so that the faulty run
    starts from an ordinary restart. Returns (dir, serials it holds)."""
    journal = os.path.join(TMP, name)
    server = start_clean(journal, name + "-prepare.log", segment_bytes)
    # And its ceremony log's entries, journaled one commit each: the faulty
    # run's count of commits starts after them.
    wait_for("the ceremony log imported", lambda: '"ceremony_import_done"' in server.log(),
             timeout=30)
    assert server.stop() == 0, server.log()
    serials = journal_serials(journal)
    assert verify(journal) == len(serials)
    return journal, serials


def check_restart(journal, before, outcome, name, segment_bytes=None):
    """A clean restart: the journal verifies and holds exactly |before| plus
    the certificates the clients received; each of those is GOOD; pkid
    issues again."""
    acked = list(outcome.acked)
    assert len(set(acked)) == len(acked), "a serial was delivered twice"
    no_cut_marker(journal)
    serials = journal_serials(journal)
    assert verify(journal) == len(serials), "pkictl and this reader disagree"
    assert serials[:len(before)] == before, "records from before the fault changed"
    new = serials[len(before):]
    assert len(set(new)) == len(new), "a serial appears twice in the journal"
    lost = set(acked) - set(new)
    assert not lost, "received but not in the journal: %d, e.g. %s" % (
        len(lost), sorted(lost)[:3])
    extra = set(new) - set(acked)
    assert not extra, ("in the journal but never given to a client (told failed): %d, "
                       "e.g. %s" % (len(extra), sorted(extra)[:3]))
    server = start_clean(journal, name + "-restart.log", segment_bytes)
    try:
        got = statuses(server, acked)
        bad = {s: st for s, st in got.items() if st != pki_pb2.CertificateStatus.STATE_GOOD}
        assert not bad, "received but not GOOD after restart: %d, e.g. %s" % (
            len(bad), list(bad.items())[:3])
        with channel(server, PKI) as ch:
            r = issue_stub(ch)(pki_pb2.IssueRequest(csr=CSRS[0], usage=pki_pb2.USAGE_CLIENT),
                               timeout=10)
        check_issued(r)
        assert statuses(server, [r.serial])[r.serial] == pki_pb2.CertificateStatus.STATE_GOOD
    finally:
        rc = server.stop()
    assert rc == 0, "restart exited %s:\n%s" % (rc, server.log())
    verify(journal)
    tail = journal_serials(journal)
    assert tail[:len(serials)] == serials and tail[len(serials):] == [r.serial], \
        "the restart changed the journal"


# ---- failing disk: pkid fails closed

RUNS = {}  # name: what a failing-disk run saw, for its /readyz case


def failing_disk(name, rule):
    """Sustained issuance from CLIENTS clients; the shim fails |rule|. pkid
    must refuse the failing commit's jobs, stop and exit 75; a restart
    recovers what the clients were given and no more. What /readyz said is
    kept for readyz_went_503 (a case of its own, so that each is reported)."""
    journal, before = prepare(name)
    outcome = Outcome()
    server = start_faulty(journal, name + ".log", rule)
    rc = holder = None
    try:
        assert readyz(server) == 200, "not ready before the fault"
        holder = Holder(server, outcome)
        deadline = time.monotonic() + 20
        with ReadyzWatcher(server) as watch:
            threads = [threading.Thread(target=issue_until_exit,
                                        args=(server, outcome, CSRS[i], deadline))
                       for i in range(CLIENTS)]
            for t in threads:
                t.start()
            # Once a client has been refused, give pkid a second to notice
            # and stop (its drain waits on the held stream), then let go.
            while time.monotonic() < deadline and not outcome.errors:
                time.sleep(0.01)
            time.sleep(1.0)
            held_until = time.monotonic()
            holder.release()
            try:
                rc = server.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            exited = time.monotonic()
            for t in threads:
                t.join(timeout=20)
                assert not t.is_alive(), "client hung"
    finally:
        if holder is not None:
            holder.release()
        server.kill()
    log = server.log()
    hits = injections(server)
    outcome.summary(name)
    assert len(hits) == 1, "injections: %s\n%s" % (hits, log[-3000:])
    assert rc == EXIT_JOURNAL_FAILED, "pkid exit status %s, want %d\n%s" % (
        rc, EXIT_JOURNAL_FAILED, log[-3000:])
    assert '"journal_failed"' in log, log[-3000:]
    # The fault hit during issuance: certificates before it, errors after.
    assert len(outcome.acked) >= CLIENTS, "only %d issued before the fault" % len(outcome.acked)
    codes = outcome.codes()
    # The failing commit's clients were told INTERNAL (PKI_ERR_IO); later
    # calls, refused or cut off as pkid stopped, UNAVAILABLE.
    assert grpc.StatusCode.INTERNAL in codes, "no client was told the commit failed: %s" % codes
    internal = [d for _, c, d in outcome.errors if c == grpc.StatusCode.INTERNAL]
    assert all("journal" in (d or "") for d in internal), internal[:3]
    others = set(codes) - {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}
    assert not others, "unexpected statuses: %s" % others
    first_err = min(t for t, _, _ in outcome.errors)
    RUNS[name] = (watch.samples, first_err, held_until, exited)
    # pkid stopped accepting work: once it had had 300 ms to notice, no
    # client got a certificate, and every refusal was UNAVAILABLE.
    late = [t - first_err for t in outcome.acked_at if t > first_err + 0.3]
    assert not late, "a certificate issued %.3f s after the failed commit" % late[0]
    late = [(round(t - first_err, 3), c, d) for t, c, d in outcome.errors
            if t > first_err + 0.3 and c != grpc.StatusCode.UNAVAILABLE]
    assert not late, "refused other than UNAVAILABLE after the failed commit: %s" % late[:3]
    # Ready before the fault; never ready again once pkid had had 300 ms
    # (its /readyz follows the last commit every 200 ms) to notice.
    samples = watch.samples
    assert any(s == 200 for t, s in samples if t < first_err), "never ready before the fault"
    late = [t - first_err for t, s in samples if s == 200 and t > first_err + 0.3]
    assert not late, "/readyz still 200 %.3f s after the failed commit" % late[0]
    check_restart(journal, before, outcome, name)


def readyz_went_503(name):
    """Between the failed commit and its exit, pkid's /readyz answered 503
    (not merely stopped answering: a probe must be told)."""
    assert name in RUNS, "the %s run did not get this far" % name
    samples, first_err, held_until, exited = RUNS[name]
    assert any(s == 503 for _, s in samples), (
        "/readyz never answered 503 between the failed commit and exit; it went "
        "(seconds after the first failed call, status or None for no answer): %s; "
        "pkid draining until %+.3f (a stream held open), exited at %+.3f" % (
            transitions(samples, first_err), held_until - first_err, exited - first_err))


def test_fdatasync_eio():
    # .seg fdatasyncs: #1 is the start-up's serial reservation; then one per
    # group commit. The 25th is well into the issuance.
    failing_disk("fdatasync-eio", "fdatasync:EIO:25:.seg")


def test_pwrite_eio():
    # .seg pwrites: the same count, one per commit.
    failing_disk("pwrite-eio", "pwrite:EIO:25:.seg")


# ---- full disk, no descriptors: pkid goes on

def retryable(name, call, errno_name, first, substring, segment_bytes=None, want_rolls=False):
    """Rounds of CLIENTS concurrent Issues; the shim fails the |first|th
    matching |call| and the CLIENTS-1 after it (a round makes at most CLIENTS
    commits, so every commit from the first failure to the end of its round
    fails and /readyz, sampled by pkid, is false afterwards). The failing
    commits' clients get RESOURCE_EXHAUSTED, /readyz turns 503 while pkid
    goes on, and 200 again after a round that succeeds."""
    journal, before = prepare(name, segment_bytes)
    segs_before = len([f for f in os.listdir(journal) if f.endswith(".seg")])
    rules = ",".join("%s:%s:%d:%s" % (call, errno_name, first + i, substring)
                     for i in range(CLIENTS))
    outcome = Outcome()
    server = start_faulty(journal, name + ".log", rules, segment_bytes)
    rounds = None
    try:
        assert readyz(server) == 200, "not ready before the fault"
        rounds = Round(server, outcome)
        saw_failure = recovered = False
        for n in range(400):
            failed = rounds.go()
            assert server.proc.poll() is None, "pkid exited (%s):\n%s" % (
                server.proc.returncode, server.log()[-3000:])
            assert all(c == grpc.StatusCode.RESOURCE_EXHAUSTED for c, _ in failed), \
                "failing commit's clients told %s, want RESOURCE_EXHAUSTED" % failed
            assert all("journal" in (d or "") for _, d in failed), failed
            if failed and not saw_failure:
                saw_failure = True
                assert n > 0, "the fault hit the first round"
                # The round's last commit failed, and nothing is in flight:
                # pkid must say it is not ready, and go on saying so.
                assert wait_readyz(server, 503), "/readyz not 503 after a failed commit"
                time.sleep(0.3)
                assert readyz(server) == 503, "/readyz ready again with no commit"
                assert server.proc.poll() is None, "pkid stopped on a retryable failure"
            elif saw_failure and not failed:
                assert wait_readyz(server, 200), "/readyz not 200 after a commit succeeded"
                recovered = True
                if len(injections(server)) == CLIENTS:
                    break
        assert saw_failure, "no commit failed: %s" % injections(server)
        assert recovered and len(injections(server)) == CLIENTS, \
            "injections: %s" % injections(server)
        # Some more, for good measure, all answered.
        for _ in range(3):
            assert not rounds.go(), "issuance failed after the fault"
        assert wait_readyz(server, 200)
        assert '"journal_failed"' not in server.log()
    finally:
        if rounds is not None:
            rounds.close()
        rc = server.stop()
    outcome.summary(name)
    assert rc == 0, "pkid exited %s after a retryable fault:\n%s" % (rc, server.log()[-3000:])
    assert outcome.codes(), "no client was told of the failure"
    if want_rolls:
        segs = len([f for f in os.listdir(journal) if f.endswith(".seg")])
        assert segs > segs_before, "no segment roll: %d segments" % segs
    check_restart(journal, before, outcome, name, segment_bytes)


def test_pwrite_enospc():
    # .seg pwrites: #1 is the start-up's reservation; then one per commit.
    retryable("pwrite-enospc", "pwrite", "ENOSPC", 12, ".seg")


def test_roll_emfile():
    # The first open of a roll's temporary file fails with EMFILE (and the
    # next two, a round's worth). With 64 KiB segments the first roll comes
    # after ~60 certificates.
    retryable("roll-emfile", "open", "EMFILE", 1, ".seg.tmp.new", SEGMENT_BYTES,
              want_rolls=True)


run("fdatasync_eio_fails_closed", test_fdatasync_eio)
run("fdatasync_eio_readyz_503_before_exit", lambda: readyz_went_503("fdatasync-eio"))
run("pwrite_enospc_goes_on", test_pwrite_enospc)
run("roll_emfile_goes_on", test_roll_emfile)
run("pwrite_eio_fails_closed", test_pwrite_eio)
run("pwrite_eio_readyz_503_before_exit", lambda: readyz_went_503("pwrite-eio"))
finish()
