#!/usr/bin/env bash
# allocator_test: pkid runs on jemalloc (the design card's allocator), or on
# the C library's malloc where the build asked for it (the sanitizer
# configs, whose runtimes must see every allocation).
#
# Usage: allocator_test.sh PKID jemalloc|system
set -euo pipefail
pkid=$1 want=$2
# jemalloc prints its statistics at exit when MALLOC_CONF says so; glibc's
# malloc ignores the variable.
out=$(MALLOC_CONF=stats_print:true "$pkid" --help 2>&1 >/dev/null || true)
if [ "$want" = jemalloc ]; then
  grep -q "Begin jemalloc statistics" <<<"$out" || { echo "FAIL: pkid does not run on jemalloc"; exit 1; }
  # Not `grep -q`: it stops reading at the first match, ldd dies of SIGPIPE
  # on a long list of libraries, and pipefail turns that into a failure.
  ldd "$pkid" | grep libjemalloc >/dev/null || { echo "FAIL: pkid does not link libjemalloc"; exit 1; }
else
  ! grep -q "jemalloc statistics" <<<"$out" || { echo "FAIL: jemalloc under a sanitizer build"; exit 1; }
fi
echo "PASS: pkid's allocator is $want"
