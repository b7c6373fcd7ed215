#!/usr/bin/env bash
# Throughput and CPU per request of the fetch path against the "limit" (same
# response bytes, no work), in one run on this machine: wrk (4 threads, 100
# connections unless THREADS / CONNS say otherwise), 10 s each, loopback.
# Prints a table; see loadtest/README.md. Extra environment
# (VANE_SANDBOX__ISOLATION=thread, say) reaches the server.
#   bash loadtest/run.sh [seconds]
#   THREADS=2 CONNS=64 bash loadtest/run.sh 10
# STORM=1 adds forged-report storms and (a) again after them.
# STORE_URL=postgres://... or mysql://... (an empty database) puts the
# store there instead of a new SQLite file.
# VANE_BIN=/path/to/vane measures that binary instead of this tree's (an
# earlier build, say, for an A/B on the same machine minutes apart).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
threads=${THREADS:-4}
conns=${CONNS:-100}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
# With VANE_BIN, this tree's examples (the limit server) must be built already.
[ -n "${VANE_BIN:-}" ] || cargo build --release --bins --examples -q
vane_bin=${VANE_BIN:-target/release/vane}
dir=$(mktemp -d)
port=18181; limit=18182
token=bench-token-0123456789abcdef
VANE_SERVER__LISTEN=127.0.0.1:$port VANE_STORE__URL="${STORE_URL:-sqlite://$dir/load.db}" \
  VANE_AUTH__ADMIN_TOKENS="bench=$token" VANE_LOG__LEVEL=warn \
  "$vane_bin" serve >"$dir/vane.log" 2>&1 &
vane=$!
trap 'kill $vane ${limit_pid:-} 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

publish() { # id lang file
  local api="http://127.0.0.1:$port/api/v1/configs" auth="Authorization: Bearer $token"
  curl -sf -H "$auth" "$api" -d "{\"id\":\"$1\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' >"$dir/$1.secret"
  local body code
  body=$(python3 -c 'import json,sys; print(json.dumps({"lang": sys.argv[1], "source": open(sys.argv[2]).read()}))' "$2" "$3")
  code=$(curl -sf -H "$auth" "$api/$1/versions" -d "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["code_id"])')
  curl -sf -H "$auth" "$api/$1/release" -d "{\"code_id\":\"$code\"}" >/dev/null
  echo "$code" >"$dir/$1.code"
}
publish star starlark loadtest/scripts/config60.star
publish js javascript loadtest/scripts/config60.js

# The limit answers with the bytes Vane answers with.
curl -sf "http://127.0.0.1:$port/config/star" \
  -d '{"meta":{"platform":"iphone","version":120,"device_id":"d1"},"params":{"score":95,"platform":"iphone","version_code":130}}' \
  >"$dir/body.json"
target/release/examples/limit_server "127.0.0.1:$limit" "$dir/body.json" &
limit_pid=$!
sleep 0.5

run() { # name url script [env]
  local out
  out=$(env ${4:-} python3 loadtest/measure.py wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$3" "$2")
  echo "$1|$out"
}
# The limit runs first and last; ratios are to the mean of the two, since
# the machine's speed drifts during a run.
first=$(run "limit, before" "http://127.0.0.1:$limit/config/star" loadtest/wrk/fixed.lua)
rows=("$(run "(a) starlark, params varying" "http://127.0.0.1:$port/config/star" loadtest/wrk/varying.lua)"
      "$(run "(a') starlark, params varying, cached: false" "http://127.0.0.1:$port/config/star" loadtest/wrk/varying.lua CACHED=false)"
      "$(run "(b) starlark, params fixed" "http://127.0.0.1:$port/config/star" loadtest/wrk/fixed.lua)"
      "$(run "(c) javascript, params varying" "http://127.0.0.1:$port/config/js" loadtest/wrk/varying.lua)"
      "$(run "(c') javascript, params varying, cached: false" "http://127.0.0.1:$port/config/js" loadtest/wrk/varying.lua CACHED=false)")
if [ -n "${STORM:-}" ]; then
  # Forged reports against the released Starlark version, with its public
  # secret, from a device it served and from devices it never served.
  curl -sf "http://127.0.0.1:$port/api/v1/configs/star/evaluate" \
    -d '{"meta":{"platform":"iphone","version":120,"device_id":"attacker"},"params":{"score":95,"platform":"iphone","version_code":130}}' >/dev/null
  storm="SECRET=$(cat "$dir/star.secret") CODE_ID=$(cat "$dir/star.code")"
  url="http://127.0.0.1:$port/api/v1/configs/star/reports"
  rows+=("$(run "(r1) reports, one served source" "$url" loadtest/wrk/report.lua "$storm DEVICES=one")"
         "$(run "(r2) reports, a new unserved source each" "$url" loadtest/wrk/report.lua "$storm DEVICES=many")"
         "$(run "(a) again, after the storms" "http://127.0.0.1:$port/config/star" loadtest/wrk/varying.lua)")
  summary=$(curl -sf -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$port/api/v1/configs/star/versions/$(cat "$dir/star.code")/reports/summary")
  echo "after the storms: $summary"
fi
last=$(run "limit, after" "http://127.0.0.1:$limit/config/star" loadtest/wrk/fixed.lua)
limit_rps=$(python3 -c "print(($(cut -d'|' -f2 <<<"$first") + $(cut -d'|' -f2 <<<"$last")) / 2)")
echo "wrk -t$threads -c$conns, ${secs} s each; CPU per request = machine busy time minus wrk's own, / requests"
echo "| test | requests/s | ratio to limit | p99 | CPU per request |"
echo "|---|---|---|---|---|"
for row in "${rows[@]}" "$first" "$last"; do
  IFS='|' read -r name rps p99 cpu _ <<<"$row"
  ratio=$(python3 -c "print(f'{$rps / $limit_rps:.2f}')")
  echo "| $name | $rps | $ratio | $p99 | $cpu µs |"
done
