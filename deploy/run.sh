#!/usr/bin/env bash
# run.sh: pkid's main job on its embedded defaults.
#
# For now that is the offline side: build pkictl and, with the catalogue
# built into it (deploy/catalog.yaml), create the demo hierarchy and every
# seed service's certificates in ./pki (or $1). The root is split 3-of-5
# among custodian shares; the intermediates' keys are sealed under a random
# passphrase kept in pki/ca-passphrase (0600). An existing tree is kept.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/pki}
"$top/deploy/setup.sh"
cd "$top"
bazel build --config=opt //client:pkictl
pkictl="$top/bazel-bin/client/pkictl"
if [ -e "$out/root-ca/certs/root-ca.crt" ]; then
  echo "$out already holds a hierarchy; keeping it (remove it to start over)."
else
  "$pkictl" ceremony demo --out "$out"
fi
echo
"$pkictl" inspect "$out/service-certificates/load-balancer/active/lb-current.crt"
echo
echo "Inspect any certificate with: $pkictl inspect FILE"
