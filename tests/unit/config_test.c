/* config_test: pkid's configuration file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/config.h"
#include "tests/unit/test.h"

static char g_path[512];

static void write_file(const char *text) {
  FILE *f = fopen(g_path, "w");
  fputs(text, f);
  fclose(f);
}

TEST(loads_every_key) {
  write_file("pki: /srv/pki\njournal: /srv/journal\nlisten: 127.0.0.1:1\n"
             "ocsp_listen: 127.0.0.1:2\nadmin_listen: 127.0.0.1:3\nacme_listen: 127.0.0.1:4\n"
             "passphrase_file: /p\ncatalog: /c.yaml\nnode: 7\nworkers: 3\n"
             "limits:\n  max_conns: 10\n  max_streams: 20\n  idle_timeout_ms: 30\n"
             "  handshake_timeout_ms: 40\n"
             "crl:\n  interval_s: 600\n  delta_interval_s: 60\n  validity_s: 7200\n"
             "  batch_ms: 250\n");
  pkid_config c;
  pki_err err;
  REQUIRE(pkid_config_load(&c, g_path, &err));
  CHECK(strcmp(c.pki, "/srv/pki") == 0 && strcmp(c.journal, "/srv/journal") == 0);
  CHECK(strcmp(c.listen, "127.0.0.1:1") == 0 && strcmp(c.ocsp_listen, "127.0.0.1:2") == 0);
  CHECK(strcmp(c.admin_listen, "127.0.0.1:3") == 0 && strcmp(c.catalog, "/c.yaml") == 0);
  CHECK(strcmp(c.acme_listen, "127.0.0.1:4") == 0);
  CHECK(strcmp(c.passphrase_file, "/p") == 0);
  CHECK(c.node == 7 && c.workers == 3 && c.max_conns == 10 && c.max_streams == 20);
  CHECK(c.idle_timeout_ms == 30 && c.handshake_timeout_ms == 40);
  CHECK(c.crl_interval_s == 600 && c.crl_delta_interval_s == 60 && c.crl_validity_s == 7200 &&
        c.crl_batch_ms == 250);
  pkid_config_cleanup(&c);
}

TEST(empty_file_sets_nothing) {
  write_file("");
  pkid_config c;
  pki_err err;
  REQUIRE(pkid_config_load(&c, g_path, &err));
  CHECK(c.pki == NULL && c.node == 0);
  pkid_config_cleanup(&c);
}

static void refused(const char *text, const char *words) {
  write_file(text);
  pkid_config c;
  pki_err err;
  pki_err_clear(&err);
  CHECK(!pkid_config_load(&c, g_path, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  if (strstr(err.msg, words) == NULL) {
    fprintf(stderr, "  message '%s' lacks '%s'\n", err.msg, words);
    CHECK(0);
  }
}

TEST(refusals) {
  refused("pki: /x\nbogus: 1\n", ":2: unknown key 'bogus'");
  refused("node: seven\n", ":1: 'node' must be a positive number");
  refused("node: 0\n", "positive number");
  refused("pki: [a, b]\n", "'pki' must be a value");
  refused("limits:\n  max_conns: -1\n", ":2:");
  refused("limits:\n  nope: 1\n", "unknown key 'nope'");
  /* The CRL keys belong under crl:, not limits: (nor the other way). */
  refused("limits:\n  interval_s: 60\n", "unknown key 'interval_s'");
  refused("crl:\n  max_conns: 1\n", "unknown key 'max_conns'");
  refused("pki: [unclosed\n", "config.yaml:");
  refused("- a\n- b\n", "expected a mapping");
}

int main(void) {
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(g_path, sizeof(g_path), "%s/config.yaml", tmp != NULL ? tmp : "/tmp");
  RUN(loads_every_key);
  RUN(empty_file_sets_nothing);
  RUN(refusals);
  return test_finish();
}
