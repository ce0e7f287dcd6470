#include "client/journal_cmd.h"

#include <stdlib.h>

#include "lib/journal.h"

int journal_cmd_verify(FILE *out, const char *dir, pki_err *err) {
  /* The result holds a count per type: too big to want on a small stack. */
  pki_journal_verify_result *res = calloc(1, sizeof(*res));
  if (res == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  int ok = pki_journal_verify_dir(dir, res, err);
  fprintf(out, "journal:    %s\n", dir);
  if (!ok) {
    fprintf(out, "result:     FAILED\n");
    if (res->bad_file[0] != '\0') {
      fprintf(out, "file:       %s\n", res->bad_file);
      fprintf(out, "offset:     %llu\n", (unsigned long long)res->bad_offset);
    }
    fprintf(out, "problem:    %s\n", err->msg);
    free(res);
    return 0;
  }
  fprintf(out, "result:     ok\n");
  fprintf(out, "segments:   %llu (%llu bytes)\n",
          (unsigned long long)res->segments, (unsigned long long)res->bytes);
  fprintf(out, "records:    %llu\n", (unsigned long long)res->records);
  for (int t = 0; t < 256; t++) {
    if (res->by_type[t] > 0) {
      fprintf(out, "  type %3d: %llu\n", t, (unsigned long long)res->by_type[t]);
    }
  }
  if (res->records > 0) {
    fprintf(out, "first seq:  %llu\n", (unsigned long long)res->first_seq);
    fprintf(out, "last seq:   %llu\n", (unsigned long long)res->last_seq);
  }
  fprintf(out, "chain hash: ");
  for (int i = 0; i < PKI_JOURNAL_HASH_LEN; i++) fprintf(out, "%02x", res->chain[i]);
  fprintf(out, "\n");
  fprintf(out, "snapshots:  %llu valid, %llu damaged\n",
          (unsigned long long)res->snapshots,
          (unsigned long long)res->snapshots_bad);
  if (res->torn_bytes > 0) {
    /* Not an error: an append in flight or a crash before its fdatasync;
     * the next open cuts it. */
    fprintf(out, "torn tail:  %llu bytes at the end of the last segment "
            "(unacknowledged; the next open cuts them)\n",
            (unsigned long long)res->torn_bytes);
  }
  free(res);
  return 1;
}
