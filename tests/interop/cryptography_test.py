#!/usr/bin/python3
"""cryptography_test: pkid's certificates under Python's cryptography.

Debian's python3-cryptography (OpenSSL 3 underneath) must parse every
certificate `pkictl ceremony demo` writes, verify each signature with the
issuer's key, and, given the same fields, encode exactly the same
TBSCertificate bytes as pkid did: OpenSSL's encoder is the reference for
pkid's DER writer.

Usage: cryptography_test.py PKICTL   (Debian's /usr/bin/python3: the pyenv
python3 on PATH does not see Debian's packages.)
"""
import datetime
import ipaddress
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID
from testlib import finish, run  # noqa: E402


def load_all(pki):
    """Every certificate in the tree, by path (chains and trust stores aside)."""
    certs = {}
    for root, dirs, files in os.walk(pki):
        # issued/ holds copies of certificates found elsewhere in the tree,
        # left for pkid to import.
        if "issued" in dirs:
            dirs.remove("issued")
        for f in files:
            if f.endswith(".crt") and not f.endswith("-chain.crt"):
                path = os.path.join(root, f)
                with open(path, "rb") as fh:
                    certs[path] = x509.load_pem_x509_certificate(fh.read())
    return certs


def issuer_of(cert, cas):
    for ca in cas:
        if ca.subject == cert.issuer:
            return ca
    raise AssertionError("no issuer for %s" % cert.subject.rfc4514_string())


def verify_signature(cert, issuer):
    key = issuer.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes)
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                   cert.signature_hash_algorithm)
    else:
        raise AssertionError("unexpected issuer key type")


def rebuild_general_name(name):
    """The same name, rebuilt from its value alone (not from pkid's bytes)."""
    if isinstance(name, x509.DNSName):
        return x509.DNSName(name.value)
    if isinstance(name, x509.UniformResourceIdentifier):
        return x509.UniformResourceIdentifier(name.value)
    if isinstance(name, x509.RFC822Name):
        return x509.RFC822Name(name.value)
    if isinstance(name, x509.IPAddress):
        return x509.IPAddress(ipaddress.ip_network(name.value) if isinstance(
            name.value, (ipaddress.IPv4Network, ipaddress.IPv6Network))
                              else ipaddress.ip_address(str(name.value)))
    raise AssertionError("unexpected name %r" % name)


def rebuild_extension(ext, cert, issuer):
    v = ext.value
    oid = ext.oid
    if oid == ExtensionOID.BASIC_CONSTRAINTS:
        return x509.BasicConstraints(ca=v.ca, path_length=v.path_length)
    if oid == ExtensionOID.KEY_USAGE:
        return x509.KeyUsage(
            digital_signature=v.digital_signature, content_commitment=v.content_commitment,
            key_encipherment=v.key_encipherment, data_encipherment=v.data_encipherment,
            key_agreement=v.key_agreement, key_cert_sign=v.key_cert_sign, crl_sign=v.crl_sign,
            encipher_only=False, decipher_only=False)
    if oid == ExtensionOID.EXTENDED_KEY_USAGE:
        return x509.ExtendedKeyUsage(list(v))
    if oid == ExtensionOID.SUBJECT_KEY_IDENTIFIER:
        # Computed here from the key: RFC 5280 4.2.1.2 method 1.
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    if oid == ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())
    if oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
        return x509.SubjectAlternativeName([rebuild_general_name(n) for n in v])
    if oid == ExtensionOID.AUTHORITY_INFORMATION_ACCESS:
        return x509.AuthorityInformationAccess(
            [x509.AccessDescription(d.access_method, rebuild_general_name(d.access_location))
             for d in v])
    if oid == ExtensionOID.CRL_DISTRIBUTION_POINTS:
        return x509.CRLDistributionPoints(
            [x509.DistributionPoint(
                full_name=[rebuild_general_name(n) for n in p.full_name] if p.full_name else None,
                relative_name=p.relative_name, reasons=p.reasons, crl_issuer=p.crl_issuer)
             for p in v])
    if oid == ExtensionOID.NAME_CONSTRAINTS:
        return x509.NameConstraints(
            permitted_subtrees=[rebuild_general_name(n) for n in v.permitted_subtrees]
            if v.permitted_subtrees else None,
            excluded_subtrees=[rebuild_general_name(n) for n in v.excluded_subtrees]
            if v.excluded_subtrees else None)
    raise AssertionError("unexpected extension %s" % oid.dotted_string)


# The default catalogue's crl_url and ca_issuers_url share this base; the
# CA names that follow it, by common name.
BASE = "http://127.0.0.1:8081/"
CA_NAMES = {
    "Cybersec Framework Root CA": "root",
    "Cybersec Framework Infrastructure CA": "infrastructure-ca",
    "Cybersec Framework Agents CA": "agents-ca",
    "Cybersec Framework External Integrations CA": "external-ca",
    "Cybersec Framework Load Balancer CA": "load-balancer-ca",
}


def check_crl_dp(cert, url, what):
    """One non-critical DistributionPoint: fullName |url|, nothing else."""
    ext = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert not ext.critical, what
    points = list(ext.value)
    assert len(points) == 1, what
    p = points[0]
    assert p.full_name == [x509.UniformResourceIdentifier(url)], (what, p.full_name)
    assert p.relative_name is None and p.reasons is None and p.crl_issuer is None, what


def rebuild_name(name):
    return x509.Name([x509.NameAttribute(a.oid, a.value) for a in name])


def rebuild_tbs(cert, issuer):
    """OpenSSL's encoding of the same certificate fields."""
    b = (x509.CertificateBuilder()
         .subject_name(rebuild_name(cert.subject))
         .issuer_name(rebuild_name(cert.issuer))
         .serial_number(cert.serial_number)
         .not_valid_before(cert.not_valid_before)
         .not_valid_after(cert.not_valid_after)
         .public_key(cert.public_key()))
    for ext in cert.extensions:
        b = b.add_extension(rebuild_extension(ext, cert, issuer), critical=ext.critical)
    # Sign with a throwaway key of the issuer's type: only the TBS is compared.
    ikey = issuer.public_key()
    if isinstance(ikey, ec.EllipticCurvePublicKey):
        return b.sign(ec.generate_private_key(ikey.curve),
                      cert.signature_hash_algorithm).tbs_certificate_bytes
    return b.sign(ed25519.Ed25519PrivateKey.generate(), None).tbs_certificate_bytes


def main():
    pkictl = os.path.realpath(sys.argv[1])
    tmp = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
    pki = os.path.join(tmp, "pki")
    with open(os.open(os.path.join(tmp, "pass"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write("cryptography-test\n")
    subprocess.run([pkictl, "ceremony", "demo", "--out", pki, "--passphrase-file",
                    os.path.join(tmp, "pass")], check=True, stdout=subprocess.DEVNULL)
    certs = load_all(pki)
    cas = [c for c in certs.values()
           if c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca]
    leaves = {p: c for p, c in certs.items() if c not in cas}

    def parses_everything():
        assert len(cas) == 5, len(cas)
        assert len(leaves) == 23, len(leaves)
        for path, c in certs.items():
            assert c.version == x509.Version.v3, path
            assert 0 < c.serial_number < 2 ** 159, path
            c.extensions  # every extension parses

    def signatures_verify():
        for path, c in certs.items():
            verify_signature(c, issuer_of(c, cas))

    def tbs_matches_openssl_encoder():
        for path, c in certs.items():
            want = rebuild_tbs(c, issuer_of(c, cas))
            assert want == c.tbs_certificate_bytes, "%s: TBS differs from OpenSSL's\n%s\n%s" % (
                path, want.hex(), c.tbs_certificate_bytes.hex())

    def leaves_follow_profile():
        for path, c in leaves.items():
            ext = c.extensions
            bc = ext.get_extension_for_class(x509.BasicConstraints)
            assert bc.critical and not bc.value.ca, path
            ku = ext.get_extension_for_class(x509.KeyUsage)
            assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign, path
            san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
            assert len(uris) == 1 and uris[0].startswith(
                "spiffe://cybersec-framework.local/"), path
            aia = ext.get_extension_for_class(x509.AuthorityInformationAccess).value
            assert aia[0].access_location.value.startswith("http://"), path
            # OCSP, then where the issuer's certificate is; the issuer's CRL.
            issuer_cn = issuer_of(c, cas).subject.get_attributes_for_oid(
                NameOID.COMMON_NAME)[0].value
            name = CA_NAMES[issuer_cn]
            assert [d.access_method for d in aia] == [
                x509.AuthorityInformationAccessOID.OCSP,
                x509.AuthorityInformationAccessOID.CA_ISSUERS], path
            assert aia[1].access_location.value == BASE + "ca/%s.crt" % name, path
            check_crl_dp(c, BASE + "crl/%s.crl" % name, path)
            eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert len(list(eku)) == 1, path
            assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME), path

    def load_balancer_ip_san():
        lb = [c for p, c in leaves.items() if p.endswith("lb-current.crt")][0]
        san = lb.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
        assert "127.0.0.1" not in san.get_values_for_type(x509.DNSName)
        assert "*.cybersec-framework.local" in san.get_values_for_type(x509.DNSName)

    def cas_follow_profile():
        by_cn = {c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value: c for c in cas}
        root = [c for c in cas if c.subject == c.issuer]
        assert len(root) == 1
        for cn, c in by_cn.items():
            bc = c.extensions.get_extension_for_class(x509.BasicConstraints)
            assert bc.critical and bc.value.ca, cn
            ku = c.extensions.get_extension_for_class(x509.KeyUsage)
            assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign, cn
            if c is not root[0]:
                nc = c.extensions.get_extension_for_class(x509.NameConstraints)
                assert nc.critical, cn
                # Revoked on its issuer's CRL; no OCSP for CAs.
                name = CA_NAMES[c.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value]
                aia = c.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
                assert not aia.critical, cn
                assert [(d.access_method, d.access_location.value) for d in aia.value] == [
                    (x509.AuthorityInformationAccessOID.CA_ISSUERS,
                     BASE + "ca/%s.crt" % name)], cn
                check_crl_dp(c, BASE + "crl/%s.crl" % name, cn)
            else:
                for cls in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess):
                    try:
                        c.extensions.get_extension_for_class(cls)
                        raise AssertionError("the root has %s" % cls.__name__)
                    except x509.ExtensionNotFound:
                        pass
        lb_ca = [c for cn, c in by_cn.items() if "Load Balancer" in cn][0]
        assert lb_ca.extensions.get_extension_for_class(
            x509.BasicConstraints).value.path_length == 0
        infra = [c for cn, c in by_cn.items() if "Infrastructure" in cn][0]
        assert lb_ca.issuer == infra.subject
        assert infra.extensions.get_extension_for_class(
            x509.BasicConstraints).value.path_length == 1

    def validity_sane():
        now = datetime.datetime.utcnow()
        for path, c in certs.items():
            assert c.not_valid_before <= now < c.not_valid_after, path
            issuer = issuer_of(c, cas)
            assert issuer.not_valid_before <= c.not_valid_before, path
            assert c.not_valid_after <= issuer.not_valid_after, path

    run("parses_everything", parses_everything)
    run("signatures_verify", signatures_verify)
    run("tbs_matches_openssl_encoder", tbs_matches_openssl_encoder)
    run("leaves_follow_profile", leaves_follow_profile)
    run("load_balancer_ip_san", load_balancer_ip_san)
    run("cas_follow_profile", cas_follow_profile)
    run("validity_sane", validity_sane)
    finish()


if __name__ == "__main__":
    main()
