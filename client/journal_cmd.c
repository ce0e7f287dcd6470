#include "client/journal_cmd.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/evp.h>

#include "lib/checkpoint.h"
#include "lib/file.h"
#include "lib/journal.h"
#include "lib/pem.h"

/* load_checkpoint reads and checks the signature of |path| with the
 * public key in |pub_path| (PEM "PUBLIC KEY"). */
static int load_checkpoint(pki_checkpoint *cp, const char *path, const char *pub_path,
                           pki_err *err) {
  uint8_t *text = NULL, *pem = NULL, *der = NULL;
  size_t text_len = 0, pem_len = 0, der_len = 0;
  EVP_PKEY *pub = NULL;
  static const char *const kLabels[] = {"PUBLIC KEY"};
  int ok = pki_file_read(&text, &text_len, path, PKI_CHECKPOINT_MAX + 1, err) &&
           pki_checkpoint_parse(cp, text, text_len, err) &&
           pki_file_read(&pem, &pem_len, pub_path, 64 * 1024, err) &&
           pki_pem_decode(&der, &der_len, NULL, kLabels, 1, pem, pem_len, 0, err);
  if (ok) {
    CBS cbs;
    CBS_init(&cbs, der, der_len);
    pub = EVP_parse_public_key(&cbs);
    if (pub == NULL || CBS_len(&cbs) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s: not a public key", pub_path);
      ok = 0;
    }
  }
  ok = ok && pki_checkpoint_verify(cp, pub, err);
  if (!ok) pki_err_prefix(err, "%s: ", path);
  EVP_PKEY_free(pub);
  free(text);
  free(pem);
  free(der);
  return ok;
}

int journal_cmd_verify(FILE *out, const char *dir, const char *checkpoint, const char *pub,
                       pki_err *err) {
  pki_checkpoint cp;
  if (checkpoint != NULL && !load_checkpoint(&cp, checkpoint, pub, err)) {
    fprintf(out, "journal:    %s\ncheckpoint: %s\nresult:     FAILED\nproblem:    %s\n", dir,
            checkpoint, err->msg);
    return 0;
  }
  /* The result holds a count per type: too big to want on a small stack. */
  pki_journal_verify_result *res = calloc(1, sizeof(*res));
  if (res == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  int ok = pki_journal_verify_dir_at(dir, checkpoint != NULL ? cp.seq : 0, res, err);
  if (ok && checkpoint != NULL && !res->mark_found) {
    /* Cut: the journal ends before what was checkpointed. */
    PKI_ERR(err, PKI_ERR_INVALID,
            "the journal ends at seq %" PRIu64 ", before the checkpoint's seq %" PRIu64
            ": records it covered were removed",
            res->last_seq, cp.seq);
    ok = 0;
  } else if (ok && checkpoint != NULL &&
             memcmp(res->mark_chain, cp.chain, PKI_JOURNAL_HASH_LEN) != 0) {
    /* Chained, but not the chain that was signed: rewritten. */
    PKI_ERR(err, PKI_ERR_INVALID,
            "the chain hash after seq %" PRIu64 " is not the checkpoint's: the records up to "
            "it were rewritten, or this is another journal",
            cp.seq);
    ok = 0;
  }
  fprintf(out, "journal:    %s\n", dir);
  if (checkpoint != NULL) fprintf(out, "checkpoint: %s\n", checkpoint);
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
  if (checkpoint != NULL) {
    fprintf(out,
            "checkpoint: holds: seq %" PRIu64 " of %s, signed at %" PRIu64
            " ms by key %02x%02x%02x%02x, is unchanged\n",
            cp.seq, cp.origin, cp.time_ms, cp.key_id[0], cp.key_id[1], cp.key_id[2],
            cp.key_id[3]);
  }
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
  if (res->torn_bytes > 0 && res->torn_zeros) {
    /* A journal in use, or one whose pkid stopped without closing it. */
    fprintf(out, "ahead:      %llu zero bytes after the last record (space "
            "written ahead for appends; the next open cuts it)\n",
            (unsigned long long)res->torn_bytes);
  } else if (res->torn_bytes > 0) {
    /* Not an error: an append in flight or a crash before its fdatasync;
     * the next open cuts it. */
    fprintf(out, "torn tail:  %llu bytes at the end of the last segment "
            "(unacknowledged; the next open cuts them)\n",
            (unsigned long long)res->torn_bytes);
  }
  free(res);
  return 1;
}
