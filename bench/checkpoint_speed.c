/* checkpoint_speed measures what a journal checkpoint costs pkid
 * (server/store/checkpoints.h): the Ed25519 signature of one checkpoint
 * (lib/checkpoint.h), its check, and a whole tick as pkid makes it, with
 * JOURNAL/checkpoint replaced atomically and the line appended to
 * checkpoints.log with an fdatasync, on this machine's disk. It prints one
 * JSON object.
 *
 * Usage: checkpoint_speed [PARENT_DIR [signatures, default 20000]]
 * The files go in a fresh directory under PARENT_DIR (default $TMPDIR or
 * /tmp), removed at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/checkpoint.h"
#include "server/store/checkpoints.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noreturn)) static void die(const char *what, const pki_err *err) {
  fprintf(stderr, "checkpoint_speed: %s: %s\n", what, err != NULL ? err->msg : "failed");
  exit(1);
}

int main(int argc, char **argv) {
  const char *parent = argc > 1 ? argv[1] : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  long n = argc > 2 ? atol(argv[2]) : 20000;
  if (n <= 0) n = 20000;
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s/checkpoint_speed.XXXXXX", parent);
  if (mkdtemp(dir) == NULL) die("mkdtemp", NULL);
  uint8_t seed[32] = {1};
  EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
  uint8_t raw_pub[32];
  size_t pub_len = sizeof(raw_pub);
  EVP_PKEY_get_raw_public_key(key, raw_pub, &pub_len);
  EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw_pub, pub_len);
  pki_err err;

  /* Signing and checking alone. */
  pki_checkpoint cp;
  memset(&cp, 0, sizeof(cp));
  snprintf(cp.origin, sizeof(cp.origin), "pkid node 1");
  cp.time_ms = 1796224000123;
  char *text = NULL;
  size_t len = 0;
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    cp.seq = (uint64_t)i + 1;
    free(text);
    if (!pki_checkpoint_sign(&text, &len, &cp, key, &err)) die("sign", &err);
  }
  double sign_s = now_s() - t0;
  pki_checkpoint parsed;
  t0 = now_s();
  for (long i = 0; i < n; i++) {
    if (!pki_checkpoint_parse(&parsed, (const uint8_t *)text, len, &err) ||
        !pki_checkpoint_verify(&parsed, pub, &err)) {
      die("verify", &err);
    }
  }
  double verify_s = now_s() - t0;

  /* Whole ticks, files included: each one due (one record per tick). */
  pkid_checkpoints_options o = {.journal_dir = dir, .origin = "pkid node 1", .key = key,
                                .interval_s = 1, .every_records = 1};
  pki_journal_pos end;
  memset(&end, 0, sizeof(end));
  end.next_seq = 1;
  pkid_checkpoints *c = pkid_checkpoints_new(&o, &end, &err);
  if (c == NULL) die("checkpoints", &err);
  int made = 0;
  long ticks = n < 500 ? n : 500;
  if (!pkid_checkpoints_tick(c, 1, &made, &err)) die("tick", &err); /* starts the clock */
  t0 = now_s();
  for (long i = 0; i < ticks; i++) {
    end.next_seq = (uint64_t)i + 2;
    pkid_checkpoints_durable(c, &end);
    if (!pkid_checkpoints_tick(c, 2 + (uint64_t)i, &made, &err) || !made) die("tick", &err);
  }
  double tick_s = now_s() - t0;
  pkid_checkpoints_free(c);
  char cmd[4200];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "checkpoint_speed: could not remove %s\n", dir);
  printf("{\"tool\": \"checkpoint_speed\", \"signatures\": %ld, \"text_bytes\": %zu, "
         "\"sign_us\": %.2f, \"parse_and_verify_us\": %.2f, \"ticks\": %ld, "
         "\"tick_with_files_us\": %.1f}\n",
         n, len, sign_s * 1e6 / (double)n, verify_s * 1e6 / (double)n, ticks,
         tick_s * 1e6 / (double)ticks);
  free(text);
  EVP_PKEY_free(pub);
  EVP_PKEY_free(key);
  return 0;
}
