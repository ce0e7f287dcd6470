/* metrics_test: server/metrics.c's exposition text, byte for byte, for
 * each metric type; label escaping; lazy families; pkid's own metrics; and
 * concurrent updates from threads (run under --config=tsan too). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics/metrics.h"
#include "tests/unit/test.h"

static int render_is(pkid_registry *reg, const char *want) {
  size_t len;
  char *got = pkid_registry_render(reg, &len);
  int ok = got != NULL && strlen(got) == len && strcmp(got, want) == 0;
  if (!ok) fprintf(stderr, "  got:\n%s\n  want:\n%s\n", got ? got : "(null)", want);
  free(got);
  return ok;
}

TEST(counter_text) {
  pkid_registry *reg = pkid_registry_new();
  pkid_metric *c = pkid_counter_new(reg, "x_total", "Things counted.");
  REQUIRE(c != NULL);
  CHECK(render_is(reg, "# HELP x_total Things counted.\n# TYPE x_total counter\nx_total 0\n"));
  pkid_counter_add(c, 1);
  pkid_counter_add(c, 41);
  CHECK(pkid_counter_value(c) == 42);
  CHECK(render_is(reg, "# HELP x_total Things counted.\n# TYPE x_total counter\nx_total 42\n"));
  pkid_registry_free(reg);
}

TEST(gauge_text) {
  pkid_registry *reg = pkid_registry_new();
  pkid_metric *g = pkid_gauge_new(reg, "depth", "How deep.");
  REQUIRE(g != NULL);
  pkid_gauge_set(g, 3);
  pkid_gauge_add(g, -5);
  CHECK(pkid_gauge_value(g) == -2);
  CHECK(render_is(reg, "# HELP depth How deep.\n# TYPE depth gauge\ndepth -2\n"));
  pkid_gauge_set(g, 0.1);
  CHECK(render_is(reg, "# HELP depth How deep.\n# TYPE depth gauge\ndepth 0.1\n"));
  pkid_gauge_set(g, 1.0 / 3.0);
  CHECK(render_is(reg, "# HELP depth How deep.\n# TYPE depth gauge\ndepth 0.3333333333333333\n"));
  pkid_gauge_set(g, 1893456000);
  CHECK(render_is(reg, "# HELP depth How deep.\n# TYPE depth gauge\ndepth 1893456000\n"));
  pkid_gauge_set(g, 1e300 * 1e300);
  CHECK(render_is(reg, "# HELP depth How deep.\n# TYPE depth gauge\ndepth +Inf\n"));
  pkid_registry_free(reg);
}

TEST(histogram_text) {
  static const double kBuckets[] = {0.005, 0.1, 1};
  pkid_registry *reg = pkid_registry_new();
  pkid_metric *h = pkid_histogram_new(reg, "lat_seconds", "Latency.", kBuckets, 3);
  REQUIRE(h != NULL);
  pkid_histogram_observe(h, 0.001);
  pkid_histogram_observe(h, 0.005); /* on a bound: counted in it (le) */
  pkid_histogram_observe(h, 0.5);
  pkid_histogram_observe(h, 7);
  CHECK(pkid_histogram_count(h) == 4);
  CHECK(render_is(reg,
                  "# HELP lat_seconds Latency.\n"
                  "# TYPE lat_seconds histogram\n"
                  "lat_seconds_bucket{le=\"0.005\"} 2\n"
                  "lat_seconds_bucket{le=\"0.1\"} 2\n"
                  "lat_seconds_bucket{le=\"1\"} 3\n"
                  "lat_seconds_bucket{le=\"+Inf\"} 4\n"
                  "lat_seconds_sum 7.506\n"
                  "lat_seconds_count 4\n"));
  pkid_registry_free(reg);
}

TEST(labels_and_escaping) {
  static const char *const kLabels[] = {"method", "code"};
  static const double kBuckets[] = {1};
  pkid_registry *reg = pkid_registry_new();
  pkid_family *f = pkid_family_new(reg, PKID_COUNTER, "req_total", "Calls, by \"method\"\\code\nend.",
                                   kLabels, 2, NULL, 0, 0);
  REQUIRE(f != NULL);
  /* A labelled family with no child yet renders nothing. */
  CHECK(render_is(reg, ""));
  const char *v1[] = {"Issue", "OK"};
  const char *v2[] = {"Re\"vo\\ke\n", "NOT_FOUND"};
  pkid_metric *a = pkid_metric_child(f, v1);
  pkid_metric *b = pkid_metric_child(f, v2);
  CHECK(pkid_metric_child(f, v1) == a); /* the same child again */
  pkid_counter_add(a, 2);
  pkid_counter_add(b, 1);
  static const char *const kMethod[] = {"method"};
  pkid_family *hf =
      pkid_family_new(reg, PKID_HISTOGRAM, "d_seconds", "D.", kMethod, 1, kBuckets, 1, 0);
  const char *v3[] = {"Issue"};
  pkid_histogram_observe(pkid_metric_child(hf, v3), 0.25);
  CHECK(render_is(reg,
                  "# HELP req_total Calls, by \"method\"\\\\code\\nend.\n"
                  "# TYPE req_total counter\n"
                  "req_total{method=\"Issue\",code=\"OK\"} 2\n"
                  "req_total{method=\"Re\\\"vo\\\\ke\\n\",code=\"NOT_FOUND\"} 1\n"
                  "# HELP d_seconds D.\n"
                  "# TYPE d_seconds histogram\n"
                  "d_seconds_bucket{method=\"Issue\",le=\"1\"} 1\n"
                  "d_seconds_bucket{method=\"Issue\",le=\"+Inf\"} 1\n"
                  "d_seconds_sum{method=\"Issue\"} 0.25\n"
                  "d_seconds_count{method=\"Issue\"} 1\n"));
  pkid_registry_free(reg);
}

TEST(bad_registrations) {
  static const double kDown[] = {1, 0.5};
  static const char *const kLe[] = {"le"};
  static const char *const kBad[] = {"a-b"};
  pkid_registry *reg = pkid_registry_new();
  CHECK(pkid_counter_new(reg, "ok_total", "h") != NULL);
  CHECK(pkid_counter_new(reg, "ok_total", "again") == NULL);
  CHECK(pkid_counter_new(reg, "9lives", "h") == NULL);
  CHECK(pkid_counter_new(reg, "has space", "h") == NULL);
  CHECK(pkid_histogram_new(reg, "h1", "h", kDown, 2) == NULL);
  CHECK(pkid_histogram_new(reg, "h2", "h", NULL, 0) == NULL);
  CHECK(pkid_family_new(reg, PKID_HISTOGRAM, "h3", "h", kLe, 1, kDown, 1, 0) == NULL);
  CHECK(pkid_family_new(reg, PKID_GAUGE, "g", "h", kBad, 1, NULL, 0, 0) == NULL);
  /* Updates through NULL are ignored. */
  pkid_counter_add(NULL, 1);
  pkid_gauge_set(NULL, 1);
  pkid_histogram_observe(NULL, 1);
  pkid_registry_free(reg);
}

TEST(lazy_family) {
  pkid_registry *reg = pkid_registry_new();
  pkid_family *f = pkid_family_new(reg, PKID_GAUGE, "rot", "R.", NULL, 0, NULL, 0, 1);
  REQUIRE(f != NULL);
  CHECK(render_is(reg, ""));
  pkid_gauge_set(pkid_metric_child(f, NULL), 1);
  CHECK(render_is(reg, "# HELP rot R.\n# TYPE rot gauge\nrot 1\n"));
  pkid_registry_free(reg);
}

TEST(pkid_metrics_set) {
  REQUIRE(pkid_metrics_init());
  CHECK(pkid_metrics_init()); /* twice is fine */
  size_t len;
  char *text = pkid_registry_render(pkid_m.reg, &len);
  REQUIRE(text != NULL);
  /* Everything the lead and the seed's alert rules use is there... */
  const char *want[] = {
      "# TYPE pkid_issued_total counter\npkid_issued_total 0\n",
      "# TYPE pkid_revoked_total counter\n",
      "# TYPE pkid_queue_depth gauge\n",
      "# TYPE pkid_worker_batch_size histogram\n",
      "# TYPE pkid_commit_batch_size histogram\n",
      "# TYPE pkid_fsync_duration_seconds histogram\n",
      "pkid_ocsp_requests_total{result=\"good\"} 0\n",
      "pkid_ocsp_requests_total{result=\"revoked\"} 0\n",
      "pkid_ocsp_requests_total{result=\"unknown\"} 0\n",
      "pkid_ocsp_requests_total{result=\"malformed\"} 0\n",
      "pkid_ocsp_requests_total{result=\"unauthorized\"} 0\n",
      "# TYPE pkid_ocsp_response_seconds histogram\n",
      "# TYPE pkid_connections gauge\n",
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    if (strstr(text, want[i]) == NULL) fprintf(stderr, "  missing: %s", want[i]);
    CHECK(strstr(text, want[i]) != NULL);
  }
  /* ...but lb_cert_rotation_success only once set. */
  CHECK(strstr(text, "lb_cert_rotation_success") == NULL);
  free(text);
  pkid_metrics_cert_expiry("pki-ca", 1893456000);
  pkid_metrics_lb_rotation(1);
  const char *m[] = {"Issue", "OK"};
  pkid_counter_add(pkid_metric_child(pkid_m.grpc_requests, m), 1);
  text = pkid_registry_render(pkid_m.reg, &len);
  REQUIRE(text != NULL);
  CHECK(strstr(text, "\ncert_expiry_timestamp{cert_name=\"pki-ca\"} 1893456000\n") != NULL);
  CHECK(strstr(text, "\n# TYPE lb_cert_rotation_success gauge\nlb_cert_rotation_success 1\n") !=
        NULL);
  CHECK(strstr(text, "\npkid_grpc_requests_total{method=\"Issue\",code=\"OK\"} 1\n") != NULL);
  free(text);
}

/* Threads update shared children, make children and render, at once. */
enum { THREADS = 4, ROUNDS = 20000 };

typedef struct shared {
  pkid_registry *reg;
  pkid_metric *counter, *gauge, *hist;
  pkid_family *fam;
} shared;

static void *hammer(void *arg) {
  shared *s = arg;
  for (int i = 0; i < ROUNDS; i++) {
    pkid_counter_add(s->counter, 1);
    pkid_gauge_add(s->gauge, 1);
    pkid_histogram_observe(s->hist, (double)(i % 4));
    if (i % 1000 == 0) {
      char v[16];
      snprintf(v, sizeof(v), "v%d", i / 1000);
      const char *vals[] = {v};
      pkid_counter_add(pkid_metric_child(s->fam, vals), 1);
      free(pkid_registry_render(s->reg, NULL));
    }
  }
  return NULL;
}

TEST(concurrent_updates) {
  static const double kBuckets[] = {0.5, 1.5, 2.5};
  static const char *const kLabel[] = {"k"};
  shared s;
  s.reg = pkid_registry_new();
  s.counter = pkid_counter_new(s.reg, "c_total", "C.");
  s.gauge = pkid_gauge_new(s.reg, "g", "G.");
  s.hist = pkid_histogram_new(s.reg, "h", "H.", kBuckets, 3);
  s.fam = pkid_family_new(s.reg, PKID_COUNTER, "f_total", "F.", kLabel, 1, NULL, 0, 0);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) REQUIRE(pthread_create(&t[i], NULL, hammer, &s) == 0);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  CHECK(pkid_counter_value(s.counter) == (uint64_t)THREADS * ROUNDS);
  CHECK(pkid_gauge_value(s.gauge) == (double)THREADS * ROUNDS);
  CHECK(pkid_histogram_count(s.hist) == (uint64_t)THREADS * ROUNDS);
  const char *v0[] = {"v0"};
  CHECK(pkid_counter_value(pkid_metric_child(s.fam, v0)) == THREADS);
  char *text = pkid_registry_render(s.reg, NULL);
  REQUIRE(text != NULL);
  /* Each value 0..3 a quarter of the time: 1/4 <= 0.5, 2/4 <= 1.5, ... */
  char want[128];
  snprintf(want, sizeof(want), "h_bucket{le=\"1.5\"} %d\n", THREADS * ROUNDS / 2);
  CHECK(strstr(text, want) != NULL);
  snprintf(want, sizeof(want), "h_sum %d\n", THREADS * (ROUNDS / 4) * 6);
  CHECK(strstr(text, want) != NULL);
  free(text);
  pkid_registry_free(s.reg);
}

int main(void) {
  RUN(counter_text);
  RUN(gauge_text);
  RUN(histogram_text);
  RUN(labels_and_escaping);
  RUN(bad_registrations);
  RUN(lazy_family);
  RUN(pkid_metrics_set);
  RUN(concurrent_updates);
  int rc = test_finish();
  pkid_registry_free(pkid_m.reg);
  return rc;
}
