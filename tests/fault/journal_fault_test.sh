#!/usr/bin/env bash
# journal_fault_test: lib/journal against a failing disk, made by
# libfaultfs.so as a test of pkid would make it. Each case runs the driver's
# appends under PKID_FAULT, then a restart without faults, which must replay
# exactly the records whose appends returned 1 and verify.
# Usage: journal_fault_test.sh LIBFAULTFS JOURNAL_DRIVER TESTLIB
set -u
SHIM=$(realpath "$1")
DRIVER=$(realpath "$2")
source "$3"

# Records are 160 bytes (100 of payload), a batch of 4 is 640: with
# SEG=1000, the third batch is the first of segment 2.
SEG=1000

# run_faulty RULES BATCHES: the appends, under RULES; output in $T_DIR/out.
run_faulty() {
  LD_PRELOAD="$SHIM" PKID_FAULT="$1" \
    "$DRIVER" append "$T_DIR/j" "$SEG" "$2" 4 >"$T_DIR/out" 2>"$T_DIR/err"
}

# expect_out LINE...: the driver printed exactly these lines.
expect_out() {
  local want got
  want=$(printf '%s\n' "$@")
  got=$(cat "$T_DIR/out")
  if [ "$got" != "$want" ]; then
    t_log "want:"; printf '%s\n' "$want" >&2
    t_log "got:"; printf '%s\n' "$got" >&2
    sed 's/^/  stderr: /' "$T_DIR/err" >&2
    return 1
  fi
}

# restart N: a clean open replays records 1..N and verify agrees.
restart() {
  t_check "$DRIVER" check "$T_DIR/j" "$SEG" "$1"
}

test_failed_sync() {
  # The .seg fdatasyncs are the appends' own (a new segment's header is
  # fsynced): the third is append 3's. It fails the journal for good.
  run_faulty "fdatasync:EIO:3:.seg" 5 || return 1
  expect_out "append 1 ok" "append 2 ok" "append 3 io failed" \
    "append 4 io failed" "append 5 io failed" "acked 8" &&
    t_check grep -q "cut back to its durable end" "$T_DIR/err" &&
    restart 8
}

test_every_sync_fails() {
  # The cut's own fdatasync fails too: a cut marker is left for the
  # restart, which cuts and removes it.
  run_faulty "fdatasync:EIO:1+:.seg" 2 || return 1
  expect_out "append 1 io failed" "append 2 io failed" "acked 0" &&
    t_check ls "$T_DIR/j/0000000000000001.cut" >/dev/null &&
    restart 0
}

test_failed_write_and_cut() {
  # The write fails with EIO and the cut (ftruncate) too: the marker again.
  run_faulty "pwrite:EIO:3:.seg,ftruncate:EIO:1:.seg" 4 || return 1
  expect_out "append 1 ok" "append 2 io failed" "append 3 io failed" \
    "append 4 io failed" "acked 4" &&
    t_check grep -q "cut marker was written" "$T_DIR/err" &&
    restart 4
}

test_disk_full_write() {
  # pwrites on .seg files: segment 1's header (its temporary file), then
  # one per append: the third is append 2's. Not failed; the next goes in.
  local e
  for e in ENOSPC EDQUOT; do
    rm -rf "$T_DIR/j"
    run_faulty "pwrite:$e:3:.seg" 5 || return 1
    expect_out "append 1 ok" "append 2 exhausted" "append 3 ok" \
      "append 4 ok" "append 5 ok" "acked 16" && restart 16 || return 1
  done
}

test_roll_without_descriptors() {
  # Opens of .seg.tmp: segment 1 at creation, then the roll before append
  # 3. The roll is tried again by append 4.
  local e
  for e in EMFILE ENFILE ENOSPC; do
    rm -rf "$T_DIR/j"
    run_faulty "open:$e:2:.seg.tmp" 5 || return 1
    expect_out "append 1 ok" "append 2 ok" "append 3 exhausted" \
      "append 4 ok" "append 5 ok" "acked 16" && restart 16 || return 1
    t_check ls "$T_DIR/j/0000000000000002.seg" >/dev/null || return 1
  done
}

test_roll_disk_full_on_header() {
  # The header write of segment 2's temporary file (the 4th .seg pwrite).
  run_faulty "pwrite:ENOSPC:4:.seg" 5 || return 1
  expect_out "append 1 ok" "append 2 ok" "append 3 exhausted" \
    "append 4 ok" "append 5 ok" "acked 16" && restart 16
}

t_run failed_sync test_failed_sync
t_run every_sync_fails test_every_sync_fails
t_run failed_write_and_cut test_failed_write_and_cut
t_run disk_full_write test_disk_full_write
t_run roll_without_descriptors test_roll_without_descriptors
t_run roll_disk_full_on_header test_roll_disk_full_on_header
t_finish
