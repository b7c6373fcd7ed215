#!/usr/bin/env bash
# CPU per request of the fetch path against the "limit" (the same response
# bytes, no work), in one run on this machine, for process and thread
# isolation side by side: two `vane serve` (one with
# sandbox.isolation = "thread"), wrk (2 threads, 64 connections unless
# THREADS / CONNS say otherwise), SECONDS each row, loopback. Rows: the
# config60 scripts (a, a', b, c, c'), the held-out corpus
# (loadtest/scripts/*.star, rich params), its memo hit and heldout.js.
# Each row's limit answers that row's answer to that row's requests.
# Prints a table (loadtest/table.py); see loadtest/README.md.
#   bash loadtest/run.sh [seconds]
#   THREADS=4 CONNS=100 bash loadtest/run.sh 10
# ISOLATION=process (or thread) measures one server only.
# STORM=1 adds forged-report storms and (a) again after them.
# STORE_URL=postgres://... or mysql://... (an empty database) puts the
# store there instead of a new SQLite file (one server only).
# VANE_BIN=/path/to/vane measures that binary instead of this tree's (an
# earlier build, say, for an A/B on the same machine minutes apart).
# Extra environment (VANE_SANDBOX__WORKERS=1, say) reaches the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
threads=${THREADS:-2}
conns=${CONNS:-64}
isolations=${ISOLATION:-process thread}
[ -n "${STORE_URL:-}" ] && isolations=${isolations%% *}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
# With VANE_BIN, this tree's examples (the limit server) must be built already.
[ -n "${VANE_BIN:-}" ] || cargo build --release --bins --examples -q
vane_bin=${VANE_BIN:-target/release/vane}
dir=$(mktemp -d)
limit=18182
token=bench-token-0123456789abcdef
pids=()
trap 'kill ${pids[*]} 2>/dev/null; rm -rf "$dir"' EXIT

declare -A port
next=18181
for iso in $isolations; do
  next=$((next + 2)); port[$iso]=$next
  VANE_SERVER__LISTEN=127.0.0.1:$next VANE_STORE__URL="${STORE_URL:-sqlite://$dir/$iso.db}" \
    VANE_SANDBOX__ISOLATION=$iso VANE_AUTH__ADMIN_TOKENS="bench=$token" VANE_LOG__LEVEL=warn \
    "$vane_bin" serve >"$dir/$iso.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$next/readyz" >/dev/null && break; sleep 0.1; done
done

rich='{"meta":{"platform":"iphone","version":120,"device_id":"d1"},"params":{"user_id":"u1","score":1,"platform":"iphone","version_code":101,"region":"eu","tags":["news","sport","music","tech","food","travel"],"prefs":{"lang":"en","dark":true,"budget":60,"email":false,"notify":{"email":true,"push":false}},"catalog":[{"id":"item-1","price":37,"score":53,"cat":"games","tags":["sport","music"]}]}}'
publish() { # port id lang file
  local api="http://127.0.0.1:$1/api/v1/configs" auth="Authorization: Bearer $token"
  curl -sf -H "$auth" "$api" -d "{\"id\":\"$2\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' >"$dir/$2.secret"
  local body code
  body=$(python3 -c 'import json,sys; print(json.dumps({"lang": sys.argv[1], "source": open(sys.argv[2]).read()}))' "$3" "$4")
  code=$(curl -sf -H "$auth" "$api/$2/versions" -d "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["code_id"])')
  curl -sf -H "$auth" "$api/$2/release" -d "{\"code_id\":\"$code\"}" >/dev/null
  echo "$code" >"$dir/$2.code"
  # A script that fails would be measured as a cheap error: refuse to go on.
  curl -sf "http://127.0.0.1:$1/config/$2" -d "$rich" >/dev/null \
    || { echo "$4 does not answer 200 for the sample request" >&2; exit 1; }
}
corpus=(heldout bucket rules nested bigparams strings comprehension)
for iso in $isolations; do
  publish "${port[$iso]}" star starlark loadtest/scripts/config60.star
  publish "${port[$iso]}" js javascript loadtest/scripts/config60.js
  publish "${port[$iso]}" heldout-js javascript loadtest/scripts/heldout.js
  for c in "${corpus[@]}"; do publish "${port[$iso]}" "$c" starlark "loadtest/scripts/$c.star"; done
done

# The limit answers with the bytes Vane answers with.
first=${isolations%% *}
curl -sf "http://127.0.0.1:${port[$first]}/config/star" \
  -d '{"meta":{"platform":"iphone","version":120,"device_id":"d1"},"params":{"score":95,"platform":"iphone","version_code":130}}' \
  >"$dir/body.json"
target/release/examples/limit_server "127.0.0.1:$limit" "$dir/body.json" &
pids+=($!)
sleep 0.5

measure() { # url script [env]
  env ${3:-} python3 loadtest/measure.py wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$2" "$1"
}
# name|config|script|env for each row
rows=("(a) config60.star, params varying|star|varying.lua|"
      "(a') config60.star, varying, cached: false|star|varying.lua|CACHED=false"
      "(b) config60.star, params fixed (memo hit)|star|fixed.lua|"
      "(c) config60.js, params varying|js|varying.lua|"
      "(c') config60.js, varying, cached: false|js|varying.lua|CACHED=false")
for c in "${corpus[@]}"; do
  extra=""; [ "$c" = bigparams ] && extra="BIG=1"
  rows+=("$c.star, params varying|$c|rich.lua|$extra")
done
rows+=("heldout.star, params fixed (memo hit)|heldout|rich.lua|FIXED=1"
       "heldout.js, params varying|heldout-js|rich.lua|")

# The limit runs first and last (config60's answer, fixed requests), and
# before each row with that row's own answer and requests: a row's ratio is
# to the limit measured next to it, on the same bytes in and out.
limit_first=$(measure "http://127.0.0.1:$limit/config/star" loadtest/wrk/fixed.lua)
declare -A got
row_limit=18190
for row in "${rows[@]}"; do
  IFS='|' read -r name config script env <<<"$row"
  sample=$rich
  [ "$script" = rich.lua ] || sample='{"meta":{"platform":"iphone","version":120,"device_id":"d1"},"params":{"score":95,"platform":"iphone","version_code":130}}'
  curl -sf "http://127.0.0.1:${port[$first]}/config/$config" -d "$sample" >"$dir/$config.body"
  target/release/examples/limit_server "127.0.0.1:$row_limit" "$dir/$config.body" &
  lp=$!
  sleep 0.3
  got["$name|limit"]=$(measure "http://127.0.0.1:$row_limit/config/$config" "loadtest/wrk/$script" "$env")
  kill $lp; wait $lp 2>/dev/null || true
  for iso in $isolations; do
    got["$name|$iso"]=$(measure "http://127.0.0.1:${port[$iso]}/config/$config" "loadtest/wrk/$script" "$env")
  done
done
if [ -n "${STORM:-}" ]; then
  # Forged reports against the released Starlark version, with its public
  # secret, from a device it served and from devices it never served.
  p=${port[$first]}
  curl -sf "http://127.0.0.1:$p/api/v1/configs/star/evaluate" \
    -d '{"meta":{"platform":"iphone","version":120,"device_id":"attacker"},"params":{"score":95,"platform":"iphone","version_code":130}}' >/dev/null
  storm="SECRET=$(cat "$dir/star.secret") CODE_ID=$(cat "$dir/star.code")"
  url="http://127.0.0.1:$p/api/v1/configs/star/reports"
  for r in "(r1) reports, one served source|$url|report.lua|$storm DEVICES=one" \
           "(r2) reports, a new unserved source each|$url|report.lua|$storm DEVICES=many" \
           "(a) again, after the storms|http://127.0.0.1:$p/config/star|varying.lua|"; do
    IFS='|' read -r name url script env <<<"$r"
    rows+=("$name|-|-|-")
    got["$name|$first"]=$(measure "$url" "loadtest/wrk/$script" "$env")
  done
  echo "after the storms: $(curl -sf -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$p/api/v1/configs/star/versions/$(cat "$dir/star.code")/reports/summary")"
fi
limit_last=$(measure "http://127.0.0.1:$limit/config/star" loadtest/wrk/fixed.lua)

{
  echo "limit|$limit_first|$limit_last"
  for row in "${rows[@]}"; do
    name=${row%%|*}
    line="$name|limit=${got["$name|limit"]:-}"
    for iso in $isolations; do line+="|$iso=${got["$name|$iso"]:-}"; done
    echo "$line"
  done
} | python3 loadtest/table.py "wrk -t$threads -c$conns, ${secs} s each"
