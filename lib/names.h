/* names.h: subject alternative names and name-constraint subtrees.
 *
 * A pki_name is one GeneralName (RFC 5280 4.2.1.6) of the four kinds pkid
 * issues: DNS name, IP address, URI and email. Values are kept as text, the
 * way a catalogue or a person writes them ("127.0.0.1", "::1",
 * "spiffe://cybersec-framework.local/agents/pki-agent"); encoders turn them
 * into DER and parsers turn DER back into this text form, so two names are
 * equal exactly when their text is (DNS names compare case-insensitively).
 *
 * A subtree (RFC 5280 4.2.1.10) uses the same struct: a DNS or URI subtree
 * is a domain ("cybersec-framework.local"), an IP subtree a CIDR block
 * ("127.0.0.0/8"), an email subtree a domain or a mailbox. */
#ifndef PKID_LIB_NAMES_H
#define PKID_LIB_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

/* The values are the GeneralName context tags. */
typedef enum pki_name_type {
  PKI_NAME_EMAIL = 1, /* rfc822Name */
  PKI_NAME_DNS = 2,   /* dNSName */
  PKI_NAME_URI = 6,   /* uniformResourceIdentifier */
  PKI_NAME_IP = 7,    /* iPAddress */
} pki_name_type;

typedef struct pki_name {
  pki_name_type type;
  char *value; /* NUL-terminated; owned by whatever holds the array */
} pki_name;

/* pki_name_type_label returns "DNS", "IP", "URI" or "email". */
const char *pki_name_type_label(pki_name_type type);

/* pki_name_check validates |value| as a name of |type|: a DNS name of
 * letters, digits, hyphens and dots (a leading "*." wildcard allowed), an
 * IPv4 or IPv6 address, an absolute URI with a scheme and a host, or an
 * email address. It fails with PKI_ERR_INVALID saying what is wrong. */
int pki_name_check(pki_name_type type, const char *value, pki_err *err);

/* pki_subtree_check validates |value| as a name-constraint subtree of |type|
 * (a domain for DNS, URI and email; a CIDR block for IP). */
int pki_subtree_check(pki_name_type type, const char *value, pki_err *err);

/* pki_ip_parse turns "127.0.0.1" or "::1" into 4 or 16 bytes in |out| and
 * sets |*out_len|. It returns 0 if |text| is not an address. */
int pki_ip_parse(uint8_t out[16], size_t *out_len, const char *text);

/* pki_ip_format writes the text form of a 4- or 16-byte address into |out|
 * (at least 46 bytes). It returns 0 for any other length. */
int pki_ip_format(char *out, size_t out_size, const uint8_t *ip, size_t ip_len);

/* pki_cidr_parse turns "127.0.0.0/8" into address and mask bytes (4 or 16
 * each), as name constraints encode an IP subtree. */
int pki_cidr_parse(uint8_t addr[16], uint8_t mask[16], size_t *out_len,
                   const char *text);

/* pki_name_equal compares two names of the same type (DNS case-insensitive). */
int pki_name_equal(const pki_name *a, const pki_name *b);

/* pki_name_in_subtree reports whether |name| lies within |subtree| of the
 * same type, by the matching rules of RFC 5280 4.2.1.10. Names of a type
 * other than the subtree's are not within it. */
int pki_name_in_subtree(const pki_name *name, const pki_name *subtree);

/* What name constraints (RFC 5280 4.2.1.10) say about one name. */
typedef enum pki_name_verdict {
  PKI_NAME_ALLOWED = 0,
  PKI_NAME_NOT_PERMITTED, /* permitted subtrees of its type exist, none holds it */
  PKI_NAME_EXCLUDED,      /* it meets an excluded subtree */
} pki_name_verdict;

/* pki_name_constraints_check decides whether |name| is allowed by the
 * |num_permitted| permitted and |num_excluded| excluded subtrees of a CA.
 * When some permitted subtree has the name's type, one of them must hold
 * it; names of a type no permitted subtree has are not constrained by
 * them. No excluded subtree may meet it: hold it, or, for a wildcard DNS
 * name, hold any name it stands for ("*.example.com" meets an excluded
 * "bad.example.com" without lying within it). For PKI_NAME_EXCLUDED,
 * |*out_excluded| (|out_excluded| may be NULL) is the index in |excluded|
 * of the first subtree it meets. */
pki_name_verdict pki_name_constraints_check(const pki_name *name, const pki_name *permitted,
                                            size_t num_permitted, const pki_name *excluded,
                                            size_t num_excluded, size_t *out_excluded);

/* pki_names_free frees the values of |num| names and the array itself. */
void pki_names_free(pki_name *names, size_t num);

/* pki_names_push appends a copy of |value| as a name of |type| to the
 * growable array |*names| of |*num| entries. */
int pki_names_push(pki_name **names, size_t *num, pki_name_type type,
                   const char *value, size_t value_len, pki_err *err);

#endif /* PKID_LIB_NAMES_H */
