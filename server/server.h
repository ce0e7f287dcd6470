/* server.h: the state of one pkid process, shared by the loop's parts. */
#ifndef PKID_SERVER_SERVER_H
#define PKID_SERVER_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "server/grpc.h"

struct pkid_conn;
struct pkid_api;

typedef struct pkid_limits {
  unsigned max_conns;         /* connections at once; more are closed at accept */
  unsigned max_streams;       /* SETTINGS_MAX_CONCURRENT_STREAMS per connection */
  unsigned max_header_bytes;  /* SETTINGS_MAX_HEADER_LIST_SIZE */
  unsigned idle_timeout_ms;   /* a connection with no calls for this long is closed */
  unsigned handshake_timeout_ms;
} pkid_limits;

typedef struct pkid_server {
  uv_loop_t *loop;
  uv_tcp_t grpc_listener;
  SSL_CTX *ssl_ctx;
  pkid_limits limits;
  const pkid_method *methods;
  size_t num_methods;
  struct pkid_api *api;
  struct pkid_conn *conns;
  unsigned num_conns;
  struct pkid_conn *dirty; /* connections with output to write */
  uv_check_t flush;        /* writes them once per loop iteration */
  int draining;
  uv_timer_t tick; /* deadlines */
} pkid_server;

/* pkid_server_find_method returns the method served at |path|, or NULL. */
const pkid_method *pkid_server_find_method(const pkid_server *server, const char *path);

/* pkid_server_now_ms is the loop's clock in milliseconds. */
uint64_t pkid_server_now_ms(const pkid_server *server);

#endif /* PKID_SERVER_SERVER_H */
