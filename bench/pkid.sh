# bench/pkid.sh: starting and stopping pkid for the bench scripts (run.sh,
# crl_under_load.sh, instructions.sh, profile.sh), sourced by them. They
# set PKID (the binary), WORK (the demo tree in $WORK/pki, the journal in
# $WORK/journal) and die().

PKID_PID=""

# opt_bin TARGET...: builds the targets with --config=opt (progress on
# stderr) and prints the bazel-bin folder that holds them.
opt_bin() {
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  (cd "$repo" && bazel build --config=opt "$@" >&2) || die "build failed"
  (cd "$repo" && bazel info --config=opt bazel-bin 2>/dev/null)
}

# start_pkid LOG ARGS...: pkid on 127.0.0.1, every port chosen by the
# kernel, with ARGS added; sets PKID_PID, and PORT, OCSP_PORT, OCSP_PATH and
# ADMIN_PORT from its "listening" lines (60 s at most).
start_pkid() {
  local log=$1
  shift
  "$PKID" --pki "$WORK/pki" --journal "$WORK/journal" --listen 127.0.0.1:0 \
    --ocsp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" 2>"$log" &
  PKID_PID=$!
  PORT=""
  local i
  for i in $(seq 1 600); do
    PORT=$(sed -n 's/.*"event":"listening","grpc":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$log" |
      head -n 1)
    [ -n "$PORT" ] && break
    kill -0 "$PKID_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$PORT" ] || { cat "$log" >&2; die "pkid did not start"; }
  OCSP_PORT=$(sed -n 's/.*"event":"listening","ocsp":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$log" |
    head -n 1)
  OCSP_PATH=$(sed -n 's/.*"event":"listening","ocsp":"[^"]*","path":"\([^"]*\)".*/\1/p' "$log" |
    head -n 1)
  OCSP_PATH=${OCSP_PATH:-/}
  ADMIN_PORT=$(sed -n 's/.*"event":"listening","admin":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$log" |
    head -n 1)
}

# issued_total ADMIN_PORT: pkid_issued_total from pkid's /metrics.
issued_total() {
  /usr/bin/python3 -c '
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=30).read()
for line in text.decode().splitlines():
    if line.startswith("pkid_issued_total "):
        print(int(float(line.split()[1])))
' "$1"
}

# stop_pkid: SIGTERM (pkid drains), SIGKILL after 15 s.
stop_pkid() {
  if [ -n "$PKID_PID" ] && kill -0 "$PKID_PID" 2>/dev/null; then
    kill -TERM "$PKID_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 150); do
      kill -0 "$PKID_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$PKID_PID" 2>/dev/null; then
      echo "pkid did not stop on SIGTERM in 15 s; killing it" >&2
      kill -KILL "$PKID_PID" 2>/dev/null || true
    fi
  fi
  if [ -n "$PKID_PID" ]; then
    wait "$PKID_PID" 2>/dev/null || true
    PKID_PID=""
  fi
}
