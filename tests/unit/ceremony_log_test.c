/* ceremony_log_test: lib/ceremony_log's one line format and its chain:
 * a line formats and parses back to the same entry, values that could
 * forge another field are refused, each line's hash is its own, and a log
 * with a line edited, removed, reordered or cut short does not read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/ceremony_log.h"
#include "lib/file.h"
#include "tests/unit/test.h"

static void entry(pki_ceremony_entry *e, const char *kind, const char *name) {
  memset(e, 0, sizeof(*e));
  snprintf(e->kind, sizeof(e->kind), "%s", kind);
  snprintf(e->ca, sizeof(e->ca), "root");
  snprintf(e->name, sizeof(e->name), "%s", name);
  snprintf(e->serial, sizeof(e->serial), "0a1b");
  snprintf(e->key, sizeof(e->key), "shares");
  snprintf(e->shares, sizeof(e->shares), "1:0011223344556677,3:8899aabbccddeeff");
  memset(e->sha256, 0x5a, sizeof(e->sha256));
  e->time = 1796281805;
}

/* temp_log gives a path to a log that does not exist yet. */
static void temp_log(char *path, size_t size) {
  char dir[] = "/tmp/ceremony_log_testXXXXXX";
  const char *tmp = getenv("TEST_TMPDIR");
  if (tmp != NULL) {
    snprintf(path, size, "%s/ceremony-%d-%ld.log", tmp, (int)getpid(), (long)random());
    return;
  }
  snprintf(path, size, "%s/ceremony.log", mkdtemp(dir));
}

static int read_count(const char *path, uint64_t *last_seq, pki_err *err) {
  pki_ceremony_entry last;
  int ok = pki_ceremony_log_read(path, NULL, NULL, &last, err);
  *last_seq = last.seq;
  return ok;
}

TEST(line_round_trip) {
  pki_ceremony_entry e, back;
  entry(&e, "intermediate", "agents-ca");
  e.seq = 7;
  char line[PKI_CEREMONY_LINE_MAX];
  size_t n = pki_ceremony_line_format(line, &e);
  REQUIRE(n > 0 && line[n - 1] == '\n');
  pki_err err;
  REQUIRE(pki_ceremony_line_parse(line, n - 1, &back, &err));
  CHECK(back.seq == 7 && back.time == e.time && strcmp(back.kind, "intermediate") == 0);
  CHECK(strcmp(back.name, "agents-ca") == 0 && strcmp(back.shares, e.shares) == 0);
  CHECK(memcmp(back.hash, e.hash, 32) == 0 && memcmp(back.sha256, e.sha256, 32) == 0);
  /* One octet changed anywhere before the hash: not its own hash. */
  line[30] = line[30] == '1' ? '2' : '1';
  CHECK(!pki_ceremony_line_parse(line, n - 1, &back, &err) && err.code == PKI_ERR_INVALID);
}

TEST(values_that_could_forge_a_field_are_refused) {
  pki_ceremony_entry e;
  char line[PKI_CEREMONY_LINE_MAX];
  entry(&e, "issue", "redis hash=00");
  CHECK(pki_ceremony_line_format(line, &e) == 0);
  entry(&e, "issue", "redis\nx");
  CHECK(pki_ceremony_line_format(line, &e) == 0);
  entry(&e, "wipe", "redis");
  CHECK(pki_ceremony_line_format(line, &e) == 0);
  entry(&e, "issue", "");
  CHECK(pki_ceremony_line_format(line, &e) == 0);
  entry(&e, "issue", "redis");
  snprintf(e.key, sizeof(e.key), "stolen");
  CHECK(pki_ceremony_line_format(line, &e) == 0);
}

TEST(append_chains_and_read_checks) {
  char path[512];
  temp_log(path, sizeof(path));
  pki_err err;
  uint64_t seq = 99;
  /* No log yet: empty. */
  REQUIRE(read_count(path, &seq, &err) && seq == 0);
  pki_ceremony_entry a, b, c;
  entry(&a, "root", "root");
  entry(&b, "crl", "root");
  entry(&c, "issue", "redis");
  REQUIRE(pki_ceremony_log_append(path, &a, &err));
  REQUIRE(pki_ceremony_log_append(path, &b, &err));
  REQUIRE(pki_ceremony_log_append(path, &c, &err));
  CHECK(a.seq == 1 && b.seq == 2 && c.seq == 3);
  CHECK(memcmp(b.prev, a.hash, 32) == 0 && memcmp(c.prev, b.hash, 32) == 0);
  REQUIRE(read_count(path, &seq, &err) && seq == 3);
  struct stat st;
  REQUIRE(stat(path, &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);

  uint8_t *text;
  size_t len;
  REQUIRE(pki_file_read(&text, &len, path, 1 << 20, &err));
  char *first_nl = memchr(text, '\n', len);
  char *second_nl = memchr(first_nl + 1, '\n', len - (size_t)(first_nl + 1 - (char *)text));
  size_t l1 = (size_t)(first_nl + 1 - (char *)text);
  size_t l2 = (size_t)(second_nl - first_nl);

  /* The middle line removed: entry 3 does not follow entry 1. */
  uint8_t *cut = malloc(len);
  memcpy(cut, text, l1);
  memcpy(cut + l1, text + l1 + l2, len - l1 - l2);
  REQUIRE(pki_file_write_atomic(path, cut, len - l2, 0644, &err));
  CHECK(!read_count(path, &seq, &err) && strstr(err.msg, "does not follow") != NULL);
  /* Cut in the middle of the last line. */
  REQUIRE(pki_file_write_atomic(path, text, len - 5, 0644, &err));
  CHECK(!read_count(path, &seq, &err) && strstr(err.msg, "partial line") != NULL);
  /* And a step refuses to append to it. */
  pki_ceremony_entry d;
  entry(&d, "token", "vault");
  CHECK(!pki_ceremony_log_append(path, &d, &err) && strstr(err.msg, "not appending") != NULL);
  /* The whole log back, untouched: it reads. */
  REQUIRE(pki_file_write_atomic(path, text, len, 0644, &err));
  CHECK(read_count(path, &seq, &err) && seq == 3);
  free(cut);
  free(text);
  unlink(path);
}

TEST(fingerprint_names_a_share) {
  char a[17], b[17];
  pki_ceremony_fingerprint(a, (const uint8_t *)"share one\n", 10);
  pki_ceremony_fingerprint(b, (const uint8_t *)"share two\n", 10);
  CHECK(strlen(a) == 16 && strcmp(a, b) != 0);
}

int main(void) {
  RUN(line_round_trip);
  RUN(values_that_could_forge_a_field_are_refused);
  RUN(append_chains_and_read_checks);
  RUN(fingerprint_names_a_share);
  return test_finish();
}
