/* restart_speed measures pkid's restart with many certificates: a status
 * index of N records is saved as a journal snapshot, then the store is
 * opened again (what pkid does at start) and timed. It also reports the
 * index's memory per certificate (resident set growth while building it).
 * Usage: restart_speed DIR [N, default 10000000]. DIR is created and
 * holds the journal; delete it afterwards. Prints one JSON object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/catalog.h"
#include "server/ca/ca.h"
#include "server/store/status.h"
#include "server/store/store.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* rss_bytes reads the resident set size from /proc/self/statm. */
static long rss_bytes(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  fclose(f);
  return resident * 4096;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: restart_speed DIR [N]\n");
    return 2;
  }
  const char *dir = argv[1];
  size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 10000000;
  pki_err err;
  pki_catalog *cat = pki_catalog_default(&err);
  if (cat == NULL) return 1;
  pkid_cas cas;
  memset(&cas, 0, sizeof(cas));

  long rss0 = rss_bytes();
  pkid_status *status = pkid_status_new(16);
  for (size_t i = 0; i < n; i++) {
    pkid_cert_record rec;
    memset(&rec, 0, sizeof(rec));
    pki_serial_make(&rec.serial, 1, i, &err);
    rec.ca = 0;
    rec.service = (uint16_t)(i % cat->num_services);
    rec.usage = 1;
    rec.not_before = 1790000000;
    rec.not_after = 1800000000;
    if (!pkid_status_put(status, &rec)) return 1;
  }
  long rss1 = rss_bytes();

  pkid_store store;
  if (!pkid_store_open(&store, dir, cat, &cas, status, &(pkid_store_options){.node = 1}, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  double t0 = now_s();
  if (!pkid_store_snapshot(&store, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  double t1 = now_s();
  pkid_store_close(&store);
  pkid_status_free(status);

  /* The restart: what pkid_store_open does at start, from the snapshot. */
  status = pkid_status_new(16);
  double t2 = now_s();
  if (!pkid_store_open(&store, dir, cat, &cas, status, &(pkid_store_options){.node = 1}, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  double t3 = now_s();
  size_t loaded = pkid_status_count(status);
  pkid_store_close(&store);
  pkid_status_free(status);
  pki_catalog_free(cat);
  printf("{\"certificates\": %zu, \"loaded\": %zu, \"snapshot_write_s\": %.2f, "
         "\"restart_s\": %.2f, \"index_bytes_per_certificate\": %.1f}\n",
         n, loaded, t1 - t0, t3 - t2, n > 0 ? (double)(rss1 - rss0) / (double)n : 0.0);
  return loaded == n ? 0 : 1;
}
