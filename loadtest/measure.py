"""Runs one wrk command and prints `requests/s|p99|CPU µs per request|requests`.

CPU per request is the whole machine's busy time over the run (from
/proc/stat), minus the load generator's own CPU (its rusage), divided by the
requests completed: the server's cost, whatever share of the two cores wrk
happened to take.

    python3 loadtest/measure.py wrk -t2 -c64 -d10s --latency -s script URL
"""
import os
import re
import resource
import subprocess
import sys


def busy_seconds():
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main():
    before_busy, before_child = busy_seconds(), children_cpu()
    out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True).stdout
    busy = busy_seconds() - before_busy
    generator = children_cpu() - before_child
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    requests = int(re.search(r"^\s+(\d+) requests in", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"{errors.group(1)} responses were not 2xx from {sys.argv[-1]}", file=sys.stderr)
    cpu_us = (busy - generator) / max(requests, 1) * 1e6
    print(f"{rps:.0f}|{p99}|{cpu_us:.1f}|{requests}")


if __name__ == "__main__":
    main()
