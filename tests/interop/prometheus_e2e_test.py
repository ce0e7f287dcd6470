#!/usr/bin/python3
"""prometheus_e2e_test: deploy/prometheus/'s rules in a real Prometheus
(Debian's /usr/bin/prometheus 2.42) that scrapes a real pkid, two real
`pkictl agent --metrics-listen` and a real `pkictl lb watch
--metrics-listen` beside a real haproxy, all on loopback.

  - every target is scraped (up == 1);
  - certificate_expiring_critical fires for a certificate pkid issued with
    5 days of life (redis-client.crt, kept by one agent), and not for one
    it issued with 30 days (postgres-client.crt, kept by the other), for
    which only the seed's 30-day warning fires;
  - load_balancer_cert_rotation_failed fires after `lb watch` refused a
    rotation (an lb-next with 12 hours of life, under the seed's 24 h);
  - PkidDown fires once pkid is stopped.

The rules are the deployment's files with each `for:` cut to 3 s, and the
scrape and evaluation intervals are 1 s, so that the alerts fire within
seconds; everything else about them is as deployed.

Usage: prometheus_e2e_test.py PKICTL PKID PROMETHEUS_YML HAPROXY_CFG
    (deploy/prometheus/prometheus.yml, the rule files beside it;
    deploy/haproxy/haproxy.cfg)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from pkidtest import Pkid, demo_tree, free_port, spawn, stop, wait_for  # noqa: E402
from testlib import finish, run  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"
HAPROXY = "/usr/sbin/haproxy"
PKICTL, PKID, PROM_YML, HAPROXY_CFG = (os.path.abspath(p) for p in sys.argv[1:5])
PROM_DIR = os.path.dirname(PROM_YML)
RULE_FILES = ("pkid-rules.yml", "cert-rules.yml", "lb-rules.yml")
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
WORK = os.path.join(TMP, "e2e")
os.makedirs(WORK, exist_ok=True)
PKI = demo_tree(PKICTL, TMP)
LB_DIR = os.path.join(PKI, "service-certificates/load-balancer")
ROTATION = os.path.join(LB_DIR, "rotation")
BUNDLE = os.path.join(LB_DIR, "active/lb-current.pem")
# A unix socket path is at most ~100 bytes, shorter than TEST_TMPDIR can be.
SOCK_DIR = tempfile.mkdtemp(prefix="prom-e2e-", dir="/tmp")
SOCK = os.path.join(SOCK_DIR, "admin.sock")
SNI = "api.cybersec-framework.local"
WAIT_S = 60  # the longest any alert may take to show

PROCS = []  # every process started here, stopped in the finally below
STATE = {}


def pkictl(*args):
    out = subprocess.run([PKICTL] + list(args), capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, "pkictl %s: exit %d\n%s%s" % (
        args[0], out.returncode, out.stdout, out.stderr)
    return out


def issue(service, usage, out_base, validity):
    """pkid issues |service|'s |usage| certificate over gRPC into out_base.*"""
    pkictl("issue", "--pki", PKI, "--as", "pki-agent", "--server",
           "127.0.0.1:%d" % SERVER.grpc, "--service", service, "--usage", usage,
           "--validity", validity, "--out-cert", out_base + ".crt", "--out-key",
           out_base + ".key", "--out-chain", out_base + "-chain.crt")


def logged_port(path, event):
    """The metrics_port a pkictl daemon logged in its start line."""
    def port():
        m = re.search(r'"event":"%s".*?"metrics_port":"(\d+)"' % event, open(path).read())
        return int(m.group(1)) if m else None
    return wait_for(event + " in " + path, port, 20)


def get_json(path):
    url = "http://127.0.0.1:%d%s" % (STATE["prom_port"], path)
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]


def alerts(name, state=None):
    """The alerts named |name| that Prometheus holds (pending or firing)."""
    return [a for a in get_json("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == name and (state is None or a["state"] == state)]


def firing(name, **labels):
    return [a for a in alerts(name, "firing")
            if all(a["labels"].get(k) == v for k, v in labels.items())]


def shortened_rules(directory):
    """The deployment's rule files with every `for:` cut to 3 s."""
    for name in RULE_FILES:
        text = open(os.path.join(PROM_DIR, name)).read()
        short, n = re.subn(r"(?m)^(\s+)for: \S+$", r"\1for: 3s", text)
        assert n > 0, name
        with open(os.path.join(directory, name), "w") as f:
            f.write(short)


SERVER = Pkid(PKID, PKI, TMP).start()


def test_setup():
    # Two certificates pkid issues now, each kept by its own agent: 5 days
    # for redis's client certificate, 30 for postgres's. Neither is due for
    # renewal (the agents renew at 2/3 of the life).
    redis = os.path.join(PKI, "service-certificates/infrastructure/redis/redis-client")
    postgres = os.path.join(PKI, "service-certificates/infrastructure/postgres/postgres-client")
    issue("redis", "client", redis, "5d")
    issue("postgres", "client", postgres, "30d")
    agent_ports = []
    for service in ("redis", "postgres"):
        log = os.path.join(WORK, service + "-agent.log")
        spawn(PROCS, [PKICTL, "agent", "--pki", PKI, "--as", service + ":client", "--server",
                      "127.0.0.1:%d" % SERVER.grpc, "--metrics-listen", "127.0.0.1:0",
                      "--check-interval-ms", "500"], log)
        agent_ports.append(logged_port(log, "agent_start"))
    STATE["agents"] = dict(zip(("redis", "postgres"), agent_ports))

    # The load balancer: the bundle haproxy's crt names, then haproxy on the
    # deployment's configuration (its paths and port pointed here).
    lb_common = ["--pki", PKI, "--as", "pki-agent", "--server", "127.0.0.1:%d" % SERVER.grpc,
                 "--ocsp-url", "http://127.0.0.1:%d/" % SERVER.ocsp,
                 "--haproxy-socket", SOCK, "--haproxy-cert", BUNDLE]
    lb_port = free_port()
    lb_common += ["--probe", "127.0.0.1:%d" % lb_port, "--probe-name", SNI]
    pkictl("lb", "rotate", *lb_common)
    cfg = open(HAPROXY_CFG).read()
    for old, new in (("/etc/ssl/certs/active/lb-current.pem", BUNDLE),
                     ("/run/haproxy/admin.sock", SOCK), ("127.0.0.1:8444", "127.0.0.1:%d" % lb_port)):
        assert old in cfg, old
        cfg = cfg.replace(old, new)
    cfg_path = os.path.join(WORK, "haproxy.cfg")
    with open(cfg_path, "w") as f:
        f.write(cfg)
    haproxy = spawn(PROCS, [HAPROXY, "-f", cfg_path, "-db"], os.path.join(WORK, "haproxy.log"))

    def haproxy_up():
        assert haproxy.poll() is None, open(os.path.join(WORK, "haproxy.log")).read()
        return os.path.exists(SOCK)
    wait_for("haproxy's stats socket", haproxy_up, 15)

    # A next certificate with 12 hours of life: `lb watch --now` refuses it
    # (the seed's 24 h check), sets it aside and has pkid make another.
    os.makedirs(ROTATION, exist_ok=True)
    issue("load-balancer", "server", os.path.join(ROTATION, "lb-next"), "12h")
    lb_log = os.path.join(WORK, "lb-watch.log")
    spawn(PROCS, [PKICTL, "lb", "watch", *lb_common, "--metrics-listen", "127.0.0.1:0",
                  "--check-interval-ms", "500", "--now"], lb_log)
    STATE["lb"] = logged_port(lb_log, "lb_watch_start")

    # Prometheus, on the deployment's rules, scraping all of them.
    prom = os.path.join(WORK, "prometheus")
    os.makedirs(prom, exist_ok=True)
    shortened_rules(prom)
    targets = lambda ports: ", ".join('"127.0.0.1:%d"' % p for p in ports)  # noqa: E731
    with open(os.path.join(prom, "prometheus.yml"), "w") as f:
        f.write("""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: pkid
    static_configs: [{targets: [%s]}]
  - job_name: pkictl-agent
    static_configs: [{targets: [%s]}]
  - job_name: lb-rotation
    static_configs: [{targets: [%s]}]
""" % (", ".join(RULE_FILES), targets([SERVER.admin]), targets(agent_ports),
            targets([STATE["lb"]])))
    check = subprocess.run(["promtool", "check", "config", os.path.join(prom, "prometheus.yml")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    STATE["prom_port"] = free_port()
    prom_log = os.path.join(WORK, "prometheus.log")
    proc = spawn(PROCS, [PROMETHEUS, "--config.file", os.path.join(prom, "prometheus.yml"),
                         "--storage.tsdb.path", os.path.join(prom, "data"),
                         "--web.listen-address", "127.0.0.1:%d" % STATE["prom_port"]], prom_log)

    def ready():
        assert proc.poll() is None, open(prom_log).read()
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % STATE["prom_port"],
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for("Prometheus to be ready", ready, 30)


def test_every_target_up():
    def all_up():
        active = get_json("/api/v1/targets")["activeTargets"]
        return len(active) == 4 and all(t["health"] == "up" for t in active) and active
    active = wait_for("every target scraped", all_up, WAIT_S, step=0.5)
    print("targets: " + ", ".join("%s %s" % (t["labels"]["job"], t["labels"]["instance"])
                                  for t in active), flush=True)


def test_expiring_critical_for_short_certificate():
    redis = "127.0.0.1:%d" % STATE["agents"]["redis"]
    alert = wait_for("certificate_expiring_critical for redis-client.crt", lambda: firing(
        "certificate_expiring_critical", cert_name="redis-client.crt", instance=redis),
        WAIT_S, step=0.5)[0]
    print("firing: %s %s: %s" % (alert["labels"]["alertname"], alert["labels"]["cert_name"],
                                 alert["annotations"]["summary"]), flush=True)
    assert alert["labels"]["severity"] == "critical", alert
    assert re.match(r"Certificate redis-client\.crt expiring in 5\.0 days - URGENT$",
                    alert["annotations"]["summary"]), alert


def test_not_critical_for_30_day_certificate():
    # The 30-day certificate is scraped and judged by the same rules: the
    # seed's 30-day warning fires for it (it is under 30 days from its first
    # second), the 7-day critical does not, for it or any other certificate
    # (pkid's CAs and its own server certificate included).
    postgres = "127.0.0.1:%d" % STATE["agents"]["postgres"]
    wait_for("certificate_expiring_soon for postgres-client.crt", lambda: firing(
        "certificate_expiring_soon", cert_name="postgres-client.crt", instance=postgres),
        WAIT_S, step=0.5)
    series = get_json("/api/v1/query?query=" + urllib.request.quote(
        'cert_expiry_timestamp{cert_name="postgres-client.crt"}'))["result"]
    assert len(series) == 1, series
    left = float(series[0]["value"][1]) - float(series[0]["value"][0])
    assert 29 * 86400 < left <= 30 * 86400, left
    critical = alerts("certificate_expiring_critical")
    assert [a["labels"]["cert_name"] for a in critical] == ["redis-client.crt"], critical


def test_rotation_failed():
    lb = "127.0.0.1:%d" % STATE["lb"]
    alert = wait_for("load_balancer_cert_rotation_failed", lambda: firing(
        "load_balancer_cert_rotation_failed", instance=lb), WAIT_S, step=0.5)[0]
    print("firing: %s on %s" % (alert["labels"]["alertname"], lb), flush=True)
    with urllib.request.urlopen("http://%s/metrics" % lb, timeout=5) as r:
        page = r.read().decode()
    assert re.search(r"(?m)^lb_cert_rotation_success 0$", page), page
    assert re.search(r'(?m)^lb_cert_rotations_total\{result="refused"\} [1-9]', page), page
    log = open(os.path.join(WORK, "lb-watch.log")).read()
    assert '"check":"lifetime"' in log, log


def test_pkid_down():
    instance = "127.0.0.1:%d" % SERVER.admin
    assert not firing("PkidDown")
    SERVER.stop()
    alert = wait_for("PkidDown", lambda: firing("PkidDown", instance=instance), WAIT_S,
                     step=0.5)[0]
    print("firing: PkidDown on %s" % instance, flush=True)
    assert alert["labels"]["severity"] == "critical", alert


try:
    run("setup", test_setup)
    run("every_target_up", test_every_target_up)
    run("expiring_critical_for_short_certificate", test_expiring_critical_for_short_certificate)
    run("not_critical_for_30_day_certificate", test_not_critical_for_30_day_certificate)
    run("rotation_failed", test_rotation_failed)
    run("pkid_down", test_pkid_down)
finally:
    for p in reversed(PROCS):
        stop(p)
    SERVER.stop()
    shutil.rmtree(SOCK_DIR, ignore_errors=True)
finish()
