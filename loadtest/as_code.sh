#!/usr/bin/env bash
# `vane test` on a directory of N configs (default 100): half Starlark, half
# JavaScript, three tests each, one with rules and a parameter schema.
# Prints the wall time; the goal is under 5 s for 100 configs.
#   loadtest/as_code.sh [path/to/vane] [N]
set -euo pipefail
vane=${1:-target/release/vane}
n=${2:-100}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for i in $(seq 1 "$n"); do
  c="$dir/config-$i"
  mkdir -p "$c"
  if (( i % 2 )); then
    cat > "$c/main.star" <<STAR
tags = [t.upper() for t in p["tags"] if t]
h = 0
for ch in p["user"].elems():
    h = (h * 31 + ord(ch)) % 1000
return {"id": $i, "bucket": h % 10, "tags": tags, "big": p["version_code"] > 100}
STAR
    src=main.star
  else
    cat > "$c/main.js" <<JS
const tags = p.tags.filter(t => t).map(t => t.toUpperCase());
let h = 0;
for (const ch of p.user) { h = (h * 31 + ch.charCodeAt(0)) % 1000; }
return {id: $i, bucket: h % 10, tags, big: p.version_code > 100};
JS
    src=main.js
  fi
  cat > "$c/config.toml" <<TOML
source = "$src"
params = [{ name = "version_code", type = "int" }, { name = "user", type = "string" }, { name = "tags", type = "array" }]
rules = [{ platform = "*", rules = [[{ field = "version", compare = ">=", value = "2" }]] }]

[[tests]]
name = "big"
meta = { platform = "ios", version = 3, device_id = "d1" }
params = { version_code = 101, user = "ab", tags = ["x", ""] }
expected = { id = $i, bucket = 5, tags = ["X"], big = true }

[[tests]]
name = "small"
meta = { platform = "android", version = 2, device_id = "d2" }
params = { version_code = 7, user = "", tags = [] }
expected = { id = $i, bucket = 0, tags = [], big = false }

[[tests]]
name = "many tags"
meta = { platform = "ios", version = 9, device_id = "d3" }
params = { version_code = 500, user = "zz", tags = ["a", "b", "c"] }
expected = { id = $i, bucket = 4, tags = ["A", "B", "C"], big = true }
TOML
done
start=$(date +%s%N)
"$vane" test "$dir" | tail -1
end=$(date +%s%N)
echo "vane test, $n configs: $(( (end - start) / 1000000 )) ms wall"
