/* request.c: ACME request payloads (see request.h). */
#include "server/acme/request.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lib/base64.h"
#include "lib/crl.h"
#include "lib/names.h"

/* load parses |payload| as one JSON object. A member given twice is
 * refused: two readers could take different ones. */
static json_t *load(const uint8_t *payload, size_t len, pkid_acme_error *type, pki_err *err) {
  json_error_t jerr;
  json_t *doc = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES, &jerr);
  *type = PKID_ACME_MALFORMED;
  if (doc == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "the payload is not JSON: %s", jerr.text);
    return NULL;
  }
  if (!json_is_object(doc)) {
    json_decref(doc);
    PKI_ERR(err, PKI_ERR_INVALID, "the payload is not a JSON object");
    return NULL;
  }
  return doc;
}

/* get_bool reads an optional boolean member into |*out| (0 when absent). */
static int get_bool(json_t *doc, const char *name, int *out, pki_err *err) {
  json_t *v = json_object_get(doc, name);
  *out = 0;
  if (v == NULL) return 1;
  if (!json_is_boolean(v)) {
    PKI_ERR(err, PKI_ERR_INVALID, "\"%s\" is not a boolean", name);
    return 0;
  }
  *out = json_is_true(v);
  return 1;
}

/* decode_b64url decodes an optional-but-here-required string member. */
static int decode_b64url(json_t *doc, const char *name, uint8_t **out, size_t *out_len,
                         pki_err *err) {
  json_t *v = json_object_get(doc, name);
  if (!json_is_string(v)) {
    PKI_ERR(err, PKI_ERR_INVALID, "\"%s\" is missing or not a string", name);
    return 0;
  }
  size_t n = json_string_length(v);
  size_t max = pki_base64_max_decoded_len(n);
  uint8_t *buf = malloc(max > 0 ? max : 1);
  if (buf == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  if (n == 0 || !pki_base64_decode(buf, max, out_len, json_string_value(v), n,
                                   PKI_BASE64_URL | PKI_BASE64_NO_PAD, err)) {
    if (n == 0) PKI_ERR(err, PKI_ERR_INVALID, "\"%s\" is empty", name);
    free(buf);
    return 0;
  }
  *out = buf;
  return 1;
}

int pkid_acme_parse_account(pkid_acme_account_req *out, const uint8_t *payload, size_t len,
                            pkid_acme_error *type, pki_err *err) {
  memset(out, 0, sizeof(*out));
  json_t *doc = load(payload, len, type, err);
  if (doc == NULL) return 0;
  int ok = 0;
  if (!get_bool(doc, "termsOfServiceAgreed", &out->terms_agreed, err) ||
      !get_bool(doc, "onlyReturnExisting", &out->only_existing, err)) {
    goto out;
  }
  json_t *contact = json_object_get(doc, "contact");
  if (contact != NULL) {
    if (!json_is_array(contact) || json_array_size(contact) > 8) {
      PKI_ERR(err, PKI_ERR_INVALID, "\"contact\" is not an array of at most 8 URLs");
      goto out;
    }
    size_t i;
    json_t *c;
    json_array_foreach(contact, i, c) {
      /* Only mailto: URLs, as Let's Encrypt: pkid never writes to anyone,
       * but an operator reading an account wants an address, not a URL
       * that fetches something. RFC 8555 7.3 names unsupportedContact for
       * the rest; malformed is its nearest type in problem.h. */
      if (!json_is_string(c) || strncmp(json_string_value(c), "mailto:", 7) != 0 ||
          json_string_length(c) > 256 || json_string_length(c) < 8) {
        PKI_ERR(err, PKI_ERR_INVALID, "contact %zu is not a mailto: URL", i);
        goto out;
      }
    }
    if ((out->contact = json_dumps(contact, JSON_COMPACT)) == NULL) goto oom;
  }
  json_t *status = json_object_get(doc, "status");
  if (status != NULL) {
    if (!json_is_string(status) || strcmp(json_string_value(status), "deactivated") != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "an account's status may only become \"deactivated\"");
      goto out;
    }
    out->deactivate = 1;
  }
  json_t *eab = json_object_get(doc, "externalAccountBinding");
  if (eab != NULL) {
    if (!json_is_object(eab)) {
      PKI_ERR(err, PKI_ERR_INVALID, "\"externalAccountBinding\" is not a JWS object");
      goto out;
    }
    if ((out->eab = json_dumps(eab, JSON_COMPACT)) == NULL) goto oom;
  }
  ok = 1;
  goto out;
oom:
  PKI_ERR_OOM(err);
  *type = PKID_ACME_SERVER_INTERNAL;
out:
  json_decref(doc);
  if (!ok) pkid_acme_account_req_cleanup(out);
  return ok;
}

void pkid_acme_account_req_cleanup(pkid_acme_account_req *r) {
  free(r->contact);
  free(r->eab);
  r->contact = r->eab = NULL;
}

/* add_name checks one identifier and adds it, lowercased, once. */
static int add_name(pkid_acme_order_req *out, json_t *id, size_t i, pkid_acme_error *type,
                    pki_err *err) {
  json_t *t = json_object_get(id, "type");
  json_t *v = json_object_get(id, "value");
  if (!json_is_object(id) || !json_is_string(t) || !json_is_string(v)) {
    PKI_ERR(err, PKI_ERR_INVALID, "identifier %zu has no string \"type\" and \"value\"", i);
    return 0;
  }
  if (strcmp(json_string_value(t), "dns") != 0) {
    *type = PKID_ACME_UNSUPPORTED_IDENTIFIER;
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "identifier type \"%.32s\" is not supported; only dns",
            json_string_value(t));
    return 0;
  }
  const char *value = json_string_value(v);
  size_t n = json_string_length(v);
  if (n == 0 || n > PKID_ACME_MAX_NAME || strlen(value) != n) {
    PKI_ERR(err, PKI_ERR_INVALID, "identifier %zu is not a DNS name", i);
    return 0;
  }
  if (value[0] == '*') {
    *type = PKID_ACME_REJECTED_IDENTIFIER;
    PKI_ERR(err, PKI_ERR_DENIED,
            "wildcard names need dns-01 validation (RFC 8555 7.1.3), which pkid does not offer");
    return 0;
  }
  char *name = out->names[out->num_names];
  for (size_t k = 0; k < n; k++) name[k] = (char)tolower((unsigned char)value[k]);
  name[n] = '\0';
  pki_err nerr;
  if (!pki_name_check(PKI_NAME_DNS, name, &nerr)) {
    *type = PKID_ACME_REJECTED_IDENTIFIER;
    PKI_ERR(err, PKI_ERR_INVALID, "identifier %zu: %s", i, nerr.msg);
    return 0;
  }
  for (size_t k = 0; k < out->num_names; k++) {
    if (strcmp(out->names[k], name) == 0) return 1; /* named twice: once */
  }
  out->num_names++;
  return 1;
}

int pkid_acme_parse_order(pkid_acme_order_req *out, const uint8_t *payload, size_t len,
                          pkid_acme_error *type, pki_err *err) {
  memset(out, 0, sizeof(*out));
  json_t *doc = load(payload, len, type, err);
  if (doc == NULL) return 0;
  int ok = 0;
  json_t *ids = json_object_get(doc, "identifiers");
  if (!json_is_array(ids) || json_array_size(ids) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "\"identifiers\" is missing or empty");
    goto out;
  }
  if (json_array_size(ids) > PKID_ACME_MAX_IDENTIFIERS) {
    *type = PKID_ACME_REJECTED_IDENTIFIER;
    PKI_ERR(err, PKI_ERR_DENIED, "an order names at most %d identifiers",
            PKID_ACME_MAX_IDENTIFIERS);
    goto out;
  }
  size_t i;
  json_t *id;
  json_array_foreach(ids, i, id) {
    if (!add_name(out, id, i, type, err)) goto out;
  }
  if (json_object_get(doc, "notBefore") != NULL || json_object_get(doc, "notAfter") != NULL) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "notBefore and notAfter are not supported: the catalogue sets the lifetime");
    goto out;
  }
  json_t *replaces = json_object_get(doc, "replaces");
  if (replaces != NULL) {
    if (!json_is_string(replaces) || json_string_length(replaces) >= sizeof(out->replaces)) {
      PKI_ERR(err, PKI_ERR_INVALID, "\"replaces\" is not a certificate identifier");
      goto out;
    }
    memcpy(out->replaces, json_string_value(replaces), json_string_length(replaces) + 1);
  }
  ok = 1;
out:
  json_decref(doc);
  return ok;
}

int pkid_acme_parse_finalize(uint8_t **csr, size_t *csr_len, const uint8_t *payload,
                             size_t len, pkid_acme_error *type, pki_err *err) {
  *csr = NULL;
  json_t *doc = load(payload, len, type, err);
  if (doc == NULL) return 0;
  int ok = decode_b64url(doc, "csr", csr, csr_len, err);
  if (!ok) *type = PKID_ACME_BAD_CSR;
  json_decref(doc);
  return ok;
}

int pkid_acme_parse_revoke(uint8_t **cert, size_t *cert_len, int *reason,
                           const uint8_t *payload, size_t len, pkid_acme_error *type,
                           pki_err *err) {
  *cert = NULL;
  *reason = 0;
  json_t *doc = load(payload, len, type, err);
  if (doc == NULL) return 0;
  int ok = 0;
  if (!decode_b64url(doc, "certificate", cert, cert_len, err)) goto out;
  json_t *r = json_object_get(doc, "reason");
  if (r != NULL) {
    json_int_t v = json_is_integer(r) ? json_integer_value(r) : -1;
    /* removeFromCRL (8) belongs to delta CRLs only (RFC 5280 5.3.1). */
    if (v < 0 || v > 10 || !pki_crl_reason_valid((int)v) || v == 8) {
      *type = PKID_ACME_BAD_REVOCATION_REASON;
      PKI_ERR(err, PKI_ERR_INVALID, "\"reason\" is not a CRLReason a revocation may give");
      goto out;
    }
    *reason = (int)v;
  }
  ok = 1;
out:
  if (!ok) {
    free(*cert);
    *cert = NULL;
  }
  json_decref(doc);
  return ok;
}

int pkid_acme_parse_key_change(char **account, char **old_key, const uint8_t *payload,
                               size_t len, pkid_acme_error *type, pki_err *err) {
  *account = *old_key = NULL;
  json_t *doc = load(payload, len, type, err);
  if (doc == NULL) return 0;
  int ok = 0;
  json_t *a = json_object_get(doc, "account");
  json_t *k = json_object_get(doc, "oldKey");
  if (!json_is_string(a) || !json_is_object(k)) {
    PKI_ERR(err, PKI_ERR_INVALID, "keyChange needs \"account\" and \"oldKey\"");
    goto out;
  }
  *account = strdup(json_string_value(a));
  *old_key = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
  if (*account == NULL || *old_key == NULL) {
    free(*account);
    free(*old_key);
    *account = *old_key = NULL;
    *type = PKID_ACME_SERVER_INTERNAL;
    PKI_ERR_OOM(err);
    goto out;
  }
  ok = 1;
out:
  json_decref(doc);
  return ok;
}

int pkid_acme_post_as_get(size_t payload_len) { return payload_len == 0; }
