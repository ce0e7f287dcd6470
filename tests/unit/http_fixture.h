/* http_fixture.h: a server/http server on a libuv loop in the test's
 * thread, and a client function in another, for http_test and
 * http_tls_test. Header-only, like test.h.
 *
 *   fixture f;
 *   http_fixture_init(&f, limits, client);   // a loop and a server
 *   pkid_http_route(f.srv, ...);              // the test's routes (and TLS)
 *   http_fixture_serve(&f);                   // listen on 127.0.0.1:0, run
 *
 * http_fixture_serve returns once the client is done (f->port is where to
 * connect) and the server has stopped gracefully. */
#ifndef PKID_TESTS_UNIT_HTTP_FIXTURE_H
#define PKID_TESTS_UNIT_HTTP_FIXTURE_H

#include <pthread.h>
#include <string.h>

#include <uv.h>

#include "server/http/http.h"
#include "tests/unit/test.h"

typedef struct fixture {
  uv_loop_t loop;
  uv_async_t finished;
  pkid_http_server *srv;
  int port;
  int stopped;
  void (*client)(struct fixture *f);
  pthread_t thread;
} fixture;

static void http_fixture_on_stopped(void *arg) {
  fixture *f = arg;
  f->stopped = 1;
}

/* http_fixture_on_finished runs on the loop when the client is done. */
static void http_fixture_on_finished(uv_async_t *a) {
  fixture *f = a->data;
  pkid_http_stop(f->srv, 100, http_fixture_on_stopped, f);
  uv_close((uv_handle_t *)a, NULL);
}

static void *http_fixture_client_main(void *arg) {
  fixture *f = arg;
  f->client(f);
  uv_async_send(&f->finished);
  return NULL;
}

static int http_fixture_init(fixture *f, const pkid_http_limits *limits,
                             void (*client)(fixture *f)) {
  memset(f, 0, sizeof(*f));
  f->client = client;
  if (uv_loop_init(&f->loop) != 0) return 0;
  f->srv = pkid_http_new(&f->loop, limits);
  return f->srv != NULL;
}

static void http_fixture_serve(fixture *f) {
  pki_err err;
  REQUIRE(pkid_http_listen(f->srv, "127.0.0.1:0", &err));
  char where[80];
  f->port = pkid_http_address(f->srv, where, sizeof(where));
  REQUIRE(f->port > 0);
  uv_async_init(&f->loop, &f->finished, http_fixture_on_finished);
  f->finished.data = f;
  REQUIRE(pthread_create(&f->thread, NULL, http_fixture_client_main, f) == 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  pthread_join(f->thread, NULL);
  CHECK(f->stopped);
  CHECK(uv_loop_close(&f->loop) == 0);
}

#endif /* PKID_TESTS_UNIT_HTTP_FIXTURE_H */
