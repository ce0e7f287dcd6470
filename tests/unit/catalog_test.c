/* catalog_test.c: the built-in catalogue, and malformed catalogues each
 * refused with the right code, line and words. */
#include "lib/catalog.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/test.h"

/* A small valid catalogue. Malformed ones are made by replacing one of its
 * lines (numbered from 1 as in the comments) with other text. */
static const char *const kBase[] = {
    /*  1 */ "trust_domain: example.local",
    /*  2 */ "organization: Example",
    /*  3 */ "ocsp_url: http://127.0.0.1:8081/",
    /*  4 */ "cas:",
    /*  5 */ "  - name: root",
    /*  6 */ "    common_name: Example Root",
    /*  7 */ "    validity_days: 3650",
    /*  8 */ "  - name: issuing-ca",
    /*  9 */ "    parent: root",
    /* 10 */ "    common_name: Example Issuing CA",
    /* 11 */ "    validity_days: 365",
    /* 12 */ "    path_len: 0",
    /* 13 */ "    name_constraints:",
    /* 14 */ "      permitted:",
    /* 15 */ "        dns: [example.local]",
    /* 16 */ "        uri: [example.local]",
    /* 17 */ "        ip: [10.0.0.0/8]",
    /* 18 */ "services:",
    /* 19 */ "  - name: web",
    /* 20 */ "    ca: issuing-ca",
    /* 21 */ "    identity: spiffe://example.local/web",
    /* 22 */ "    dir: web",
    /* 23 */ "    names: {dns: [web.example.local], ip: [10.1.2.3]}",
    /* 24 */ "    certificates:",
    /* 25 */ "      - {usage: server, file: web.crt}",
};
#define BASE_LINES (sizeof(kBase) / sizeof(kBase[0]))

/* with_lines returns kBase with line |l1| replaced by |t1| and line |l2|
 * by |t2| (each may hold several lines, or be empty to drop the line; 0
 * replaces nothing). The caller frees the result. */
static char *with_lines(size_t l1, const char *t1, size_t l2, const char *t2) {
  size_t cap = 4096 + strlen(t1) + strlen(t2);
  char *out = malloc(cap);
  if (out == NULL) abort();
  out[0] = '\0';
  for (size_t i = 0; i < BASE_LINES; i++) {
    const char *l = kBase[i];
    if (i + 1 == l1) l = t1;
    if (i + 1 == l2) l = t2;
    if (l[0] == '\0') continue;
    strcat(out, l);
    strcat(out, "\n");
  }
  return out;
}

static char *with_line(size_t line, const char *text) {
  return with_lines(line, text, 0, "");
}

/* base_range returns lines |from| to |to| of kBase, then |tail|. */
static char *base_range(size_t from, size_t to, const char *tail) {
  char *out = malloc(4096 + strlen(tail));
  if (out == NULL) abort();
  out[0] = '\0';
  for (size_t i = from; i <= to && i <= BASE_LINES; i++) {
    strcat(out, kBase[i - 1]);
    strcat(out, "\n");
  }
  strcat(out, tail);
  return out;
}

static pki_catalog *load_text(const char *text, pki_err *err) {
  pki_err_clear(err);
  return pki_catalog_load_mem("t.yaml", text, strlen(text), err);
}

/* expect_fail loads |text| and checks that it fails with |code|, and that
 * the message starts with "t.yaml:<line>:" and contains |words|. */
static int expect_fail_text(const char *text, pki_err_code code, int line,
                            const char *words) {
  pki_err err;
  pki_catalog *cat = load_text(text, &err);
  char prefix[32];
  snprintf(prefix, sizeof(prefix), "t.yaml:%d:", line);
  int ok = cat == NULL && err.code == code &&
           strncmp(err.msg, prefix, strlen(prefix)) == 0 &&
           strstr(err.msg, words) != NULL;
  if (!ok) {
    fprintf(stderr, "  wanted %s \"%s...%s\", got %s: \"%s\"\n",
            pki_err_code_name(code), prefix, words,
            cat != NULL ? "success" : pki_err_code_name(err.code), err.msg);
  }
  pki_catalog_free(cat);
  return ok;
}

static int expect_fail(size_t replace, const char *text, int line,
                       const char *words) {
  char *doc = with_line(replace, text);
  int ok = expect_fail_text(doc, PKI_ERR_INVALID, line, words);
  free(doc);
  return ok;
}

static int expect_fail2(size_t l1, const char *t1, size_t l2, const char *t2,
                        int line, const char *words) {
  char *doc = with_lines(l1, t1, l2, t2);
  int ok = expect_fail_text(doc, PKI_ERR_INVALID, line, words);
  free(doc);
  return ok;
}

static int expect_ok(size_t replace, const char *text) {
  char *doc = with_line(replace, text);
  pki_err err;
  pki_catalog *cat = load_text(doc, &err);
  if (cat == NULL) fprintf(stderr, "  unexpected failure: %s\n", err.msg);
  free(doc);
  int ok = cat != NULL;
  pki_catalog_free(cat);
  return ok;
}

/* Line 25 followed by a second service; |extra| lines follow its name. */
#define SECOND_SERVICE(name, extra)                              \
  "      - {usage: server, file: web.crt}\n"                     \
  "  - name: " name "\n" extra

TEST(default_catalogue) {
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = pki_catalog_default(&err);
  if (cat == NULL) fprintf(stderr, "  %s\n", err.msg);
  REQUIRE(cat != NULL);
  CHECK(strcmp(cat->trust_domain, "cybersec-framework.local") == 0);
  CHECK(strcmp(cat->organization, "Cybersec Framework") == 0);
  CHECK(strcmp(cat->ocsp_url, "http://127.0.0.1:8081/") == 0);
  CHECK(strcmp(cat->crl_url, "http://127.0.0.1:8081/crl/") == 0);
  CHECK(strcmp(cat->ca_issuers_url, "http://127.0.0.1:8081/ca/") == 0);
  CHECK(cat->num_cas == 5);
  CHECK(cat->num_services == 13);

  const pki_catalog_ca *root = pki_catalog_root(cat);
  REQUIRE(root != NULL);
  CHECK(strcmp(root->name, "root") == 0);
  CHECK(root->parent == NULL);
  CHECK(root->validity_days == 7300);
  CHECK(root->crl_validity_days == 365);
  CHECK(root->key_type == PKI_KEY_ECDSA_P256);
  /* What each CA publishes, where: its name on the bases. */
  CHECK(strcmp(root->crl_url, "http://127.0.0.1:8081/crl/root.crl") == 0);
  CHECK(strcmp(root->delta_crl_url, "http://127.0.0.1:8081/crl/root-delta.crl") == 0);
  CHECK(strcmp(root->cert_url, "http://127.0.0.1:8081/ca/root.crt") == 0);
  const pki_catalog_ca *agents_ca = pki_catalog_find_ca(cat, "agents-ca");
  REQUIRE(agents_ca != NULL);
  CHECK(strcmp(agents_ca->crl_url, "http://127.0.0.1:8081/crl/agents-ca.crl") == 0);
  CHECK(strcmp(agents_ca->delta_crl_url,
               "http://127.0.0.1:8081/crl/agents-ca-delta.crl") == 0);
  CHECK(strcmp(agents_ca->cert_url, "http://127.0.0.1:8081/ca/agents-ca.crt") == 0);

  const char *intermediates[] = {"infrastructure-ca", "agents-ca",
                                 "external-ca"};
  for (size_t i = 0; i < 3; i++) {
    const pki_catalog_ca *ca = pki_catalog_find_ca(cat, intermediates[i]);
    REQUIRE(ca != NULL);
    CHECK(strcmp(ca->parent, "root") == 0);
    CHECK(ca->validity_days == 1825);
    CHECK(ca->num_permitted == 3);
    CHECK(ca->num_excluded == 0);
  }
  CHECK(pki_catalog_find_ca(cat, "infrastructure-ca")->path_len == 1);
  CHECK(pki_catalog_find_ca(cat, "agents-ca")->path_len == 0);
  const pki_catalog_ca *lb_ca = pki_catalog_find_ca(cat, "load-balancer-ca");
  REQUIRE(lb_ca != NULL);
  CHECK(strcmp(lb_ca->parent, "infrastructure-ca") == 0);
  CHECK(lb_ca->path_len == 0);
  /* Root first, every CA after its parent. */
  CHECK(cat->cas[0].parent == NULL);
  CHECK(lb_ca > pki_catalog_find_ca(cat, "infrastructure-ca"));

  const char *agents[] = {"pki-agent", "security-agent", "iam-agent",
                          "cissp-training-agent", "audit-agent"};
  for (size_t i = 0; i < 5; i++) {
    const pki_catalog_service *s = pki_catalog_find_service(cat, agents[i]);
    REQUIRE(s != NULL);
    CHECK(strcmp(s->ca, "agents-ca") == 0);
    char want[128];
    snprintf(want, sizeof(want), "agents/%s", agents[i]);
    CHECK(strcmp(s->dir, want) == 0);
    snprintf(want, sizeof(want), "spiffe://cybersec-framework.local/agents/%s",
             agents[i]);
    CHECK(strcmp(s->identity, want) == 0);
    CHECK(pki_catalog_find_identity(cat, want) == s);
    CHECK(s->num_certs == 2);
    CHECK(s->certs[0].usage == PKI_USAGE_SERVER);
    CHECK(s->certs[1].usage == PKI_USAGE_CLIENT);
  }
  const char *infra[] = {"vault", "postgres", "redis"};
  for (size_t i = 0; i < 3; i++) {
    const pki_catalog_service *s = pki_catalog_find_service(cat, infra[i]);
    REQUIRE(s != NULL);
    CHECK(strcmp(s->ca, "infrastructure-ca") == 0);
    char want[128];
    snprintf(want, sizeof(want), "infrastructure/%s", infra[i]);
    CHECK(strcmp(s->dir, want) == 0);
    snprintf(want, sizeof(want), "%s-server.crt", infra[i]);
    CHECK(strcmp(s->certs[0].file, want) == 0);
    CHECK(s->validity_s == 30u * 86400u);
  }

  const pki_catalog_service *pki = pki_catalog_find_service(cat, "pki-agent");
  CHECK(pki->validity_s == 45u * 86400u);
  CHECK(pki->rotation_s == 30u * 86400u);
  CHECK(pki->permissions == PKI_PERM_ADMIN);
  CHECK(strcmp(pki->certs[0].file, "pki-agent-server.crt") == 0);
  CHECK(pki->key_type == PKI_KEY_ECDSA_P256 && pki->key_bits == 256);
  const pki_catalog_service *iam = pki_catalog_find_service(cat, "iam-agent");
  CHECK(iam->permissions == (PKI_PERM_ADMIN | PKI_PERM_PRIVILEGED_ACCESS));
  const pki_catalog_service *sec =
      pki_catalog_find_service(cat, "security-agent");
  CHECK(sec->permissions ==
        (PKI_PERM_VAULT_ACCESS | PKI_PERM_DATABASE_AUDIT | PKI_PERM_AUDIT));
  /* The audit trail is for the audit identities only: admin is not audit. */
  CHECK(pki_catalog_find_service(cat, "audit-agent")->permissions ==
        PKI_PERM_AUDIT);
  CHECK(!(pki->permissions & PKI_PERM_AUDIT) && !(iam->permissions & PKI_PERM_AUDIT));
  CHECK(pki_catalog_find_service(cat, "redis")->permissions == 0);
  const pki_catalog_service *cissp =
      pki_catalog_find_service(cat, "cissp-training-agent");
  CHECK(strcmp(cissp->certs[0].file, "cissp-agent-server.crt") == 0);
  CHECK(strcmp(cissp->certs[1].file, "cissp-agent-client.crt") == 0);

  const pki_catalog_service *gw = pki_catalog_find_service(cat, "mcp-gateway");
  REQUIRE(gw != NULL);
  CHECK(strcmp(gw->dir, "mcp-gateway") == 0);
  CHECK(strcmp(gw->certs[0].file, "gateway-server.crt") == 0);
  CHECK(strcmp(gw->certs[1].file, "gateway-client.crt") == 0);

  const pki_catalog_service *lb = pki_catalog_find_service(cat, "load-balancer");
  REQUIRE(lb != NULL);
  CHECK(strcmp(lb->ca, "load-balancer-ca") == 0);
  CHECK(strcmp(lb->dir, "load-balancer") == 0);
  CHECK(strcmp(lb->identity,
               "spiffe://cybersec-framework.local/infrastructure/"
               "load-balancer") == 0);
  CHECK(lb->renew_before_s == 24u * 3600u);
  CHECK(lb->num_certs == 2);
  CHECK(strcmp(lb->certs[0].file, "active/lb-current.crt") == 0);
  CHECK(strcmp(lb->certs[1].file, "rotation/lb-next.crt") == 0);
  CHECK(lb->certs[1].usage == PKI_USAGE_SERVER);
  REQUIRE(lb->num_names == 5);
  const char *dns[] = {"cybersec-framework.local",
                       "api.cybersec-framework.local",
                       "*.cybersec-framework.local", "localhost"};
  for (size_t i = 0; i < 4; i++) {
    CHECK(lb->names[i].type == PKI_NAME_DNS);
    CHECK(strcmp(lb->names[i].value, dns[i]) == 0);
  }
  CHECK(lb->names[4].type == PKI_NAME_IP);
  CHECK(strcmp(lb->names[4].value, "127.0.0.1") == 0);

  CHECK(pki_catalog_find_service(cat, "nope") == NULL);
  CHECK(pki_catalog_find_ca(cat, "nope") == NULL);
  CHECK(pki_catalog_find_identity(cat, "spiffe://x/y") == NULL);
  CHECK(pki_catalog_find_service(NULL, "vault") == NULL);
  CHECK(pki_catalog_root(NULL) == NULL);
  pki_catalog_free(cat);
  pki_catalog_free(NULL);
}

TEST(base_loads) {
  char *doc = with_line(0, "");
  pki_err err;
  pki_catalog *cat = load_text(doc, &err);
  free(doc);
  if (cat == NULL) fprintf(stderr, "  %s\n", err.msg);
  REQUIRE(cat != NULL);
  CHECK(strcmp(cat->source, "t.yaml") == 0);
  CHECK(cat->num_cas == 2 && cat->num_services == 1);
  CHECK(cat->cas[0].path_len == -1);
  /* The root's CRL lasts a year unless said; pkid decides the others'. */
  CHECK(cat->cas[0].crl_validity_days == PKI_CATALOG_ROOT_CRL_VALIDITY_DAYS);
  CHECK(cat->cas[1].crl_validity_days == 0);
  CHECK(cat->cas[0].line == 5 && cat->cas[1].line == 8);
  CHECK(cat->services[0].line == 19);
  CHECK(cat->services[0].num_names == 2);
  CHECK(cat->services[0].names[1].type == PKI_NAME_IP);
  CHECK(cat->services[0].validity_s == 30u * 86400u);
  CHECK(cat->services[0].rotation_s == 0);
  /* No URL bases: nothing to point at. */
  CHECK(cat->crl_url == NULL && cat->ca_issuers_url == NULL);
  CHECK(cat->cas[1].crl_url == NULL && cat->cas[1].delta_crl_url == NULL &&
        cat->cas[1].cert_url == NULL);
  pki_catalog_free(cat);

  /* Optional parts that the base leaves out. */
  CHECK(expect_ok(25, "      - {usage: server, file: web.crt}\n"
                      "    labels: {ssl_mode: require, mtls_required: true}\n"
                      "    permissions: [admin, vault_access]\n"
                      "    key: ed25519\n"
                      "    validity: 90d\n"
                      "    rotation: 60d\n"
                      "    renew_before: 7d"));
  char *text = base_range(1, 17, "services: []\n");
  cat = load_text(text, &err);
  CHECK(cat != NULL && cat->num_services == 0);
  pki_catalog_free(cat);
  free(text);
  CHECK(expect_ok(12, "    path_len: 0\n    key: ecdsa-p384"));
  /* Top-level keys in another order: services before the CAs. */
  char *services = base_range(18, 25, "");
  char *rest = base_range(1, 17, "");
  text = malloc(strlen(services) + strlen(rest) + 1);
  REQUIRE(text != NULL);
  strcpy(text, services);
  strcat(text, rest);
  cat = load_text(text, &err);
  CHECK(cat != NULL && cat->num_services == 1);
  pki_catalog_free(cat);
  free(text);
  free(services);
  free(rest);
}

TEST(syntax_and_structure) {
  CHECK(expect_fail(23, "    names: {dns: [", 25, "YAML syntax error"));
  CHECK(expect_fail(2, "organization: Example\n  bad indent: x", 3,
                    "YAML syntax error"));
  CHECK(expect_fail_text("", PKI_ERR_INVALID, 1, "empty"));
  CHECK(expect_fail_text("# only a comment\n", PKI_ERR_INVALID, 1, "empty"));
  CHECK(expect_fail_text("- a\n- b\n", PKI_ERR_INVALID, 1, "must be a mapping"));
  CHECK(expect_fail_text("just text\n", PKI_ERR_INVALID, 1,
                         "must be a mapping"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n---\nx: 1", 27,
                    "more than one YAML document"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n---\n[", 28,
                    "YAML syntax error"));
  CHECK(expect_fail(22, "    dir: &d web\n    names: *d", 22,
                    "aliases are not supported"));
  CHECK(expect_fail(11, "    validity_days: !!int 365", 11, "tag"));
  CHECK(expect_fail(2, "organization: !custom Example", 2, "tag"));
  /* A NUL byte is not YAML: a reader error, located by its offset. */
  char *doc = with_line(0, "");
  size_t len = strlen(doc);
  doc[40] = '\0';
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = pki_catalog_load_mem("t.yaml", doc, len, &err);
  CHECK(cat == NULL && err.code == PKI_ERR_INVALID);
  CHECK(strncmp(err.msg, "t.yaml:2:", 9) == 0);
  free(doc);
}

TEST(keys_and_types) {
  CHECK(expect_fail(2, "organisation: Example", 2,
                    "unknown key 'organisation' in the catalogue"));
  CHECK(expect_fail(7, "    validity_day: 3650", 7, "unknown key 'validity_day'"));
  CHECK(expect_fail(22, "    dir: web\n    rotate: 20d", 23,
                    "unknown key 'rotate' in a service"));
  CHECK(expect_fail(15, "        dnss: [example.local]", 15,
                    "unknown key 'dnss'"));
  CHECK(expect_fail(23, "    names: {dns: [web.example.local], uri: [x]}", 23,
                    "unknown key 'uri'"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt, mode: 0600}", 25,
                    "unknown key 'mode'"));
  CHECK(expect_fail(22, "    dir: web\n    dir: web2", 23,
                    "duplicate key 'dir'"));
  CHECK(expect_fail(3, "", 1, "missing 'ocsp_url'"));
  CHECK(expect_fail(22, "", 19, "service 'web': missing 'dir'"));
  CHECK(expect_fail(10, "", 8, "CA 'issuing-ca': missing 'common_name'"));
  CHECK(expect_fail2(24, "", 25, "", 19, "missing 'certificates'"));
  CHECK(expect_fail(2, "\"\\x01\": Example", 2, "a key contains a control"));
  CHECK(expect_fail(2, "? [a]\n: Example", 2, "keys in the catalogue must be"));
  CHECK(expect_fail(2, "organization: [a, b]", 2, "must be a single value"));
  CHECK(expect_fail(2, "organization: {a: b}", 2, "must be a single value"));
  CHECK(expect_fail(2, "organization: \"\"", 2, "empty"));
  CHECK(expect_fail(2, "organization: \"a\\tb\"", 2, "control character"));
  char *text = base_range(1, 3, "cas: root\nservices: []\n");
  CHECK(expect_fail_text(text, PKI_ERR_INVALID, 4, "cas must be a list"));
  free(text);
  text = base_range(1, 3, "cas: []\nservices: []\n");
  CHECK(expect_fail_text(text, PKI_ERR_INVALID, 4, "at least the root"));
  free(text);
  CHECK(expect_fail(11, "    validity_days: \"365\"", 11,
                    "must be a number, not a string"));
  CHECK(expect_fail(11, "    validity_days: 36x", 11, "whole number"));
  CHECK(expect_fail(11, "    validity_days: -1", 11, "whole number"));
  CHECK(expect_fail(11, "    validity_days: 0", 11, "at least 1"));
  CHECK(expect_fail(11, "    validity_days: 99999999999", 11, ""));
  CHECK(expect_fail(12, "    path_len: 17", 12, "path_len is 17"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    labels: {ssl_mode: [require]}", 26,
                    "must be a single value"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    labels: [a]", 26, "labels must be a mapping"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    labels: {Bad-Name: x}", 26, "label name"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    labels: {a: x, a: y}", 26, "given twice"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    labels: {a: }", 26, "empty"));
}

TEST(top_level_values) {
  CHECK(expect_fail(1, "trust_domain: Example.local", 1, "lower case"));
  CHECK(expect_fail(1, "trust_domain: \"*.example.local\"", 1, "wildcard"));
  CHECK(expect_fail(1, "trust_domain: exa_mple.local", 1, "trust_domain"));
  CHECK(expect_fail(3, "ocsp_url: https://127.0.0.1:8081/", 3,
                    "must start with http://"));
  CHECK(expect_fail(3, "ocsp_url: 127.0.0.1:8081", 3, "ocsp_url"));
}

/* crl_url and ca_issuers_url: optional bases, checked like ocsp_url. */
TEST(url_bases) {
  static const char kBoth[] = "ocsp_url: http://127.0.0.1:8081/\n"
                              "crl_url: http://crl.example.local/pki/crl/\n"
                              "ca_issuers_url: \"http://127.0.0.1:8081/ca/\"";
  char *doc = with_line(3, kBoth);
  pki_err err;
  pki_catalog *cat = load_text(doc, &err);
  free(doc);
  if (cat == NULL) fprintf(stderr, "  %s\n", err.msg);
  REQUIRE(cat != NULL);
  CHECK(strcmp(cat->crl_url, "http://crl.example.local/pki/crl/") == 0);
  CHECK(strcmp(cat->cas[0].crl_url, "http://crl.example.local/pki/crl/root.crl") == 0);
  CHECK(strcmp(cat->cas[1].crl_url, "http://crl.example.local/pki/crl/issuing-ca.crl") == 0);
  CHECK(strcmp(cat->cas[1].delta_crl_url,
               "http://crl.example.local/pki/crl/issuing-ca-delta.crl") == 0);
  CHECK(strcmp(cat->cas[1].cert_url, "http://127.0.0.1:8081/ca/issuing-ca.crt") == 0);
  pki_catalog_free(cat);
  /* One without the other. */
  CHECK(expect_ok(3, "ocsp_url: http://127.0.0.1:8081/\ncrl_url: http://127.0.0.1:8081/crl/"));
  CHECK(expect_ok(3, "ocsp_url: http://127.0.0.1:8081/\nca_issuers_url: http://a.b/"));

  const char *const kBad[][2] = {
      {"crl_url: https://127.0.0.1:8081/crl/", "crl_url 'https://127.0.0.1:8081/crl/' must "
                                               "start with http://"},
      {"crl_url: ldap://127.0.0.1/crl/", "must start with http://"},
      {"crl_url: http://127.0.0.1:8081/crl", "crl_url 'http://127.0.0.1:8081/crl' must end "
                                             "in '/'"},
      {"crl_url: http://127.0.0.1:8081/crl?x=/", "no '?' or '#'"},
      {"crl_url: http://127.0.0.1:8081/#/", "no '?' or '#'"},
      {"crl_url: 127.0.0.1:8081/crl/", "crl_url: "},
      {"crl_url: \"http://a b/\"", "crl_url: "},
      {"crl_url: http://user@host/crl/", "userinfo"},
      {"crl_url: [http://127.0.0.1/]", "crl_url must be a single value"},
      {"crl_url: \"\"", "crl_url is empty"},
      {"ca_issuers_url: https://127.0.0.1:8081/ca/", "ca_issuers_url 'https://127.0.0.1:8081/"
                                                     "ca/' must start with http://"},
      {"ca_issuers_url: http://127.0.0.1:8081/ca", "ca_issuers_url 'http://127.0.0.1:8081/ca'"
                                                   " must end in '/'"},
      {"ca_issuers_url: {a: b}", "must be a single value"},
  };
  for (size_t i = 0; i < sizeof(kBad) / sizeof(kBad[0]); i++) {
    char text[256];
    snprintf(text, sizeof(text), "ocsp_url: http://127.0.0.1:8081/\n%s", kBad[i][0]);
    CHECK(expect_fail(3, text, 4, kBad[i][1]));
  }
  /* Long enough that a CA name could not follow within a URI's limit. */
  char long_url[1200];
  snprintf(long_url, sizeof(long_url), "ocsp_url: http://a.b/\ncrl_url: http://a.b/%01090d/",
           0);
  CHECK(expect_fail(3, long_url, 4, "crl_url is longer than 1024 characters"));
  CHECK(expect_fail(3, "ocsp_url: http://127.0.0.1:8081/\ncrl_url: http://a/\n"
                       "crl_url: http://b/",
                    5, "duplicate key 'crl_url'"));
  CHECK(expect_fail(2,
                    "organization: "
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaaaaaaaaa",
                    2, "longer than 64"));
}

TEST(ca_hierarchy) {
  CHECK(expect_fail(9, "    parent: other-ca", 9, "not listed before it"));
  CHECK(expect_fail(9, "    parent: issuing-ca", 9, "not listed before it"));
  CHECK(expect_fail(9, "", 8, "exactly one root"));
  CHECK(expect_fail(6, "    parent: root\n    common_name: Example Root", 5,
                    "first CA must be the root"));
  CHECK(expect_fail(8, "  - name: root", 8, "defined twice"));
  CHECK(expect_fail(8, "  - name: Issuing_CA", 8, "lower-case"));
  CHECK(expect_fail(11, "    validity_days: 4000", 11, "longer than its parent"));
  CHECK(expect_fail(7, "    validity_days: 3650\n    key: rsa-2048", 8,
                    "cannot be a CA key"));
  CHECK(expect_fail(7, "    validity_days: 3650\n    key: dsa-1024", 8,
                    "not supported"));
  /* A CA below a path_len 0 CA; a chain deeper than the root allows. */
  CHECK(expect_fail(17, "        ip: [10.0.0.0/8]\n"
                        "  - name: sub-ca\n"
                        "    parent: issuing-ca\n"
                        "    common_name: Sub\n"
                        "    validity_days: 30",
                    18, "path_len 0 and cannot have CAs below it"));
  CHECK(expect_ok(7, "    validity_days: 3650\n    path_len: 1"));
  /* crl_validity_days: the root's, within its validity. */
  char *doc = with_line(7, "    validity_days: 3650\n    crl_validity_days: 90");
  pki_err err;
  pki_catalog *cat = load_text(doc, &err);
  free(doc);
  CHECK(cat != NULL && cat->cas[0].crl_validity_days == 90);
  pki_catalog_free(cat);
  CHECK(expect_ok(7, "    validity_days: 3650\n    crl_validity_days: 3650"));
  CHECK(expect_fail(7, "    validity_days: 3650\n    crl_validity_days: 3651", 8,
                    "crl_validity_days 3651 is longer than its validity_days 3650"));
  CHECK(expect_fail(7, "    validity_days: 3650\n    crl_validity_days: 0", 8,
                    "crl_validity_days must be at least 1"));
  CHECK(expect_fail(7, "    validity_days: 3650\n    crl_validity_days: 1y", 8,
                    "whole number"));
  CHECK(expect_fail(11, "    validity_days: 365\n    crl_validity_days: 7", 12,
                    "CA 'issuing-ca': crl_validity_days is for the root only"));
  CHECK(expect_fail(7, "    validity_days: 3650\n    path_len: 1\n"
                       "  - name: mid-ca\n"
                       "    parent: root\n"
                       "    common_name: Mid\n"
                       "    validity_days: 300\n"
                       "  - name: low-ca\n"
                       "    parent: mid-ca\n"
                       "    common_name: Low\n"
                       "    validity_days: 30",
                    13, "2 levels below CA 'root', whose path_len 1"));
}

TEST(name_constraints) {
  CHECK(expect_fail(17, "        ip: [10.0.0.1/8]", 17, "CIDR"));
  CHECK(expect_fail(15, "        dns: [\"*.example.local\"]", 15, "wildcard"));
  CHECK(expect_fail(15, "        dns: example.local", 15, "must be a list"));
  CHECK(expect_fail(15, "        dns: [example.local, EXAMPLE.local]", 15,
                    "listed twice"));
  /* A child CA's permitted subtrees must fit within its parent's. */
  CHECK(expect_fail(7, "    validity_days: 3650\n"
                       "    name_constraints:\n"
                       "      permitted: {dns: [other.local]}",
                    10, "wider than what CA 'root' permits"));
  CHECK(expect_ok(7, "    validity_days: 3650\n"
                     "    name_constraints:\n"
                     "      permitted: {dns: [local], ip: [10.0.0.0/7], "
                     "uri: [.local, example.local]}"));
  CHECK(expect_fail(7, "    validity_days: 3650\n"
                       "    name_constraints:\n"
                       "      permitted: {ip: [10.0.0.0/9]}",
                    10, "permitted IP subtree '10.0.0.0/8' is wider"));
  CHECK(expect_fail(7, "    validity_days: 3650\n"
                       "    name_constraints:\n"
                       "      excluded: {uri: [example.local]}",
                    10, "excluded by CA 'root'"));
  /* Services must fit the constraints of their CA and those above. */
  CHECK(expect_fail(23, "    names: {dns: [web.other.local]}", 23,
                    "DNS name 'web.other.local' is outside the permitted"));
  CHECK(expect_fail(23, "    names: {dns: [badexample.local]}", 23,
                    "outside the permitted"));
  CHECK(expect_fail(23, "    names: {ip: [192.168.1.1]}", 23,
                    "IP name '192.168.1.1' is outside"));
  /* No email constraints: email names are not constrained. */
  CHECK(expect_ok(23, "    names: {email: [a@example.local]}"));
  CHECK(expect_ok(23, "    names: {dns: [\"*.example.local\", example.local]}"));
  /* A wildcard stands for bad.example.local too. */
  CHECK(expect_fail2(17, "        ip: [10.0.0.0/8]\n"
                         "      excluded: {dns: [bad.example.local]}",
                     23, "    names: {dns: [\"*.example.local\"]}",
                     24, "falls in excluded subtree 'bad.example.local'"));
  CHECK(expect_fail2(17, "        ip: [10.0.0.0/8]\n"
                         "      excluded: {dns: [.example.local]}",
                     23, "    names: {dns: [\"*.example.local\"]}",
                     24, "excluded subtree '.example.local'"));
  CHECK(expect_ok(17, "        ip: [10.0.0.0/8]\n"
                      "      excluded: {dns: [a.b.example.local], "
                      "ip: [10.9.0.0/16]}"));
  CHECK(expect_fail(17, "        ip: [10.0.0.0/8]\n"
                        "      excluded: {dns: [web.example.local]}",
                    24, "excluded subtree"));
  CHECK(expect_fail(7, "    validity_days: 3650\n"
                       "    name_constraints:\n"
                       "      excluded: {dns: [web.example.local]}",
                    25, "of CA 'root'"));
}

TEST(services) {
  CHECK(expect_fail(20, "    ca: nope", 20, "service 'web': unknown CA 'nope'"));
  CHECK(expect_fail(20, "    ca: root", 20, "offline root"));
  CHECK(expect_fail(19, "  - name: Web", 19, "lower-case"));
  CHECK(expect_fail(21, "    identity: spiffe://other.local/web", 21,
                    "must be spiffe://example.local/<path>"));
  CHECK(expect_fail(21, "    identity: https://example.local/web", 21,
                    "must be spiffe://"));
  CHECK(expect_fail(21, "    identity: spiffe://example.local/", 21,
                    "must be spiffe://"));
  CHECK(expect_fail(21, "    identity: spiffe://example.local.evil/web", 21,
                    "must be spiffe://"));
  CHECK(expect_fail(21, "    identity: spiffe://example.local//web", 21,
                    "empty, '.' or '..'"));
  CHECK(expect_fail(21, "    identity: spiffe://example.local/a/../b", 21,
                    "empty, '.' or '..'"));
  CHECK(expect_fail(21, "    identity: spiffe://example.local/web?x=1", 21,
                    "has '?'"));
  CHECK(expect_fail(21, "    identity: not a uri", 21, "identity"));
  CHECK(expect_fail(22, "    dir: /etc", 22, "relative path"));
  CHECK(expect_fail(22, "    dir: a/../../etc", 22, "relative path"));
  CHECK(expect_fail(22, "    dir: \"a b\"", 22, "has ' '"));
  CHECK(expect_fail(23, "    names: {dns: [\"10.1.2.3\"]}", 23,
                    "looks like an IP address"));
  CHECK(expect_fail(23, "    names: {dns: [\"bad name.example.local\"]}", 23,
                    "space"));
  CHECK(expect_fail(23, "    names: {dns: [web.example.local, WEB.example.local]}",
                    23, "listed twice"));
  CHECK(expect_fail(23, "    names: {ip: [10.1.2.999]}", 23,
                    "not an IPv4 or IPv6 address"));
  CHECK(expect_fail(23, "    names: [web.example.local]", 23,
                    "must be a mapping"));
  CHECK(expect_fail(23, "    key: rsa-1024", 23, "not supported"));
}

TEST(service_durations) {
  CHECK(expect_fail(22, "    dir: web\n    validity: 30x", 23,
                    "validity: duration '30x'"));
  CHECK(expect_fail(22, "    dir: web\n    validity: 30", 23, "duration"));
  CHECK(expect_fail(22, "    dir: web\n    validity: 0d", 23, "more than 0"));
  CHECK(expect_fail(22, "    dir: web\n    validity: 366d", 23,
                    "validity 366d is longer than CA 'issuing-ca''s 365 days"));
  CHECK(expect_fail(22, "    dir: web\n    rotation: 30d", 23,
                    "rotation must be shorter than validity"));
  CHECK(expect_fail(22, "    dir: web\n    renew_before: 31d", 23,
                    "renew_before must be shorter"));
  CHECK(expect_fail(22, "    dir: web\n    validity: [30d]", 23,
                    "must be a single value"));
}

TEST(certificates_and_permissions) {
  /* audit is a permission of its own, beside the others. */
  char *doc = with_line(25, "      - {usage: server, file: web.crt}\n"
                            "    permissions: [audit, database_audit]");
  pki_err err;
  pki_catalog *cat = load_text(doc, &err);
  free(doc);
  REQUIRE(cat != NULL);
  CHECK(cat->services[0].permissions == (PKI_PERM_AUDIT | PKI_PERM_DATABASE_AUDIT));
  pki_catalog_free(cat);
  CHECK(expect_fail(25, "      - {usage: both, file: web.crt}", 25,
                    "neither 'server' nor 'client'"));
  CHECK(expect_fail(25, "      - {usage: server}", 25, "missing 'file'"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.pem}", 25,
                    "must end in '.crt'"));
  CHECK(expect_fail(25, "      - {usage: server, file: ../web.crt}", 25,
                    "relative path"));
  CHECK(expect_fail2(24, "    certificates: []", 25, "", 24, "at least one"));
  CHECK(expect_fail2(24, "    certificates: {usage: server}", 25, "", 24,
                     "must be a list"));
  CHECK(expect_fail(25, "      - {usage: server, file: a.crt}\n"
                        "      - {usage: server, file: b.crt}\n"
                        "      - {usage: server, file: c.crt}\n"
                        "      - {usage: server, file: d.crt}\n"
                        "      - {usage: server, file: e.crt}",
                    25, "more than 4"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "      - {usage: client, file: web.crt}",
                    26, "file 'web/web.crt' of service 'web' is already used"));
  /* web.crt brings web-chain.crt. */
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "      - {usage: client, file: web-chain.crt}",
                    26, "web/web-chain.crt"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    permissions: [root]",
                    26, "unknown permission 'root'"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    permissions: [audit, admin, audit]",
                    26, "'audit' is listed twice"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    permissions: [auditor]",
                    26, "known: admin, privileged_access, vault_access, database_audit, audit"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    permissions: [admin, admin]",
                    26, "'admin' is listed twice"));
  CHECK(expect_fail(25, "      - {usage: server, file: web.crt}\n"
                        "    permissions: admin",
                    26, "must be a list"));
}

TEST(duplicates_across_services) {
  CHECK(expect_fail(25, SECOND_SERVICE("web",
                                       "    ca: issuing-ca\n"
                                       "    identity: spiffe://example.local/w2\n"
                                       "    dir: w2\n"
                                       "    certificates: [{usage: server, "
                                       "file: w.crt}]"),
                    26, "name 'web' of service 'web' is already used by "
                        "service 'web' (line 19)"));
  CHECK(expect_fail(25, SECOND_SERVICE("web2",
                                       "    ca: issuing-ca\n"
                                       "    identity: spiffe://example.local/web\n"
                                       "    dir: w2\n"
                                       "    certificates: [{usage: server, "
                                       "file: w.crt}]"),
                    28, "identity 'spiffe://example.local/web' of service "
                        "'web2' is already used by service 'web'"));
  CHECK(expect_fail(25, SECOND_SERVICE("web2",
                                       "    ca: issuing-ca\n"
                                       "    identity: spiffe://example.local/w2\n"
                                       "    dir: web\n"
                                       "    certificates: [{usage: server, "
                                       "file: web.crt}]"),
                    30, "file 'web/web.crt' of service 'web2'"));
  /* Shared names (localhost) and a shared directory are fine. */
  CHECK(expect_ok(25, SECOND_SERVICE("web2",
                                     "    ca: issuing-ca\n"
                                     "    identity: spiffe://example.local/w2\n"
                                     "    names: {dns: [web.example.local]}\n"
                                     "    dir: web\n"
                                     "    certificates: [{usage: server, "
                                     "file: web2.crt}]")));
}

TEST(limits) {
  /* Too many services: refused before any is read. */
  size_t n = 10001;
  char *doc = with_line(18, "services: [");
  size_t base = strlen(doc);
  char *big = malloc(base + n * 3 + 8);
  REQUIRE(big != NULL);
  memcpy(big, doc, base);
  /* Line 19 onwards of the base would follow; cut them off. */
  char *cut = strstr(big, "services: [");
  size_t at = (size_t)(cut - big) + strlen("services: [");
  for (size_t i = 0; i < n; i++) {
    memcpy(big + at, "1, ", 3);
    at += 3;
  }
  memcpy(big + at, "1]\n", 4);
  CHECK(expect_fail_text(big, PKI_ERR_INVALID, 18, "more than 10000"));
  free(big);
  free(doc);

  /* Over 1 MiB. */
  size_t huge = 1024 * 1024 + 1;
  char *text = malloc(huge + 1);
  REQUIRE(text != NULL);
  memset(text, '#', huge);
  text[huge] = '\0';
  pki_err err;
  pki_err_clear(&err);
  CHECK(pki_catalog_load_mem("t.yaml", text, huge, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID && strstr(err.msg, "bytes") != NULL);
  free(text);
  CHECK(pki_catalog_load_mem("t.yaml", NULL, 0, &err) == NULL);
}

TEST(duration_parse) {
  uint32_t s = 0;
  pki_err err;
  pki_err_clear(&err);
  CHECK(pki_duration_parse(&s, "45d", &err) && s == 45u * 86400u);
  CHECK(pki_duration_parse(&s, "24h", &err) && s == 86400u);
  CHECK(pki_duration_parse(&s, "90m", &err) && s == 5400u);
  CHECK(pki_duration_parse(&s, "3600s", &err) && s == 3600u);
  CHECK(pki_duration_parse(&s, "4294967295s", &err) && s == UINT32_MAX);
  const char *bad[] = {"", "d", "45", "45 d", " 45d", "45dd", "45D", "-1d",
                       "1.5d", "0s", "4294967296s", "49711d", "99999999999d",
                       "45w"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    pki_err_clear(&err);
    int ok = pki_duration_parse(&s, bad[i], &err);
    if (ok) fprintf(stderr, "  accepted '%s'\n", bad[i]);
    CHECK(!ok && err.code == PKI_ERR_INVALID);
  }
  CHECK(!pki_duration_parse(&s, NULL, &err));
}

TEST(load_file) {
  const char *tmp = getenv("TEST_TMPDIR");
  if (tmp == NULL) tmp = "/tmp";
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/catalog_test.yaml", tmp);
  char *doc = with_line(0, "");
  FILE *f = fopen(path, "w");
  REQUIRE(f != NULL);
  fputs(doc, f);
  fclose(f);
  free(doc);
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = pki_catalog_load_file(path, &err);
  REQUIRE(cat != NULL);
  CHECK(strcmp(cat->source, path) == 0);
  pki_catalog_free(cat);

  f = fopen(path, "w");
  REQUIRE(f != NULL);
  fputs("trust_domain: [x]\n", f);
  fclose(f);
  CHECK(pki_catalog_load_file(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  char want[PATH_MAX + 8];
  snprintf(want, sizeof(want), "%s:1:", path);
  CHECK(strncmp(err.msg, want, strlen(want)) == 0);
  unlink(path);

  CHECK(pki_catalog_load_file(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_NOT_FOUND);
}

int main(void) {
  RUN(default_catalogue);
  RUN(base_loads);
  RUN(syntax_and_structure);
  RUN(keys_and_types);
  RUN(top_level_values);
  RUN(url_bases);
  RUN(ca_hierarchy);
  RUN(name_constraints);
  RUN(services);
  RUN(service_durations);
  RUN(certificates_and_permissions);
  RUN(duplicates_across_services);
  RUN(limits);
  RUN(duration_parse);
  RUN(load_file);
  return test_finish();
}
