#!/usr/bin/python3
"""server_latency.py: pkid's own view of a phase, from its /metrics: the
pkid_grpc_request_duration_seconds histogram of Issue (pki.v1.Pki/Issue:
a call's headers received to its trailers sent), and the committer's
work: its fdatasyncs (pkid_fsync_duration_seconds) and the jobs each
commit made durable (pkid_commit_batch_size).

  server_latency.py snap ADMIN_PORT            one snapshot, JSON on stdout
  (report.py imports percentiles() and committer() to diff two of them)

Beside the load generator's latency (from each request's scheduled send,
its own lag included), this is the server's alone: a tail that is here is
pkid's; one that is only there is the client's or the machine's. The
buckets are pkid's (0.5 ms to 10 s), so a percentile is interpolated
linearly inside its bucket: good to tell 3 ms from 20 ms, not 3.1 from
3.3. The committer's figures say how much of a phase the one thread that
makes issuances durable spent waiting on the disk, and how many jobs
shared each wait: a committer busy most of the time in fdatasync, with
one or two jobs a commit, is where a tail at moderate load comes from."""
import json
import re
import sys
import time
import urllib.request

METHOD = "Issue"  # pkid labels its own methods by name
BUCKET = re.compile(r'(pkid_grpc_request_duration_seconds|pkid_fsync_duration_seconds)_bucket'
                    r'\{(?:method="([^"]*)",)?le="([^"]*)"\} (\S+)$')
TOTAL = re.compile(r'(pkid_fsync_duration_seconds|pkid_commit_batch_size)_(sum|count) (\S+)$')


def snapshot(port):
    """{"time": s, "issue": buckets, "fsync": buckets, "fsync_sum_s",
    "batch_count", "batch_sum"}: buckets as {le: cumulative count}."""
    text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=30).read()
    snap = {"time": time.time(), "issue": {}, "fsync": {}}
    for line in text.decode().splitlines():
        m = BUCKET.match(line)
        if m and m.group(1) == "pkid_fsync_duration_seconds":
            snap["fsync"][m.group(3)] = int(float(m.group(4)))
        elif m and m.group(2) == METHOD:
            snap["issue"][m.group(3)] = int(float(m.group(4)))
        m = TOTAL.match(line)
        if m:
            key = {"pkid_fsync_duration_seconds": "fsync", "pkid_commit_batch_size": "batch"}[m.group(1)]
            snap[key + "_" + m.group(2) + ("_s" if key == "fsync" and m.group(2) == "sum" else "")] = \
                float(m.group(3))
    return snap


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


def committer(before, after):
    """The committer between two snapshots: fdatasyncs a second, their mean
    and p99 (interpolated, as above), the share of the wall time spent in
    them, and the jobs each commit made durable; or None."""
    secs = after["time"] - before["time"]
    n = after.get("fsync_count", 0) - before.get("fsync_count", 0)
    commits = after.get("batch_count", 0) - before.get("batch_count", 0)
    if secs <= 0 or n <= 0 or commits <= 0:
        return None
    busy = after.get("fsync_sum_s", 0) - before.get("fsync_sum_s", 0)
    return {"fsyncs_per_s": round(n / secs, 1),
            "fsync_mean_us": round(busy / n * 1e6),
            "fsync_p99_us": percentiles(before["fsync"], after["fsync"], (0.99,))["p99_us"],
            "fsync_busy_share": round(busy / secs, 3),
            "jobs_per_commit": round((after["batch_sum"] - before["batch_sum"]) / commits, 2)}


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "snap":
        sys.exit(__doc__)
    json.dump(snapshot(sys.argv[2]), sys.stdout)
    print()
