#!/usr/bin/env bash
# The console's vendored libraries are npm packages' own files, unchanged:
# this fetches each pinned package again and fails if a committed copy
# differs (`--update` writes them instead).
#   .ci/console-vendor.sh [--update]
set -euo pipefail
cd "$(dirname "$0")/.."
vendor=src/http/console/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
# package@version  file inside the package  committed name
while read -r package file name; do
  (cd "$work" && npm pack -q "$package" >/dev/null)
  tarball=$(ls "$work"/*.tgz)
  tar -xzf "$tarball" -C "$work" "package/$file"
  if [ "${1:-}" = "--update" ]; then
    cp "$work/package/$file" "$vendor/$name"
  elif ! cmp -s "$work/package/$file" "$vendor/$name"; then
    echo "$vendor/$name differs from $package's $file" >&2
    status=1
  fi
  rm -rf "$work"/*
done <<'LIST'
diff@9.0.0 dist/diff.min.js diff.min.js
diff@9.0.0 LICENSE diff.LICENSE
@highlightjs/cdn-assets@11.12.0 es/core.min.js hljs-core.min.js
@highlightjs/cdn-assets@11.12.0 es/languages/python.min.js hljs-python.min.js
@highlightjs/cdn-assets@11.12.0 es/languages/javascript.min.js hljs-javascript.min.js
@highlightjs/cdn-assets@11.12.0 styles/github.min.css hljs-github.min.css
@highlightjs/cdn-assets@11.12.0 LICENSE hljs.LICENSE
LIST
[ "$status" -eq 0 ] && echo "console vendor files match their packages"
exit $status
