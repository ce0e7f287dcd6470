#!/usr/bin/python3
"""hsm_test: the hierarchy's keys in PKCS#11 tokens (SoftHSM2), end to end.

The test makes its own SoftHSM2 store (a temporary SOFTHSM2_CONF) with two
tokens, initialized with softhsm2-util: pkid-root for the root and
pkid-online for the intermediates. The catalogue is the deployed one with
the root made ECDSA P-384 and external-ca Ed25519, so that each signing
mechanism (CKM_ECDSA over SHA-256 and SHA-384, CKM_EDDSA) is used.

  - token_hierarchy: `pkictl ceremony demo --root-pkcs11 --pkcs11` makes
    the whole demo hierarchy with every CA key in a token (a URI file in
    the tree, no sealed key); every certificate passes `openssl verify
    -x509_strict` and Python cryptography's signature check;
  - keys_stay_in_token: PyKCS11 (a PKCS#11 client we did not write) finds
    each CA key sensitive, never extractable, and C_GetAttributeValue on
    CKA_VALUE refused; the root token no longer takes the PIN it was
    initialized with (the ceremony handed it to the split secret);
  - shares_rebuild_pin: `ceremony crl` with 2 of the 3 shares it needs is
    refused and the CRL is unchanged; with 3 it logs in to the root's
    token and signs a CRL that verifies under the root;
  - issue_through_token: pkid issues over gRPC (grpcio) from token-held
    intermediates of each key type, and answers OCSP (openssl ocsp) with
    responses signed in the token;
  - start_errors: a wrong PIN, a missing object, a missing module, a token
    that is not there, a key of another type than the catalogue's: pkid
    refuses to start, naming it, and writes no journal; ceremonies refuse
    a wrong PIN and a missing module and write nothing;
  - token_away_mid_load: the token's store removed under load: the calls
    that need it fail UNAVAILABLE, /readyz says 503 and pkid_ca_key_ready
    0, OCSP that would need a
    signature says tryLater, nothing is journaled for them; the store put back, pkid recovers (new login) and issues.

Usage: hsm_test.py PKICTL PKID PROTO CATALOG
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
import PyKCS11  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: E402
import pkidtest  # noqa: E402
from pkidtest import Pkid, channel, load_proto, make_csr, method, wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO, DEPLOY_CATALOG = (os.path.abspath(p) for p in sys.argv[1:5])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKENS = os.path.join(TMP, "tokens")
CONF = os.path.join(TMP, "softhsm2.conf")
# pkid, pkictl and PyKCS11 (in this process) all find the store by it.
os.environ["SOFTHSM2_CONF"] = CONF
# Under ASan, SoftHSM2's own leaks at exit are not ours (the file says why).
os.environ["LSAN_OPTIONS"] = "suppressions=" + os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "lib", "softhsm.lsan")
ENV = dict(os.environ)
PKI = os.path.join(TMP, "pki")
PASSPHRASE = os.path.join(TMP, "ca-passphrase")
INITIAL_PIN = os.path.join(TMP, "initial-pin")
ROOT_URI = "pkcs11:token=pkid-root?module-path=" + MODULE
ONLINE_URI = "pkcs11:token=pkid-online?module-path=" + MODULE
CATALOG = os.path.join(TMP, "catalog.yaml")
pki_pb2 = load_proto(PROTO, TMP)


def write_secret(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)


def setup():
    os.makedirs(TOKENS)
    with open(CONF, "w") as f:
        f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                % TOKENS)
    write_secret(INITIAL_PIN, "initial-pin-1234")
    write_secret(PASSPHRASE, os.urandom(16).hex())
    for label in ("pkid-root", "pkid-online"):
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                        "--so-pin", "so-pin-5678", "--pin", "initial-pin-1234"],
                       check=True, env=ENV, stdout=subprocess.DEVNULL)
    # One CA of each key type the tokens sign with.
    text = open(DEPLOY_CATALOG).read()
    for name, key in (("root", "ecdsa-p384"), ("external-ca", "ed25519")):
        at = text.index("  - name: %s\n" % name)
        k = text.index("key: ecdsa-p256", at)
        text = text[:k] + "key: " + key + text[k + len("key: ecdsa-p256"):]
    with open(CATALOG, "w") as f:
        f.write(text)


setup()
STATE = {}


def pkictl(*args, check=True):
    out = subprocess.run([PKICTL] + list(args), capture_output=True, text=True, env=ENV,
                         timeout=120)
    if check:
        assert out.returncode == 0, "pkictl %s: exit %d\n%s" % (args, out.returncode, out.stderr)
    return out


def p11_session(label, pin):
    lib = PyKCS11.PyKCS11Lib()
    lib.load(MODULE)
    for slot in lib.getSlotList(tokenPresent=True):
        if lib.getTokenInfo(slot).label.strip() == label:
            s = lib.openSession(slot)
            if pin is not None:
                s.login(pin)
            return lib, s
    raise AssertionError("no token " + label)


def objects_labelled(label, pin, name):
    lib, s = p11_session(label, pin)
    try:
        return s.findObjects([(PyKCS11.CKA_LABEL, name)])
    finally:
        s.closeSession()


def all_certs():
    """Every certificate file the ceremonies wrote, and the issuer of each."""
    out = []
    for d, _, files in os.walk(PKI):
        for name in files:
            if name.endswith(".crt") and not name.endswith("-chain.crt"):
                out.append(os.path.join(d, name))
    return out


def signed_by(cert, issuer):
    """Python cryptography's check of |cert|'s signature under |issuer|."""
    pub = issuer.public_key()
    if isinstance(pub, ed25519.Ed25519PublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes)
    else:
        pub.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))


def test_token_hierarchy():
    out = pkictl("ceremony", "demo", "--out", PKI, "--catalog", CATALOG, "--passphrase-file",
                 PASSPHRASE, "--root-pkcs11", ROOT_URI, "--pkcs11", ONLINE_URI,
                 "--token-pin-file", INITIAL_PIN)
    assert "Demo hierarchy" in out.stdout, out.stdout
    for d, _, files in os.walk(PKI):
        assert not any(f.endswith(".key.sealed") and "audit" not in d for f in files), (d, files)
    cas = {"root": os.path.join(PKI, "root-ca")}
    for name in ("infrastructure-ca", "agents-ca", "external-ca", "load-balancer-ca"):
        cas[name] = os.path.join(PKI, "intermediate-ca", name)
    for name, d in cas.items():
        uri = open(os.path.join(d, "private", ("root-ca" if name == "root" else name)
                                + ".key.pkcs11")).read().strip()
        assert uri.startswith("pkcs11:token=pkid-" + ("root" if name == "root" else "online")), uri
        assert "object=%s" % name in uri and "type=private" in uri and "pin" not in uri, uri
    root_pem = os.path.join(PKI, "root-ca/certs/root-ca.crt")
    root = x509.load_pem_x509_certificate(open(root_pem, "rb").read())
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.public_key().curve.name == "secp384r1"
    signed_by(root, root)
    by_subject = {}
    for path in all_certs():
        c = x509.load_pem_x509_certificate(open(path, "rb").read())
        by_subject.setdefault(c.subject.rfc4514_string(), c)
    # Every intermediate, as the untrusted certificates each chain may use.
    bundle = os.path.join(TMP, "intermediates.pem")
    with open(bundle, "wb") as f:
        for name in ("infrastructure-ca", "agents-ca", "external-ca", "load-balancer-ca"):
            f.write(open(os.path.join(PKI, "intermediate-ca", name, "certs", name + ".crt"),
                         "rb").read())
    checked = 0
    kinds = set()
    for path in all_certs():
        c = x509.load_pem_x509_certificate(open(path, "rb").read())
        v = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", root_pem,
                            "-untrusted", bundle, path], capture_output=True, text=True)
        assert v.returncode == 0 and ": OK" in v.stdout, (path, v.stdout, v.stderr)
        issuer = by_subject[c.issuer.rfc4514_string()]
        signed_by(c, issuer)
        kinds.add(type(issuer.public_key()).__name__)
        checked += 1
    assert checked >= 20, checked
    assert any("Ed25519" in k for k in kinds), kinds


def test_keys_stay_in_token():
    pin = open(PASSPHRASE).read().strip()
    lib, s = p11_session("pkid-online", pin)
    try:
        keys = s.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY)])
        labels = set()
        for k in keys:
            label, sensitive, extractable, never = s.getAttributeValue(
                k, [PyKCS11.CKA_LABEL, PyKCS11.CKA_SENSITIVE, PyKCS11.CKA_EXTRACTABLE,
                    PyKCS11.CKA_NEVER_EXTRACTABLE])
            labels.add(label)
            assert sensitive and not extractable and never, (label, sensitive, extractable)
            try:
                value = s.getAttributeValue(k, [PyKCS11.CKA_VALUE])
            except PyKCS11.PyKCS11Error as e:
                assert e.value == PyKCS11.CKR_ATTRIBUTE_SENSITIVE, e
            else:
                assert value == [None], "CKA_VALUE of %s was read: %r" % (label, value)
        assert labels == {"infrastructure-ca", "agents-ca", "external-ca", "load-balancer-ca"}, \
            labels
    finally:
        s.closeSession()
    # The root's token: its PIN is the split secret now, which no one holds.
    lib, s = p11_session("pkid-root", None)
    try:
        try:
            s.login("initial-pin-1234")
        except PyKCS11.PyKCS11Error as e:
            assert e.value == PyKCS11.CKR_PIN_INCORRECT, e
        else:
            raise AssertionError("the root token still takes its initial PIN")
    finally:
        s.closeSession()


def root_crl_number():
    out = subprocess.run(["openssl", "crl", "-in", os.path.join(PKI, "crl/root.crl.pem"),
                          "-noout", "-crlnumber"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_shares_rebuild_pin():
    shares = [os.path.join(PKI, "root-ca/shares/custodian-%d.share" % i) for i in (2, 4, 5)]
    before = root_crl_number()
    few = pkictl("ceremony", "crl", "--out", PKI, "--catalog", CATALOG, "--share", shares[0],
                 "--share", shares[1], check=False)
    assert few.returncode != 0, few.stdout
    assert "PIN" in few.stderr or "share" in few.stderr, few.stderr
    assert root_crl_number() == before
    args = ["ceremony", "crl", "--out", PKI, "--catalog", CATALOG]
    for s in shares:
        args += ["--share", s]
    pkictl(*args)
    after = root_crl_number()
    assert after != before, (before, after)
    v = subprocess.run(["openssl", "crl", "-in", os.path.join(PKI, "crl/root.crl.pem"),
                        "-noout", "-CAfile", os.path.join(PKI, "root-ca/certs/root-ca.crt")],
                       capture_output=True, text=True)
    assert v.returncode == 0 and "verify OK" in (v.stdout + v.stderr), v.stdout + v.stderr


def start(tree=PKI, passphrase=PASSPHRASE, journal=None, log="pkid.log"):
    args = ["--catalog", CATALOG, "--passphrase-file", passphrase, "--workers", "2"]
    if journal is not None:
        args += ["--journal", journal]
    return Pkid(PKID, tree, TMP, args=args, log_name=log, env=ENV)


def issue(server, service="postgres", usage=None, timeout=10):
    ch = channel(server, PKI)
    try:
        call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
        return call(pki_pb2.IssueRequest(csr=make_csr(), service=service,
                                         usage=usage or pki_pb2.USAGE_SERVER), timeout=timeout)
    finally:
        ch.close()


def verify_issued(resp, name):
    leaf = os.path.join(TMP, name + ".crt")
    chain = os.path.join(TMP, name + "-chain.crt")
    with open(leaf, "wb") as f:
        f.write(x509.load_der_x509_certificate(resp.certificate).public_bytes(Encoding.PEM))
    with open(chain, "wb") as f:
        for der in resp.chain:
            f.write(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
    v = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile",
                        os.path.join(PKI, "root-ca/certs/root-ca.crt"), "-untrusted", chain,
                        leaf], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    return leaf, chain


def test_issue_through_token():
    server = start(journal=os.path.join(TMP, "journal-issue")).start()
    try:
        # postgres (infrastructure-ca, P-256) and a service of external-ca (Ed25519).
        resp = issue(server, "postgres")
        leaf, chain = verify_issued(resp, "postgres")
        issuer = os.path.join(PKI, "intermediate-ca/infrastructure-ca/certs/infrastructure-ca.crt")
        o = subprocess.run(["openssl", "ocsp", "-issuer", issuer, "-cert", leaf, "-url",
                            "http://127.0.0.1:%d/" % server.ocsp, "-CAfile",
                            os.path.join(PKI, "root-ca/certs/root-ca.crt"), "-VAfile", issuer,
                            "-no_nonce"], capture_output=True, text=True, timeout=30)
        assert ": good" in o.stdout and "Response verify OK" in o.stderr, o.stdout + o.stderr
        resp = issue(server, "siem-feed", pki_pb2.USAGE_CLIENT)
        verify_issued(resp, "siem-feed")
        c = x509.load_der_x509_certificate(resp.certificate)
        assert c.signature_algorithm_oid.dotted_string == "1.3.101.112", c.signature_algorithm_oid
    finally:
        server.stop()


def copy_tree(name):
    return pkidtest.copy_tree(PKI, os.path.join(TMP, name), skip=("journal*",))


def refused_start(tree, words, passphrase=PASSPHRASE):
    journal = os.path.join(TMP, "journal-" + os.path.basename(tree))
    out = subprocess.run([PKID, "--pki", tree, "--catalog", CATALOG, "--passphrase-file",
                          passphrase, "--journal", journal, "--listen", "127.0.0.1:0",
                          "--ocsp-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode != 0, out.stderr
    assert words in out.stderr, "%r lacks %r" % (out.stderr, words)
    assert not os.path.exists(journal), "a journal was written"
    return out.stderr


def set_uri(tree, ca, uri):
    path = os.path.join(tree, "intermediate-ca", ca, "private", ca + ".key.pkcs11")
    with open(path, "w") as f:
        f.write(uri + "\n")


def test_start_errors():
    wrong = os.path.join(TMP, "wrong-pin")
    write_secret(wrong, "not-the-pin")
    tree = copy_tree("pki-wrong-pin")
    refused_start(tree, "wrong PIN", passphrase=wrong)

    tree = copy_tree("pki-no-object")
    set_uri(tree, "agents-ca", "pkcs11:token=pkid-online;object=no-such-key?module-path=" + MODULE)
    refused_start(tree, "object missing")

    tree = copy_tree("pki-no-module")
    set_uri(tree, "agents-ca", "pkcs11:token=pkid-online;object=agents-ca"
                               "?module-path=/usr/lib/no-such-pkcs11.so")
    refused_start(tree, "/usr/lib/no-such-pkcs11.so: not found")

    tree = copy_tree("pki-no-token")
    set_uri(tree, "agents-ca", "pkcs11:token=no-such-token;object=agents-ca?module-path="
            + MODULE)
    refused_start(tree, "no token matches")

    # A P-384 key where the catalogue says P-256 (OpenSC's pkcs11-tool makes it).
    pin = open(PASSPHRASE).read().strip()
    subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", "pkid-online", "--login",
                    "--pin", pin, "--keypairgen", "--key-type", "EC:secp384r1", "--label",
                    "a-p384-key", "--id", "3841"], check=True, env=ENV, capture_output=True)
    tree = copy_tree("pki-wrong-type")
    set_uri(tree, "agents-ca", "pkcs11:token=pkid-online;object=a-p384-key?module-path="
            + MODULE)
    refused_start(tree, "holds an ecdsa-p384 key, not the ecdsa-p256 key")

    # Ceremonies: a wrong PIN and a missing module write nothing.
    write_secret(os.path.join(TMP, "root-pass"), "root-passphrase")
    out_dir = os.path.join(TMP, "pki-refused-root")
    r = pkictl("ceremony", "root", "--out", out_dir, "--root-passphrase-file",
               os.path.join(TMP, "root-pass"), "--pkcs11", ONLINE_URI, check=False)
    assert r.returncode != 0 and "wrong PIN" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(out_dir, "root-ca")), os.listdir(out_dir)
    r = pkictl("ceremony", "root", "--out", out_dir, "--root-passphrase-file",
               os.path.join(TMP, "root-pass"), "--pkcs11",
               "pkcs11:token=pkid-online?module-path=/usr/lib/no-such-pkcs11.so", check=False)
    assert r.returncode != 0 and "not found" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(out_dir, "root-ca"))
    r = pkictl("ceremony", "root", "--out", out_dir, "--split", "3/5", "--pkcs11", ONLINE_URI,
               check=False)
    assert r.returncode != 0 and "--token-pin-file" in r.stderr, r.stderr
    # A URI that carries a PIN is refused: PINs come from files.
    r = pkictl("ceremony", "root", "--out", out_dir, "--root-passphrase-file",
               os.path.join(TMP, "root-pass"), "--pkcs11",
               ONLINE_URI + "&pin-value=" + pin, check=False)
    assert r.returncode != 0 and "carries a PIN" in r.stderr, r.stderr
    assert objects_labelled("pkid-online", pin, "root") == [], "a root key was left in the token"


def ready(server):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % server.admin, timeout=5) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False
    except OSError:
        return False


def key_ready(server, ca):
    """pkid_ca_key_ready{ca=...} from pkid's /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % server.admin, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith('pkid_ca_key_ready{ca="%s"}' % ca):
            return float(line.split()[-1])
    raise AssertionError("no pkid_ca_key_ready for %s" % ca)


def issue_records(journal):
    out = subprocess.run([PKICTL, "audit", journal, "--kind", "issue"], capture_output=True,
                         text=True, timeout=60, env=ENV)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_token_away_mid_load():
    journal = os.path.join(TMP, "journal-away")
    server = start(journal=journal, log="pkid-away.log").start()
    wait_for("the ceremony log imported", lambda: '"ceremony_import_done"' in server.log(), 60)
    server.stop()
    before = len(issue_records(journal))
    server = start(journal=journal, log="pkid-away.log").start()
    results = {"ok": [], "unavailable": 0, "other": []}
    lock = threading.Lock()
    stop = threading.Event()

    def load():
        ch = channel(server, PKI)
        call = method(ch, "Issue", pki_pb2.IssueRequest, pki_pb2.IssueResponse)
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                resp = call(pki_pb2.IssueRequest(csr=make_csr(), service="postgres",
                                                 usage=pki_pb2.USAGE_SERVER), timeout=10)
                with lock:
                    results["ok"].append(x509.load_der_x509_certificate(
                        resp.certificate).serial_number)
            except grpc.RpcError as e:
                with lock:
                    if e.code() == grpc.StatusCode.UNAVAILABLE:
                        results["unavailable"] += 1
                    else:
                        results["other"].append((e.code(), e.details()))
                time.sleep(0.01)
        ch.close()

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        wait_for("issuance under way", lambda: len(results["ok"]) >= 20, 60)
        away = TOKENS + ".away"
        os.rename(TOKENS, away)
        try:
            wait_for("/readyz 503", lambda: not ready(server), 30)
            wait_for("pkid_ca_key_ready 0", lambda: key_ready(server, "infrastructure-ca") == 0,
                     30)
            wait_for("calls failing", lambda: results["unavailable"] >= 10, 30)
            # OCSP about a serial not signed ahead: tryLater (RFC 6960 4.2.1).
            issuer = os.path.join(PKI, "intermediate-ca/infrastructure-ca/certs/"
                                       "infrastructure-ca.crt")
            o = subprocess.run(["openssl", "ocsp", "-issuer", issuer, "-serial", "0x7777",
                                "-url", "http://127.0.0.1:%d/" % server.ocsp, "-no_nonce"],
                               capture_output=True, text=True, timeout=30)
            assert "trylater" in (o.stdout + o.stderr).lower(), o.stdout + o.stderr
            ok_while_away = len(results["ok"])
            time.sleep(1)
            # Nothing succeeds while the token is away (a call that was
            # signed before may still be answered: allow the in-flight few).
            assert len(results["ok"]) - ok_while_away <= 4, (ok_while_away, len(results["ok"]))
        finally:
            os.rename(away, TOKENS)
        wait_for("/readyz 200 again", lambda: ready(server), 30)
        assert key_ready(server, "infrastructure-ca") == 1
        n = len(results["ok"])
        wait_for("issuance again", lambda: len(results["ok"]) >= n + 20, 60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.stop()
    assert results["other"] == [], results["other"][:5]
    log = server.log()
    assert '"token_unavailable"' in log and '"token_recovered"' in log, log[-3000:]
    records = issue_records(journal)
    # Exactly the answered calls are journaled: none of the failed ones.
    assert len(records) - before == len(results["ok"]), (len(records), before,
                                                           len(results["ok"]))
    journaled = {int(r["serial"], 16) for r in records}
    assert set(results["ok"]) <= journaled


run("token_hierarchy", test_token_hierarchy)
run("keys_stay_in_token", test_keys_stay_in_token)
run("shares_rebuild_pin", test_shares_rebuild_pin)
run("issue_through_token", test_issue_through_token)
run("start_errors", test_start_errors)
run("token_away_mid_load", test_token_away_mid_load)
finish()
