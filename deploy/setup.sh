#!/usr/bin/env bash
# setup.sh makes a fresh Debian 12 machine ready to build, run and test pkid.
# It is idempotent: a second run installs nothing and fetches nothing, so both
# README commands call it first. It needs root (or sudo) for apt only.
#
# What it does:
#   1. installs the Debian packages the build and the tests use;
#   2. fetches BoringSSL as Debian's source package, pinned by version and
#      sha256, into .deps/ (git-ignored), without touching the system's apt
#      configuration.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps="$top/.deps"

# Packages, grouped by what needs them.
packages=(
  # build
  bazel-bootstrap gcc g++ clang libclang-rt-14-dev xz-utils ca-certificates
  # libraries pkid links
  libuv1-dev libnghttp2-dev libhttp-parser-dev libprotobuf-c-dev
  protobuf-c-compiler libgrpc-dev libjemalloc-dev libyaml-dev libck-dev
  # interop peers used by the tests
  openssl python3-cryptography python3-grpcio python3-protobuf
  protobuf-compiler nghttp2-client python3-h2
  # real components the tests start on loopback: haproxy (client
  # certificates checked against pkid's CRLs), Prometheus' promtool (the
  # alert rules)
  haproxy prometheus
  # the deployment's checks: docker-compose validates deploy/docker-compose.yml
  # (no container engine runs it here); libsystemd's sd_notify tells systemd
  # when pkid is ready (deploy/systemd/pkid.service, Type=notify)
  docker-compose libsystemd-dev
  # the cluster: libpq links pkid to the fleet's PostgreSQL; the tests make
  # their own PostgreSQL 15 servers (initdb in a temporary folder) and
  # psql, which the tests use to check what pkid wrote
  postgresql-15 postgresql-client-15 libpq-dev
  # the audit trail's SIEM feed: the tests start Debian's rsyslog with its
  # TLS module (gtls) on loopback as the collector
  rsyslog rsyslog-gnutls
  # CA keys in PKCS#11 tokens: SoftHSM2 is the token the tests make (in a
  # temporary SOFTHSM2_CONF); PyKCS11 and OpenSC's pkcs11-tool are PKCS#11
  # clients we did not write, which check what the token holds
  softhsm2 python3-pykcs11 opensc
  # ACME: jansson parses its JSON (JWS, requests); certbot, lego and uacme
  # are the ACME clients we did not write that the tests run against pkid
  # (python3-josepy, certbot's JOSE library, also checks the tests' own
  # client's JWS)
  libjansson-dev certbot lego uacme python3-josepy
  # benchmarks: the CFSSL peer (cfssl serve), bench/plot.py, and valgrind's
  # callgrind, which counts instructions per certificate whatever else the
  # machine does (bench/instructions.sh)
  golang-cfssl python3-matplotlib valgrind
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  # Debian's postgresql package makes (and, where services run, starts) a
  # "main" cluster on 5432; the tests start their own, so none is made.
  "${sudo_cmd[@]}" mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" |
    "${sudo_cmd[@]}" tee /etc/postgresql-common/createcluster.d/pkid-no-main.conf >/dev/null
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -q -y --no-install-recommends "${missing[@]}"
fi

# BoringSSL, from Debian's source package. Debian's binary is built with
# OPENSSL_SMALL (three times slower P-256), so Bazel builds it from source.
bssl_name=android-platform-external-boringssl
bssl_version=13.0.0+r24-2
bssl_tar=android-platform-external-boringssl_13.0.0+r24.orig.tar.xz
bssl_sha256=583b7aeee1fca68b8244d086cea6fca23bd19d517bd63f0b9de714e048f92a7d
bssl_dir="$deps/boringssl"

if [ ! -f "$bssl_dir/.ok-$bssl_sha256" ]; then
  apt_dir="$deps/apt"
  mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$deps/download"
  # A private deb-src list made from the system's own: the system's apt
  # configuration is left as it is.
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > "$apt_dir/sources/debian-src.sources"
  apt_opts=(-o Dir::Etc::SourceList=/dev/null
            -o "Dir::Etc::SourceParts=$apt_dir/sources"
            -o "Dir::State::Lists=$apt_dir/lists"
            -o Debug::NoLocking=1)
  if [ ! -f "$deps/download/$bssl_tar" ]; then
    apt-get "${apt_opts[@]}" update -q
    (cd "$deps/download" && apt-get "${apt_opts[@]}" source --download-only "$bssl_name=$bssl_version")
  fi
  echo "$bssl_sha256  $deps/download/$bssl_tar" | sha256sum -c --quiet - || {
    echo "setup: $bssl_tar does not match its pinned sha256; refusing to use it" >&2
    exit 1
  }
  rm -rf "$bssl_dir" && mkdir -p "$bssl_dir"
  tar -xJf "$deps/download/$bssl_tar" -C "$bssl_dir" --strip-components=1
  touch "$bssl_dir/.ok-$bssl_sha256"
fi
