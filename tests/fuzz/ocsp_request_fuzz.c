/* ocsp_request_fuzz: arbitrary bytes as a DER OCSPRequest.
 *
 * pki_ocsp_request_parse reads what anyone on the network sends to the
 * responder's port: it must accept or refuse with a reason, never crash or
 * read out of bounds, and what it accepts must respect the bounds the
 * responder relies on (request count, hash and serial lengths, nonce size).
 * An accepted request is then answered as the responder would: its CertIDs
 * are matched against a CA's hashes and echoed into a signed response (an
 * Ed25519 CA made once, for speed), with a status and reason taken from the
 * input. A refusal leaves the request zeroed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>

#include "lib/cert.h"
#include "lib/der.h"
#include "lib/key.h"
#include "lib/ocsp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pki_issuer g_ca;
static pki_ocsp_signer g_signer;

static void init_ca(void) {
  pki_err err;
  g_ca.key = pki_key_generate(PKI_KEY_ED25519, 256, &err);
  g_ca.key_type = PKI_KEY_ED25519;
  CBB cbb;
  if (g_ca.key == NULL || !CBB_init(&cbb, 64) ||
      !pki_der_add_name(&cbb, "Fuzz", "Fuzz OCSP CA") ||
      !pki_der_finish(&cbb, &g_ca.name, &g_ca.name_len) ||
      !pki_ocsp_signer_init(&g_signer, &g_ca, &err)) {
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (g_ca.key == NULL) init_ca();
  pki_ocsp_request req;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_ocsp_request_parse(&req, data, size, &err)) {
    if ((err.code != PKI_ERR_INVALID && err.code != PKI_ERR_UNSUPPORTED) ||
        err.msg[0] == '\0' || req.num_ids != 0) {
      abort();
    }
    return 0;
  }
  if (req.num_ids == 0 || req.num_ids > PKI_OCSP_MAX_REQUESTS ||
      req.nonce_len > PKI_OCSP_NONCE_MAX || (req.has_nonce && req.nonce_len == 0)) {
    abort();
  }
  pki_ocsp_single singles[PKI_OCSP_MAX_REQUESTS];
  for (size_t i = 0; i < req.num_ids; i++) {
    const pki_ocsp_cert_id *id = &req.ids[i];
    if ((id->hash != PKI_OCSP_HASH_SHA1 && id->hash != PKI_OCSP_HASH_SHA256) ||
        id->serial_len == 0 || id->serial_len > PKI_OCSP_SERIAL_MAX) {
      abort();
    }
    CBS serial;
    int negative;
    CBS_init(&serial, id->serial, id->serial_len);
    if (!CBS_is_valid_asn1_integer(&serial, &negative)) abort();
    (void)pki_ocsp_cert_id_matches(id, &g_signer.hashes);
    memset(&singles[i], 0, sizeof(singles[i]));
    singles[i].id = *id;
    singles[i].status = (pki_ocsp_cert_status)(data[size - 1 - i % size] % 3);
    singles[i].revocation_time = 1700000000;
    singles[i].revocation_reason = (int)(data[i % size] % 12) - 1;
    if (singles[i].revocation_reason == 7) singles[i].revocation_reason = 8;
    singles[i].this_update = 1767225600;
    singles[i].next_update = 1767225600 + 86400;
  }
  uint8_t *resp = NULL;
  size_t resp_len;
  if (!pki_ocsp_signer_sign(&g_signer, &resp, &resp_len, singles, req.num_ids, &err) ||
      resp_len < 100) {
    abort();
  }
  free(resp);
  return 0;
}
