#!/usr/bin/python3
"""ocsp_json.py LABEL LINE: bench/ocsp_load's one line of key=value
results as one JSON object on stdout, shaped like loadgen's, so that
bench/report.py reads every phase the same way.

A key ocsp_load did not print comes out as null (or 0 for counts)."""
import json
import re
import sys


def main():
    label, line = sys.argv[1], sys.argv[2]
    kv = dict(re.findall(r"(\w+)=([^ ]+)", line))

    def num(k):
        # Values carry their units: "2.0", "1.57s", "76786/s".
        return float(kv[k].rstrip("s/")) if k in kv else None

    print(json.dumps({"label": label, "tool": "ocsp_load", "connections": int(kv.get("conns", 0)),
                      "duration_s": num("seconds"), "successes": int(kv.get("responses", 0)),
                      "errors_total": int(kv.get("errors", 0)), "throughput_per_s": num("rate"),
                      "server_cpu_us_per_success": num("server_cpu_us_per_response")}))


if __name__ == "__main__":
    main()
