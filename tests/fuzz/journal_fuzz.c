/* journal_fuzz: arbitrary bytes as a journal segment or snapshot file.
 *
 * The first input byte chooses what the rest is: bit 0 clear, a segment
 * (header, then records, with a torn tail allowed if bit 1 is set; with no
 * valid header, bit 2 picks the records' format, 1 or 2); bit 0 set, a
 * snapshot. The parsers open and verify share must accept or refuse
 * with PKI_ERR_INVALID and a message; never crash, leak, hang or read out
 * of bounds, and whatever they accept must be self-consistent. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_ctx {
  const uint8_t *start, *end;
  uint64_t next_seq;
} fuzz_ctx;

static int check_record(void *ctx, const pki_journal_record *rec,
                        pki_err *err) {
  (void)err;
  fuzz_ctx *f = ctx;
  if (rec->seq != f->next_seq++ || rec->type == 0 ||
      rec->len > PKI_JOURNAL_MAX_PAYLOAD || rec->payload < f->start ||
      rec->chain + PKI_JOURNAL_HASH_LEN > f->end ||
      rec->payload + rec->len != rec->chain) {
    abort();
  }
  return 1;
}

static void fuzz_segment(const uint8_t *data, size_t size, int allow_torn,
                         uint32_t version) {
  pki_err err;
  pki_err_clear(&err);
  pki_journal_seg_header h;
  pki_journal_scan scan;
  memset(&scan, 0, sizeof(scan));
  if (pki_journal_parse_seg_header(data, size, &h, &err)) {
    scan.offset = PKI_JOURNAL_SEG_HEADER_LEN;
    scan.version = h.version;
    scan.next_seq = h.first_seq;
    memcpy(scan.chain, h.prev_chain, PKI_JOURNAL_HASH_LEN);
  } else {
    if (err.code != PKI_ERR_INVALID || err.msg[0] == '\0') abort();
    /* Still exercise the record parser: from the top, linking to zero,
     * under either format's rules. */
    scan.next_seq = 1;
    scan.version = version;
  }
  fuzz_ctx f = {data, data + size, scan.next_seq};
  pki_err_clear(&err);
  if (pki_journal_parse_records(data, size, &scan, allow_torn, check_record,
                                &f, &err)) {
    if (scan.offset + scan.torn_bytes != size || f.next_seq != scan.next_seq ||
        (!allow_torn && scan.torn_bytes != 0)) {
      abort();
    }
  } else if (err.code != PKI_ERR_INVALID || err.msg[0] == '\0' ||
             scan.bad_offset > size) {
    abort();
  }
}

static void fuzz_snapshot(const uint8_t *data, size_t size) {
  pki_err err;
  pki_err_clear(&err);
  pki_journal_snapshot_info s;
  if (pki_journal_parse_snapshot(data, size, &s, &err)) {
    if (s.state + s.len + PKI_JOURNAL_HASH_LEN != data + size ||
        s.offset < PKI_JOURNAL_SEG_HEADER_LEN) {
      abort();
    }
  } else if (err.code != PKI_ERR_INVALID || err.msg[0] == '\0') {
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t mode = data[0];
  /* A copy of exactly the right size, so that ASan sees any overread. */
  size_t n = size - 1;
  uint8_t *copy = malloc(n > 0 ? n : 1);
  if (copy == NULL) return 0;
  memcpy(copy, data + 1, n);
  if (mode & 1) {
    fuzz_snapshot(copy, n);
  } else {
    fuzz_segment(copy, n, (mode & 2) != 0, (mode & 4) ? 1 : 2);
  }
  free(copy);
  return 0;
}
