#!/usr/bin/env bash
# faultfs_test: libfaultfs.so fails exactly the calls PKID_FAULT names, with
# the errno it names, counting from every thread, and lets every other call
# through unchanged. fault_probe makes the calls and prints each result.
# Usage: faultfs_test.sh LIBFAULTFS FAULT_PROBE TESTLIB
set -u
SHIM=$(realpath "$1")
PROBE=$(realpath "$2")
source "$3"

# probe RULES: run the probe's script under the shim with PKID_FAULT=RULES;
# stdout in $T_DIR/out, stderr in $T_DIR/err.
probe() {
  LD_PRELOAD="$SHIM" PKID_FAULT="$1" "$PROBE" script "$T_DIR" \
    >"$T_DIR/out" 2>"$T_DIR/err"
}

# expect_failures LINE...: exactly these calls failed, in this order, and
# the script ran to its end (123 lines: 84 I/O calls, 36 opens, 3 counts).
expect_failures() {
  local want got
  want=$(printf '%s\n' "$@")
  got=$(grep -v ' ok$' "$T_DIR/out" | grep -v '^bytes ')
  if [ "$got" != "$want" ]; then
    t_log "failed calls differ; want:"; printf '%s\n' "$want" >&2
    t_log "got:"; printf '%s\n' "$got" >&2
    return 1
  fi
  t_check [ "$(wc -l <"$T_DIR/out")" -eq 123 ]
}

# expect_bytes A B C: the bytes that reached a.seg, b.log and c.seg.
expect_bytes() {
  t_check grep -qx "bytes a.seg $1" "$T_DIR/out" &&
    t_check grep -qx "bytes b.log $2" "$T_DIR/out" &&
    t_check grep -qx "bytes c.seg $3" "$T_DIR/out"
}

test_no_rules_changes_nothing() {
  "$PROBE" script "$T_DIR" >"$T_DIR/plain" || return 1
  probe "" || return 1
  expect_failures && expect_bytes 120 120 120 &&
    t_check cmp "$T_DIR/plain" "$T_DIR/out"
}

test_nth_call_on_path() {
  # Calls on paths containing ".seg": a.seg round 1, c.seg round 1, then
  # a.seg round 2 is the third.
  probe "fdatasync:EIO:3:.seg" || return 1
  expect_failures "fdatasync a.seg 2 EIO" && expect_bytes 120 120 120
}

test_nth_and_later() {
  probe "fdatasync:ENOSPC:3+:.seg" || return 1
  expect_failures "fdatasync a.seg 2 ENOSPC" "fdatasync c.seg 2 ENOSPC" \
    "fdatasync a.seg 3 ENOSPC" "fdatasync c.seg 3 ENOSPC" \
    "fdatasync a.seg 4 ENOSPC" "fdatasync c.seg 4 ENOSPC"
}

test_any_path() {
  # Every fsync counts: a, b, c in round 1, then a and b in round 2.
  probe "fsync:EIO:5" || return 1
  expect_failures "fsync b.log 2 EIO"
}

test_list_of_rules() {
  # pwrite64 counts as pwrite, ftruncate64 as ftruncate; a failed write
  # writes nothing.
  probe "write:ENOSPC:2:b.log,pwrite:EDQUOT:1+:c.seg,ftruncate:EIO:4:a.seg" ||
    return 1
  expect_failures \
    "pwrite c.seg 1 EDQUOT" "pwrite64 c.seg 1 EDQUOT" \
    "ftruncate64 a.seg 2 EIO" "write b.log 2 ENOSPC" \
    "pwrite c.seg 2 EDQUOT" "pwrite64 c.seg 2 EDQUOT" \
    "pwrite c.seg 3 EDQUOT" "pwrite64 c.seg 3 EDQUOT" \
    "pwrite c.seg 4 EDQUOT" "pwrite64 c.seg 4 EDQUOT" &&
    expect_bytes 120 110 40
}

test_opens() {
  # Each round opens a.seg, b.log, c.seg with open, open64, openat (relative
  # to the directory's descriptor) and openat64; all count as "open". Two
  # rules on c.seg count on their own. 23 is ENFILE.
  probe "open:EMFILE:2:c.seg,open:EIO:3:c.seg,open:23:5:b.log" || return 1
  expect_failures "open64 c.seg 1 EMFILE" "openat c.seg 1 EIO" \
    "open b.log 2 ENFILE"
}

test_stdio_is_not_seen() {
  # glibc's own writes (printf's) do not go through write(): the output is
  # all there although every write() fails.
  probe "write:EIO:1+" || return 1
  local want=() round f
  for round in 1 2 3 4; do
    for f in a.seg b.log c.seg; do want+=("write $f $round EIO"); done
  done
  expect_failures "${want[@]}" && expect_bytes 80 80 80
}

test_threads_share_counters() {
  local out
  out=$(LD_PRELOAD="$SHIM" PKID_FAULT="fdatasync:EIO:2000:a.seg" \
        "$PROBE" threads "$T_DIR" 4 1000) || return 1
  t_check [ "$out" = "failed 1" ] || return 1
  out=$(LD_PRELOAD="$SHIM" PKID_FAULT="fdatasync:EIO:3001+:a.seg" \
        "$PROBE" threads "$T_DIR" 4 1000) || return 1
  t_check [ "$out" = "failed 1000" ]
}

test_log() {
  LD_PRELOAD="$SHIM" PKID_FAULT="fdatasync:EIO:3:.seg" PKID_FAULT_LOG=1 \
    "$PROBE" script "$T_DIR" >"$T_DIR/out" 2>"$T_DIR/err" || return 1
  t_check grep -q "^faultfs: fdatasync #3 /.*/a.seg: EIO$" "$T_DIR/err" &&
    t_check [ "$(wc -l <"$T_DIR/err")" -eq 1 ]
}

test_bad_rules_stop_the_program() {
  local rule rc
  for rule in "bogus" "fdatasync:EIO" "read:EIO:1" "fdatasync:EWHAT:1" \
              "fdatasync:EIO:0" "fdatasync:EIO:x" "fdatasync:EIO:-1+" \
              "fsync:EIO:1,"; do
    LD_PRELOAD="$SHIM" PKID_FAULT="$rule" "$PROBE" script "$T_DIR" \
      >/dev/null 2>"$T_DIR/err"
    rc=$?
    if [ "$rule" = "fsync:EIO:1," ]; then
      # An empty item after a comma is allowed (nothing to parse).
      t_check [ $rc -eq 0 ] || return 1
      continue
    fi
    t_check [ $rc -eq 127 ] || { t_log "rule: $rule"; return 1; }
    t_check grep -q "faultfs: bad PKID_FAULT rule" "$T_DIR/err" || return 1
  done
}

t_run no_rules_changes_nothing test_no_rules_changes_nothing
t_run nth_call_on_path test_nth_call_on_path
t_run nth_and_later test_nth_and_later
t_run any_path test_any_path
t_run list_of_rules test_list_of_rules
t_run opens test_opens
t_run stdio_is_not_seen test_stdio_is_not_seen
t_run threads_share_counters test_threads_share_counters
t_run log test_log
t_run bad_rules_stop_the_program test_bad_rules_stop_the_program
t_finish
