/* failmalloc_test: every allocation of lib/'s parsers and of the journal's
 * replay fails in turn, and each failure must be clean (nghttp2's
 * tests/failmalloc_test.c does the same for its HTTP/2 state machine).
 *
 * For each target, a fixed valid input is made before anything is armed.
 * Then, for N = 1, 2, ...: allocation N from now is made to fail
 * (failmalloc.h), the function is called, and the outcome must be one of
 *  - a failure with an error class set: PKI_ERR_EXHAUSTED, or a class this
 *    file names for that target with the reason it is acceptable;
 *  - a success whose output is exactly the reference output of an unarmed
 *    call (a library below may get past a failed allocation on its own);
 * never a crash, a failure with no class, or a success with other output.
 * The loop ends at the first N the call does not reach; that N - 1 is the
 * number of allocation points printed for the target. Outputs are freed on
 * both paths and ASan (--config=asan, detect_leaks=1) finds any leak; file
 * descriptors are counted after every call.
 *
 * BoringSSL and libyaml are linked statically, so their allocations fail
 * too. Environment variables, for when something fails:
 *   FAILMALLOC_ONLY=<prefix>  run only the targets whose name starts so;
 *   FAILMALLOC_TRACE=<target>:<N>  print (under a sanitizer) the stack of
 *     allocation N of that target;
 *   FAILMALLOC_LEAK_EACH=1  (ASan) check for leaks after every call, to
 *     name the first allocation whose failure leaks;
 *   FAILMALLOC_STRICT=1  refuse the outcomes this file tolerates as known
 *     problems of code below pkid or owned elsewhere. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <yaml.h>

#include "lib/base64.h"
#include "lib/catalog.h"
#include "lib/cert.h"
#include "lib/cert_info.h"
#include "lib/csr.h"
#include "lib/der.h"
#include "lib/journal.h"
#include "lib/key.h"
#include "lib/names.h"
#include "lib/ocsp.h"
#include "lib/pem.h"
#include "lib/profile.h"
#include "lib/serial.h"
#include "lib/shamir.h"
#include "lib/token.h"
#include "tests/unit/failmalloc.h"
#include "tests/unit/test.h"

#define MAX_ALLOCATIONS 20000
#define MAX_BAD 20 /* bad outcomes reported per target before it stops */
#define NOW 1767225600 /* 2026-01-01T00:00:00Z */

/* ---- Descriptions of outputs ------------------------------------------- */

/* An output is described by a line of text: counts and the fields that
 * matter, with a SHA-256 over everything else it holds. Two runs produced
 * the same output when their descriptions are equal. */
typedef struct desc {
  char text[1024];
  SHA256_CTX sha;
} desc;

static void desc_init(desc *d) {
  d->text[0] = '\0';
  SHA256_Init(&d->sha);
}

static void desc_printf(desc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void desc_printf(desc *d, const char *fmt, ...) {
  size_t n = strlen(d->text);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->text + n, sizeof(d->text) - n, fmt, ap);
  va_end(ap);
}

static void desc_bytes(desc *d, const void *p, size_t len) {
  uint64_t l = len;
  SHA256_Update(&d->sha, &l, sizeof(l));
  if (len > 0) SHA256_Update(&d->sha, p, len);
}

static void desc_str(desc *d, const char *s) {
  if (s == NULL) s = "(null)";
  desc_bytes(d, s, strlen(s) + 1);
}

static void desc_u64(desc *d, uint64_t v) { SHA256_Update(&d->sha, &v, sizeof(v)); }

static void desc_cbs(desc *d, const CBS *cbs) { desc_bytes(d, CBS_data(cbs), CBS_len(cbs)); }

static void desc_names(desc *d, const pki_name *names, size_t num) {
  desc_u64(d, num);
  for (size_t i = 0; i < num; i++) {
    desc_u64(d, (uint64_t)names[i].type);
    desc_str(d, names[i].value);
  }
}

/* desc_finish appends the hash to the text. */
static void desc_finish(desc *d) {
  uint8_t h[SHA256_DIGEST_LENGTH];
  SHA256_Final(h, &d->sha);
  desc_printf(d, " sha256=");
  for (int i = 0; i < 8; i++) desc_printf(d, "%02x", h[i]);
}

/* ---- The driver ---------------------------------------------------------- */

/* A target: |call| runs the function under test once, keeping its output
 * in |ctx|; it is the only part that runs armed. |finish| runs after,
 * unarmed: on success it describes the output into |d|; on both paths it
 * frees what the test owns. */
typedef struct target {
  const char *name;
  void *ctx;
  int (*call)(void *ctx, pki_err *err);
  void (*finish)(void *ctx, int ok, desc *d);
  /* Optional: a failure whose class is not PKI_ERR_EXHAUSTED but is
   * acceptable; returns why, or NULL. */
  const char *(*tolerate_class)(const pki_err *err, failmalloc_kind kind);
  /* Optional: a success whose output differs from the reference but is a
   * known problem of code this test does not own; returns what, or NULL. */
  const char *(*tolerate_output)(void *ctx, const desc *got, const desc *want);
} target;

static int g_strict;

/* From the LeakSanitizer runtime (ASan); NULL in an optimized build. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));
static int g_leak_each;

/* libyaml 0.2.5's loader leaks a sequence's or mapping's item stack when
 * growing the document's node stack fails right after it made that stack
 * (yaml_parser_load_sequence and _mapping: "goto error" frees the tag, not
 * the items). That is libyaml's, whose code (loader.c, inlined into
 * yaml_parser_load) allocated it: such leaks are suppressed, and LeakSanitizer
 * lists them as "Suppressions used". What pkid's catalogue allocates, and
 * what libyaml's scanner allocates (every scalar: a document pkid failed to
 * delete), is still reported. FAILMALLOC_STRICT=1 suppresses nothing. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  const char *strict = getenv("FAILMALLOC_STRICT");
  return strict != NULL && strcmp(strict, "1") == 0 ? "" : "leak:yaml_parser_load\n";
}

/* count_fds counts open file descriptors, without allocating. */
static int count_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; fd++) {
    if (fcntl(fd, F_GETFD) != -1) n++;
  }
  return n;
}

/* trace_at is the N of FAILMALLOC_TRACE for |name|, or 0. */
static uint64_t trace_at(const char *name) {
  const char *t = getenv("FAILMALLOC_TRACE");
  size_t n = strlen(name);
  if (t == NULL || strncmp(t, name, n) != 0 || t[n] != ':') return 0;
  return strtoull(t + n + 1, NULL, 10);
}

/* Tallies of one target, printed at the end of its loop. */
typedef struct tally {
  uint64_t points;
  uint64_t by_code[PKI_ERR_UNAVAILABLE + 1];
  uint64_t recovered; /* failed allocation, correct output anyway */
  uint64_t tolerated; /* a class or output accepted by a tolerate_ hook */
  uint64_t bad;
} tally;

/* run_one calls the target armed at |n| (0: count only) and checks the
 * outcome. It returns whether the armed allocation was reached. */
static int run_one(const target *t, const desc *want, uint64_t n, tally *tl,
                   uint64_t *out_count) {
  int fds_before = count_fds();
  pki_err err;
  memset(&err, 0, sizeof(err));
  err.code = PKI_OK;
  if (n > 0 && n == trace_at(t->name)) failmalloc_trace_next(1);
  failmalloc_arm(n);
  int ok = t->call(t->ctx, &err);
  uint64_t count = failmalloc_disarm();
  failmalloc_trace_next(0);
  failmalloc_kind kind = FAILMALLOC_MALLOC;
  int fired = failmalloc_fired(&kind);
  if (out_count != NULL) *out_count = count;
  desc got;
  desc_init(&got);
  t->finish(t->ctx, ok, &got);
  if (ok) desc_finish(&got);
  ERR_clear_error(); /* what BoringSSL queued is not carried to the next run */

  char what[1400];
  what[0] = '\0';
  if (ok) {
    if (want != NULL && strcmp(got.text, want->text) != 0) {
      const char *why = t->tolerate_output != NULL && !g_strict
                            ? t->tolerate_output(t->ctx, &got, want)
                            : NULL;
      if (why != NULL) {
        if (tl->tolerated++ < 3) {
          printf("  %s: allocation %llu (%s) failed, call succeeded with other output; "
                 "tolerated, KNOWN: %s\n",
                 t->name, (unsigned long long)n, failmalloc_kind_name(kind), why);
        }
      } else {
        snprintf(what, sizeof(what),
                 "succeeded with wrong output\n    got:  %s\n    want: %s", got.text,
                 want->text);
      }
    } else if (fired && tl->recovered++ < 3) {
      printf("  %s: allocation %llu (%s) failed, call succeeded with the reference output "
             "(the code below got past it)\n",
             t->name, (unsigned long long)n, failmalloc_kind_name(kind));
    }
  } else if (!fired) {
    snprintf(what, sizeof(what), "failed with no allocation failed: %s: %s",
             pki_err_code_name(err.code), err.msg);
  } else if (err.code == PKI_OK) {
    snprintf(what, sizeof(what), "failed with no error class set (msg \"%s\")", err.msg);
  } else {
    if (err.code <= PKI_ERR_UNAVAILABLE) tl->by_code[err.code]++;
    if (err.code != PKI_ERR_EXHAUSTED) {
      const char *why = t->tolerate_class != NULL && !g_strict
                            ? t->tolerate_class(&err, kind)
                            : NULL;
      if (why == NULL) {
        snprintf(what, sizeof(what), "reported as %s, not exhausted: %s",
                 pki_err_code_name(err.code), err.msg);
      } else if (tl->tolerated++ < 3) {
        printf("  %s: allocation %llu (%s) reported as %s (\"%s\"); tolerated: %s\n",
               t->name, (unsigned long long)n, failmalloc_kind_name(kind),
               pki_err_code_name(err.code), err.msg, why);
      }
    }
  }
  int fds = count_fds();
  if (what[0] == '\0' && fds != fds_before) {
    snprintf(what, sizeof(what), "%d file descriptors open after the call, %d before", fds,
             fds_before);
  }
  /* (After the count: the check leaves descriptors of its own open.) */
  if (what[0] == '\0' && g_leak_each && __lsan_do_recoverable_leak_check != NULL &&
      __lsan_do_recoverable_leak_check() != 0) {
    /* LeakSanitizer reports a leak again at every check: only the first. */
    g_leak_each = 0;
    snprintf(what, sizeof(what), "the first leak (LeakSanitizer's report is above)");
  }
  if (what[0] != '\0') {
    tl->bad++;
    char line[1600];
    snprintf(line, sizeof(line), "%s: allocation %llu (%s): %s", t->name,
             (unsigned long long)n, fired ? failmalloc_kind_name(kind) : "none", what);
    test_fail_at(__FILE__, __LINE__, line);
  }
  return fired;
}

/* failmalloc_loop fails each allocation of |t| in turn; see the top. */
static void failmalloc_loop(const target *t) {
  const char *only = getenv("FAILMALLOC_ONLY");
  if (only != NULL && strncmp(t->name, only, strlen(only)) != 0) return;
  tally tl;
  memset(&tl, 0, sizeof(tl));
  double start = test_now();
  /* The reference: unarmed, twice, so that whatever BoringSSL sets up once
   * per process or thread (CRYPTO_once tables, the error queue) is there
   * before the count. */
  desc want;
  desc_init(&want);
  pki_err err;
  memset(&err, 0, sizeof(err));
  for (int i = 0; i < 2; i++) {
    desc_init(&want);
    int ok = t->call(t->ctx, &err);
    t->finish(t->ctx, ok, &want);
    if (!ok) {
      char line[700];
      snprintf(line, sizeof(line), "%s: the unarmed call failed: %s: %s", t->name,
               pki_err_code_name(err.code), err.msg);
      test_fail_at(__FILE__, __LINE__, line);
      return;
    }
    desc_finish(&want);
  }
  ERR_clear_error();
  uint64_t counted = 0;
  run_one(t, &want, 0, &tl, &counted);

  uint64_t n;
  for (n = 1; n <= MAX_ALLOCATIONS; n++) {
    if (!run_one(t, &want, n, &tl, NULL)) break;
    if (tl.bad >= MAX_BAD) {
      printf("  %s: stopping after %d bad outcomes\n", t->name, MAX_BAD);
      break;
    }
  }
  if (n > MAX_ALLOCATIONS) {
    char line[200];
    snprintf(line, sizeof(line), "%s: more than %d allocations", t->name, MAX_ALLOCATIONS);
    test_fail_at(__FILE__, __LINE__, line);
  }
  tl.points = n - 1;
  printf("  %-26s %5llu allocation points (%llu in an unarmed call), %.2f s:",
         t->name, (unsigned long long)tl.points, (unsigned long long)counted,
         test_now() - start);
  for (int c = 0; c <= PKI_ERR_UNAVAILABLE; c++) {
    if (tl.by_code[c] > 0) {
      printf(" %s %llu", pki_err_code_name((pki_err_code)c), (unsigned long long)tl.by_code[c]);
    }
  }
  if (tl.recovered > 0) printf(", recovered %llu", (unsigned long long)tl.recovered);
  if (tl.tolerated > 0) printf(", tolerated %llu", (unsigned long long)tl.tolerated);
  printf("\n");
  fflush(stdout);
}

/* ---- Inputs, made before anything is armed ----------------------------- */

static pki_catalog *g_cat;

/* A CA of the default catalogue, with its certificate. */
typedef struct test_ca {
  EVP_PKEY *key;
  uint8_t *der;
  size_t len;
  pki_issuer iss;
} test_ca;

static test_ca g_root, g_infra;
static uint8_t *g_leaf;
static size_t g_leaf_len;
static uint64_t g_serial_seq = 1;

static void show(const char *what, const pki_err *err) {
  fprintf(stderr, "  %s: %s: %s\n", what, pki_err_code_name(err->code), err->msg);
}

static uint8_t *spki_der(const EVP_PKEY *key, size_t *len) {
  CBB cbb;
  uint8_t *out = NULL;
  if (!CBB_init(&cbb, 128) || !EVP_marshal_public_key(&cbb, key) ||
      !CBB_finish(&cbb, &out, len)) {
    CBB_cleanup(&cbb);
    return NULL;
  }
  return out;
}

static int issue(uint8_t **der, size_t *len, const pki_issuer *issuer,
                 const pki_profile *profile, const EVP_PKEY *key, int64_t not_before,
                 int64_t not_after, pki_err *err) {
  pki_issue_request req;
  memset(&req, 0, sizeof(req));
  req.profile = profile;
  if (!pki_serial_make(&req.serial, 0, g_serial_seq++, err)) return 0;
  req.not_before = not_before;
  req.not_after = not_after;
  req.spki = spki_der(key, &req.spki_len);
  if (req.spki == NULL) return 0;
  *der = NULL;
  int ok = pki_cert_issue(der, len, issuer, &req, err);
  OPENSSL_free((void *)req.spki);
  return ok;
}

/* make_certs makes the root and infrastructure-ca of the default catalogue
 * and a server certificate of vault under it: SANs, AIA, name constraints. */
static int make_certs(pki_err *err) {
  int64_t now = (int64_t)time(NULL);
  g_cat = pki_catalog_default(err);
  if (g_cat == NULL) return 0;
  pki_profile profile;
  pki_issuer self;
  memset(&self, 0, sizeof(self));
  const pki_catalog_ca *root = pki_catalog_root(g_cat);
  if (root == NULL || !pki_profile_for_ca(&profile, g_cat, root, err)) return 0;
  g_root.key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, err);
  int64_t nb = now - PKI_BACKDATE_S, na = now + (int64_t)profile.validity_s;
  int ok = g_root.key != NULL && pki_issuer_init_self(&self, g_root.key, &profile, nb, na, err) &&
           issue(&g_root.der, &g_root.len, &self, &profile, g_root.key, nb, na, err) &&
           pki_issuer_init(&g_root.iss, g_root.der, g_root.len, g_root.key, err);
  pki_issuer_cleanup(&self);
  pki_profile_cleanup(&profile);
  if (!ok) return 0;

  const pki_catalog_ca *infra = pki_catalog_find_ca(g_cat, "infrastructure-ca");
  if (infra == NULL || !pki_profile_for_ca(&profile, g_cat, infra, err)) return 0;
  pki_validity(&nb, &na, &g_root.iss, profile.validity_s, now);
  g_infra.key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, err);
  ok = g_infra.key != NULL &&
       issue(&g_infra.der, &g_infra.len, &g_root.iss, &profile, g_infra.key, nb, na, err) &&
       pki_issuer_init(&g_infra.iss, g_infra.der, g_infra.len, g_infra.key, err);
  pki_profile_cleanup(&profile);
  if (!ok) return 0;

  const pki_catalog_service *vault = pki_catalog_find_service(g_cat, "vault");
  if (vault == NULL ||
      !pki_profile_for_service(&profile, g_cat, vault, PKI_USAGE_SERVER, err)) {
    return 0;
  }
  pki_validity(&nb, &na, &g_infra.iss, profile.validity_s, now);
  EVP_PKEY *leaf_key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, err);
  ok = leaf_key != NULL &&
       issue(&g_leaf, &g_leaf_len, &g_infra.iss, &profile, leaf_key, nb, na, err);
  EVP_PKEY_free(leaf_key);
  pki_profile_cleanup(&profile);
  return ok;
}

static void free_certs(void) {
  test_ca *cas[] = {&g_root, &g_infra};
  for (size_t i = 0; i < 2; i++) {
    EVP_PKEY_free(cas[i]->key);
    free(cas[i]->der);
    pki_issuer_cleanup(&cas[i]->iss);
    memset(cas[i], 0, sizeof(*cas[i]));
  }
  free(g_leaf);
  g_leaf = NULL;
  pki_catalog_free(g_cat);
  g_cat = NULL;
}

/* ---- The wrap itself ----------------------------------------------------- */

/* Each kind of allocation reaches the wrapper from pkid's code, from
 * BoringSSL and from libyaml, and the first allocation of a simple call
 * fails it. */
/* Called through volatile pointers: the compiler may drop a malloc whose
 * result is only freed, or fold strdup of a constant. */
static void *(*volatile g_malloc)(size_t) = malloc;
static void *(*volatile g_calloc)(size_t, size_t) = calloc;
static char *(*volatile g_strdup)(const char *) = strdup;

TEST(wrap_takes_effect) {
  failmalloc_kind kind;
  failmalloc_arm(1);
  errno = 0;
  void *p = g_malloc(16);
  failmalloc_disarm();
  CHECK(p == NULL && errno == ENOMEM);
  CHECK(failmalloc_fired(&kind) && kind == FAILMALLOC_MALLOC);
  free(p);

  failmalloc_arm(2);
  void *a = g_calloc(1, 8), *b = g_strdup("x");
  failmalloc_disarm();
  CHECK(a != NULL && b == NULL && failmalloc_fired(&kind) && kind == FAILMALLOC_STRDUP);
  free(a);
  free(b);

  /* BoringSSL's allocator. */
  failmalloc_arm(1);
  p = OPENSSL_malloc(16);
  failmalloc_disarm();
  CHECK(p == NULL && failmalloc_fired(NULL));
  OPENSSL_free(p);

  /* libyaml, linked statically: its parser allocates its buffers. */
  yaml_parser_t parser;
  failmalloc_arm(1);
  int yok = yaml_parser_initialize(&parser);
  failmalloc_disarm();
  CHECK(!yok && failmalloc_fired(NULL));
  if (yok) yaml_parser_delete(&parser);
  failmalloc_arm(0);
  yok = yaml_parser_initialize(&parser);
  CHECK(yok && failmalloc_disarm() > 0);
  if (yok) yaml_parser_delete(&parser);

  /* A lib/ call: PEM decoding's first allocation. */
  static const char kPem[] = "-----BEGIN X-----\nAAEC\n-----END X-----\n";
  static const char *const kLabels[] = {"X"};
  uint8_t *out = NULL;
  size_t out_len = 0;
  pki_err err;
  pki_err_clear(&err);
  failmalloc_arm(1);
  int ok = pki_pem_decode(&out, &out_len, NULL, kLabels, 1, (const uint8_t *)kPem,
                          strlen(kPem), 0, &err);
  failmalloc_disarm();
  CHECK(!ok && err.code == PKI_ERR_EXHAUSTED && failmalloc_fired(NULL));
  free(out);
  /* Counted but not failed: nothing fails. */
  failmalloc_arm(0);
  ok = pki_pem_decode(&out, &out_len, NULL, kLabels, 1, (const uint8_t *)kPem, strlen(kPem),
                      0, &err);
  CHECK(failmalloc_disarm() == 2);
  CHECK(ok && out_len == 3 && !failmalloc_fired(NULL));
  free(out);
}

/* ---- CSRs ---------------------------------------------------------------- */

typedef struct csr_ctx {
  uint8_t *der;
  size_t len;
  pki_csr csr;
} csr_ctx;

static int csr_call(void *ctx, pki_err *err) {
  csr_ctx *c = ctx;
  return pki_csr_parse(&c->csr, c->der, c->len, err);
}

static void csr_finish(void *ctx, int ok, desc *d) {
  csr_ctx *c = ctx;
  if (!ok) return; /* "On failure |out| needs no cleanup" */
  desc_printf(d, "%s cn=%s names=%zu", pki_key_type_name(c->csr.key_type, c->csr.key_bits),
              c->csr.common_name, c->csr.num_names);
  desc_cbs(d, &c->csr.subject);
  desc_cbs(d, &c->csr.spki);
  desc_names(d, c->csr.names, c->csr.num_names);
  uint8_t h[32];
  pki_err err;
  if (pki_spki_sha256(h, c->csr.key, &err)) desc_bytes(d, h, sizeof(h));
  pki_csr_cleanup(&c->csr);
}

static void csr_case(const char *name, pki_key_type type, unsigned bits) {
  static char kDns[] = "vault.cybersec-framework.local", kIp[] = "10.1.2.3",
              kUri[] = "spiffe://cybersec-framework.local/infrastructure/vault",
              kEmail[] = "ops@cybersec-framework.local";
  pki_name names[] = {
      {PKI_NAME_DNS, kDns}, {PKI_NAME_IP, kIp}, {PKI_NAME_URI, kUri}, {PKI_NAME_EMAIL, kEmail}};
  pki_err err;
  pki_err_clear(&err);
  csr_ctx c;
  memset(&c, 0, sizeof(c));
  EVP_PKEY *key = pki_key_generate(type, bits, &err);
  int ok = key != NULL && pki_csr_build(&c.der, &c.len, key, "vault", names, 4, &err);
  EVP_PKEY_free(key);
  if (!ok) show(name, &err);
  REQUIRE(ok);
  target t = {name, &c, csr_call, csr_finish, NULL, NULL};
  failmalloc_loop(&t);
  free(c.der);
}

TEST(csr_parse) {
  csr_case("csr_parse ecdsa-p256", PKI_KEY_ECDSA_P256, 256);
  csr_case("csr_parse ecdsa-p384", PKI_KEY_ECDSA_P384, 384);
  csr_case("csr_parse ed25519", PKI_KEY_ED25519, 256);
  csr_case("csr_parse rsa-2048", PKI_KEY_RSA, 2048);
}

/* ---- Certificates -------------------------------------------------------- */

typedef struct cert_ctx {
  const uint8_t *der;
  size_t len;
  pki_cert_info info;
} cert_ctx;

static int cert_call(void *ctx, pki_err *err) {
  cert_ctx *c = ctx;
  return pki_cert_info_parse(&c->info, c->der, c->len, err);
}

static void cert_finish(void *ctx, int ok, desc *d) {
  cert_ctx *c = ctx;
  if (!ok) return;
  const pki_cert_info *i = &c->info;
  desc_printf(d, "ca=%d path_len=%d ku=%x eku=%x sans=%zu permitted=%zu excluded=%zu "
              "ocsp=%s ca_issuers=%s crl=%s unknown=%u",
              i->is_ca, i->path_len, i->key_usage, i->ext_key_usage, i->num_sans,
              i->num_permitted, i->num_excluded, i->ocsp_url != NULL ? i->ocsp_url : "-",
              i->ca_issuers_url != NULL ? i->ca_issuers_url : "-",
              i->crl_url != NULL ? i->crl_url : "-", i->num_unknown_extensions);
  const CBS *cbss[] = {&i->tbs, &i->serial, &i->tbs_sig_alg, &i->issuer, &i->subject,
                       &i->spki, &i->subject_public_key, &i->sig_alg, &i->signature,
                       &i->ski, &i->aki};
  for (size_t k = 0; k < sizeof(cbss) / sizeof(cbss[0]); k++) desc_cbs(d, cbss[k]);
  int flags[] = {i->has_basic_constraints, i->basic_constraints_critical, i->has_key_usage,
                 i->key_usage_critical, i->has_ext_key_usage, i->ext_key_usage_other,
                 i->has_ski, i->has_aki, i->has_san, i->san_critical,
                 i->has_name_constraints, i->has_aia, i->aia_other, i->has_crl_dp,
                 i->crl_dp_critical, i->crl_dp_other};
  desc_bytes(d, flags, sizeof(flags));
  desc_u64(d, (uint64_t)i->not_before);
  desc_u64(d, (uint64_t)i->not_after);
  desc_names(d, i->sans, i->num_sans);
  desc_names(d, i->permitted, i->num_permitted);
  desc_names(d, i->excluded, i->num_excluded);
  pki_cert_info_cleanup(&c->info);
}

TEST(cert_info_parse) {
  REQUIRE(g_leaf != NULL);
  cert_ctx c;
  memset(&c, 0, sizeof(c));
  c.der = g_leaf;
  c.len = g_leaf_len;
  target t = {"cert_info_parse leaf", &c, cert_call, cert_finish, NULL, NULL};
  failmalloc_loop(&t);
  memset(&c, 0, sizeof(c));
  c.der = g_infra.der;
  c.len = g_infra.len;
  t.name = "cert_info_parse CA";
  failmalloc_loop(&t);
}

/* ---- The catalogue --------------------------------------------------------- */

typedef struct catalog_ctx {
  const char *yaml; /* NULL: pki_catalog_default */
  pki_catalog *cat;
} catalog_ctx;

static int catalog_call(void *ctx, pki_err *err) {
  catalog_ctx *c = ctx;
  c->cat = c->yaml != NULL ? pki_catalog_load_mem("t.yaml", c->yaml, strlen(c->yaml), err)
                           : pki_catalog_default(err);
  return c->cat != NULL;
}

static void catalog_finish(void *ctx, int ok, desc *d) {
  catalog_ctx *c = ctx;
  if (!ok) return;
  const pki_catalog *cat = c->cat;
  desc_printf(d, "cas=%zu services=%zu", cat->num_cas, cat->num_services);
  desc_str(d, cat->source);
  desc_str(d, cat->trust_domain);
  desc_str(d, cat->organization);
  desc_str(d, cat->ocsp_url);
  desc_str(d, cat->crl_url);
  desc_str(d, cat->ca_issuers_url);
  for (size_t i = 0; i < cat->num_cas; i++) {
    const pki_catalog_ca *ca = &cat->cas[i];
    desc_str(d, ca->name);
    desc_str(d, ca->crl_url);
    desc_str(d, ca->delta_crl_url);
    desc_str(d, ca->cert_url);
    desc_u64(d, ca->crl_validity_days);
    desc_str(d, ca->parent);
    desc_str(d, ca->common_name);
    desc_u64(d, ca->key_type);
    desc_u64(d, ca->key_bits);
    desc_u64(d, ca->validity_days);
    desc_u64(d, (uint64_t)ca->path_len);
    desc_names(d, ca->permitted, ca->num_permitted);
    desc_names(d, ca->excluded, ca->num_excluded);
    desc_u64(d, (uint64_t)ca->line);
  }
  for (size_t i = 0; i < cat->num_services; i++) {
    const pki_catalog_service *s = &cat->services[i];
    desc_str(d, s->name);
    desc_str(d, s->ca);
    desc_str(d, s->identity);
    desc_str(d, s->dir);
    desc_names(d, s->names, s->num_names);
    desc_u64(d, s->key_type);
    desc_u64(d, s->key_bits);
    desc_u64(d, s->validity_s);
    desc_u64(d, s->rotation_s);
    desc_u64(d, s->renew_before_s);
    desc_u64(d, s->num_certs);
    for (size_t k = 0; k < s->num_certs; k++) {
      desc_u64(d, s->certs[k].usage);
      desc_str(d, s->certs[k].file);
    }
    desc_u64(d, s->permissions);
    desc_u64(d, (uint64_t)s->line);
  }
  pki_catalog_free(c->cat);
  c->cat = NULL;
}

/* A small catalogue (catalog_test's base): an IP constraint, an IP name. */
static const char kSmallCatalog[] =
    "trust_domain: example.local\n"
    "organization: Example\n"
    "ocsp_url: http://127.0.0.1:8081/\n"
    "cas:\n"
    "  - name: root\n"
    "    common_name: Example Root\n"
    "    validity_days: 3650\n"
    "  - name: issuing-ca\n"
    "    parent: root\n"
    "    common_name: Example Issuing CA\n"
    "    validity_days: 365\n"
    "    path_len: 0\n"
    "    name_constraints:\n"
    "      permitted:\n"
    "        dns: [example.local]\n"
    "        uri: [example.local]\n"
    "        ip: [10.0.0.0/8]\n"
    "services:\n"
    "  - name: web\n"
    "    ca: issuing-ca\n"
    "    identity: spiffe://example.local/web\n"
    "    dir: web\n"
    "    names: {dns: [web.example.local], ip: [10.1.2.3]}\n"
    "    validity: 30d\n"
    "    rotation: 20d\n"
    "    certificates:\n"
    "      - {usage: server, file: web.crt}\n"
    "      - {usage: client, file: web-client.crt}\n"
    "    permissions: [admin, vault_access]\n"
    "    labels:\n"
    "      tier: front\n";

TEST(catalog_load_mem) {
  catalog_ctx c = {kSmallCatalog, NULL};
  target t = {"catalog_load_mem", &c, catalog_call, catalog_finish, NULL, NULL};
  failmalloc_loop(&t);
}

TEST(catalog_default) {
  catalog_ctx c = {NULL, NULL};
  target t = {"catalog_default", &c, catalog_call, catalog_finish, NULL, NULL};
  failmalloc_loop(&t);
}

/* ---- OCSP requests --------------------------------------------------------- */

/* `openssl ocsp -issuer infrastructure-ca.crt -cert vault-server.crt
 * -reqout`: a SHA-1 CertID with NULL parameters and a 16-octet nonce
 * (ocsp_test's kOpensslRequest). */
static const uint8_t kOcspRequest[] = {
    0x30, 0x79, 0x30, 0x77, 0x30, 0x50, 0x30, 0x4e, 0x30, 0x4c, 0x30, 0x09, 0x06, 0x05,
    0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14, 0x56, 0xf5, 0xee, 0x13, 0xee,
    0x7a, 0xac, 0xf8, 0x4e, 0xf5, 0xb5, 0x43, 0x35, 0xb8, 0x81, 0xad, 0x36, 0xdc, 0xc7,
    0xae, 0x04, 0x14, 0x7b, 0x8f, 0xcd, 0xeb, 0x84, 0x20, 0x83, 0x69, 0x3a, 0xf4, 0xc6,
    0xf3, 0x26, 0x96, 0x01, 0xc4, 0xd4, 0x0b, 0x3e, 0x3f, 0x02, 0x13, 0x01, 0x00, 0x00,
    0x00, 0x06, 0x61, 0x49, 0xce, 0xd4, 0x91, 0x21, 0x7c, 0xef, 0xae, 0x3b, 0x06, 0x3f,
    0xc2, 0x32, 0xa2, 0x23, 0x30, 0x21, 0x30, 0x1f, 0x06, 0x09, 0x2b, 0x06, 0x01, 0x05,
    0x05, 0x07, 0x30, 0x01, 0x02, 0x04, 0x12, 0x04, 0x10, 0xec, 0x07, 0x4a, 0x55, 0x81,
    0xad, 0xf8, 0xc2, 0xc1, 0x9f, 0x4f, 0xa3, 0x9f, 0x67, 0x51, 0xbd,
};

typedef struct ocsp_ctx {
  pki_ocsp_request req;
} ocsp_ctx;

static int ocsp_call(void *ctx, pki_err *err) {
  ocsp_ctx *c = ctx;
  return pki_ocsp_request_parse(&c->req, kOcspRequest, sizeof(kOcspRequest), err);
}

static void ocsp_finish(void *ctx, int ok, desc *d) {
  ocsp_ctx *c = ctx;
  if (!ok) return;
  desc_printf(d, "ids=%zu nonce=%d/%zu signed=%d", c->req.num_ids, c->req.has_nonce,
              c->req.nonce_len, c->req.is_signed);
  desc_bytes(d, &c->req, sizeof(c->req)); /* memset by the parser: padding is zero */
}

TEST(ocsp_request_parse) {
  ocsp_ctx c;
  target t = {"ocsp_request_parse", &c, ocsp_call, ocsp_finish, NULL, NULL};
  failmalloc_loop(&t);
}

/* ---- Tokens, PEM, base64 ----------------------------------------------------- */

typedef struct token_ctx {
  uint8_t key[PKI_TOKEN_KEY_LEN];
  char text[PKI_TOKEN_MAX_TEXT];
  pki_token tok;
} token_ctx;

static int token_call(void *ctx, pki_err *err) {
  token_ctx *c = ctx;
  memset(&c->tok, 0, sizeof(c->tok));
  return pki_token_check(&c->tok, c->text, strlen(c->text), c->key, NOW, err);
}

static void token_finish(void *ctx, int ok, desc *d) {
  token_ctx *c = ctx;
  if (!ok) return;
  desc_printf(d, "service=%s expires=%lld", c->tok.service, (long long)c->tok.expires);
  desc_bytes(d, c->tok.id, sizeof(c->tok.id));
}

TEST(token_check) {
  token_ctx c;
  memset(&c, 0, sizeof(c));
  for (size_t i = 0; i < sizeof(c.key); i++) c.key[i] = (uint8_t)(i * 7 + 1);
  pki_err err;
  pki_err_clear(&err);
  REQUIRE(pki_token_make(c.text, sizeof(c.text), c.key, "redis", NOW + 3600, &err));
  target t = {"token_check", &c, token_call, token_finish, NULL, NULL};
  failmalloc_loop(&t);
}

typedef struct pem_ctx {
  char *text;
  size_t text_len;
  unsigned flags;
  uint8_t *out;
  size_t out_len;
  const char *label;
} pem_ctx;

static const char *const kPemLabels[] = {"PRIVATE KEY", "CERTIFICATE"};

static int pem_call(void *ctx, pki_err *err) {
  pem_ctx *c = ctx;
  return pki_pem_decode(&c->out, &c->out_len, &c->label, kPemLabels, 2,
                        (const uint8_t *)c->text, c->text_len, c->flags, err);
}

static void pem_finish(void *ctx, int ok, desc *d) {
  pem_ctx *c = ctx;
  if (ok) {
    desc_printf(d, "label=%s len=%zu", c->label != NULL ? c->label : "(der)", c->out_len);
    desc_bytes(d, c->out, c->out_len);
  }
  free(c->out);
  c->out = NULL;
}

TEST(pem_decode) {
  REQUIRE(g_leaf != NULL);
  /* Explanatory text, a block of another label, then the certificate with
   * CRLF line ends. */
  pem_ctx c;
  memset(&c, 0, sizeof(c));
  pki_err err;
  pki_err_clear(&err);
  char *text = NULL;
  size_t text_len = 0;
  REQUIRE(pki_pem_append(&text, &text_len, "X509 CRL", g_root.der, 40, &err));
  REQUIRE(pki_pem_append(&text, &text_len, "CERTIFICATE", g_leaf, g_leaf_len, &err));
  c.text = malloc(2 * text_len + 64);
  REQUIRE(c.text != NULL);
  size_t n = (size_t)sprintf(c.text, "Subject: vault\n");
  for (size_t i = 0; i < text_len; i++) {
    if (text[i] == '\n') c.text[n++] = '\r';
    c.text[n++] = text[i];
  }
  c.text_len = n;
  free(text);
  target t = {"pem_decode", &c, pem_call, pem_finish, NULL, NULL};
  failmalloc_loop(&t);
  /* DER passed through by PKI_PEM_OR_DER. */
  free(c.text);
  c.text = malloc(g_leaf_len);
  REQUIRE(c.text != NULL);
  memcpy(c.text, g_leaf, g_leaf_len);
  c.text_len = g_leaf_len;
  c.flags = PKI_PEM_OR_DER;
  t.name = "pem_decode der";
  failmalloc_loop(&t);
  free(c.text);
}

typedef struct b64_ctx {
  char in[1500];
  size_t in_len;
  uint8_t out[1200];
  size_t out_len;
} b64_ctx;

static int b64_call(void *ctx, pki_err *err) {
  b64_ctx *c = ctx;
  return pki_base64_decode(c->out, sizeof(c->out), &c->out_len, c->in, c->in_len,
                           PKI_BASE64_ANY_ALPHABET | PKI_BASE64_PAD_OPTIONAL, err);
}

static void b64_finish(void *ctx, int ok, desc *d) {
  b64_ctx *c = ctx;
  if (!ok) return;
  desc_printf(d, "len=%zu", c->out_len);
  desc_bytes(d, c->out, c->out_len);
}

TEST(base64_decode) {
  b64_ctx c;
  memset(&c, 0, sizeof(c));
  uint8_t data[1000];
  for (size_t i = 0; i < sizeof(data); i++) data[i] = (uint8_t)(i * 131 + 7);
  pki_err err;
  pki_err_clear(&err);
  REQUIRE(pki_base64_encode(c.in, sizeof(c.in), &c.in_len, data, sizeof(data),
                            PKI_BASE64_STD | PKI_BASE64_PAD_REQUIRED, &err));
  target t = {"base64_decode", &c, b64_call, b64_finish, NULL, NULL};
  failmalloc_loop(&t);
}

/* ---- Sealed keys and shares ---------------------------------------------------- */

typedef struct sealed_ctx {
  char *pem;
  size_t pem_len;
  uint8_t secret[32];
  EVP_PKEY *key;
} sealed_ctx;

static int sealed_call(void *ctx, pki_err *err) {
  sealed_ctx *c = ctx;
  c->key = pki_key_open(c->pem, c->pem_len, c->secret, sizeof(c->secret), err);
  return c->key != NULL;
}

static void sealed_finish(void *ctx, int ok, desc *d) {
  sealed_ctx *c = ctx;
  if (!ok) return;
  pki_key_type type = PKI_KEY_NONE;
  unsigned bits = 0;
  pki_err err;
  uint8_t h[32];
  memset(h, 0, sizeof(h));
  pki_key_describe(&type, &bits, c->key, &err);
  pki_spki_sha256(h, c->key, &err);
  desc_printf(d, "%s", pki_key_type_name(type, bits));
  desc_bytes(d, h, sizeof(h));
  /* The private half too. */
  CBB cbb;
  uint8_t *der = NULL;
  size_t der_len = 0;
  if (CBB_init(&cbb, 256) && EVP_marshal_private_key(&cbb, c->key) &&
      CBB_finish(&cbb, &der, &der_len)) {
    desc_bytes(d, der, der_len);
  } else {
    CBB_cleanup(&cbb);
  }
  OPENSSL_free(der);
  EVP_PKEY_free(c->key);
  c->key = NULL;
}

static void sealed_case(const char *name, pki_key_type type) {
  sealed_ctx c;
  memset(&c, 0, sizeof(c));
  for (size_t i = 0; i < sizeof(c.secret); i++) c.secret[i] = (uint8_t)(0xa5 ^ i);
  pki_err err;
  pki_err_clear(&err);
  EVP_PKEY *key = pki_key_generate(type, 256, &err);
  /* scrypt at its cheapest accepted cost: the loop opens the key once per
   * allocation point. */
  int ok = key != NULL &&
           pki_key_seal(&c.pem, &c.pem_len, key, c.secret, sizeof(c.secret), 10, &err);
  EVP_PKEY_free(key);
  if (!ok) show(name, &err);
  REQUIRE(ok);
  target t = {name, &c, sealed_call, sealed_finish, NULL, NULL};
  failmalloc_loop(&t);
  free(c.pem);
}

TEST(key_open) {
  sealed_case("key_open ecdsa-p256", PKI_KEY_ECDSA_P256);
  sealed_case("key_open ed25519", PKI_KEY_ED25519);
}

typedef struct shamir_ctx {
  char text[3][PKI_SHARE_TEXT_MAX];
  uint8_t secret[PKI_SHAMIR_MAX_SECRET];
  size_t secret_len;
} shamir_ctx;

static int shamir_call(void *ctx, pki_err *err) {
  shamir_ctx *c = ctx;
  pki_share shares[3];
  for (int i = 0; i < 3; i++) {
    if (!pki_share_decode(&shares[i], c->text[i], err)) return 0;
  }
  return pki_shamir_combine(c->secret, &c->secret_len, shares, 3, err);
}

static void shamir_finish(void *ctx, int ok, desc *d) {
  shamir_ctx *c = ctx;
  if (!ok) return;
  desc_printf(d, "len=%zu", c->secret_len);
  desc_bytes(d, c->secret, c->secret_len);
}

TEST(shamir_decode_combine) {
  shamir_ctx c;
  memset(&c, 0, sizeof(c));
  uint8_t secret[32];
  for (size_t i = 0; i < sizeof(secret); i++) secret[i] = (uint8_t)(i * 29 + 3);
  pki_share shares[5];
  pki_err err;
  pki_err_clear(&err);
  REQUIRE(pki_shamir_split(shares, secret, sizeof(secret), 3, 5, &err));
  /* Shares 1, 3 and 5, as the ceremony in the README uses. */
  REQUIRE(pki_share_encode(c.text[0], sizeof(c.text[0]), &shares[0], &err));
  REQUIRE(pki_share_encode(c.text[1], sizeof(c.text[1]), &shares[2], &err));
  REQUIRE(pki_share_encode(c.text[2], sizeof(c.text[2]), &shares[4], &err));
  /* The reference the loop compares with is the secret. */
  REQUIRE(shamir_call(&c, &err));
  REQUIRE(c.secret_len == sizeof(secret) && memcmp(c.secret, secret, sizeof(secret)) == 0);
  target t = {"shamir_decode_combine", &c, shamir_call, shamir_finish, NULL, NULL};
  failmalloc_loop(&t);
}

/* ---- The journal ------------------------------------------------------------------ */

#define JOURNAL_RECORDS 300
static const uint64_t kSnapshotAt[] = {150, 250};
static char g_journal_dir[PATH_MAX];

static size_t payload_len(uint64_t seq) { return (size_t)(16 + (seq * 37) % 90); }

static void make_payload(uint64_t seq, uint8_t *out) {
  size_t len = payload_len(seq);
  for (size_t i = 0; i < len; i++) out[i] = (uint8_t)(seq * 131 + i * 7);
}

/* What a consumer of the journal rebuilds: every record's payload, in seq
 * order, each in its own allocation (as the store copies what it keeps). */
typedef struct rebuilt {
  uint8_t **payloads;
  size_t *lens;
  uint8_t *types;
  size_t num, cap;
} rebuilt;

static int rebuilt_push(rebuilt *r, uint8_t type, const uint8_t *p, size_t len, pki_err *err) {
  if (r->num == r->cap) {
    size_t cap = r->cap == 0 ? 8 : r->cap * 2;
    uint8_t **payloads = realloc(r->payloads, cap * sizeof(*payloads));
    if (payloads == NULL) goto oom;
    r->payloads = payloads;
    size_t *lens = realloc(r->lens, cap * sizeof(*lens));
    if (lens == NULL) goto oom;
    r->lens = lens;
    uint8_t *types = realloc(r->types, cap);
    if (types == NULL) goto oom;
    r->types = types;
    r->cap = cap;
  }
  uint8_t *copy = malloc(len > 0 ? len : 1);
  if (copy == NULL) goto oom;
  if (len > 0) memcpy(copy, p, len);
  r->payloads[r->num] = copy;
  r->lens[r->num] = len;
  r->types[r->num] = type;
  r->num++;
  return 1;
oom:
  PKI_ERR_OOM(err);
  return 0;
}

static void rebuilt_free(rebuilt *r) {
  for (size_t i = 0; i < r->num; i++) free(r->payloads[i]);
  free(r->payloads);
  free(r->lens);
  free(r->types);
  memset(r, 0, sizeof(*r));
}

/* The snapshot state: u32 count, then per record u8 type, u16 length,
 * payload. */
static int serialize(const rebuilt *r, uint8_t **out, size_t *out_len) {
  CBB cbb;
  if (!CBB_init(&cbb, 4096) || !CBB_add_u32(&cbb, (uint32_t)r->num)) goto fail;
  for (size_t i = 0; i < r->num; i++) {
    if (!CBB_add_u8(&cbb, r->types[i]) || !CBB_add_u16(&cbb, (uint16_t)r->lens[i]) ||
        !CBB_add_bytes(&cbb, r->payloads[i], r->lens[i])) {
      goto fail;
    }
  }
  return CBB_finish(&cbb, out, out_len);
fail:
  CBB_cleanup(&cbb);
  return 0;
}

typedef struct journal_ctx {
  int use_snapshot;
  rebuilt r;
  uint64_t snapshot_seq; /* as the callback saw it */
  pki_journal_stats stats;
  uint64_t next_seq;
  uint8_t last_hash[PKI_JOURNAL_HASH_LEN];
} journal_ctx;

static int on_snapshot(void *ctx, uint64_t seq, const uint8_t *state, size_t len,
                       pki_err *err) {
  journal_ctx *c = ctx;
  c->snapshot_seq = seq;
  CBS cbs;
  uint32_t num;
  CBS_init(&cbs, state, len);
  if (!CBS_get_u32(&cbs, &num)) goto bad;
  for (uint32_t i = 0; i < num; i++) {
    uint8_t type;
    CBS payload;
    if (!CBS_get_u8(&cbs, &type) || !CBS_get_u16_length_prefixed(&cbs, &payload)) goto bad;
    if (!rebuilt_push(&c->r, type, CBS_data(&payload), CBS_len(&payload), err)) return 0;
  }
  if (CBS_len(&cbs) != 0 || num != seq) goto bad;
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "test: malformed snapshot state");
  return 0;
}

static int on_record(void *ctx, const pki_journal_record *rec, pki_err *err) {
  journal_ctx *c = ctx;
  if (rec->seq != c->r.num + 1) {
    PKI_ERR(err, PKI_ERR_INVALID, "test: record %llu after %zu records",
            (unsigned long long)rec->seq, c->r.num);
    return 0;
  }
  return rebuilt_push(&c->r, rec->type, rec->payload, rec->len, err);
}

static int journal_open_call(void *ctx, pki_err *err) {
  journal_ctx *c = ctx;
  pki_journal_options opts;
  memset(&opts, 0, sizeof(opts));
  opts.on_snapshot = c->use_snapshot ? on_snapshot : NULL;
  pki_journal *j = pki_journal_open(g_journal_dir, &opts, on_record, c, err);
  if (j == NULL) return 0;
  /* Read what the test compares before closing (no allocation). */
  pki_journal_get_stats(j, &c->stats);
  c->next_seq = pki_journal_next_seq(j);
  pki_journal_last_hash(j, c->last_hash);
  pki_journal_close(j);
  return 1;
}

static void journal_open_finish(void *ctx, int ok, desc *d) {
  journal_ctx *c = ctx;
  if (ok) {
    /* The state first: it must always be the same. */
    desc_printf(d, "records=%zu next=%llu", c->r.num, (unsigned long long)c->next_seq);
    for (size_t i = 0; i < c->r.num; i++) {
      desc_u64(d, c->r.types[i]);
      desc_bytes(d, c->r.payloads[i], c->r.lens[i]);
    }
    desc_bytes(d, c->last_hash, sizeof(c->last_hash));
    /* Then how it was reached. */
    desc_printf(d, " | snapshot=%llu replayed=%llu skipped=%llu segments=%llu",
                (unsigned long long)c->stats.snapshot_seq,
                (unsigned long long)c->stats.replayed,
                (unsigned long long)c->stats.snapshots_skipped,
                (unsigned long long)c->stats.segments);
  }
  rebuilt_free(&c->r);
  c->snapshot_seq = 0;
  memset(&c->stats, 0, sizeof(c->stats));
}

typedef struct verify_ctx {
  pki_journal_verify_result res;
} verify_ctx;

static int verify_call(void *ctx, pki_err *err) {
  verify_ctx *c = ctx;
  return pki_journal_verify_dir(g_journal_dir, &c->res, err);
}

static void verify_finish(void *ctx, int ok, desc *d) {
  verify_ctx *c = ctx;
  if (!ok) return;
  desc_printf(d, "segments=%llu records=%llu snapshots=%llu bad=%llu torn=%llu",
              (unsigned long long)c->res.segments, (unsigned long long)c->res.records,
              (unsigned long long)c->res.snapshots, (unsigned long long)c->res.snapshots_bad,
              (unsigned long long)c->res.torn_bytes);
  desc_bytes(d, &c->res, sizeof(c->res));
}

/* make_journal writes JOURNAL_RECORDS records in batches of 10 into small
 * segments, with a snapshot after each seq of kSnapshotAt. */
static int make_journal(pki_err *err) {
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(g_journal_dir, sizeof(g_journal_dir), "%s/failmalloc_journal.%ld",
           tmp != NULL ? tmp : "/tmp", (long)getpid());
  pki_journal_options opts;
  memset(&opts, 0, sizeof(opts));
  opts.segment_bytes = 4096;
  pki_journal *j = pki_journal_open(g_journal_dir, &opts, NULL, NULL, err);
  if (j == NULL) return 0;
  rebuilt all;
  memset(&all, 0, sizeof(all));
  static uint8_t bufs[10][128];
  int ok = 1;
  size_t snap = 0;
  for (uint64_t seq = 1; ok && seq <= JOURNAL_RECORDS; seq += 10) {
    pki_journal_entry e[10];
    for (int k = 0; k < 10; k++) {
      make_payload(seq + (uint64_t)k, bufs[k]);
      e[k].type = (uint8_t)(1 + (seq + (uint64_t)k) % 5);
      e[k].time = 1767225600000ull + seq + (uint64_t)k;
      e[k].payload = bufs[k];
      e[k].len = payload_len(seq + (uint64_t)k);
      ok = ok && rebuilt_push(&all, e[k].type, e[k].payload, e[k].len, err);
    }
    ok = ok && pki_journal_append(j, e, 10, err);
    if (ok && snap < 2 && seq + 9 == kSnapshotAt[snap]) {
      uint8_t *state = NULL;
      size_t state_len = 0;
      ok = serialize(&all, &state, &state_len) &&
           pki_journal_snapshot(j, state, state_len, err);
      OPENSSL_free(state);
      snap++;
    }
  }
  rebuilt_free(&all);
  pki_journal_close(j);
  return ok && snap == 2;
}

TEST(journal_replay) {
  pki_err err;
  pki_err_clear(&err);
  int made = make_journal(&err);
  if (!made) show("making the journal", &err);
  REQUIRE(made);
  journal_ctx c;
  memset(&c, 0, sizeof(c));
  c.use_snapshot = 1;
  target t = {"journal_open snapshot", &c, journal_open_call, journal_open_finish, NULL, NULL};
  failmalloc_loop(&t);
  memset(&c, 0, sizeof(c));
  c.use_snapshot = 0;
  t.name = "journal_open full replay";
  failmalloc_loop(&t);

  verify_ctx v;
  memset(&v, 0, sizeof(v));
  target tv = {"journal_verify_dir", &v, verify_call, verify_finish, NULL, NULL};
  failmalloc_loop(&tv);

  DIR *d = opendir(g_journal_dir);
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] != '.') unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
  }
  rmdir(g_journal_dir);
}

/* ---- main ------------------------------------------------------------------------ */

TEST(make_inputs) {
  pki_err err;
  pki_err_clear(&err);
  int ok = make_certs(&err);
  if (!ok) show("certificates", &err);
  REQUIRE(ok);
}

int main(void) {
  const char *strict = getenv("FAILMALLOC_STRICT");
  g_strict = strict != NULL && strcmp(strict, "1") == 0;
  const char *leak_each = getenv("FAILMALLOC_LEAK_EACH");
  g_leak_each = leak_each != NULL && strcmp(leak_each, "1") == 0;
  RUN(wrap_takes_effect);
  RUN(make_inputs);
  RUN(csr_parse);
  RUN(cert_info_parse);
  RUN(catalog_load_mem);
  RUN(catalog_default);
  RUN(ocsp_request_parse);
  RUN(token_check);
  RUN(pem_decode);
  RUN(base64_decode);
  RUN(key_open);
  RUN(shamir_decode_combine);
  RUN(journal_replay);
  free_certs();
  return test_finish();
}
