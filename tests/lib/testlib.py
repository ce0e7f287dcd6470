"""testlib.py: the harness for Python tests, twin of testlib.sh and test.h.

    from testlib import run, finish
    run("name", fn)   # a case fails if fn raises
    finish()          # prints "N passed, N failed", writes JUnit, exits

Results go to $XML_OUTPUT_FILE (set by Bazel) so CI counts cases. Tests run
under Debian's /usr/bin/python3, which sees python3-cryptography and
python3-grpcio."""
import os
import sys
import traceback
import xml.sax.saxutils

RESULTS = []


def run(name, fn):
    try:
        fn()
        RESULTS.append((name, None))
        print("ok   " + name, flush=True)
    except Exception as e:  # noqa: BLE001 - any failure of a case is reported
        # The XML's message is the exception whole (its first line alone may
        # say only "pkid did not start"), or for a bare assert, its line.
        text = str(e) or traceback.extract_tb(e.__traceback__)[-1].line
        RESULTS.append((name, "%s: %s" % (type(e).__name__, text)))
        print("FAIL " + name, flush=True)
        print(traceback.format_exc(), flush=True)


def finish():
    failed = sum(1 for _, err in RESULTS if err)
    print("%d passed, %d failed" % (len(RESULTS) - failed, failed))
    out = os.environ.get("XML_OUTPUT_FILE")
    if out:
        esc = xml.sax.saxutils.quoteattr
        with open(out, "w") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n')
            f.write("<testsuite name=%s tests=\"%d\" failures=\"%d\">\n" % (
                esc(os.environ.get("TEST_TARGET", "python")), len(RESULTS), failed))
            for name, err in RESULTS:
                if err:
                    f.write("  <testcase name=%s><failure message=%s/></testcase>\n" % (
                        esc(name), esc(err)))
                else:
                    f.write("  <testcase name=%s></testcase>\n" % esc(name))
            f.write("</testsuite>\n</testsuites>\n")
    sys.exit(1 if failed else 0)
