/* record.c: one journal record of pkid, read back (see record.h). */
#include "lib/record.h"

#include <string.h>


int pki_cbs_get_serial(CBS *cbs, pki_serial *out) {
  CBS s;
  if (!CBS_get_u8_length_prefixed(cbs, &s) || CBS_len(&s) == 0 ||
      CBS_len(&s) > PKI_SERIAL_MAX) {
    return 0;
  }
  memset(out, 0, sizeof(*out));
  memcpy(out->bytes, CBS_data(&s), CBS_len(&s));
  out->len = CBS_len(&s);
  return 1;
}

static pki_bytes bytes_of(const CBS *cbs) {
  pki_bytes b = {CBS_data(cbs), CBS_len(cbs)};
  return b;
}

static int parse_payload(CBS *cbs, pki_parsed_record *o) {
  CBS a, b, c, d;
  switch (o->type) {
    case PKI_REC_SERIAL_BLOCK:
      return CBS_get_u16(cbs, &o->block_node) && CBS_get_u64(cbs, &o->block_first) &&
             CBS_get_u64(cbs, &o->block_count);
    case PKI_REC_ISSUE:
      if (!pki_cbs_get_serial(cbs, &o->serial) || !CBS_get_u8_length_prefixed(cbs, &a) ||
          !CBS_get_u8_length_prefixed(cbs, &b) || !CBS_get_u16_length_prefixed(cbs, &c) ||
          !CBS_get_u8(cbs, &o->usage) || !CBS_get_u64(cbs, &o->not_before) ||
          !CBS_get_u64(cbs, &o->not_after) || CBS_len(cbs) < 32) {
        return 0;
      }
      o->ca = bytes_of(&a);
      o->service = bytes_of(&b);
      o->identity = bytes_of(&c);
      o->key_hash = CBS_data(cbs);
      if (!CBS_skip(cbs, 32) || !CBS_get_u24_length_prefixed(cbs, &d)) return 0;
      o->cert = bytes_of(&d);
      if (o->version < 2) return 1;
      if (!CBS_get_u8_length_prefixed(cbs, &a) || CBS_len(&a) > PKI_SERIAL_MAX) return 0;
      memcpy(o->renews.bytes, CBS_data(&a), CBS_len(&a));
      o->renews.len = CBS_len(&a);
      return 1;
    case PKI_REC_TOKEN:
      if (CBS_len(cbs) < 32) return 0;
      o->token_id = CBS_data(cbs);
      return CBS_skip(cbs, 32);
    case PKI_REC_REVOKE:
      if (!pki_cbs_get_serial(cbs, &o->serial) || !CBS_get_u8(cbs, &o->reason) ||
          !CBS_get_u64(cbs, &o->revoked_at) || !CBS_get_u16_length_prefixed(cbs, &a)) {
        return 0;
      }
      o->identity = bytes_of(&a);
      if (o->version < 2) return 1;
      if (!CBS_get_u64(cbs, &o->invalidity_date) || !CBS_get_u8(cbs, &o->flags) ||
          (o->flags & ~(PKI_REVOKE_HAS_KEY | PKI_REVOKE_BY_KEY)) != 0) {
        return 0;
      }
      if (o->flags & PKI_REVOKE_HAS_KEY) {
        if (CBS_len(cbs) < 32) return 0;
        o->key_hash = CBS_data(cbs);
        return CBS_skip(cbs, 32);
      }
      return 1;
    case PKI_REC_CRL:
      if (!CBS_get_u8_length_prefixed(cbs, &a)) return 0;
      o->ca = bytes_of(&a);
      return CBS_get_u64(cbs, &o->crl_number) && CBS_get_u64(cbs, &o->crl_base) &&
             CBS_get_u64(cbs, &o->crl_this_update) && CBS_get_u64(cbs, &o->crl_next_update) &&
             CBS_get_u64(cbs, &o->crl_cut) && CBS_get_u32(cbs, &o->crl_entries) &&
             CBS_get_u32(cbs, &o->crl_delta_entries) && CBS_skip(cbs, 64) &&
             o->crl_number != 0 && o->crl_base != 0 && o->crl_base <= o->crl_number;
    case PKI_REC_EVENT:
      if (!CBS_get_u8(cbs, &o->event_kind) || !CBS_get_u8(cbs, &o->event_outcome) ||
          o->event_outcome > PKI_OUTCOME_FAILED || !CBS_get_u16_length_prefixed(cbs, &a) ||
          !CBS_get_u8_length_prefixed(cbs, &b) || !CBS_get_u8_length_prefixed(cbs, &c) ||
          CBS_len(&c) > PKI_SERIAL_MAX || !CBS_get_u32(cbs, &o->event_count) ||
          !CBS_get_u64(cbs, &o->event_first) || !CBS_get_u64(cbs, &o->event_last) ||
          !CBS_get_u16_length_prefixed(cbs, &d) || o->event_kind == 0 ||
          o->event_count == 0 || o->event_first > o->event_last) {
        return 0;
      }
      o->identity = bytes_of(&a);
      o->service = bytes_of(&b);
      memcpy(o->serial.bytes, CBS_data(&c), CBS_len(&c));
      o->serial.len = CBS_len(&c);
      o->detail = bytes_of(&d);
      return 1;
    default:
      return 0;
  }
}

int pki_record_parse(const pki_journal_record *r, pki_parsed_record *out, pki_err *err) {
  memset(out, 0, sizeof(*out));
  out->type = r->type;
  if (r->type < PKI_REC_SERIAL_BLOCK || r->type > PKI_REC_EVENT) {
    /* A newer pkid's record: refuse rather than silently drop state. */
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "journal record %llu has unknown type %u",
            (unsigned long long)r->seq, r->type);
    return 0;
  }
  CBS cbs;
  CBS_init(&cbs, r->payload, r->len);
  if (!CBS_get_u8(&cbs, &out->version) || out->version == 0) goto bad;
  uint8_t newest = r->type == PKI_REC_ISSUE    ? PKI_ISSUE_VERSION
                   : r->type == PKI_REC_REVOKE ? PKI_REVOKE_VERSION
                   : r->type == PKI_REC_CRL    ? PKI_CRL_VERSION
                   : r->type == PKI_REC_EVENT  ? PKI_EVENT_VERSION
                                               : PKI_RECORD_VERSION;
  if (out->version > newest) {
    /* A newer pkid's record: refuse rather than misread it. */
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "journal record %llu (type %u) has version %u, newer than this pkid's",
            (unsigned long long)r->seq, r->type, out->version);
    return 0;
  }
  if (!parse_payload(&cbs, out) || CBS_len(&cbs) != 0) goto bad;
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "journal record %llu (type %u) is malformed",
          (unsigned long long)r->seq, r->type);
  return 0;
}
