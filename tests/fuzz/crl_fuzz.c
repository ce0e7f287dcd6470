/* crl_fuzz: arbitrary bytes as a DER CertificateList.
 *
 * pki_crl_parse reads CRLs from outside pkid (`pkictl crl fetch|inspect`,
 * the agent's --crl-file, the root's CRL that pkid loads): it must accept
 * or refuse with a reason, never crash, leak or read out of bounds. What
 * lib/crl.h promises is checked:
 *  - a refusal is PKI_ERR_INVALID or PKI_ERR_UNSUPPORTED (or out of
 *    memory) with a message, and leaves the struct zeroed;
 *  - an accepted CRL points into the input only, is v1 or v2 (v2 when it
 *    has extensions), holds at most one entry per 20 octets of input, and
 *    its serials (1 to 20 octets, positive), reasons (-1 or a CRLReason),
 *    cRLNumbers (at most 20 octets), key identifier and freshestCRL URI
 *    are within their bounds;
 *  - its signature, checked against a key of our own (an Ed25519 CA made
 *    once, for speed), fails cleanly;
 *  - it is rebuilt with pki_crl_build under that CA, from what was read
 *    (the builder may refuse what it does not write, with a reason); what
 *    it builds parses back to the same numbers, times, URI and entries,
 *    and verifies under the CA's key. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>

#include "lib/cert.h"
#include "lib/crl.h"
#include "lib/der.h"
#include "lib/key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pki_issuer g_ca;

static void init_ca(void) {
  pki_err err;
  memset(&g_ca, 0, sizeof(g_ca));
  g_ca.key = pki_key_generate(PKI_KEY_ED25519, 256, &err);
  g_ca.key_type = PKI_KEY_ED25519;
  g_ca.path_len = -1;
  g_ca.ski_len = 20;
  CBB cbb;
  if (g_ca.key == NULL || !CBB_init(&cbb, 64) ||
      !pki_der_add_name(&cbb, "Fuzz", "Fuzz CRL CA") ||
      !pki_der_finish(&cbb, &g_ca.name, &g_ca.name_len) ||
      !pki_key_identifier(g_ca.ski, g_ca.key, &err)) {
    abort();
  }
}

static void check_refusal(const pki_err *err, int also_exhausted) {
  if ((err->code != PKI_ERR_INVALID && err->code != PKI_ERR_UNSUPPORTED &&
       !(also_exhausted && err->code == PKI_ERR_EXHAUSTED)) ||
      err->msg[0] == '\0') {
    abort();
  }
}

/* within: |cbs| lies inside [data, data + size). */
static int within(const CBS *cbs, const uint8_t *data, size_t size) {
  const uint8_t *p = CBS_data(cbs);
  return CBS_len(cbs) <= size && p >= data && p + CBS_len(cbs) <= data + size;
}

static void check_parsed(const pki_crl *crl, const uint8_t *data, size_t size) {
  if (crl->version != 1 && crl->version != 2) abort();
  if (!within(&crl->tbs, data, size) || !within(&crl->sig_alg, data, size) ||
      !within(&crl->signature, data, size) || !within(&crl->issuer, data, size) ||
      CBS_len(&crl->tbs) == 0 || CBS_len(&crl->sig_alg) == 0 || CBS_len(&crl->issuer) == 0) {
    abort();
  }
  /* Extensions make it v2 (5.1.2.1). */
  if (crl->version == 1 &&
      (crl->has_number || crl->is_delta || crl->aki_len != 0 || crl->freshest_url[0] != '\0')) {
    abort();
  }
  if (crl->number_len > 20 || crl->base_number_len > 20 || crl->aki_len > sizeof(crl->aki) ||
      (crl->has_number && crl->number_len == 0) ||
      (crl->is_delta && crl->base_number_len == 0) ||
      memchr(crl->freshest_url, '\0', sizeof(crl->freshest_url)) == NULL) {
    abort();
  }
  if (crl->has_number) {
    uint64_t v = 0;
    for (size_t i = 0; i < crl->number_len; i++) v = v << 8 | crl->number[i];
    if (crl->number_u64 != (crl->number_len <= 8 ? v : UINT64_MAX)) abort();
  }
  /* Each entry is at least 20 octets of DER. */
  if ((crl->num_entries > 0) != (crl->entries != NULL) || crl->num_entries > size / 20) abort();
  for (size_t i = 0; i < crl->num_entries; i++) {
    const pki_crl_entry *e = &crl->entries[i];
    if (e->serial.len == 0 || e->serial.len > PKI_SERIAL_MAX ||
        (e->serial.len > 1 && e->serial.bytes[0] == 0x00) ||
        (e->reason != -1 && !pki_crl_reason_valid(e->reason))) {
      abort();
    }
  }
}

static int same_entries(const pki_crl *a, const pki_crl *b) {
  if (a->num_entries != b->num_entries) return 0;
  for (size_t i = 0; i < a->num_entries; i++) {
    const pki_crl_entry *x = &a->entries[i], *y = &b->entries[i];
    /* unspecified (0) is written as no reasonCode (5.3.1). */
    int rx = x->reason == 0 ? -1 : x->reason;
    if (x->serial.len != y->serial.len ||
        memcmp(x->serial.bytes, y->serial.bytes, x->serial.len) != 0 ||
        x->revocation_date != y->revocation_date || rx != y->reason ||
        x->invalidity_date != y->invalidity_date) {
      return 0;
    }
  }
  return 1;
}

static void rebuild(const pki_crl *crl) {
  pki_crl_params p;
  memset(&p, 0, sizeof(p));
  p.number = crl->has_number ? crl->number_u64 : 0;
  p.this_update = crl->this_update;
  p.next_update = crl->next_update;
  p.is_delta = crl->is_delta;
  p.base_number = crl->is_delta ? crl->base_number_u64 : 0;
  p.freshest_url = crl->freshest_url[0] != '\0' ? crl->freshest_url : NULL;
  uint8_t *der = NULL;
  size_t len = 0;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_crl_build(&der, &len, &g_ca, NULL, &p, crl->entries, crl->num_entries, &err)) {
    if (err.code != PKI_ERR_INVALID || err.msg[0] == '\0' || der != NULL) abort();
    return;
  }
  pki_crl back;
  if (der == NULL || len == 0 || !pki_crl_parse(&back, der, len, &err)) abort();
  if (back.version != 2 || !back.has_number || back.number_u64 != p.number ||
      back.this_update != p.this_update || back.next_update != p.next_update ||
      back.is_delta != p.is_delta || (p.is_delta && back.base_number_u64 != p.base_number) ||
      strcmp(back.freshest_url, crl->freshest_url) != 0 ||
      !CBS_mem_equal(&back.issuer, g_ca.name, g_ca.name_len) || back.aki_len != g_ca.ski_len ||
      memcmp(back.aki, g_ca.ski, g_ca.ski_len) != 0 || !same_entries(crl, &back)) {
    abort();
  }
  if (!pki_crl_verify(&back, g_ca.key, &err)) abort();
  pki_crl_cleanup(&back);
  free(der);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (g_ca.key == NULL) init_ca();
  pki_crl crl;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_crl_parse(&crl, data, size, &err)) {
    check_refusal(&err, 1);
    static const pki_crl zero;
    if (memcmp(&crl, &zero, sizeof(crl)) != 0) abort();
    return 0;
  }
  check_parsed(&crl, data, size);
  /* Signed by someone else (or not at all): refused, with a reason. */
  pki_err_clear(&err);
  if (pki_crl_verify(&crl, g_ca.key, &err)) abort();
  if ((err.code != PKI_ERR_AUTH && err.code != PKI_ERR_UNSUPPORTED &&
       err.code != PKI_ERR_INVALID) ||
      err.msg[0] == '\0') {
    abort();
  }
  rebuild(&crl);
  pki_crl_cleanup(&crl);
  return 0;
}
