#!/usr/bin/python3
"""acme_bench.py: ACME issuance per second against a running pkid, with
tests/lib/acmeclient.py (bench/acme.sh starts pkid and calls this).

    acme_bench.py --pkictl F --pki DIR --grpc-port N --acme-port N
                  --http-port N --pid PID [--accounts 8] [--seconds 10]
                  [--warmup 1] [--service postgres]
                  [--name postgres.cybersec-framework.local]

Makes --accounts accounts (an EAB key each from `pkictl acme eab create`),
then runs one thread per account, each looping new order -> http-01 (one
responder on 127.0.0.1:--http-port, where pkid's test mode validates) ->
finalize -> download, for --warmup then --seconds seconds. Prints one JSON
object: certificates/s in the measured window, pkid's CPU (user + system,
from /proc/PID/stat before and after) per certificate, the requests per
certificate, the latency of a whole issuance (p50/p99) and the errors.
The client is Python: with few cores, it may be what limits the rate (its
own CPU per certificate is printed too)."""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tests",
                                "lib"))
import acmeclient as ac  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid):
    """utime + stime of |pid| in seconds (proc(5): fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def eab(args):
    out = subprocess.run([args.pkictl, "acme", "eab", "create", "--pki", args.pki, "--as",
                          "pki-agent", "--server", "127.0.0.1:%d" % args.grpc_port, "--service",
                          args.service], capture_output=True, text=True, timeout=60)
    m = re.fullmatch(r"kid: (\S+)\nhmac-key: (\S+)\n", out.stdout)
    if out.returncode != 0 or not m:
        sys.exit("acme_bench: pkictl acme eab create: %s" % out.stderr)
    return m.group(1), m.group(2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pkictl", required=True)
    p.add_argument("--pki", required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--acme-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--accounts", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--service", default="postgres")
    p.add_argument("--name", default="postgres.cybersec-framework.local")
    args = p.parse_args()

    directory = "https://127.0.0.1:%d/acme/directory" % args.acme_port
    root = os.path.join(args.pki, "root-ca/certs/root-ca.crt")
    web = ac.Http01Responder(port=args.http_port).start()
    clients = []
    for _ in range(args.accounts):
        c = ac.Client(directory, root)
        c.poll_step = 0.005
        c.new_account(*eab(args))
        clients.append(c)

    start = time.monotonic()
    t0 = start + args.warmup
    t1 = t0 + args.seconds
    marks = {}
    lock = threading.Lock()
    done, errors, first_errors, latencies, requests = [0], [0], [], [], [0]

    def marker():
        # pkid's and this process's CPU at the window's edges.
        for edge in (t0, t1):
            time.sleep(max(0.0, edge - time.monotonic()))
            marks[edge] = (proc_cpu_s(args.pid), self_cpu_s())

    def work(c):
        in_window = False
        while True:
            now = time.monotonic()
            if now >= t1:
                return
            if now >= t0 and not in_window:
                in_window = True
                r0 = c.requests
            a = time.monotonic()
            try:
                c.issue([args.name], web, timeout=30)
            except Exception as e:  # noqa: BLE001 - counted, then go on
                with lock:
                    errors[0] += 1
                    if len(first_errors) < 3:
                        first_errors.append(repr(e)[:300])
                time.sleep(0.05)
                continue
            b = time.monotonic()
            if in_window and b <= t1:
                with lock:
                    done[0] += 1
                    latencies.append(b - a)
            if in_window:
                with lock:
                    requests[0] += c.requests - r0
                r0 = c.requests

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    threads.append(threading.Thread(target=marker))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.warmup + args.seconds + 120)
    web.stop()
    n = done[0]
    lat = sorted(latencies)

    def pct(q):
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3, 1) if lat else None

    (cpu0, self0), (cpu1, self1) = marks[t0], marks[t1]
    print(json.dumps({
        "bench": "acme", "accounts": args.accounts, "seconds": args.seconds,
        "certificates": n, "certificates_per_s": round(n / args.seconds, 1),
        "server_cpu_us_per_cert": round((cpu1 - cpu0) * 1e6 / n) if n else None,
        "client_cpu_us_per_cert": round((self1 - self0) * 1e6 / n) if n else None,
        "requests_per_cert": round(requests[0] / n, 1) if n else None,
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99)},
        "errors": errors[0], "first_errors": first_errors}))


if __name__ == "__main__":
    main()
