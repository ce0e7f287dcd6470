#include "client/fleet_cmd.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <postgresql/libpq-fe.h>

#include "client/cli.h"
#include "lib/catalog.h"
#include "lib/crl.h"
#include "lib/err.h"

static const char kFleetUsage[] =
    "usage: pkictl fleet status --postgres CONNINFO [--json]\n"
    "       pkictl inventory --postgres CONNINFO [--service S] [--expiring-within 7d]\n"
    "           [--node N] [--revoked | --valid] [--json]\n"
    "CONNINFO is a libpq connection string: 'host=... port=... dbname=... user=...'\n"
    "or postgresql://...; a password in it is never printed.\n";

/* The session only reads, and a query that hangs (a lock, a dying server)
 * ends instead of holding the operator's terminal. */
#define FLEET_SESSION_OPTIONS "-c default_transaction_read_only=on -c statement_timeout=30s"
#define FLEET_CONNECT_TIMEOUT_S "10"
#define FLEET_MAX_COLS 12
#define FLEET_CELL 256

static int usage_fail(const char *fmt, const char *arg) {
  fprintf(stderr, "pkictl: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", kFleetUsage);
  return 2;
}

static int fail(const pki_err *err) {
  fprintf(stderr, "pkictl: %s: %s\n", pki_err_code_name(err->code), err->msg);
  return 1;
}

/* one_line copies libpq's message (several lines, ending in a newline)
 * into |out| as one line, each run of white space one space. */
static void one_line(char *out, size_t size, const char *msg) {
  size_t n = 0;
  for (const char *p = msg; *p != '\0' && n + 1 < size; p++) {
    int space = *p == ' ' || *p == '\n' || *p == '\t';
    if (space && (n == 0 || out[n - 1] == ' ')) continue;
    out[n++] = space ? ' ' : *p;
  }
  while (n > 0 && out[n - 1] == ' ') n--;
  out[n] = '\0';
}

/* recognized_conninfo mirrors libpq's own test of whether a dbname value
 * is a connection string (a URI, or something with '='), rather than a
 * plain database name. */
static int recognized_conninfo(const char *s) {
  return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0 ||
         strchr(s, '=') != NULL;
}

/* conninfo_parses checks |conninfo| before libpq connects with it, since
 * libpq's parse error quotes the text, which may be the password. A plain
 * database name passes. */
static int conninfo_parses(const char *conninfo) {
  if (!recognized_conninfo(conninfo)) return 1;
  char *perr = NULL;
  PQconninfoOption *parsed = PQconninfoParse(conninfo, &perr);
  PQfreemem(perr);
  if (parsed == NULL) return 0;
  PQconninfoFree(parsed);
  return 1;
}

/* fleet_connect opens a read-only session: PKI_ERR_UNAVAILABLE, with
 * libpq's words (which never hold the password), when it cannot. */
static PGconn *fleet_connect(const char *conninfo, pki_err *err) {
  /* Keywords before dbname are defaults: what the conninfo says wins. */
  const char *const keys[] = {"connect_timeout", "application_name", "options", "dbname",
                              NULL};
  const char *const values[] = {FLEET_CONNECT_TIMEOUT_S, "pkictl", FLEET_SESSION_OPTIONS,
                                conninfo, NULL};
  PGconn *conn = PQconnectdbParams(keys, values, 1);
  if (conn == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    char msg[400];
    one_line(msg, sizeof(msg), PQerrorMessage(conn));
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "cannot connect to PostgreSQL: %s", msg);
    PQfinish(conn);
    return NULL;
  }
  return conn;
}

/* fleet_query runs |sql| with |num_params| text parameters (NULL for SQL
 * NULL) and returns its rows, or NULL: PKI_ERR_UNAVAILABLE when the
 * connection broke, PKI_ERR_INTERNAL when the server refused the query. */
static PGresult *fleet_query(PGconn *conn, const char *sql, int num_params,
                             const char *const *params, pki_err *err) {
  PGresult *res = PQexecParams(conn, sql, num_params, NULL, params, NULL, NULL, 0);
  if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) return res;
  char msg[400];
  one_line(msg, sizeof(msg), res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
  if (PQstatus(conn) != CONNECTION_OK) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "lost the connection to PostgreSQL: %s", msg);
  } else {
    PKI_ERR(err, PKI_ERR_INTERNAL, "query failed: %s", msg);
  }
  PQclear(res);
  return NULL;
}

/* has_schema fails with PKI_ERR_NOT_FOUND when the database has no
 * pkid_nodes table: pkid makes the schema when it first starts on it. */
static int has_schema(PGconn *conn, pki_err *err) {
  PGresult *res = fleet_query(conn, "SELECT to_regclass('pkid_nodes') IS NOT NULL", 0, NULL, err);
  if (res == NULL) return 0;
  int ok = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
  PQclear(res);
  if (!ok) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND,
            "no pkid schema in this database; start a pkid with --postgres first");
  }
  return ok;
}

/* ---- Output ------------------------------------------------------------ */

/* copy_text copies a database string into a cell. Control octets print as
 * '?': the text is whatever a node wrote, and this is a terminal. */
static void copy_text(char *out, size_t size, const char *s) {
  size_t n = 0;
  for (; s[n] != '\0' && n + 1 < size; n++) {
    unsigned char c = (unsigned char)s[n];
    out[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  out[n] = '\0';
}

static int64_t value_i64(const PGresult *res, int row, int col) {
  return (int64_t)strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static void format_epoch(char *out, size_t size, const PGresult *res, int row, int col) {
  if (PQgetisnull(res, row, col)) {
    snprintf(out, size, "-");
  } else {
    cli_format_time(out, size, value_i64(res, row, col));
  }
}

/* format_left writes a positive number of seconds as 45s, 4m05s, 3h10m or
 * 2d04h: a lease is seconds, a certificate days. */
static void format_left(char *out, size_t size, int64_t s) {
  if (s < 60) {
    snprintf(out, size, "%" PRId64 "s", s);
  } else if (s < 3600) {
    snprintf(out, size, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
  } else if (s < 86400) {
    snprintf(out, size, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
  } else {
    snprintf(out, size, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
  }
}

static void reason_name(char *out, size_t size, int reason) {
  const char *name = pki_crl_reason_name(reason);
  if (name != NULL) {
    snprintf(out, size, "%s", name);
  } else {
    snprintf(out, size, "reason-%d", reason);
  }
}

typedef void (*cell_fn)(char *out, size_t size, const PGresult *res, int row, int col);

/* print_table prints |res| as columns under |heads|, each as wide as its
 * widest cell; |cell| formats cell (row, col). Two passes over the rows,
 * so nothing is kept. */
static void print_table(FILE *out, const char *const *heads, int num_cols,
                        const PGresult *res, cell_fn cell) {
  size_t width[FLEET_MAX_COLS];
  char buf[FLEET_CELL];
  int rows = PQntuples(res);
  for (int c = 0; c < num_cols; c++) width[c] = strlen(heads[c]);
  for (int r = 0; r < rows; r++) {
    for (int c = 0; c < num_cols; c++) {
      cell(buf, sizeof(buf), res, r, c);
      if (strlen(buf) > width[c]) width[c] = strlen(buf);
    }
  }
  for (int r = -1; r < rows; r++) {
    for (int c = 0; c < num_cols; c++) {
      const char *text = heads[c];
      if (r >= 0) {
        cell(buf, sizeof(buf), res, r, c);
        text = buf;
      }
      if (c + 1 == num_cols) {
        fprintf(out, "%s\n", text);
      } else {
        fprintf(out, "%-*s  ", (int)width[c], text);
      }
    }
  }
}

/* json_string writes |s| as a JSON string (RFC 8259 section 7). */
static void json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    if (*p == '"' || *p == '\\') {
      fprintf(out, "\\%c", *p);
    } else if (*p < 0x20 || *p == 0x7f) {
      fprintf(out, "\\u%04x", *p);
    } else {
      fputc(*p, out);
    }
  }
  fputc('"', out);
}

/* json_field writes "name":value, where value is the column as a JSON
 * string, a number (|number|, the column's text), or null. */
static void json_field(FILE *out, const char *name, const PGresult *res, int row, int col,
                       int number) {
  fprintf(out, "\"%s\":", name);
  if (PQgetisnull(res, row, col)) {
    fputs("null", out);
  } else if (number) {
    fputs(PQgetvalue(res, row, col), out);
  } else {
    json_string(out, PQgetvalue(res, row, col));
  }
}

static void json_time(FILE *out, const char *name, const PGresult *res, int row, int col) {
  char t[64];
  fprintf(out, "\"%s\":", name);
  if (PQgetisnull(res, row, col)) {
    fputs("null", out);
  } else {
    cli_format_time(t, sizeof(t), value_i64(res, row, col));
    json_string(out, t);
  }
}

/* finish_output reports a failed write of stdout (a full disk, a closed
 * pipe) as a failure, not as a short answer. */
static int finish_output(FILE *out) {
  if (fflush(out) != 0 || ferror(out)) {
    fprintf(stderr, "pkictl: io: could not write the output\n");
    return 1;
  }
  return 0;
}

/* ---- fleet status ------------------------------------------------------ */

/* Certificates per issuing node; revoked ones are those among them, by
 * whichever node the revocation came through. A FULL JOIN keeps node ids
 * that hold certificates but no lease row. The lease's time left is the
 * database's clock against the time the node wrote. lag is never below 0:
 * journal_seq is the head a node last reported, and its shipping may have
 * moved past that since. */
static const char kStatusSql[] =
    "WITH counts AS ("
    " SELECT c.node_id, count(*) AS certificates, count(r.serial) AS revoked"
    " FROM pkid_certificates c LEFT JOIN pkid_revocations r ON r.serial = c.serial"
    " GROUP BY c.node_id)"
    " SELECT coalesce(n.node_id, k.node_id), n.host, n.holder, n.version,"
    " floor(extract(epoch FROM n.started_at))::bigint,"
    " floor(extract(epoch FROM n.lease_until - now()))::bigint,"
    " n.journal_seq, n.shipped_seq,"
    " CASE WHEN n.node_id IS NOT NULL THEN greatest(n.journal_seq - n.shipped_seq, 0) END,"
    " coalesce(k.certificates, 0), coalesce(k.revoked, 0),"
    " floor(extract(epoch FROM n.lease_until))::bigint"
    " FROM pkid_nodes n FULL JOIN counts k ON k.node_id = n.node_id"
    " ORDER BY 1";

enum {
  ST_NODE, ST_HOST, ST_HOLDER, ST_VERSION, ST_STARTED, ST_LEASE_LEFT, ST_JOURNAL,
  ST_SHIPPED, ST_LAG, ST_CERTS, ST_REVOKED, ST_LEASE_UNTIL,
};

/* The table's columns, in the query's column numbers. */
static const int kStatusCols[] = {ST_NODE, ST_HOST, ST_VERSION, ST_STARTED, ST_LEASE_LEFT,
                                  ST_JOURNAL, ST_SHIPPED, ST_LAG, ST_CERTS, ST_REVOKED,
                                  ST_HOLDER};
static const char *const kStatusHeads[] = {"NODE", "HOST", "VERSION", "STARTED", "LEASE",
                                           "JOURNAL", "SHIPPED", "LAG", "CERTS", "REVOKED",
                                           "HOLDER"};
#define STATUS_NUM_COLS ((int)(sizeof(kStatusCols) / sizeof(kStatusCols[0])))

static void status_cell(char *out, size_t size, const PGresult *res, int row, int c) {
  int col = kStatusCols[c];
  if (PQgetisnull(res, row, col)) {
    snprintf(out, size, "-");
  } else if (col == ST_STARTED) {
    format_epoch(out, size, res, row, col);
  } else if (col == ST_LEASE_LEFT) {
    int64_t left = value_i64(res, row, col);
    if (left <= 0) {
      snprintf(out, size, "expired");
    } else {
      format_left(out, size, left);
    }
  } else {
    copy_text(out, size, PQgetvalue(res, row, col));
  }
}

static void status_json(FILE *out, const PGresult *res) {
  fputs("{\"nodes\":[", out);
  for (int r = 0; r < PQntuples(res); r++) {
    fputs(r == 0 ? "{" : ",{", out);
    json_field(out, "node_id", res, r, ST_NODE, 1);
    fputc(',', out);
    json_field(out, "host", res, r, ST_HOST, 0);
    fputc(',', out);
    json_field(out, "holder", res, r, ST_HOLDER, 0);
    fputc(',', out);
    json_field(out, "version", res, r, ST_VERSION, 0);
    fputc(',', out);
    json_time(out, "started_at", res, r, ST_STARTED);
    fputc(',', out);
    json_time(out, "lease_until", res, r, ST_LEASE_UNTIL);
    fputc(',', out);
    if (PQgetisnull(res, r, ST_LEASE_LEFT)) {
      fputs("\"lease_left_s\":null,\"lease_expired\":null", out);
    } else {
      int64_t left = value_i64(res, r, ST_LEASE_LEFT);
      fprintf(out, "\"lease_left_s\":%" PRId64 ",\"lease_expired\":%s", left > 0 ? left : 0,
              left > 0 ? "false" : "true");
    }
    fputc(',', out);
    json_field(out, "journal_seq", res, r, ST_JOURNAL, 1);
    fputc(',', out);
    json_field(out, "shipped_seq", res, r, ST_SHIPPED, 1);
    fputc(',', out);
    json_field(out, "lag", res, r, ST_LAG, 1);
    fputc(',', out);
    json_field(out, "certificates", res, r, ST_CERTS, 1);
    fputc(',', out);
    json_field(out, "revoked", res, r, ST_REVOKED, 1);
    fputc('}', out);
  }
  fputs("]}\n", out);
}

/* ---- inventory --------------------------------------------------------- */

/* $1 service, $2 expiring within (seconds), $3 node id: NULL when not
 * asked for. $4: "all", "revoked" or "valid". */
static const char kInventorySql[] =
    "SELECT encode(c.serial, 'hex'), c.service, c.usage, c.ca,"
    " floor(extract(epoch FROM c.not_after))::bigint, c.node_id,"
    " CASE WHEN r.serial IS NOT NULL THEN 'revoked'"
    "  WHEN c.not_after <= now() THEN 'expired'"
    "  WHEN c.not_before > now() THEN 'not-yet-valid'"
    "  ELSE 'valid' END,"
    " r.reason, floor(extract(epoch FROM r.revoked_at))::bigint"
    " FROM pkid_certificates c LEFT JOIN pkid_revocations r ON r.serial = c.serial"
    " WHERE ($1::text IS NULL OR c.service = $1::text)"
    " AND ($2::bigint IS NULL OR (c.not_after > now()"
    "  AND c.not_after <= now() + $2::bigint * interval '1 second'))"
    " AND ($3::integer IS NULL OR c.node_id = $3::integer)"
    " AND ($4::text <> 'revoked' OR r.serial IS NOT NULL)"
    " AND ($4::text <> 'valid' OR (r.serial IS NULL AND c.not_before <= now()"
    "  AND c.not_after > now()))"
    " ORDER BY c.not_after, c.serial";

enum {
  INV_SERIAL, INV_SERVICE, INV_USAGE, INV_CA, INV_NOT_AFTER, INV_NODE, INV_STATE, INV_REASON,
  INV_REVOKED_AT,
};

static const char *const kInventoryHeads[] = {"SERIAL", "SERVICE", "USAGE", "CA",
                                              "NOT_AFTER", "NODE", "STATE", "REASON",
                                              "REVOKED_AT"};
#define INVENTORY_NUM_COLS ((int)(sizeof(kInventoryHeads) / sizeof(kInventoryHeads[0])))

static void inventory_cell(char *out, size_t size, const PGresult *res, int row, int col) {
  if (PQgetisnull(res, row, col)) {
    snprintf(out, size, "-");
  } else if (col == INV_NOT_AFTER || col == INV_REVOKED_AT) {
    format_epoch(out, size, res, row, col);
  } else if (col == INV_REASON) {
    reason_name(out, size, (int)value_i64(res, row, col));
  } else {
    copy_text(out, size, PQgetvalue(res, row, col));
  }
}

static void inventory_json(FILE *out, const PGresult *res) {
  fputs("{\"certificates\":[", out);
  for (int r = 0; r < PQntuples(res); r++) {
    fputs(r == 0 ? "{" : ",{", out);
    json_field(out, "serial", res, r, INV_SERIAL, 0);
    fputc(',', out);
    json_field(out, "service", res, r, INV_SERVICE, 0);
    fputc(',', out);
    json_field(out, "usage", res, r, INV_USAGE, 0);
    fputc(',', out);
    json_field(out, "ca", res, r, INV_CA, 0);
    fputc(',', out);
    json_time(out, "not_after", res, r, INV_NOT_AFTER);
    fputc(',', out);
    json_field(out, "node_id", res, r, INV_NODE, 1);
    fputc(',', out);
    json_field(out, "state", res, r, INV_STATE, 0);
    fputc(',', out);
    int revoked = !PQgetisnull(res, r, INV_REASON);
    fprintf(out, "\"revoked\":%s,\"reason\":", revoked ? "true" : "false");
    if (revoked) {
      char name[32];
      reason_name(name, sizeof(name), (int)value_i64(res, r, INV_REASON));
      json_string(out, name);
    } else {
      fputs("null", out);
    }
    fputc(',', out);
    json_time(out, "revoked_at", res, r, INV_REVOKED_AT);
    fputc('}', out);
  }
  fputs("]}\n", out);
}

/* ---- Options and the commands ------------------------------------------ */

typedef struct fleet_opts {
  const char *postgres;
  int json;
  const char *service;
  const char *expiring_within; /* seconds, as text, once parsed */
  const char *node;
  int revoked, valid;
  char within_s[24];
} fleet_opts;

enum { F_POSTGRES = 1000, F_JSON, F_SERVICE, F_EXPIRING, F_NODE, F_REVOKED, F_VALID };

static const struct option kStatusOptions[] = {
    {"postgres", required_argument, NULL, F_POSTGRES},
    {"json", no_argument, NULL, F_JSON},
    {NULL, 0, NULL, 0},
};

static const struct option kInventoryOptions[] = {
    {"postgres", required_argument, NULL, F_POSTGRES},
    {"json", no_argument, NULL, F_JSON},
    {"service", required_argument, NULL, F_SERVICE},
    {"expiring-within", required_argument, NULL, F_EXPIRING},
    {"node", required_argument, NULL, F_NODE},
    {"revoked", no_argument, NULL, F_REVOKED},
    {"valid", no_argument, NULL, F_VALID},
    {NULL, 0, NULL, 0},
};

/* parse_opts returns 0, or the exit status of a usage error. */
static int parse_opts(fleet_opts *o, int argc, char **argv, const struct option *options) {
  memset(o, 0, sizeof(*o));
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (c) {
      case F_POSTGRES: o->postgres = optarg; break;
      case F_JSON: o->json = 1; break;
      case F_SERVICE: o->service = optarg; break;
      case F_EXPIRING: {
        uint32_t s = 0;
        pki_err err;
        pki_err_clear(&err);
        if (!pki_duration_parse(&s, optarg, &err)) {
          return usage_fail("--expiring-within wants a duration like 7d, 24h, 90m or 3600s, "
                            "not '%s'", optarg);
        }
        snprintf(o->within_s, sizeof(o->within_s), "%" PRIu32, s);
        o->expiring_within = o->within_s;
        break;
      }
      case F_NODE: {
        uint64_t n = 0;
        if (!cli_parse_u64(&n, optarg, 0, 32767)) {
          return usage_fail("--node wants a node id, 0-32767, not '%s'", optarg);
        }
        o->node = optarg;
        break;
      }
      case F_REVOKED: o->revoked = 1; break;
      case F_VALID: o->valid = 1; break;
      default: return usage_fail("unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc) return usage_fail("unexpected argument '%s'", argv[optind]);
  if (o->postgres == NULL) return usage_fail("--postgres CONNINFO is required%s", "");
  if (!conninfo_parses(o->postgres)) {
    return usage_fail("--postgres is not a libpq connection string; it is not repeated here, "
                      "since it may hold a password%s", "");
  }
  if (o->revoked && o->valid) return usage_fail("--revoked and --valid exclude each other%s", "");
  return 0;
}

/* run_query connects, checks the schema and runs |sql|; NULL on failure,
 * with |*out_conn| closed. */
static PGresult *run_query(PGconn **out_conn, const char *conninfo, const char *sql,
                           int num_params, const char *const *params, pki_err *err) {
  *out_conn = fleet_connect(conninfo, err);
  if (*out_conn == NULL) return NULL;
  PGresult *res = NULL;
  if (has_schema(*out_conn, err)) res = fleet_query(*out_conn, sql, num_params, params, err);
  if (res == NULL) {
    PQfinish(*out_conn);
    *out_conn = NULL;
  }
  return res;
}

int fleet_cmd_main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "status") != 0) {
    return usage_fail("fleet takes status%s", "");
  }
  fleet_opts o;
  int rc = parse_opts(&o, argc - 1, argv + 1, kStatusOptions);
  if (rc != 0) return rc;
  pki_err err;
  pki_err_clear(&err);
  PGconn *conn = NULL;
  PGresult *res = run_query(&conn, o.postgres, kStatusSql, 0, NULL, &err);
  if (res == NULL) return fail(&err);
  if (o.json) {
    status_json(stdout, res);
  } else {
    print_table(stdout, kStatusHeads, STATUS_NUM_COLS, res, status_cell);
  }
  PQclear(res);
  PQfinish(conn);
  return finish_output(stdout);
}

int inventory_cmd_main(int argc, char **argv) {
  fleet_opts o;
  int rc = parse_opts(&o, argc, argv, kInventoryOptions);
  if (rc != 0) return rc;
  const char *const params[4] = {o.service, o.expiring_within, o.node,
                                 o.revoked ? "revoked" : o.valid ? "valid" : "all"};
  pki_err err;
  pki_err_clear(&err);
  PGconn *conn = NULL;
  PGresult *res = run_query(&conn, o.postgres, kInventorySql, 4, params, &err);
  if (res == NULL) return fail(&err);
  if (o.json) {
    inventory_json(stdout, res);
  } else {
    print_table(stdout, kInventoryHeads, INVENTORY_NUM_COLS, res, inventory_cell);
  }
  PQclear(res);
  PQfinish(conn);
  return finish_output(stdout);
}
