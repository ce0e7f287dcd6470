/* test_ca.h: a CA for unit tests that sign without a certificate (OCSP
 * responses, CRLs): a fresh key of |type|, a name "O=Test Org, CN=|cn|"
 * and the key's identifier. Header-only, like test.h. */
#ifndef PKID_TESTS_UNIT_TEST_CA_H
#define PKID_TESTS_UNIT_TEST_CA_H

#include <string.h>

#include <openssl/bytestring.h>

#include "lib/cert.h"
#include "lib/der.h"
#include "lib/key.h"

static int test_make_ca(pki_issuer *ca, pki_key_type type, const char *cn) {
  pki_err err;
  memset(ca, 0, sizeof(*ca));
  ca->key = pki_key_generate(type, 256, &err);
  if (ca->key == NULL) return 0;
  ca->key_type = type;
  CBB cbb;
  if (!CBB_init(&cbb, 64) || !pki_der_add_name(&cbb, "Test Org", cn) ||
      !pki_der_finish(&cbb, &ca->name, &ca->name_len)) {
    CBB_cleanup(&cbb);
    return 0;
  }
  ca->ski_len = 20;
  ca->path_len = -1;
  return pki_key_identifier(ca->ski, ca->key, &err);
}

#endif /* PKID_TESTS_UNIT_TEST_CA_H */
