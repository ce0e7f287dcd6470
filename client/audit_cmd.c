/* audit_cmd.c: `pkictl audit` (see audit_cmd.h). */
#include "client/audit_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/mem.h>

#include "lib/audit.h"
#include "lib/err.h"
#include "lib/journal.h"
#include "lib/record.h"

static const char kUsage[] =
    "usage: pkictl audit DIR [--service NAME] [--identity URI] [--serial HEX]\n"
    "                        [--kind KIND] [--since TIME] [--until TIME] [--table]\n"
    "  KIND: issue, renew, revoke, token_used, crl, serial_block, refused, reload,\n"
    "        lb_rotation, ceremony, eab_created, eab_used, acme_account\n"
    "  TIME: 2026-12-02T18:00:00Z or Unix seconds\n";

static const char *const kKinds[] = {
    "issue",  "renew",       "revoke",   "token_used",  "crl",      "serial_block",
    "refused", "reload",     "lb_rotation", "ceremony", "eab_created", "eab_used",
    "acme_account"};

typedef struct query {
  pki_audit_filter filter;
  int table;
  uint64_t matched;
} query;

/* parse_time reads RFC 3339 UTC (seconds, "Z") or Unix seconds into Unix
 * milliseconds. */
static int parse_time(const char *s, uint64_t *out_ms) {
  char *end;
  unsigned long long secs = strtoull(s, &end, 10);
  if (*s != '\0' && *end == '\0') {
    *out_ms = (uint64_t)secs * 1000;
    return 1;
  }
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == NULL || strcmp(end, "Z") != 0) return 0;
  time_t t = timegm(&tm);
  if (t < 0) return 0;
  *out_ms = (uint64_t)t * 1000;
  return 1;
}

/* print_cell prints |len| octets of a name in a table cell: printable
 * ASCII as is, anything else as '?', "-" when empty. */
static void print_cell(const uint8_t *p, size_t len, int width) {
  if (len == 0) {
    printf("%-*s", width, "-");
    return;
  }
  for (size_t i = 0; i < len; i++) putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?');
  for (int pad = width - (int)len; pad > 0; pad--) putchar(' ');
}

static void print_row(const pki_journal_record *r, const pki_parsed_record *p) {
  char kind[32], serial[2 * PKI_SERIAL_MAX + 1], when[32];
  time_t secs = (time_t)(r->time / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (p->serial.len > 0) {
    pki_serial_to_hex(serial, &p->serial);
  } else {
    snprintf(serial, sizeof(serial), "-");
  }
  printf("%-8llu %-20s %-12s %-7s ", (unsigned long long)r->seq, when,
         pki_audit_kind_name(p, kind, sizeof(kind)), pki_audit_outcome(p));
  print_cell(p->identity.data, p->identity.len, 40);
  putchar(' ');
  print_cell(p->service.len > 0 ? p->service.data : p->ca.data,
             p->service.len > 0 ? p->service.len : p->ca.len, 18);
  printf(" %-34s", serial);
  if (p->type == PKI_REC_EVENT) {
    if (p->event_count > 1) printf(" x%u", p->event_count);
    putchar(' ');
    print_cell(p->detail.data, p->detail.len, 0);
  } else if (p->type == PKI_REC_CRL) {
    printf(" number %llu, %u entries", (unsigned long long)p->crl_number, p->crl_entries);
  } else if (p->type == PKI_REC_SERIAL_BLOCK) {
    printf(" node %u: %llu serials", p->block_node, (unsigned long long)p->block_count);
  }
  putchar('\n');
}

static int on_record(void *ctx, const pki_journal_record *r, pki_err *err) {
  query *q = ctx;
  pki_parsed_record p;
  if (!pki_record_parse(r, &p, err)) return 0;
  if (!pki_audit_match(&q->filter, r, &p)) return 1;
  q->matched++;
  if (q->table) {
    print_row(r, &p);
    return 1;
  }
  char *json;
  size_t len;
  if (!pki_audit_json(r, &p, &json, &len, err)) return 0;
  fwrite(json, 1, len, stdout);
  putchar('\n');
  OPENSSL_free(json);
  return 1;
}

static int usage(void) {
  fputs(kUsage, stderr);
  return 2;
}

int audit_cmd_main(int argc, char **argv) {
  query q;
  memset(&q, 0, sizeof(q));
  if (argc < 2 || argv[1][0] == '-') return usage();
  const char *dir = argv[1];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--table") == 0) {
      q.table = 1;
      continue;
    }
    if (i + 1 >= argc) return usage();
    const char *v = argv[++i];
    if (strcmp(a, "--service") == 0) {
      q.filter.service = v;
    } else if (strcmp(a, "--identity") == 0) {
      q.filter.identity = v;
    } else if (strcmp(a, "--serial") == 0) {
      pki_serial s;
      pki_err err;
      if (!pki_serial_from_hex(&s, v, &err)) {
        fprintf(stderr, "pkictl audit: --serial: %s\n", err.msg);
        return 2;
      }
      q.filter.serial = v;
    } else if (strcmp(a, "--kind") == 0) {
      size_t k = 0;
      while (k < sizeof(kKinds) / sizeof(kKinds[0]) && strcmp(kKinds[k], v) != 0) k++;
      if (k == sizeof(kKinds) / sizeof(kKinds[0])) {
        fprintf(stderr, "pkictl audit: unknown kind '%s'\n", v);
        return usage();
      }
      q.filter.kind = v;
    } else if (strcmp(a, "--since") == 0 || strcmp(a, "--until") == 0) {
      uint64_t *t = a[2] == 's' ? &q.filter.from_ms : &q.filter.to_ms;
      if (!parse_time(v, t)) {
        fprintf(stderr, "pkictl audit: %s: '%s' is not a time (2026-12-02T18:00:00Z)\n", a, v);
        return 2;
      }
    } else {
      return usage();
    }
  }
  if (q.table) {
    printf("%-8s %-20s %-12s %-7s %-40s %-18s %-34s %s\n", "SEQ", "TIME", "KIND", "OUTCOME",
           "IDENTITY", "SERVICE/CA", "SERIAL", "DETAIL");
  }
  pki_journal_verify_result *res = malloc(sizeof(*res));
  if (res == NULL) {
    fputs("pkictl audit: out of memory\n", stderr);
    return 1;
  }
  pki_err err;
  pki_err_clear(&err);
  int ok = pki_journal_verify_dir_each(dir, 0, on_record, &q, res, &err);
  fflush(stdout);
  if (!ok) {
    fprintf(stderr, "pkictl audit: %s\n", err.msg);
    free(res);
    return 1;
  }
  fprintf(stderr, "%llu events matched of %llu records (seq %llu to %llu), chain verified\n",
          (unsigned long long)q.matched, (unsigned long long)res->records,
          (unsigned long long)res->first_seq, (unsigned long long)res->last_seq);
  free(res);
  return 0;
}
