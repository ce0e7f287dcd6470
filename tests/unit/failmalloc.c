/* failmalloc.c: the --wrap allocation functions of failmalloc.h. */
#include "tests/unit/failmalloc.h"

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

/* The real functions: ld --wrap=malloc resolves __real_malloc to malloc
 * (glibc's, or the sanitizer runtime's). */
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
DIR *__real_opendir(const char *name);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
DIR *__wrap_opendir(const char *name);

/* Provided by the sanitizer runtimes; absent (NULL) in an optimized build. */
void __sanitizer_print_stack_trace(void) __attribute__((weak));

static _Thread_local int g_armed;
static _Thread_local uint64_t g_fail_at; /* 0: count only */
static _Thread_local uint64_t g_count;
static _Thread_local int g_fired;
static _Thread_local failmalloc_kind g_fired_kind;
static _Thread_local int g_trace;

void failmalloc_arm(uint64_t n) {
  g_count = 0;
  g_fail_at = n;
  g_fired = 0;
  g_armed = 1;
}

uint64_t failmalloc_disarm(void) {
  g_armed = 0;
  return g_count;
}

int failmalloc_fired(failmalloc_kind *out_kind) {
  if (g_fired && out_kind != NULL) *out_kind = g_fired_kind;
  return g_fired;
}

const char *failmalloc_kind_name(failmalloc_kind kind) {
  switch (kind) {
    case FAILMALLOC_MALLOC: return "malloc";
    case FAILMALLOC_CALLOC: return "calloc";
    case FAILMALLOC_REALLOC: return "realloc";
    case FAILMALLOC_STRDUP: return "strdup";
    case FAILMALLOC_OPENDIR: return "opendir";
  }
  return "?";
}

void failmalloc_trace_next(int on) { g_trace = on; }

/* should_fail counts one allocation and says whether it is the one to fail. */
static int should_fail(failmalloc_kind kind) {
  if (!g_armed) return 0;
  g_count++;
  if (g_fail_at == 0 || g_count != g_fail_at) return 0;
  g_fired = 1;
  g_fired_kind = kind;
  if (g_trace) {
    g_trace = 0;
    fprintf(stderr, "  failmalloc: failing %s number %llu here:\n",
            failmalloc_kind_name(kind), (unsigned long long)g_count);
    if (__sanitizer_print_stack_trace != NULL) __sanitizer_print_stack_trace();
  }
  errno = ENOMEM;
  return 1;
}

void *__wrap_malloc(size_t size) {
  return should_fail(FAILMALLOC_MALLOC) ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size) {
  return should_fail(FAILMALLOC_CALLOC) ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size) {
  /* realloc(p, 0) frees: not an allocation that can fail usefully. */
  if (size == 0) return __real_realloc(p, size);
  return should_fail(FAILMALLOC_REALLOC) ? NULL : __real_realloc(p, size);
}

char *__wrap_strdup(const char *s) {
  return should_fail(FAILMALLOC_STRDUP) ? NULL : __real_strdup(s);
}

DIR *__wrap_opendir(const char *name) {
  return should_fail(FAILMALLOC_OPENDIR) ? NULL : __real_opendir(name);
}
