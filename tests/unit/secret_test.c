/* secret_test: which passphrase files lib/secret.h accepts: the reader's
 * own at 0600 or 0400; in systemd's $CREDENTIALS_DIRECTORY also group read
 * (the ACL mask systemd 254 shows there); nothing others can read. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/secret.h"
#include "tests/unit/test.h"

static char tmp_root[PATH_MAX];

static void put(const char *path, mode_t mode) {
  FILE *f = fopen(path, "w");
  if (f != NULL) {
    fputs("correct horse\n", f);
    fclose(f);
  }
  chmod(path, mode);
}

static int reads(const char *path, pki_err *err) {
  pki_secret s;
  pki_err_clear(err);
  int ok = pki_secret_read(&s, path, NULL, err);
  if (ok) ok = s.len == 13 && memcmp(s.bytes, "correct horse", 13) == 0;
  pki_secret_cleanup(&s);
  return ok;
}

TEST(own_private_files) {
  char p[PATH_MAX + 16];
  pki_err err;
  snprintf(p, sizeof(p), "%s/a", tmp_root);
  put(p, 0600);
  CHECK(reads(p, &err));
  put(p, 0400);
  CHECK(reads(p, &err));
  put(p, 0640);
  CHECK(!reads(p, &err) && err.code == PKI_ERR_DENIED);
  put(p, 0604);
  CHECK(!reads(p, &err) && err.code == PKI_ERR_DENIED);
}

TEST(credentials_directory) {
  char creds[PATH_MAX + 16], p[PATH_MAX + 32], sub[PATH_MAX + 32], outside[PATH_MAX + 32];
  pki_err err;
  snprintf(creds, sizeof(creds), "%s/creds", tmp_root);
  mkdir(creds, 0700);
  snprintf(p, sizeof(p), "%s/ca-passphrase", creds);
  snprintf(outside, sizeof(outside), "%s/outside", tmp_root);
  put(p, 0440);
  put(outside, 0440);
  /* Without the variable, group read is refused as anywhere else. */
  unsetenv("CREDENTIALS_DIRECTORY");
  CHECK(!reads(p, &err));
  setenv("CREDENTIALS_DIRECTORY", creds, 1);
  CHECK(reads(p, &err));
  CHECK(!reads(outside, &err));
  put(p, 0444); /* others read */
  CHECK(!reads(p, &err) && err.code == PKI_ERR_DENIED);
  put(p, 0460); /* group write */
  CHECK(!reads(p, &err));
  /* Only directly in it, not below. */
  snprintf(sub, sizeof(sub), "%s/d", creds);
  mkdir(sub, 0700);
  snprintf(sub, sizeof(sub), "%s/d/x", creds);
  put(sub, 0440);
  CHECK(!reads(sub, &err));
  unsetenv("CREDENTIALS_DIRECTORY");
}

int main(void) {
  snprintf(tmp_root, sizeof(tmp_root), "%s/secret_XXXXXX",
           getenv("TEST_TMPDIR") != NULL ? getenv("TEST_TMPDIR") : "/tmp");
  if (mkdtemp(tmp_root) == NULL) return 1;
  RUN(own_private_files);
  RUN(credentials_directory);
  return test_finish();
}
