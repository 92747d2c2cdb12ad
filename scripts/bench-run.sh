#!/usr/bin/env bash
# Benchmark of `upsell run`: N generated events (default 10,000) through the whole local
# workflow (EventBridge rules, ASL engine with durable SQLite history, the six workers, offline
# model) into a fresh home folder. Prints the run's JSON summary; `events_per_s` counts the
# processing only (opening the stores and the first-run knowledge-base indexing are reported
# separately as total wall time).
#
#   scripts/bench-run.sh [EVENTS] [extra `upsell run` flags...]
#
# Results go in docs/performance.md ("upsell run"). Target: >= 1,000 events/s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

events="${1:-10000}"
shift || true
# `upsell sample` writes about 10.8 lines per customer (profile, services, surveys, responses,
# plus the default 3% malformed and 2% duplicate lines; 14,858 lines for 1,377 customers).
customers=$(( events * 100 / 1079 ))

cargo build --release -p upsell-cli --quiet
# The target dir may be set elsewhere (CARGO_TARGET_DIR, .cargo/config.toml).
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/upsell"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$bin" sample --customers "$customers" --seed 7 --out "$work/events.jsonl"
lines=$(grep -c . "$work/events.jsonl")
echo "generated $lines lines for $customers customers" >&2

start=$(date +%s.%N)
summary=$("$bin" --home "$work/home" run --events "$work/events.jsonl" --json "$@")
end=$(date +%s.%N)
echo "$summary"
echo "total wall time including setup: $(echo "$end - $start" | bc) s" >&2

published=$(echo "$summary" | sed -n 's/.*"published":\([0-9]*\).*/\1/p')
if [ "${published:-0}" -eq 0 ]; then
    echo "error: nothing was published; the numbers above do not measure the workflow" >&2
    exit 1
fi
