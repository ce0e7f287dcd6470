/* fleet.c: the node's lease and the shipping of its journal into the
 * fleet's PostgreSQL (see fleet.h). */
#include "server/fleet/fleet.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "lib/file.h"
#include "lib/log.h"
#include "lib/usage.h"
#include "server/fleet/migrations.h"
#include "server/fleet/pg.h"
#include "server/metrics/metrics.h"
#include "lib/record.h"
#include "server/store/store.h"

#define HOLDER_FILE "fleet-holder"
#define HOLDER_LEN 32 /* hex digits: 128 random bits */
/* Taken by every pkid while it migrates (pg_advisory_xact_lock): "pkid". */
#define MIGRATION_LOCK 0x706b6964
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 5000
#define STOP_SHIP_MS 3000
#define PKID_VERSION "pkid 0.11"

struct pkid_fleet {
  pkid_fleet_options o;
  char holder[HOLDER_LEN + 1];
  char host[256];
  char node_text[8], lease_text[16];
  pthread_t thread;
  int thread_started;
  PGconn *conn; /* the fleet thread's, once started */
  PGconn *claim_conn; /* the committer's (pkid_fleet_claim) */
  /* Under mu: the durable end, and stop. */
  pthread_mutex_t mu;
  pthread_cond_t cond;
  pki_journal_pos end;
  int stop;
  /* The newest checkpoint not yet published (pkid_fleet_checkpoint). */
  char *checkpoint;
  size_t checkpoint_len;
  uint64_t checkpoint_seq, checkpoint_ms;
  /* The fleet thread's. */
  pki_journal_pos pos; /* after the last record shipped */
  uint64_t next_renew_ms, next_connect_ms, retry_ms;
  uint64_t last_error_ms;
  /* Read by pkid_fleet_ready from any thread. */
  _Atomic int connected;
  _Atomic uint64_t lag;
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- migrations ---- */

/* migrate applies what the database lacks, in one transaction under an
 * advisory lock, so nodes that start together apply each migration once
 * and a node never sees half of one. */
static int migrate(PGconn *c, pki_err *err) {
  if (!pkid_pg_script(c, "BEGIN", err)) return 0;
  char lock[64];
  snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%d)", MIGRATION_LOCK);
  int ok = pkid_pg_script(c, lock, err) &&
           pkid_pg_script(c,
                          "CREATE TABLE IF NOT EXISTS pkid_schema_migrations ("
                          " version integer PRIMARY KEY, name text NOT NULL,"
                          " applied_at timestamptz NOT NULL DEFAULT now())",
                          err);
  PGresult *r = ok ? pkid_pg_exec(c, "SELECT coalesce(max(version), 0) FROM pkid_schema_migrations",
                                  0, NULL, NULL, NULL, err)
                   : NULL;
  int have = r != NULL ? atoi(PQgetvalue(r, 0, 0)) : 0;
  PQclear(r);
  ok = ok && r != NULL;
  for (size_t i = 0; ok && i < pkid_num_migrations; i++) {
    const pkid_migration *m = &pkid_migrations[i];
    if (m->version <= have) continue;
    char version[16];
    snprintf(version, sizeof(version), "%d", m->version);
    const char *const v[] = {version, m->name};
    PGresult *ins = NULL;
    ok = pkid_pg_script(c, m->sql, err) &&
         (ins = pkid_pg_exec(c,
                             "INSERT INTO pkid_schema_migrations (version, name) VALUES ($1, $2)",
                             2, v, NULL, NULL, err)) != NULL;
    PQclear(ins);
    if (ok) pki_log("info", "fleet_migrated", "version", version, "name", m->name, NULL);
    else pki_err_prefix(err, "migration %s: ", m->name);
  }
  if (!ok) {
    pki_err ignored;
    pki_err_clear(&ignored);
    pkid_pg_script(c, "ROLLBACK", &ignored);
    return 0;
  }
  if (!pkid_pg_script(c, "COMMIT", err)) return 0;
  int newest = pkid_num_migrations > 0 ? pkid_migrations[pkid_num_migrations - 1].version : 0;
  if (have > newest) {
    /* Migrations only add (deploy/postgres/migrations/): an older node
     * runs on a newer schema during a rolling upgrade. */
    char a[16], b[16];
    snprintf(a, sizeof(a), "%d", have);
    snprintf(b, sizeof(b), "%d", newest);
    pki_log("warn", "fleet_schema_newer", "database", a, "pkid", b, NULL);
  }
  return 1;
}

/* ---- the holder: this node's journal ---- */

/* load_holder reads JOURNAL/fleet-holder, making it (128 random bits, in
 * hex, 0600) the first time. */
static int load_holder(pkid_fleet *f, pki_err *err) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", f->o.journal_dir, HOLDER_FILE);
  uint8_t *data = NULL;
  size_t len = 0;
  pki_err rerr;
  pki_err_clear(&rerr);
  if (pki_file_read(&data, &len, path, 4096, &rerr)) {
    int ok = len >= HOLDER_LEN;
    for (size_t i = 0; ok && i < HOLDER_LEN; i++) {
      ok = (data[i] >= '0' && data[i] <= '9') || (data[i] >= 'a' && data[i] <= 'f');
    }
    if (ok) memcpy(f->holder, data, HOLDER_LEN);
    free(data);
    if (!ok) PKI_ERR(err, PKI_ERR_INVALID, "%s: not a holder id", path);
    return ok;
  }
  if (rerr.code != PKI_ERR_NOT_FOUND) {
    *err = rerr;
    return 0;
  }
  uint8_t raw[HOLDER_LEN / 2];
  RAND_bytes(raw, sizeof(raw));
  for (size_t i = 0; i < sizeof(raw); i++) snprintf(f->holder + 2 * i, 3, "%02x", raw[i]);
  char text[HOLDER_LEN + 2];
  snprintf(text, sizeof(text), "%s\n", f->holder);
  return pki_file_write_atomic(path, (const uint8_t *)text, HOLDER_LEN + 1, 0600, err);
}

/* ---- the lease ---- */

/* take_lease takes the node id for this holder: a new row, or one this
 * holder had, or one whose lease ran out. A new holder of an id starts the
 * cursor afresh: its journal is another. The cursor comes back in |pos|. */
static int take_lease(pkid_fleet *f, pki_err *err) {
  static const char kTake[] =
      "INSERT INTO pkid_nodes (node_id, holder, host, version, started_at, renewed_at,"
      " lease_until) VALUES ($1, $2, $3, $4, now(), now(), now() + make_interval(secs => $5))"
      " ON CONFLICT (node_id) DO UPDATE SET"
      "  shipped_seq = CASE WHEN pkid_nodes.holder = EXCLUDED.holder"
      "    THEN pkid_nodes.shipped_seq ELSE 0 END,"
      "  shipped_segment = CASE WHEN pkid_nodes.holder = EXCLUDED.holder"
      "    THEN pkid_nodes.shipped_segment ELSE 1 END,"
      "  shipped_offset = CASE WHEN pkid_nodes.holder = EXCLUDED.holder"
      "    THEN pkid_nodes.shipped_offset ELSE 0 END,"
      "  shipped_chain = CASE WHEN pkid_nodes.holder = EXCLUDED.holder"
      "    THEN pkid_nodes.shipped_chain ELSE NULL END,"
      "  journal_seq = CASE WHEN pkid_nodes.holder = EXCLUDED.holder"
      "    THEN pkid_nodes.journal_seq ELSE 0 END,"
      "  holder = EXCLUDED.holder, host = EXCLUDED.host, version = EXCLUDED.version,"
      "  started_at = EXCLUDED.started_at, renewed_at = EXCLUDED.renewed_at,"
      "  lease_until = EXCLUDED.lease_until"
      " WHERE pkid_nodes.holder = EXCLUDED.holder OR pkid_nodes.lease_until < now()"
      " RETURNING shipped_seq, shipped_segment, shipped_offset, shipped_chain";
  const char *const v[] = {f->node_text, f->holder, f->host, PKID_VERSION, f->lease_text};
  PGresult *r = pkid_pg_exec(f->conn, kTake, 5, v, NULL, NULL, err);
  if (r == NULL) return 0;
  if (PQntuples(r) == 1) {
    pki_journal_pos_start(&f->pos);
    uint64_t seq = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    uint64_t offset = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
    if (offset != 0) {
      f->pos.next_seq = seq + 1;
      f->pos.segment = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
      f->pos.offset = offset;
      size_t n = 0;
      unsigned char *chain = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 3), &n);
      if (chain != NULL && n == PKI_JOURNAL_HASH_LEN) memcpy(f->pos.chain, chain, n);
      PQfreemem(chain);
    }
    PQclear(r);
    f->next_renew_ms = now_ms() + (uint64_t)f->o.lease_s * 1000 / 3;
    return 1;
  }
  PQclear(r);
  /* Held: say by whom and until when. */
  const char *const w[] = {f->node_text};
  r = pkid_pg_exec(f->conn,
                   "SELECT host, holder, ceil(extract(epoch FROM lease_until - now()))"
                   " FROM pkid_nodes WHERE node_id = $1",
                   1, w, NULL, NULL, err);
  if (r == NULL) return 0;
  if (PQntuples(r) == 1) {
    PKI_ERR(err, PKI_ERR_EXISTS,
            "node id %s is held by the pkid on %s (journal %.8s...) for %s s more: each node "
            "needs its own --node",
            f->node_text, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
  } else {
    PKI_ERR(err, PKI_ERR_EXISTS, "node id %s could not be taken", f->node_text);
  }
  PQclear(r);
  return 0;
}

/* renew_lease extends this holder's lease; 0 with PKI_ERR_EXISTS when
 * another holder has the id now. */
static int renew_lease(pkid_fleet *f, pki_err *err) {
  char journal[24];
  pthread_mutex_lock(&f->mu);
  snprintf(journal, sizeof(journal), "%" PRIu64, f->end.next_seq - 1);
  pthread_mutex_unlock(&f->mu);
  const char *const v[] = {f->node_text, f->holder, f->lease_text, journal};
  PGresult *r = pkid_pg_exec(f->conn,
                             "UPDATE pkid_nodes SET renewed_at = now(),"
                             " lease_until = now() + make_interval(secs => $3),"
                             " journal_seq = greatest(journal_seq, $4)"
                             " WHERE node_id = $1 AND holder = $2",
                             4, v, NULL, NULL, err);
  if (r == NULL) return 0;
  int renewed = strcmp(PQcmdTuples(r), "1") == 0;
  PQclear(r);
  if (renewed) {
    f->next_renew_ms = now_ms() + (uint64_t)f->o.lease_s * 1000 / 3;
    return 1;
  }
  /* Our row is gone or another's: take it again if nobody holds it. */
  return take_lease(f, err);
}

/* ---- shipping ---- */

/* One record of a batch: a copy of its payload, parsed. */
typedef struct ship_item {
  uint8_t *payload;
  pki_parsed_record p;
  uint64_t seq, time;
} ship_item;

typedef struct ship_batch {
  ship_item items[PKID_FLEET_BATCH];
  size_t n;
  pki_journal_pos after; /* the position after the batch */
} ship_batch;

static void batch_clear(ship_batch *b) {
  for (size_t i = 0; i < b->n; i++) free(b->items[i].payload);
  b->n = 0;
}

typedef struct collect_ctx {
  ship_batch *b;
  const pki_journal_pos *pos;
} collect_ctx;

/* collect takes the records the inventory holds; the others (serial
 * blocks, CRLs) only move the cursor past them. */
static int collect(void *ctx, const pki_journal_record *r, pki_err *err) {
  ship_batch *b = ctx;
  if (r->type != PKI_REC_ISSUE && r->type != PKI_REC_REVOKE && r->type != PKI_REC_TOKEN) {
    return 1;
  }
  ship_item *it = &b->items[b->n];
  it->payload = malloc(r->len > 0 ? r->len : 1);
  if (it->payload == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  memcpy(it->payload, r->payload, r->len);
  pki_journal_record copy = *r;
  copy.payload = it->payload;
  if (!pki_record_parse(&copy, &it->p, err)) {
    free(it->payload);
    return 0;
  }
  /* What this node learnt from the fleet (follow.h) is in PostgreSQL
   * already, as its node shipped it. */
  if (it->p.identity.len >= sizeof(PKID_FLEET_WHO) - 1 &&
      memcmp(it->p.identity.data, PKID_FLEET_WHO, sizeof(PKID_FLEET_WHO) - 1) == 0) {
    free(it->payload);
    return 1;
  }
  it->seq = r->seq;
  it->time = r->time;
  b->n++;
  return 1;
}

/* A statement in the pipeline, with its parameters. */
typedef struct stmt {
  const char *sql;
  int n;
  const char *values[12];
  int lengths[12], formats[12];
  char text[12][32];
} stmt;

static void text_param(stmt *s, int i, uint64_t v) {
  snprintf(s->text[i], sizeof(s->text[i]), "%" PRIu64, v);
  s->values[i] = s->text[i];
  s->formats[i] = 0;
  s->lengths[i] = 0;
}

/* bin_param passes octets as they are: for bytea, and for text columns,
 * whose binary form is the string (so no NUL is needed). */
static void bin_param(stmt *s, int i, const uint8_t *data, size_t len) {
  s->values[i] = len > 0 ? (const char *)data : "";
  s->lengths[i] = (int)len;
  s->formats[i] = 1;
}

/* issuer_node is the node whose serial this is (lib/serial.h: 0x01, the
 * node in two octets, ...): 0 for the ceremonies' certificates, which
 * every node imports; the shipping node for a serial of another shape. */
static uint64_t issuer_node(const pkid_fleet *f, const pki_serial *s) {
  if (s->len == PKI_SERIAL_LEN && s->bytes[0] == 0x01) {
    return (uint64_t)s->bytes[1] << 8 | s->bytes[2];
  }
  return f->o.node;
}

static void item_stmt(const pkid_fleet *f, const ship_item *it, stmt *s) {
  static const uint8_t kServer[] = "server", kClient[] = "client";
  const pki_parsed_record *p = &it->p;
  memset(s, 0, sizeof(*s));
  switch (p->type) {
    case PKI_REC_ISSUE:
      s->sql =
          "INSERT INTO pkid_certificates (serial, node_id, journal_seq, ca, service, identity,"
          " usage, not_before, not_after, key_sha256, der, issued_at) VALUES ($1, $2, $3, $4,"
          " $5, $6, $7, to_timestamp($8::float8), to_timestamp($9::float8), $10, $11,"
          " to_timestamp($12::float8 / 1000)) ON CONFLICT (serial) DO NOTHING";
      s->n = 12;
      bin_param(s, 0, p->serial.bytes, p->serial.len);
      text_param(s, 1, issuer_node(f, &p->serial));
      text_param(s, 2, it->seq);
      bin_param(s, 3, p->ca.data, p->ca.len);
      bin_param(s, 4, p->service.data, p->service.len);
      bin_param(s, 5, p->identity.data, p->identity.len);
      if (p->usage == PKI_USAGE_SERVER) bin_param(s, 6, kServer, 6);
      else bin_param(s, 6, kClient, 6);
      text_param(s, 7, p->not_before);
      text_param(s, 8, p->not_after);
      bin_param(s, 9, p->key_hash, 32);
      bin_param(s, 10, p->cert.data, p->cert.len);
      text_param(s, 11, it->time);
      break;
    case PKI_REC_REVOKE:
      s->sql =
          "INSERT INTO pkid_revocations (serial, reason, revoked_at, invalidity_date, identity,"
          " node_id, journal_seq) VALUES ($1, $2, to_timestamp($3::float8),"
          " CASE WHEN $4::float8 = 0 THEN NULL ELSE to_timestamp($4::float8) END, $5, $6, $7)"
          " ON CONFLICT (serial) DO UPDATE SET journal_seq = EXCLUDED.journal_seq"
          " WHERE pkid_revocations.journal_seq IS NULL"
          "  AND pkid_revocations.node_id = EXCLUDED.node_id";
      s->n = 7;
      bin_param(s, 0, p->serial.bytes, p->serial.len);
      text_param(s, 1, p->reason);
      text_param(s, 2, p->revoked_at);
      text_param(s, 3, p->invalidity_date);
      bin_param(s, 4, p->identity.data, p->identity.len);
      text_param(s, 5, f->o.node);
      text_param(s, 6, it->seq);
      break;
    default: /* PKI_REC_TOKEN */
      s->sql =
          "INSERT INTO pkid_tokens (id, node_id, used_at) VALUES ($1, $2,"
          " to_timestamp($3::float8 / 1000)) ON CONFLICT (id) DO NOTHING";
      s->n = 3;
      bin_param(s, 0, p->token_id, 32);
      text_param(s, 1, f->o.node);
      text_param(s, 2, it->time);
      break;
  }
}

static void cursor_stmt(const pkid_fleet *f, const pki_journal_pos *after, uint64_t durable,
                        stmt *s) {
  memset(s, 0, sizeof(*s));
  s->sql =
      "UPDATE pkid_nodes SET shipped_seq = $3, shipped_segment = $4, shipped_offset = $5,"
      " shipped_chain = $6, journal_seq = greatest(journal_seq, $7)"
      " WHERE node_id = $1 AND holder = $2";
  s->n = 7;
  text_param(s, 0, f->o.node);
  bin_param(s, 1, (const uint8_t *)f->holder, HOLDER_LEN);
  text_param(s, 2, after->next_seq - 1);
  text_param(s, 3, after->segment);
  text_param(s, 4, after->offset);
  bin_param(s, 5, after->chain, PKI_JOURNAL_HASH_LEN);
  text_param(s, 6, durable);
}

/* send_batch sends BEGIN, the batch's inserts, the cursor's update and
 * COMMIT in one pipeline (one round trip), and reads every result. A
 * failed statement aborts the transaction, so the cursor moves exactly
 * when the rows are in. |*moved| says the cursor's row was updated (0: our
 * lease is gone). */
static int send_batch(pkid_fleet *f, const ship_batch *b, uint64_t durable, int *moved,
                      pki_err *err) {
  PGconn *c = f->conn;
  *moved = 0;
  if (!PQenterPipelineMode(c)) {
    pkid_pg_error(err, c, PKI_ERR_UNAVAILABLE, PQerrorMessage(c));
    return 0;
  }
  size_t num = b->n + 3, cursor_at = b->n + 1;
  int sent = PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
  stmt s;
  for (size_t i = 0; sent && i < b->n; i++) {
    item_stmt(f, &b->items[i], &s);
    sent = PQsendQueryParams(c, s.sql, s.n, NULL, s.values, s.lengths, s.formats, 0);
  }
  if (sent) {
    cursor_stmt(f, &b->after, durable, &s);
    sent = PQsendQueryParams(c, s.sql, s.n, NULL, s.values, s.lengths, s.formats, 0);
  }
  sent = sent && PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) &&
         PQpipelineSync(c);
  int ok = sent;
  if (!sent) pkid_pg_error(err, c, PKI_ERR_UNAVAILABLE, PQerrorMessage(c));
  for (size_t i = 0; sent && i < num; i++) {
    PGresult *r = PQgetResult(c);
    if (r == NULL) { /* the connection broke */
      if (ok) pkid_pg_error(err, c, PKI_ERR_UNAVAILABLE, PQerrorMessage(c));
      ok = 0;
      break;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && ok) {
      pkid_pg_error(err, c, PKI_ERR_INTERNAL,
               st == PGRES_PIPELINE_ABORTED ? "pipeline aborted" : PQresultErrorMessage(r));
      ok = 0;
    }
    if (i == cursor_at && st == PGRES_COMMAND_OK) *moved = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    PGresult *end = PQgetResult(c); /* NULL: the end of this statement's results */
    PQclear(end);
  }
  /* The sync's own result, then out of pipeline mode. */
  for (int i = 0; sent && i < 4; i++) {
    PGresult *r = PQgetResult(c);
    if (r == NULL) continue;
    int sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
    PQclear(r);
    if (sync) break;
  }
  if (!PQexitPipelineMode(c) && ok) {
    pkid_pg_error(err, c, PKI_ERR_UNAVAILABLE, PQerrorMessage(c));
    ok = 0;
  }
  return ok;
}

/* ship_once reads up to a batch of durable records from the cursor and
 * ships them; |*shipped| counts the journal records passed (any type). */
static int ship_once(pkid_fleet *f, ship_batch *b, uint64_t *shipped, pki_err *err) {
  pthread_mutex_lock(&f->mu);
  pki_journal_pos end = f->end;
  pthread_mutex_unlock(&f->mu);
  *shipped = 0;
  if (f->pos.next_seq >= end.next_seq) return 1;
  b->n = 0;
  b->after = f->pos;
  size_t n = 0;
  /* At most a batch of records of any kind, so a batch holds at most
   * PKID_FLEET_BATCH items. */
  int ok = pki_journal_tail_read(f->o.journal_dir, &b->after, &end, PKID_FLEET_BATCH, collect, b,
                                 &n, err);
  if (!ok || b->after.next_seq == f->pos.next_seq) {
    batch_clear(b);
    return ok;
  }
  int moved = 0;
  ok = send_batch(f, b, end.next_seq - 1, &moved, err);
  batch_clear(b);
  if (!ok) return 0;
  if (!moved) {
    PKI_ERR(err, PKI_ERR_EXISTS, "node id %s is no longer this node's", f->node_text);
    return 0;
  }
  *shipped = b->after.next_seq - f->pos.next_seq;
  f->pos = b->after;
  return 1;
}

/* ---- claims (the committer's) ---- */

/* Claims wait this long for PostgreSQL: the committer holds every commit
 * meanwhile, so a database that stops answering must fail them soon. */
#define CLAIM_CONNECT_S "2"
#define CLAIM_STATEMENT_MS "2000"

/* claim_exec runs one claim statement on the committer's connection,
 * connecting first if need be, and once more on a fresh connection when
 * the old one had died since the last claim (PostgreSQL restarted, or
 * failed over to a standby). */
static PGresult *claim_exec(pkid_fleet *f, const char *sql, int n, const char *const *values,
                            const int *lengths, const int *formats, pki_err *err) {
  for (int attempt = 0; attempt < 2; attempt++) {
    int fresh = f->claim_conn == NULL;
    if (fresh) {
      f->claim_conn = pkid_pg_connect(f->o.conninfo, CLAIM_CONNECT_S, CLAIM_STATEMENT_MS, err);
      if (f->claim_conn == NULL) return NULL;
    }
    pki_err_clear(err);
    PGresult *r = pkid_pg_exec(f->claim_conn, sql, n, values, lengths, formats, err);
    if (r != NULL || PQstatus(f->claim_conn) == CONNECTION_OK) return r;
    PQfinish(f->claim_conn);
    f->claim_conn = NULL;
    if (fresh) return NULL;
  }
  return NULL;
}

int pkid_fleet_claim(void *ctx, const pkid_record *rec, pki_err *err) {
  pkid_fleet *f = ctx;
  if (!atomic_load(&f->connected)) {
    /* The shipper knows: do not hold the commit for a connect timeout. */
    PKI_ERR(err, PKI_ERR_UNAVAILABLE,
            "the fleet's PostgreSQL is unreachable: %s needs it (issuance without a token "
            "goes on); try again, or on another node",
            rec->type == PKI_REC_REVOKE ? "a revocation" : "a bootstrap token");
    return 0;
  }
  stmt s;
  memset(&s, 0, sizeof(s));
  if (rec->type == PKI_REC_REVOKE) {
    /* A serial revoked already (by any node) stays as the fleet first
     * had it: the insert does nothing, and the revocation stands. */
    s.sql =
        "INSERT INTO pkid_revocations (serial, reason, revoked_at, invalidity_date, identity,"
        " node_id) VALUES ($1, $2, to_timestamp($3::float8),"
        " CASE WHEN $4::float8 = 0 THEN NULL ELSE to_timestamp($4::float8) END, $5, $6)"
        " ON CONFLICT (serial) DO NOTHING";
    s.n = 6;
    bin_param(&s, 0, rec->serial.bytes, rec->serial.len);
    text_param(&s, 1, rec->reason);
    text_param(&s, 2, (uint64_t)rec->revoked_at);
    text_param(&s, 3, (uint64_t)rec->invalidity_date);
    bin_param(&s, 4, (const uint8_t *)rec->identity, strlen(rec->identity));
    text_param(&s, 5, f->o.node);
    PGresult *r = claim_exec(f, s.sql, s.n, s.values, s.lengths, s.formats, err);
    if (r == NULL) {
      pki_err_prefix(err, "the revocation could not be recorded for the fleet: ");
      return 0;
    }
    PQclear(r);
    return 1;
  }
  /* A bootstrap token: the unique key refuses its second use, whichever
   * node saw the first. */
  s.sql =
      "INSERT INTO pkid_tokens (id, node_id, used_at, claimed_at) VALUES ($1, $2, now(), now())"
      " ON CONFLICT (id) DO NOTHING RETURNING node_id";
  s.n = 2;
  bin_param(&s, 0, rec->token_id, sizeof(rec->token_id));
  text_param(&s, 1, f->o.node);
  PGresult *r = claim_exec(f, s.sql, s.n, s.values, s.lengths, s.formats, err);
  if (r == NULL) {
    pki_err_prefix(err, "the bootstrap token could not be claimed for the fleet: ");
    return 0;
  }
  int claimed = PQntuples(r) == 1;
  PQclear(r);
  if (!claimed) {
    PKI_ERR(err, PKI_ERR_AUTH, "bootstrap token already used (on a node of the fleet)");
    return 0;
  }
  return 1;
}

/* ---- the thread ---- */

static void set_metrics(pkid_fleet *f) {
  pthread_mutex_lock(&f->mu);
  uint64_t end = f->end.next_seq;
  pthread_mutex_unlock(&f->mu);
  uint64_t lag = end > f->pos.next_seq ? end - f->pos.next_seq : 0;
  atomic_store(&f->lag, lag);
  pkid_metrics_fleet(atomic_load(&f->connected), lag, 0);
}

/* fail_connection drops the connection after an error and schedules the
 * next attempt with backoff; errors are logged at most once a minute while
 * they last (and the first one always). */
static void fail_connection(pkid_fleet *f, const char *what, const pki_err *err) {
  uint64_t now = now_ms();
  if (atomic_load(&f->connected) || now - f->last_error_ms >= 60000) {
    pki_log("warn", "fleet_unavailable", "during", what, "error", err->msg, NULL);
    f->last_error_ms = now;
  }
  PQfinish(f->conn);
  f->conn = NULL;
  atomic_store(&f->connected, 0);
  f->retry_ms = f->retry_ms == 0 ? RETRY_MIN_MS : f->retry_ms * 2;
  if (f->retry_ms > RETRY_MAX_MS) f->retry_ms = RETRY_MAX_MS;
  f->next_connect_ms = now + f->retry_ms;
}

/* publish_checkpoint inserts the newest checkpoint the node signed, if
 * one waits; it stays waiting if the insert fails. */
static int publish_checkpoint(pkid_fleet *f, pki_err *err) {
  pthread_mutex_lock(&f->mu);
  char *text = f->checkpoint;
  size_t len = f->checkpoint_len;
  uint64_t seq = f->checkpoint_seq, ms = f->checkpoint_ms;
  f->checkpoint = NULL;
  pthread_mutex_unlock(&f->mu);
  if (text == NULL) return 1;
  stmt s;
  memset(&s, 0, sizeof(s));
  text_param(&s, 0, f->o.node);
  text_param(&s, 1, seq);
  text_param(&s, 2, ms);
  bin_param(&s, 3, (const uint8_t *)text, len);
  PGresult *r = pkid_pg_exec(f->conn,
                             "INSERT INTO pkid_checkpoints (node_id, seq, signed_at, text)"
                             " VALUES ($1, $2, to_timestamp($3::float8 / 1000), $4)"
                             " ON CONFLICT (node_id, seq) DO NOTHING",
                             4, s.values, s.lengths, s.formats, err);
  if (r == NULL) {
    pthread_mutex_lock(&f->mu);
    if (f->checkpoint == NULL) { /* none newer came meanwhile: retry this one */
      f->checkpoint = text;
      text = NULL;
    }
    pthread_mutex_unlock(&f->mu);
    free(text);
    return 0;
  }
  PQclear(r);
  free(text);
  return 1;
}

/* step does what is due: connect, renew, ship one batch. It returns 1
 * when it shipped something (more may be waiting). */
static int step(pkid_fleet *f, ship_batch *b) {
  pki_err err;
  pki_err_clear(&err);
  if (f->conn == NULL) {
    if (now_ms() < f->next_connect_ms) return 0;
    f->conn = pkid_pg_connect(f->o.conninfo, "5", "0", &err);
    /* take_lease, not a renewal: it reads the cursor back. The database
     * may not be the one shipped to before (a standby promoted after the
     * primary failed) and may lack the last batches; the cursor came with
     * them, so shipping resumes from what this database has. */
    if (f->conn == NULL || !take_lease(f, &err)) {
      if (err.code == PKI_ERR_EXISTS) goto lost;
      fail_connection(f, "connect", &err);
      return 0;
    }
    atomic_store(&f->connected, 1);
    f->retry_ms = 0;
    pki_log("info", "fleet_connected", "node", f->node_text, NULL);
  }
  if (now_ms() >= f->next_renew_ms && !renew_lease(f, &err)) {
    if (err.code == PKI_ERR_EXISTS) goto lost;
    fail_connection(f, "renew", &err);
    return 0;
  }
  if (!publish_checkpoint(f, &err)) {
    fail_connection(f, "checkpoint", &err);
    return 0;
  }
  uint64_t shipped = 0;
  if (!ship_once(f, b, &shipped, &err)) {
    if (err.code == PKI_ERR_EXISTS) goto lost;
    if (PQstatus(f->conn) == CONNECTION_OK && err.code == PKI_ERR_INVALID) {
      /* The journal does not read back: not PostgreSQL's fault, and not
       * fixed by retrying soon. */
      pki_log("error", "fleet_ship_failed", "error", err.msg, NULL);
      f->next_renew_ms = now_ms();
      return 0;
    }
    fail_connection(f, "ship", &err);
    return 0;
  }
  if (shipped > 0) pkid_metrics_fleet(1, atomic_load(&f->lag), shipped);
  return shipped > 0;
lost:
  pki_log("error", "fleet_lease_lost", "node", f->node_text, "error", err.msg, NULL);
  PQfinish(f->conn);
  f->conn = NULL;
  atomic_store(&f->connected, 0);
  if (f->o.on_lost != NULL) f->o.on_lost(f->o.on_lost_ctx);
  pthread_mutex_lock(&f->mu);
  f->stop = 1;
  pthread_mutex_unlock(&f->mu);
  return 0;
}

static void *run(void *arg) {
  pthread_setname_np(pthread_self(), "pkid-fleet"); /* top -H, perf */
  pkid_fleet *f = arg;
  ship_batch *b = malloc(sizeof(*b));
  if (b == NULL) return NULL;
  b->n = 0;
  for (;;) {
    int more = step(f, b);
    set_metrics(f);
    pthread_mutex_lock(&f->mu);
    if (f->stop) {
      pthread_mutex_unlock(&f->mu);
      break;
    }
    if (!more && f->end.next_seq == f->pos.next_seq) {
      /* Nothing to ship: sleep until a commit, a renewal or 200 ms. */
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_nsec += 200 * 1000000L;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&f->cond, &f->mu, &until);
    } else if (!more) {
      /* Behind but could not ship (disconnected): wait for the retry. */
      struct timespec ts = {0, 50 * 1000000L};
      pthread_mutex_unlock(&f->mu);
      nanosleep(&ts, NULL);
      continue;
    }
    pthread_mutex_unlock(&f->mu);
  }
  /* Stopping: ship what is durable, for a few seconds at most. */
  for (uint64_t until = now_ms() + STOP_SHIP_MS; f->conn != NULL && now_ms() < until;) {
    if (!step(f, b)) break;
  }
  set_metrics(f);
  free(b);
  return NULL;
}

/* ---- life ---- */

pkid_fleet *pkid_fleet_start(const pkid_fleet_options *o, const pki_journal_pos *end,
                             pki_err *err) {
  pkid_fleet *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  f->o = *o;
  if (f->o.lease_s == 0) f->o.lease_s = PKID_FLEET_LEASE_S;
  if (f->o.max_lag == 0) f->o.max_lag = PKID_FLEET_MAX_LAG;
  snprintf(f->node_text, sizeof(f->node_text), "%u", o->node);
  snprintf(f->lease_text, sizeof(f->lease_text), "%u", f->o.lease_s);
  if (gethostname(f->host, sizeof(f->host) - 1) != 0) snprintf(f->host, sizeof(f->host), "?");
  f->end = *end;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cond, NULL);
  if (!load_holder(f, err) || (f->conn = pkid_pg_connect(o->conninfo, "5", "0", err)) == NULL ||
      !migrate(f->conn, err) || !take_lease(f, err)) {
    pkid_fleet_stop(f);
    return NULL;
  }
  atomic_store(&f->connected, 1);
  char behind[24];
  snprintf(behind, sizeof(behind), "%" PRIu64,
           end->next_seq > f->pos.next_seq ? end->next_seq - f->pos.next_seq : 0);
  pki_log("info", "fleet_lease", "node", f->node_text, "holder", f->holder, "to_ship", behind,
          NULL);
  int rc = pthread_create(&f->thread, NULL, run, f);
  if (rc != 0) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "cannot start the fleet thread: %s", strerror(rc));
    pkid_fleet_stop(f);
    return NULL;
  }
  f->thread_started = 1;
  return f;
}

void pkid_fleet_durable(void *ctx, const pki_journal_pos *end) {
  pkid_fleet *f = ctx;
  pthread_mutex_lock(&f->mu);
  f->end = *end;
  pthread_cond_signal(&f->cond);
  pthread_mutex_unlock(&f->mu);
}

void pkid_fleet_checkpoint(pkid_fleet *f, const char *text, size_t len, uint64_t seq,
                           uint64_t time_ms) {
  char *copy = malloc(len > 0 ? len : 1);
  if (copy == NULL) return; /* the next one will do */
  memcpy(copy, text, len);
  pthread_mutex_lock(&f->mu);
  free(f->checkpoint);
  f->checkpoint = copy;
  f->checkpoint_len = len;
  f->checkpoint_seq = seq;
  f->checkpoint_ms = time_ms;
  pthread_cond_signal(&f->cond);
  pthread_mutex_unlock(&f->mu);
}

int pkid_fleet_ready(pkid_fleet *f) {
  return !atomic_load(&f->connected) || atomic_load(&f->lag) <= f->o.max_lag;
}

void pkid_fleet_stop(pkid_fleet *f) {
  if (f == NULL) return;
  if (f->thread_started) {
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
  }
  if (f->conn != NULL && PQstatus(f->conn) == CONNECTION_OK && f->thread_started) {
    /* Free the id at once: a replacement need not wait out the lease. */
    const char *const v[] = {f->node_text, f->holder};
    pki_err ignored;
    pki_err_clear(&ignored);
    PQclear(pkid_pg_exec(
        f->conn, "UPDATE pkid_nodes SET lease_until = now() WHERE node_id = $1 AND holder = $2", 2,
        v, NULL, NULL, &ignored));
  }
  PQfinish(f->conn);
  PQfinish(f->claim_conn);
  free(f->checkpoint);
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->mu);
  free(f);
}
