# testlib.sh: the harness for shell tests, the shell twin of tests/unit/test.h.
#
# A test script defines one function per case, then calls
#   t_run NAME FUNCTION     (for each case)
#   t_finish                (last: prints totals, writes JUnit, sets the exit)
# A case fails when its function returns non-zero; `t_check CMD...` and
# `t_expect_fail WORDS CMD...` say what went wrong before returning 1.
# Results go to $XML_OUTPUT_FILE (set by Bazel) so CI counts cases.
# Every case runs in a subshell with `set -e`-free control, in its own
# scratch folder $T_DIR under $TEST_TMPDIR.

# Tests write passphrases and keys: readable by their owner only, as pkid
# and pkictl require of a passphrase file.
umask 077

T_NAMES=()
T_RESULTS=()
T_MESSAGES=()
T_TMP=${TEST_TMPDIR:-$(mktemp -d)}
T_PIDS=()

# t_log prints a diagnostic to stderr.
t_log() { printf '  %s\n' "$*" >&2; }

# t_check runs a command and reports it when it fails.
t_check() {
  if ! "$@"; then
    t_log "failed: $*"
    return 1
  fi
}

# t_expect_fail WORDS CMD...: CMD must exit non-zero and its stderr must
# contain WORDS (a grep -E pattern).
t_expect_fail() {
  local words=$1
  shift
  local out
  if out=$("$@" 2>&1 >/dev/null); then
    t_log "expected failure, but it succeeded: $*"
    return 1
  fi
  if ! grep -qE -- "$words" <<<"$out"; then
    t_log "error message lacks /$words/: $out"
    return 1
  fi
  return 0
}

# t_spawn starts a background process that t_finish will stop.
t_spawn() {
  "$@" &
  T_PIDS+=($!)
}

t_run() {
  local name=$1 fn=$2
  export T_DIR="$T_TMP/$name"
  rm -rf "$T_DIR" && mkdir -p "$T_DIR"
  local log="$T_TMP/$name.log"
  (cd "$T_DIR" && "$fn") >"$log" 2>&1
  local rc=$?
  T_NAMES+=("$name")
  if [ $rc -eq 0 ]; then
    T_RESULTS+=(pass)
    T_MESSAGES+=("")
    printf 'ok   %s\n' "$name"
  else
    T_RESULTS+=(fail)
    T_MESSAGES+=("$(tail -n 5 "$log" | tr '\n' ' ' | cut -c1-400)")
    printf 'FAIL %s\n' "$name"
    sed 's/^/     /' "$log"
  fi
}

t_xml_escape() {
  sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g' <<<"$1"
}

t_finish() {
  local pid
  for pid in "${T_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  local passed=0 failed=0 i
  for i in "${!T_NAMES[@]}"; do
    if [ "${T_RESULTS[$i]}" = pass ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  echo "$passed passed, $failed failed"
  if [ -n "${XML_OUTPUT_FILE:-}" ]; then
    {
      echo '<?xml version="1.0" encoding="UTF-8"?>'
      echo '<testsuites>'
      echo "<testsuite name=\"$(t_xml_escape "${TEST_TARGET:-shell}")\" tests=\"${#T_NAMES[@]}\" failures=\"$failed\">"
      for i in "${!T_NAMES[@]}"; do
        if [ "${T_RESULTS[$i]}" = pass ]; then
          echo "  <testcase name=\"$(t_xml_escape "${T_NAMES[$i]}")\"></testcase>"
        else
          echo "  <testcase name=\"$(t_xml_escape "${T_NAMES[$i]}")\"><failure message=\"$(t_xml_escape "${T_MESSAGES[$i]}")\"/></testcase>"
        fi
      done
      echo '</testsuite>'
      echo '</testsuites>'
    } >"$XML_OUTPUT_FILE"
  fi
  [ $failed -eq 0 ]
}
