#include "lib/ceremony_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "lib/file.h"
#include "lib/text.h"

#define MAGIC "pkid-ceremony 1"
/* Ceremonies are rare: a log of this size would be thousands of years. */
#define LOG_MAX (64u << 20)

static const char *const kKinds[] = {"root", "intermediate", "issue", "crl", "token"};
static const char *const kKeys[] = {"new", "shares", "passphrase", "token-key"};

static int one_of(const char *v, const char *const *set, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(v, set[i]) == 0) return 1;
  }
  return 0;
}

/* plain: the octets a value may hold, so that a line splits on spaces. */
static int plain(const char *v) {
  if (v[0] == '\0') return 0;
  for (const char *c = v; *c != '\0'; c++) {
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
          strchr("._:,/-", *c) != NULL)) {
      return 0;
    }
  }
  return 1;
}

void pki_ceremony_fingerprint(char out[17], const uint8_t *data, size_t len) {
  uint8_t md[SHA256_DIGEST_LENGTH];
  SHA256(data, len, md);
  pki_text_hex(out, md, 8);
}

size_t pki_ceremony_line_format(char *out, pki_ceremony_entry *e) {
  if (!one_of(e->kind, kKinds, 5) || !one_of(e->key, kKeys, 4) || !plain(e->ca) ||
      !plain(e->name) || !plain(e->serial) || !plain(e->shares)) {
    return 0;
  }
  char sha[65], prev[65], hash[65];
  pki_text_hex(sha, e->sha256, 32);
  pki_text_hex(prev, e->prev, 32);
  int n = snprintf(out, PKI_CEREMONY_LINE_MAX,
                   MAGIC " seq=%" PRIu64 " time=%" PRId64
                         " kind=%s ca=%s name=%s serial=%s sha256=%s key=%s shares=%s prev=%s",
                   e->seq, e->time, e->kind, e->ca, e->name, e->serial, sha, e->key, e->shares,
                   prev);
  /* 72 more: " hash=", 64 digits and the newline, and the NUL. */
  if (n < 0 || (size_t)n + 72 > PKI_CEREMONY_LINE_MAX) return 0;
  SHA256((const uint8_t *)out, (size_t)n, e->hash);
  pki_text_hex(hash, e->hash, 32);
  n += snprintf(out + n, PKI_CEREMONY_LINE_MAX - (size_t)n, " hash=%s\n", hash);
  return (size_t)n;
}

/* field takes " KEY=VALUE" at |*p| into |value| (NUL-terminated). */
static int field(const char **p, const char *end, const char *key, char *value, size_t size) {
  size_t klen = strlen(key);
  const char *q = *p;
  if ((size_t)(end - q) < klen + 2 || q[0] != ' ' || memcmp(q + 1, key, klen) != 0 ||
      q[klen + 1] != '=') {
    return 0;
  }
  const char *v = q + klen + 2;
  const char *stop = memchr(v, ' ', (size_t)(end - v));
  if (stop == NULL) stop = end;
  size_t n = (size_t)(stop - v);
  if (n == 0 || n >= size || memchr(v, '\0', n) != NULL) return 0;
  memcpy(value, v, n);
  value[n] = '\0';
  *p = stop;
  return 1;
}

int pki_ceremony_line_parse(const char *line, size_t len, pki_ceremony_entry *out,
                            pki_err *err) {
  pki_ceremony_entry e;
  memset(&e, 0, sizeof(e));
  const char *p = line, *end = line + len;
  char v[PKI_CEREMONY_SHARES_MAX];
  uint64_t t = 0;
  const char *hash_at = NULL;
  int ok = len > strlen(MAGIC) && memcmp(line, MAGIC, strlen(MAGIC)) == 0;
  if (ok) p += strlen(MAGIC);
  ok = ok && field(&p, end, "seq", v, sizeof(v)) && pki_text_u64(v, &e.seq) && e.seq > 0 &&
       field(&p, end, "time", v, sizeof(v)) && pki_text_u64(v, &t) && t <= INT64_MAX &&
       field(&p, end, "kind", e.kind, sizeof(e.kind)) && one_of(e.kind, kKinds, 5) &&
       field(&p, end, "ca", e.ca, sizeof(e.ca)) && plain(e.ca) &&
       field(&p, end, "name", e.name, sizeof(e.name)) && plain(e.name) &&
       field(&p, end, "serial", e.serial, sizeof(e.serial)) && plain(e.serial) &&
       field(&p, end, "sha256", v, sizeof(v)) && pki_text_unhex(v, e.sha256, 32) &&
       field(&p, end, "key", e.key, sizeof(e.key)) && one_of(e.key, kKeys, 4) &&
       field(&p, end, "shares", e.shares, sizeof(e.shares)) && plain(e.shares) &&
       field(&p, end, "prev", v, sizeof(v)) && pki_text_unhex(v, e.prev, 32);
  if (ok) hash_at = p;
  ok = ok && field(&p, end, "hash", v, sizeof(v)) && pki_text_unhex(v, e.hash, 32) && p == end;
  if (!ok) {
    PKI_ERR(err, PKI_ERR_INVALID, "not a ceremony log line (%s)", MAGIC);
    return 0;
  }
  e.time = (int64_t)t;
  uint8_t want[32];
  SHA256((const uint8_t *)line, (size_t)(hash_at - line), want);
  if (memcmp(want, e.hash, 32) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "ceremony log entry %" PRIu64 ": its hash is not its own",
            e.seq);
    return 0;
  }
  *out = e;
  return 1;
}

/* read_all walks the lines of |text|, checking the chain. */
static int read_all(const char *path, const char *text, size_t len, pki_ceremony_entry_fn fn,
                    void *ctx, pki_ceremony_entry *last, pki_err *err) {
  pki_ceremony_entry prev;
  memset(&prev, 0, sizeof(prev));
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "%s: ends in a partial line after entry %" PRIu64
              " (a ceremony step cut off while writing?)",
              path, prev.seq);
      return 0;
    }
    pki_ceremony_entry e;
    if (!pki_ceremony_line_parse(p, (size_t)(nl - p), &e, err)) {
      pki_err_prefix(err, "%s: after entry %" PRIu64 ": ", path, prev.seq);
      return 0;
    }
    if (e.seq != prev.seq + 1 || memcmp(e.prev, prev.hash, 32) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "%s: entry %" PRIu64 " does not follow entry %" PRIu64
              " (a line removed, reordered or rewritten)",
              path, e.seq, prev.seq);
      return 0;
    }
    if (fn != NULL && !fn(ctx, &e, p, (size_t)(nl - p), err)) return 0;
    prev = e;
    p = nl + 1;
  }
  if (last != NULL) *last = prev;
  return 1;
}

/* load reads and checks the log: |*text| (NULL, |*len| 0 for a missing
 * file, which is an empty log) for the caller to free. */
static int load(const char *path, uint8_t **text, size_t *len, pki_ceremony_entry_fn fn,
                void *ctx, pki_ceremony_entry *last, pki_err *err) {
  *text = NULL;
  *len = 0;
  if (last != NULL) memset(last, 0, sizeof(*last));
  if (!pki_file_read(text, len, path, LOG_MAX, err)) {
    if (err->code != PKI_ERR_NOT_FOUND) return 0;
    pki_err_clear(err);
    *text = NULL;
    *len = 0;
    return 1;
  }
  if (!read_all(path, (const char *)*text, *len, fn, ctx, last, err)) {
    free(*text);
    *text = NULL;
    return 0;
  }
  return 1;
}

int pki_ceremony_log_read(const char *path, pki_ceremony_entry_fn fn, void *ctx,
                          pki_ceremony_entry *last, pki_err *err) {
  uint8_t *text;
  size_t len;
  int ok = load(path, &text, &len, fn, ctx, last, err);
  free(text);
  return ok;
}

int pki_ceremony_log_append(const char *path, pki_ceremony_entry *e, pki_err *err) {
  uint8_t *text;
  size_t len;
  pki_ceremony_entry last;
  if (!load(path, &text, &len, NULL, NULL, &last, err)) {
    pki_err_prefix(err, "not appending to it: ");
    return 0;
  }
  e->seq = last.seq + 1;
  memcpy(e->prev, last.hash, 32);
  if (e->time == 0) e->time = (int64_t)time(NULL);
  char line[PKI_CEREMONY_LINE_MAX];
  size_t n = pki_ceremony_line_format(line, e);
  uint8_t *all = n == 0 ? NULL : realloc(text, len + n);
  if (n == 0 || all == NULL) {
    free(text);
    if (n == 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s: a ceremony entry for %s holds a value the log "
              "cannot keep", path, e->name);
    } else {
      PKI_ERR_OOM(err);
    }
    return 0;
  }
  memcpy(all + len, line, n);
  /* Rewritten whole and renamed into place: a crash leaves the log before
   * the step or after it, never half a line. */
  int ok = pki_file_write_atomic(path, all, len + n, 0644, err);
  free(all);
  return ok;
}
