#!/usr/bin/env bash
# run.sh: pkid on its embedded defaults.
#
# Builds pkid and pkictl, makes the demo hierarchy and every seed service's
# certificates in ./pki if it is not there yet (the root split 3-of-5, the
# intermediates' keys sealed under a random passphrase in pki/ca-passphrase),
# then runs pkid in the foreground: gRPC with mutual TLS on 127.0.0.1:8443,
# the journal in pki/journal. Ctrl-C (SIGINT) or SIGTERM drains and stops it.
#
#   deploy/run.sh [PKI_DIR] [pkid flags...]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/pki
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  out=$1
  shift
fi
"$top/deploy/setup.sh"
cd "$top"
bazel build --config=opt //client:pkictl //server:pkid
bin=$top/bazel-bin  # points at the optimized build just made
if [ -e "$out/root-ca/certs/root-ca.crt" ]; then
  echo "Using the hierarchy in $out (remove it to start over)."
else
  "$bin/client/pkictl" ceremony demo --out "$out"
fi
agent=$out/service-certificates/agents/pki-agent/pki-agent-client
cat <<TXT

pkid is starting. Call it as the pki-agent service, for example with
Python's grpcio or any gRPC client:
  target         127.0.0.1:8443 (TLS server name pki-ca.cybersec-framework.local)
  trust anchor   $out/root-ca/certs/root-ca.crt
  client cert    $agent.crt + $agent-chain.crt
  client key     $agent.key
  methods        /pki.v1.Pki/Issue, IssueStream, Renew, Revoke, GetStatus,
                 GetTrustBundle (proto/pki/v1/pki.proto)
Inspect a certificate:  $bin/client/pkictl inspect FILE
Check the journal:      $bin/client/pkictl journal verify $out/journal

TXT
exec "$bin/server/pkid" --pki "$out" "$@"
