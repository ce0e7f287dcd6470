#!/bin/bash
# units_test: deploy/systemd's units are what systemd 252 accepts, carry the
# hardening issue 11 names, and keep systemd-analyze's exposure score low.
#
# No systemd runs as PID 1 here, so each check works on files:
# `systemd-analyze verify --root=R` loads the units from a scratch root R
# that holds the real unit files, the host's own units (sysinit.target and
# the rest a start job needs) and the built pkid and pkictl at /usr/bin,
# where the units name them. verify prints a warning and still exits 0
# for an unknown key or a value it cannot parse, so a pass is exit 0 and
# no output at all; the broken copies show that each kind of mistake is
# caught. Running pkid under the sandbox itself (systemd-run) needs a
# running systemd and is not done.
#
# Usage: units_test.sh PKID PKICTL TESTLIB PKID_SERVICE AGENT_SERVICE SYSUSERS
set -u
PKID=$(realpath "$1")
PKICTL=$(realpath "$2")
source "$3"
PKID_UNIT=$(realpath "$4")
AGENT_UNIT=$(realpath "$5")
SYSUSERS=$(realpath "$6")

# The exposure systemd-analyze 252 measured for each unit (tenths, as
# --threshold takes them: 12 is "1.2"); a unit that loses hardening goes
# above it.
PKID_MAX_EXPOSURE=12
AGENT_MAX_EXPOSURE=12

# make_root DIR: a root with the units at /etc/systemd/system, the agent
# instantiated for postgres, the binaries at /usr/bin and /bin/kill.
make_root() {
  local r=$1
  mkdir -p "$r/etc/systemd/system" "$r/usr/bin" "$r/bin" "$r/usr/lib/systemd" || return 1
  cp -a /lib/systemd/system "$r/usr/lib/systemd/" || return 1
  cp "$PKID" "$PKICTL" "$r/usr/bin/" && cp /bin/kill "$r/bin/kill" || return 1
  cp "$PKID_UNIT" "$AGENT_UNIT" "$r/etc/systemd/system/" || return 1
  ln -s pkictl-agent@.service "$r/etc/systemd/system/pkictl-agent@postgres.service"
}

# verify_clean ROOT UNIT: exit 0 and not a word of output.
verify_clean() {
  local out rc
  out=$(cd / && systemd-analyze verify --root="$1" --man=no "/etc/systemd/system/$2" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    t_log "systemd-analyze verify $2: exit $rc: $out"
    return 1
  fi
}

# verify_fails ROOT UNIT WORDS: a non-zero exit or output matching WORDS.
verify_fails() {
  local out rc
  out=$(cd / && systemd-analyze verify --root="$1" --man=no "/etc/systemd/system/$2" 2>&1)
  rc=$?
  if [ $rc -eq 0 ] && [ -z "$out" ]; then
    t_log "verify passed a broken $2"
    return 1
  fi
  grep -qE -- "$3" <<<"$out" || { t_log "verify's complaint lacks /$3/: $out"; return 1; }
}

case_verify_pkid() {
  make_root R && verify_clean "$PWD/R" pkid.service
}

case_verify_agent() {
  make_root R && verify_clean "$PWD/R" pkictl-agent@postgres.service
}

case_verify_catches_missing_binary() {
  make_root R && rm R/usr/bin/pkid R/usr/bin/pkictl || return 1
  verify_fails "$PWD/R" pkid.service "/usr/bin/pkid is not executable" &&
    verify_fails "$PWD/R" pkictl-agent@postgres.service "/usr/bin/pkictl is not executable"
}

case_verify_catches_unknown_key() {
  make_root R || return 1
  sed -i 's/^ProtectSystem=strict$/ProtectSystm=strict/' R/etc/systemd/system/pkid.service
  verify_fails "$PWD/R" pkid.service "Unknown key 'ProtectSystm'"
}

case_verify_catches_bad_value() {
  make_root R || return 1
  sed -i 's/^LimitNOFILE=16384$/LimitNOFILE=lots/' R/etc/systemd/system/pkid.service
  verify_fails "$PWD/R" pkid.service "Failed to parse"
}

# unit_has FILE LINE...: each LINE is a line of FILE, exactly.
unit_has() {
  local file=$1 line
  shift
  for line in "$@"; do
    grep -qxF -- "$line" "$file" || { t_log "$(basename "$file") lacks: $line"; return 1; }
  done
}

case_pkid_hardening() {
  unit_has "$PKID_UNIT" Type=notify User=pkid NoNewPrivileges=yes ProtectSystem=strict \
    PrivateTmp=yes MemoryDenyWriteExecute=yes LimitCORE=0 "StateDirectory=pkid pkid/pki/crl" \
    "LoadCredential=ca-passphrase:pkid.ca-passphrase" "ExecReload=/bin/kill -HUP \$MAINPID" \
    Restart=on-failure ProtectHome=yes PrivateDevices=yes "CapabilityBoundingSet=" \
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" RestrictNamespaces=yes \
    LockPersonality=yes SystemCallFilter=@system-service SystemCallArchitectures=native \
    UMask=0077 || return 1
  # The passphrase comes from the credential, the journal from the state
  # directory.
  grep -q -- "--passphrase-file %d/ca-passphrase" "$PKID_UNIT" &&
    grep -q -- "--journal /var/lib/pkid/journal" "$PKID_UNIT" || return 1
  # Descriptors for what pkid says it needs at its default limits: the
  # "descriptor_limit" warning of harden_process (server/main.c) names it.
  local n need
  n=$(sed -n 's/^LimitNOFILE=//p' "$PKID_UNIT")
  need=$((4096 + 2 * 4096 + 64))
  [ "$n" -ge "$need" ] || { t_log "LimitNOFILE=$n is below the $need pkid needs"; return 1; }
}

case_agent_hardening() {
  unit_has "$AGENT_UNIT" NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes \
    MemoryDenyWriteExecute=yes LimitCORE=0 "User=%i" "EnvironmentFile=/etc/pkid/agent/%i.env" \
    "ReadWritePaths=/etc/pkid/agent/%i/service-certificates" "CapabilityBoundingSet=" \
    SystemCallFilter=@system-service UMask=0077 || return 1
  # ${RELOAD_COMMAND} braced: one argument with its spaces (systemd.service(5)).
  grep -q -- '--reload-command ${RELOAD_COMMAND}' "$AGENT_UNIT" &&
    grep -q -- "--as %i" "$AGENT_UNIT" || return 1
  # RemoveIPC= would remove the service user's shared memory (PostgreSQL's).
  ! grep -q "^RemoveIPC=yes" "$AGENT_UNIT" || { t_log "agent has RemoveIPC=yes"; return 1; }
}

# exposure ROOT UNIT MAX: systemd-analyze's overall exposure is at most MAX.
exposure() {
  local out rc
  out=$(cd / && systemd-analyze security --offline=yes --root="$1" --threshold="$3" \
    "/etc/systemd/system/$2" 2>&1)
  rc=$?
  grep "Overall exposure level" <<<"$out" >&2
  [ $rc -eq 0 ] || { t_log "exposure of $2 is above $3 tenths: $(grep '✗' <<<"$out")"; return 1; }
}

case_pkid_exposure() {
  make_root R && exposure "$PWD/R" pkid.service $PKID_MAX_EXPOSURE
}

case_agent_exposure() {
  make_root R && exposure "$PWD/R" pkictl-agent@postgres.service $AGENT_MAX_EXPOSURE
}

# And the threshold can fail: the unit without its sandbox scores higher.
case_exposure_catches_regression() {
  make_root R || return 1
  sed -i -e '/^ProtectSystem=/d' -e '/^PrivateUsers=/d' -e '/^SystemCallFilter=/d' \
    R/etc/systemd/system/pkid.service
  if (cd / && systemd-analyze security --offline=yes --root="$PWD/R" \
    --threshold=$PKID_MAX_EXPOSURE /etc/systemd/system/pkid.service >/dev/null 2>&1); then
    t_log "a weakened pkid.service passed the threshold"
    return 1
  fi
}

# pkid.sysusers makes a system user pkid with no login, in a scratch root.
case_sysusers() {
  mkdir -p R/etc R/usr/lib/sysusers.d && cp "$SYSUSERS" R/usr/lib/sysusers.d/pkid.conf &&
    touch R/etc/passwd R/etc/group R/etc/shadow R/etc/gshadow || return 1
  t_check systemd-sysusers --root="$PWD/R" pkid.conf || return 1
  local entry uid
  entry=$(grep '^pkid:' R/etc/passwd) || { t_log "no pkid in passwd"; return 1; }
  uid=$(cut -d: -f3 <<<"$entry")
  [ "$uid" -lt 1000 ] || { t_log "pkid is not a system user: $entry"; return 1; }
  grep -q ':/var/lib/pkid:/usr/sbin/nologin$' <<<"$entry" || { t_log "$entry"; return 1; }
  grep -q '^pkid:' R/etc/group
}

t_run verify_pkid case_verify_pkid
t_run verify_agent case_verify_agent
t_run verify_catches_missing_binary case_verify_catches_missing_binary
t_run verify_catches_unknown_key case_verify_catches_unknown_key
t_run verify_catches_bad_value case_verify_catches_bad_value
t_run pkid_hardening case_pkid_hardening
t_run agent_hardening case_agent_hardening
t_run pkid_exposure case_pkid_exposure
t_run agent_exposure case_agent_exposure
t_run exposure_catches_regression case_exposure_catches_regression
t_run sysusers case_sysusers
t_finish
