/* sock.c: stream sockets with a deadline (see sock.h). */
#include "lib/sock.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

uint64_t sock_deadline(uint64_t timeout_ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + timeout_ms;
}

/* wait_for polls |fd| for |events| until the deadline: 1 when ready, 0 on
 * timeout or error (|err| set). */
static int wait_for(int fd, short events, uint64_t deadline_ms, const char *what,
                    const char *doing, pki_err *err) {
  for (;;) {
    uint64_t now = sock_deadline(0);
    if (now >= deadline_ms) {
      PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s: timed out %s", what, doing);
      return 0;
    }
    uint64_t left = deadline_ms - now;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
    if (n > 0) return 1; /* errors and hang-ups show in the next call */
    if (n < 0 && errno != EINTR) {
      PKI_ERR(err, PKI_ERR_IO, "%s: poll: %s", what, strerror(errno));
      return 0;
    }
  }
}

/* connect_fd finishes a non-blocking connect of |fd| to |addr|. */
static int connect_fd(int fd, const struct sockaddr *addr, socklen_t addr_len,
                      uint64_t deadline_ms, const char *what, pki_err *err) {
  if (connect(fd, addr, addr_len) == 0) return 1;
  if (errno != EINPROGRESS && errno != EINTR) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s: connect: %s", what, strerror(errno));
    return 0;
  }
  if (!wait_for(fd, POLLOUT, deadline_ms, what, "connecting", err)) return 0;
  int so_error = 0;
  socklen_t len = sizeof(so_error);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
  if (so_error != 0) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s: connect: %s", what, strerror(so_error));
    return 0;
  }
  return 1;
}

int sock_connect_tcp(const char *host, const char *port, uint64_t deadline_ms,
                     const char *what, pki_err *err) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    PKI_ERR(err, rc == EAI_AGAIN ? PKI_ERR_UNAVAILABLE : PKI_ERR_INVALID,
            "%s: cannot resolve '%s': %s", what, host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      PKI_ERR(err, PKI_ERR_IO, "%s: socket: %s", what, strerror(errno));
      continue;
    }
    if (!connect_fd(fd, ai->ai_addr, ai->ai_addrlen, deadline_ms, what, err)) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

int sock_connect_unix(const char *path, uint64_t deadline_ms, const char *what, pki_err *err) {
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sun.sun_path)) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: socket path '%s' is longer than %zu bytes", what, path,
            sizeof(sun.sun_path) - 1);
    return -1;
  }
  memcpy(sun.sun_path, path, strlen(path));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "%s: socket: %s", what, strerror(errno));
    return -1;
  }
  if (!connect_fd(fd, (const struct sockaddr *)&sun, sizeof(sun), deadline_ms, what, err)) {
    close(fd);
    return -1;
  }
  return fd;
}

int sock_send_all(int fd, const void *data, size_t len, uint64_t deadline_ms, const char *what,
                  pki_err *err) {
  const uint8_t *p = data;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd, POLLOUT, deadline_ms, what, "sending", err)) return 0;
      continue;
    }
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s: send: %s", what, strerror(errno));
    return 0;
  }
  return 1;
}

int sock_recv(int fd, void *buf, size_t cap, size_t *out_n, uint64_t deadline_ms,
              const char *what, pki_err *err) {
  for (;;) {
    ssize_t n = recv(fd, buf, cap, 0);
    if (n >= 0) {
      *out_n = (size_t)n;
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(fd, POLLIN, deadline_ms, what, "waiting for the reply", err)) return 0;
      continue;
    }
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s: recv: %s", what, strerror(errno));
    return 0;
  }
}
