#!/usr/bin/python3
"""crl_test: pkid's CRLs, judged by implementations we did not write.

  - openssl: `openssl verify -crl_check` / `-crl_check_all` (and with
    `-use_deltas`) accept a good client certificate and refuse a revoked
    one with pkid's complete and delta CRLs and the ceremony's root CRL;
    `openssl crl -text` shows the entry, its reason and invalidity date,
    the CRL number, freshestCRL and the critical deltaCRLIndicator;
  - Python cryptography: signatures, entries (CRLReason, InvalidityDate,
    no reasonCode for unspecified), issuer, cRLNumber, AKI = the CA's SKI,
    deltaCRLIndicator, nextUpdate - thisUpdate = the configured validity;
  - HTTP: cache headers agree with the CRL (Last-Modified = thisUpdate,
    Expires = nextUpdate, max-age), HEAD, If-None-Match / 304, 404, and
    the files in pki/crl are what is served;
  - numbering: cRLNumber grows across a SIGTERM restart and across kill -9
    right after a revocation, and the revocation is kept;
  - a burst of 1000 revocations makes a handful of CRLs holding them all;
  - revocation by key: revoke_same_key revokes exactly the unrevoked
    certificates of that key (any service, any CA, a compressed point too);
    the key is refused from then on (Issue, IssueStream, Renew), across a
    restart; the same through `pkictl revoke --same-key` in another TZ;
  - offline (ceremony) certificates revoked land on their CA's CRL;
  - every complete/delta pair seen obeys complete = base + delta, expired
    entries leave with removeFromCRL after one CRL past their notAfter,
    and the journal verifies after all the kill -9s;
  - delta semantics with short intervals: a delta lists only what came
    after its base, and openssl with base + delta sees both revocations.

Usage: crl_test.py PKICTL PKID PROTO
"""
import concurrent.futures
import datetime
import email.utils
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pkidtest import Pkid, channel, copy_tree, demo_tree, expect_status, load_proto, method  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)

# The main pkid: a validity and delta interval of our own, to see them honoured.
VALIDITY_S = 7200
DELTA_INTERVAL_S = 60
MAIN_ARGS = ["--crl-validity-s", str(VALIDITY_S), "--crl-delta-interval-s",
             str(DELTA_INTERVAL_S)]
SERVER = Pkid(PKID, PKI, TMP, MAIN_ARGS)

CA = "agents-ca"
ROOT = os.path.join(PKI, "root-ca/certs/root-ca.crt")
AGENTS_CA = os.path.join(PKI, "intermediate-ca/agents-ca/certs/agents-ca.crt")
CHAIN = os.path.join(TMP, "root-and-agents.pem")
with open(CHAIN, "wb") as _f:
    _f.write(open(ROOT, "rb").read() + open(AGENTS_CA, "rb").read())
CA_CERT = x509.load_pem_x509_certificate(open(AGENTS_CA, "rb").read())
R = pki_pb2

# Every cRLNumber of agents-ca ever served by the main pkid's tree, and
# the serials of each complete CRL seen (number -> set).
SEEN_NUMBERS = set()
COMPLETES = {}
# Filled by case 1 for the cases after it.
STATE = {}
KEYS = {}  # serial -> the private key of every certificate issued here


# --- helpers ----------------------------------------------------------------------------------

def csr_for(key, cn="pki-agent"):
    return x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def issue(ch, key=None, usage=None, service="", validity=0, csr=None):
    """A certificate (by default for pki-agent's own service, agents-ca):
    (response, PEM path)."""
    key = key or new_key()
    r = method(ch, "Issue", R.IssueRequest, R.IssueResponse)(
        R.IssueRequest(csr=csr or csr_for(key), usage=usage or R.USAGE_CLIENT, service=service,
                       validity_seconds=validity), timeout=15)
    KEYS[r.serial] = key
    path = os.path.join(TMP, "leaf-%s.pem" % r.serial)
    with open(path, "wb") as f:
        f.write(x509.load_der_x509_certificate(r.certificate).public_bytes(
            serialization.Encoding.PEM))
    return r, path


def revoke(ch, serial, reason, invalidity=0, same_key=False):
    return method(ch, "Revoke", R.RevokeRequest, R.RevokeResponse)(
        R.RevokeRequest(serial=serial, reason=reason, invalidity_date=invalidity,
                        revoke_same_key=same_key), timeout=15)


def status(ch, serial):
    return method(ch, "GetStatus", R.GetStatusRequest, R.CertificateStatus)(
        R.GetStatusRequest(serial=serial), timeout=15)


def fetch(server, path, verb="GET", headers=None):
    """(status, headers as a dict, body) of one plain HTTP request to pkid."""
    conn = http.client.HTTPConnection("127.0.0.1", server.ocsp, timeout=10)
    try:
        conn.request(verb, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def crl_of(server, ca=CA, delta=False, record=True):
    """The CRL served now (parsed), with its DER; None while it is not built yet."""
    st, _, body = fetch(server, "/crl/%s%s.crl" % (ca, "-delta" if delta else ""))
    if st == 503:
        return None, None
    assert st == 200, "GET /crl/%s: status %d %r" % (ca, st, body[:80])
    crl = x509.load_der_x509_crl(body)
    if record and ca == CA and server is SERVER:
        SEEN_NUMBERS.add(number(crl))
        if not delta:
            COMPLETES.setdefault(number(crl), serials_of(crl))
    return crl, body


def number(crl):
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def delta_base(crl):
    return crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number


def serials_of(crl):
    return {r.serial_number for r in crl}


def pair_of(server):
    """A complete CRL and the delta of the same build."""
    for _ in range(20):
        full, _ = crl_of(server)
        delta, _ = crl_of(server, delta=True)
        if full is not None and delta is not None and number(full) == number(delta):
            return full, delta
        time.sleep(0.1)
    raise AssertionError("no complete and delta CRL of one number")


def check_pair(server, full, delta, completes):
    """RFC 5280 5.2.4: the base and the delta together say what the
    complete CRL issued with the delta says. False when the base is unknown."""
    assert number(full) == number(delta), (number(full), number(delta))
    base = delta_base(delta)
    assert base < number(delta), "delta %d refers to base %d" % (number(delta), base)
    if base not in completes:
        # A base logged with no entries is known too.
        if any(int(e["number"]) == base and e["entries"] == "0" for e in log_events(server)):
            completes[base] = set()
        else:
            return False
    removed = {r.serial_number for r in delta
               if reason_of(r) == x509.ReasonFlags.remove_from_crl}
    added = serials_of(delta) - removed
    assert not (removed - completes[base]), "removeFromCRL for serials the base lacks"
    want = (completes[base] | added) - removed
    got = serials_of(full)
    assert got == want, ("complete %d != base %d + delta %d: %d missing from the complete "
                         "CRL, %d missing from base+delta (e.g. %s)") % (
        number(full), base, number(delta), len(want - got), len(got - want),
        ["%x" % x for x in list(got ^ want)[:3]])
    return True


def wait_crl(server, pred, what, delta=False, timeout=5.0, ca=CA):
    """Polls the served CRL until pred(crl); returns (crl, der, seconds waited)."""
    t0 = time.time()
    last = None
    for _ in range(int(timeout / 0.05) + 1):
        crl, der = crl_of(server, ca, delta)
        if crl is not None:
            last = crl
            if pred(crl):
                return crl, der, time.time() - t0
        if time.time() - t0 > timeout:
            break
        time.sleep(0.05)
    raise AssertionError("no %s CRL of %s with %s within %.1f s (last number %s, %d entries)" % (
        "delta" if delta else "complete", ca, what, timeout,
        number(last) if last is not None else None, len(last) if last is not None else 0))


def save(der, name):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(der)
    return path


def openssl(*args):
    out = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout + out.stderr


def verify(leaf, crls, *flags):
    args = ["verify"] + list(flags) + ["-CAfile", CHAIN]
    for c in crls:
        args += ["-CRLfile", c]
    return openssl(*(args + [leaf]))


def der_to_pem(der, name):
    path = os.path.join(TMP, name)
    code, text = openssl("crl", "-inform", "DER", "-in", save(der, name + ".der"), "-out", path)
    assert code == 0, text
    return path


def log_events(server, start=0, event="crl_published", ca=CA):
    out = []
    for line in server.log()[start:].splitlines():
        if ('"event":"%s"' % event) not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if ca is None or rec.get("ca") == ca:
            out.append(rec)
    return out


def utc(dt):
    return dt if dt.tzinfo else dt.replace(tzinfo=datetime.timezone.utc)


def last_update(crl):
    return utc(getattr(crl, "last_update_utc", None) or crl.last_update)


def next_update(crl):
    return utc(getattr(crl, "next_update_utc", None) or crl.next_update)


def invalidity_of(entry):
    v = entry.extensions.get_extension_for_class(x509.InvalidityDate).value
    return utc(getattr(v, "invalidity_date_utc", None) or v.invalidity_date)


def reason_of(entry):
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None


# --- 1. openssl -------------------------------------------------------------------------------

def test_openssl_verify_and_text():
    invalidity = int(time.time()) - 3600
    with channel(SERVER, PKI) as ch:
        good, good_pem = issue(ch)
        bad, bad_pem = issue(ch)
        t0 = time.time()
        revoked = revoke(ch, bad.serial, R.REVOCATION_REASON_KEY_COMPROMISE, invalidity)
    serial = int(bad.serial, 16)
    STATE["revoked_at"] = revoked.revoked_at
    crl, der, waited = wait_crl(SERVER, lambda c: serial in serials_of(c),
                                "the revoked serial")
    took = time.time() - t0
    with channel(SERVER, PKI) as ch:
        expect_status(lambda: issue(ch, key=KEYS[bad.serial]), grpc.StatusCode.PERMISSION_DENIED,
                      "keyCompromise")
    assert took < 3.5, "the CRL came %.1f s after the revocation (batch 1 s)" % took
    delta, delta_der, _ = wait_crl(SERVER, lambda c: serial in serials_of(c),
                                   "the revoked serial", delta=True)
    full_now, delta_now = pair_of(SERVER)
    assert check_pair(SERVER, full_now, delta_now, COMPLETES), \
        "base %d of agents-ca never seen" % delta_base(delta_now)
    st, _, root_der = fetch(SERVER, "/crl/root.crl")
    assert st == 200, "root.crl: %d" % st
    STATE.update(good=good, bad=bad, good_pem=good_pem, bad_pem=bad_pem, invalidity=invalidity,
                 crl=crl, der=der, delta=delta, delta_der=delta_der, root_der=root_der)
    # A published log line says so too.
    assert any(int(e["entries"]) >= 1 for e in log_events(SERVER)), "no crl_published entries>=1"

    full_pem = der_to_pem(der, "agents.crl.pem")
    delta_pem = der_to_pem(delta_der, "agents-delta.crl.pem")
    root_pem = der_to_pem(root_der, "root.crl.pem")
    # Leaf only.
    code, text = verify(good_pem, [full_pem], "-crl_check")
    assert code == 0 and ": OK" in text, "good, -crl_check: " + text
    code, text = verify(bad_pem, [full_pem], "-crl_check")
    assert code != 0 and "certificate revoked" in text, "revoked, -crl_check: " + text
    # The whole chain: the root's CRL (offline ceremony) for agents-ca.
    code, text = verify(good_pem, [root_pem, full_pem], "-crl_check_all")
    assert code == 0 and ": OK" in text, "good, -crl_check_all: " + text
    code, text = verify(bad_pem, [root_pem, full_pem], "-crl_check_all")
    assert code != 0 and "certificate revoked" in text, "revoked, -crl_check_all: " + text
    # Without agents-ca's CRL the chain is not checkable: the CRLs are what is used.
    code, text = verify(good_pem, [root_pem], "-crl_check_all")
    assert code != 0 and "unable to get certificate CRL" in text, "no leaf CRL: " + text
    for flags in (["-crl_check_all", "-use_deltas"],
                  ["-crl_check_all", "-use_deltas", "-extended_crl"]):
        code, text = verify(good_pem, [root_pem, full_pem, delta_pem], *flags)
        assert code == 0 and ": OK" in text, "good, %s: %s" % (flags, text)
        code, text = verify(bad_pem, [root_pem, full_pem, delta_pem], *flags)
        assert code != 0 and "certificate revoked" in text, "revoked, %s: %s" % (flags, text)

    # openssl crl -text of each.
    hexserial = "%X" % serial
    if len(hexserial) % 2:
        hexserial = "0" + hexserial
    inv = datetime.datetime.fromtimestamp(invalidity, datetime.timezone.utc)
    inv_text = inv.strftime("%b %e %H:%M:%S %Y GMT")
    for name, blob, is_delta in (("complete", der, False), ("delta", delta_der, True)):
        code, text = openssl("crl", "-inform", "DER", "-in", save(blob, name + ".crl"),
                             "-text", "-noout")
        assert code == 0, text
        assert "Serial Number: " + hexserial in text, "%s lacks %s:\n%s" % (name, hexserial, text)
        assert "Key Compromise" in text, name + " lacks Key Compromise:\n" + text
        assert "Invalidity Date" in text and inv_text in text, \
            "%s lacks Invalidity Date %s:\n%s" % (name, inv_text, text)
        assert re.search(r"X509v3 CRL Number: *\n *%d\b" % number(crl), text), name + text
        assert "Authority Key Identifier" in text, text
        if is_delta:
            assert re.search(r"Delta CRL Indicator: critical\s*\n\s*\d+", text), text
            assert "Freshest CRL" not in text, text
        else:
            assert "Freshest CRL" in text and "/crl/agents-ca-delta.crl" in text, text
            assert "Delta CRL Indicator" not in text, text
    code, text = openssl("crl", "-inform", "DER", "-in", save(root_der, "root.crl"), "-text",
                         "-noout")
    assert code == 0 and "CRL Number" in text and "Root CA" in text, text
    # And openssl checks the signatures.
    for blob, ca in ((der, AGENTS_CA), (delta_der, AGENTS_CA), (root_der, ROOT)):
        code, text = openssl("crl", "-inform", "DER", "-in", save(blob, "sig.crl"), "-CAfile",
                             ca, "-noout")
        assert code == 0 and "verify OK" in text, text


# --- 2. Python cryptography ------------------------------------------------------------------

def test_cryptography():
    assert STATE, "needs case 1"
    crl, delta, bad = STATE["crl"], STATE["delta"], STATE["bad"]
    pub = CA_CERT.public_key()
    for name, c in (("complete", crl), ("delta", delta)):
        assert c.is_signature_valid(pub), name + ": signature does not verify with agents-ca"
        assert c.issuer == CA_CERT.subject, "%s issuer %s" % (name, c.issuer.rfc4514_string())
        entry = c.get_revoked_certificate_by_serial_number(int(bad.serial, 16))
        assert entry is not None, name + " lacks the revoked serial"
        assert reason_of(entry) == x509.ReasonFlags.key_compromise, reason_of(entry)
        inv = invalidity_of(entry)
        assert int(inv.timestamp()) == STATE["invalidity"], (inv, STATE["invalidity"])
        when = utc(getattr(entry, "revocation_date_utc", None) or entry.revocation_date)
        assert int(when.timestamp()) == STATE["revoked_at"], \
            "%s: revocationDate %s, Revoke said %d" % (name, when, STATE["revoked_at"])
        assert last_update(c).timestamp() >= STATE["revoked_at"], \
            "%s: thisUpdate %s before the revocation it lists" % (name, last_update(c))
        assert c.get_revoked_certificate_by_serial_number(int(STATE["good"].serial, 16)) is None
        aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = CA_CERT.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest, "AKI %s, SKI %s" % (
            aki.key_identifier.hex(), ski.digest.hex())
        assert c.signature_hash_algorithm.name == "sha256"
        assert last_update(c) <= datetime.datetime.now(datetime.timezone.utc) + \
            datetime.timedelta(seconds=2)
    assert number(delta) == number(crl), "one build, one number: %d %d" % (
        number(delta), number(crl))
    ext = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert ext.critical, "deltaCRLIndicator must be critical (RFC 5280 5.2.4)"
    assert delta_base(delta) < number(delta), (delta_base(delta), number(delta))
    try:
        crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
        raise AssertionError("the complete CRL has a deltaCRLIndicator")
    except x509.ExtensionNotFound:
        pass
    fresh = crl.extensions.get_extension_for_class(x509.FreshestCRL).value
    urls = [n.value for dp in fresh for n in (dp.full_name or [])]
    assert any(u.endswith("/crl/agents-ca-delta.crl") for u in urls), urls
    span = (next_update(crl) - last_update(crl)).total_seconds()
    assert span == VALIDITY_S, "complete: nextUpdate - thisUpdate = %s, want %d" % (
        span, VALIDITY_S)
    dspan = (next_update(delta) - last_update(delta)).total_seconds()
    assert dspan == 2 * DELTA_INTERVAL_S, "delta: nextUpdate - thisUpdate = %s, want %d" % (
        dspan, 2 * DELTA_INTERVAL_S)
    # The certificates point at these CRLs (cRLDistributionPoints): the
    # leaf at agents-ca's, agents-ca at the root's; the path serves it.
    leaf = x509.load_pem_x509_certificate(open(STATE["good_pem"], "rb").read())
    for cert, want in ((leaf, "/crl/agents-ca.crl"), (CA_CERT, "/crl/root.crl")):
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        urls = [n.value for dp in cdp for n in (dp.full_name or [])]
        assert len(urls) == 1 and urls[0].endswith(want), "%s: CDP %s, want ...%s" % (
            cert.subject.rfc4514_string(), urls, want)
        st, _, body = fetch(SERVER, urllib.parse.urlsplit(urls[0]).path)
        assert st == 200 and x509.load_der_x509_crl(body).issuer == cert.issuer, (urls, st)
    # The root's CRL, by the root's key.
    root = x509.load_der_x509_crl(STATE["root_der"])
    root_cert = x509.load_pem_x509_certificate(open(ROOT, "rb").read())
    assert root.is_signature_valid(root_cert.public_key()) and root.issuer == root_cert.subject


def tbs_fields(der):
    """The tags of the TBSCertList's fields, by a small DER walk."""
    def item(buf, i):
        tag, n = buf[i], buf[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(buf[i:i + k], "big")
            i += k
        return tag, buf[i:i + n], i + n
    _, outer, _ = item(der, 0)
    _, tbs, _ = item(outer, 0)
    tags, i = [], 0
    while i < len(tbs):
        tag, body, i = item(tbs, i)
        tags.append((tag, len(body)))
    return tags


def test_every_ca():
    """Each online CA's CRLs verify with its certificate; an empty one has
    no revokedCertificates field at all (RFC 5280 5.1.2.6), not an empty
    one."""
    for ca in ("agents-ca", "infrastructure-ca", "load-balancer-ca", "external-ca"):
        cert = x509.load_pem_x509_certificate(open(os.path.join(
            PKI, "intermediate-ca", ca, "certs", ca + ".crt"), "rb").read())
        for delta in (False, True):
            crl, der, _ = wait_crl(SERVER, lambda c: True, "any", delta=delta, ca=ca)
            assert crl.is_signature_valid(cert.public_key()), "%s: signature" % ca
            assert crl.issuer == cert.subject, ca
            tags = tbs_fields(der)
            assert tags[0] == (0x02, 1), "%s: version %s, want v2" % (ca, tags[0])
            if len(crl) == 0:
                assert (0x30, 0) not in tags, "%s: an empty revokedCertificates: %s" % (ca, tags)
            code, text = openssl("crl", "-inform", "DER", "-in", save(der, "any.crl"),
                                 "-CAfile", os.path.join(PKI, "intermediate-ca", ca, "certs",
                                                         ca + ".crt"), "-noout")
            assert code == 0 and "verify OK" in text, "%s: %s" % (ca, text)


def test_reasons_and_refusals():
    """Every reason pkid takes, as the CRL says it (none for unspecified);
    removeFromCRL and a future invalidity date refused."""
    reasons = {
        R.REVOCATION_REASON_UNSPECIFIED: None,
        R.REVOCATION_REASON_CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
        R.REVOCATION_REASON_AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
        R.REVOCATION_REASON_SUPERSEDED: x509.ReasonFlags.superseded,
        R.REVOCATION_REASON_CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
        R.REVOCATION_REASON_CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
        R.REVOCATION_REASON_PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
        R.REVOCATION_REASON_AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
    }
    want = {}
    with channel(SERVER, PKI) as ch:
        victim, _ = issue(ch)
        expect_status(lambda: revoke(ch, victim.serial, R.REVOCATION_REASON_REMOVE_FROM_CRL),
                      grpc.StatusCode.INVALID_ARGUMENT)
        expect_status(lambda: revoke(ch, victim.serial, R.REVOCATION_REASON_SUPERSEDED,
                                     invalidity=int(time.time()) + 3600),
                      grpc.StatusCode.INVALID_ARGUMENT)
        expect_status(lambda: revoke(ch, victim.serial, R.REVOCATION_REASON_SUPERSEDED,
                                     same_key=True),
                      grpc.StatusCode.INVALID_ARGUMENT)
        assert status(ch, victim.serial).state == R.CertificateStatus.STATE_GOOD
        for reason, flag in reasons.items():
            r, _ = issue(ch)
            revoke(ch, r.serial, reason)
            want[int(r.serial, 16)] = flag
    crl, _, _ = wait_crl(SERVER, lambda c: set(want) <= serials_of(c), "all reasons")
    for serial, flag in want.items():
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        assert reason_of(entry) == flag, "serial %x: reason %s, want %s" % (
            serial, reason_of(entry), flag)
        try:
            entry.extensions.get_extension_for_class(x509.InvalidityDate)
            raise AssertionError("serial %x: an invalidityDate nobody gave" % serial)
        except x509.ExtensionNotFound:
            pass
    assert int(victim.serial, 16) not in serials_of(crl), "a refused revocation is listed"


def test_offline_certificate():
    """redis's client certificate, made by `ceremony demo` (infrastructure-ca):
    revoked for keyCompromise with revoke_same_key, it is on
    infrastructure-ca's CRL, openssl refuses it, and its key is refused."""
    base = os.path.join(PKI, "service-certificates/infrastructure/redis/redis-client")
    cert = x509.load_pem_x509_certificate(open(base + ".crt", "rb").read())
    key = serialization.load_pem_private_key(open(base + ".key", "rb").read(), None)
    infra_path = os.path.join(PKI, "intermediate-ca/infrastructure-ca/certs/infrastructure-ca.crt")
    infra = x509.load_pem_x509_certificate(open(infra_path, "rb").read())
    serial = "%x" % cert.serial_number
    with channel(SERVER, PKI) as ch:
        for _ in range(100):  # imported in the background at start
            try:
                status(ch, serial)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                time.sleep(0.1)
        resp = revoke(ch, serial, R.REVOCATION_REASON_KEY_COMPROMISE, same_key=True)
        got = [int(x, 16) for x in resp.revoked_serials]
        assert got[:1] == [cert.serial_number], resp.revoked_serials
        expect_status(lambda: method(ch, "Issue", R.IssueRequest, R.IssueResponse)(
            R.IssueRequest(csr=csr_for(key, "redis"), usage=R.USAGE_CLIENT, service="redis"),
            timeout=15), grpc.StatusCode.PERMISSION_DENIED, "keyCompromise")
    crl, der, _ = wait_crl(SERVER, lambda c: cert.serial_number in serials_of(c),
                           "redis's offline certificate", ca="infrastructure-ca")
    assert crl.is_signature_valid(infra.public_key())
    assert reason_of(crl.get_revoked_certificate_by_serial_number(cert.serial_number)) == \
        x509.ReasonFlags.key_compromise
    chain = os.path.join(TMP, "root-and-infra.pem")
    with open(chain, "wb") as f:
        f.write(open(ROOT, "rb").read() + open(infra_path, "rb").read())
    code, text = openssl("verify", "-crl_check", "-CAfile", chain, "-CRLfile",
                         der_to_pem(der, "infra.crl.pem"), base + ".crt")
    assert code != 0 and "certificate revoked" in text, text


def test_pkictl_revoke():
    """`pkictl revoke --reason key-compromise --invalidity-date ...Z
    --same-key`, run in another time zone: both certificates of the key
    revoked, the CRL's invalidityDate the instant given (UTC), not shifted."""
    k = new_key()
    with channel(SERVER, PKI) as ch:
        one, _ = issue(ch, key=k)
        two, _ = issue(ch, key=k)
        other, _ = issue(ch)
    when = (int(time.time()) - 86400) // 60 * 60
    iso = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    env = dict(os.environ, TZ="America/New_York")
    out = subprocess.run([PKICTL, "revoke", "--pki", PKI, "--as", "pki-agent", "--server",
                          "127.0.0.1:%d" % SERVER.grpc, "--serial", one.serial, "--reason",
                          "key-compromise", "--invalidity-date", iso, "--same-key"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    for sr in (one, two):
        assert sr.serial in out.stdout, "pkictl did not print %s:\n%s" % (sr.serial, out.stdout)
    assert other.serial not in out.stdout
    want = {int(one.serial, 16), int(two.serial, 16)}
    crl, _, _ = wait_crl(SERVER, lambda c: want <= serials_of(c), "pkictl's revocations")
    assert int(other.serial, 16) not in serials_of(crl)
    for sn in want:
        e = crl.get_revoked_certificate_by_serial_number(sn)
        assert reason_of(e) == x509.ReasonFlags.key_compromise
        got = int(invalidity_of(e).timestamp())
        assert got == when, "invalidityDate %s for %s (%d), off by %d s" % (
            invalidity_of(e), iso, when, got - when)
    with channel(SERVER, PKI) as ch:
        assert status(ch, one.serial).invalidity_date == when


# --- 3. HTTP ----------------------------------------------------------------------------------

def http_date(s):
    return int(email.utils.parsedate_to_datetime(s).timestamp())


def check_headers(h, crl, kind):
    assert h.get("content-type") == "application/pkix-crl", h
    assert http_date(h["last-modified"]) == int(last_update(crl).timestamp()), \
        "%s Last-Modified %s, thisUpdate %s" % (kind, h["last-modified"], last_update(crl))
    assert http_date(h["expires"]) == int(next_update(crl).timestamp()), \
        "%s Expires %s, nextUpdate %s" % (kind, h["expires"], next_update(crl))
    m = re.fullmatch(r"public, no-transform, max-age=(\d+)", h.get("cache-control", ""))
    assert m, "%s Cache-Control %r" % (kind, h.get("cache-control"))
    left = next_update(crl).timestamp() - time.time()
    assert abs(int(m.group(1)) - left) <= 3, "%s max-age %s, %d s left" % (
        kind, m.group(1), left)
    assert h.get("etag") == '"%s-%s-%d"' % (CA, kind, number(crl)), \
        "%s ETag %s, number %d" % (kind, h.get("etag"), number(crl))


def check_files():
    """The files in pki/crl are what is served (written just after
    publication: retry a little)."""
    crl_dir = os.path.join(PKI, "crl")
    for delta in (False, True):
        name = "%s%s.crl" % (CA, "-delta" if delta else "")
        for _ in range(30):
            _, served = crl_of(SERVER, delta=delta)
            with open(os.path.join(crl_dir, name), "rb") as f:
                on_disk = f.read()
            pem = x509.load_pem_x509_crl(open(os.path.join(crl_dir, name + ".pem"), "rb").read())
            if on_disk == served and pem.public_bytes(serialization.Encoding.DER) == served:
                break
            time.sleep(0.1)
        assert on_disk == served, name + " on disk differs from the served CRL"
        assert pem.public_bytes(serialization.Encoding.DER) == served, name + ".pem differs"
        for f in (name, name + ".pem"):
            mode = os.stat(os.path.join(crl_dir, f)).st_mode & 0o777
            assert mode == 0o644, "%s mode %o" % (f, mode)


def check_metrics():
    crl, der = crl_of(SERVER)
    conn = http.client.HTTPConnection("127.0.0.1", SERVER.admin, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    m = re.search(r'^pkid_crl_number\{ca="%s"[^}]*\} (\d+)' % CA, text, re.M)
    assert m and int(m.group(1)) >= number(crl), "pkid_crl_number: %s" % (m and m.group(0))
    for want in ('pkid_crl_entries{ca="%s",kind="complete"}' % CA,
                 'pkid_crl_bytes{ca="%s",kind="delta"}' % CA,
                 'pkid_crl_builds_total{ca="%s",result="ok"}' % CA,
                 "pkid_crl_build_seconds",
                 'pkid_crl_this_update_timestamp_seconds{ca="%s",kind="complete"}' % CA,
                 'pkid_crl_next_update_timestamp_seconds{ca="%s",kind="delta"}' % CA):
        assert want in text, "metrics lack " + want


def test_http():
    for delta, kind in ((False, "complete"), (True, "delta")):
        path = "/crl/%s%s.crl" % (CA, "-delta" if delta else "")
        for attempt in range(3):  # a rebuild between the requests: once more
            st, h, body = fetch(SERVER, path)
            assert st == 200, (path, st)
            crl = x509.load_der_x509_crl(body)
            SEEN_NUMBERS.add(number(crl))
            st2, h2, body2 = fetch(SERVER, path, "HEAD")
            st3, h3, body3 = fetch(SERVER, path, headers={"If-None-Match": h["etag"]})
            if h2.get("etag") == h["etag"] == h3.get("etag"):
                break
        check_headers(h, crl, kind)
        assert int(h["content-length"]) == len(body)
        assert st2 == 200 and body2 == b"", "HEAD: %d, %d octets" % (st2, len(body2))
        for k in ("content-type", "last-modified", "expires", "etag", "content-length"):
            assert h2.get(k) == h.get(k), "HEAD %s: %r, GET %r" % (k, h2.get(k), h.get(k))
        assert st3 == 304 and body3 == b"", "If-None-Match current: %d, %d octets" % (
            st3, len(body3))
        assert h3.get("etag") == h["etag"], h3
        # A list with the current tag in it, and a weak one, match too.
        st4, _, _ = fetch(SERVER, path, headers={"If-None-Match": '"x", W/' + h["etag"]})
        assert st4 == 304, "If-None-Match list: %d" % st4
        old = '"%s-%s-%d"' % (CA, kind, number(crl) - 1)
        st5, _, body5 = fetch(SERVER, path, headers={"If-None-Match": old})
        assert st5 == 200 and x509.load_der_x509_crl(body5), "If-None-Match old: %d" % st5
    st, _, _ = fetch(SERVER, "/crl/%s.crl" % CA, headers={"If-None-Match": "*"})
    assert st == 304, "If-None-Match *: %d" % st
    st, _, body = fetch(SERVER, "/crl/%s.crl?x=1" % CA)
    assert st == 200 and x509.load_der_x509_crl(body), "with a query: %d" % st
    for path in ("/crl/no-such-ca.crl", "/crl/no-such-ca-delta.crl", "/crl/agents-ca.pem",
                 "/crl/../agents-ca.crl", "/ca/no-such-ca.crt", "/crl/root-delta.crl",
                 "/crl/agents-ca-delta-delta.crl", "/crl/.crl", "/crl/agents-ca"):
        st, _, _ = fetch(SERVER, path)
        assert st == 404, "%s: %d, want 404" % (path, st)
    # The CA certificate served is the one in the tree.
    st, h, body = fetch(SERVER, "/ca/%s.crt" % CA)
    assert st == 200 and body == CA_CERT.public_bytes(serialization.Encoding.DER), st
    check_files()
    check_metrics()


def test_503_before_first_build():
    """Right at start, before the first build: 503 with Retry-After (or
    already built: then a CRL). A later start of the same tree always has
    one soon."""
    tree = os.path.join(TMP, "fresh-pki")
    copy_tree(PKI, tree)
    p = Pkid(PKID, tree, TMP, log_name="fresh.log")
    try:
        p.start()
        st, h, body = fetch(p, "/crl/%s.crl" % CA)
        if st == 503:
            assert h.get("retry-after"), h
        else:
            assert st == 200, st
        crl, _, waited = wait_crl(p, lambda c: True, "any number", timeout=5)
        assert number(crl) >= 1
        delta, _, _ = wait_crl(p, lambda c: True, "any number", delta=True, timeout=5)
        assert delta_base(delta) >= 1
    finally:
        p.stop()


# --- 4. numbering -----------------------------------------------------------------------------

def max_logged():
    return max([int(e["number"]) for e in log_events(SERVER)] + [0])


def test_numbering_across_restarts():
    crl, _ = crl_of(SERVER)
    before = max(SEEN_NUMBERS | {number(crl), max_logged()})
    assert SERVER.stop() == 0, "SIGTERM: pkid did not exit 0"
    mark = len(SERVER.log())
    SERVER.start()
    crl, _, _ = wait_crl(SERVER, lambda c: True, "any number")
    assert number(crl) > before, "after SIGTERM: number %d, %d served before" % (
        number(crl), before)
    if STATE:
        assert int(STATE["bad"].serial, 16) in serials_of(crl), "case 1's entry lost"
    # kill -9 right after a revocation: its CRL may or may not be out.
    with channel(SERVER, PKI) as ch:
        r, _ = issue(ch)
        crl_of(SERVER)
        revoke(ch, r.serial, R.REVOCATION_REASON_SUPERSEDED)
    SERVER.kill()
    seen = max(SEEN_NUMBERS | {max_logged()})
    SERVER.start()
    crl, _, _ = wait_crl(SERVER, lambda c: int(r.serial, 16) in serials_of(c),
                         "the revocation acknowledged before kill -9")
    assert number(crl) > seen, "after kill -9: number %d, %d seen before" % (number(crl), seen)
    full, delta = pair_of(SERVER)
    assert int(r.serial, 16) in serials_of(full)
    assert check_pair(SERVER, full, delta, COMPLETES), \
        "after kill -9: the delta's base %d was never served" % delta_base(delta)
    assert log_events(SERVER, mark), "no crl_published after restart"
    # kill -9 at several points of the next CRL's making (batch tick 1 s).
    with channel(SERVER, PKI) as ch:
        pending = [issue(ch)[0] for _ in range(4)]
    for delay in (0.0, 0.4, 0.8, 1.1):
        with channel(SERVER, PKI) as ch:
            r = pending.pop()
            revoke(ch, r.serial, R.REVOCATION_REASON_SUPERSEDED)
        t_end = time.time() + delay
        while time.time() < t_end:
            crl_of(SERVER)
            time.sleep(0.05)
        SERVER.kill()
        seen = max(SEEN_NUMBERS | {max_logged()})
        for name in ("%s.crl" % CA, "%s-delta.crl" % CA):  # never torn
            on_disk = x509.load_der_x509_crl(open(os.path.join(PKI, "crl", name), "rb").read())
            assert number(on_disk) <= seen, "%s on disk: %d, more than served" % (
                name, number(on_disk))
        SERVER.start()
        crl, _, _ = wait_crl(SERVER, lambda c: int(r.serial, 16) in serials_of(c),
                             "the revocation before kill -9 (+%.1f s)" % delay)
        assert number(crl) > seen, "kill -9 +%.1f s: number %d, %d seen before" % (
            delay, number(crl), seen)
        full, delta = pair_of(SERVER)
        check_pair(SERVER, full, delta, COMPLETES)
    # SIGHUP: the CRLs go on, numbers too.
    before = max(SEEN_NUMBERS | {max_logged()})
    SERVER.signal(__import__("signal").SIGHUP)
    with channel(SERVER, PKI) as ch:
        r, _ = issue(ch)
        revoke(ch, r.serial, R.REVOCATION_REASON_SUPERSEDED)
    crl, _, _ = wait_crl(SERVER, lambda c: int(r.serial, 16) in serials_of(c),
                         "a revocation after SIGHUP")
    assert number(crl) > before and SERVER.proc.poll() is None
    st, _, _ = fetch(SERVER, "/crl/root.crl")
    assert st == 200, "root.crl after SIGHUP: %d" % st
    check_files()
    # Every number published since the first restart is new.
    nums = [int(e["number"]) for e in log_events(SERVER)]
    assert len(nums) == len(set(nums)), "a cRLNumber published twice: %s" % sorted(nums)


def test_journal_verifies():
    """After the kill -9s, the journal (CRL records included) verifies."""
    assert SERVER.stop() == 0
    out = subprocess.run([PKICTL, "journal", "verify", os.path.join(PKI, "journal")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "result:     ok" in out.stdout, out.stdout + out.stderr


# --- 5. burst ---------------------------------------------------------------------------------

N_BURST = 1000


def test_burst():
    reqs = [R.IssueRequest(csr=csr_for(new_key()), usage=R.USAGE_CLIENT, request_id=i + 1)
            for i in range(N_BURST)]
    with channel(SERVER, PKI) as ch:
        stream = method(ch, "IssueStream", R.IssueRequest, R.IssueResponse, streaming=True)
        got = list(stream(iter(reqs), timeout=120))
        bad = [r for r in got if r.status_code != 0]
        assert len(got) == N_BURST and not bad, "%d answers, failures: %s" % (
            len(got), [(r.request_id, r.status_code, r.status_message) for r in bad[:3]])
        serials = [r.serial for r in got]
        before, _ = crl_of(SERVER)
        mark = len(SERVER.log())
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda s: revoke(ch, s, R.REVOCATION_REASON_CESSATION_OF_OPERATION),
                          serials))
        took = time.time() - t0
    want = {int(s, 16) for s in serials} | serials_of(before)
    crl, _, _ = wait_crl(SERVER, lambda c: want <= serials_of(c), "all %d" % N_BURST, timeout=10)
    time.sleep(3)
    builds = log_events(SERVER, mark)
    assert 1 <= len(builds) <= 20, "%d CRLs of agents-ca for %d revocations in %.1f s" % (
        len(builds), N_BURST, took)
    final, _ = crl_of(SERVER)
    missing = want - serials_of(final)
    assert not missing, "%d revocations not in the final CRL" % len(missing)
    full, delta = pair_of(SERVER)
    check_pair(SERVER, full, delta, COMPLETES)
    assert want <= serials_of(delta) | COMPLETES.get(delta_base(delta), set()), \
        "the burst is neither in the delta nor in its base"
    assert final.is_signature_valid(CA_CERT.public_key())
    entry = final.get_revoked_certificate_by_serial_number(int(serials[0], 16))
    assert reason_of(entry) == x509.ReasonFlags.cessation_of_operation
    print("  burst: %d revocations in %.1f s, %d CRLs, final %d entries" % (
        N_BURST, took, len(builds), len(final)))


# --- 6. revocation by key ---------------------------------------------------------------------

def der(tag, body):
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def compressed_csr(key, cn="pki-agent"):
    """A PKCS#10 request whose SubjectPublicKeyInfo holds the compressed
    P-256 point of |key| (X9.62 allows it; pkid re-encodes it), signed."""
    point = key.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.CompressedPoint)
    alg = der(0x30, der(0x06, bytes.fromhex("2a8648ce3d0201")) +
              der(0x06, bytes.fromhex("2a8648ce3d030107")))
    spki = der(0x30, alg + der(0x03, b"\x00" + point))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]).public_bytes()
    info = der(0x30, der(0x02, b"\x00") + name + spki + b"\xa0\x00")
    sig = key.sign(info, ec.ECDSA(hashes.SHA256()))
    ecdsa_sha256 = der(0x30, der(0x06, bytes.fromhex("2a8648ce3d040302")))
    return der(0x30, info + ecdsa_sha256 + der(0x03, b"\x00" + sig))


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_revoke_same_key():
    """3 certificates of key K for pki-agent, one more for vault (another
    service, another CA), one of K already revoked, 2 of other keys."""
    k = new_key()
    invalidity = int(time.time()) - 60
    with channel(SERVER, PKI) as ch:
        # The third one asked with K's point compressed: the same key.
        same = [issue(ch, key=k, usage=R.USAGE_CLIENT)[0], issue(ch, key=k)[0],
                issue(ch, key=k, csr=compressed_csr(k))[0]]
        vault, _ = issue(ch, key=k, usage=R.USAGE_SERVER, service="vault")
        earlier, _ = issue(ch, key=k)
        revoke(ch, earlier.serial, R.REVOCATION_REASON_SUPERSEDED)
        others = [issue(ch)[0] for _ in range(2)]
        resp = revoke(ch, same[1].serial, R.REVOCATION_REASON_KEY_COMPROMISE,
                      invalidity=invalidity, same_key=True)
        got = list(resp.revoked_serials)
        want = [s.serial for s in same] + [vault.serial]
        assert got and got[0] == same[1].serial, "the one named first: %s" % got
        assert sorted(got) == sorted(want), \
            "revoked_serials %s, want the 4 unrevoked of key K %s (not %s)" % (
                got, want, earlier.serial)
        for s in same + [vault]:
            st = status(ch, s.serial)
            assert st.state == R.CertificateStatus.STATE_REVOKED, (s.serial, st.state)
            assert st.revocation_reason == R.REVOCATION_REASON_KEY_COMPROMISE, st
            assert st.invalidity_date == invalidity, (st.invalidity_date, invalidity)
            assert st.revoked_at == resp.revoked_at, (st.revoked_at, resp.revoked_at)
        st = status(ch, earlier.serial)
        assert st.revocation_reason == R.REVOCATION_REASON_SUPERSEDED, \
            "an earlier revocation changed: %s" % st
        for s in others:
            assert status(ch, s.serial).state == R.CertificateStatus.STATE_GOOD, s.serial
        # K is refused everywhere: Issue, another service, IssueStream, Renew.
        expect_status(lambda: issue(ch, key=k), grpc.StatusCode.PERMISSION_DENIED,
                      "keyCompromise")
        expect_status(lambda: issue(ch, key=k, usage=R.USAGE_SERVER, service="vault"),
                      grpc.StatusCode.PERMISSION_DENIED, "keyCompromise")
        # The same key with its point compressed in the CSR is the same key.
        expect_status(lambda: method(ch, "Issue", R.IssueRequest, R.IssueResponse)(
            R.IssueRequest(csr=compressed_csr(k), usage=R.USAGE_CLIENT), timeout=15),
            grpc.StatusCode.PERMISSION_DENIED, "keyCompromise")
        stream = method(ch, "IssueStream", R.IssueRequest, R.IssueResponse, streaming=True)
        answers = list(stream(iter([R.IssueRequest(csr=csr_for(k), usage=R.USAGE_CLIENT,
                                                   request_id=1),
                                    R.IssueRequest(csr=csr_for(new_key()),
                                                   usage=R.USAGE_CLIENT, request_id=2)]),
                              timeout=15))
        by_id = {a.request_id: a for a in answers}
        assert by_id[1].status_code == grpc.StatusCode.PERMISSION_DENIED.value[0] and \
            "keyCompromise" in by_id[1].status_message, by_id[1]
        assert by_id[2].status_code == 0 and by_id[2].certificate, by_id[2]
        holder_key = new_key()
        holder, _ = issue(ch, key=holder_key)  # another key: fine
    cert = x509.load_der_x509_certificate(holder.certificate)
    chain_pem = cert.public_bytes(serialization.Encoding.PEM) + b"".join(
        x509.load_der_x509_certificate(c).public_bytes(serialization.Encoding.PEM)
        for c in holder.chain)
    with channel(SERVER, PKI, key_and_chain=(key_pem(holder_key), chain_pem)) as ch:
        renew = method(ch, "Renew", R.RenewRequest, R.IssueResponse)
        expect_status(lambda: renew(R.RenewRequest(csr=csr_for(k)), timeout=15),
                      grpc.StatusCode.PERMISSION_DENIED, "keyCompromise")
        assert renew(R.RenewRequest(csr=csr_for(new_key())), timeout=15).certificate
    ks = {int(s.serial, 16) for s in same}
    crl, _, _ = wait_crl(SERVER, lambda c: ks <= serials_of(c), "the 3 serials of key K")
    for s in others:
        assert int(s.serial, 16) not in serials_of(crl), "a certificate of another key listed"
    for s in ks:
        e = crl.get_revoked_certificate_by_serial_number(s)
        assert reason_of(e) == x509.ReasonFlags.key_compromise, reason_of(e)
        assert int(invalidity_of(e).timestamp()) == invalidity
    assert reason_of(crl.get_revoked_certificate_by_serial_number(int(earlier.serial, 16))) == \
        x509.ReasonFlags.superseded
    infra = x509.load_pem_x509_certificate(open(os.path.join(
        PKI, "intermediate-ca/infrastructure-ca/certs/infrastructure-ca.crt"), "rb").read())
    icrl, _, _ = wait_crl(SERVER, lambda c: int(vault.serial, 16) in serials_of(c),
                          "vault's certificate of key K", ca="infrastructure-ca")
    assert icrl.is_signature_valid(infra.public_key()) and icrl.issuer == infra.subject
    # The journal keeps the refusal.
    assert SERVER.stop() == 0
    SERVER.start()
    with channel(SERVER, PKI) as ch:
        expect_status(lambda: issue(ch, key=k), grpc.StatusCode.PERMISSION_DENIED,
                      "keyCompromise")
        if STATE:  # case 1's key, revoked without revoke_same_key
            expect_status(lambda: issue(ch, key=KEYS[STATE["bad"].serial]),
                          grpc.StatusCode.PERMISSION_DENIED, "keyCompromise")
        issue(ch)


# --- 7. delta semantics -----------------------------------------------------------------------

def test_delta_semantics():
    """--crl-interval-s 4, --crl-delta-interval-s 2: A revoked, a new base
    that holds A, then B: the delta lists B, not A, against that base; the
    complete lists both; openssl with base + delta refuses both. C, valid 5
    s and revoked, stays on one CRL issued after it expired, then leaves
    the complete CRL with removeFromCRL in the delta. Every complete/delta
    pair seen obeys complete = base + delta."""
    tree = os.path.join(TMP, "delta-pki")
    copy_tree(PKI, tree, skip=("journal", "crl"))
    os.makedirs(os.path.join(tree, "crl"))
    shutil.copy(os.path.join(PKI, "crl", "root.crl"), os.path.join(tree, "crl"))
    p = Pkid(PKID, tree, TMP, ["--crl-interval-s", "4", "--crl-delta-interval-s", "2"],
             log_name="delta.log")
    sets, ders, tus, deltas = {}, {}, {}, {}  # by cRLNumber
    checked = [0]

    def watch(pred, what, delta, timeout):
        t0 = time.time()
        for _ in range(int(timeout / 0.05) + 1):
            c, d = crl_of(p)
            dc, dd = crl_of(p, delta=True)
            if c is not None:
                sets.setdefault(number(c), serials_of(c))
                ders.setdefault(number(c), d)
                tus.setdefault(number(c), last_update(c))
            if dc is not None:
                deltas.setdefault(number(dc), (dc, dd))
                if c is not None and number(c) == number(dc) and \
                        check_pair(p, c, dc, sets):
                    checked[0] += 1
            target = (dc, dd) if delta else (c, d)
            if target[0] is not None and pred(target[0]):
                return target
            if time.time() - t0 > timeout:
                break
            time.sleep(0.05)
        raise AssertionError("no %s CRL with %s within %d s" % (
            "delta" if delta else "complete", what, timeout))

    try:
        p.start()
        with channel(p, PKI) as ch:
            good, good_pem = issue(ch)
            a, a_pem = issue(ch)
            b, b_pem = issue(ch)
            c_resp, _ = issue(ch, validity=5)
            revoke(ch, a.serial, R.REVOCATION_REASON_SUPERSEDED)
            revoke(ch, c_resp.serial, R.REVOCATION_REASON_PRIVILEGE_WITHDRAWN)
            sa, sc = int(a.serial, 16), int(c_resp.serial, 16)
            with_a, _ = watch(lambda c: {sa, sc} <= serials_of(c), "A and C", False, 5)
            n_a = number(with_a)
            # A new base that holds A: a delta that refers to it.
            watch(lambda c: delta_base(c) >= n_a, "a base >= %d" % n_a, True, 12)
            revoke(ch, b.serial, R.REVOCATION_REASON_AFFILIATION_CHANGED)
        sb = int(b.serial, 16)
        dc, dd = watch(lambda c: sb in serials_of(c), "B", True, 5)
        full, full_der = watch(lambda c: sb in serials_of(c), "B", False, 5)
        assert sa not in serials_of(dc), "the delta lists A, which its base %d holds" % (
            delta_base(dc))
        base = delta_base(dc)
        assert base >= n_a and base < number(dc), (base, n_a, number(dc))
        assert base in sets, "base %d never served as a complete CRL (seen %s)" % (
            base, sorted(sets))
        assert sa in sets[base] and sb not in sets[base], \
            "base %d: A %s, B %s" % (base, sa in sets[base], sb in sets[base])
        assert {sa, sb} <= serials_of(full), "the complete CRL lacks A or B"
        assert number(full) >= number(dc)
        assert dc.is_signature_valid(CA_CERT.public_key())
        # openssl with the base and the delta: A from the base, B from the delta.
        base_pem = der_to_pem(ders[base], "base.crl.pem")
        delta_pem = der_to_pem(dd, "delta-b.crl.pem")
        flags = ["-crl_check", "-use_deltas", "-extended_crl"]
        code, text = verify(b_pem, [base_pem], "-crl_check")
        assert code == 0, "B with the base alone should pass: " + text
        for leaf, revoked in ((good_pem, False), (a_pem, True), (b_pem, True)):
            code, text = verify(leaf, [base_pem, delta_pem], *flags)
            if revoked:
                assert code != 0 and "certificate revoked" in text, "base+delta: " + text
            else:
                assert code == 0 and ": OK" in text, "base+delta, good: " + text

        # C expires: on one CRL issued after its notAfter, then gone.
        c_after = x509.load_der_x509_certificate(c_resp.certificate)
        not_after = utc(getattr(c_after, "not_valid_after_utc", None) or
                        c_after.not_valid_after)
        gone, _ = watch(lambda c: sc not in serials_of(c), "C dropped", False, 15)
        n_gone = number(gone)
        assert any(sc in sets[n] and tus[n] > not_after for n in sets if n < n_gone), \
            "C (notAfter %s) left before a CRL issued after its expiry: %s" % (
                not_after, sorted((n, str(tus[n]), sc in sets[n]) for n in sets))
        watch(lambda d: number(d) >= n_gone, "the delta of %d" % n_gone, True, 5)
        assert n_gone in deltas, "the delta numbered %d never seen" % n_gone
        d_gone = deltas[n_gone][0]
        check_pair(p, gone, d_gone, sets)
        gbase = delta_base(d_gone)
        if gbase >= n_a:  # a base that held C: the delta says it left
            e = d_gone.get_revoked_certificate_by_serial_number(sc)
            assert e is not None and reason_of(e) == x509.ReasonFlags.remove_from_crl, \
                "delta %d (base %d holds C) lacks removeFromCRL for C: %s" % (
                    n_gone, gbase, reason_of(e) if e else None)
        else:
            print("  note: delta %d's base %d predates C; no removeFromCRL expected" % (
                n_gone, gbase))
        # A restart replays to the same decisions: C stays out, A and B in.
        assert p.stop() == 0
        p.start()
        t_end = time.time() + 3
        while time.time() < t_end:
            c, _ = watch(lambda c: True, "any", False, 5)
            assert sc not in serials_of(c), "C is back on CRL %d after a restart" % number(c)
            assert {sa, sb} <= serials_of(c), "A or B gone after a restart"
            time.sleep(0.2)
        assert checked[0] >= 3, "only %d complete/delta pairs checked" % checked[0]
        print("  delta: %d pairs checked against their base" % checked[0])
    finally:
        p.stop()


try:
    SERVER.start()
    run("openssl_verify_and_text", test_openssl_verify_and_text)
    run("cryptography", test_cryptography)
    run("reasons_and_refusals", test_reasons_and_refusals)
    run("offline_certificate", test_offline_certificate)
    run("every_ca", test_every_ca)
    run("pkictl_revoke", test_pkictl_revoke)
    run("http", test_http)
    run("503_before_first_build", test_503_before_first_build)
    run("numbering_across_restarts", test_numbering_across_restarts)
    run("burst", test_burst)
    run("revoke_same_key", test_revoke_same_key)
    run("delta_semantics", test_delta_semantics)
    run("journal_verifies", test_journal_verifies)
finally:
    try:
        SERVER.stop()
    finally:
        SERVER.kill()
finish()
