#include "server/acme/problem.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define URN(t) "urn:ietf:params:acme:error:" t

static const struct {
  const char *type;
  int status;
} kErrors[PKID_ACME_NUM_ERRORS] = {
    [PKID_ACME_ACCOUNT_DOES_NOT_EXIST] = {URN("accountDoesNotExist"), 400},
    [PKID_ACME_ALREADY_REVOKED] = {URN("alreadyRevoked"), 400},
    [PKID_ACME_BAD_CSR] = {URN("badCSR"), 400},
    [PKID_ACME_BAD_NONCE] = {URN("badNonce"), 400},
    [PKID_ACME_BAD_PUBLIC_KEY] = {URN("badPublicKey"), 400},
    [PKID_ACME_BAD_REVOCATION_REASON] = {URN("badRevocationReason"), 400},
    [PKID_ACME_BAD_SIGNATURE_ALGORITHM] = {URN("badSignatureAlgorithm"), 400},
    [PKID_ACME_CONNECTION] = {URN("connection"), 400},
    [PKID_ACME_EXTERNAL_ACCOUNT_REQUIRED] = {URN("externalAccountRequired"), 400},
    [PKID_ACME_INCORRECT_RESPONSE] = {URN("incorrectResponse"), 400},
    [PKID_ACME_MALFORMED] = {URN("malformed"), 400},
    [PKID_ACME_ORDER_NOT_READY] = {URN("orderNotReady"), 403},
    [PKID_ACME_RATE_LIMITED] = {URN("rateLimited"), 429},
    [PKID_ACME_REJECTED_IDENTIFIER] = {URN("rejectedIdentifier"), 400},
    [PKID_ACME_SERVER_INTERNAL] = {URN("serverInternal"), 500},
    [PKID_ACME_TLS] = {URN("tls"), 400},
    [PKID_ACME_UNAUTHORIZED] = {URN("unauthorized"), 403},
    [PKID_ACME_UNSUPPORTED_IDENTIFIER] = {URN("unsupportedIdentifier"), 400},
};

static pkid_acme_error known(pkid_acme_error e) {
  return (unsigned)e < PKID_ACME_NUM_ERRORS ? e : PKID_ACME_SERVER_INTERNAL;
}

const char *pkid_acme_error_type(pkid_acme_error e) { return kErrors[known(e)].type; }

int pkid_acme_error_status(pkid_acme_error e) { return kErrors[known(e)].status; }

static char *dump(pkid_acme_error e, const char *detail, size_t *len) {
  json_t *doc = json_pack("{s:s, s:s, s:i}", "type", pkid_acme_error_type(e), "detail", detail,
                          "status", pkid_acme_error_status(e));
  if (doc == NULL) return NULL;
  /* RFC 8555 6.2: a badSignatureAlgorithm problem MUST list the algorithms
   * accepted (lib/jws.h's). */
  if (e == PKID_ACME_BAD_SIGNATURE_ALGORITHM &&
      json_object_set_new(doc, "algorithms",
                          json_pack("[s, s, s, s]", "ES256", "ES384", "RS256", "EdDSA")) != 0) {
    json_decref(doc);
    return NULL;
  }
  char *text = json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII);
  json_decref(doc);
  if (text != NULL) *len = strlen(text);
  return text;
}

char *pkid_acme_problem(pkid_acme_error e, const char *detail, size_t *len) {
  if (detail == NULL) detail = "";
  char *text = dump(e, detail, len);
  if (text != NULL) return text;
  /* jansson takes UTF-8 only; a detail that quotes a client's bytes may
   * not be: the same text with every octet outside ASCII as '?'. */
  char *ascii = strdup(detail);
  if (ascii == NULL) return NULL;
  for (char *p = ascii; *p != '\0'; p++) {
    if ((unsigned char)*p >= 0x80) *p = '?';
  }
  text = dump(e, ascii, len);
  free(ascii);
  return text;
}
