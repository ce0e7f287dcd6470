"""acmeclient.py: a small ACME client (RFC 8555) for pkid's tests and bench.

    from acmeclient import Client, Key, Http01Responder, AcmeError
    web = Http01Responder().start()              # 127.0.0.1, a port the kernel picks
    c = Client("https://127.0.0.1:PORT/acme/directory", cafile=ROOT_PEM)
    c.new_account(eab_kid, eab_hmac_key)         # RFC 8555 7.3, 7.3.4
    cert = c.issue(["postgres.cybersec-framework.local"], web)
    c.revoke(cert.der())                         # 7.6, by the account
    web.stop()

Keys and JWS are Python cryptography's; HTTPS is the standard library's
(http.client over an ssl context whose only trust anchor is |cafile|). One
Client is one account on one keep-alive connection: not for several threads
at once (the bench gives each thread its own).

A request that the server answers with an error raises AcmeError, which
carries the HTTP status, the headers and the problem document (RFC 7807,
types of RFC 8555 6.7: see ERR). To forge what a real client never sends,
the lower layers are open: jws() builds a flattened JWS with any protected
header (any "alg", "nonce", "url", "kid" or "jwk") and a signature that may
be replaced; post_jws() sends any body; eab() makes an External Account
Binding with any MAC key.

Every wait is bounded in count and time (poll())."""
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import ssl
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

ERR = "urn:ietf:params:acme:error:"
JOSE = "application/jose+json"


def b64u(data):
    """base64url without padding (RFC 8555 6.1, RFC 7515 2)."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(n, size=None):
    size = size or max(1, (n.bit_length() + 7) // 8)
    return n.to_bytes(size, "big")


def compact(doc):
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


class AcmeError(Exception):
    """An error response: .status, .headers (lowercased names), .problem
    (the document, {} if the body was not JSON), .type (its "type")."""

    def __init__(self, status, headers, body, what=""):
        self.status, self.headers, self.body = status, headers, body
        try:
            self.problem = json.loads(body.decode()) if body else {}
        except ValueError:
            self.problem = {}
        if not isinstance(self.problem, dict):
            self.problem = {}
        self.type = self.problem.get("type", "")
        super().__init__("%s: HTTP %d %s %s" % (what, status, self.type,
                                                self.problem.get("detail", body[:300])))


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body.decode())

    @property
    def location(self):
        return self.headers.get("location")


class Key:
    """An account or certificate key and its JWS algorithm: "ES256",
    "ES384", "RS256" or "EdDSA"."""

    def __init__(self, private, alg):
        self.private, self.alg = private, alg

    @classmethod
    def generate(cls, alg="ES256"):
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()), alg)
        if alg == "ES384":
            return cls(ec.generate_private_key(ec.SECP384R1()), alg)
        if alg == "RS256":
            return cls(rsa.generate_private_key(65537, 2048), alg)
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate(), alg)
        raise ValueError("no key for alg " + alg)

    @classmethod
    def from_pem(cls, pem):
        k = serialization.load_pem_private_key(pem, None)
        if isinstance(k, ec.EllipticCurvePrivateKey):
            return cls(k, "ES384" if k.curve.name == "secp384r1" else "ES256")
        if isinstance(k, rsa.RSAPrivateKey):
            return cls(k, "RS256")
        if isinstance(k, ed25519.Ed25519PrivateKey):
            return cls(k, "EdDSA")
        raise ValueError("unsupported key")

    def pem(self):
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())

    def jwk(self):
        """The public JWK (RFC 7517, 7518 6, RFC 8037 2)."""
        pub = self.private.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            size = (pub.curve.key_size + 7) // 8
            n = pub.public_numbers()
            return {"kty": "EC", "crv": "P-256" if size == 32 else "P-384",
                    "x": b64u(_int_bytes(n.x, size)), "y": b64u(_int_bytes(n.y, size))}
        if isinstance(pub, rsa.RSAPublicKey):
            n = pub.public_numbers()
            return {"kty": "RSA", "n": b64u(_int_bytes(n.n)), "e": b64u(_int_bytes(n.e))}
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}

    def thumbprint(self):
        """RFC 7638: SHA-256 of the required members, sorted, no spaces."""
        return b64u(hashlib.sha256(compact(self.jwk()).encode()).digest())

    def sign(self, data):
        """The JWS signature (RFC 7518 3.4: ECDSA as r || s, fixed width)."""
        k = self.private
        if isinstance(k, ec.EllipticCurvePrivateKey):
            size = (k.curve.key_size + 7) // 8
            h = hashes.SHA256() if size == 32 else hashes.SHA384()
            r, s = decode_dss_signature(k.sign(data, ec.ECDSA(h)))
            return _int_bytes(r, size) + _int_bytes(s, size)
        if isinstance(k, rsa.RSAPrivateKey):
            return k.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return k.sign(data)


def verify_jws(jws, public_key):
    """Checks a flattened JWS of ours with cryptography (the round trip the
    tests of this file use); returns the payload bytes."""
    protected = json.loads(b64u_decode(jws["protected"]))
    data = (jws["protected"] + "." + jws["payload"]).encode()
    sig = b64u_decode(jws["signature"])
    alg = protected["alg"]
    if alg in ("ES256", "ES384"):
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
        half = len(sig) // 2
        der = encode_dss_signature(int.from_bytes(sig[:half], "big"),
                                   int.from_bytes(sig[half:], "big"))
        public_key.verify(der, data, ec.ECDSA(hashes.SHA256() if alg == "ES256"
                                              else hashes.SHA384()))
    elif alg == "RS256":
        public_key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "EdDSA":
        public_key.verify(sig, data)
    else:
        raise ValueError("alg " + alg)
    return b64u_decode(jws["payload"])


def jws(payload, protected, key=None, mac_key=None, signature=None):
    """A flattened JWS (RFC 7515 7.2.2). |payload|: a dict (JSON), bytes,
    or None for POST-as-GET's empty payload (RFC 8555 6.3). Signed by
    |key| (a Key), or MAC'd with |mac_key| (HS256 bytes), or with the
    given |signature| bytes (b"" for alg "none")."""
    if payload is None:
        body = ""
    elif isinstance(payload, (bytes, bytearray)):
        body = b64u(bytes(payload))
    else:
        body = b64u(json.dumps(payload))
    prot = b64u(json.dumps(protected))
    data = (prot + "." + body).encode()
    if signature is None:
        if mac_key is not None:
            signature = hmac.new(mac_key, data, hashlib.sha256).digest()
        else:
            signature = key.sign(data)
    return {"protected": prot, "payload": body, "signature": b64u(signature)}


def make_csr(names, key):
    """A CSR (DER) for |names| (DNS SANs, the first also the CN) with
    |key| (a Key)."""
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    h = None if isinstance(key.private, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(key.private, h).public_bytes(serialization.Encoding.DER)


def cert_id(cert):
    """RFC 9773 4.1: base64url(AKI keyIdentifier) "." base64url(serial's
    DER content octets) of a cryptography Certificate."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    n = cert.serial_number
    return b64u(aki.key_identifier) + "." + b64u(n.to_bytes(n.bit_length() // 8 + 1, "big"))


class Certificate:
    """What issue() returns: the order, the PEM chain, its certificate key."""

    def __init__(self, order_url, order, pem, key):
        self.order_url, self.order, self.pem, self.key = order_url, order, pem, key
        blocks = pem.decode().split("-----END CERTIFICATE-----")
        self.chain = [x509.load_pem_x509_certificate((b + "-----END CERTIFICATE-----\n").encode())
                      for b in blocks if "BEGIN CERTIFICATE" in b]
        self.cert = self.chain[0]

    def der(self):
        return self.cert.public_bytes(serialization.Encoding.DER)


class Client:
    """One ACME account (its Key) against one directory URL."""

    def __init__(self, directory_url, cafile, key=None, timeout=30, alg="ES256"):
        self.directory_url = directory_url
        u = urllib.parse.urlsplit(directory_url)
        assert u.scheme == "https", directory_url
        self.host, self.port = u.hostname, u.port or 443
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.timeout = timeout
        self.key = key or Key.generate(alg)
        self.account_url = None
        self.conn = None
        self._dir = None
        self.nonce = None  # the last Replay-Nonce seen, unused
        self.requests = 0
        self.poll_step = 0.2  # seconds between polls (the bench makes it shorter)

    # --- HTTP ------------------------------------------------------------------------

    def _connect(self):
        self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                timeout=self.timeout)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, url, body=None, content_type=None, headers=None):
        """One HTTP exchange on the keep-alive connection (one reconnect if
        the server closed it between requests); a Response of any status.
        The Replay-Nonce it carries is kept for the next JWS."""
        u = urllib.parse.urlsplit(url)
        path = u.path + ("?" + u.query if u.query else "")
        h = dict(headers or {})
        if content_type:
            h["Content-Type"] = content_type
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.BadStatusLine):
                self.close()
                if attempt:
                    raise
        self.requests += 1
        hdrs = {}
        for k, v in r.getheaders():
            # Repeated fields (Link) are one list (RFC 9110 5.3).
            k = k.lower()
            hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
        if r.getheader("Connection", "").lower() == "close":
            self.close()
        if "replay-nonce" in hdrs:
            self.nonce = hdrs["replay-nonce"]
        return Response(r.status, hdrs, data)

    # --- directory and nonces ----------------------------------------------------------

    def directory(self, refresh=False):
        if self._dir is None or refresh:
            r = self.request("GET", self.directory_url)
            if r.status != 200:
                raise AcmeError(r.status, r.headers, r.body, "directory")
            self._dir = r.json()
        return self._dir

    def url(self, name):
        return self.directory()[name]

    def new_nonce(self):
        """A fresh nonce from newNonce (HEAD, RFC 8555 7.2)."""
        r = self.request("HEAD", self.url("newNonce"))
        if r.status not in (200, 204) or "replay-nonce" not in r.headers:
            raise AcmeError(r.status, r.headers, r.body, "newNonce")
        return r.headers["replay-nonce"]

    def take_nonce(self):
        """The nonce of the last response, or a new one: each is used once."""
        n, self.nonce = self.nonce, None
        return n or self.new_nonce()

    # --- JWS requests ------------------------------------------------------------------

    def protected(self, url, nonce=None, use_jwk=False, key=None, alg=None, **extra):
        key = key or self.key
        h = {"alg": alg or key.alg, "nonce": nonce or self.take_nonce(), "url": url}
        if use_jwk or self.account_url is None:
            h["jwk"] = key.jwk()
        else:
            h["kid"] = self.account_url
        h.update(extra)
        return h

    def post_jws(self, url, body, content_type=JOSE):
        """Sends a JWS (a dict, or raw bytes) as is; a Response of any status."""
        data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        return self.request("POST", url, body=data, content_type=content_type)

    def post(self, url, payload, use_jwk=False, key=None, retries=3, expect=(200, 201)):
        """A signed POST (POST-as-GET when |payload| is None); the Response,
        or AcmeError. A badNonce is retried with the fresh nonce it carries
        (RFC 8555 6.5), at most |retries| times."""
        for _ in range(retries + 1):
            body = jws(payload, self.protected(url, use_jwk=use_jwk, key=key), key or self.key)
            r = self.post_jws(url, body)
            if r.status in expect:
                return r
            err = AcmeError(r.status, r.headers, r.body, "POST " + url)
            if err.type != ERR + "badNonce":
                raise err
        raise err

    # --- accounts (7.3) ----------------------------------------------------------------

    def eab(self, kid, hmac_key, url=None, jwk=None, alg="HS256", mac_key=None, **extra):
        """The externalAccountBinding JWS (7.3.4): HS256 by the EAB key over
        the account's JWK, "url" the newAccount URL, "kid" the EAB kid. The
        others forge it: another |url|, |jwk|, |alg| or raw |mac_key|."""
        protected = {"alg": alg, "kid": kid, "url": url or self.url("newAccount")}
        protected.update(extra)
        return jws(jwk or self.key.jwk(), protected,
                   mac_key=mac_key if mac_key is not None else b64u_decode(hmac_key))

    def new_account(self, eab_kid=None, eab_hmac=None, contact=("mailto:someone@example.com",),
                    eab=None, only_existing=False):
        """newAccount; |eab| (a JWS dict) replaces the one made from the kid
        and key. Sets .account_url; returns the account object."""
        payload = {"termsOfServiceAgreed": True}
        if contact is not None:
            payload["contact"] = list(contact)
        if only_existing:
            payload["onlyReturnExisting"] = True
        if eab is None and eab_kid is not None:
            eab = self.eab(eab_kid, eab_hmac)
        if eab is not None:
            payload["externalAccountBinding"] = eab
        url = self.url("newAccount")
        r = self.post(url, payload, use_jwk=True)
        self.account_url = r.location
        assert self.account_url, "newAccount answered without a Location"
        self.account_status = r.status
        return r.json()

    def account(self):
        """The account object (POST-as-GET to its URL, 7.3.2 ... 6.3)."""
        return self.post(self.account_url, None).json()

    def update_contact(self, contact):
        return self.post(self.account_url, {"contact": list(contact)}).json()

    def deactivate(self):
        """7.3.6."""
        return self.post(self.account_url, {"status": "deactivated"}).json()

    def orders(self):
        """The account's orders list (7.1.2.1): URLs."""
        acct = self.account()
        return self.post(acct["orders"], None).json()["orders"]

    def key_change(self, new_key, inner_account=None, inner_old_key=None):
        """7.3.5: the inner JWS by |new_key| (jwk, the keyChange URL, no
        nonce) over {"account", "oldKey"}, inside a JWS by the old key."""
        url = self.url("keyChange")
        inner = jws({"account": inner_account or self.account_url,
                     "oldKey": inner_old_key or self.key.jwk()},
                    {"alg": new_key.alg, "jwk": new_key.jwk(), "url": url}, new_key)
        r = self.post(url, inner)
        self.key = new_key
        return r.json()

    # --- orders, authorizations, challenges (7.4, 7.5) --------------------------------

    def new_order(self, names, **extra):
        payload = {"identifiers": [{"type": "dns", "value": n} for n in names]}
        payload.update(extra)
        r = self.post(self.url("newOrder"), payload)
        return r.location, r.json()

    def get(self, url):
        """POST-as-GET (6.3): the JSON object at |url|."""
        return self.post(url, None).json()

    def poll(self, url, until, timeout=60, step=None, limit=6000):
        """POST-as-GET |url| until its "status" is in |until| (or "invalid"),
        every |step| seconds (.poll_step), at most |timeout| seconds and
        |limit| requests; the object."""
        step = self.poll_step if step is None else step
        deadline = time.monotonic() + timeout
        for _ in range(limit):
            obj = self.get(url)
            if obj.get("status") in until or obj.get("status") == "invalid":
                return obj
            if time.monotonic() > deadline:
                break
            time.sleep(step)
        raise AssertionError("%s stayed %s (want %s)" % (url, obj.get("status"), until))

    def challenge(self, authz, ctype):
        for c in authz["challenges"]:
            if c["type"] == ctype:
                return c
        raise AssertionError("no %s challenge in %s" % (ctype, authz))

    def key_authorization(self, token):
        """8.1: token || "." || base64url(thumbprint of the account key)."""
        return token + "." + self.key.thumbprint()

    def respond(self, chall_url):
        """7.5.1: POST {} to the challenge."""
        return self.post(chall_url, {}).json()

    def finalize(self, order, csr_der):
        r = self.post(order["finalize"], {"csr": b64u(csr_der)})
        return r.json()

    def download(self, cert_url):
        """7.4.2: the PEM chain (application/pem-certificate-chain)."""
        r = self.post(cert_url, None)
        ctype = r.headers.get("content-type", "")
        assert ctype.startswith("application/pem-certificate-chain"), ctype
        # The issuer's certificate, up the chain (pkid's catalogue has a
        # caIssuers base): Link rel="up".
        assert 'rel="up"' in r.headers.get("link", ""), r.headers
        return r.body

    def authorize(self, order, responder, ctype="http-01", timeout=60):
        """Answers every pending authorization of |order| with |ctype|,
        served by |responder| (Http01Responder); the authorizations."""
        out = []
        for az_url in order["authorizations"]:
            az = self.get(az_url)
            if az["status"] == "pending":
                c = self.challenge(az, ctype)
                responder.add(c["token"], self.key_authorization(c["token"]))
                try:
                    self.respond(c["url"])
                    az = self.poll(az_url, ("valid",), timeout=timeout)
                finally:
                    responder.remove(c["token"])
            out.append(az)
        return out

    def issue(self, names, responder, cert_key=None, timeout=60, **order_extra):
        """new order -> http-01 -> finalize -> download: a Certificate.
        Raises AcmeError, or AssertionError if an authorization fails."""
        order_url, order = self.new_order(names, **order_extra)
        for az in self.authorize(order, responder, timeout=timeout):
            assert az["status"] == "valid", az
        order = self.poll(order_url, ("ready", "valid"), timeout=timeout)
        assert order["status"] != "invalid", order
        cert_key = cert_key or Key.generate("ES256")
        if order["status"] == "ready":
            order = self.finalize(order, make_csr(names, cert_key))
            if order.get("status") != "valid":
                order = self.poll(order_url, ("valid",), timeout=timeout)
        assert order["status"] == "valid", order
        return Certificate(order_url, order, self.download(order["certificate"]), cert_key)

    # --- revocation (7.6) and renewal information (RFC 9773) --------------------------

    def revoke(self, cert_der, reason=None, cert_key=None):
        """revokeCert signed by the account (kid), or by |cert_key| (jwk)."""
        payload = {"certificate": b64u(cert_der)}
        if reason is not None:
            payload["reason"] = reason
        self.post(self.url("revokeCert"), payload, use_jwk=cert_key is not None, key=cert_key)

    def renewal_info(self, cert):
        """RFC 9773 4.1: GET renewalInfo/CERTID; (Response, JSON)."""
        r = self.request("GET", self.url("renewalInfo").rstrip("/") + "/" + cert_id(cert))
        if r.status != 200:
            raise AcmeError(r.status, r.headers, r.body, "renewalInfo")
        return r, r.json()


class Http01Responder:
    """An http-01 server (RFC 8555 8.3) on a loopback port: a thread running
    http.server. Answers GET /.well-known/acme-challenge/TOKEN with the key
    authorization add() gave, or with the file TOKEN in |directory| (for a
    hook script such as uacme's); 404 otherwise. .hits counts requests."""

    PREFIX = "/.well-known/acme-challenge/"

    def __init__(self, host="127.0.0.1", port=0, directory=None):
        self.host, self.port, self.directory = host, port, directory
        self.tokens = {}
        self.hits = []
        self.lock = threading.Lock()
        self.server = self.thread = None

    def add(self, token, key_authorization):
        with self.lock:
            self.tokens[token] = key_authorization

    def remove(self, token):
        with self.lock:
            self.tokens.pop(token, None)

    def lookup(self, token):
        with self.lock:
            v = self.tokens.get(token)
        if v is None and self.directory and "/" not in token and token not in ("", ".", ".."):
            try:
                with open(os.path.join(self.directory, token)) as f:
                    v = f.read()
            except OSError:
                pass
        return v

    def start(self):
        responder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's name
                with responder.lock:
                    responder.hits.append((self.path, self.headers.get("Host")))
                value = None
                if self.path.startswith(responder.PREFIX):
                    value = responder.lookup(self.path[len(responder.PREFIX):])
                body = (value or "not found").encode()
                self.send_response(200 if value is not None else 404)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={
            "poll_interval": 0.1}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)
            self.server = None

    def __enter__(self):
        return self.start() if self.server is None else self

    def __exit__(self, *exc):
        self.stop()
