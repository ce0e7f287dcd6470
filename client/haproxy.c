/* haproxy.c: haproxy's runtime API, one command per connection (see
 * haproxy.h). */
#include "client/haproxy.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/sock.h"

/* connect_socket opens |socket|: a unix path, or HOST:PORT ("[v6]:PORT").
 * haproxy's own address prefixes ("unix@", "ipv4@", "ipv6@") are taken
 * too, so a `stats socket` line's address can be copied as it is. */
static int connect_socket(const char *socket, uint64_t deadline, pki_err *err) {
  const char *s = socket;
  if (strncmp(s, "unix@", 5) == 0) return sock_connect_unix(s + 5, deadline, "haproxy", err);
  if (strncmp(s, "ipv4@", 5) == 0 || strncmp(s, "ipv6@", 5) == 0) s += 5;
  if (strchr(s, '/') != NULL) return sock_connect_unix(s, deadline, "haproxy", err);
  char host[256];
  const char *colon = strrchr(s, ':');
  size_t host_len = colon != NULL ? (size_t)(colon - s) : 0;
  if (host_len >= 2 && s[0] == '[' && s[host_len - 1] == ']') {
    s++;
    host_len -= 2;
  }
  int port_ok = colon != NULL && colon[1] != '\0' && strlen(colon + 1) <= 5;
  for (const char *p = colon != NULL ? colon + 1 : ""; port_ok && *p != '\0'; p++) {
    port_ok = isdigit((unsigned char)*p);
  }
  if (host_len == 0 || host_len >= sizeof(host) || !port_ok) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "haproxy socket '%s' is neither a unix socket path nor HOST:PORT", socket);
    return -1;
  }
  memcpy(host, s, host_len);
  host[host_len] = '\0';
  return sock_connect_tcp(host, colon + 1, deadline, "haproxy", err);
}

/* check_payload refuses what would end a payload early or be read as
 * something else: an empty line ends it (9.3), and a CR would hide one. */
static int check_payload(const char *payload, pki_err *err) {
  if (payload[0] == '\n' || strstr(payload, "\n\n") != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "a payload for haproxy cannot hold an empty line: haproxy reads it as the end");
    return 0;
  }
  if (strchr(payload, '\r') != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "a payload for haproxy must have LF line ends, not CRLF");
    return 0;
  }
  return 1;
}

int haproxy_run(char **out_reply, size_t *out_len, const char *socket, const char *command,
                const char *payload, uint64_t timeout_ms, pki_err *err) {
  *out_reply = NULL;
  *out_len = 0;
  if (command[0] == '\0' || strpbrk(command, "\r\n") != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "a haproxy command is one non-empty line");
    return 0;
  }
  if (payload != NULL && !check_payload(payload, err)) return 0;
  size_t cmd_len = strlen(command), pay_len = payload != NULL ? strlen(payload) : 0;
  /* "CMD <<\nPAYLOAD\n\n", or "CMD\n". */
  size_t len = cmd_len + 1 + (payload != NULL ? 3 + pay_len + 2 : 0);
  char *msg = malloc(len + 1);
  if (msg == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  size_t n = 0;
  memcpy(msg, command, cmd_len);
  n = cmd_len;
  if (payload != NULL) {
    memcpy(msg + n, " <<\n", 4);
    n += 4;
    memcpy(msg + n, payload, pay_len);
    n += pay_len;
    if (pay_len > 0 && payload[pay_len - 1] != '\n') msg[n++] = '\n';
  }
  msg[n++] = '\n';
  uint64_t deadline = sock_deadline(timeout_ms != 0 ? timeout_ms : HAPROXY_DEFAULT_TIMEOUT_MS);
  int fd = connect_socket(socket, deadline, err);
  if (fd < 0) {
    free(msg);
    return 0;
  }
  int ok = sock_send_all(fd, msg, n, deadline, "haproxy", err);
  free(msg);
  size_t cap = 4096, got = 0;
  char *reply = ok ? malloc(cap) : NULL;
  if (ok && reply == NULL) {
    PKI_ERR_OOM(err);
    ok = 0;
  }
  /* Non-interactive mode: haproxy closes the connection after the reply. */
  while (ok) {
    if (got + 1 == cap) {
      if (cap >= HAPROXY_REPLY_MAX) {
        PKI_ERR(err, PKI_ERR_INVALID, "haproxy's reply is over %zu bytes", HAPROXY_REPLY_MAX);
        ok = 0;
        break;
      }
      char *grown = realloc(reply, cap * 2);
      if (grown == NULL) {
        PKI_ERR_OOM(err);
        ok = 0;
        break;
      }
      reply = grown;
      cap *= 2;
    }
    size_t r = 0;
    if (!sock_recv(fd, reply + got, cap - 1 - got, &r, deadline, "haproxy", err)) {
      ok = 0;
    } else if (r == 0) {
      break;
    }
    got += r;
  }
  close(fd);
  if (!ok) {
    free(reply);
    return 0;
  }
  reply[got] = '\0';
  *out_reply = reply;
  *out_len = got;
  return 1;
}

/* ---- replies ---- */

static const char *skip_space(const char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  return s;
}

int haproxy_reply_is_transaction(const char *reply) {
  const char *s = skip_space(reply);
  if (strncasecmp(s, "transaction created for ", 24) != 0 &&
      strncasecmp(s, "transaction updated for ", 24) != 0) {
    return 0;
  }
  /* One line, ending in '!', then nothing but the end of the output. */
  const char *nl = strchr(s, '\n');
  size_t line = nl != NULL ? (size_t)(nl - s) : strlen(s);
  if (line < 25 || s[line - 1] != '!') return 0;
  return nl == NULL || *skip_space(nl) == '\0';
}

int haproxy_reply_is_committed(const char *reply) {
  const char *s = skip_space(reply);
  if (strncmp(s, "Committing ", 11) != 0 || strstr(s, "Failed!") != NULL) return 0;
  /* The last non-empty line is "Success!". */
  size_t end = strlen(s);
  while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == '\r' || s[end - 1] == ' ')) end--;
  size_t start = end;
  while (start > 0 && s[start - 1] != '\n') start--;
  return end - start == 8 && memcmp(s + start, "Success!", 8) == 0;
}

/* quote writes haproxy's reply on one line, for a message. */
static void quote(char *out, size_t size, const char *reply) {
  size_t n = 0;
  const char *s = skip_space(reply);
  for (; *s != '\0' && n + 4 < size; s++) {
    if (*s == '\n') {
      if (*skip_space(s) == '\0') break;
      out[n++] = ' ';
      out[n++] = '|';
      out[n++] = ' ';
    } else if ((unsigned char)*s >= 0x20 && *s != 0x7f) {
      out[n++] = *s;
    }
  }
  out[n] = '\0';
  if (n == 0) snprintf(out, size, "(an empty reply)");
}

/* check_name refuses a file name haproxy would read as several words or
 * commands: its CLI splits on spaces and, in this mode, on ';' (9.3). */
static int check_name(const char *name, pki_err *err) {
  if (name[0] == '\0' || strpbrk(name, " \t;\\") != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "haproxy file name '%s' is empty or holds a space, ';' or '\\'", name);
    return 0;
  }
  for (const char *p = name; *p != '\0'; p++) {
    if ((unsigned char)*p < 0x20 || *p == 0x7f) {
      PKI_ERR(err, PKI_ERR_INVALID, "haproxy file name holds a control character");
      return 0;
    }
  }
  return 1;
}

static void abort_crl_file(const char *socket, const char *name, uint64_t timeout_ms) {
  char cmd[1200], *reply = NULL;
  size_t len;
  pki_err ignored;
  pki_err_clear(&ignored);
  snprintf(cmd, sizeof(cmd), "abort ssl crl-file %s", name);
  haproxy_run(&reply, &len, socket, cmd, NULL, timeout_ms, &ignored);
  free(reply);
}

int haproxy_update_crl_file(const char *socket, const char *name, const char *pem,
                            uint64_t timeout_ms, pki_err *err) {
  if (!check_name(name, err)) return 0;
  if (strlen(name) > 1000) {
    PKI_ERR(err, PKI_ERR_INVALID, "haproxy file name is too long");
    return 0;
  }
  char cmd[1200], *reply = NULL, said[400];
  size_t len;
  snprintf(cmd, sizeof(cmd), "set ssl crl-file %s", name);
  /* haproxy drops a command line and payload larger than its buffer
   * without a word, or resets the connection while it is being sent (9.3,
   * "Limitations do exist"). */
  char hint[200];
  snprintf(hint, sizeof(hint),
           "; %zu bytes of PEM may be over haproxy's tune.bufsize (16384 by default: raise it "
           "in its global section)",
           strlen(pem));
  int big = strlen(pem) + strlen(cmd) + 8 > 16000;
  if (!haproxy_run(&reply, &len, socket, cmd, pem, timeout_ms, err)) {
    pki_err_prefix(err, "set ssl crl-file %s: ", name);
    if (big && err->code == PKI_ERR_UNAVAILABLE && strlen(err->msg) + strlen(hint) < sizeof(err->msg)) {
      strcat(err->msg, hint);
    }
    return 0;
  }
  if (!haproxy_reply_is_transaction(reply)) {
    int empty = *skip_space(reply) == '\0';
    quote(said, sizeof(said), reply);
    free(reply);
    abort_crl_file(socket, name, timeout_ms);
    PKI_ERR(err, PKI_ERR_DENIED, "haproxy refused set ssl crl-file %s: %s%s", name, said,
            empty ? hint : "");
    return 0;
  }
  free(reply);
  snprintf(cmd, sizeof(cmd), "commit ssl crl-file %s", name);
  if (!haproxy_run(&reply, &len, socket, cmd, NULL, timeout_ms, err)) {
    pki_err_prefix(err, "commit ssl crl-file %s: ", name);
    abort_crl_file(socket, name, timeout_ms);
    return 0;
  }
  if (!haproxy_reply_is_committed(reply)) {
    quote(said, sizeof(said), reply);
    free(reply);
    abort_crl_file(socket, name, timeout_ms);
    PKI_ERR(err, PKI_ERR_DENIED, "haproxy did not commit crl-file %s: %s", name, said);
    return 0;
  }
  free(reply);
  return 1;
}
