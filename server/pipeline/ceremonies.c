/* ceremonies.c: the ceremony log imported into the journal (ceremonies.h). */
#include "server/pipeline/ceremonies.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/ceremony_log.h"
#include "lib/log.h"
#include "lib/pki_tree.h"
#include "lib/serial.h"
#include "server/pipeline/event.h"

typedef struct pending_entry {
  pki_ceremony_entry e;
  char *line;
} pending_entry;

struct pkid_ceremonies {
  char path[PKI_PATH_MAX];
  pkid_workers *workers;
  pkid_store *store;
  pending_entry *queue; /* the entries after the store's, in order */
  size_t num, next;     /* next: the one in flight */
};

static void queue_clear(pkid_ceremonies *c) {
  for (size_t i = 0; i < c->num; i++) free(c->queue[i].line);
  free(c->queue);
  c->queue = NULL;
  c->num = c->next = 0;
}

pkid_ceremonies *pkid_ceremonies_new(const char *pki_dir, pkid_workers *workers,
                                     pkid_store *store, pki_err *err) {
  pkid_ceremonies *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  snprintf(c->path, sizeof(c->path), "%s/" PKI_CEREMONY_LOG_FILE, pki_dir);
  c->workers = workers;
  c->store = store;
  return c;
}

typedef struct scan {
  pkid_ceremonies *c;
  int collect; /* queue the entries after the store's (no import in flight) */
  int matched; /* the store's last entry was found, unchanged */
} scan;

static int take_entry(void *ctx, const pki_ceremony_entry *e, const char *line, size_t len,
                      pki_err *err) {
  scan *s = ctx;
  pkid_ceremonies *c = s->c;
  const pkid_store *st = c->store;
  if (e->seq < st->ceremony_seq) return 1;
  if (e->seq == st->ceremony_seq) {
    if (memcmp(e->hash, st->ceremony_hash, 32) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "%s: entry %" PRIu64 " is not the one the journal holds: the log was rewritten",
              c->path, e->seq);
      return 0;
    }
    s->matched = 1;
    return 1;
  }
  if (!s->collect) return 1;
  pending_entry *q = realloc(c->queue, (c->num + 1) * sizeof(*q));
  if (q == NULL) goto oom;
  c->queue = q;
  q[c->num].e = *e;
  q[c->num].line = malloc(len + 1);
  if (q[c->num].line == NULL) goto oom;
  memcpy(q[c->num].line, line, len);
  q[c->num].line[len] = '\0';
  c->num++;
  return 1;
oom:
  PKI_ERR_OOM(err);
  return 0;
}

static int submit_next(pkid_ceremonies *c, pki_err *err);

static void on_journaled(void *ctx, int ok, const pki_err *failure) {
  pkid_ceremonies *c = ctx;
  const pki_ceremony_entry *e = &c->queue[c->next].e;
  char seq[24];
  snprintf(seq, sizeof(seq), "%" PRIu64, e->seq);
  if (!ok) {
    pki_log("error", "ceremony_import_failed", "seq", seq, "reason", failure->msg, "action",
            "taken up again at the next reload", NULL);
    queue_clear(c);
    return;
  }
  pki_log("info", "ceremony_imported", "seq", seq, "kind", e->kind, "name", e->name, NULL);
  c->store->ceremony_seq = e->seq;
  memcpy(c->store->ceremony_hash, e->hash, 32);
  c->next++;
  pki_err err;
  pki_err_clear(&err);
  if (c->next == c->num) {
    snprintf(seq, sizeof(seq), "%zu", c->num);
    pki_log("info", "ceremony_import_done", "entries", seq, NULL);
    queue_clear(c);
  } else if (!submit_next(c, &err)) {
    pki_log("error", "ceremony_import_failed", "reason", err.msg, "action",
            "taken up again at the next reload", NULL);
    queue_clear(c);
  }
}

static int submit_next(pkid_ceremonies *c, pki_err *err) {
  const pending_entry *p = &c->queue[c->next];
  char identity[64];
  snprintf(identity, sizeof(identity), "ceremony:%s", p->e.kind);
  /* The CRL's entry holds its cRLNumber, and a token's none: only a
   * certificate's serial goes in the record's serial. */
  pki_serial serial;
  int has_serial = strcmp(p->e.kind, "crl") != 0 && strcmp(p->e.kind, "token") != 0 &&
                   pki_serial_from_hex(&serial, p->e.serial, err);
  pki_err_clear(err);
  pkid_event ev = {.kind = PKI_EVENT_CEREMONY,
                   .outcome = PKI_OUTCOME_OK,
                   .identity = identity,
                   .service = p->e.name,
                   .serial = has_serial ? &serial : NULL,
                   .first = p->e.time,
                   .last = p->e.time,
                   .detail = p->line};
  return pkid_event_submit(c->workers, &ev, on_journaled, c, err);
}

int pkid_ceremonies_scan(pkid_ceremonies *c, pki_err *err) {
  int busy = c->num > 0; /* then the import in flight keeps its queue */
  scan s = {c, !busy, c->store->ceremony_seq == 0};
  pki_ceremony_entry last;
  int ok = pki_ceremony_log_read(c->path, take_entry, &s, &last, err);
  if (ok && !s.matched) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "%s ends at entry %" PRIu64 ", but the journal holds entry %" PRIu64
            ": the log was cut or replaced",
            c->path, last.seq, c->store->ceremony_seq);
    ok = 0;
  }
  if (busy) return ok;
  if (!ok || c->num == 0) {
    queue_clear(c);
    return ok;
  }
  char count[24];
  snprintf(count, sizeof(count), "%zu", c->num);
  pki_log("info", "ceremony_import", "file", c->path, "entries", count, NULL);
  if (!submit_next(c, err)) {
    queue_clear(c);
    return 0;
  }
  return 1;
}

void pkid_ceremonies_free(pkid_ceremonies *c) {
  if (c == NULL) return;
  queue_clear(c);
  free(c);
}
