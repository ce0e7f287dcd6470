/* failmalloc.h: fail the Nth allocation, to test out-of-memory paths (the
 * technique of nghttp2's tests/failmalloc_test.c).
 *
 * A test that depends on //tests/unit:failmalloc is linked with
 * -Wl,--wrap for malloc, calloc, realloc, strdup and opendir, so every call
 * to them from an object linked statically into the test (pkid's lib/,
 * BoringSSL, whose OPENSSL_malloc calls malloc, and libyaml when the test
 * links libyaml.a) goes through the __wrap_ functions of failmalloc.c.
 * opendir is there because it allocates its DIR inside glibc, where the
 * wrap cannot reach, and fails with ENOMEM when that allocation fails.
 * Allocations made inside shared libraries or inside glibc itself (stdio
 * buffers, qsort's scratch space) are not seen. Under ASan the __real_
 * functions are ASan's, so leaks of what did get allocated are still found.
 *
 * Only the thread that armed is counted and failed. A failed call returns
 * NULL with errno ENOMEM, and fails nothing else: the next call succeeds. */
#ifndef PKID_TESTS_UNIT_FAILMALLOC_H
#define PKID_TESTS_UNIT_FAILMALLOC_H

#include <stdint.h>

typedef enum failmalloc_kind {
  FAILMALLOC_MALLOC,
  FAILMALLOC_CALLOC,
  FAILMALLOC_REALLOC,
  FAILMALLOC_STRDUP,
  FAILMALLOC_OPENDIR,
} failmalloc_kind;

/* failmalloc_arm starts counting allocations on this thread and makes the
 * |n|th from now (1-based) fail; with |n| 0 it only counts. */
void failmalloc_arm(uint64_t n);

/* failmalloc_disarm stops counting and returns how many allocations were
 * counted since failmalloc_arm. */
uint64_t failmalloc_disarm(void);

/* failmalloc_fired reports whether the armed allocation was reached (and
 * failed) since the last failmalloc_arm; if so, |*out_kind| (may be NULL)
 * says which function it was. */
int failmalloc_fired(failmalloc_kind *out_kind);

/* failmalloc_kind_name returns "malloc", "calloc", ... */
const char *failmalloc_kind_name(failmalloc_kind kind);

/* failmalloc_trace_next: when the armed allocation fails, print the stack
 * that made it (only under a sanitizer, whose runtime can symbolize it). */
void failmalloc_trace_next(int on);

#endif /* PKID_TESTS_UNIT_FAILMALLOC_H */
