#!/usr/bin/python3
"""acme_eab_test: `pkictl acme eab create --service NAME` has a real pkid
make an ACME external account binding key (RFC 8555 7.3.4, CreateAcmeEab):

  - with ACME on (--acme-listen), an admin identity gets exactly two
    lines, "kid: eab-" and 22 base64url characters and "hmac-key: " and
    43 (32 octets, no padding), exit 0;
  - the key is HMAC-SHA256(master, "pkid acme eab v1" 0x00 kid) under the
    master key pkid made in pki/acme/eab.key (0600, in a 0700 directory):
    computed here from the file, which pins the derivation;
  - the journal has one eab_created event per key made, outcome ok, with
    the caller's identity, the service and the kid as its detail; the key
    (text, standard base64 or raw) is in no file pkid wrote: journal,
    snapshot, log;
  - refused, exit 1 with the status on stderr and nothing on stdout: a
    caller without the admin permission PERMISSION_DENIED, an unknown
    service NOT_FOUND, a service with only client certificates (siem-feed)
    INVALID_ARGUMENT; and no key is made for any of them;
  - two keys have different kids and keys;
  - calls cancelled before their record is durable leave pkid serving;
  - ACME off (no --acme-listen): FAILED_PRECONDITION;
  - after pkid stops and starts again, a create still works, under the
    same master key, still 0600.

Usage: acme_eab_test.py PKICTL PKID PROTO CATALOG (deploy/catalog.yaml)
"""
import base64
import hashlib
import hmac
import json
import os
import re
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from pkidtest import Pkid, channel, demo_tree, load_proto, method  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO, CATALOG = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)
JOURNAL = os.path.join(TMP, "journal")
MASTER = os.path.join(PKI, "acme", "eab.key")
AGENT_ID = "spiffe://cybersec-framework.local/agents/pki-agent"
KID_RE = re.compile(r"eab-[A-Za-z0-9_-]{22}")
KEY_RE = re.compile(r"[A-Za-z0-9_-]{43}")
NO_ACME = ["--journal", JOURNAL]
ACME = NO_ACME + ["--acme-listen", "127.0.0.1:0"]
STATE = {"made": []}  # (kid, key) of every key pkictl printed
SERVER = {"pkid": Pkid(PKID, PKI, TMP, args=ACME).start()}


def pkictl_eab(service, as_service="pki-agent"):
    """pkictl acme eab create, as |as_service|'s client certificate."""
    return subprocess.run(
        [PKICTL, "acme", "eab", "create", "--pki", PKI, "--as", as_service, "--server",
         "127.0.0.1:%d" % SERVER["pkid"].grpc, "--service", service],
        capture_output=True, text=True, timeout=60)


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def expected_key(kid):
    master = open(MASTER, "rb").read()
    assert len(master) == 32, len(master)
    return hmac.new(master, b"pkid acme eab v1\x00" + kid.encode(), hashlib.sha256).digest()


def create(service="postgres"):
    """A key made as the admin: (kid, key text), its output checked."""
    out = pkictl_eab(service)
    assert out.returncode == 0, "exit %d\n%s" % (out.returncode, out.stderr)
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and out.stdout.endswith("\n"), out.stdout
    assert lines[0].startswith("kid: ") and lines[1].startswith("hmac-key: "), lines
    kid, key = lines[0][len("kid: "):], lines[1][len("hmac-key: "):]
    assert KID_RE.fullmatch(kid), kid
    assert KEY_RE.fullmatch(key), key
    assert len(b64url_decode(kid[len("eab-"):])) == 16
    STATE["made"].append((kid, key))
    return kid, key


def refused(service, status, words, as_service="pki-agent"):
    out = pkictl_eab(service, as_service)
    assert out.returncode == 1, "exit %d\n%s%s" % (out.returncode, out.stdout, out.stderr)
    assert out.stdout == "", out.stdout
    assert out.stderr.startswith("pkictl: %s: " % status), out.stderr
    assert words in out.stderr, out.stderr


def eab_events():
    out = subprocess.run([PKICTL, "audit", JOURNAL, "--kind", "eab_created"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def files_written():
    """Every file under the test's directory: the journal, pkid's snapshot
    and logs, the tree and anything else pkid made there."""
    for top, _, names in os.walk(TMP):
        for name in names:
            yield os.path.join(top, name)


def test_create():
    kid, key = create()
    raw = b64url_decode(key)
    assert len(raw) == 32
    assert raw == expected_key(kid), "the key is not HMAC-SHA256(master, label || 0 || kid)"


def test_master_key_file():
    assert os.path.getsize(MASTER) == 32
    assert stat.S_IMODE(os.stat(MASTER).st_mode) == 0o600, oct(os.stat(MASTER).st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(MASTER)).st_mode) == 0o700


def test_two_keys_differ():
    a, b = create(), create()
    assert a[0] != b[0] and a[1] != b[1], (a, b)
    for kid, key in (a, b):
        assert b64url_decode(key) == expected_key(kid)


def test_refusals():
    # redis's identity is in the catalogue but not an admin.
    refused("postgres", "PERMISSION_DENIED", "admin", as_service="redis")
    refused("no-such-service", "NOT_FOUND", "no-such-service")
    # siem-feed has only a client certificate (checked in the catalogue,
    # so that the case stays what it says).
    text = open(CATALOG).read()
    block = text[text.index("- name: siem-feed"):]
    block = block[:block.index("- name:", 1)]
    assert "usage: client" in block and "usage: server" not in block, block
    refused("siem-feed", "INVALID_ARGUMENT", "server certificate")
    # And locally, before any call: a service is required.
    out = subprocess.run([PKICTL, "acme", "eab", "create", "--pki", PKI, "--as", "pki-agent",
                          "--server", "127.0.0.1:%d" % SERVER["pkid"].grpc],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "--service" in out.stderr, out
    out = subprocess.run([PKICTL, "acme", "eab"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "eab create --service" in out.stderr, out
    help_text = subprocess.run([PKICTL, "help"], capture_output=True, text=True).stdout
    assert "acme eab create --service NAME" in help_text


def test_journal():
    events = eab_events()
    assert [e["detail"] for e in events] == [kid for kid, _ in STATE["made"]], events
    for e in events:
        assert e["kind"] == "eab_created" and e["outcome"] == "ok", e
        assert e["identity"] == AGENT_ID and e["service"] == "postgres", e


def key_nowhere():
    """No key made, in any spelling, in a file under the test's directory."""
    needles = []
    for _, key in STATE["made"]:
        raw = b64url_decode(key)
        needles += [key.encode(), raw, base64.b64encode(raw).rstrip(b"="), raw.hex().encode()]
    searched = 0
    for path in files_written():
        data = open(path, "rb").read()
        searched += 1
        for n in needles:
            assert n not in data, "an EAB key is in %s" % path
    assert searched > 0 and os.listdir(JOURNAL)


def test_key_nowhere():
    # A stop writes the snapshot too; then pkid serves again.
    assert SERVER["pkid"].stop() == 0
    key_nowhere()
    SERVER["pkid"] = Pkid(PKID, PKI, TMP, args=ACME).start()


def test_cancelled_calls():
    """Calls that go away before their record is durable: pkid drops the
    answer and goes on (under ASan, the freed call is never touched)."""
    with channel(SERVER["pkid"], PKI) as ch:
        call = method(ch, "CreateAcmeEab", pki_pb2.CreateAcmeEabRequest,
                      pki_pb2.CreateAcmeEabResponse)
        futures = [call.future(pki_pb2.CreateAcmeEabRequest(service="postgres"), timeout=10)
                   for _ in range(20)]
        for f in futures:
            f.cancel()
        for f in futures:
            try:
                f.result()
            except grpc.FutureCancelledError:
                pass
        # The same channel answers the next one.
        r = call(pki_pb2.CreateAcmeEabRequest(service="postgres"), timeout=10)
        assert KID_RE.fullmatch(r.kid) and b64url_decode(r.hmac_key) == expected_key(r.kid)
        STATE["made"].append((r.kid, r.hmac_key))
    assert SERVER["pkid"].proc.poll() is None
    create()


def test_acme_off():
    assert SERVER["pkid"].stop() == 0
    SERVER["pkid"] = Pkid(PKID, PKI, TMP, args=NO_ACME, log_name="pkid-no-acme.log").start()
    refused("postgres", "FAILED_PRECONDITION", "ACME is not enabled on this pkid")
    # The other refusals come first, as for a pkid with ACME.
    refused("postgres", "PERMISSION_DENIED", "admin", as_service="redis")


def test_restart():
    master = open(MASTER, "rb").read()
    assert SERVER["pkid"].stop() == 0
    SERVER["pkid"] = Pkid(PKID, PKI, TMP, args=ACME, log_name="pkid-restarted.log").start()
    kid, key = create()
    assert b64url_decode(key) == expected_key(kid)
    assert open(MASTER, "rb").read() == master, "the master key changed across a restart"
    assert stat.S_IMODE(os.stat(MASTER).st_mode) == 0o600
    kids = [e["detail"] for e in eab_events()]
    assert len(kids) == len(set(kids)) and kids[-1] == kid, kids


def test_key_nowhere_after_stop():
    assert SERVER["pkid"].stop() == 0
    key_nowhere()


try:
    run("create", test_create)
    run("master_key_file", test_master_key_file)
    run("two_keys_differ", test_two_keys_differ)
    run("refusals", test_refusals)
    run("journal", test_journal)
    run("key_nowhere", test_key_nowhere)
    run("cancelled_calls", test_cancelled_calls)
    run("acme_off", test_acme_off)
    run("restart", test_restart)
    run("key_nowhere_after_stop", test_key_nowhere_after_stop)
finally:
    SERVER["pkid"].kill()
finish()
