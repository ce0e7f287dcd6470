/* pg.c: libpq for the fleet's threads (see pg.h). */
#include "server/fleet/pg.h"

#include <stdio.h>
#include <string.h>

void pkid_pg_error(pki_err *err, PGconn *c, pki_err_code code, const char *msg) {
  PKI_ERR(err, c == NULL || PQstatus(c) != CONNECTION_OK ? PKI_ERR_UNAVAILABLE : code,
          "PostgreSQL: %s", msg);
  size_t len = strlen(err->msg);
  if (len > 0 && err->msg[len - 1] == '\n') err->msg[len - 1] = '\0';
}

PGresult *pkid_pg_exec(PGconn *c, const char *sql, int n, const char *const *values,
                       const int *lengths, const int *formats, pki_err *err) {
  PGresult *r = PQexecParams(c, sql, n, NULL, values, lengths, formats, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  pkid_pg_error(err, c, PKI_ERR_INTERNAL, r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c));
  PQclear(r);
  return NULL;
}

int pkid_pg_script(PGconn *c, const char *sql, pki_err *err) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  if (!ok) {
    pkid_pg_error(err, c, PKI_ERR_INTERNAL,
                  r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c));
  }
  PQclear(r);
  return ok;
}

PGconn *pkid_pg_connect(const char *conninfo, const char *connect_s, const char *statement_ms,
                        pki_err *err) {
  char options[64];
  snprintf(options, sizeof(options), "-c statement_timeout=%s", statement_ms);
  const char *const keys[] = {"connect_timeout",  "tcp_user_timeout", "options",
                              "application_name", "dbname",           NULL};
  const char *const values[] = {connect_s, statement_ms, options, "pkid", conninfo, NULL};
  PGconn *c = PQconnectdbParams(keys, values, 1);
  if (c == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  if (PQstatus(c) != CONNECTION_OK) {
    pkid_pg_error(err, c, PKI_ERR_UNAVAILABLE, PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  return c;
}
