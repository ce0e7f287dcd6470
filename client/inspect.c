#include "client/inspect.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "client/crl_cmd.h"
#include "client/print.h"
#include "lib/cert_info.h"
#include "lib/crl.h"
#include "lib/csr.h"
#include "lib/der.h"
#include "lib/file.h"
#include "lib/key.h"
#include "lib/pem.h"

static void print_names(FILE *out, const char *label, const pki_name *names, size_t num) {
  if (num == 0) return;
  fprintf(out, "  %-18s", label);
  for (size_t i = 0; i < num; i++) {
    fprintf(out, "%s%s:%s", i > 0 ? ", " : "", pki_name_type_label(names[i].type),
            names[i].value);
  }
  fputc('\n', out);
}

static void print_key(FILE *out, const CBS *spki_el) {
  CBS spki = *spki_el;
  EVP_PKEY *key = EVP_parse_public_key(&spki);
  pki_key_type type;
  unsigned bits;
  pki_err err;
  if (key != NULL && pki_key_describe(&type, &bits, key, &err)) {
    fprintf(out, "  %-18s%s\n", "Key:", pki_key_type_name(type, bits));
  } else {
    fprintf(out, "  %-18s%s\n", "Key:", "unsupported or malformed");
  }
  ERR_clear_error();
  EVP_PKEY_free(key);
}

static void print_cert(FILE *out, const pki_cert_info *c, const uint8_t *der, size_t len) {
  fprintf(out, "Certificate\n  %-18s", "Serial:");
  print_hex(out, CBS_data(&c->serial), CBS_len(&c->serial), "");
  fprintf(out, "\n  %-18s", "Subject:");
  print_name(out, &c->subject);
  fprintf(out, "\n  %-18s", "Issuer:");
  print_name(out, &c->issuer);
  fprintf(out, "\n  %-18s", "Valid from:");
  print_time(out, c->not_before);
  fprintf(out, "\n  %-18s", "Valid until:");
  print_time(out, c->not_after);
  fprintf(out, " (%.1f days)\n", (double)(c->not_after - c->not_before) / 86400.0);
  print_key(out, &c->spki);
  if (c->is_ca) {
    if (c->path_len >= 0) {
      fprintf(out, "  %-18syes, path length %d\n", "CA:", c->path_len);
    } else {
      fprintf(out, "  %-18syes\n", "CA:");
    }
  } else {
    fprintf(out, "  %-18sno\n", "CA:");
  }
  static const struct {
    unsigned bit;
    const char *name;
  } kUsages[] = {{PKI_KU_DIGITAL_SIGNATURE, "digitalSignature"},
                 {PKI_KU_KEY_ENCIPHERMENT, "keyEncipherment"},
                 {PKI_KU_KEY_CERT_SIGN, "keyCertSign"},
                 {PKI_KU_CRL_SIGN, "cRLSign"}};
  if (c->has_key_usage) {
    fprintf(out, "  %-18s", "Key usage:");
    int first = 1;
    for (size_t i = 0; i < sizeof(kUsages) / sizeof(kUsages[0]); i++) {
      if (c->key_usage & kUsages[i].bit) {
        fprintf(out, "%s%s", first ? "" : ", ", kUsages[i].name);
        first = 0;
      }
    }
    fputc('\n', out);
  }
  if (c->has_ext_key_usage) {
    fprintf(out, "  %-18s%s%s%s%s\n", "Extended usage:",
            (c->ext_key_usage & 1) ? "serverAuth" : "",
            (c->ext_key_usage & 3) == 3 ? ", " : "",
            (c->ext_key_usage & 2) ? "clientAuth" : "",
            c->ext_key_usage_other ? " (and others)" : "");
  }
  print_names(out, "Names:", c->sans, c->num_sans);
  print_names(out, "Permitted:", c->permitted, c->num_permitted);
  print_names(out, "Excluded:", c->excluded, c->num_excluded);
  if (c->ocsp_url != NULL) fprintf(out, "  %-18s%s\n", "OCSP:", c->ocsp_url);
  if (c->crl_url != NULL) {
    fprintf(out, "  %-18s%s%s\n", "CRL:", c->crl_url, c->crl_dp_other ? " (and more)" : "");
  }
  if (c->ca_issuers_url != NULL) fprintf(out, "  %-18s%s\n", "Issuer cert:", c->ca_issuers_url);
  if (c->has_ski) {
    fprintf(out, "  %-18s", "Key id:");
    print_hex(out, CBS_data(&c->ski), CBS_len(&c->ski), ":");
    fputc('\n', out);
  }
  if (c->has_aki) {
    fprintf(out, "  %-18s", "Issuer key id:");
    print_hex(out, CBS_data(&c->aki), CBS_len(&c->aki), ":");
    fputc('\n', out);
  }
  print_sha256_line(out, der, len);
}

static void print_csr(FILE *out, const pki_csr *csr) {
  fprintf(out, "Certificate request (signature verified)\n  %-18s", "Subject:");
  print_name(out, &csr->subject);
  fputc('\n', out);
  fprintf(out, "  %-18s%s\n", "Key:", pki_key_type_name(csr->key_type, csr->key_bits));
  print_names(out, "Requested names:", csr->names, csr->num_names);
}

int inspect_file(FILE *out, const char *path, pki_err *err) {
  uint8_t *text = NULL, *der = NULL;
  size_t text_len, der_len;
  int ok = 0;
  /* The first certificate, CSR or CRL of a PEM file; a DER file may be
   * any of them. */
  static const char *const kLabels[] = {"CERTIFICATE", "CERTIFICATE REQUEST",
                                        "NEW CERTIFICATE REQUEST", "X509 CRL"};
  const char *label;
  if (!pki_file_read(&text, &text_len, path, 1 << 28, err)) return 0;
  if (!pki_pem_decode(&der, &der_len, &label, kLabels, 4, text, text_len, PKI_PEM_OR_DER,
                      err)) {
    pki_err_prefix(err, "%s: ", path);
    goto out;
  }
  int pem = label != NULL;
  pki_crl crl;
  if ((label == kLabels[3] || !pem) && pki_crl_parse(&crl, der, der_len, err)) {
    /* A CRL is summarised as `pkictl crl inspect` does, but with no CA to
     * check its signature against. */
    crl_print(out, &crl, der, der_len);
    fprintf(out, "  %-18s%s\n", "Signature:", "not checked (pkictl crl inspect --pki DIR does)");
    pki_crl_cleanup(&crl);
    ok = 1;
    goto out;
  }
  int is_csr = pem && label != kLabels[0];

  pki_cert_info info;
  pki_csr csr;
  pki_err cert_err;
  if (!is_csr && pki_cert_info_parse(&info, der, der_len, &cert_err)) {
    print_cert(out, &info, der, der_len);
    pki_cert_info_cleanup(&info);
    ok = 1;
  } else if ((is_csr || !pem) && pki_csr_parse(&csr, der, der_len, err)) {
    print_csr(out, &csr);
    pki_csr_cleanup(&csr);
    ok = 1;
  } else if (!is_csr) {
    *err = cert_err;
  }
  if (!ok) pki_err_prefix(err, "%s: ", path);
out:
  free(text);
  free(der);
  return ok;
}
