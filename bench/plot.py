#!/usr/bin/python3
"""plot.py RESULTS.json OUT.png: bench/run.sh's open-loop sweep as a PNG.

Left: achieved against offered certificates/s (the diagonal is "keeps
up"), pkid's and CFSSL's open-loop sweeps, with the closed-loop peaks as
lines. Right: p50, p99 and p99.9 latency (ms, log scale, from each
scheduled send) against offered load, pkid's solid and CFSSL's dashed."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    r = json.load(open(sys.argv[1]))
    sweep = r["sweep"]
    cfssl_sweep = (r.get("peers") or {}).get("cfssl_sweep") or []
    offered = [p["offered_rate_per_s"] for p in sweep]
    achieved = [p["throughput_per_s"] for p in sweep]
    c_offered = [p["offered_rate_per_s"] for p in cfssl_sweep]
    c_achieved = [p["throughput_per_s"] for p in cfssl_sweep]
    s = r["summary"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    top = max(offered + achieved + c_offered + c_achieved) * 1.1
    a.plot([0, top], [0, top], color="0.8", linestyle=":", label="offered = achieved")
    a.plot(offered, achieved, "o-", label="pkid unary, open loop")
    if cfssl_sweep:
        a.plot(c_offered, c_achieved, "^--", color="C3", label="cfssl sign, open loop")
    a.axhline(s["unary_certificates_per_s"], color="C0", linestyle="--", linewidth=0.8,
              label="pkid unary closed loop %.0f/s" % s["unary_certificates_per_s"])
    a.axhline(s["stream_certificates_per_s"], color="C2", linestyle="--", linewidth=0.8,
              label="pkid stream closed loop %.0f/s" % s["stream_certificates_per_s"])
    cfssl = (r.get("peers") or {}).get("cfssl_sign") or {}
    ymax = max(top, s["stream_certificates_per_s"] * 1.1)
    if "throughput_per_s" in cfssl:
        a.axhline(cfssl["throughput_per_s"], color="C3", linestyle="-.", linewidth=0.8,
                  label="cfssl serve, %d conns: %.0f/s" % (cfssl["connections"], cfssl["throughput_per_s"]))
        ymax = max(ymax, cfssl["throughput_per_s"] * 1.1)
    a.set_xlabel("offered certificates/s")
    a.set_ylabel("achieved certificates/s")
    a.set_xlim(0, top)
    a.set_ylim(0, ymax)
    a.grid(True, alpha=0.3)
    a.legend(fontsize=8, loc="upper left")
    a.set_title("throughput")
    marks = (("p50", "p50", "o"), ("p99", "p99", "s"), ("p99_9", "p99.9", "D"))
    for i, (key, name, mark) in enumerate(marks):
        b.plot(offered, [p["latency_us"][key] / 1000 for p in sweep], mark + "-", color="C%d" % i,
               label="pkid " + name)
        if cfssl_sweep:
            b.plot(c_offered, [p["latency_us"][key] / 1000 for p in cfssl_sweep], mark + "--",
                   color="C%d" % i, alpha=0.6, label="cfssl " + name)
    for x, p in zip(offered, sweep):
        b.annotate("%d%%" % p["percent_of_peak"], (x, 0), xytext=(0, 4), textcoords="offset points",
                   xycoords=("data", "axes fraction"), ha="center", fontsize=8, color="0.4")
    b.set_yscale("log")
    b.set_xlabel("offered certificates/s (labels: percent of pkid's unary closed-loop peak)")
    b.set_ylabel("latency, ms (from the scheduled send)")
    b.set_xlim(0, top)
    b.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=8)
    b.set_title("latency")
    fig.suptitle("pkid Issue and cfssl sign, open loop: %d CPUs, %s" % (r["machine"]["cpus"], r["date"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
