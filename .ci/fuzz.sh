#!/usr/bin/env bash
# Fuzzes the native API from its own OpenAPI document with schemathesis
# (--checks all): fails on any 5xx, any response that breaks the document,
# and any request the document allows that the server refuses with 400.
# Usage: .ci/fuzz.sh <vane binary> <schemathesis binary>
set -euo pipefail
vane=$1
st=$2
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=fuzz-token-0123456789abcdef
base="http://127.0.0.1:$port"
# The same value is also a client token for every config, so the OFREP bulk
# route is fuzzed past its authentication too.
VANE_STORE__URL="sqlite://$dir/vane.db?mode=rwc" VANE_AUTH__ADMIN_TOKENS="fuzz=$token" \
  VANE_OFREP__CLIENT_TOKENS="[{name=\"fuzz\", token=\"$token\", configs=[\"*\"]}]" \
  VANE_SERVER__LISTEN="127.0.0.1:$port" VANE_LOG__LEVEL=warn \
  "$vane" serve > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "$base/healthz" > /dev/null && break; sleep 0.1; done

# One released config, so routes past the lookup have something to act on.
admin() { curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
admin -X POST "$base/api/v1/configs" -d '{"id": "fuzz"}' > /dev/null
code=$(admin -X POST "$base/api/v1/configs/fuzz/versions" -d '{"lang": "starlark", "source": "return 1"}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["code_id"])')
admin -X POST "$base/api/v1/configs/fuzz/release" -d "{\"code_id\": \"$code\"}" > /dev/null

# The pool's pause and resize would starve the rest of the run, and the
# subscribe route is a WebSocket, which an HTTP fuzzer cannot speak.
# ensure_resource_availability is left out: after creating a config it calls
# e.g. POST .../gray with a random code_id and reads the 404 for that unknown
# version as the new config missing.
status=0
# From the temporary directory: schemathesis keeps a cache where it runs.
cd "$dir"
"$st" --config-file "$here/schemathesis.toml" run "$base/api/v1/openapi.json" \
  -H "Authorization: Bearer $token" --checks all --max-examples "${FUZZ_EXAMPLES:-30}" \
  --exclude-checks ensure_resource_availability \
  --exclude-path-regex '^/api/v1/(admin/pool/(pause|resize)|subscribe)$' \
  --seed "${FUZZ_SEED:-1}" || status=$?
if grep -q "panicked" "$dir/server.log"; then
  echo "the server panicked during the fuzz run:" >&2
  grep -A5 "panicked" "$dir/server.log" >&2
  status=1
fi
exit $status
