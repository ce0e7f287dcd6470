/* der.h: the DER pieces that certificates and CSRs share.
 *
 * Writing goes through BoringSSL's CBB and reading through CBS: bounds are
 * checked by the cursor, never by pointer arithmetic here. The OIDs are the
 * content octets of each OBJECT IDENTIFIER, compared with CBS_mem_equal. */
#ifndef PKID_LIB_DER_H
#define PKID_LIB_DER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bytestring.h>

#include "lib/err.h"
#include "lib/names.h"

#define PKI_DER_OID(name, ...) \
  static const uint8_t name[] = {__VA_ARGS__}

/* Attribute types in names (RFC 5280 appendix A). */
PKI_DER_OID(PKI_OID_COMMON_NAME, 0x55, 0x04, 0x03);
PKI_DER_OID(PKI_OID_ORGANIZATION, 0x55, 0x04, 0x0a);
/* Signature algorithms (RFC 5758 3.2, RFC 8410 3, RFC 4055 5). */
PKI_DER_OID(PKI_OID_ECDSA_SHA256, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02);
PKI_DER_OID(PKI_OID_ECDSA_SHA384, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03);
PKI_DER_OID(PKI_OID_ECDSA_SHA512, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04);
PKI_DER_OID(PKI_OID_ED25519, 0x2b, 0x65, 0x70);
PKI_DER_OID(PKI_OID_RSA_SHA256, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b);
PKI_DER_OID(PKI_OID_RSA_SHA384, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c);
PKI_DER_OID(PKI_OID_RSA_SHA512, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d);
/* PKCS#9 extensionRequest, the CSR attribute that carries extensions. */
PKI_DER_OID(PKI_OID_EXTENSION_REQUEST, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e);
/* Certificate extensions (RFC 5280 4.2). */
PKI_DER_OID(PKI_OID_SUBJECT_KEY_ID, 0x55, 0x1d, 0x0e);
PKI_DER_OID(PKI_OID_KEY_USAGE, 0x55, 0x1d, 0x0f);
PKI_DER_OID(PKI_OID_SUBJECT_ALT_NAME, 0x55, 0x1d, 0x11);
PKI_DER_OID(PKI_OID_BASIC_CONSTRAINTS, 0x55, 0x1d, 0x13);
PKI_DER_OID(PKI_OID_NAME_CONSTRAINTS, 0x55, 0x1d, 0x1e);
PKI_DER_OID(PKI_OID_AUTHORITY_KEY_ID, 0x55, 0x1d, 0x23);
PKI_DER_OID(PKI_OID_EXT_KEY_USAGE, 0x55, 0x1d, 0x25);
PKI_DER_OID(PKI_OID_CRL_DISTRIBUTION_POINTS, 0x55, 0x1d, 0x1f);
PKI_DER_OID(PKI_OID_AUTHORITY_INFO_ACCESS, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01);
PKI_DER_OID(PKI_OID_AD_OCSP, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01);
PKI_DER_OID(PKI_OID_AD_CA_ISSUERS, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02);
PKI_DER_OID(PKI_OID_KP_SERVER_AUTH, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01);
PKI_DER_OID(PKI_OID_KP_CLIENT_AUTH, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02);

#define PKI_DER_OID_IS(cbs, oid) CBS_mem_equal((cbs), (oid), sizeof(oid))

/* keyUsage bits (RFC 5280 4.2.1.3), numbered as in the BIT STRING. */
#define PKI_KU_DIGITAL_SIGNATURE (1u << 0)
#define PKI_KU_KEY_ENCIPHERMENT (1u << 2)
#define PKI_KU_KEY_CERT_SIGN (1u << 5)
#define PKI_KU_CRL_SIGN (1u << 6)

/* pki_der_finish finishes |cbb| into a buffer from malloc: everything lib/
 * hands to a caller is freed with free(), never OPENSSL_free. */
int pki_der_finish(CBB *cbb, uint8_t **out, size_t *out_len);

/* pki_der_add_oid writes an OBJECT IDENTIFIER with content |oid|. */
int pki_der_add_oid(CBB *cbb, const uint8_t *oid, size_t oid_len);

/* pki_der_oid_ok checks the content octets of an OBJECT IDENTIFIER (X.690
 * 8.19): not empty, the last octet ends a subidentifier, none starts with
 * a padding 0x80. */
int pki_der_oid_ok(const CBS *oid);

/* pki_der_get_optional_bool reads a BOOLEAN DEFAULT FALSE: absent is 0, and
 * an explicit FALSE is refused because DER leaves defaults out. */
int pki_der_get_optional_bool(CBS *cbs, int *out);

/* The times the two forms can hold (RFC 5280 4.1.2.5), in seconds since
 * the epoch: UTCTime from 1950 through 2049, GeneralizedTime from 2050;
 * neither past 9999 (GeneralizedTime's four digits reach back to year 0). */
#define PKI_DER_T_0000 INT64_C(-62167219200)
#define PKI_DER_T_1950 INT64_C(-631152000)
#define PKI_DER_T_2050 INT64_C(2524608000)
#define PKI_DER_T_10000 INT64_C(253402300800)

/* PKI_DER_TIME_MAX is the size of the longest Time element: a
 * GeneralizedTime, tag, length and 15 octets. */
#define PKI_DER_TIME_MAX 17

/* pki_der_put_time writes |t| (seconds since the epoch, UTC) as a whole
 * Time element into |out| and returns its length: UTCTime through 2049
 * and GeneralizedTime from 2050 (RFC 5280 4.1.2.5), or GeneralizedTime
 * always when |generalized| is set (as OCSP, RFC 6960 4.2.1, and the
 * invalidityDate, RFC 5280 5.3.2, require). It returns 0 for a time the
 * form cannot hold. The date is computed, not asked of gmtime_r: this is
 * on the path of every certificate and response. */
size_t pki_der_put_time(uint8_t out[PKI_DER_TIME_MAX], int64_t t, int generalized);

/* pki_der_add_time writes |t| (seconds since the epoch, UTC) as UTCTime
 * through 2049 and GeneralizedTime from 2050 (RFC 5280 4.1.2.5). */
int pki_der_add_time(CBB *cbb, int64_t t);

/* pki_der_get_time reads a UTCTime or GeneralizedTime in the strict form
 * RFC 5280 requires (seconds, "Z", no fractions). */
int pki_der_get_time(CBS *cbs, int64_t *out);

/* pki_der_add_name writes a Name of "O=<org>, CN=<cn>" as UTF8Strings, each
 * attribute in its own RDN; NULL or empty parts are left out. */
int pki_der_add_name(CBB *cbb, const char *organization, const char *common_name);

/* pki_der_name_get_cn finds the first CN of a DER Name element and copies it, NUL-terminated, into |out|. It returns 0 when
 * the Name is malformed or holds no CN. */
int pki_der_name_get_cn(const CBS *name, char *out, size_t out_size);

/* pki_der_add_general_name writes one GeneralName; IP names are encoded as
 * 4 or 16 octets. */
int pki_der_add_general_name(CBB *cbb, const pki_name *name, pki_err *err);

/* pki_der_get_general_name reads one GeneralName element and appends it to
 * |*names|. Kinds pkid does not issue (otherName, directoryName, ...) fail
 * with PKI_ERR_UNSUPPORTED, malformed ones with PKI_ERR_INVALID. */
int pki_der_get_general_name(CBS *cbs, pki_name **names, size_t *num_names,
                             pki_err *err);

/* pki_der_add_subtree writes one GeneralSubtree of a name constraint: for
 * IP, address and mask octets; otherwise the name as a GeneralName. */
int pki_der_add_subtree(CBB *cbb, const pki_name *subtree, pki_err *err);

/* pki_der_get_subtree reads one GeneralSubtree (minimum 0, no maximum, as
 * RFC 5280 requires) into |*subtrees|. */
int pki_der_get_subtree(CBS *cbs, pki_name **subtrees, size_t *num, pki_err *err);

/* pki_der_add_generalized_time writes |t| (seconds since the epoch, UTC) as
 * GeneralizedTime "YYYYMMDDHHMMSSZ" whatever the year (0000 to 9999), as
 * OCSP (RFC 6960 4.2.1) and CRLs past 2049 need. */
int pki_der_add_generalized_time(CBB *cbb, int64_t t);

#endif /* PKID_LIB_DER_H */
