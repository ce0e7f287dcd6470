/* checkpoints.c: signed checkpoints of this node's journal (see
 * checkpoints.h). */
#include "server/store/checkpoints.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/checkpoint.h"
#include "lib/file.h"

struct pkid_checkpoints {
  pkid_checkpoints_options o;
  char dir[4096];
  char origin[PKI_CHECKPOINT_ORIGIN_MAX];
  /* Under mu: the newest durable end, from the committer. */
  pthread_mutex_t mu;
  pki_journal_pos end;
  /* The loop's. */
  uint64_t last_seq;     /* of the last checkpoint */
  uint64_t last_ms;      /* when it was made (the first tick's time before) */
  char *latest;
  size_t latest_len;
};

pkid_checkpoints *pkid_checkpoints_new(const pkid_checkpoints_options *o,
                                       const pki_journal_pos *end, pki_err *err) {
  pkid_checkpoints *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  c->o = *o;
  snprintf(c->dir, sizeof(c->dir), "%s", o->journal_dir);
  snprintf(c->origin, sizeof(c->origin), "%s", o->origin);
  c->o.journal_dir = c->dir;
  c->o.origin = c->origin;
  if (c->o.interval_s == 0) c->o.interval_s = PKID_CHECKPOINT_INTERVAL_S;
  if (c->o.every_records == 0) c->o.every_records = PKID_CHECKPOINT_RECORDS;
  EVP_PKEY_up_ref(o->key);
  pthread_mutex_init(&c->mu, NULL);
  c->end = *end;
  return c;
}

void pkid_checkpoints_durable(pkid_checkpoints *c, const pki_journal_pos *end) {
  pthread_mutex_lock(&c->mu);
  c->end = *end;
  pthread_mutex_unlock(&c->mu);
}

/* append_log adds |text| to JOURNAL/checkpoints.log, durably. */
static int append_log(pkid_checkpoints *c, const char *text, size_t len, pki_err *err) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/checkpoints.log", c->dir);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "%s: %s", path, strerror(errno));
    return 0;
  }
  /* One write: a checkpoint is a few hundred octets. */
  ssize_t n = write(fd, text, len);
  int ok = n == (ssize_t)len && fdatasync(fd) == 0;
  if (!ok) PKI_ERR(err, PKI_ERR_IO, "%s: %s", path, n < 0 ? strerror(errno) : "short write");
  close(fd);
  return ok;
}

int pkid_checkpoints_tick(pkid_checkpoints *c, uint64_t now_ms, int *made, pki_err *err) {
  *made = 0;
  pthread_mutex_lock(&c->mu);
  pki_journal_pos end = c->end;
  pthread_mutex_unlock(&c->mu);
  uint64_t seq = end.next_seq - 1;
  /* The interval runs from the first tick: a node that starts and stops
   * within it leaves no checkpoint of its own. */
  if (c->last_ms == 0) c->last_ms = now_ms;
  if (seq == 0 || seq == c->last_seq) return 1; /* nothing new to vouch for */
  int due = now_ms >= c->last_ms + (uint64_t)c->o.interval_s * 1000 ||
            seq >= c->last_seq + c->o.every_records;
  if (!due) return 1;
  pki_checkpoint cp;
  memset(&cp, 0, sizeof(cp));
  snprintf(cp.origin, sizeof(cp.origin), "%s", c->origin);
  cp.seq = seq;
  memcpy(cp.chain, end.chain, PKI_JOURNAL_HASH_LEN);
  cp.time_ms = now_ms;
  char *text = NULL;
  size_t len = 0;
  char path[4200];
  snprintf(path, sizeof(path), "%s/checkpoint", c->dir);
  if (!pki_checkpoint_sign(&text, &len, &cp, c->o.key, err) ||
      !pki_file_write_atomic(path, text, len, 0644, err) || !append_log(c, text, len, err)) {
    free(text);
    return 0;
  }
  free(c->latest);
  c->latest = text;
  c->latest_len = len;
  c->last_seq = seq;
  c->last_ms = now_ms;
  *made = 1;
  return 1;
}

const char *pkid_checkpoints_latest(const pkid_checkpoints *c, size_t *len, uint64_t *seq,
                                    uint64_t *time_ms) {
  *len = c->latest_len;
  *seq = c->last_seq;
  *time_ms = c->last_ms;
  return c->latest;
}

void pkid_checkpoints_free(pkid_checkpoints *c) {
  if (c == NULL) return;
  EVP_PKEY_free(c->o.key);
  free(c->latest);
  pthread_mutex_destroy(&c->mu);
  free(c);
}
