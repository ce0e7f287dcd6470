#!/usr/bin/env bash
# run.sh: every test of pkid, the command README.md gives and CI runs.
#
# It prepares the machine (deploy/setup.sh), then runs the whole Bazel test
# suite twice, optimized and under AddressSanitizer + UndefinedBehavior-
# Sanitizer, runs the concurrent parts (tests tagged "tsan") under
# ThreadSanitizer, checks that the server's layers point down
# (tests/layering_test.py), builds each libFuzzer target and runs it
# briefly on its corpus, and ends with one line "N passed, N failed"
# counted from the JUnit results of every case (tests/count_results.py).
#
# Environment: FUZZ_SECONDS (default 20) per fuzz target.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

"$top/deploy/setup.sh" || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

results="$top/.test-results"
rm -rf "$results" && mkdir -p "$results"
fuzz_seconds=${FUZZ_SECONDS:-20}
status=0

# synthetic_case NAME MESSAGE: record a failure that has no JUnit file of its
# own (a build that broke, a fuzzer that crashed), so the count shows it.
synthetic_case() {
  local name=$1 message=$2 file="$results/synthetic-$(echo "$1" | tr -c 'a-zA-Z0-9' _).xml"
  /usr/bin/python3 - "$file" "$name" "$message" <<'PY'
import sys, xml.sax.saxutils as s
path, name, msg = sys.argv[1:]
with open(path, "w") as f:
    f.write('<testsuites><testsuite name="run.sh"><testcase name=%s>%s</testcase></testsuite></testsuites>\n'
            % (s.quoteattr(name), "" if msg == "pass" else "<failure message=%s/>" % s.quoteattr(msg)))
PY
}

# bazel_tests CONFIG: run the suite in one configuration, keep its results.
bazel_tests() {
  local config=$1
  shift
  echo "=== bazel test --config=$config $* //..."
  local out="$results/bazel-$config.log"
  bazel test --config="$config" "$@" //... 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  # 0: all passed; 3: built, some tests failed (their XML says which).
  if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then
    synthetic_case "bazel test --config=$config" "bazel exited $rc (build failure?)"
  fi
  # A test binary can fail after its cases passed (a sanitizer's leak
  # report at exit, a crash in teardown): its XML says nothing, so each
  # target Bazel reports failed counts once more here.
  local target
  for target in $(grep -oE '^//[^ ]+ +(FAILED|TIMEOUT|FLAKY)' "$out" | cut -d' ' -f1 | sort -u); do
    synthetic_case "$config $target" "bazel reports the target failed; see its test.log"
  done
  [ $rc -eq 0 ] || status=1
  mkdir -p "$results/$config"
  local logs
  logs=$(bazel info --config="$config" bazel-testlogs 2>/dev/null)
  (cd "$logs" && find . -name test.xml -exec cp --parents {} "$results/$config/" \;)
}

bazel_tests opt
# Tests tagged "slow" (minutes of load on real clusters) run once, above.
bazel_tests asan --test_tag_filters=-slow
# The concurrent parts (tests tagged "tsan") under ThreadSanitizer.
bazel_tests tsan --test_tag_filters=tsan --build_tests_only

# The layers point down: checked on the build graph, which only a query
# outside the test sandbox can see (tests/layering_test.py).
echo "=== layering"
/usr/bin/python3 "$top/tests/layering_test.py" --junit "$results/layering.xml" || status=1

# Fuzz targets: each parser's, built with libFuzzer + ASan + UBSan.
echo "=== fuzz targets, ${fuzz_seconds}s each"
targets=$(bazel query 'attr(tags, "manual", kind("cc_binary", //tests/fuzz:*))' 2>/dev/null)
if ! bazel build --config=fuzz $targets; then
  synthetic_case "bazel build --config=fuzz" "fuzz targets did not build"
  status=1
else
  fuzz_bin=$(bazel info --config=fuzz bazel-bin 2>/dev/null)
  for t in $targets; do
    name=${t##*:}
    bin="$fuzz_bin/tests/fuzz/$name"
    work=$(mktemp -d)
    cp -r "$top/tests/fuzz/corpus/$name/." "$work/" 2>/dev/null
    if (cd "$work" && "$bin" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
          -print_final_stats=1 . >"$results/fuzz-$name.log" 2>&1); then
      synthetic_case "fuzz:$name" pass
      echo "fuzz $name: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$results/fuzz-$name.log")"
    else
      synthetic_case "fuzz:$name" "fuzzer found a failure; see .test-results/fuzz-$name.log"
      tail -n 40 "$results/fuzz-$name.log"
      status=1
    fi
    rm -rf "$work"
  done
fi

summary=$(/usr/bin/python3 "$top/tests/count_results.py" "$results") || status=1
[ "${summary#0 passed}" = "$summary" ] || status=1
echo "$summary"
exit $status
