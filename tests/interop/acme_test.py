#!/usr/bin/python3
"""acme_test: pkid's ACME server (RFC 8555) judged by ACME clients we did
not write (Debian's certbot 2.1, lego 4.9, uacme 1.7) and by the tests' own
client (tests/lib/acmeclient.py) for what those never send.

Each case starts its own pkid on loopback (its own journal, the one demo
tree) with --acme-listen 127.0.0.1:0 and test mode: --acme-resolve maps the
catalogue's names to 127.0.0.1 and --acme-http-port/--acme-tls-port point
pkid's validator at the port where the case's client listens. The clients
trust only the demo root. Every account is bound with an External Account
Binding key that `pkictl acme eab create --service postgres` made (postgres:
P-256 keys only, so each client is told to make P-256 keys).

  - client_jws: the tests' client's JWS (ES256, ES384, RS256) and its EAB
    MAC verify under josepy (certbot's JOSE library), EdDSA under
    cryptography; its thumbprint is RFC 7638's and josepy's (no pkid);
  - certbot: `certbot certonly --standalone` with EAB and --key-type ecdsa
    gets a P-256 certificate for postgres.cybersec-framework.local that
    `openssl verify -x509_strict` accepts under the root; `certbot renew
    --force-renewal` gets another serial; `certbot revoke` (by the account)
    and `certbot revoke --key-path` (by the certificate's key) make
    pkid's OCSP responder (`openssl ocsp`) say revoked, the others good. A
    deviation that the case can go on past (a renewal refused: certbot and
    lego renew the names they read from the certificate, CN included) is
    noted, worked around and fails the case at its end;
  - lego_http, lego_tls: `lego run` with --http, then with --tls
    (tls-alpn-01, RFC 8737), each its own account; verified; `lego renew
    --days 10000` gets another certificate; pkid's log shows which
    challenge type validated;
  - uacme: `uacme new` with EAB, `issue` with a hook script that writes the
    http-01 key authorization into a folder served on loopback, `-f issue`
    renews, `revoke CERT KEY` revokes by the certificate's key. uacme's
    libcurl (GnuTLS) reads no environment variable for its trust store
    (neither CURL_CA_BUNDLE nor SSL_CERT_FILE: checked), so uacme runs in a
    private mount namespace (unshare -m) where the root is bind-mounted over
    /etc/ssl/certs/ca-certificates.crt; the system's file is not touched;
  - client_flow: the tests' client: accounts signed with ES256, ES384,
    RS256 and EdDSA each issue; a redis account gets a P-384 certificate
    for redis's name and not postgres's; renewalInfo (RFC 9773) gives a window in
    the future, and in the past once revoked; the orders list; a CSR with a
    P-384 key (postgres takes P-256) is badCSR; revoking by the
    certificate's key, then again (alreadyRevoked); keyChange (the old key
    refused after it); contact update; deactivation (then unauthorized);
  - refusals_*, each on a pkid of its own, each refusal with its problem
    type (RFC 8555 6.7), the account still issuing after them:
      eab: no EAB (externalAccountRequired), a wrong MAC (unauthorized; the
        key still binds an account after), the EAB over another key
        (malformed), for another URL, an unknown kid, a key used already
        (unauthorized);
      names: another service's name, a wildcard (rejectedIdentifier), an IP
        identifier (unsupportedIdentifier);
      nonces: a replayed nonce (badNonce, with a fresh Replay-Nonce that then
        works), one pkid never gave, none;
      signatures: a flipped bit (malformed, for kid and jwk), another key,
        a "url" other than the request's (unauthorized, 6.4), a jwk where a
        kid is needed, not application/jose+json, not JSON, a GET of a
        POST-as-GET resource (malformed), an unknown account
        (accountDoesNotExist);
      algorithms: an outer JWS with alg HS256, none or ES512
        (badSignatureAlgorithm, listing "algorithms" as 6.2 requires);
  - failed_challenge: nothing listens on the http-01 port: the challenge
    becomes invalid with error connection, its authorization and the order
    invalid; finalize is orderNotReady;
  - concurrent: 4 accounts issuing 3 certificates each at once (distinct
    serials, all verify);
  - kill9: an account made, pkid killed with SIGKILL, started again on the
    same journal: the account answers 200 "valid" to a POST-as-GET signed by
    its key, issues, and its EAB kid binds no other account.

Usage: acme_test.py PKICTL PKID CATALOG (deploy/catalog.yaml)
"""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
import acmeclient as ac  # noqa: E402
from acmeclient import ERR  # noqa: E402
from pkidtest import Pkid, demo_tree, free_port, wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, PKID, CATALOG = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
ROOT = os.path.join(PKI, "root-ca/certs/root-ca.crt")
SERVICE = "postgres"
NAME = "postgres.cybersec-framework.local"
OTHER_NAME = "redis.cybersec-framework.local"  # redis's: refused to a postgres account
RESOLVE = [NAME, "localhost", OTHER_NAME]
EMAIL = "someone@example.com"
ENV = dict(os.environ)
ENV.setdefault("HOME", TMP)
# Under TSan, pkictl's online commands run in Debian's gRPC, which is not
# instrumented: its reports there are not pkid's (pkid's own still halt it).
PKICTL_ENV = dict(ENV, TSAN_OPTIONS="report_bugs=0")


def service_dns(service):
    """The service's DNS names in the catalogue (checked, so that the
    cases stay what they say)."""
    text = open(CATALOG).read()
    block = text[text.index("- name: %s\n" % service):]
    block = block[:block.index("- name:", 1)]
    return re.search(r"dns: \[([^\]]*)\]", block).group(1).replace(" ", "").split(",")


assert NAME in service_dns(SERVICE) and OTHER_NAME not in service_dns(SERVICE)


class Acme:
    """pkid with its ACME listener, for one case."""

    def __init__(self, case, http_port=None, tls_port=None, journal=None):
        self.case = case
        self.http_port = http_port or free_port()
        self.tls_port = tls_port or free_port()
        self.journal = journal or os.path.join(TMP, "journal-" + case)
        args = ["--journal", self.journal, "--acme-listen", "127.0.0.1:0", "--acme-test-mode",
                "--acme-http-port", str(self.http_port), "--acme-tls-port", str(self.tls_port)]
        for n in RESOLVE:
            args += ["--acme-resolve", n + "=127.0.0.1"]
        self.pkid = Pkid(PKID, PKI, TMP, args=args, log_name="pkid-%s.log" % case, env=ENV)
        self.port = None

    def start(self):
        """pkid, then the port its ACME listener reports ("listening",
        "acme": like the others; "acme_listening" in earlier builds)."""
        self.pkid.start()
        try:
            self.port = int(wait_for("the ACME listener", self._port, 30))
        except BaseException:
            self.pkid.kill()
            raise
        return self

    def _port(self):
        text = self.pkid.log()
        # This start's lines: the last "listening","grpc" onwards.
        text = text[text.rfind('"listening","grpc"'):]
        m = re.findall(r'"(?:listening","acme|acme_listening","address)":"127\.0\.0\.1:(\d+)"',
                       text)
        return m[-1] if m else None

    @property
    def directory(self):
        return "https://127.0.0.1:%d/acme/directory" % self.port

    def stop(self):
        return self.pkid.stop()

    def kill(self):
        self.pkid.kill()

    def eab(self, service=SERVICE):
        """A new EAB key from `pkictl acme eab create`: (kid, hmac key)."""
        out = subprocess.run(
            [PKICTL, "acme", "eab", "create", "--pki", PKI, "--as", "pki-agent", "--server",
             "127.0.0.1:%d" % self.pkid.grpc, "--service", service],
            capture_output=True, text=True, timeout=60, env=PKICTL_ENV)
        assert out.returncode == 0, "pkictl acme eab create: %d %s" % (out.returncode, out.stderr)
        m = re.fullmatch(r"kid: (\S+)\nhmac-key: (\S+)\n", out.stdout)
        assert m, out.stdout
        return m.group(1), m.group(2)

    def client(self, key=None, alg="ES256"):
        return ac.Client(self.directory, ROOT, key=key, alg=alg)

    def account(self, alg="ES256", service=SERVICE):
        c = self.client(alg=alg)
        c.new_account(*self.eab(service))
        return c


def sh(args, timeout=180, env=None, check=True, what=None):
    """Runs a client; its output is kept in the case's log folder."""
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                         env=env or ENV, stdin=subprocess.DEVNULL)
    if check:
        assert out.returncode == 0, "%s: exit %d\n%s\n%s" % (
            what or args[0], out.returncode, out.stdout[-3000:], out.stderr[-5000:])
    return out


def pem_certs(path):
    data = open(path, "rb").read().decode()
    return [x509.load_pem_x509_certificate((b + "-----END CERTIFICATE-----\n").encode())
            for b in data.split("-----END CERTIFICATE-----") if "BEGIN CERTIFICATE" in b]


def write_pem(path, certs):
    with open(path, "wb") as f:
        for c in certs:
            f.write(c.public_bytes(serialization.Encoding.PEM))
    return path


def verify_chain(leaf_path, chain_path, name=NAME):
    """openssl verify -x509_strict under the root, the chain untrusted; the
    leaf names |name| and has a P-256 key. Returns the leaf."""
    v = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile",
                        ROOT, "-untrusted", chain_path, leaf_path], capture_output=True,
                       text=True, timeout=30)
    assert v.returncode == 0 and ": OK" in v.stdout, v.stdout + v.stderr
    leaf = pem_certs(leaf_path)[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert name in sans.get_values_for_type(x509.DNSName), sans
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1", key
    return leaf


def verify_bundle(bundle_path, case, name=NAME):
    """A PEM bundle (leaf first, then its CAs) through verify_chain."""
    certs = pem_certs(bundle_path)
    assert len(certs) >= 2, "%s holds %d certificates, not the leaf and its chain" % (
        bundle_path, len(certs))
    leaf = write_pem(os.path.join(TMP, case + "-leaf.pem"), certs[:1])
    chain = write_pem(os.path.join(TMP, case + "-chain.pem"), certs[1:])
    return verify_chain(leaf, chain, name), chain


def ocsp_status(server, leaf_path, issuer_path):
    """pkid's OCSP responder's answer for |leaf_path|, by `openssl ocsp`:
    "good", "revoked" or "unknown", the response verified under the root."""
    o = subprocess.run(["openssl", "ocsp", "-issuer", issuer_path, "-cert", leaf_path, "-url",
                        "http://127.0.0.1:%d/" % server.pkid.ocsp, "-CAfile", ROOT, "-VAfile",
                        issuer_path, "-no_nonce"], capture_output=True, text=True, timeout=30)
    assert "Response verify OK" in o.stderr, o.stdout + o.stderr
    m = re.search(r": (good|revoked|unknown)", o.stdout)
    assert m, o.stdout + o.stderr
    return m.group(1)


def issuer_file(chain_path, case):
    """The leaf's issuer (the chain's first certificate), alone in a file."""
    return write_pem(os.path.join(TMP, case + "-issuer.pem"), pem_certs(chain_path)[:1])


def challenge_log(server, ctype):
    return re.findall(r'"acme_challenge",[^\n]*"type":"%s","result":"valid"' % ctype,
                      server.pkid.log())


def expect_problem(fn, ptype, status=None):
    """|fn| must fail with an ACME problem of |ptype| (a name in 6.7, or a
    tuple of those any of which will do)."""
    want = (ptype,) if isinstance(ptype, str) else ptype
    try:
        fn()
    except ac.AcmeError as e:
        assert e.type in [ERR + t for t in want], "got %s (HTTP %d: %s), want %s" % (
            e.type, e.status, e.problem.get("detail"), " or ".join(want))
        ctype = e.headers.get("content-type", "")
        assert ctype.startswith("application/problem+json"), ctype
        if status is not None:
            assert e.status == status, (e.status, status)
        return e
    raise AssertionError("the request succeeded, want %s" % ptype)


class Findings:
    """Deviations a case notes and goes on past (so that the rest of it
    still runs); check() fails the case with all of them at its end."""

    def __init__(self):
        self.items = []

    def note(self, text):
        print("  finding: " + text, flush=True)
        self.items.append(text)

    def check(self):
        assert not self.items, "; ".join(self.items)


# --- client_jws: no pkid --------------------------------------------------------------


def test_client_jws():
    import hashlib
    import josepy
    # RFC 7638 3.1's example key and thumbprint.
    jwk = {"kty": "RSA", "e": "AQAB", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")}
    assert ac.b64u(hashlib.sha256(ac.compact(jwk).encode()).digest()) == \
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    for alg in ("ES256", "ES384", "RS256", "EdDSA"):
        k = ac.Key.generate(alg)
        j = ac.jws({"x": alg}, {"alg": alg, "nonce": "n", "url": "https://h/", "jwk": k.jwk()}, k)
        assert json.loads(ac.verify_jws(j, k.private.public_key())) == {"x": alg}
        if alg != "EdDSA":  # josepy 1.13 has no EdDSA
            parsed = josepy.JWS.json_loads(json.dumps(j))
            assert parsed.verify(josepy.JWK.from_json(k.jwk())), alg
            assert ac.b64u(josepy.JWK.from_json(k.jwk()).thumbprint()) == k.thumbprint(), alg
        # A flipped bit no longer verifies.
        sig = bytearray(ac.b64u_decode(j["signature"]))
        sig[5] ^= 1
        bad = dict(j, signature=ac.b64u(bytes(sig)))
        try:
            ac.verify_jws(bad, k.private.public_key())
        except Exception:  # noqa: BLE001 - cryptography's InvalidSignature
            pass
        else:
            raise AssertionError("a flipped signature verified (%s)" % alg)
        back = ac.Key.from_pem(k.pem())
        assert back.jwk() == k.jwk() and back.alg == alg
    c = ac.Client("https://127.0.0.1:1/acme/directory", ROOT)
    c._dir = {"newAccount": "https://127.0.0.1:1/acme/new-account"}
    mac = os.urandom(32)
    e = c.eab("eab-test", ac.b64u(mac))
    assert josepy.JWS.json_loads(json.dumps(e)).verify(josepy.JWKOct(key=mac))
    assert json.loads(ac.b64u_decode(e["protected"])) == {
        "alg": "HS256", "kid": "eab-test", "url": "https://127.0.0.1:1/acme/new-account"}
    assert json.loads(ac.b64u_decode(e["payload"])) == c.key.jwk()


# --- certbot --------------------------------------------------------------------------


def certbot_args(server, base, *more):
    return ["certbot", *more, "--non-interactive", "--server", server.directory,
            "--config-dir", base + "/config", "--work-dir", base + "/work", "--logs-dir",
            base + "/logs"]


def test_certbot():
    server = Acme("certbot").start()
    base = os.path.join(TMP, "certbot")
    env = dict(ENV, REQUESTS_CA_BUNDLE=ROOT)
    try:
        kid, key = server.eab()
        sh(certbot_args(server, base, "certonly") + [
            "--standalone", "--agree-tos", "-m", EMAIL, "--no-eff-email", "--eab-kid", kid,
            # "=" joined: a base64url key may begin with "-", which argparse
            # would take for an option and then refuse the run.
            "--eab-hmac-key=" + key, "-d", NAME, "--http-01-port", str(server.http_port),
            "--http-01-address", "127.0.0.1", "--key-type", "ecdsa"], env=env)
        live = os.path.join(base, "config/live", NAME)
        first = verify_chain(live + "/cert.pem", live + "/chain.pem")
        first_path = shutil.copy(live + "/cert.pem", os.path.join(TMP, "certbot-first.pem"))
        first_key = shutil.copy(live + "/privkey.pem", os.path.join(TMP, "certbot-first.key"))
        verify_bundle(live + "/fullchain.pem", "certbot-full")
        issuer = issuer_file(live + "/chain.pem", "certbot")
        assert ocsp_status(server, first_path, issuer) == "good"
        assert len(challenge_log(server, "http-01")) == 1

        found = Findings()
        renew = sh(certbot_args(server, base, "renew") + ["--force-renewal",
                                                          "--no-random-sleep-on-renew"],
                   env=env, check=False)
        if renew.returncode != 0:
            # certbot renews the names it reads from the certificate: its CN
            # and SANs. Noted, then renewed naming the name (-d).
            found.note("certbot renew failed: %s" % (renew.stdout + renew.stderr).strip()[-600:])
            sh(certbot_args(server, base, "certonly") + [
                "--standalone", "--force-renewal", "--cert-name", NAME, "-d", NAME,
                "--http-01-port", str(server.http_port), "--http-01-address", "127.0.0.1",
                "--key-type", "ecdsa"], env=env)
        second = verify_chain(live + "/cert.pem", live + "/chain.pem")
        assert second.serial_number != first.serial_number, "renew gave the same certificate"
        second_path = shutil.copy(live + "/cert.pem", os.path.join(TMP, "certbot-second.pem"))

        # By the account (certbot signs with its account key, "kid").
        sh(certbot_args(server, base, "revoke") + ["--cert-path", first_path,
                                                   "--no-delete-after-revoke",
                                                   "--reason", "superseded"], env=env)
        assert ocsp_status(server, first_path, issuer) == "revoked"
        assert ocsp_status(server, second_path, issuer) == "good"
        # By the certificate's own key ("jwk"): no account needed.
        sh(certbot_args(server, base, "revoke") + ["--cert-path", second_path, "--key-path",
                                                   live + "/privkey.pem",
                                                   "--no-delete-after-revoke"], env=env)
        assert ocsp_status(server, second_path, issuer) == "revoked"
        # A third revocation of the first: alreadyRevoked, which certbot reports.
        out = sh(certbot_args(server, base, "revoke") + [
            "--cert-path", first_path, "--key-path", first_key, "--no-delete-after-revoke"],
            env=env, check=False)
        assert out.returncode != 0 and "alreadyRevoked" in (out.stdout + out.stderr + open(
            base + "/logs/letsencrypt.log").read()), out.stderr[-2000:]
        found.check()
    finally:
        server.stop()


# --- lego -----------------------------------------------------------------------------


def lego_args(server, path, kid, key, challenge, port):
    args = ["lego", "--server", server.directory, "--eab", "--kid", kid, "--hmac=" + key,
            "--email", EMAIL, "--domains", NAME, "--accept-tos", "--path", path,
            "--key-type", "ec256"]
    if challenge == "http":
        return args + ["--http", "--http.port", "127.0.0.1:%d" % port]
    return args + ["--tls", "--tls.port", "127.0.0.1:%d" % port]


def lego_case(challenge):
    case = "lego-" + challenge
    server = Acme(case).start()
    path = os.path.join(TMP, case)
    env = dict(ENV, LEGO_CA_CERTIFICATES=ROOT)
    ctype = "http-01" if challenge == "http" else "tls-alpn-01"
    port = server.http_port if challenge == "http" else server.tls_port
    try:
        kid, key = server.eab()
        args = lego_args(server, path, kid, key, challenge, port)
        sh(args + ["run"], env=env)
        crt = os.path.join(path, "certificates", NAME + ".crt")
        first, _ = verify_bundle(crt, case)
        assert len(challenge_log(server, ctype)) == 1, server.pkid.log()[-2000:]
        found = Findings()
        renew = sh(args + ["renew", "--days", "10000", "--no-random-sleep"], env=env,
                   check=False)
        if renew.returncode != 0:
            # lego renews the names of the certificate (its CN and SANs).
            found.note("lego renew failed: %s" % (renew.stdout + renew.stderr).strip()[-600:])
            sh(args + ["run"], env=env)
        second, chain = verify_bundle(crt, case + "-renewed")
        assert second.serial_number != first.serial_number, "renew gave the same certificate"
        assert len(challenge_log(server, ctype)) == 2
        assert not challenge_log(server, "tls-alpn-01" if ctype == "http-01" else "http-01")
        leaf = write_pem(os.path.join(TMP, case + "-renewed-leaf.pem"), [second])
        assert ocsp_status(server, leaf, issuer_file(chain, case)) == "good"
        found.check()
    finally:
        server.stop()


def test_lego_http():
    lego_case("http")


def test_lego_tls():
    lego_case("tls")


# --- uacme ----------------------------------------------------------------------------

UACME_HOOK = """#!/bin/sh
# uacme's hook (man uacme): METHOD TYPE IDENT TOKEN AUTH. http-01 only: the
# key authorization goes to $CHALLENGE_DIR/TOKEN, served on loopback.
case "$1:$2" in
  begin:http-01) printf '%s' "$5" > "$CHALLENGE_DIR/$4" ;;
  done:http-01|failed:http-01) rm -f "$CHALLENGE_DIR/$4" ;;
  *) exit 1 ;;
esac
"""


def uacme(server, conf, hook, *args, check=True):
    """uacme with the demo root as its only trust anchor: bind-mounted over
    the system bundle in a private mount namespace (see the docstring)."""
    cmd = ["uacme", "-v", "-a", server.directory, "-c", conf, "-t", "EC", "-b", "256", "-o",
           "-h", hook] + list(args)
    script = 'mount --bind "$0" /etc/ssl/certs/ca-certificates.crt && exec "$@"'
    return sh(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, ROOT] + cmd,
              env=dict(ENV, CHALLENGE_DIR=os.path.join(TMP, "uacme-web")), check=check,
              what="uacme " + " ".join(args))


def test_uacme():
    web_dir = os.path.join(TMP, "uacme-web")
    os.makedirs(web_dir, exist_ok=True)
    hook = os.path.join(TMP, "uacme-hook.sh")
    with open(hook, "w") as f:
        f.write(UACME_HOOK)
    os.chmod(hook, stat.S_IRWXU)
    conf = os.path.join(TMP, "uacme")
    server = Acme("uacme")
    web = ac.Http01Responder(port=server.http_port, directory=web_dir).start()
    try:
        server.start()
        kid, key = server.eab()
        uacme(server, conf, hook, "-e", "%s:%s" % (kid, key), "-y", "new", EMAIL)
        uacme(server, conf, hook, "issue", NAME)
        crt = os.path.join(conf, NAME, "cert.pem")
        first, chain = verify_bundle(crt, "uacme")
        assert any(p.startswith(web.PREFIX) for p, _ in web.hits), web.hits
        assert os.listdir(web_dir) == [], "the hook left %s" % os.listdir(web_dir)
        uacme(server, conf, hook, "-f", "issue", NAME)
        second, _ = verify_bundle(crt, "uacme-renewed")
        assert second.serial_number != first.serial_number, "-f issue gave the same certificate"
        issuer = issuer_file(chain, "uacme")
        leaf = write_pem(os.path.join(TMP, "uacme-leaf.pem"), [second])
        assert ocsp_status(server, leaf, issuer) == "good"
        # By the certificate's key (uacme signs with it, a "jwk").
        uacme(server, conf, hook, "revoke", crt, os.path.join(conf, "private", NAME, "key.pem"))
        assert ocsp_status(server, leaf, issuer) == "revoked"
        first_leaf = write_pem(os.path.join(TMP, "uacme-first-leaf.pem"), [first])
        assert ocsp_status(server, first_leaf, issuer) == "good"
    finally:
        web.stop()
        server.stop()


# --- the tests' client ----------------------------------------------------------------


def test_client_flow():
    server = Acme("client")
    web = ac.Http01Responder(port=server.http_port).start()
    try:
        server.start()
        d = server.client().directory()
        for k in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange",
                  "renewalInfo"):
            assert d.get(k, "").startswith("https://127.0.0.1:%d/acme/" % server.port), (k, d)
        assert d["meta"]["externalAccountRequired"] is True, d
        certs = {}
        for alg in ("ES256", "ES384", "RS256", "EdDSA"):
            c = server.account(alg)
            assert c.account_status == 201
            acct = c.account()
            assert acct["status"] == "valid" and acct["contact"] == ["mailto:" + EMAIL], acct
            certs[alg] = c.issue([NAME], web)
            chain = write_pem(os.path.join(TMP, "client-chain.pem"), certs[alg].chain[1:])
            leaf = write_pem(os.path.join(TMP, "client-leaf.pem"), [certs[alg].cert])
            verify_chain(leaf, chain)
            # newAccount again with the same key: the same account, 200 (7.3.1).
            again = server.client(key=c.key)
            again.new_account(contact=None, only_existing=True)
            assert again.account_url == c.account_url and again.account_status == 200
        # redis takes P-256 and P-384 keys: a P-384 certificate, for its name
        # only.
        rd = server.account(service="redis")
        rcert = rd.issue([OTHER_NAME], web, cert_key=ac.Key.generate("ES384"))
        assert rcert.cert.public_key().curve.name == "secp384r1"
        expect_problem(lambda: rd.new_order([NAME]), "rejectedIdentifier")
        c = server.account("ES256")
        cert = c.issue([NAME, "localhost"], web)
        sans = cert.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(sans.get_values_for_type(x509.DNSName)) == {NAME, "localhost"}, sans
        # The subject's CN, if any, is one of the names (CA/Browser Forum BR
        # 7.1.4.3): certbot and lego renew the CN and the SANs.
        found = Findings()
        for cert_ in [cert] + list(certs.values()):
            cns = [a.value for a in cert_.cert.subject.get_attributes_for_oid(
                x509.oid.NameOID.COMMON_NAME)]
            names = cert_.cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
            if any(cn not in names for cn in cns):
                found.note("the certificate's subject CN %s is not among its DNS names %s (order %s)"
                           % (cns, names, cert_.order_url))
                break
        assert c.orders() == [cert.order_url], (c.orders(), cert.order_url)

        # renewalInfo: a window ahead; once revoked, one in the past (RFC 9773 4.2).
        r, info = c.renewal_info(cert.cert)
        start = info["suggestedWindow"]["start"]
        end = info["suggestedWindow"]["end"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        assert now < start < end, info
        assert int(r.headers.get("retry-after", "0")) > 0, r.headers

        # A key the service does not take (postgres: P-256 only).
        order_url, order = c.new_order([NAME])
        c.authorize(order, web)
        order = c.poll(order_url, ("ready",))
        p384 = ac.Key.generate("ES384")
        expect_problem(lambda: c.finalize(order, ac.make_csr([NAME], p384)), "badCSR")
        # The account's own key as the certificate's (RFC 8555 11.1).
        order_url, order = c.new_order([NAME])
        c.authorize(order, web)
        order = c.poll(order_url, ("ready",))
        expect_problem(lambda: c.finalize(order, ac.make_csr([NAME], c.key)), "badCSR")
        # A CSR naming another name than the order's.
        order_url, order = c.new_order([NAME])
        c.authorize(order, web)
        order = c.poll(order_url, ("ready",))
        expect_problem(lambda: c.finalize(order, ac.make_csr([NAME, "localhost"],
                                                             ac.Key.generate())), "badCSR")

        # Revocation by the certificate's key, then again: alreadyRevoked.
        other = server.client()
        other.revoke(cert.der(), reason=4, cert_key=cert.key)
        issuer = write_pem(os.path.join(TMP, "client-issuer.pem"), cert.chain[1:2])
        leaf = write_pem(os.path.join(TMP, "client-revoked.pem"), [cert.cert])
        assert ocsp_status(server, leaf, issuer) == "revoked"
        expect_problem(lambda: c.revoke(cert.der()), "alreadyRevoked")
        _, info = c.renewal_info(cert.cert)
        assert info["suggestedWindow"]["end"] <= time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), info
        # Another account's certificate (ES384's, same service) by the account.
        c.revoke(certs["ES384"].der())
        leaf = write_pem(os.path.join(TMP, "client-es384.pem"), [certs["ES384"].cert])
        assert ocsp_status(server, leaf, issuer) == "revoked"
        # Signed by an unrelated key: unauthorized.
        expect_problem(lambda: other.revoke(certs["RS256"].der(), cert_key=ac.Key.generate()),
                       "unauthorized")

        # keyChange (7.3.5): the new key signs next; the old one is refused.
        old = c.key
        new = ac.Key.generate("ES384")
        c.key_change(new)
        assert c.account()["status"] == "valid"
        stale = server.client(key=old)
        stale.account_url = c.account_url
        # (its alg, ES256, no longer the account key's type: either type fits)
        expect_problem(stale.account, ("malformed", "badSignatureAlgorithm"))
        # The key of another account cannot be taken: 409 (7.3.5).
        taken = server.account()
        try:
            c.key_change(taken.key)
        except ac.AcmeError as e:
            assert e.status == 409 and e.headers.get("location") == taken.account_url, e
        else:
            raise AssertionError("keyChange to another account's key succeeded")
        c.key = new
        assert c.update_contact(["mailto:other@example.com"])["contact"] == [
            "mailto:other@example.com"]
        c.issue([NAME], web)

        # Deactivation (7.3.6): then every request of the account is refused.
        assert c.deactivate()["status"] == "deactivated"
        expect_problem(c.account, "unauthorized")
        expect_problem(lambda: c.new_order([NAME]), "unauthorized")
        found.check()
    finally:
        web.stop()
        server.stop()


def refusal_case(body):
    """Runs |body(server, client, web)| on a pkid of its own with one
    account made; the account must still issue after."""
    def case():
        server = Acme(body.__name__.replace("_", "-"))
        web = ac.Http01Responder(port=server.http_port).start()
        try:
            server.start()
            c = server.account()
            body(server, c, web)
            c.issue([NAME], web)
        finally:
            web.stop()
            server.stop()
    return case


def problem_of(r):
    return ac.AcmeError(r.status, r.headers, r.body)


def refuse_eab(server, c, web):
    # No EAB.
    fresh = server.client()
    expect_problem(lambda: fresh.new_account(), "externalAccountRequired", 400)
    # A wrong MAC; the key still binds an account after it.
    kid, key = server.eab()
    bad = fresh.eab(kid, key, mac_key=os.urandom(32))
    expect_problem(lambda: fresh.new_account(eab=bad), "unauthorized", 403)
    # The EAB over another key than the account's.
    forged = fresh.eab(kid, key, jwk=ac.Key.generate().jwk())
    expect_problem(lambda: fresh.new_account(eab=forged), "malformed")
    # For another URL than newAccount's.
    elsewhere = fresh.eab(kid, key, url=fresh.url("newOrder"))
    expect_problem(lambda: fresh.new_account(eab=elsewhere), ("unauthorized", "malformed"))
    # An unknown kid.
    expect_problem(lambda: fresh.new_account("eab-AAAAAAAAAAAAAAAAAAAAAA", key), "unauthorized")
    fresh.new_account(kid, key)
    assert fresh.account()["status"] == "valid"
    # The same EAB key for a second account.
    second = server.client()
    expect_problem(lambda: second.new_account(kid, key), "unauthorized", 403)


def refuse_names(server, c, web):
    # Another service's name, alone and beside one of ours.
    expect_problem(lambda: c.new_order([OTHER_NAME]), "rejectedIdentifier")
    expect_problem(lambda: c.new_order([NAME, OTHER_NAME]), "rejectedIdentifier")
    expect_problem(lambda: c.new_order(["*.cybersec-framework.local"]), "rejectedIdentifier")
    expect_problem(lambda: c.post(c.url("newOrder"), {"identifiers": [
        {"type": "ip", "value": "127.0.0.1"}]}), "unsupportedIdentifier")


def refuse_nonces(server, c, web):
    # A replayed nonce: badNonce, with a fresh nonce that then works (6.5).
    # Fifty times over, from newNonce and from a response, since a replay
    # let through only now and then is still a replay.
    url = c.account_url
    replayed = []
    for i in range(50):
        nonce = c.new_nonce() if i % 2 else c.nonce
        assert c.post_jws(url, ac.jws(None, c.protected(url, nonce=nonce), c.key)).status == 200
        r = c.post_jws(url, ac.jws(None, c.protected(url, nonce=nonce), c.key))
        if r.status != 400 or problem_of(r).type != ERR + "badNonce":
            replayed.append((i, nonce, r.status))
            continue
        fresh = r.headers.get("replay-nonce")
        assert fresh and fresh != nonce, r.headers
        r = c.post_jws(url, ac.jws(None, c.protected(url, nonce=fresh), c.key))
        assert r.status == 200, r.body
        c.nonce = r.headers.get("replay-nonce")
    assert not replayed, "%d of 50 replayed nonces accepted (i, nonce, status): %s" % (
        len(replayed), replayed[:5])
    # A nonce pkid never gave; none at all.
    r = c.post_jws(url, ac.jws(None, c.protected(url, nonce=ac.b64u(os.urandom(16))), c.key))
    assert problem_of(r).type == ERR + "badNonce", r.body
    h = c.protected(url)
    del h["nonce"]
    r = c.post_jws(url, ac.jws(None, h, c.key))
    assert problem_of(r).type == ERR + "badNonce", r.body


def refuse_signatures(server, c, web):
    # A bad signature (one bit of it flipped): malformed, on a "kid" request
    # and on newAccount's "jwk".
    url = c.account_url
    for target, use_jwk in ((url, False), (c.url("newAccount"), True)):
        j = ac.jws(None if not use_jwk else {"onlyReturnExisting": True},
                   c.protected(target, use_jwk=use_jwk), c.key)
        sig = bytearray(ac.b64u_decode(j["signature"]))
        sig[7] ^= 0x40
        j["signature"] = ac.b64u(bytes(sig))
        r = c.post_jws(target, j)
        assert r.status == 400 and problem_of(r).type == ERR + "malformed", (target, r.body)
    # Signed by another key of the same type than the account's.
    r = c.post_jws(url, ac.jws(None, c.protected(url), ac.Key.generate()))
    assert problem_of(r).type == ERR + "malformed", r.body
    # The JWS's "url" is not the request's: unauthorized (6.4).
    r = c.post_jws(url, ac.jws(None, c.protected(c.url("newOrder")), c.key))
    assert problem_of(r).type == ERR + "unauthorized", r.body
    # A "jwk" where the account's "kid" is needed: malformed.
    j = ac.jws({"identifiers": [{"type": "dns", "value": NAME}]},
               c.protected(c.url("newOrder"), use_jwk=True), c.key)
    r = c.post_jws(c.url("newOrder"), j)
    assert problem_of(r).type == ERR + "malformed", r.body
    # Not application/jose+json (6.2).
    r = c.post_jws(url, ac.jws(None, c.protected(url), c.key), content_type="application/json")
    assert r.status in (400, 415) and problem_of(r).type == ERR + "malformed", (r.status, r.body)
    # Not JSON at all.
    r = c.post_jws(url, b"{not json")
    assert r.status == 400 and problem_of(r).type == ERR + "malformed", (r.status, r.body)
    # A GET of a resource read by POST-as-GET (6.3).
    r = c.request("GET", url)
    assert r.status in (400, 405) and problem_of(r).type == ERR + "malformed", (r.status, r.body)
    # An account URL that is not one.
    ghost = server.client(key=c.key)
    ghost.account_url = c.account_url[:-3] + "xyz"
    expect_problem(ghost.account, "accountDoesNotExist")


def refuse_algorithms(server, c, web):
    # An outer JWS with HS256 (a MAC) or "none": badSignatureAlgorithm, and
    # (6.2: MUST) the problem lists the algorithms pkid takes.
    url = c.account_url
    found = Findings()
    for alg, kw in (("HS256", {"mac_key": os.urandom(32)}), ("none", {"signature": b""}),
                    ("ES512", {"signature": os.urandom(132)})):
        r = c.post_jws(url, ac.jws(None, c.protected(url, alg=alg), **kw))
        e = problem_of(r)
        assert r.status == 400 and e.type == ERR + "badSignatureAlgorithm", (alg, r.body)
        assert "replay-nonce" in r.headers
        algs = e.problem.get("algorithms")
        if not (isinstance(algs, list) and {"ES256", "ES384", "RS256", "EdDSA"} <= set(algs)):
            found.note('RFC 8555 6.2: the badSignatureAlgorithm problem for alg %s MUST have '
                       '"algorithms": %s' % (alg, r.body.decode()))
    found.check()


def test_failed_challenge():
    server = Acme("failed").start()  # nothing listens on its http-01 port
    try:
        c = server.account()
        order_url, order = c.new_order([NAME])
        az_url = order["authorizations"][0]
        az = c.get(az_url)
        assert az["status"] == "pending" and az["identifier"] == {"type": "dns", "value": NAME}
        types = {ch["type"] for ch in az["challenges"]}
        assert types == {"http-01", "tls-alpn-01"}, types
        ch = c.challenge(az, "http-01")
        c.respond(ch["url"])
        az = c.poll(az_url, ("valid",), timeout=60)
        assert az["status"] == "invalid", az
        ch = c.challenge(az, "http-01")
        assert ch["status"] == "invalid", ch
        assert ch["error"]["type"] == ERR + "connection", ch
        order = c.get(order_url)
        assert order["status"] == "invalid", order
        expect_problem(lambda: c.finalize(order, ac.make_csr([NAME], ac.Key.generate())),
                       "orderNotReady", 403)
        assert '"result":"invalid"' in server.pkid.log()
    finally:
        server.stop()


def test_concurrent():
    server = Acme("concurrent")
    web = ac.Http01Responder(port=server.http_port).start()
    results, errors = [], []
    lock = threading.Lock()
    try:
        server.start()
        clients = [server.account() for _ in range(4)]

        def work(c):
            try:
                for _ in range(3):
                    cert = c.issue([NAME], web)
                    with lock:
                        results.append(cert)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))

        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert not any(t.is_alive() for t in threads), "a client thread did not finish"
        assert errors == [], errors
        assert len(results) == 12 and len({r.cert.serial_number for r in results}) == 12
        for r in results[:3]:
            verify_chain(write_pem(os.path.join(TMP, "conc-leaf.pem"), [r.cert]),
                         write_pem(os.path.join(TMP, "conc-chain.pem"), r.chain[1:]))
    finally:
        web.stop()
        server.stop()


def test_kill9():
    journal = os.path.join(TMP, "journal-kill9")
    server = Acme("kill9", journal=journal)
    web = ac.Http01Responder(port=server.http_port).start()
    try:
        server.start()
        kid, key = server.eab()
        c = server.client()
        c.new_account(kid, key)
        assert c.account_status == 201
        url, acct_key = c.account_url, c.key
        server.pkid.proc.send_signal(signal.SIGKILL)
        server.pkid.proc.wait(timeout=30)
        server = Acme("kill9", http_port=server.http_port, tls_port=server.tls_port,
                      journal=journal)
        server.start()
        c = server.client(key=acct_key)
        c.account_url = url.replace(url.split("/acme/")[0], "https://127.0.0.1:%d" % server.port)
        r = c.post(c.account_url, None)
        assert r.status == 200 and r.json()["status"] == "valid", (r.status, r.body)
        c.issue([NAME], web)
        # Its EAB key is spent: no other account with it.
        other = server.client()
        expect_problem(lambda: other.new_account(kid, key), "unauthorized", 403)
        # And newAccount with the account's key finds it (7.3.1).
        again = server.client(key=acct_key)
        again.new_account(contact=None, only_existing=True)
        assert again.account_url == c.account_url
    finally:
        web.stop()
        server.stop()


run("client_jws", test_client_jws)
run("certbot", test_certbot)
run("lego_http", test_lego_http)
run("lego_tls", test_lego_tls)
run("uacme", test_uacme)
run("client_flow", test_client_flow)
run("refusals_eab", refusal_case(refuse_eab))
run("refusals_names", refusal_case(refuse_names))
run("refusals_nonces", refusal_case(refuse_nonces))
run("refusals_signatures", refusal_case(refuse_signatures))
run("refusals_algorithms", refusal_case(refuse_algorithms))
run("failed_challenge", test_failed_challenge)
run("concurrent", test_concurrent)
run("kill9", test_kill9)
finish()
