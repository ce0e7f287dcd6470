/* faultfs: an LD_PRELOAD library that makes chosen file-system calls of a
 * real program fail, so that tests can drive pkid against a failing disk.
 *
 *   LD_PRELOAD=/abs/path/libfaultfs.so PKID_FAULT=fdatasync:EIO:3:.seg pkid ...
 *
 * PKID_FAULT is a comma-separated list of rules CALL:ERRNO:N[+][:SUBSTRING]
 *   CALL       fdatasync, fsync, write, pwrite (pwrite and pwrite64), open
 *              (open, open64, openat, openat64), ftruncate (ftruncate and
 *              ftruncate64)
 *   ERRNO      a name (EIO, ENOSPC, EDQUOT, EMFILE, ENFILE, ...; see
 *              errno_names) or a decimal number
 *   N          the rule fails the Nth call it counts (1: the first); "N+"
 *              fails the Nth and every later one
 *   SUBSTRING  the rule counts only calls whose path contains it: the path
 *              being opened (made absolute), or for the other calls the
 *              path of the descriptor (/proc/self/fd/FD). Empty or absent:
 *              every call of CALL.
 * Every rule counts every call it matches, with an atomic counter (pkid's
 * committer thread does the journal's I/O); a call fails with the errno of
 * the first rule that fires for it. A failed call does not reach the
 * kernel: nothing is written, synced or opened. Every other call goes to
 * the kernel unchanged, through syscall(2), so that the wrappers need no
 * dlsym and work from the first call, even one made while a library is
 * being initialised.
 *
 * PKID_FAULT_LOG, when set and not empty, makes each injected failure print
 * "faultfs: CALL #K PATH: ERRNO" on stderr. A rule that does not parse makes
 * the program exit with status 127 before main, saying why: a test must not
 * pass because its fault was never armed.
 *
 * Only calls through the dynamic symbols above are seen. glibc's own calls
 * (stdio's writes, for one) do not go through them, nor do other names
 * (writev, pwritev, sync_file_range, creat). pkid's lib/journal.o and
 * lib/file.o call open, pwrite, write, fsync, fdatasync and ftruncate
 * (nm -u bazel-bin/lib/_objs/journal/journal.o). Under ASan or TSan the
 * sanitizer's interceptors in the program run first and then call these. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

enum call { C_FDATASYNC, C_FSYNC, C_WRITE, C_PWRITE, C_OPEN, C_FTRUNCATE,
            C_COUNT };

static const char *const call_names[C_COUNT] = {
    "fdatasync", "fsync", "write", "pwrite", "open", "ftruncate"};

static const struct {
  const char *name;
  int value;
} errno_names[] = {
    {"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT},
    {"EMFILE", EMFILE}, {"ENFILE", ENFILE}, {"EROFS", EROFS},
    {"EFBIG", EFBIG},   {"EINTR", EINTR},   {"EAGAIN", EAGAIN},
    {"EBADF", EBADF},   {"EACCES", EACCES}, {"EPERM", EPERM},
    {"ENOENT", ENOENT}, {"EEXIST", EEXIST}, {"ENOMEM", ENOMEM},
    {"EINVAL", EINVAL},
};

#define MAX_RULES 16
#define MAX_SUBSTRING 256

typedef struct rule {
  int call;
  int err;
  unsigned long n;
  int from_n_on;
  char sub[MAX_SUBSTRING];
  atomic_ulong count; /* calls this rule has matched */
} rule;

/* Written once by the constructor, before any other thread exists; read
 * only afterwards. |ready| publishes them. */
static rule rules[MAX_RULES];
static int num_rules;
static int wanted[C_COUNT]; /* some rule names this call */
static int log_faults;
static atomic_int ready;

/* say writes to stderr without going through our own write(). */
static void say(const char *s) {
  size_t len = strlen(s);
  while (len > 0) {
    long n = syscall(SYS_write, 2, s, len);
    if (n <= 0) return;
    s += n;
    len -= (size_t)n;
  }
}

static void die(const char *rule_text, const char *why) {
  char msg[512];
  snprintf(msg, sizeof(msg), "faultfs: bad PKID_FAULT rule \"%s\": %s\n",
           rule_text, why);
  say(msg);
  _exit(127);
}

static int parse_errno(const char *s) {
  for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++) {
    if (strcmp(s, errno_names[i].name) == 0) return errno_names[i].value;
  }
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v <= 0 || v > 4095) return 0;
  return (int)v;
}

static const char *errno_name(int e) {
  for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++) {
    if (errno_names[i].value == e) return errno_names[i].name;
  }
  return "errno";
}

/* parse_rule reads one CALL:ERRNO:N[+][:SUBSTRING] (|text| is modified). */
static void parse_rule(char *text, const char *orig, rule *r) {
  char *fields[4] = {NULL, NULL, NULL, NULL};
  int nf = 0;
  char *p = text;
  /* The substring is the rest after the third colon: it may hold colons. */
  while (nf < 3) {
    fields[nf++] = p;
    char *colon = strchr(p, ':');
    if (colon == NULL) break;
    *colon = '\0';
    p = colon + 1;
    if (nf == 3) fields[nf++] = p;
  }
  if (nf < 3) die(orig, "want CALL:ERRNO:N[+][:SUBSTRING]");
  r->call = -1;
  for (int c = 0; c < C_COUNT; c++) {
    if (strcmp(fields[0], call_names[c]) == 0) r->call = c;
  }
  if (r->call < 0) {
    die(orig, "CALL is not one of fdatasync, fsync, write, pwrite, open, "
              "ftruncate");
  }
  r->err = parse_errno(fields[1]);
  if (r->err == 0) die(orig, "ERRNO is not a known name or a number");
  size_t len = strlen(fields[2]);
  if (len > 0 && fields[2][len - 1] == '+') {
    r->from_n_on = 1;
    fields[2][len - 1] = '\0';
  }
  char *end;
  errno = 0;
  r->n = strtoul(fields[2], &end, 10);
  if (errno != 0 || end == fields[2] || *end != '\0' || r->n == 0 ||
      fields[2][0] == '-') {
    die(orig, "N is not a number from 1");
  }
  const char *sub = nf == 4 ? fields[3] : "";
  if (strlen(sub) >= MAX_SUBSTRING) die(orig, "SUBSTRING is too long");
  strcpy(r->sub, sub);
  atomic_init(&r->count, 0);
}

__attribute__((constructor)) static void faultfs_init(void) {
  const char *spec = getenv("PKID_FAULT");
  const char *lg = getenv("PKID_FAULT_LOG");
  log_faults = lg != NULL && lg[0] != '\0';
  if (spec != NULL && spec[0] != '\0') {
    char copy[4096];
    if (strlen(spec) >= sizeof(copy)) die(spec, "PKID_FAULT is too long");
    strcpy(copy, spec);
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
      if (num_rules == MAX_RULES) die(item, "more than 16 rules");
      char text[4096];
      strcpy(text, item);
      rule *r = &rules[num_rules++];
      parse_rule(text, item, r);
      wanted[r->call] = 1;
    }
  }
  atomic_store_explicit(&ready, 1, memory_order_release);
}

/* fd_path finds the path of descriptor |fd|; "" if it has none. */
static void fd_path(int fd, char *out, size_t size) {
  char link[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, size - 1);
  out[n > 0 ? n : 0] = '\0';
}

/* open_path makes |path|, as open or openat (relative to |dirfd|) sees it,
 * absolute, so that rules match it as they match a descriptor's path. */
static void open_path(int dirfd, const char *path, char *out, size_t size) {
  if (path[0] == '/') {
    snprintf(out, size, "%s", path);
    return;
  }
  char dir[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (getcwd(dir, sizeof(dir)) == NULL) dir[0] = '\0';
  } else {
    fd_path(dirfd, dir, sizeof(dir));
  }
  snprintf(out, size, "%s/%s", dir, path);
}

/* injected decides whether this call fails: each rule for |call| whose
 * substring the call's path contains counts it. It returns the errno of
 * the first rule that fires, 0 to let the call through. The path is that
 * of |fd|, or of |path| opened relative to |dirfd| when |path| is set. */
static int injected(int call, int fd, int dirfd, const char *path) {
  if (!atomic_load_explicit(&ready, memory_order_acquire) || !wanted[call]) {
    return 0;
  }
  char where[2 * PATH_MAX];
  int have_where = 0;
  int err = 0;
  unsigned long nth = 0;
  for (int i = 0; i < num_rules; i++) {
    rule *r = &rules[i];
    if (r->call != call) continue;
    if (r->sub[0] != '\0' || log_faults) {
      if (!have_where) {
        if (path != NULL) {
          open_path(dirfd, path, where, sizeof(where));
        } else {
          fd_path(fd, where, sizeof(where));
        }
        have_where = 1;
      }
      if (strstr(where, r->sub) == NULL) continue;
    }
    unsigned long k =
        atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed) + 1;
    if (err == 0 && (k == r->n || (r->from_n_on && k > r->n))) {
      err = r->err;
      nth = k;
    }
  }
  if (err != 0 && log_faults) {
    char msg[2 * PATH_MAX + 128];
    snprintf(msg, sizeof(msg), "faultfs: %s #%lu %s: %s\n", call_names[call],
             nth, where, errno_name(err));
    say(msg);
  }
  return err;
}

/* FAIL_IF returns -1 with errno set when a rule fires for this call. */
#define FAIL_IF(call, fd, dirfd, path)               \
  do {                                               \
    int e_ = injected((call), (fd), (dirfd), (path)); \
    if (e_ != 0) {                                   \
      errno = e_;                                    \
      return -1;                                     \
    }                                                \
  } while (0)

int fdatasync(int fd) {
  FAIL_IF(C_FDATASYNC, fd, 0, NULL);
  return (int)syscall(SYS_fdatasync, fd);
}

int fsync(int fd) {
  FAIL_IF(C_FSYNC, fd, 0, NULL);
  return (int)syscall(SYS_fsync, fd);
}

ssize_t write(int fd, const void *buf, size_t n) {
  FAIL_IF(C_WRITE, fd, 0, NULL);
  return (ssize_t)syscall(SYS_write, fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  FAIL_IF(C_PWRITE, fd, 0, NULL);
  return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
  FAIL_IF(C_PWRITE, fd, 0, NULL);
  return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}

int ftruncate(int fd, off_t len) {
  FAIL_IF(C_FTRUNCATE, fd, 0, NULL);
  return (int)syscall(SYS_ftruncate, fd, len);
}

int ftruncate64(int fd, off64_t len) {
  FAIL_IF(C_FTRUNCATE, fd, 0, NULL);
  return (int)syscall(SYS_ftruncate, fd, len);
}

/* The mode argument is there only when the flags create a file (open(2)). */
#define OPEN_MODE(flags, mode, last)                                       \
  do {                                                                     \
    if (((flags) & O_CREAT) != 0 || ((flags) & O_TMPFILE) == O_TMPFILE) { \
      va_list ap_;                                                         \
      va_start(ap_, last);                                                 \
      (mode) = (mode_t)va_arg(ap_, int);                                   \
      va_end(ap_);                                                         \
    }                                                                      \
  } while (0)

/* 64-bit Linux opens every file as if O_LARGEFILE were given, so open64 is
 * open, and openat64 openat. */
static int do_openat(int dirfd, const char *path, int flags, mode_t mode) {
  FAIL_IF(C_OPEN, -1, dirfd, path);
  return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

int open(const char *path, int flags, ...) {
  mode_t mode = 0;
  OPEN_MODE(flags, mode, flags);
  return do_openat(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...) {
  mode_t mode = 0;
  OPEN_MODE(flags, mode, flags);
  return do_openat(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
  mode_t mode = 0;
  OPEN_MODE(flags, mode, flags);
  return do_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
  mode_t mode = 0;
  OPEN_MODE(flags, mode, flags);
  return do_openat(dirfd, path, flags, mode);
}
