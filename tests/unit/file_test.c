#include "lib/file.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/test.h"

static char tmp_root[PATH_MAX];

/* make_dir makes a fresh directory under $TEST_TMPDIR for one case. */
static void make_dir(char *out, size_t out_size) {
  static int counter;
  snprintf(out, out_size, "%s/case%d", tmp_root, ++counter);
  mkdir(out, 0700);
}

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  }
  closedir(d);
  return n;
}

static mode_t file_mode(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return (mode_t)-1;
  return st.st_mode & 07777;
}

TEST(write_then_read) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/a.txt", dir);
  pki_err err = {0};
  REQUIRE(pki_file_write_atomic(path, "hello\n", 6, 0644, &err));
  uint8_t *data = NULL;
  size_t len = 0;
  REQUIRE(pki_file_read(&data, &len, path, 1024, &err));
  CHECK(len == 6);
  CHECK(memcmp(data, "hello\n", 6) == 0);
  CHECK(data[6] == '\0');
  free(data);
}

TEST(overwrite_replaces_and_leaves_no_temp_files) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/b", dir);
  pki_err err = {0};
  REQUIRE(pki_file_write_atomic(path, "first version", 13, 0600, &err));
  REQUIRE(pki_file_write_atomic(path, "2nd", 3, 0600, &err));
  uint8_t *data = NULL;
  size_t len = 0;
  REQUIRE(pki_file_read(&data, &len, path, 1024, &err));
  CHECK(len == 3 && memcmp(data, "2nd", 3) == 0);
  free(data);
  CHECK(count_entries(dir) == 1);
}

TEST(mode_is_exact_whatever_the_umask) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/m", dir);
  pki_err err = {0};
  mode_t old = umask(077);
  CHECK(pki_file_write_atomic(path, "x", 1, 0644, &err));
  CHECK(file_mode(path) == 0644);
  umask(0);
  CHECK(pki_file_write_atomic(path, "x", 1, 0600, &err));
  CHECK(file_mode(path) == 0600);
  umask(old);
}

TEST(write_empty_and_read_empty) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/empty", dir);
  pki_err err = {0};
  REQUIRE(pki_file_write_atomic(path, "", 0, 0644, &err));
  uint8_t *data = NULL;
  size_t len = 99;
  REQUIRE(pki_file_read(&data, &len, path, 0, &err));
  CHECK(len == 0);
  CHECK(data != NULL && data[0] == '\0');
  free(data);
}

TEST(write_large) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/large", dir);
  size_t n = 3 * 1024 * 1024 + 7;
  uint8_t *buf = malloc(n);
  REQUIRE(buf != NULL);
  for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(i * 7);
  pki_err err = {0};
  CHECK(pki_file_write_atomic(path, buf, n, 0644, &err));
  uint8_t *data = NULL;
  size_t len = 0;
  CHECK(pki_file_read(&data, &len, path, n, &err));
  CHECK(len == n && data != NULL && memcmp(data, buf, n) == 0);
  free(data);
  free(buf);
}

TEST(write_into_missing_directory_fails) {
  char dir[PATH_MAX], path[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/no/such/file", dir);
  pki_err err = {0};
  CHECK(!pki_file_write_atomic(path, "x", 1, 0644, &err));
  CHECK(err.code == PKI_ERR_IO);
  CHECK(strstr(err.msg, path) != NULL);
  CHECK(strstr(err.msg, "No such file") != NULL);
}

TEST(write_bad_names) {
  pki_err err = {0};
  CHECK(!pki_file_write_atomic("", "x", 1, 0644, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(!pki_file_write_atomic("/tmp/dir/", "x", 1, 0644, &err));
  CHECK(err.code == PKI_ERR_INVALID);
}

TEST(read_missing_is_not_found) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/missing", dir);
  pki_err err = {0};
  uint8_t *data = (uint8_t *)1;
  size_t len = 1;
  CHECK(!pki_file_read(&data, &len, path, 10, &err));
  CHECK(err.code == PKI_ERR_NOT_FOUND);
  CHECK(strstr(err.msg, path) != NULL);
  CHECK(data == NULL && len == 0);
}

TEST(read_too_large_is_invalid) {
  char dir[PATH_MAX], path[PATH_MAX + 16];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/big", dir);
  pki_err err = {0};
  REQUIRE(pki_file_write_atomic(path, "0123456789", 10, 0644, &err));
  uint8_t *data = NULL;
  size_t len = 0;
  CHECK(!pki_file_read(&data, &len, path, 9, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(data == NULL);
  /* Exactly at the limit is fine. */
  CHECK(pki_file_read(&data, &len, path, 10, &err));
  CHECK(len == 10);
  free(data);
}

TEST(read_directory_is_invalid) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  pki_err err = {0};
  uint8_t *data = NULL;
  size_t len = 0;
  CHECK(!pki_file_read(&data, &len, dir, 10, &err));
  CHECK(err.code == PKI_ERR_INVALID);
}

TEST(mkdirs_nested_and_existing) {
  char dir[PATH_MAX], path[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/a/b//c/", dir);
  pki_err err = {0};
  CHECK(pki_mkdirs(path, 0750, &err));
  snprintf(path, sizeof(path), "%s/a/b/c", dir);
  struct stat st;
  CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
  /* Again: everything exists, which is fine. */
  CHECK(pki_mkdirs(path, 0750, &err));
  CHECK(!pki_mkdirs("", 0750, &err));
  CHECK(err.code == PKI_ERR_INVALID);
}

TEST(mkdirs_through_a_file_fails) {
  char dir[PATH_MAX], path[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/f", dir);
  pki_err err = {0};
  REQUIRE(pki_file_write_atomic(path, "x", 1, 0644, &err));
  CHECK(!pki_mkdirs(path, 0750, &err));
  CHECK(err.code == PKI_ERR_IO);
  snprintf(path, sizeof(path), "%s/f/g", dir);
  CHECK(!pki_mkdirs(path, 0750, &err));
  CHECK(err.code == PKI_ERR_IO);
}

TEST(exists) {
  char dir[PATH_MAX], path[PATH_MAX + 16], link[PATH_MAX + 16];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/e", dir);
  CHECK(!pki_file_exists(path));
  pki_err err = {0};
  REQUIRE(pki_file_write_atomic(path, "x", 1, 0644, &err));
  CHECK(pki_file_exists(path));
  CHECK(pki_file_exists(dir));
  /* A dangling symbolic link is a name that exists. */
  snprintf(link, sizeof(link), "%s/dangling", dir);
  CHECK(symlink("nowhere", link) == 0);
  CHECK(pki_file_exists(link));
}

int main(void) {
  const char *base = getenv("TEST_TMPDIR");
  if (base == NULL || base[0] == '\0') base = "/tmp";
  snprintf(tmp_root, sizeof(tmp_root), "%s/file_test.XXXXXX", base);
  if (mkdtemp(tmp_root) == NULL) {
    perror("mkdtemp");
    return 2;
  }
  RUN(write_then_read);
  RUN(overwrite_replaces_and_leaves_no_temp_files);
  RUN(mode_is_exact_whatever_the_umask);
  RUN(write_empty_and_read_empty);
  RUN(write_large);
  RUN(write_into_missing_directory_fails);
  RUN(write_bad_names);
  RUN(read_missing_is_not_found);
  RUN(read_too_large_is_invalid);
  RUN(read_directory_is_invalid);
  RUN(mkdirs_nested_and_existing);
  RUN(mkdirs_through_a_file_fails);
  RUN(exists);
  return test_finish();
}
