/* ocsp_tool: answers one DER OCSP request the way pkid's responder will,
 * for ocsp_openssl_test.sh.
 *
 *   ocsp_tool --pki DIR --ca NAME --passphrase-file F --in REQ.der
 *             --out RESP.der --status good|revoked|unknown [--reason N]
 *
 * It loads the CA NAME of the default catalogue from the pki/ tree DIR,
 * parses the request with pki_ocsp_request_parse and writes the response:
 * unsigned malformedRequest when the request does not parse, unsigned
 * unauthorized when a CertID names another CA, otherwise a response signed
 * by the CA with the given status for every CertID, each echoed exactly.
 * It prints the outcome ("successful", "malformedRequest: ...",
 * "unauthorized") on stdout and exits 0 whenever it wrote a response. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/file.h"
#include "lib/ocsp.h"
#include "lib/pki_tree.h"

static void usage(void) {
  fprintf(stderr,
          "usage: ocsp_tool --pki DIR --ca NAME --passphrase-file F --in REQ.der "
          "--out RESP.der --status good|revoked|unknown [--reason N]\n");
  exit(2);
}

static int fail(const pki_err *err) {
  fprintf(stderr, "ocsp_tool: %s: %s\n", pki_err_code_name(err->code), err->msg);
  return 1;
}

int main(int argc, char **argv) {
  const char *pki = NULL, *ca_name = NULL, *pass_file = NULL, *in = NULL, *out = NULL;
  const char *status_text = NULL;
  int reason = -1;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    const char *opt = argv[i], *val = argv[++i];
    if (strcmp(opt, "--pki") == 0) pki = val;
    else if (strcmp(opt, "--ca") == 0) ca_name = val;
    else if (strcmp(opt, "--passphrase-file") == 0) pass_file = val;
    else if (strcmp(opt, "--in") == 0) in = val;
    else if (strcmp(opt, "--out") == 0) out = val;
    else if (strcmp(opt, "--status") == 0) status_text = val;
    else if (strcmp(opt, "--reason") == 0) reason = atoi(val);
    else usage();
  }
  if (pki == NULL || ca_name == NULL || pass_file == NULL || in == NULL || out == NULL ||
      status_text == NULL) {
    usage();
  }
  pki_ocsp_cert_status status;
  if (strcmp(status_text, "good") == 0) status = PKI_OCSP_GOOD;
  else if (strcmp(status_text, "revoked") == 0) status = PKI_OCSP_REVOKED;
  else if (strcmp(status_text, "unknown") == 0) status = PKI_OCSP_UNKNOWN;
  else usage();

  pki_err err;
  pki_err_clear(&err);
  uint8_t *req_der = NULL, *pass = NULL;
  size_t req_len, pass_len;
  if (!pki_file_read(&req_der, &req_len, in, 65536, &err)) return fail(&err);

  pki_ocsp_request req;
  const uint8_t *fixed = NULL;
  size_t fixed_len = 0;
  if (!pki_ocsp_request_parse(&req, req_der, req_len, &err)) {
    printf("malformedRequest: %s\n", err.msg);
    fixed = pki_ocsp_malformed(&fixed_len);
  }
  free(req_der);

  pki_catalog *cat = NULL;
  pki_issuer ca;
  memset(&ca, 0, sizeof(ca));
  uint8_t *resp = NULL;
  size_t resp_len = 0;
  int ok = 0;
  if (fixed == NULL) {
    cat = pki_catalog_default(&err);
    if (cat == NULL) return fail(&err);
    const pki_catalog_ca *cca = pki_catalog_find_ca(cat, ca_name);
    if (cca == NULL) {
      fprintf(stderr, "ocsp_tool: no CA named %s\n", ca_name);
      return 1;
    }
    if (!pki_file_read(&pass, &pass_len, pass_file, 4096, &err)) return fail(&err);
    size_t n = 0;
    while (n < pass_len && pass[n] != '\n' && pass[n] != '\r') n++;
    ok = pki_tree_load_issuer(&ca, pki, cca, pass, n, &err);
    free(pass);
    if (!ok) return fail(&err);

    pki_ocsp_signer signer;
    if (!pki_ocsp_signer_init(&signer, &ca, &err)) return fail(&err);
    pki_ocsp_single singles[PKI_OCSP_MAX_REQUESTS];
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < req.num_ids; i++) {
      if (!pki_ocsp_cert_id_matches(&req.ids[i], &signer.hashes)) {
        printf("unauthorized\n");
        fixed = pki_ocsp_error_response(PKI_OCSP_UNAUTHORIZED, &fixed_len);
        break;
      }
      memset(&singles[i], 0, sizeof(singles[i]));
      singles[i].id = req.ids[i];
      singles[i].status = status;
      singles[i].revocation_time = now - 3600;
      singles[i].revocation_reason = reason;
      singles[i].this_update = now - 60;
      singles[i].next_update = now + 86400;
    }
    if (fixed == NULL) {
      if (!pki_ocsp_signer_sign(&signer, &resp, &resp_len, singles, req.num_ids, &err)) {
        return fail(&err);
      }
      printf("successful\n");
    }
  }
  ok = pki_file_write_atomic(out, fixed != NULL ? fixed : resp,
                             fixed != NULL ? fixed_len : resp_len, 0644, &err);
  free(resp);
  pki_issuer_cleanup(&ca);
  pki_catalog_free(cat);
  return ok ? 0 : fail(&err);
}
