/* fault_probe: a fixed script of file-system calls for faultfs_test.sh,
 * which runs it under LD_PRELOAD=libfaultfs.so with PKID_FAULT rules and
 * checks that exactly the calls the rules name failed, with their errno.
 *
 *   fault_probe script DIR    open a.seg, b.log and c.seg in DIR, then four
 *                             rounds of write, pwrite, pwrite64, fsync,
 *                             fdatasync, ftruncate, ftruncate64 on each, and
 *                             three rounds of open, open64, openat, openat64;
 *                             one line per call, "CALL FILE ROUND RESULT"
 *                             (RESULT "ok" or the errno's name), then the
 *                             bytes that reached each file, "bytes FILE N"
 *                             (10 per write that went through)
 *   fault_probe threads DIR T N   T threads each fdatasync DIR/a.seg N times;
 *                             prints "failed K", the calls that failed
 *
 * The files are opened with the kernel's openat, not open(), in the script
 * so that an open rule cannot take them away from the later calls. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *name_of(int e) {
  switch (e) {
    case EIO: return "EIO";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EBADF: return "EBADF";
    default: return "other";
  }
}

static void report(const char *call, const char *file, int round, long r) {
  printf("%s %s %d %s\n", call, file, round, r < 0 ? name_of(errno) : "ok");
}

/* raw_open opens with the kernel directly, past any wrapper. */
static int raw_open(const char *dir, const char *name) {
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  return (int)syscall(SYS_openat, AT_FDCWD, path,
                      O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
}

static int script(const char *dir) {
  static const char *const names[3] = {"a.seg", "b.log", "c.seg"};
  int fds[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = raw_open(dir, names[i]);
    if (fds[i] < 0) {
      perror(names[i]);
      return 1;
    }
  }
  static const char ten[10] = "0123456789";
  for (int round = 1; round <= 4; round++) {
    for (int i = 0; i < 3; i++) {
      int fd = fds[i];
      const char *f = names[i];
      struct stat st;
      off_t end = fstat(fd, &st) == 0 ? st.st_size : 0;
      report("write", f, round, (long)write(fd, ten, sizeof(ten)));
      report("pwrite", f, round, (long)pwrite(fd, ten, sizeof(ten), end + 10));
      report("pwrite64", f, round,
             (long)pwrite64(fd, ten, sizeof(ten), end + 20));
      report("fsync", f, round, fsync(fd));
      report("fdatasync", f, round, fdatasync(fd));
      /* Keep what was written: cut at the current size. */
      if (fstat(fd, &st) != 0) return 1;
      report("ftruncate", f, round, ftruncate(fd, st.st_size));
      report("ftruncate64", f, round, ftruncate64(fd, st.st_size));
      if (lseek(fd, 0, SEEK_END) < 0) return 1;
    }
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    perror(dir);
    return 1;
  }
  for (int round = 1; round <= 3; round++) {
    for (int i = 0; i < 3; i++) {
      char path[PATH_MAX];
      snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      report("open", names[i], round, fd);
      if (fd >= 0) close(fd);
      fd = open64(path, O_RDONLY | O_CLOEXEC);
      report("open64", names[i], round, fd);
      if (fd >= 0) close(fd);
      fd = openat(dfd, names[i], O_RDONLY | O_CLOEXEC);
      report("openat", names[i], round, fd);
      if (fd >= 0) close(fd);
      fd = openat64(dfd, names[i], O_RDONLY | O_CLOEXEC);
      report("openat64", names[i], round, fd);
      if (fd >= 0) close(fd);
    }
  }
  close(dfd);
  /* Every write that went through put 10 non-zero bytes at a place of its
   * own; one that failed left a hole of zeros, or nothing. */
  for (int i = 0; i < 3; i++) {
    long bytes = 0;
    char buf[512];
    ssize_t n;
    for (off_t off = 0; (n = pread(fds[i], buf, sizeof(buf), off)) > 0;
         off += n) {
      for (ssize_t k = 0; k < n; k++) bytes += buf[k] != 0;
    }
    printf("bytes %s %ld\n", names[i], bytes);
    close(fds[i]);
  }
  return 0;
}

static int sync_fd;
static int sync_rounds;
static atomic_int sync_failures;

static void *sync_loop(void *arg) {
  (void)arg;
  for (int i = 0; i < sync_rounds; i++) {
    if (fdatasync(sync_fd) != 0) {
      if (errno != EIO) abort();
      atomic_fetch_add(&sync_failures, 1);
    }
  }
  return NULL;
}

static int threads(const char *dir, int num, int rounds) {
  sync_fd = raw_open(dir, "a.seg");
  if (sync_fd < 0 || num < 1 || num > 64) return 1;
  sync_rounds = rounds;
  pthread_t t[64];
  for (int i = 0; i < num; i++) {
    if (pthread_create(&t[i], NULL, sync_loop, NULL) != 0) return 1;
  }
  for (int i = 0; i < num; i++) pthread_join(t[i], NULL);
  printf("failed %d\n", atomic_load(&sync_failures));
  close(sync_fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "script") == 0) return script(argv[2]);
  if (argc == 5 && strcmp(argv[1], "threads") == 0) {
    return threads(argv[2], atoi(argv[3]), atoi(argv[4]));
  }
  fprintf(stderr, "usage: fault_probe script DIR | threads DIR T N\n");
  return 2;
}
