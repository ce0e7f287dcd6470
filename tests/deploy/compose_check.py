#!/usr/bin/env python3
"""compose_check.py: checks on the resolved compose file for compose_test.sh.

Reads the YAML that `docker-compose config` prints (paths made absolute,
variables substituted) and runs one check, printing what is wrong and
exiting 1 if anything is:

  mounts PKI_DIR         every bind source and secret file exists; the pki
                         tree's are mounted read-only except the folders a
                         service writes; nothing mounts the root's key, the
                         custodian shares, the passphrase or the whole tree
  images                 every image has a tag, none is :latest
  env                    no passphrase, password or token in `environment`
  ports                  a service that publishes ports is on a network
                         that is not internal
  assemble SERVICE ROOT  copy SERVICE's bind mounts and secrets under ROOT
                         (ROOT + the container path), make its named
                         volumes there, and print its command, one argument
                         a line, with container paths moved under ROOT
  get SERVICE KEY...     print a value of SERVICE's (e.g. command), JSON
"""
import json
import os
import shutil
import sys

import yaml

# What a service may write in the pki tree: pkid its CRLs, the agents what
# they renew. Everything else from the tree is read-only.
WRITABLE = {
    ("pki-ca", "crl"),
    ("pki-agent", "service-certificates/agents/pki-agent"),
    ("lb-rotation", "service-certificates/load-balancer"),
}
# Never mounted: the offline root's key and shares, the passphrase (a
# secret), the tree as a whole.
FORBIDDEN = ["root-ca/private", "root-ca/shares", "ca-passphrase", ""]


def load():
    return yaml.safe_load(sys.stdin)


def binds(svc):
    """(source, target, read_only) of a service's bind mounts."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"], bool(v.get("read_only"))))
            continue
        parts = v.split(":")
        if parts[0].startswith("/"):
            mode = parts[2] if len(parts) > 2 else "rw"
            out.append((parts[0], parts[1], "ro" in mode.split(",")))
    return out


def named(svc):
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type") == "volume":
                out.append(v["target"])
            continue
        parts = v.split(":")
        if not parts[0].startswith("/") and len(parts) > 1:
            out.append(parts[1])
    return out


def secrets_of(cfg, svc):
    """(host file, container path) of a service's secrets."""
    out = []
    for s in svc.get("secrets", []):
        src = s["source"] if isinstance(s, dict) else s
        target = s.get("target", src) if isinstance(s, dict) else src
        if not target.startswith("/"):
            target = "/run/secrets/" + target
        out.append((cfg["secrets"][src]["file"], target))
    return out


def check_mounts(cfg, pki):
    pki = os.path.realpath(pki)
    bad = []
    for name, svc in cfg["services"].items():
        for src, target, ro in binds(svc):
            if not os.path.exists(src):
                bad.append(f"{name}: {src} (-> {target}) does not exist")
            real = os.path.realpath(src)
            if real != pki and not real.startswith(pki + "/"):
                continue
            rel = os.path.relpath(real, pki) if real != pki else ""
            if rel in FORBIDDEN or any(rel.startswith(f + "/") for f in FORBIDDEN if f):
                bad.append(f"{name}: mounts {src}, which must never leave the ceremony machine")
            if not ro and (name, rel) not in WRITABLE:
                bad.append(f"{name}: {src} is mounted read-write")
            if ro and (name, rel) in WRITABLE:
                bad.append(f"{name}: {src} is read-only, but {name} writes there")
        for src, _ in secrets_of(cfg, svc):
            if not os.path.isfile(src):
                bad.append(f"{name}: secret file {src} does not exist")
    return bad


def check_images(cfg):
    bad = []
    for name, svc in cfg["services"].items():
        image = svc.get("image", "")
        last = image.rsplit("/", 1)[-1]
        if "@sha256:" in image:
            continue
        if ":" not in last:
            bad.append(f"{name}: image {image!r} has no tag (that is :latest)")
        elif last.endswith(":latest"):
            bad.append(f"{name}: image {image!r} is :latest")
    return bad


SECRET_WORDS = ("PASSPHRASE", "PASSWORD", "SECRET", "TOKEN", "PRIVATE")


def check_env(cfg):
    bad = []
    for name, svc in cfg["services"].items():
        env = svc.get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        for k, v in env.items():
            if any(w in k.upper() for w in SECRET_WORDS) and not k.upper().endswith("_FILE"):
                bad.append(f"{name}: {k} in environment (a secret belongs in secrets:)")
            elif k.upper().endswith("_FILE") and not str(v).startswith("/run/secrets/"):
                bad.append(f"{name}: {k}={v} is not a compose secret")
    return bad


def check_ports(cfg):
    bad = []
    nets = cfg.get("networks", {})
    for name, svc in cfg["services"].items():
        if not svc.get("ports"):
            continue
        attached = svc.get("networks", {"default": None})
        if all((nets.get(n) or {}).get("internal") for n in attached):
            bad.append(f"{name}: publishes ports but is only on internal networks")
    return bad


def copy(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=False)
    else:
        shutil.copy2(src, dst)


def assemble(cfg, name, root):
    svc = cfg["services"][name]
    targets = []
    for src, target, ro in binds(svc):
        copy(src, root + target)
        targets.append(target)
    for src, target in secrets_of(cfg, svc):
        copy(src, root + target)
        targets.append(target)
    for target in named(svc):
        os.makedirs(root + target, exist_ok=True)
        targets.append(target)
    # Read-only mounts stay read-only.
    for src, target, ro in binds(svc):
        if ro:
            for d, _, files in os.walk(root + target):
                for f in files:
                    p = os.path.join(d, f)
                    os.chmod(p, os.stat(p).st_mode & 0o7555)
                os.chmod(d, os.stat(d).st_mode & 0o7555)
    moved = []
    prefixes = sorted({"/var/lib/pkid", "/run"} | set(targets), key=len, reverse=True)
    for arg in svc.get("command", []):
        flag, eq, value = arg.partition("=")
        path = value if eq else arg
        if path.startswith("/") and any(path == p or path.startswith(p + "/") for p in prefixes):
            path = root + path
            arg = flag + "=" + path if eq else path
        moved.append(arg)
    print("\n".join(moved))


def main():
    what = sys.argv[1]
    cfg = load()
    if what == "assemble":
        assemble(cfg, sys.argv[2], os.path.abspath(sys.argv[3]))
        return 0
    if what == "get":
        v = cfg["services"][sys.argv[2]]
        for k in sys.argv[3:]:
            v = v[k]
        print(json.dumps(v))
        return 0
    bad = {
        "mounts": lambda: check_mounts(cfg, sys.argv[2]),
        "images": lambda: check_images(cfg),
        "env": lambda: check_env(cfg),
        "ports": lambda: check_ports(cfg),
    }[what]()
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
