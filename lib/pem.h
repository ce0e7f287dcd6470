/* pem.h: PEM text (RFC 7468), the one writer and reader of lib/.
 *
 * Written, each line ending in "\n":
 *   -----BEGIN <label>-----
 *   <base64 of the data, 64 characters a line: RFC 7468 section 2>
 *   -----END <label>-----
 *
 * Read: the first block whose label is one the caller names. Lax where
 * RFC 7468 section 3 asks parsers to be: text before, between and after
 * blocks (explanatory text, blocks of other labels) is passed over; the
 * base64 may come in lines of any length, with LF or CRLF, spaces and tabs.
 * Strict otherwise: BEGIN and END lines start their line and carry the
 * same label; the base64 is the standard alphabet, padded and canonical
 * (lib/base64.h); and RFC 1421 headers ("Proc-Type: 4,ENCRYPTED", legacy
 * PEM encryption of keys) are refused rather than read as data. */
#ifndef PKID_LIB_PEM_H
#define PKID_LIB_PEM_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

/* PKI_PEM_LABEL_MAX bounds the labels pki_pem_append writes. */
#define PKI_PEM_LABEL_MAX 64

/* pki_pem_append encodes |der| as one PEM block labelled |label| and
 * appends it to the malloc'd, NUL-terminated text |*text| of |*text_len|
 * bytes (NUL not counted). Start with *text NULL and *text_len 0. The text
 * is moved to a larger buffer and the old one wiped before it is freed, so
 * a private key leaves no copy behind. A label that is not one by RFC 7468
 * section 3 (empty, longer than PKI_PEM_LABEL_MAX, or with characters
 * outside printable ASCII, or '-' or ' ' at an end or doubled) fails with
 * PKI_ERR_INVALID; on failure |*text| is left as it was. */
int pki_pem_append(char **text, size_t *text_len, const char *label, const uint8_t *der,
                   size_t der_len, pki_err *err);

/* Flags of pki_pem_decode. */
/* PKI_PEM_OR_DER: text with no armour at all (no "-----BEGIN " anywhere) is
 * binary DER and returned as it is, for files that may hold either, such
 * as certificates and CSRs. Without it, such text has no block. */
#define PKI_PEM_OR_DER 0x1u

/* pki_pem_decode finds the first PEM block of |text| whose label is one of
 * the |num_labels| in |labels|, passing over blocks with other labels, and
 * decodes it into |*out| (malloc'd, |*out_len| bytes; wiped by the caller
 * if secret). |*out_label| (|out_label| may be NULL) is set to the matching
 * entry of |labels|, or to NULL when PKI_PEM_OR_DER took |text| as DER.
 *
 * It fails with PKI_ERR_NOT_FOUND when no block has one of the labels;
 * PKI_ERR_INVALID for a block without its END line or with bad base64;
 * PKI_ERR_UNSUPPORTED for a block with RFC 1421 headers (legacy PEM
 * encryption). */
int pki_pem_decode(uint8_t **out, size_t *out_len, const char **out_label,
                   const char *const *labels, size_t num_labels, const uint8_t *text,
                   size_t text_len, unsigned flags, pki_err *err);

#endif /* PKID_LIB_PEM_H */
