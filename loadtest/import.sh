#!/usr/bin/env bash
# Imports a generated Go-service database of N configs (default 1000) into
# a fresh Vane store and prints the import's summary and time, twice (the
# second run must change nothing).
#   bash loadtest/import.sh [N] [store-url]
# The store defaults to a new SQLite file; give postgres://... or mysql://...
# (an empty database) for the others; VANE names another binary. Needs the
# mariadb client, the MariaDB at 127.0.0.1:3306 (root, no password), and a
# release build.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
dir=$(mktemp -d)
store="${2:-sqlite://$dir/vane.db}"
source_db="vane_import_source"
mariadb -h 127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $source_db; CREATE DATABASE $source_db"
python3 loadtest/scripts/original_db.py "$n" | mariadb -h 127.0.0.1 -uroot "$source_db"
printf '[store]\nurl = "%s"\n' "$store" > "$dir/vane.toml"
for run in first second; do
  echo "== $run run"
  "${VANE:-./target/release/vane}" import --from "mysql://root@127.0.0.1:3306/$source_db" --config "$dir/vane.toml" \
    > "$dir/out" || true
  grep -v '^  ' "$dir/out"
  # The rows left out, counted by table and the first words of the reason.
  grep '^  ' "$dir/out" | sed -E 's/`[^`]*`/`..`/g; s/[0-9]+/N/g' \
    | sed -E 's/^  ([a-z_]+) [^:]*: (([^ ]+ ){0,7}).*/  \1: \2.../' | sort | uniq -c
done
mariadb -h 127.0.0.1 -uroot -e "DROP DATABASE $source_db"
rm -rf "$dir"
