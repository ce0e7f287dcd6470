/* test.h: the unit-test harness.
 *
 * A test file defines cases with TEST(name), checks with CHECK(cond) (which
 * records a failure and goes on) or REQUIRE(cond) (which ends the case), and
 * lists its cases in main with RUN(name), ending with `return test_finish();`.
 *
 * Each case's result is printed, and written as a JUnit <testcase> to the
 * file Bazel names in $XML_OUTPUT_FILE, so CI counts cases, not binaries.
 * Header-only so that a test can also #include the .c file it tests. */
#ifndef PKID_TESTS_UNIT_TEST_H
#define PKID_TESTS_UNIT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEST_MAX_CASES 512

typedef struct test_case_result {
  const char *name;
  int failed;
  double seconds;
  char first_failure[512];
} test_case_result;

static test_case_result test_results[TEST_MAX_CASES];
static int test_num_cases;
static test_case_result *test_current;

static void test_fail_at(const char *file, int line, const char *what) {
  fprintf(stderr, "  %s:%d: check failed: %s\n", file, line, what);
  if (test_current != NULL && !test_current->failed) {
    snprintf(test_current->first_failure, sizeof(test_current->first_failure),
             "%s:%d: %s", file, line, what);
  }
  if (test_current != NULL) test_current->failed = 1;
}

#define TEST(name) static void name(void)

#define CHECK(cond) \
  do { if (!(cond)) test_fail_at(__FILE__, __LINE__, #cond); } while (0)

#define REQUIRE(cond) \
  do { if (!(cond)) { test_fail_at(__FILE__, __LINE__, #cond); return; } } while (0)

static double test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_run(const char *name, void (*fn)(void)) {
  if (test_num_cases >= TEST_MAX_CASES) {
    fprintf(stderr, "too many test cases\n");
    exit(2);
  }
  test_current = &test_results[test_num_cases++];
  test_current->name = name;
  double start = test_now();
  fn();
  test_current->seconds = test_now() - start;
  printf("%s %s\n", test_current->failed ? "FAIL" : "ok  ", name);
  fflush(stdout);
  test_current = NULL;
}

#define RUN(name) test_run(#name, name)

static void test_xml_escaped(FILE *f, const char *s) {
  for (; *s != '\0'; s++) {
    switch (*s) {
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '&': fputs("&amp;", f); break;
      case '"': fputs("&quot;", f); break;
      default: fputc(*s, f);
    }
  }
}

/* test_finish prints the totals, writes the JUnit file and returns the exit
 * status: 0 when every case passed. */
static int test_finish(void) {
  int failed = 0;
  for (int i = 0; i < test_num_cases; i++) failed += test_results[i].failed;
  printf("%d passed, %d failed\n", test_num_cases - failed, failed);
  const char *xml = getenv("XML_OUTPUT_FILE");
  if (xml != NULL && xml[0] != '\0') {
    FILE *f = fopen(xml, "w");
    if (f != NULL) {
      const char *suite = getenv("TEST_TARGET");
      if (suite == NULL) suite = "unit";
      fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
      fprintf(f, "<testsuite name=\"");
      test_xml_escaped(f, suite);
      fprintf(f, "\" tests=\"%d\" failures=\"%d\">\n", test_num_cases, failed);
      for (int i = 0; i < test_num_cases; i++) {
        fprintf(f, "  <testcase name=\"%s\" time=\"%.3f\">", test_results[i].name,
                test_results[i].seconds);
        if (test_results[i].failed) {
          fprintf(f, "<failure message=\"");
          test_xml_escaped(f, test_results[i].first_failure);
          fprintf(f, "\"/>");
        }
        fprintf(f, "</testcase>\n");
      }
      fprintf(f, "</testsuite>\n</testsuites>\n");
      fclose(f);
    }
  }
  return failed == 0 ? 0 : 1;
}

#endif /* PKID_TESTS_UNIT_TEST_H */
