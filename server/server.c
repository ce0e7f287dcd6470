#include "server/server.h"

#include <string.h>

#include "server/conn.h"

const pkid_method *pkid_server_find_method(const pkid_server *server, const char *path) {
  for (size_t i = 0; i < server->num_methods; i++) {
    if (strcmp(server->methods[i].path, path) == 0) return &server->methods[i];
  }
  return NULL;
}

uint64_t pkid_server_now_ms(const pkid_server *server) { return uv_now(server->loop); }
