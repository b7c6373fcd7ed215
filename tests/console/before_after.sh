#!/usr/bin/env bash
# Screenshots of the console of one vane binary through one story
# (shots.mjs), for comparing builds, e.g. before and after issue 33:
#   bash tests/console/before_after.sh <vane binary> <out dir>
# Needs VANE_PLAYWRIGHT_DIR (playwright-core installed there, as .ci/run
# does under target/ci-node) and Chromium at /usr/bin/chromium.
set -euo pipefail
bin=$1; out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
dir=$(mktemp -d); port=18771; token=shots-token-0123456789abcdef
VANE_SERVER__LISTEN=127.0.0.1:$port VANE_STORE__URL="sqlite://$dir/v.db" \
  VANE_AUTH__ADMIN_TOKENS="shots=$token" VANE_LOG__LEVEL=warn bash -c "cd $dir && exec $(realpath "$bin") serve" >"$dir/log" 2>&1 &
vane=$!
trap 'kill $vane 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$dir/log" >&2; exit 1; }
api() { curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/configs$1" -d "$2"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
secret=$(api "" '{"id":"banner","description":"the home banner"}' | field secret)
v1=$(api /banner/versions '{"lang":"starlark","source":"return {\"text\": \"hello\"}"}' | field code_id)
api /banner/release "{\"code_id\":\"$v1\"}" >/dev/null
v2=$(api /banner/versions '{"lang":"starlark","source":"return {\"text\": \"welcome\"}"}' | field code_id)
api "/banner/versions/$v2/tests" '{"name":"says hello","meta":{},"params":{},"expected":{"text":"hello"}}' >/dev/null
api /banner/gray "{\"code_id\":\"$v2\",\"percentage\":50,\"force\":true}" >/dev/null
node "$here/shots.mjs" "http://127.0.0.1:$port" "$token" "$secret" "$v1" "$v2" "$out"
