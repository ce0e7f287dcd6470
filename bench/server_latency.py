#!/usr/bin/python3
"""server_latency.py: pkid's own view of a phase's latency, from its
/metrics: the pkid_grpc_request_duration_seconds histogram of
Issue (pki.v1.Pki/Issue: a call's headers received to its trailers sent).

  server_latency.py snap ADMIN_PORT            one snapshot, JSON on stdout
  (report.py imports percentiles() to diff two of them)

Beside the load generator's latency (from each request's scheduled send,
its own lag included), this is the server's alone: a tail that is here is
pkid's; one that is only there is the client's or the machine's. The
buckets are pkid's (0.5 ms to 10 s), so a percentile is interpolated
linearly inside its bucket: good to tell 3 ms from 20 ms, not 3.1 from
3.3."""
import json
import re
import sys
import urllib.request

METRIC = "pkid_grpc_request_duration_seconds_bucket"
METHOD = "Issue"  # pkid labels its own methods by name


def snapshot(port):
    text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=30).read()
    buckets = {}
    for line in text.decode().splitlines():
        m = re.match(r'%s\{method="([^"]*)",le="([^"]*)"\} (\S+)$' % METRIC, line)
        if m and m.group(1) == METHOD:
            le = float("inf") if m.group(2) == "+Inf" else float(m.group(2))
            buckets[m.group(2)] = (le, int(float(m.group(3))))
    return {k: v[1] for k, v in sorted(buckets.items(), key=lambda kv: kv[1][0])}


def percentiles(before, after, qs=(0.5, 0.99, 0.999)):
    """{"count", "p50_us", "p99_us", "p99_9_us"} of the calls between two
    snapshots (cumulative buckets, as Prometheus keeps them)."""
    edges = sorted((float("inf") if k == "+Inf" else float(k), k) for k in after)
    cum = [(le, after[k] - before.get(k, 0)) for le, k in edges]
    total = cum[-1][1] if cum else 0
    out = {"count": total}
    for q in qs:
        name = "p" + ("%g" % (q * 100)).replace(".", "_") + "_us"
        if total == 0:
            out[name] = None
            continue
        rank = q * total
        lo_le, lo_n = 0.0, 0
        for le, n in cum:
            if n >= rank:
                if le == float("inf"):
                    out[name] = round(lo_le * 1e6)  # past the last bucket: its edge, a floor
                else:
                    frac = (rank - lo_n) / (n - lo_n) if n > lo_n else 1.0
                    out[name] = round((lo_le + frac * (le - lo_le)) * 1e6)
                break
            lo_le, lo_n = le, n
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "snap":
        sys.exit(__doc__)
    json.dump(snapshot(sys.argv[2]), sys.stdout)
    print()
