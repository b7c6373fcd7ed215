"""Formats run.sh's measurements as a Markdown table.

Reads from stdin a line `limit|<first>|<last>` and one line per row,
`name|limit=<m>|process=<m>|thread=<m>`, where each <m> is measure.py's
`requests/s|p99|CPU µs per request|requests`. Ratios are the limit's CPU per
request over the row's: the share of the limit's efficiency Vane reaches.
The limit is the row's own (the same answer, the same requests, measured
just before it) or, without one, the mean of the first and last runs. `process/thread` is the CPU of process
isolation over thread isolation's.

    ... | python3 loadtest/table.py "wrk -t2 -c64, 8 s each"
"""
import sys


def groups(tokens):
    """Splits `iso=rps|p99|cpu|n|iso=...` into {iso: (rps, p99, cpu)}."""
    out, i = {}, 0
    while i < len(tokens):
        iso, rps = tokens[i].split("=", 1)
        if rps:
            out[iso] = (float(rps), tokens[i + 1], float(tokens[i + 2]))
            i += 4
        else:
            i += 1
    return out


def main():
    lines = [l.rstrip("\n").split("|") for l in sys.stdin if l.strip()]
    limit = lines[0]
    runs = [(float(limit[1]), limit[2], float(limit[3])), (float(limit[5]), limit[6], float(limit[7]))]
    limit_cpu = sum(r[2] for r in runs) / 2
    rows = [(l[0], groups(l[1:])) for l in lines[1:]]
    isolations = []
    for _, g in rows:
        isolations += [i for i in g if i not in isolations and i != "limit"]
    print(f"{sys.argv[1] if len(sys.argv) > 1 else ''}; CPU per request = machine busy time minus wrk's own, / requests")
    print(f"limit: {runs[0][0]:.0f} / {runs[1][0]:.0f} requests/s, p99 {runs[0][1]} / {runs[1][1]}, "
          f"{runs[0][2]:.1f} / {runs[1][2]:.1f} µs per request")
    head = "| row | limit µs/req |" + "".join(f" {i}: req/s | p99 | µs/req | limit/Vane |" for i in isolations)
    if len(isolations) == 2:
        head += f" {isolations[0]}/{isolations[1]} |"
    print(head)
    print("|---|" + "---|" * (head.count("|") - 2))
    for name, g in rows:
        # A row's own limit (same answer, same requests) when measured.
        own = g["limit"][2] if "limit" in g else limit_cpu
        line = f"| {name} | {own:.1f} |"
        for i in isolations:
            if i in g:
                rps, p99, cpu = g[i]
                line += f" {rps:,.0f} | {p99} | {cpu:.1f} | {own / cpu:.2f} |"
            else:
                line += " | | | |"
        if len(isolations) == 2:
            a, b = (g.get(i) for i in isolations)
            line += f" {a[2] / b[2]:.2f} |" if a and b else " |"
        print(line)


if __name__ == "__main__":
    main()
