/* ocsp.h: the OCSP codec: requests in, signed responses out (RFC 6960,
 * with the lightweight profile of RFC 5019). No HTTP here: the responder in
 * the server moves these bytes over HTTP/1.1.
 *
 * How pkid answers OCSP (the design this codec serves):
 *  - Responses are signed ahead, at issuance, at revocation and again before
 *    nextUpdate, and served from memory: the hot path is a parse, a byte
 *    comparison that finds the CA, a look-up by serial and a copy. Signing
 *    many at once goes through a pki_ocsp_signer, which hashes the CA's
 *    name and key and encodes its responder ID and signature algorithm once.
 *  - The CA that issued a certificate signs the responses about it itself
 *    (RFC 6960 4.2.2.2): no delegated responder certificate, so the
 *    response carries no certs. The responder ID is byKey: the SHA-1 of the
 *    CA's subjectPublicKey, which is also its SHA-1 issuerKeyHash.
 *  - CertID hash: RFC 5019 requires SHA-1, which is what `openssl ocsp` and
 *    haproxy's stapling send by default, so every certificate gets a SHA-1
 *    response ahead of time. A SHA-256 response is signed the first time a
 *    SHA-256 CertID asks for that serial and is then kept and refreshed like
 *    the SHA-1 one: clients match a response to their request by the hash
 *    algorithm, both hashes and the serial, so a response carries the
 *    request's CertID (a response signed on demand echoes it exactly,
 *    parameters included; see pki_ocsp_cert_id_make).
 *  - Nonces: pre-produced responses carry none (RFC 5019 2.2.1); a request's
 *    nonce is parsed and recorded but never echoed.
 *  - Requests: RFC 5019 2.1.1 has clients send one Request. The parser
 *    accepts up to PKI_OCSP_MAX_REQUESTS in one OCSPRequest (what
 *    `openssl ocsp` sends for several -cert options) and refuses more; the
 *    server answers a one-Request request from memory, and may answer a
 *    longer list with pki_ocsp_signer_sign (one signature for all).
 *  - A request that fails to parse (PKI_ERR_INVALID: not DER, or not an
 *    OCSPRequest; PKI_ERR_UNSUPPORTED: another CertID hash, an unknown
 *    critical extension, too many Requests) is answered with the unsigned
 *    malformedRequest response of pki_ocsp_error_response. A CertID that
 *    names none of our CAs is answered with unauthorized (RFC 5019 2.2.3);
 *    an unknown serial of one of our CAs with a signed "unknown".
 *  - Signed requests are accepted; their signature is skipped, not checked
 *    (pkid answers anyone). All times are GeneralizedTime (RFC 6960 4.2.1).
 *
 * Buffers lib/ hands out are freed with free(). */
#ifndef PKID_LIB_OCSP_H
#define PKID_LIB_OCSP_H

#include <stddef.h>
#include <stdint.h>

#include "lib/cert.h"
#include "lib/der.h"
#include "lib/err.h"
#include "lib/serial.h"

/* id-pkix-ocsp-nonce (RFC 6960 4.4.1) and id-pkix-ocsp-basic (4.2.1). */
PKI_DER_OID(PKI_OID_OCSP_NONCE, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02);
PKI_DER_OID(PKI_OID_OCSP_BASIC, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01);
/* CertID hash algorithms: id-sha1 and id-sha256. */
PKI_DER_OID(PKI_OID_SHA1, 0x2b, 0x0e, 0x03, 0x02, 0x1a);
PKI_DER_OID(PKI_OID_SHA256, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01);

#define PKI_OCSP_MAX_REQUESTS 8
#define PKI_OCSP_HASH_MAX 32
/* A serial in a CertID: the INTEGER's content octets, at most RFC 5280's 20
 * octets of value plus a leading sign octet. */
#define PKI_OCSP_SERIAL_MAX (PKI_SERIAL_MAX + 1)
/* The nonce extension's extnValue, recorded as is: RFC 8954 bounds the
 * nonce to 32 octets, plus its OCTET STRING header. Longer is refused. */
#define PKI_OCSP_NONCE_MAX 34

typedef enum pki_ocsp_hash {
  PKI_OCSP_HASH_SHA1 = 0,
  PKI_OCSP_HASH_SHA256 = 1,
} pki_ocsp_hash;
#define PKI_OCSP_NUM_HASHES 2

/* pki_ocsp_hash_len is 20 for SHA-1 and 32 for SHA-256. */
size_t pki_ocsp_hash_len(pki_ocsp_hash hash);

typedef struct pki_ocsp_cert_id {
  pki_ocsp_hash hash;
  int params_null; /* the AlgorithmIdentifier had NULL parameters (else none) */
  uint8_t name_hash[PKI_OCSP_HASH_MAX]; /* pki_ocsp_hash_len(hash) octets */
  uint8_t key_hash[PKI_OCSP_HASH_MAX];
  uint8_t serial[PKI_OCSP_SERIAL_MAX]; /* INTEGER content octets, DER-minimal */
  size_t serial_len;
} pki_ocsp_cert_id;

typedef struct pki_ocsp_request {
  pki_ocsp_cert_id ids[PKI_OCSP_MAX_REQUESTS];
  size_t num_ids; /* 1 to PKI_OCSP_MAX_REQUESTS */
  int has_nonce;
  uint8_t nonce[PKI_OCSP_NONCE_MAX]; /* extnValue contents */
  size_t nonce_len;
  int has_requestor_name; /* requestorName [1] was present (not kept) */
  int is_signed;          /* optionalSignature was present (not checked) */
} pki_ocsp_request;

/* pki_ocsp_request_parse reads a DER OCSPRequest, strictly. See the top of
 * this file for what is refused and with which code. */
int pki_ocsp_request_parse(pki_ocsp_request *out, const uint8_t *der, size_t len,
                           pki_err *err);

/* The hashes that identify a CA in CertIDs, computed once per CA:
 * issuerNameHash over its subject Name DER, issuerKeyHash over its
 * subjectPublicKey BIT STRING's value, for each algorithm. */
typedef struct pki_ocsp_hashes {
  uint8_t name_hash[PKI_OCSP_NUM_HASHES][PKI_OCSP_HASH_MAX];
  uint8_t key_hash[PKI_OCSP_NUM_HASHES][PKI_OCSP_HASH_MAX];
} pki_ocsp_hashes;

int pki_ocsp_issuer_hashes(pki_ocsp_hashes *out, const pki_issuer *ca, pki_err *err);

/* pki_ocsp_cert_id_matches reports whether |id| names the CA of |hashes|
 * (both hashes equal, under the CertID's algorithm). The serial is the
 * caller's to look up. */
int pki_ocsp_cert_id_matches(const pki_ocsp_cert_id *id, const pki_ocsp_hashes *hashes);

/* pki_ocsp_cert_id_make fills the CertID a pre-produced response carries
 * for |serial| of the CA of |hashes|, with NULL algorithm parameters as
 * OpenSSL (so haproxy) and Go write them. Clients match a response to their
 * CertID by the algorithm's OID, hashes and serial, not its parameters
 * (OpenSSL's OCSP_id_cmp), so it also answers a request whose parameters
 * are absent; a response signed on demand echoes the request's form. */
void pki_ocsp_cert_id_make(pki_ocsp_cert_id *out, const pki_ocsp_hashes *hashes,
                           pki_ocsp_hash hash, const pki_serial *serial);

typedef enum pki_ocsp_cert_status {
  PKI_OCSP_GOOD = 0,
  PKI_OCSP_REVOKED = 1,
  PKI_OCSP_UNKNOWN = 2,
} pki_ocsp_cert_status;

/* One SingleResponse. Times are seconds since the epoch, UTC. */
typedef struct pki_ocsp_single {
  pki_ocsp_cert_id id;
  pki_ocsp_cert_status status;
  int64_t revocation_time;  /* PKI_OCSP_REVOKED only */
  int revocation_reason;    /* CRLReason 0..10 but 7, or -1 to leave it out */
  int64_t this_update;      /* also the response's producedAt */
  int64_t next_update;      /* after this_update */
} pki_ocsp_single;

/* A CA prepared to sign responses: its hashes, responder ID and signature
 * AlgorithmIdentifier, encoded once. It borrows |ca|, which must outlive it.
 * Signing with one signer from several threads at once is safe. */
typedef struct pki_ocsp_signer {
  const pki_issuer *ca;
  pki_ocsp_hashes hashes;
  uint8_t responder_id[2 + 2 + 20]; /* [2] EXPLICIT KeyHash */
  uint8_t sig_alg[32];              /* AlgorithmIdentifier element */
  size_t sig_alg_len;
} pki_ocsp_signer;

int pki_ocsp_signer_init(pki_ocsp_signer *out, const pki_issuer *ca, pki_err *err);

/* pki_ocsp_signer_sign builds and signs one successful OCSPResponse holding
 * |num| SingleResponses (1 to PKI_OCSP_MAX_REQUESTS); producedAt is the
 * first one's thisUpdate. The DER is malloc'd. */
int pki_ocsp_signer_sign(const pki_ocsp_signer *signer, uint8_t **out, size_t *out_len,
                         const pki_ocsp_single *singles, size_t num, pki_err *err);

/* pki_ocsp_signer_sign_with is pki_ocsp_signer_sign with the signature made
 * through |with| (NULL: the CA's token or key, pki_issuer_sign). */
int pki_ocsp_signer_sign_with(const pki_ocsp_signer *signer, const pki_signer *with,
                              uint8_t **out, size_t *out_len, const pki_ocsp_single *singles,
                              size_t num, pki_err *err);

/* pki_ocsp_signer_sign_each signs |num| responses, one per single: the
 * refresh of a whole CA's pre-produced responses. outs[i] and out_lens[i]
 * receive malloc'd DER; on failure none is left allocated. */
int pki_ocsp_signer_sign_each(const pki_ocsp_signer *signer, uint8_t **outs,
                              size_t *out_lens, const pki_ocsp_single *singles,
                              size_t num, pki_err *err);

/* pki_ocsp_response_build signs a response about one certificate with |ca|
 * (pki_ocsp_signer_init then pki_ocsp_signer_sign). */
int pki_ocsp_response_build(uint8_t **out, size_t *out_len, const pki_issuer *ca,
                            const pki_ocsp_single *single, pki_err *err);

/* OCSPResponseStatus (RFC 6960 4.2.1); 4 is not used. */
typedef enum pki_ocsp_response_status {
  PKI_OCSP_SUCCESSFUL = 0,
  PKI_OCSP_MALFORMED_REQUEST = 1,
  PKI_OCSP_INTERNAL_ERROR = 2,
  PKI_OCSP_TRY_LATER = 3,
  PKI_OCSP_SIG_REQUIRED = 5,
  PKI_OCSP_UNAUTHORIZED = 6,
} pki_ocsp_response_status;

/* pki_ocsp_error_response returns the fixed, unsigned OCSPResponse with
 * |status| and no responseBytes (5 octets of static storage, not to be
 * freed), or NULL for PKI_OCSP_SUCCESSFUL or a value not listed above. */
const uint8_t *pki_ocsp_error_response(pki_ocsp_response_status status, size_t *out_len);

/* pki_ocsp_malformed is pki_ocsp_error_response(PKI_OCSP_MALFORMED_REQUEST). */
const uint8_t *pki_ocsp_malformed(size_t *out_len);

#endif /* PKID_LIB_OCSP_H */
