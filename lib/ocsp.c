#include "lib/ocsp.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/der.h"
#include "lib/sig.h"

#define TAG_EXPLICIT(n) (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | (n))
#define TAG_IMPLICIT(n) (CBS_ASN1_CONTEXT_SPECIFIC | (n))

size_t pki_ocsp_hash_len(pki_ocsp_hash hash) {
  return hash == PKI_OCSP_HASH_SHA256 ? 32 : 20;
}

/* ---- Requests ---------------------------------------------------------- */

/* parse_extensions reads an Extensions SEQUENCE (at least one). With
 * |req| non-NULL the nonce is recorded there; any other extension is
 * ignored unless critical. */
static int parse_extensions(CBS *exts_el, pki_ocsp_request *req, pki_err *err) {
  CBS exts;
  if (!CBS_get_asn1(exts_el, &exts, CBS_ASN1_SEQUENCE) || CBS_len(exts_el) != 0 ||
      CBS_len(&exts) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: bad Extensions");
    return 0;
  }
  int seen_nonce = 0;
  while (CBS_len(&exts) > 0) {
    CBS ext, oid, value;
    int critical;
    if (!CBS_get_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&ext, &oid, CBS_ASN1_OBJECT) || !pki_der_oid_ok(&oid) ||
        !pki_der_get_optional_bool(&ext, &critical) ||
        !CBS_get_asn1(&ext, &value, CBS_ASN1_OCTETSTRING) || CBS_len(&ext) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: bad Extension");
      return 0;
    }
    if (req != NULL && PKI_DER_OID_IS(&oid, PKI_OID_OCSP_NONCE)) {
      if (seen_nonce) {
        PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: two nonces");
        return 0;
      }
      seen_nonce = 1;
      if (CBS_len(&value) == 0 || CBS_len(&value) > PKI_OCSP_NONCE_MAX) {
        PKI_ERR(err, PKI_ERR_INVALID,
                "malformed OCSP request: a nonce of %zu octets (1 to %d taken)",
                CBS_len(&value), PKI_OCSP_NONCE_MAX);
        return 0;
      }
      req->has_nonce = 1;
      req->nonce_len = CBS_len(&value);
      memcpy(req->nonce, CBS_data(&value), CBS_len(&value));
    } else if (critical) {
      PKI_ERR(err, PKI_ERR_UNSUPPORTED,
              "OCSP request has a critical extension pkid does not know");
      return 0;
    }
  }
  return 1;
}

/* parse_cert_id reads a CertID element. */
static int parse_cert_id(CBS *cbs, pki_ocsp_cert_id *id, pki_err *err) {
  CBS seq, alg, oid, name_hash, key_hash, serial;
  if (!CBS_get_asn1(cbs, &seq, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&seq, &alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&alg, &oid, CBS_ASN1_OBJECT) || !pki_der_oid_ok(&oid)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: bad CertID");
    return 0;
  }
  id->params_null = 0;
  if (CBS_len(&alg) > 0) {
    CBS null;
    if (!CBS_get_asn1(&alg, &null, CBS_ASN1_NULL) || CBS_len(&null) != 0 ||
        CBS_len(&alg) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "malformed OCSP request: CertID hash parameters must be NULL or absent");
      return 0;
    }
    id->params_null = 1;
  }
  if (PKI_DER_OID_IS(&oid, PKI_OID_SHA1)) {
    id->hash = PKI_OCSP_HASH_SHA1;
  } else if (PKI_DER_OID_IS(&oid, PKI_OID_SHA256)) {
    id->hash = PKI_OCSP_HASH_SHA256;
  } else {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "OCSP request: CertID hash algorithm is not SHA-1 or SHA-256");
    return 0;
  }
  size_t hash_len = pki_ocsp_hash_len(id->hash);
  if (!CBS_get_asn1(&seq, &name_hash, CBS_ASN1_OCTETSTRING) ||
      !CBS_get_asn1(&seq, &key_hash, CBS_ASN1_OCTETSTRING) ||
      !CBS_get_asn1(&seq, &serial, CBS_ASN1_INTEGER) || CBS_len(&seq) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: bad CertID");
    return 0;
  }
  if (CBS_len(&name_hash) != hash_len || CBS_len(&key_hash) != hash_len) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "malformed OCSP request: CertID hashes are not %zu octets", hash_len);
    return 0;
  }
  int negative;
  size_t serial_len = CBS_len(&serial);
  if (!CBS_is_valid_asn1_integer(&serial, &negative) || serial_len > PKI_OCSP_SERIAL_MAX ||
      (serial_len == PKI_OCSP_SERIAL_MAX && CBS_data(&serial)[0] != 0x00)) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "malformed OCSP request: serial number is not a DER INTEGER of at most 20 octets");
    return 0;
  }
  memcpy(id->name_hash, CBS_data(&name_hash), hash_len);
  memcpy(id->key_hash, CBS_data(&key_hash), hash_len);
  memcpy(id->serial, CBS_data(&serial), serial_len);
  id->serial_len = serial_len;
  return 1;
}

/* parse_signature checks the shape of optionalSignature's Signature:
 * SEQUENCE { AlgorithmIdentifier, BIT STRING, [0] EXPLICIT certs OPTIONAL }.
 * The signature is not checked. */
static int parse_signature(CBS *sig_el) {
  CBS sig, alg, oid, bits, certs_el, certs;
  int has_certs;
  if (!CBS_get_asn1(sig_el, &sig, CBS_ASN1_SEQUENCE) || CBS_len(sig_el) != 0 ||
      !CBS_get_asn1(&sig, &alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&alg, &oid, CBS_ASN1_OBJECT) || !pki_der_oid_ok(&oid) ||
      !CBS_get_asn1(&sig, &bits, CBS_ASN1_BITSTRING) ||
      !CBS_is_valid_asn1_bitstring(&bits) ||
      !CBS_get_optional_asn1(&sig, &certs_el, &has_certs, TAG_EXPLICIT(0)) ||
      CBS_len(&sig) != 0) {
    return 0;
  }
  if (has_certs) {
    if (!CBS_get_asn1(&certs_el, &certs, CBS_ASN1_SEQUENCE) || CBS_len(&certs_el) != 0) {
      return 0;
    }
    while (CBS_len(&certs) > 0) {
      CBS cert;
      if (!CBS_get_asn1(&certs, &cert, CBS_ASN1_SEQUENCE)) return 0;
    }
  }
  return 1;
}

int pki_ocsp_request_parse(pki_ocsp_request *out, const uint8_t *der, size_t len,
                           pki_err *err) {
  memset(out, 0, sizeof(*out));
  CBS in, req, tbs, list, el;
  int present;
  CBS_init(&in, der, len);
  if (!CBS_get_asn1(&in, &req, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
      !CBS_get_asn1(&req, &tbs, CBS_ASN1_SEQUENCE)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: not a DER OCSPRequest");
    goto fail;
  }
  /* version [0] EXPLICIT DEFAULT v1: DER leaves the default out, and v1 is
   * the only version, so any version field is refused. */
  if (CBS_peek_asn1_tag(&tbs, TAG_EXPLICIT(0))) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "malformed OCSP request: version is present (DER omits the default v1)");
    goto fail;
  }
  /* requestorName [1] EXPLICIT GeneralName: one element, not kept. */
  if (!CBS_get_optional_asn1(&tbs, &el, &present, TAG_EXPLICIT(1))) goto bad_tbs;
  if (present) {
    CBS name;
    unsigned tag;
    if (!CBS_get_any_asn1(&el, &name, &tag) || CBS_len(&el) != 0) goto bad_tbs;
    out->has_requestor_name = 1;
  }
  if (!CBS_get_asn1(&tbs, &list, CBS_ASN1_SEQUENCE)) goto bad_tbs;
  if (CBS_len(&list) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: empty requestList");
    goto fail;
  }
  while (CBS_len(&list) > 0) {
    if (out->num_ids == PKI_OCSP_MAX_REQUESTS) {
      PKI_ERR(err, PKI_ERR_UNSUPPORTED,
              "OCSP request asks about more than %d certificates", PKI_OCSP_MAX_REQUESTS);
      goto fail;
    }
    CBS one;
    if (!CBS_get_asn1(&list, &one, CBS_ASN1_SEQUENCE)) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: bad Request");
      goto fail;
    }
    if (!parse_cert_id(&one, &out->ids[out->num_ids], err)) goto fail;
    if (!CBS_get_optional_asn1(&one, &el, &present, TAG_EXPLICIT(0)) ||
        CBS_len(&one) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: bad Request");
      goto fail;
    }
    if (present && !parse_extensions(&el, NULL, err)) goto fail;
    out->num_ids++;
  }
  if (!CBS_get_optional_asn1(&tbs, &el, &present, TAG_EXPLICIT(2)) || CBS_len(&tbs) != 0) {
    goto bad_tbs;
  }
  if (present && !parse_extensions(&el, out, err)) goto fail;
  if (!CBS_get_optional_asn1(&req, &el, &present, TAG_EXPLICIT(0)) || CBS_len(&req) != 0 ||
      (present && !parse_signature(&el))) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: bad optionalSignature");
    goto fail;
  }
  out->is_signed = present;
  return 1;

bad_tbs:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed OCSP request: bad TBSRequest");
fail:
  memset(out, 0, sizeof(*out));
  return 0;
}

/* ---- Matching ---------------------------------------------------------- */

int pki_ocsp_issuer_hashes(pki_ocsp_hashes *out, const pki_issuer *ca, pki_err *err) {
  memset(out, 0, sizeof(*out));
  if (ca == NULL || ca->key == NULL || ca->name == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "OCSP: the CA has no key or name");
    return 0;
  }
  CBB cbb;
  uint8_t *spki = NULL;
  size_t spki_len;
  if (!CBB_init(&cbb, 128) || !EVP_marshal_public_key(&cbb, ca->key) ||
      !CBB_finish(&cbb, &spki, &spki_len)) {
    CBB_cleanup(&cbb);
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "OCSP: cannot encode the CA's public key");
    return 0;
  }
  CBS cbs, seq, alg, spk;
  CBS_init(&cbs, spki, spki_len);
  if (!CBS_get_asn1(&cbs, &seq, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&seq, &alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&seq, &spk, CBS_ASN1_BITSTRING) || !CBS_skip(&spk, 1)) {
    OPENSSL_free(spki);
    PKI_ERR(err, PKI_ERR_INTERNAL, "OCSP: cannot read the CA's public key");
    return 0;
  }
  SHA1(ca->name, ca->name_len, out->name_hash[PKI_OCSP_HASH_SHA1]);
  SHA256(ca->name, ca->name_len, out->name_hash[PKI_OCSP_HASH_SHA256]);
  SHA1(CBS_data(&spk), CBS_len(&spk), out->key_hash[PKI_OCSP_HASH_SHA1]);
  SHA256(CBS_data(&spk), CBS_len(&spk), out->key_hash[PKI_OCSP_HASH_SHA256]);
  OPENSSL_free(spki);
  return 1;
}

int pki_ocsp_cert_id_matches(const pki_ocsp_cert_id *id, const pki_ocsp_hashes *hashes) {
  if (id->hash != PKI_OCSP_HASH_SHA1 && id->hash != PKI_OCSP_HASH_SHA256) return 0;
  size_t n = pki_ocsp_hash_len(id->hash);
  return memcmp(id->name_hash, hashes->name_hash[id->hash], n) == 0 &&
         memcmp(id->key_hash, hashes->key_hash[id->hash], n) == 0;
}

void pki_ocsp_cert_id_make(pki_ocsp_cert_id *out, const pki_ocsp_hashes *hashes,
                           pki_ocsp_hash hash, const pki_serial *serial) {
  memset(out, 0, sizeof(*out));
  out->hash = hash;
  out->params_null = 1;
  size_t n = pki_ocsp_hash_len(hash);
  memcpy(out->name_hash, hashes->name_hash[hash], n);
  memcpy(out->key_hash, hashes->key_hash[hash], n);
  size_t len = serial->len <= PKI_SERIAL_MAX ? serial->len : PKI_SERIAL_MAX;
  /* A pki_serial is the INTEGER's content octets already (serial.h). */
  memcpy(out->serial, serial->bytes, len);
  out->serial_len = len;
}

/* ---- Responses --------------------------------------------------------- */

int pki_ocsp_signer_init(pki_ocsp_signer *out, const pki_issuer *ca, pki_err *err) {
  memset(out, 0, sizeof(*out));
  if (!pki_ocsp_issuer_hashes(&out->hashes, ca, err)) return 0;
  out->ca = ca;
  /* ResponderID byKey [2] EXPLICIT KeyHash: the SHA-1 of the CA's
   * subjectPublicKey, the same bytes as its SHA-1 issuerKeyHash. */
  out->responder_id[0] = (uint8_t)(0xa2);
  out->responder_id[1] = 22;
  out->responder_id[2] = CBS_ASN1_OCTETSTRING;
  out->responder_id[3] = 20;
  memcpy(out->responder_id + 4, out->hashes.key_hash[PKI_OCSP_HASH_SHA1], 20);
  CBB cbb;
  if (!CBB_init_fixed(&cbb, out->sig_alg, sizeof(out->sig_alg))) goto oom;
  if (!pki_sig_add_alg(&cbb, ca->key_type, err)) {
    CBB_cleanup(&cbb);
    return 0;
  }
  if (!CBB_finish(&cbb, NULL, &out->sig_alg_len)) goto oom;
  return 1;
oom:
  CBB_cleanup(&cbb);
  PKI_ERR_OOM(err);
  return 0;
}

static int add_cert_id(CBB *cbb, const pki_ocsp_cert_id *id) {
  CBB seq, alg, null;
  const uint8_t *oid = id->hash == PKI_OCSP_HASH_SHA256 ? PKI_OID_SHA256 : PKI_OID_SHA1;
  size_t oid_len = id->hash == PKI_OCSP_HASH_SHA256 ? sizeof(PKI_OID_SHA256)
                                                    : sizeof(PKI_OID_SHA1);
  size_t n = pki_ocsp_hash_len(id->hash);
  if (!CBB_add_asn1(cbb, &seq, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&seq, &alg, CBS_ASN1_SEQUENCE) || !pki_der_add_oid(&alg, oid, oid_len) ||
      (id->params_null && !CBB_add_asn1(&alg, &null, CBS_ASN1_NULL)) ||
      !CBB_add_asn1_octet_string(&seq, id->name_hash, n) ||
      !CBB_add_asn1_octet_string(&seq, id->key_hash, n)) {
    return 0;
  }
  CBB serial;
  return CBB_add_asn1(&seq, &serial, CBS_ASN1_INTEGER) &&
         CBB_add_bytes(&serial, id->serial, id->serial_len) && CBB_flush(cbb);
}

static int single_ok(const pki_ocsp_single *s, pki_err *err) {
  if (s->id.hash != PKI_OCSP_HASH_SHA1 && s->id.hash != PKI_OCSP_HASH_SHA256) {
    PKI_ERR(err, PKI_ERR_INVALID, "OCSP response: unknown CertID hash");
    return 0;
  }
  CBS serial;
  int negative;
  CBS_init(&serial, s->id.serial, s->id.serial_len);
  if (s->id.serial_len == 0 || s->id.serial_len > PKI_OCSP_SERIAL_MAX ||
      !CBS_is_valid_asn1_integer(&serial, &negative)) {
    PKI_ERR(err, PKI_ERR_INVALID, "OCSP response: the serial is not a DER INTEGER");
    return 0;
  }
  if (s->status != PKI_OCSP_GOOD && s->status != PKI_OCSP_REVOKED &&
      s->status != PKI_OCSP_UNKNOWN) {
    PKI_ERR(err, PKI_ERR_INVALID, "OCSP response: unknown certificate status");
    return 0;
  }
  if (s->status == PKI_OCSP_REVOKED &&
      (s->revocation_reason < -1 || s->revocation_reason > 10 ||
       s->revocation_reason == 7)) {
    PKI_ERR(err, PKI_ERR_INVALID, "OCSP response: CRLReason %d does not exist",
            s->revocation_reason);
    return 0;
  }
  if (s->next_update <= s->this_update) {
    PKI_ERR(err, PKI_ERR_INVALID, "OCSP response: nextUpdate is not after thisUpdate");
    return 0;
  }
  return 1;
}

static int add_single(CBB *list, const pki_ocsp_single *s) {
  /* Every child CBB lives until the flush at the end. */
  CBB seq, status, next, reason, value;
  if (!CBB_add_asn1(list, &seq, CBS_ASN1_SEQUENCE) || !add_cert_id(&seq, &s->id)) return 0;
  switch (s->status) {
    case PKI_OCSP_GOOD:
      if (!CBB_add_asn1(&seq, &status, TAG_IMPLICIT(0))) return 0;
      break;
    case PKI_OCSP_REVOKED:
      /* revoked [1] IMPLICIT RevokedInfo: a constructed [1]. */
      if (!CBB_add_asn1(&seq, &status, TAG_EXPLICIT(1)) ||
          !pki_der_add_generalized_time(&status, s->revocation_time)) {
        return 0;
      }
      if (s->revocation_reason >= 0 &&
          (!CBB_add_asn1(&status, &reason, TAG_EXPLICIT(0)) ||
           !CBB_add_asn1(&reason, &value, CBS_ASN1_ENUMERATED) ||
           !CBB_add_u8(&value, (uint8_t)s->revocation_reason))) {
        return 0;
      }
      break;
    default:
      if (!CBB_add_asn1(&seq, &status, TAG_IMPLICIT(2))) return 0;
      break;
  }
  return CBB_flush(&seq) && pki_der_add_generalized_time(&seq, s->this_update) &&
         CBB_add_asn1(&seq, &next, TAG_EXPLICIT(0)) &&
         pki_der_add_generalized_time(&next, s->next_update) && CBB_flush(list);
}

/* responseStatus ENUMERATED successful(0). */
static const uint8_t kSuccessful[] = {CBS_ASN1_ENUMERATED, 0x01, PKI_OCSP_SUCCESSFUL};

/* Room for the TBSResponseData of PKI_OCSP_MAX_REQUESTS singles (under 200
 * octets each) and for the whole response around it. */

#define TBS_MAX 4096
#define RESP_MAX (TBS_MAX + 512)

int pki_ocsp_signer_sign(const pki_ocsp_signer *signer, uint8_t **out, size_t *out_len,
                         const pki_ocsp_single *singles, size_t num, pki_err *err) {
  return pki_ocsp_signer_sign_with(signer, NULL, out, out_len, singles, num, err);
}

int pki_ocsp_signer_sign_with(const pki_ocsp_signer *signer, const pki_signer *with,
                              uint8_t **out, size_t *out_len, const pki_ocsp_single *singles,
                              size_t num, pki_err *err) {
  if (num == 0 || num > PKI_OCSP_MAX_REQUESTS) {
    PKI_ERR(err, PKI_ERR_INVALID, "OCSP response: 1 to %d certificates, not %zu",
            PKI_OCSP_MAX_REQUESTS, num);
    return 0;
  }
  for (size_t i = 0; i < num; i++) {
    if (!single_ok(&singles[i], err)) return 0;
  }
  uint8_t tbs_buf[TBS_MAX];
  CBB cbb, tbs, list;
  size_t tbs_len;
  if (!CBB_init_fixed(&cbb, tbs_buf, sizeof(tbs_buf)) ||
      !CBB_add_asn1(&cbb, &tbs, CBS_ASN1_SEQUENCE) ||
      !CBB_add_bytes(&tbs, signer->responder_id, sizeof(signer->responder_id)) ||
      !pki_der_add_generalized_time(&tbs, singles[0].this_update) ||
      !CBB_add_asn1(&tbs, &list, CBS_ASN1_SEQUENCE)) {
    goto enc;
  }
  for (size_t i = 0; i < num; i++) {
    if (!add_single(&list, &singles[i])) goto enc;
  }
  if (!CBB_finish(&cbb, NULL, &tbs_len)) goto enc;

  uint8_t *sig = NULL;
  size_t sig_len;
  if (!pki_issuer_sign(signer->ca, with, &sig, &sig_len, tbs_buf, tbs_len, err)) return 0;

  uint8_t resp_buf[RESP_MAX];
  CBB resp, bytes_el, bytes, oct, basic, bits;
  size_t resp_len;
  int ok = CBB_init_fixed(&cbb, resp_buf, sizeof(resp_buf)) &&
           CBB_add_asn1(&cbb, &resp, CBS_ASN1_SEQUENCE) &&
           CBB_add_bytes(&resp, kSuccessful, sizeof(kSuccessful)) &&
           CBB_add_asn1(&resp, &bytes_el, TAG_EXPLICIT(0)) &&
           CBB_add_asn1(&bytes_el, &bytes, CBS_ASN1_SEQUENCE) &&
           pki_der_add_oid(&bytes, PKI_OID_OCSP_BASIC, sizeof(PKI_OID_OCSP_BASIC)) &&
           CBB_add_asn1(&bytes, &oct, CBS_ASN1_OCTETSTRING) &&
           CBB_add_asn1(&oct, &basic, CBS_ASN1_SEQUENCE) &&
           CBB_add_bytes(&basic, tbs_buf, tbs_len) &&
           CBB_add_bytes(&basic, signer->sig_alg, signer->sig_alg_len) &&
           CBB_add_asn1(&basic, &bits, CBS_ASN1_BITSTRING) && CBB_add_u8(&bits, 0) &&
           CBB_add_bytes(&bits, sig, sig_len) && CBB_finish(&cbb, NULL, &resp_len);
  free(sig);
  if (!ok) goto enc;
  uint8_t *copy = malloc(resp_len);
  if (copy == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  memcpy(copy, resp_buf, resp_len);
  *out = copy;
  *out_len = resp_len;
  return 1;

enc:
  CBB_cleanup(&cbb);
  PKI_ERR(err, PKI_ERR_INTERNAL, "OCSP response: cannot encode (a time out of range?)");
  return 0;
}

int pki_ocsp_signer_sign_each(const pki_ocsp_signer *signer, uint8_t **outs,
                              size_t *out_lens, const pki_ocsp_single *singles,
                              size_t num, pki_err *err) {
  for (size_t i = 0; i < num; i++) {
    if (!pki_ocsp_signer_sign(signer, &outs[i], &out_lens[i], &singles[i], 1, err)) {
      pki_err_prefix(err, "response %zu of %zu: ", i + 1, num);
      for (size_t j = 0; j < i; j++) {
        free(outs[j]);
        outs[j] = NULL;
        out_lens[j] = 0;
      }
      return 0;
    }
  }
  return 1;
}

int pki_ocsp_response_build(uint8_t **out, size_t *out_len, const pki_issuer *ca,
                            const pki_ocsp_single *single, pki_err *err) {
  pki_ocsp_signer signer;
  return pki_ocsp_signer_init(&signer, ca, err) &&
         pki_ocsp_signer_sign(&signer, out, out_len, single, 1, err);
}

/* OCSPResponse { responseStatus ENUMERATED } with no responseBytes. */
static const uint8_t kErrorResponses[][5] = {
    {0x30, 0x03, 0x0a, 0x01, PKI_OCSP_MALFORMED_REQUEST},
    {0x30, 0x03, 0x0a, 0x01, PKI_OCSP_INTERNAL_ERROR},
    {0x30, 0x03, 0x0a, 0x01, PKI_OCSP_TRY_LATER},
    {0x30, 0x03, 0x0a, 0x01, PKI_OCSP_SIG_REQUIRED},
    {0x30, 0x03, 0x0a, 0x01, PKI_OCSP_UNAUTHORIZED},
};

const uint8_t *pki_ocsp_error_response(pki_ocsp_response_status status, size_t *out_len) {
  *out_len = 0;
  if ((int)status <= PKI_OCSP_SUCCESSFUL || (int)status > PKI_OCSP_UNAUTHORIZED) return NULL;
  for (size_t i = 0; i < sizeof(kErrorResponses) / sizeof(kErrorResponses[0]); i++) {
    if (kErrorResponses[i][4] == (uint8_t)status) {
      *out_len = sizeof(kErrorResponses[i]);
      return kErrorResponses[i];
    }
  }
  return NULL;
}

const uint8_t *pki_ocsp_malformed(size_t *out_len) {
  return pki_ocsp_error_response(PKI_OCSP_MALFORMED_REQUEST, out_len);
}
