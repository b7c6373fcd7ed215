#!/usr/bin/env bash
# OpenFeature (OFREP) evaluation against the native evaluate route, in one
# run: the same Starlark config (loadtest/scripts/config60.star) with the same
# parameters, params fixed (so each answer is the memoized result), then a
# bulk evaluation of ten configs, and the same bulk answered 304 by its ETag.
# CPU per request as in run.sh (loadtest/measure.py).
#   bash loadtest/ofrep.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
threads=${THREADS:-2}
conns=${CONNS:-64}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -n "${VANE_BIN:-}" ] || cargo build --release --bins -q
vane_bin=${VANE_BIN:-target/release/vane}
dir=$(mktemp -d)
port=18183
token=bench-token-0123456789abcdef
client=bench-client-token-0123456789
VANE_SERVER__LISTEN=127.0.0.1:$port VANE_STORE__URL="sqlite://$dir/load.db" \
  VANE_AUTH__ADMIN_TOKENS="bench=$token" VANE_LOG__LEVEL=warn \
  VANE_OFREP__CLIENT_TOKENS="[{name=\"bench\", token=\"$client\", configs=[\"flag-*\"]}]" \
  "$vane_bin" serve >"$dir/vane.log" 2>&1 &
vane=$!
trap 'kill $vane 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

api="http://127.0.0.1:$port/api/v1/configs"
publish() { # id source
  curl -sf -H "Authorization: Bearer $token" "$api" -d "{\"id\":\"$1\"}" >/dev/null
  local code
  code=$(python3 -c 'import json,sys; print(json.dumps({"lang": "starlark", "source": sys.argv[1]}))' "$2" \
    | curl -sf -H "Authorization: Bearer $token" "$api/$1/versions" -d @- \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["code_id"])')
  curl -sf -H "Authorization: Bearer $token" "$api/$1/release" -d "{\"code_id\":\"$code\"}" >/dev/null
}
# OFREP reads `platform` as request metadata, so this copy takes it as `os`.
publish star "$(sed 's/p\["platform"\]/p["os"]/' loadtest/scripts/config60.star)"
for i in $(seq 10); do publish "flag-$i" "return {'on': p.get('n', 0) > $i, 'name': 'flag $i'}"; done

params='"score":95,"os":"iphone","version_code":130'
native="{\"meta\":{\"platform\":\"iphone\",\"version\":120,\"device_id\":\"d1\"},\"params\":{$params}}"
ofrep="{\"context\":{\"targetingKey\":\"d1\",\"platform\":\"iphone\",\"version\":120,$params}}"
bulk='{"context":{"targetingKey":"d1","n":5}}'
etag=$(curl -sfi -H "Authorization: Bearer $client" "http://127.0.0.1:$port/ofrep/v1/evaluate/flags" -d "$bulk" \
  | tr -d '\r' | sed -n 's/^etag: //Ip')

run() { # name url env...
  local name=$1 url=$2 out
  shift 2
  out=$(env "$@" python3 loadtest/measure.py wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s loadtest/wrk/body.lua "$url")
  echo "$name|$out"
}
rows=("$(run "native evaluate" "$api/star/evaluate" BODY="$native")"
      "$(run "OFREP single" "http://127.0.0.1:$port/ofrep/v1/evaluate/flags/star" BODY="$ofrep")"
      "$(run "OFREP bulk, 10 configs" "http://127.0.0.1:$port/ofrep/v1/evaluate/flags" BODY="$bulk" AUTH="$client")"
      "$(run "OFREP bulk, 304 by ETag" "http://127.0.0.1:$port/ofrep/v1/evaluate/flags" BODY="$bulk" AUTH="$client" ETAG="$etag")")
echo "wrk -t$threads -c$conns, ${secs} s each; CPU per request = machine busy time minus wrk's own, / requests"
echo "| test | requests/s | p99 | CPU per request |"
echo "|---|---|---|---|"
for row in "${rows[@]}"; do
  IFS='|' read -r name rps p99 cpu _ <<<"$row"
  echo "| $name | $rps | $p99 | $cpu µs |"
done
