#include "lib/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Temporary names are "<path>.tmp.<pid>.<counter>.<nanoseconds>": the pid
 * and counter keep threads and processes of this program apart; O_EXCL
 * settles any remaining race, and a few retries get past a stale leftover. */
static atomic_uint tmp_counter;

/* write_all writes |len| bytes, going on after short writes and EINTR. */
static int write_all(int fd, const uint8_t *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    p += n;
    len -= (size_t)n;
  }
  return 1;
}

/* fsync_dir makes a rename in |dir| durable: the new directory entry is only
 * on disk once the directory itself is synced. */
static int fsync_dir(const char *dir, pki_err *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot open directory %s: %s", dir,
            strerror(errno));
    return 0;
  }
  if (fsync(fd) != 0 && errno != EINVAL) {
    /* EINVAL: a file system that cannot sync directories; the rename is as
     * durable there as it can be. */
    PKI_ERR(err, PKI_ERR_IO, "cannot sync directory %s: %s", dir,
            strerror(errno));
    close(fd);
    return 0;
  }
  close(fd);
  return 1;
}

int pki_file_write_atomic(const char *path, const void *data, size_t len,
                          mode_t mode, pki_err *err) {
  char dir[PATH_MAX];
  char tmp[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (path[0] == '\0' || (slash != NULL && slash[1] == '\0')) {
    PKI_ERR(err, PKI_ERR_INVALID, "cannot write \"%s\": not a file name", path);
    return 0;
  }
  if (slash == NULL) {
    strcpy(dir, ".");
  } else if (slash == path) {
    strcpy(dir, "/");
  } else {
    size_t dir_len = (size_t)(slash - path);
    if (dir_len >= sizeof(dir)) {
      PKI_ERR(err, PKI_ERR_INVALID, "cannot write %s: path too long", path);
      return 0;
    }
    memcpy(dir, path, dir_len);
    dir[dir_len] = '\0';
  }

  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%u.%ld", path,
                     (long)getpid(), atomic_fetch_add(&tmp_counter, 1),
                     (long)ts.tv_nsec);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
      PKI_ERR(err, PKI_ERR_INVALID, "cannot write %s: path too long", path);
      return 0;
    }
    fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot create a temporary file for %s: %s", path,
            strerror(errno));
    return 0;
  }

  /* open() applied the umask; the caller asked for |mode| exactly (a key
   * must be 0600 whatever the umask, a certificate 0644). */
  if (fchmod(fd, mode) != 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot set the mode of %s: %s", tmp,
            strerror(errno));
    goto fail;
  }
  if (!write_all(fd, data, len)) {
    PKI_ERR(err, PKI_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    goto fail;
  }
  if (fsync(fd) != 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot sync %s: %s", tmp, strerror(errno));
    goto fail;
  }
  int close_ret = close(fd);
  fd = -1;
  if (close_ret != 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
    goto fail;
  }
  if (rename(tmp, path) != 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot rename %s to %s: %s", tmp, path,
            strerror(errno));
    goto fail;
  }
  return fsync_dir(dir, err);

fail:
  if (fd >= 0) close(fd);
  unlink(tmp);
  return 0;
}

int pki_file_read(uint8_t **out, size_t *out_len, const char *path,
                  size_t max_len, pki_err *err) {
  *out = NULL;
  *out_len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    /* Out of descriptors or memory: worth trying again, unlike a file that
     * is not there or cannot be read. */
    PKI_ERR(err,
            e == ENOENT                                 ? PKI_ERR_NOT_FOUND
            : e == EMFILE || e == ENFILE || e == ENOMEM ? PKI_ERR_EXHAUSTED
                                                        : PKI_ERR_IO,
            "cannot open %s: %s", path, strerror(e));
    return 0;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    close(fd);
    return 0;
  }
  if (!S_ISREG(st.st_mode)) {
    PKI_ERR(err, PKI_ERR_INVALID, "cannot read %s: not a regular file", path);
    close(fd);
    return 0;
  }
  if ((uintmax_t)st.st_size > max_len) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s is too large (%jd bytes, at most %zu)",
            path, (intmax_t)st.st_size, max_len);
    close(fd);
    return 0;
  }

  /* The size from fstat is a hint: the file may change while we read, so
   * the loop grows the buffer and enforces |max_len| on what it reads. One
   * byte more than the content is kept for the NUL. */
  size_t cap = (size_t)st.st_size + 1;
  size_t len = 0;
  uint8_t *buf = malloc(cap);
  if (buf == NULL) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory reading %s", path);
    close(fd);
    return 0;
  }
  for (;;) {
    if (len + 1 == cap) {
      /* Full: a one-byte read tells the end of the file from growth. */
      uint8_t probe;
      ssize_t n;
      do {
        n = read(fd, &probe, 1);
      } while (n < 0 && errno == EINTR);
      if (n < 0) goto read_error;
      if (n == 0) break;
      if (len >= max_len) {
        PKI_ERR(err, PKI_ERR_INVALID, "%s is too large (more than %zu bytes)",
                path, max_len);
        goto fail;
      }
      size_t limit = max_len < SIZE_MAX ? max_len + 1 : SIZE_MAX;
      size_t new_cap = cap * 2;
      if (new_cap > limit || new_cap < cap) new_cap = limit;
      uint8_t *grown = realloc(buf, new_cap);
      if (grown == NULL) {
        PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory reading %s", path);
        goto fail;
      }
      buf = grown;
      cap = new_cap;
      buf[len++] = probe;
      continue;
    }
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      goto read_error;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return 1;

read_error:
  PKI_ERR(err, PKI_ERR_IO, "cannot read %s: %s", path, strerror(errno));
fail:
  free(buf);
  close(fd);
  return 0;
}

int pki_mkdirs(const char *dir, mode_t mode, pki_err *err) {
  char buf[PATH_MAX];
  size_t len = strlen(dir);
  if (len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "cannot create a directory with no name");
    return 0;
  }
  if (len >= sizeof(buf)) {
    PKI_ERR(err, PKI_ERR_INVALID, "cannot create %s: path too long", dir);
    return 0;
  }
  memcpy(buf, dir, len + 1);

  /* Create each prefix ending at a slash, then the whole path. */
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    if (buf[i - 1] == '/') continue; /* "a//b" or a trailing slash */
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, mode) == 0) {
      /* The new entry is durable only once its parent directory is synced
       * (fsync(2)): without this, a crash could lose the directory and
       * everything later written and synced inside it. */
      char *slash = strrchr(buf, '/');
      int ok;
      if (slash == NULL) {
        ok = fsync_dir(".", err);
      } else if (slash == buf) {
        ok = fsync_dir("/", err);
      } else {
        *slash = '\0';
        ok = fsync_dir(buf, err);
        *slash = '/';
      }
      if (!ok) {
        pki_err_prefix(err, "cannot create %s: ", dir);
        return 0;
      }
    } else {
      int e = errno;
      struct stat st;
      if (e != EEXIST || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (e == EEXIST) {
          PKI_ERR(err, PKI_ERR_IO, "cannot create %s: %s exists and is not a "
                  "directory", dir, buf);
        } else {
          PKI_ERR(err, PKI_ERR_IO, "cannot create %s: %s: %s", dir, buf,
                  strerror(e));
        }
        return 0;
      }
    }
    buf[i] = saved;
  }
  return 1;
}

int pki_file_exists(const char *path) {
  /* lstat: a dangling symbolic link is still a name that a rename would
   * replace, so it counts as existing. */
  struct stat st;
  return lstat(path, &st) == 0;
}
