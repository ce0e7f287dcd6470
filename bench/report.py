#!/usr/bin/python3
"""report.py WORK OUT SECONDS WARMUP COMMAND PEERS_SKIPPED: bench/run.sh's
results, gathered.

Reads what run.sh's phases left in WORK (ecdsa_speed.json, one JSON file a
loadgen phase, sweep_PCT.json, and where they ran pkid_ocsp.json,
cfssl.json, openssl_ocsp.json; for the open-loop phases, pkid's own
latency histogram and committer figures before and after,
NAME.server_before/after.json;
instructions.json), writes them to OUT as one JSON object with
a summary and the ratios of pkid to each peer, and prints the table.
PEERS_SKIPPED, when not empty, says why the peers did not run; it stands
in their place in OUT."""
import json
import os
import platform
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_latency as server_latency_mod  # noqa: E402

PHASES = ("unary_closed", "stream_closed", "open_half_peak")
SWEEP_PERCENTS = (25, 50, 75, 100)


def load(work, name):
    with open(os.path.join(work, name + ".json")) as f:
        return json.load(f)


def maybe(work, name):
    return load(work, name) if os.path.exists(os.path.join(work, name + ".json")) else None


def floor_us_per_certificate(floor):
    # One CSR verify, two signatures (the certificate and its OCSP response).
    return 1e6 / floor["ecdsa_p256_verify_per_s"] + 2e6 / floor["ecdsa_p256_sign_per_s"]


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def ran(peer):
    return peer is not None and "skipped" not in peer


def server_view(work, name):
    """pkid's own latency over a phase and its committer's work
    (bench/server_latency.py): (latency or None, committer or None)."""
    before, after = maybe(work, name + ".server_before"), maybe(work, name + ".server_after")
    if before is None or not after:
        return None, None
    return (server_latency_mod.percentiles(before["issue"], after["issue"]),
            server_latency_mod.committer(before, after))


def best_floor(start, end):
    """The crypto floor from ecdsa_speed's runs before and after pkid's
    phases: each operation's faster rate. Noise on a shared machine only
    slows the crypto down, so the faster figure is the nearer to its cost."""
    if end is None:
        return dict(start)
    return {k: max(start[k], end[k]) for k in ("ecdsa_p256_sign_per_s", "ecdsa_p256_verify_per_s")}


def build(work, secs, warm, command, skipped):
    floor_start, floor_end = load(work, "ecdsa_speed"), maybe(work, "ecdsa_speed_end")
    floor = best_floor(floor_start, floor_end)
    floor_us = floor_us_per_certificate(floor)
    phases = {n: load(work, n) for n in PHASES}
    half = phases["open_half_peak"]
    half["server_latency_us"], half["committer"] = server_view(work, "open_half_peak")
    sweep = []
    for pct in SWEEP_PERCENTS:
        run = dict(load(work, "sweep_%d" % pct), percent_of_peak=pct)
        run["server_latency_us"], run["committer"] = server_view(work, "sweep_%d" % pct)
        sweep.append(run)
    pkid_ocsp = maybe(work, "pkid_ocsp")
    cfssl, openssl_ocsp = maybe(work, "cfssl"), maybe(work, "openssl_ocsp")
    instructions = maybe(work, "instructions")
    cfssl_runs = [(pct, maybe(work, "cfssl_sweep_%d" % pct)) for pct in SWEEP_PERCENTS]
    cfssl_sweep = [dict(run, percent_of_peak=pct) for pct, run in cfssl_runs if run]
    if skipped:
        cfssl = openssl_ocsp = {"skipped": skipped}
        cfssl_sweep = []
    result = {
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "seconds_per_phase": secs,
        "warmup_s": warm,
        "crypto_floor": dict(floor, us_per_certificate=round(floor_us, 1),
                             note="1 ECDSA P-256 verify (CSR) + 2 signatures (certificate, OCSP); "
                                  "each rate the faster of the runs before and after pkid's phases",
                             runs=[dict(f, us_per_certificate=round(floor_us_per_certificate(f), 1))
                                   for f in (floor_start, floor_end) if f is not None]),
        "phases": phases,
        "sweep": sweep,
        "pkid_ocsp": pkid_ocsp,
        "peers": {"cfssl_sign": cfssl, "cfssl_sweep": cfssl_sweep, "openssl_ocsp": openssl_ocsp},
        # callgrind's counts (bench/instructions.sh): None when skipped
        "instructions": instructions,
        "targets": {"certificates_per_s": 10000, "server_cpu_us_per_certificate": 100,
                    "p99_ms_at_half_peak": 5},
    }
    u, s, o = phases["unary_closed"], phases["stream_closed"], phases["open_half_peak"]
    result["summary"] = {
        "unary_certificates_per_s": u["throughput_per_s"],
        "stream_certificates_per_s": s["throughput_per_s"],
        "peak_certificates_per_s": max(u["throughput_per_s"], s["throughput_per_s"]),
        "server_cpu_us_per_certificate_unary": u.get("server_cpu_us_per_success"),
        "server_cpu_us_per_certificate_stream": s.get("server_cpu_us_per_success"),
        "half_peak_rate_per_s": o["offered_rate_per_s"],
        "half_peak_p50_ms": o["latency_us"]["p50"] / 1000,
        "half_peak_p99_ms": o["latency_us"]["p99"] / 1000,
        "half_peak_server_p99_ms":
            o["server_latency_us"]["p99_us"] / 1000
            if o.get("server_latency_us") and o["server_latency_us"].get("p99_us") is not None
            else None,
        "client_cpu_us_per_request_unary": u.get("client_cpu_us_per_request"),
        "crypto_floor_us_per_certificate": round(floor_us, 1),
        "instructions_per_certificate":
            instructions["server_instructions_per_cert"] if instructions else None,
        "instructions_over_crypto_floor":
            instructions["server_over_floor"] if instructions else None,
    }
    ocsp_both = ran(openssl_ocsp) and pkid_ocsp
    result["ratios"] = {
        "note": "pkid / peer for rates; peer / pkid for CPU per item (above 1: pkid is better)",
        "unary_certificates_per_s_vs_cfssl":
            ratio(u["throughput_per_s"], cfssl["throughput_per_s"]) if ran(cfssl) else None,
        "peak_certificates_per_s_vs_cfssl":
            ratio(result["summary"]["peak_certificates_per_s"], cfssl["throughput_per_s"])
            if ran(cfssl) else None,
        "cfssl_cpu_per_certificate_vs_pkid_unary":
            ratio(cfssl.get("server_cpu_us_per_success"), u.get("server_cpu_us_per_success"))
            if ran(cfssl) else None,
        "ocsp_responses_per_s_vs_openssl_ocsp":
            ratio(pkid_ocsp["throughput_per_s"], openssl_ocsp["throughput_per_s"])
            if ocsp_both else None,
        "openssl_ocsp_cpu_per_response_vs_pkid":
            ratio(openssl_ocsp.get("server_cpu_us_per_success"),
                  pkid_ocsp.get("server_cpu_us_per_success"))
            if ocsp_both else None,
        "unary_certificates_per_s_vs_crypto_floor": ratio(u["throughput_per_s"], 1e6 / floor_us),
        # pkid's CPU per certificate over the floor's (below 1 is possible:
        # pkid's prepared nonces sign for less than BoringSSL's ECDSA_sign)
        "server_cpu_over_crypto_floor_unary": ratio(u.get("server_cpu_us_per_success"), floor_us),
        "server_cpu_over_crypto_floor_stream": ratio(s.get("server_cpu_us_per_success"), floor_us),
    }
    return result


def fmt(v, scale=1.0, digits=0):
    return "-" if v is None else "%.*f" % (digits, v / scale)


def print_table(result, out):
    phases, sweep = result["phases"], result["sweep"]
    u, s, o = phases["unary_closed"], phases["stream_closed"], phases["open_half_peak"]
    print()
    print("pkid issuance benchmark: %d CPUs, %g s per phase after %g s warm-up"
          % (os.cpu_count(), result["seconds_per_phase"], result["warmup_s"]))
    cols = ("phase", "certs/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
            "srv us/cert", "srv cores", "srv RSS MiB", "cli us/req", "errors")
    rows = []
    names = {"unary_closed": "unary, %d in flight" % u.get("concurrency", 0),
             "stream_closed": "stream, %dx%d" % (s.get("concurrency", 0), s.get("stream_requests", 0)),
             "open_half_peak": "open loop %.0f/s" % o.get("offered_rate_per_s", 0)}
    for n, p in phases.items():
        lat = p["latency_us"]
        rows.append((names[n], fmt(p["throughput_per_s"]), fmt(lat["p50"], 1000, 2),
                     fmt(lat["p90"], 1000, 2), fmt(lat["p99"], 1000, 2), fmt(lat["p99_9"], 1000, 2),
                     fmt(lat["max"], 1000, 2), fmt(p.get("server_cpu_us_per_success"), 1, 1),
                     fmt(p.get("server_cpu_cores"), 1, 2), fmt(p.get("server_rss_kb"), 1024, 1),
                     fmt(p.get("client_cpu_us_per_request"), 1, 1),
                     str(p["errors_total"]) + ("" if not p["errors"] else " " + json.dumps(p["errors"]))))
    widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths)))

    print(line(cols))
    for r in rows:
        print(line(r))
    print()
    print("open-loop sweep (offered -> achieved, p50 / p99 ms as the generator saw them, from each "
          "scheduled send; pkid's own, headers to trailers):")

    def srv(p):
        s = p.get("server_latency_us")
        if not s or s.get("p50_us") is None:
            return "      -  /      -"
        return "%7.2f / %7.2f" % (s["p50_us"] / 1000, s["p99_us"] / 1000)

    def commit(p):
        c = p.get("committer")
        if not c:
            return ""
        return ("   commit %5.0f fsync/s, %5.1f jobs each, fsync mean %4d us, busy %3.0f%%"
                % (c["fsyncs_per_s"], c["jobs_per_commit"], c["fsync_mean_us"],
                   100 * c["fsync_busy_share"]))

    o = phases["open_half_peak"]
    print("  half  %7.0f/s -> %7.0f/s   %7.2f / %7.2f   pkid %s%s"
          % (o["offered_rate_per_s"], o["throughput_per_s"], o["latency_us"]["p50"] / 1000,
             o["latency_us"]["p99"] / 1000, srv(o), commit(o)))
    for p in sweep:
        print("  %3d%%  %7.0f/s -> %7.0f/s   %7.2f / %7.2f   pkid %s   errors %d%s"
              % (p["percent_of_peak"], p["offered_rate_per_s"], p["throughput_per_s"],
                 p["latency_us"]["p50"] / 1000, p["latency_us"]["p99"] / 1000, srv(p),
                 p["errors_total"], commit(p)))
    print()
    R = result["ratios"]
    cfssl, openssl_ocsp = result["peers"]["cfssl_sign"], result["peers"]["openssl_ocsp"]
    pkid_ocsp = result["pkid_ocsp"]

    def rf(v):
        return "-" if v is None else "%.2fx" % v

    if ran(cfssl):
        print("CFSSL cfssl serve, sign API, %d conns: %.0f certs/s, p50 %.2f ms, p99 %.2f ms, %s us CPU/cert"
              % (cfssl["connections"], cfssl["throughput_per_s"], cfssl["latency_us"]["p50"] / 1000,
                 cfssl["latency_us"]["p99"] / 1000, fmt(cfssl.get("server_cpu_us_per_success"), 1, 0)))
        print("  pkid/cfssl: unary %s, peak %s; CPU per cert cfssl/pkid %s"
              % (rf(R["unary_certificates_per_s_vs_cfssl"]), rf(R["peak_certificates_per_s_vs_cfssl"]),
                 rf(R["cfssl_cpu_per_certificate_vs_pkid_unary"])))
        for p in result["peers"]["cfssl_sweep"]:
            print("  cfssl %3d%%  %7.0f/s -> %7.0f/s   p50 %7.2f  p99 %7.2f  p99.9 %7.2f ms   "
                  "send lag max %.1f ms   errors %d"
                  % (p["percent_of_peak"], p["offered_rate_per_s"], p["throughput_per_s"],
                     p["latency_us"]["p50"] / 1000, p["latency_us"]["p99"] / 1000,
                     p["latency_us"]["p99_9"] / 1000, p["max_send_lag_us"] / 1000,
                     p["errors_total"]))
    else:
        print("CFSSL: skipped (%s)" % (cfssl or {}).get("skipped", "not run"))
    if pkid_ocsp:
        print("pkid OCSP (ocsp_load, keep-alive, %d conns): %.0f responses/s, %s us CPU/response"
              % (pkid_ocsp["connections"], pkid_ocsp["throughput_per_s"],
                 fmt(pkid_ocsp.get("server_cpu_us_per_success"), 1, 1)))
    if ran(openssl_ocsp):
        print("openssl ocsp (-multi %d, a connection per request, %d conns): %.0f responses/s, "
              "p50 %.2f ms, p99 %.2f ms, %s us CPU/response"
              % (os.cpu_count(), openssl_ocsp["connections"], openssl_ocsp["throughput_per_s"],
                 openssl_ocsp["latency_us"]["p50"] / 1000, openssl_ocsp["latency_us"]["p99"] / 1000,
                 fmt(openssl_ocsp.get("server_cpu_us_per_success"), 1, 0)))
        print("  pkid/openssl ocsp: %s responses/s; CPU per response openssl/pkid %s"
              % (rf(R["ocsp_responses_per_s_vs_openssl_ocsp"]), rf(R["openssl_ocsp_cpu_per_response_vs_pkid"])))
    else:
        print("openssl ocsp: skipped (%s)" % (openssl_ocsp or {}).get("skipped", "not run"))
    floor = result["crypto_floor"]
    print("crypto floor: ECDSA P-256 sign %.0f/s, verify %.0f/s on one core: %.1f us per certificate"
          " (runs: %s us)" % (floor["ecdsa_p256_sign_per_s"], floor["ecdsa_p256_verify_per_s"],
                              floor_us_per_certificate(floor),
                              ", ".join("%.1f" % r["us_per_certificate"] for r in floor["runs"])))
    if R["server_cpu_over_crypto_floor_unary"] is not None:
        print("  pkid CPU per certificate / crypto floor: unary %.2f, stream %.2f"
              % (R["server_cpu_over_crypto_floor_unary"], R["server_cpu_over_crypto_floor_stream"]))
    ins = result["instructions"]
    if ins:
        print("instructions per certificate (callgrind, %d certificates): server %d, crypto floor "
              "%d, ratio %.3f" % (ins["certificates"], ins["server_instructions_per_cert"],
                                  ins["floor_instructions_per_cert"], ins["server_over_floor"]))
    else:
        print("instructions per certificate: skipped (--short, --no-instructions or binaries given)")
    print("targets (PRODUCT.md): >= 10000 certs/s; <= 100 us server CPU per cert; p99 <= 5 ms at half peak")
    print("results: %s" % out)


def main():
    work, out, secs, warm = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    command, skipped = sys.argv[5], sys.argv[6]
    result = build(work, secs, warm, command, skipped)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print_table(result, out)


if __name__ == "__main__":
    main()
