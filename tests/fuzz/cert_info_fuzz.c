/* cert_info_fuzz: arbitrary bytes as a DER X.509 certificate.
 *
 * pki_cert_info_parse reads certificates from outside (a caller's client
 * certificate, `pkictl inspect`): it must accept or refuse with a message,
 * never crash, leak or read out of bounds. A certificate it accepts is
 * also checked against its own key, as a self-signed root would be, which
 * exercises the signature code on hostile keys and signatures. The same
 * bytes go to the bare-TBSCertificate parser, which lint uses. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "lib/cert_info.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(const pki_err *err) {
  if ((err->code != PKI_ERR_INVALID && err->code != PKI_ERR_UNSUPPORTED &&
       err->code != PKI_ERR_INTERNAL && err->code != PKI_ERR_EXHAUSTED) ||
      err->msg[0] == '\0') {
    abort();
  }
}

static void check_parsed(const pki_cert_info *info) {
  if ((info->num_sans > 0) != (info->sans != NULL) ||
      (info->num_permitted > 0) != (info->permitted != NULL) ||
      (info->num_excluded > 0) != (info->excluded != NULL) ||
      info->path_len < -1 || info->path_len > 255) {
    abort();
  }
  const char *identity = pki_cert_info_identity(info);
  if (identity != NULL && identity[0] == '\0') abort();
  /* A URL comes from its extension, and is never empty. */
  if ((info->ocsp_url != NULL && (!info->has_aia || info->ocsp_url[0] == '\0')) ||
      (info->ca_issuers_url != NULL &&
       (!info->has_aia || info->ca_issuers_url[0] == '\0')) ||
      (info->crl_url != NULL && (!info->has_crl_dp || info->crl_url[0] == '\0')) ||
      (info->has_crl_dp && info->crl_url == NULL && !info->crl_dp_other)) {
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pki_cert_info info;
  pki_err err;
  pki_err_clear(&err);
  if (pki_cert_info_parse(&info, data, size, &err)) {
    check_parsed(&info);
    pki_err_clear(&err);
    if (!pki_cert_verify_signature(&info, &info.spki, &err) &&
        (err.code == PKI_OK || err.msg[0] == '\0')) {
      abort();
    }
    pki_cert_info_cleanup(&info);
  } else {
    check_refusal(&err);
  }

  pki_err_clear(&err);
  if (pki_cert_info_parse_tbs(&info, data, size, &err)) {
    check_parsed(&info);
    pki_cert_info_cleanup(&info);
  } else {
    check_refusal(&err);
  }
  return 0;
}
