#!/bin/sh
# tls-copy.sh USER SRC NAME DEST COMMAND [ARG...]: give a service that will
# not read a key it does not own (postgres, vault) its own copy, then run
# the image's entrypoint.
#
# The pki/ tree's keys are 0600 and belong to the uid pkid and pkictl run
# as (10001), mounted read-only. postgres refuses a key not owned by it (or
# root) or readable by others, and vault drops to its own user before it
# reads the key. So, as root at the container's start, this writes
#   DEST/NAME.crt   SRC/NAME.crt then SRC/NAME-chain.crt (servers send the chain)
#   DEST/NAME.key   SRC/NAME.key
# owned by USER:USER, mode 0600, in a folder of mode 0700, and execs
# COMMAND, which drops to USER itself. The copy is made at every start: a
# certificate renewed in the tree is served after a restart.
set -eu
if [ $# -lt 5 ]; then
  echo "usage: tls-copy.sh USER SRC NAME DEST COMMAND [ARG...]" >&2
  exit 2
fi
user=$1 src=$2 name=$3 dest=$4
shift 4
umask 077
mkdir -p "$dest"
cat "$src/$name.crt" "$src/$name-chain.crt" >"$dest/$name.crt.tmp"
cat "$src/$name.key" >"$dest/$name.key.tmp"
chown "$user:$user" "$dest" "$dest/$name.crt.tmp" "$dest/$name.key.tmp"
chmod 0700 "$dest"
chmod 0600 "$dest/$name.crt.tmp" "$dest/$name.key.tmp"
mv -f "$dest/$name.crt.tmp" "$dest/$name.crt"
mv -f "$dest/$name.key.tmp" "$dest/$name.key"
exec "$@"
