#include "lib/crl.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "lib/der.h"
#include "lib/pem.h"
#include "lib/sig.h"

#define TAG_EXPLICIT(n) (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | (n))
#define TAG_IMPLICIT(n) (CBS_ASN1_CONTEXT_SPECIFIC | (n))

/* freshest_url holds the URI with its NUL. */
#define URL_MAX (sizeof(((pki_crl *)0)->freshest_url) - 1)

/* ---- Reasons ----------------------------------------------------------- */

static const char *const kReasonNames[] = {
    "unspecified",         "keyCompromise",  "cACompromise",
    "affiliationChanged",  "superseded",     "cessationOfOperation",
    "certificateHold",     NULL,             "removeFromCRL",
    "privilegeWithdrawn",  "aACompromise",
};

int pki_crl_reason_valid(int reason) {
  return reason >= 0 && reason <= PKI_CRL_REASON_AA_COMPROMISE && reason != 7;
}

const char *pki_crl_reason_name(int reason) {
  return pki_crl_reason_valid(reason) ? kReasonNames[reason] : NULL;
}

/* ---- Shared pieces ----------------------------------------------------- */

/* serial_value finds the value of |s| (a positive number, big-endian):
 * leading zero octets are not part of it. It fails for a length outside 1
 * to 20 or a zero value (RFC 5280 4.1.2.2: serials are positive). */
static int serial_value(const pki_serial *s, const uint8_t **out, size_t *out_len) {
  if (s->len == 0 || s->len > PKI_SERIAL_MAX) return 0;
  size_t skip = 0;
  while (skip < s->len && s->bytes[skip] == 0) skip++;
  if (skip == s->len) return 0;
  *out = s->bytes + skip;
  *out_len = s->len - skip;
  return 1;
}

/* ia5_uri_ok reports whether |s| is printable ASCII without spaces: what
 * pkid writes and reads as a URI. */
static int ia5_uri_ok(const uint8_t *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (s[i] < 0x21 || s[i] > 0x7e) return 0;
  }
  return len > 0;
}

/* ---- Building ---------------------------------------------------------- */

static int params_ok(const pki_issuer *ca, const pki_crl_params *p, pki_err *err) {
  if (ca == NULL || ca->key == NULL || ca->name == NULL || ca->name_len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL: the CA has no key or name");
    return 0;
  }
  /* 5.1.2.3: the issuer is a non-empty Name. */
  CBS name, rdns;
  CBS_init(&name, ca->name, ca->name_len);
  if (!CBS_get_asn1(&name, &rdns, CBS_ASN1_SEQUENCE) || CBS_len(&name) != 0 ||
      CBS_len(&rdns) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL: the CA's name is not a non-empty DER Name");
    return 0;
  }
  /* 5.2.1: every CRL carries the authorityKeyIdentifier. */
  if (ca->ski_len == 0 || ca->ski_len > sizeof(ca->ski)) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL: the CA has no key identifier");
    return 0;
  }
  if (p->this_update < PKI_DER_T_1950 || p->this_update >= PKI_DER_T_10000 ||
      p->next_update < PKI_DER_T_1950 || p->next_update >= PKI_DER_T_10000) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL: thisUpdate or nextUpdate outside 1950 to 9999");
    return 0;
  }
  if (p->next_update <= p->this_update) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL: nextUpdate is not after thisUpdate");
    return 0;
  }
  /* 5.2.3 allows 0; pkid numbers from 1, so that 0 can mean "none yet". */
  if (p->number == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL: cRLNumber must be 1 or more");
    return 0;
  }
  if (p->is_delta) {
    /* 5.2.4: a delta lists the changes since its base, an earlier complete
     * CRL of the same numbering sequence. 5.2.6: freshestCRL MUST NOT
     * appear in a delta. */
    if (p->base_number == 0 || p->base_number >= p->number) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "CRL: a delta's BaseCRLNumber (%llu) must be 1 or more and below its "
              "cRLNumber (%llu)",
              (unsigned long long)p->base_number, (unsigned long long)p->number);
      return 0;
    }
    if (p->freshest_url != NULL) {
      PKI_ERR(err, PKI_ERR_INVALID, "CRL: a delta CRL has no freshestCRL");
      return 0;
    }
  } else if (p->freshest_url != NULL) {
    size_t n = strlen(p->freshest_url);
    if (n > URL_MAX || !ia5_uri_ok((const uint8_t *)p->freshest_url, n)) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "CRL: the freshestCRL URL must be 1 to %zu printable ASCII characters",
              URL_MAX);
      return 0;
    }
  }
  return 1;
}

static int entry_ok(const pki_crl_entry *e, const pki_crl_params *p, size_t i, pki_err *err) {
  const uint8_t *v;
  size_t n;
  if (!serial_value(&e->serial, &v, &n)) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL entry %zu: the serial is not 1 to 20 octets, positive",
            i);
    return 0;
  }
  if (e->revocation_date < PKI_DER_T_1950 || e->revocation_date >= PKI_DER_T_10000) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL entry %zu: revocationDate outside 1950 to 9999", i);
    return 0;
  }
  if (e->reason != -1 && !pki_crl_reason_valid(e->reason)) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL entry %zu: CRLReason %d does not exist", i, e->reason);
    return 0;
  }
  /* 5.3.1: removeFromCRL is for delta CRLs only. */
  if (e->reason == PKI_CRL_REASON_REMOVE_FROM_CRL && !p->is_delta) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL entry %zu: removeFromCRL in a complete CRL", i);
    return 0;
  }
  if (e->invalidity_date != 0 &&
      (e->invalidity_date < PKI_DER_T_0000 || e->invalidity_date >= PKI_DER_T_10000)) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL entry %zu: invalidityDate outside 0000 to 9999", i);
    return 0;
  }
  return 1;
}

/* begin_ext opens an Extension in |exts| and its extnValue in |value|; the
 * caller writes the value and flushes |exts|. DER leaves critical out
 * when FALSE. */
static int begin_ext(CBB *exts, CBB *ext, CBB *value, const uint8_t *oid, size_t oid_len,
                     int critical) {
  return CBB_add_asn1(exts, ext, CBS_ASN1_SEQUENCE) && pki_der_add_oid(ext, oid, oid_len) &&
         (!critical || CBB_add_asn1_bool(ext, 1)) &&
         CBB_add_asn1(ext, value, CBS_ASN1_OCTETSTRING);
}

/* ---- Entries, in one pass ---------------------------------------------
 *
 * A CRL of a million entries is some 55 MB of DER, so entries are not
 * written with a CBB each: CBB_add_asn1 reserves one length octet and
 * moves the contents when a longer form is needed, which for the list
 * and the TBSCertList around it means moving the whole list, twice, and
 * then copying it again into the signed CertificateList. Instead every
 * entry's length is computed first (entry_len), so that every header is
 * written once with its final length and the entries go, in order, into
 * the one buffer the caller gets. An entry is under 128 octets (at most
 * 81), so its own headers are all of the short form.
 *
 * Times go in with pki_der_put_time, straight into the entry. */

/* The DER octets of the tags written by hand. */
#define DER_INTEGER 0x02
#define DER_BIT_STRING 0x03
#define DER_OCTET_STRING 0x04
#define DER_OID 0x06
#define DER_ENUMERATED 0x0a
#define DER_SEQUENCE 0x30

/* ENTRY_MAX bounds an entry: SEQUENCE { INTEGER (2 + 21), Time (2 + 15),
 * Extensions (2 + reasonCode 12 + invalidityDate 26) }. */
#define ENTRY_MAX 81
#define REASON_EXT_LEN 12
#define INVALIDITY_EXT_LEN 26

/* time_len is the size of the Time element pki_der_add_time writes. */
static size_t time_len(int64_t t) { return t < PKI_DER_T_2050 ? 15 : 17; }

/* entry_len is the size of |e|'s element, as encode_entry writes it. */
static size_t entry_len(const pki_crl_entry *e) {
  const uint8_t *v;
  size_t n;
  serial_value(&e->serial, &v, &n);
  size_t len = 2 + n + (v[0] >> 7) + time_len(e->revocation_date);
  if (e->reason > 0 || e->invalidity_date != 0) {
    len += 2 + (e->reason > 0 ? REASON_EXT_LEN : 0) +
           (e->invalidity_date != 0 ? INVALIDITY_EXT_LEN : 0);
  }
  return 2 + len;
}

/* encode_entry writes |e| (checked by entry_ok) into |out| and returns its
 * length: SEQUENCE { userCertificate, revocationDate, crlEntryExtensions
 * { reasonCode (5.3.1), invalidityDate (5.3.2) } } (5.1.2.6). */
static size_t encode_entry(uint8_t out[ENTRY_MAX], const pki_crl_entry *e) {
  const uint8_t *v;
  size_t n;
  serial_value(&e->serial, &v, &n);
  uint8_t *p = out + 2;
  /* A positive INTEGER: a 0x00 octet before a high bit (4.1.2.2). */
  int sign = v[0] >> 7;
  *p++ = DER_INTEGER;
  *p++ = (uint8_t)(n + (size_t)sign);
  if (sign) *p++ = 0x00;
  memcpy(p, v, n);
  p += n;
  p += pki_der_put_time(p, e->revocation_date, 0);
  if (e->reason > 0 || e->invalidity_date != 0) {
    *p++ = DER_SEQUENCE;
    *p++ = (uint8_t)((e->reason > 0 ? REASON_EXT_LEN : 0) +
                     (e->invalidity_date != 0 ? INVALIDITY_EXT_LEN : 0));
    if (e->reason > 0) {
      /* SEQUENCE { OID, OCTET STRING { ENUMERATED } }, non-critical. */
      static const uint8_t head[] = {DER_SEQUENCE, 10, DER_OID, 3, 0x55, 0x1d, 0x15,
                                     DER_OCTET_STRING, 3, DER_ENUMERATED, 1};
      memcpy(p, head, sizeof(head));
      p += sizeof(head);
      *p++ = (uint8_t)e->reason;
    }
    if (e->invalidity_date != 0) {
      /* SEQUENCE { OID, OCTET STRING { GeneralizedTime } }, non-critical. */
      static const uint8_t head[] = {DER_SEQUENCE, 24, DER_OID, 3, 0x55, 0x1d, 0x18,
                                     DER_OCTET_STRING, 17};
      memcpy(p, head, sizeof(head));
      p += sizeof(head);
      p += pki_der_put_time(p, e->invalidity_date, 1);
    }
  }
  size_t len = (size_t)(p - out);
  out[0] = DER_SEQUENCE;
  out[1] = (uint8_t)(len - 2);
  return len;
}

/* header_len is the size of a DER header with one tag octet. */
static size_t header_len(size_t len) {
  return len < 0x80 ? 2 : len <= 0xff ? 3 : len <= 0xffff ? 4 : len <= 0xffffff ? 5 : 6;
}

/* add_header writes a tag octet and the definite length |len| (at most
 * four octets of it: CRLs under 4 GiB). */
static int add_header(CBB *cbb, uint8_t tag, size_t len) {
  if (!CBB_add_u8(cbb, tag)) return 0;
  if (len < 0x80) return CBB_add_u8(cbb, (uint8_t)len);
  size_t n = header_len(len) - 2;
  if (!CBB_add_u8(cbb, (uint8_t)(0x80 | n))) return 0;
  for (size_t i = n; i > 0; i--) {
    if (!CBB_add_u8(cbb, (uint8_t)(len >> (8 * (i - 1))))) return 0;
  }
  return 1;
}

/* add_crl_extensions writes crlExtensions [0] EXPLICIT (5.2). */
static int add_crl_extensions(CBB *tbs, const pki_issuer *ca, const pki_crl_params *p) {
  CBB el, exts, ext, value, seq, child, dp, dpn, full, uri;
  if (!CBB_add_asn1(tbs, &el, TAG_EXPLICIT(0)) || !CBB_add_asn1(&el, &exts, CBS_ASN1_SEQUENCE) ||
      /* 5.2.1: AuthorityKeyIdentifier { keyIdentifier [0] }. */
      !begin_ext(&exts, &ext, &value, PKI_OID_AUTHORITY_KEY_ID, sizeof(PKI_OID_AUTHORITY_KEY_ID),
                 0) ||
      !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&seq, &child, TAG_IMPLICIT(0)) ||
      !CBB_add_bytes(&child, ca->ski, ca->ski_len) || !CBB_flush(&exts) ||
      /* 5.2.3: CRLNumber ::= INTEGER (0..MAX). */
      !begin_ext(&exts, &ext, &value, PKI_OID_CRL_NUMBER, sizeof(PKI_OID_CRL_NUMBER), 0) ||
      !CBB_add_asn1_uint64(&value, p->number) || !CBB_flush(&exts)) {
    return 0;
  }
  if (p->is_delta) {
    /* 5.2.4: critical, so that a relying party that does not know deltas
     * does not take this one for a complete CRL. */
    if (!begin_ext(&exts, &ext, &value, PKI_OID_DELTA_CRL_INDICATOR,
                   sizeof(PKI_OID_DELTA_CRL_INDICATOR), 1) ||
        !CBB_add_asn1_uint64(&value, p->base_number) || !CBB_flush(&exts)) {
      return 0;
    }
  } else if (p->freshest_url != NULL) {
    /* 5.2.6: FreshestCRL ::= CRLDistributionPoints (4.2.1.13): one
     * DistributionPoint whose fullName is the URI. */
    if (!begin_ext(&exts, &ext, &value, PKI_OID_FRESHEST_CRL, sizeof(PKI_OID_FRESHEST_CRL), 0) ||
        !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&seq, &dp, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&dp, &dpn, TAG_EXPLICIT(0)) ||
        !CBB_add_asn1(&dpn, &full, TAG_EXPLICIT(0)) ||
        !CBB_add_asn1(&full, &uri, TAG_IMPLICIT(6)) ||
        !CBB_add_bytes(&uri, (const uint8_t *)p->freshest_url, strlen(p->freshest_url)) ||
        !CBB_flush(&exts)) {
      return 0;
    }
  }
  return CBB_flush(tbs);
}

/* The largest signature pkid's key types make (DER ECDSA-Sig-Value of
 * P-384); the buffer has room for it, and a signer that returns more has
 * the buffer grown. It must leave room for an entry's reservation. */
#define SIG_GUESS 104
#if SIG_GUESS + 3 < ENTRY_MAX
#error "the signature's room must hold an entry's reservation"
#endif
/* crlExtensions: the URI (at most URL_MAX) and under 100 octets more. */
#define TAIL_MAX (URL_MAX + 128)
#define CRL_MAX UINT32_MAX

int pki_crl_build(uint8_t **out, size_t *out_len, const pki_issuer *ca, const pki_signer *with,
                  const pki_crl_params *params, const pki_crl_entry *entries, size_t num,
                  pki_err *err) {
  *out = NULL;
  *out_len = 0;
  if (!params_ok(ca, params, err)) return 0;
  if (num > 0 && entries == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL: %zu entries but no array", num);
    return 0;
  }
  /* Pass 1: check every entry and add up the list's length. */
  uint64_t list_len = 0;
  for (size_t i = 0; i < num; i++) {
    if (!entry_ok(&entries[i], params, i, err)) return 0;
    list_len += entry_len(&entries[i]);
  }
  uint8_t alg[32], tail[TAIL_MAX];
  size_t alg_len, tail_len;
  CBB cbb;
  if (!CBB_init_fixed(&cbb, alg, sizeof(alg))) goto internal;
  if (!pki_sig_add_alg(&cbb, ca->key_type, err)) {
    CBB_cleanup(&cbb); /* this BoringSSL allocates even a fixed CBB's state */
    return 0;
  }
  if (!CBB_finish(&cbb, NULL, &alg_len) || !CBB_init_fixed(&cbb, tail, sizeof(tail)) ||
      !add_crl_extensions(&cbb, ca, params) || !CBB_finish(&cbb, NULL, &tail_len)) {
    goto internal;
  }
  /* Every length, from the inside out: version v2 (INTEGER 1, 5.1.2.1),
   * signature, issuer, thisUpdate, nextUpdate, revokedCertificates
   * (absent when empty: 5.1.2.6), crlExtensions. */
  if (list_len > CRL_MAX) goto too_big;
  size_t list_el = num > 0 ? header_len((size_t)list_len) + (size_t)list_len : 0;
  size_t tbs_content = 3 + alg_len + ca->name_len + time_len(params->this_update) +
                       time_len(params->next_update) + list_el + tail_len;
  size_t tbs_el = header_len(tbs_content) + tbs_content;
  size_t content = tbs_el + alg_len + header_len(1 + SIG_GUESS) + 1 + SIG_GUESS;
  if (ca->name_len > CRL_MAX || content > CRL_MAX) goto too_big;
  size_t at = header_len(content), cap = at + content;
  uint8_t *buf = malloc(cap);
  if (buf == NULL) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory for a CRL of %zu entries (%zu octets)",
            num, cap);
    return 0;
  }
  /* Pass 2: the TBSCertList, at its place in the CertificateList. */
  size_t written;
  if (!CBB_init_fixed(&cbb, buf + at, cap - at) || !add_header(&cbb, DER_SEQUENCE, tbs_content) ||
      !CBB_add_asn1_uint64(&cbb, 1) || !CBB_add_bytes(&cbb, alg, alg_len) ||
      !CBB_add_bytes(&cbb, ca->name, ca->name_len) ||
      !pki_der_add_time(&cbb, params->this_update) ||
      !pki_der_add_time(&cbb, params->next_update) ||
      (num > 0 && !add_header(&cbb, DER_SEQUENCE, (size_t)list_len))) {
    goto internal_buf;
  }
  /* Each entry is encoded in place: the room reserved for the signature
   * after the TBSCertList is more than ENTRY_MAX, so the reservation of
   * the last entry fits too. */
  for (size_t i = 0; i < num; i++) {
    uint8_t *p;
    if (!CBB_reserve(&cbb, &p, ENTRY_MAX) || !CBB_did_write(&cbb, encode_entry(p, &entries[i]))) {
      goto internal_buf;
    }
  }
  if (!CBB_add_bytes(&cbb, tail, tail_len) || !CBB_finish(&cbb, NULL, &written) ||
      written != tbs_el) {
    goto internal_buf;
  }
  uint8_t *sig = NULL;
  size_t sig_len;
  if (!pki_issuer_sign(ca, with, &sig, &sig_len, buf + at, tbs_el, err)) {
    free(buf);
    return 0;
  }
  /* The signature's length fixes the CertificateList's: the TBSCertList
   * moves only if its header is not of the length guessed (a total near
   * a boundary of the length forms, or a signer's longer signature). */
  content = tbs_el + alg_len + header_len(1 + sig_len) + 1 + sig_len;
  size_t h = header_len(content);
  if (sig_len > CRL_MAX || content > CRL_MAX) {
    free(sig);
    free(buf);
    goto too_big;
  }
  if (h + content > cap) {
    uint8_t *bigger = realloc(buf, h + content);
    if (bigger == NULL) {
      free(sig);
      free(buf);
      PKI_ERR_OOM(err);
      return 0;
    }
    buf = bigger;
  }
  if (h != at) memmove(buf + h, buf + at, tbs_el);
  uint8_t *tbs_at;
  int ok = CBB_init_fixed(&cbb, buf, h + content) && add_header(&cbb, DER_SEQUENCE, content) &&
           CBB_add_space(&cbb, &tbs_at, tbs_el) /* already written */ &&
           CBB_add_bytes(&cbb, alg, alg_len) &&
           add_header(&cbb, DER_BIT_STRING, 1 + sig_len) && CBB_add_u8(&cbb, 0) &&
           CBB_add_bytes(&cbb, sig, sig_len) && CBB_finish(&cbb, NULL, &written) &&
           written == h + content;
  free(sig);
  if (!ok) goto internal_buf;
  *out = buf;
  *out_len = written;
  return 1;

internal_buf:
  free(buf);
internal:
  CBB_cleanup(&cbb);
  PKI_ERR(err, PKI_ERR_INTERNAL, "CRL: the encoding does not fit its computed length");
  return 0;
too_big:
  PKI_ERR(err, PKI_ERR_INVALID, "CRL: %zu entries make a CRL over 4 GiB", num);
  return 0;
}

/* ---- Parsing ----------------------------------------------------------- */

/* get_extension reads one Extension (RFC 5280 4.1). */
static int get_extension(CBS *exts, CBS *oid, int *critical, CBS *value) {
  CBS ext;
  return CBS_get_asn1(exts, &ext, CBS_ASN1_SEQUENCE) &&
         CBS_get_asn1(&ext, oid, CBS_ASN1_OBJECT) && pki_der_oid_ok(oid) &&
         pki_der_get_optional_bool(&ext, critical) &&
         CBS_get_asn1(&ext, value, CBS_ASN1_OCTETSTRING) && CBS_len(&ext) == 0;
}

/* get_number reads an INTEGER (0..MAX) of at most 20 octets of value
 * (5.2.3), into its value's big-endian octets (one 0x00 for zero). */
static int get_number(CBS *cbs, uint8_t out[20], size_t *out_len, uint64_t *out_u64) {
  CBS n;
  int negative;
  if (!CBS_get_asn1(cbs, &n, CBS_ASN1_INTEGER) || !CBS_is_valid_asn1_integer(&n, &negative) ||
      negative) {
    return 0;
  }
  if (CBS_len(&n) > 1 && CBS_data(&n)[0] == 0x00) CBS_skip(&n, 1);
  size_t len = CBS_len(&n);
  if (len > 20) return 0;
  memcpy(out, CBS_data(&n), len);
  *out_len = len;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) v = v << 8 | out[i];
  *out_u64 = len <= 8 ? v : UINT64_MAX;
  return 1;
}

/* name_ok checks the shape of a Name element (RFC 5280 4.1.2.4): a
 * SEQUENCE of non-empty SETs of AttributeTypeAndValue; the values are not
 * read. */
static int name_ok(const CBS *name_el) {
  CBS el = *name_el, rdns;
  if (!CBS_get_asn1(&el, &rdns, CBS_ASN1_SEQUENCE) || CBS_len(&el) != 0) return 0;
  while (CBS_len(&rdns) > 0) {
    CBS rdn;
    if (!CBS_get_asn1(&rdns, &rdn, CBS_ASN1_SET) || CBS_len(&rdn) == 0) return 0;
    while (CBS_len(&rdn) > 0) {
      CBS atv, oid, value;
      unsigned tag;
      if (!CBS_get_asn1(&rdn, &atv, CBS_ASN1_SEQUENCE) ||
          !CBS_get_asn1(&atv, &oid, CBS_ASN1_OBJECT) || !pki_der_oid_ok(&oid) ||
          !CBS_get_any_asn1(&atv, &value, &tag) || CBS_len(&atv) != 0) {
        return 0;
      }
    }
  }
  return 1;
}

/* parse_aki reads an AuthorityKeyIdentifier (4.2.1.1) and keeps its
 * keyIdentifier; authorityCertIssuer and authorityCertSerialNumber are
 * checked for shape only. */
static int parse_aki(pki_crl *out, CBS *value, pki_err *err) {
  CBS seq, kid, other;
  int has_kid, has_other;
  if (!CBS_get_asn1(value, &seq, CBS_ASN1_SEQUENCE) || CBS_len(value) != 0 ||
      !CBS_get_optional_asn1(&seq, &kid, &has_kid, TAG_IMPLICIT(0)) ||
      !CBS_get_optional_asn1(&seq, &other, &has_other, TAG_EXPLICIT(1)) ||
      !CBS_get_optional_asn1(&seq, &other, &has_other, TAG_IMPLICIT(2)) ||
      CBS_len(&seq) != 0 || (has_kid && CBS_len(&kid) == 0)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad authorityKeyIdentifier");
    return 0;
  }
  if (has_kid) {
    if (CBS_len(&kid) > sizeof(out->aki)) {
      PKI_ERR(err, PKI_ERR_UNSUPPORTED, "CRL: an authority key identifier of %zu octets",
              CBS_len(&kid));
      return 0;
    }
    memcpy(out->aki, CBS_data(&kid), CBS_len(&kid));
    out->aki_len = CBS_len(&kid);
  }
  return 1;
}

/* parse_general_names reads GeneralNames (SIZE (1..MAX)) and, with |url|
 * non-NULL and still empty, copies the first uniformResourceIdentifier
 * into it. Other kinds of name are passed over. */
static int parse_general_names(CBS *names, char *url, pki_err *err) {
  if (CBS_len(names) == 0) goto bad;
  while (CBS_len(names) > 0) {
    CBS name;
    unsigned tag;
    if (!CBS_get_any_asn1(names, &name, &tag) ||
        (tag & CBS_ASN1_CLASS_MASK) != CBS_ASN1_CONTEXT_SPECIFIC) {
      goto bad;
    }
    if (tag != TAG_IMPLICIT(6) || url == NULL || url[0] != '\0') continue;
    if (!ia5_uri_ok(CBS_data(&name), CBS_len(&name))) goto bad;
    if (CBS_len(&name) > URL_MAX) {
      PKI_ERR(err, PKI_ERR_UNSUPPORTED, "CRL: a freshestCRL URI of %zu characters (%zu taken)",
              CBS_len(&name), URL_MAX);
      return 0;
    }
    memcpy(url, CBS_data(&name), CBS_len(&name));
    url[CBS_len(&name)] = '\0';
  }
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad GeneralNames in freshestCRL");
  return 0;
}

/* parse_freshest reads FreshestCRL ::= CRLDistributionPoints (5.2.6,
 * 4.2.1.13) and keeps the first URI of a fullName. */
static int parse_freshest(pki_crl *out, CBS *value, pki_err *err) {
  CBS dps;
  if (!CBS_get_asn1(value, &dps, CBS_ASN1_SEQUENCE) || CBS_len(value) != 0 ||
      CBS_len(&dps) == 0) {
    goto bad;
  }
  while (CBS_len(&dps) > 0) {
    CBS dp, dpn, reasons, issuer;
    int has_dpn, has_reasons, has_issuer;
    /* 4.2.1.13: a DistributionPoint names a place, an issuer, or both. */
    if (!CBS_get_asn1(&dps, &dp, CBS_ASN1_SEQUENCE) ||
        !CBS_get_optional_asn1(&dp, &dpn, &has_dpn, TAG_EXPLICIT(0)) ||
        !CBS_get_optional_asn1(&dp, &reasons, &has_reasons, TAG_IMPLICIT(1)) ||
        !CBS_get_optional_asn1(&dp, &issuer, &has_issuer, TAG_EXPLICIT(2)) ||
        CBS_len(&dp) != 0 || (!has_dpn && !has_issuer) ||
        (has_reasons && !CBS_is_valid_asn1_bitstring(&reasons))) {
      goto bad;
    }
    /* The cRLIssuer's names say who signs, not where the CRL is. */
    if (has_issuer && !parse_general_names(&issuer, NULL, err)) return 0;
    if (has_dpn) {
      /* DistributionPointName ::= CHOICE { fullName [0] GeneralNames,
       * nameRelativeToCRLIssuer [1] RelativeDistinguishedName }. */
      CBS choice;
      unsigned tag;
      if (!CBS_get_any_asn1(&dpn, &choice, &tag) || CBS_len(&dpn) != 0) goto bad;
      if (tag == TAG_EXPLICIT(0)) {
        if (!parse_general_names(&choice, out->freshest_url, err)) return 0;
      } else if (tag != TAG_EXPLICIT(1) || CBS_len(&choice) == 0) {
        goto bad;
      }
    }
  }
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad freshestCRL");
  return 0;
}

/* parse_crl_extensions reads crlExtensions (5.2): AKI, cRLNumber,
 * deltaCRLIndicator and freshestCRL, each at most once; others are
 * skipped unless critical. */
static int parse_crl_extensions(pki_crl *out, CBS *el, pki_err *err) {
  CBS exts;
  if (!CBS_get_asn1(el, &exts, CBS_ASN1_SEQUENCE) || CBS_len(el) != 0 || CBS_len(&exts) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad crlExtensions");
    return 0;
  }
  int seen_aki = 0, seen_freshest = 0;
  while (CBS_len(&exts) > 0) {
    CBS oid, value;
    int critical;
    if (!get_extension(&exts, &oid, &critical, &value)) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad Extension");
      return 0;
    }
    if (PKI_DER_OID_IS(&oid, PKI_OID_AUTHORITY_KEY_ID)) {
      if (seen_aki) goto twice;
      seen_aki = 1;
      if (!parse_aki(out, &value, err)) return 0;
    } else if (PKI_DER_OID_IS(&oid, PKI_OID_CRL_NUMBER)) {
      if (out->has_number) goto twice;
      out->has_number = 1;
      if (!get_number(&value, out->number, &out->number_len, &out->number_u64) ||
          CBS_len(&value) != 0) {
        PKI_ERR(err, PKI_ERR_INVALID,
                "malformed CRL: cRLNumber is not an INTEGER of 0 to 20 octets (5.2.3)");
        return 0;
      }
    } else if (PKI_DER_OID_IS(&oid, PKI_OID_DELTA_CRL_INDICATOR)) {
      if (out->is_delta) goto twice;
      out->is_delta = 1;
      if (!get_number(&value, out->base_number, &out->base_number_len,
                      &out->base_number_u64) ||
          CBS_len(&value) != 0) {
        PKI_ERR(err, PKI_ERR_INVALID,
                "malformed CRL: BaseCRLNumber is not an INTEGER of 0 to 20 octets (5.2.4)");
        return 0;
      }
    } else if (PKI_DER_OID_IS(&oid, PKI_OID_FRESHEST_CRL)) {
      if (seen_freshest) goto twice;
      seen_freshest = 1;
      if (!parse_freshest(out, &value, err)) return 0;
    } else if (critical) {
      /* 5.2: a CRL with a critical extension we do not know must not be
       * used. issuingDistributionPoint is one: pkid reads only CRLs that
       * cover every certificate of their CA for every reason. */
      char *text = CBS_asn1_oid_to_text(&oid);
      PKI_ERR(err, PKI_ERR_UNSUPPORTED, "CRL has a critical extension pkid does not know (%s)",
              text != NULL ? text : "?");
      OPENSSL_free(text);
      return 0;
    }
  }
  return 1;
twice:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: an extension appears twice");
  return 0;
}

/* parse_entry_extensions reads crlEntryExtensions (5.3): reasonCode and
 * invalidityDate, each at most once; others are skipped unless critical
 * (certificateIssuer, of indirect CRLs, is always critical: refused). */
static int parse_entry_extensions(pki_crl_entry *e, CBS *exts, size_t i, pki_err *err) {
  if (CBS_len(exts) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: entry %zu has empty crlEntryExtensions", i);
    return 0;
  }
  int seen_reason = 0, seen_date = 0;
  while (CBS_len(exts) > 0) {
    CBS oid, value;
    int critical;
    if (!get_extension(exts, &oid, &critical, &value)) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: entry %zu has a bad Extension", i);
      return 0;
    }
    if (PKI_DER_OID_IS(&oid, PKI_OID_CRL_REASON)) {
      CBS en;
      uint8_t r;
      if (seen_reason || !CBS_get_asn1(&value, &en, CBS_ASN1_ENUMERATED) ||
          CBS_len(&value) != 0 || !CBS_get_u8(&en, &r) || CBS_len(&en) != 0 ||
          !pki_crl_reason_valid(r)) {
        PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: entry %zu has a bad reasonCode", i);
        return 0;
      }
      seen_reason = 1;
      e->reason = r;
    } else if (PKI_DER_OID_IS(&oid, PKI_OID_INVALIDITY_DATE)) {
      /* 5.3.2: InvalidityDate ::= GeneralizedTime. */
      if (seen_date || !CBS_peek_asn1_tag(&value, CBS_ASN1_GENERALIZEDTIME) ||
          !pki_der_get_time(&value, &e->invalidity_date) || CBS_len(&value) != 0) {
        PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: entry %zu has a bad invalidityDate", i);
        return 0;
      }
      seen_date = 1;
    } else if (critical) {
      char *text = CBS_asn1_oid_to_text(&oid);
      PKI_ERR(err, PKI_ERR_UNSUPPORTED,
              "CRL entry %zu has a critical extension pkid does not know (%s)", i,
              text != NULL ? text : "?");
      OPENSSL_free(text);
      return 0;
    }
  }
  return 1;
}

/* The shortest entry that can parse: SEQUENCE { INTEGER (3 octets),
 * UTCTime (15) }. Counting only elements at least this long bounds the
 * array by the input: 18 + 2 octets of DER per pki_crl_entry. */
#define MIN_ENTRY_CONTENT 18

/* parse_entries reads revokedCertificates' contents into a new array. */
static int parse_entries(pki_crl *out, CBS revoked, int *has_entry_exts, pki_err *err) {
  CBS count = revoked;
  size_t n = 0;
  while (CBS_len(&count) > 0) {
    CBS one;
    if (!CBS_get_asn1(&count, &one, CBS_ASN1_SEQUENCE) || CBS_len(&one) < MIN_ENTRY_CONTENT) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad revokedCertificates entry %zu", n);
      return 0;
    }
    n++;
  }
  if (n == 0) {
    /* 5.1.2.6: with no revoked certificate the list MUST be absent. */
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: empty revokedCertificates");
    return 0;
  }
  out->entries = malloc(n * sizeof(pki_crl_entry));
  if (out->entries == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    pki_crl_entry *e = &out->entries[i];
    memset(e, 0, sizeof(*e));
    e->reason = -1;
    CBS one, serial, exts;
    int negative, has_exts;
    if (!CBS_get_asn1(&revoked, &one, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&one, &serial, CBS_ASN1_INTEGER) ||
        !CBS_is_valid_asn1_integer(&serial, &negative) ||
        !pki_der_get_time(&one, &e->revocation_date) ||
        !CBS_get_optional_asn1(&one, &exts, &has_exts, CBS_ASN1_SEQUENCE) ||
        CBS_len(&one) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad revokedCertificates entry %zu", i);
      return 0;
    }
    /* 4.1.2.2: serials are positive; a negative one cannot name a
     * certificate pkid would look up. */
    if (negative) {
      PKI_ERR(err, PKI_ERR_UNSUPPORTED, "CRL entry %zu has a negative serial", i);
      return 0;
    }
    if (CBS_len(&serial) > 1 && CBS_data(&serial)[0] == 0x00) CBS_skip(&serial, 1);
    if (CBS_len(&serial) > PKI_SERIAL_MAX) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: entry %zu has a serial over 20 octets", i);
      return 0;
    }
    memcpy(e->serial.bytes, CBS_data(&serial), CBS_len(&serial));
    e->serial.len = CBS_len(&serial);
    if (has_exts) {
      *has_entry_exts = 1;
      if (!parse_entry_extensions(e, &exts, i, err)) return 0;
    }
    out->num_entries = i + 1;
  }
  return 1;
}

int pki_crl_parse(pki_crl *out, const uint8_t *der, size_t len, pki_err *err) {
  memset(out, 0, sizeof(*out));
  CBS in, list, tbs, alg, oid, bits, version, revoked, el;
  int has_version, has_revoked, has_exts, has_entry_exts = 0;
  CBS_init(&in, der, len);
  if (!CBS_get_asn1(&in, &list, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
      !CBS_get_asn1_element(&list, &out->tbs, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_element(&list, &out->sig_alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&list, &bits, CBS_ASN1_BITSTRING) || CBS_len(&list) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: not a DER CertificateList");
    goto fail;
  }
  /* The signature is whole octets: no unused bits. */
  uint8_t unused;
  if (!CBS_is_valid_asn1_bitstring(&bits) || !CBS_get_u8(&bits, &unused) || unused != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad signatureValue");
    goto fail;
  }
  out->signature = bits;
  alg = out->sig_alg;
  CBS alg_seq;
  if (!CBS_get_asn1(&alg, &alg_seq, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&alg_seq, &oid, CBS_ASN1_OBJECT) || !pki_der_oid_ok(&oid)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad signatureAlgorithm");
    goto fail;
  }
  CBS t = out->tbs;
  if (!CBS_get_asn1(&t, &tbs, CBS_ASN1_SEQUENCE) ||
      !CBS_get_optional_asn1(&tbs, &version, &has_version, CBS_ASN1_INTEGER)) {
    goto bad_tbs;
  }
  out->version = 1;
  if (has_version) {
    /* 5.1.2.1: if present, the version MUST be v2 (INTEGER 1). */
    if (CBS_len(&version) != 1 || CBS_data(&version)[0] != 1) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: version is present and not v2");
      goto fail;
    }
    out->version = 2;
  }
  /* 5.1.1.2: the signature field is the same AlgorithmIdentifier as the
   * outer signatureAlgorithm. */
  if (!CBS_get_asn1_element(&tbs, &el, CBS_ASN1_SEQUENCE) ||
      !CBS_mem_equal(&el, CBS_data(&out->sig_alg), CBS_len(&out->sig_alg))) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "malformed CRL: the signature field differs from signatureAlgorithm");
    goto fail;
  }
  if (!CBS_get_asn1_element(&tbs, &out->issuer, CBS_ASN1_SEQUENCE) || !name_ok(&out->issuer)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad issuer Name");
    goto fail;
  }
  if (!pki_der_get_time(&tbs, &out->this_update)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad thisUpdate");
    goto fail;
  }
  if (CBS_peek_asn1_tag(&tbs, CBS_ASN1_UTCTIME) ||
      CBS_peek_asn1_tag(&tbs, CBS_ASN1_GENERALIZEDTIME)) {
    if (!pki_der_get_time(&tbs, &out->next_update)) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad nextUpdate");
      goto fail;
    }
  }
  if (!CBS_get_optional_asn1(&tbs, &revoked, &has_revoked, CBS_ASN1_SEQUENCE)) goto bad_tbs;
  if (has_revoked && !parse_entries(out, revoked, &has_entry_exts, err)) goto fail;
  if (!CBS_get_optional_asn1(&tbs, &el, &has_exts, TAG_EXPLICIT(0)) || CBS_len(&tbs) != 0) {
    goto bad_tbs;
  }
  /* 5.1.2.1: extensions, of the list or of an entry, make it v2. */
  if ((has_exts || has_entry_exts) && out->version != 2) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: extensions in a v1 CRL");
    goto fail;
  }
  if (has_exts && !parse_crl_extensions(out, &el, err)) goto fail;
  return 1;

bad_tbs:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed CRL: bad TBSCertList");
fail:
  pki_crl_cleanup(out);
  return 0;
}

int pki_crl_verify(const pki_crl *crl, EVP_PKEY *issuer_key, pki_err *err) {
  return pki_sig_verify(&crl->sig_alg, issuer_key, CBS_data(&crl->tbs), CBS_len(&crl->tbs),
                        CBS_data(&crl->signature), CBS_len(&crl->signature), err);
}

void pki_crl_cleanup(pki_crl *crl) {
  free(crl->entries);
  memset(crl, 0, sizeof(*crl));
}

int pki_crl_to_pem(char **out, size_t *out_len, const uint8_t *der, size_t len, pki_err *err) {
  *out = NULL;
  *out_len = 0;
  return pki_pem_append(out, out_len, "X509 CRL", der, len, err);
}
