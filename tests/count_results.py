#!/usr/bin/python3
"""count_results: counts test cases in JUnit files under a folder.

Prints one line, "N passed, N failed", and exits 1 if any failed. A case
failed if it holds a <failure> or <error> element."""
import os
import sys
import xml.etree.ElementTree as ET


def main():
    passed = failed = 0
    for root, _, files in os.walk(sys.argv[1]):
        for f in files:
            if not f.endswith(".xml"):
                continue
            path = os.path.join(root, f)
            try:
                tree = ET.parse(path)
            except ET.ParseError:
                print("unreadable results: %s" % path, file=sys.stderr)
                failed += 1
                continue
            for case in tree.iter("testcase"):
                bad = case.find("failure")
                if bad is None:
                    bad = case.find("error")
                if bad is not None:
                    failed += 1
                    # The message too: CI shows only this output, not the logs.
                    why = " ".join((bad.get("message") or bad.text or "").split())[:500]
                    print("failed: %s %s: %s" % (path, case.get("name"), why), file=sys.stderr)
                else:
                    passed += 1
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
