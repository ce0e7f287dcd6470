#!/usr/bin/env bash
# compose_test: deploy/docker-compose.yml and deploy/Dockerfile, checked
# without a container engine (none runs on these machines):
#  - `docker-compose config -q` (Debian's docker-compose 1.29) accepts the
#    file, and rejects a copy with an unknown key or a value of the wrong
#    type, so the check cannot pass by accepting anything;
#  - every host path the resolved file mounts exists, the pki tree's in a
#    tree `pkictl ceremony demo` makes (so the file follows the tree's
#    layout); the tree's files are read-only except where a service writes;
#    nothing mounts the root's key, the shares or the passphrase;
#  - images are pinned (no :latest), no secret is in `environment`, and
#    only a service on a public network publishes ports;
#  - pkid runs on exactly pki-ca's mounts and command (ports moved to free
#    ones here) and its health check, run as written, sees /readyz 200;
#    `pkictl agent --once` and `pkictl lb rotate` run on pki-agent's and
#    lb-rotation's mounts and commands;
#  - compose/haproxy.cfg passes `haproxy -c` and serves the crt that
#    lb-rotation swaps;
#  - the Dockerfile copies Bazel's pkid and pkictl, runs as a user that is
#    not root, on a pinned Debian 12 image.
# Usage: compose_test.sh PKICTL PKID TESTLIB CHECK COMPOSE DOCKERFILE COMPOSE_FILES...
set -u
PKICTL=$(realpath "$1")
PKID=$(realpath "$2")
source "$3"
CHECK=$(realpath "$4")
COMPOSE=$(realpath "$5")
DOCKERFILE=$(realpath "$6")
shift 6
COMPOSE_FILES=()
for f in "$@"; do COMPOSE_FILES+=("$(realpath "$f")"); done
DOCKER_COMPOSE=${DOCKER_COMPOSE:-/usr/bin/docker-compose}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}

for tool in "$DOCKER_COMPOSE" "$HAPROXY"; do
  if [ ! -x "$tool" ]; then
    echo "no $tool (Debian's docker-compose and haproxy; deploy/setup.sh installs them)"
    exit 1
  fi
done

# One demo tree for every case, as the ceremony lays it out.
PKI=$T_TMP/pki
"$PKICTL" ceremony demo --out "$PKI" >/dev/null || exit 1

# A scratch copy of deploy/ (the compose file and compose/), so that its
# relative paths resolve beside it, and the variables it requires.
SCRATCH=$T_TMP/deploy
mkdir -p "$SCRATCH/compose" "$SCRATCH/prometheus"
cp "$COMPOSE" "$SCRATCH/docker-compose.yml"
for f in "${COMPOSE_FILES[@]}"; do
  case $f in
    */prometheus/*) cp "$f" "$SCRATCH/prometheus/" ;;
    *) cp "$f" "$SCRATCH/compose/" ;;
  esac
done
echo "not-a-real-password" >"$T_TMP/postgres-password"
export PKI_DIR=$PKI CA_PASSPHRASE_FILE=$PKI/ca-passphrase \
  POSTGRES_PASSWORD_FILE=$T_TMP/postgres-password \
  PKID_IMAGE=pkid:compose-test MCP_GATEWAY_IMAGE=mcp-gateway:compose-test
RESOLVED=$T_TMP/resolved.yml
"$DOCKER_COMPOSE" -f "$SCRATCH/docker-compose.yml" config >"$RESOLVED" || exit 1

check() { python3 "$CHECK" "$@" <"$RESOLVED"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

test_config_valid() {
  t_check "$DOCKER_COMPOSE" -f "$SCRATCH/docker-compose.yml" config -q
}

test_config_rejects_unknown_key() {
  cp -r "$SCRATCH" broken
  # A key no service has, in pki-ca.
  sed -i 's/^  pki-ca:$/  pki-ca:\n    no_such_key: 1/' broken/docker-compose.yml
  grep -q no_such_key broken/docker-compose.yml &&
    t_expect_fail "no_such_key|Additional properties" "$DOCKER_COMPOSE" -f broken/docker-compose.yml config -q
}

test_config_rejects_bad_type() {
  cp -r "$SCRATCH" broken
  # restart takes a string, not a list.
  sed -i '0,/^    restart: unless-stopped$/s//    restart: [unless-stopped]/' broken/docker-compose.yml
  grep -q 'restart: \[unless-stopped\]' broken/docker-compose.yml &&
    t_expect_fail "restart|invalid" "$DOCKER_COMPOSE" -f broken/docker-compose.yml config -q
}

test_config_requires_the_images() {
  t_expect_fail "PKID_IMAGE" env -u PKID_IMAGE "$DOCKER_COMPOSE" -f "$SCRATCH/docker-compose.yml" config -q
}

test_mounts_exist_in_the_demo_tree() {
  t_check check mounts "$PKI" &&
    # The check sees the tree's mounts at all (PKI_DIR reached the file).
    t_check grep -q "$PKI/intermediate-ca:/var/lib/pkid/pki/intermediate-ca:ro" "$RESOLVED"
}

test_images_pinned() {
  t_check check images
}

test_no_secret_in_environment() {
  t_check check env &&
    t_check grep -q -- '--passphrase-file=/run/secrets/ca_passphrase' "$RESOLVED"
}

test_only_public_services_publish_ports() {
  t_check check ports
}

# service_args SERVICE ROOT SED...: SERVICE's mounts assembled under ROOT,
# and its command, paths moved there, edited by the sed expressions, one
# argument a line.
service_args() {
  local svc=$1 root=$2
  shift 2
  check assemble "$svc" "$root" | sed "$@"
}

test_pkid_runs_on_its_mounts() {
  local grpc ocsp admin args pid ok=1 health
  grpc=$(free_port) ocsp=$(free_port) admin=$(free_port)
  mapfile -t args < <(service_args pki-ca "$PWD/pkid" \
    -e "s/^--listen=0.0.0.0:8443$/--listen=127.0.0.1:$grpc/" \
    -e "s/^--ocsp-listen=0.0.0.0:8081$/--ocsp-listen=127.0.0.1:$ocsp/" \
    -e "s/^--admin-listen=0.0.0.0:9090$/--admin-listen=127.0.0.1:$admin/")
  [ "${args[0]}" = pkid ] || { t_log "pki-ca's command is not pkid: ${args[*]}"; return 1; }
  printf '%s\n' "${args[@]}" | grep -q "^--listen=127.0.0.1:$grpc$" || { t_log "no --listen moved"; return 1; }
  "$PKID" "${args[@]:1}" >pkid.log 2>&1 &
  pid=$!
  # The health check exactly as the compose file has it, on the moved port.
  health=$(check get pki-ca healthcheck test | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1])')
  health=${health//9090/$admin}
  for _ in $(seq 1 100); do
    if bash -c "$health" 2>/dev/null; then ok=0; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  if [ $ok -ne 0 ]; then
    t_log "pkid's health check never passed"
    cat pkid.log >&2
    kill $pid 2>/dev/null
    wait $pid 2>/dev/null
    return 1
  fi
  # pki-agent and lb-rotation on their own mounts, against this pkid.
  mapfile -t args < <(service_args pki-agent "$PWD/agent" \
    -e "s/^--server=.*/--server=127.0.0.1:$grpc/" \
    -e 's/^--metrics-listen=.*/--metrics-listen=127.0.0.1:0/')
  [ "${args[0]} ${args[1]}" = "pkictl agent" ] || { t_log "pki-agent's command: ${args[*]}"; ok=1; }
  [ $ok -eq 0 ] && { "$PKICTL" "${args[@]:1}" --once >agent.log 2>&1 || { t_log "pkictl agent --once failed"; cat agent.log >&2; ok=1; }; }
  # rotate: the same flags, once; not due on a fresh tree, so it only
  # writes active/lb-current.pem, the file haproxy serves.
  mapfile -t args < <(service_args lb-rotation "$PWD/lb" \
    -e "s/^--server=.*/--server=127.0.0.1:$grpc/" -e 's/^watch$/rotate/' \
    -e '/^--metrics-listen=/d')
  [ "${args[0]} ${args[1]}" = "pkictl lb" ] || { t_log "lb-rotation's command: ${args[*]}"; ok=1; }
  [ $ok -eq 0 ] && { "$PKICTL" "${args[@]:1}" >lb.log 2>&1 || { t_log "pkictl lb rotate failed"; cat lb.log >&2; ok=1; }; }
  [ $ok -eq 0 ] && [ ! -s lb/var/lib/pkid/pki/service-certificates/load-balancer/active/lb-current.pem ] &&
    { t_log "no active/lb-current.pem"; ok=1; }
  kill $pid 2>/dev/null
  wait $pid 2>/dev/null
  [ $ok -eq 0 ] || cat pkid.log >&2
  return $ok
}

# Every target of prometheus.yml is a compose service listening on that
# port (pkid's --admin-listen, pkictl's --metrics-listen), and each such
# listener is scraped: the two files cannot drift apart.
test_prometheus_targets_match() {
  python3 - "$RESOLVED" "$SCRATCH/prometheus/prometheus.yml" <<'PY'
import re, sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))["services"]
prom = yaml.safe_load(open(sys.argv[2]))
targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
listening = set()
for name, svc in compose.items():
    for arg in svc.get("command") or []:
        m = re.match(r"--(admin|metrics)-listen=0\.0\.0\.0:(\d+)$", str(arg))
        if m:
            listening.add("%s:%s" % (name, m.group(2)))
bad = 0
for t in sorted(targets - listening):
    print("  prometheus.yml scrapes %s, which no compose service listens on" % t); bad = 1
for t in sorted(listening - targets):
    print("  %s serves metrics that prometheus.yml does not scrape" % t); bad = 1
if "prometheus" not in compose or not any(
        v.endswith(":/etc/prometheus:ro") for v in map(str, compose["prometheus"]["volumes"])):
    print("  no prometheus service with deploy/prometheus mounted"); bad = 1
sys.exit(bad)
PY
}

test_haproxy_cfg_valid() {
  local cfg=$SCRATCH/compose/haproxy.cfg crt name target
  crt=$(awk '$1 == "bind" && / ssl / { for (i = 1; i <= NF; i++) if ($i == "crt") print $(i + 1) }' "$cfg")
  name=$(check get lb-rotation command | python3 -c \
    'import json,sys; print([a.split("=",1)[1] for a in json.load(sys.stdin) if a.startswith("--haproxy-cert=")][0])')
  [ -n "$crt" ] && [ "$crt" = "$name" ] || { t_log "haproxy serves '$crt', lb-rotation swaps '$name'"; return 1; }
  # The crt lies in what the load balancer mounts of the tree.
  target=$(grep -o "$PKI/service-certificates/load-balancer:[^:]*:ro" "$RESOLVED" | head -n 1 | cut -d: -f2)
  [ -n "$target" ] && [ "${crt#"$target"/}" != "$crt" ] || { t_log "$crt is not under the mount '$target'"; return 1; }
  local active=$PKI/service-certificates/load-balancer/active
  mkdir -p lb && cat "$active/lb-current.crt" "$active/lb-current-chain.crt" "$active/lb-current.key" >lb/lb-current.pem
  # A unix socket's path has at most 107 bytes: a short folder for it.
  local run rc
  run=$(mktemp -d /tmp/compose_test.XXXXXX)
  sed -e "s#$crt#$PWD/lb/lb-current.pem#" -e "s#/run/haproxy/#$run/#" "$cfg" >haproxy.cfg
  t_check "$HAPROXY" -c -f haproxy.cfg
  rc=$?
  rm -rf "$run"
  return $rc
}

test_dockerfile() {
  local ok=0 base
  # Every COPY's sources are the two Bazel outputs, by their names.
  local copies
  copies=$(awk 'toupper($1) == "COPY" { for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' "$DOCKERFILE" | sort | tr '\n' ' ')
  [ "$copies" = "$(printf '%s\n' "$(basename "$PKICTL")" "$(basename "$PKID")" | sort | tr '\n' ' ')" ] ||
    { t_log "COPY sources are '$copies', not Bazel's pkid and pkictl"; ok=1; }
  local user
  user=$(awk 'toupper($1) == "USER" { u = $2 } END { print u }' "$DOCKERFILE")
  case "$user" in
    "" | root | 0 | 0:* | root:*) t_log "the image runs as '${user:-root}'"; ok=1 ;;
  esac
  base=$(awk 'toupper($1) == "FROM" { print $2 }' "$DOCKERFILE")
  case "$base" in
    debian:12.*-slim | debian:bookworm-*slim) ;;
    *) t_log "base image '$base' is not a pinned Debian 12"; ok=1 ;;
  esac
  # The user exists in the image: made by useradd in a RUN.
  grep -q "useradd .*$user" "$DOCKERFILE" || { t_log "no useradd for $user"; ok=1; }
  return $ok
}

t_run config_valid test_config_valid
t_run config_rejects_unknown_key test_config_rejects_unknown_key
t_run config_rejects_bad_type test_config_rejects_bad_type
t_run config_requires_the_images test_config_requires_the_images
t_run mounts_exist_in_the_demo_tree test_mounts_exist_in_the_demo_tree
t_run images_pinned test_images_pinned
t_run no_secret_in_environment test_no_secret_in_environment
t_run only_public_services_publish_ports test_only_public_services_publish_ports
t_run pkid_runs_on_its_mounts test_pkid_runs_on_its_mounts
t_run prometheus_targets_match test_prometheus_targets_match
t_run haproxy_cfg_valid test_haproxy_cfg_valid
t_run dockerfile test_dockerfile
t_finish
