#!/usr/bin/env bash
# Times README's first command as a newcomer meets it: a fresh clone of COMMIT (default HEAD)
# with an empty target dir and an empty CARGO_HOME (crates downloaded again), then
# `cargo run -p upsell-cli -- run`. Prints the seconds to the end of the build and to the
# run's summary (the first result). Figures go in docs/performance.md ("First result").
#
#   scripts/first-result.sh [COMMIT]
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
commit=${1:-HEAD}
commit=$(git -C "$repo" rev-parse --short "$commit")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/repo"
git -C "$work/repo" checkout -q "$commit"
# The toolchain stays where rustup put it; only cargo's download caches start empty.
cargo_bin=$(command -v cargo)
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup} CARGO_HOME=$work/cargo-home
mkdir -p "$CARGO_HOME"
echo "commit $(git -C "$work/repo" log --oneline -1)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$cargo_bin" "$work/repo" <<'PY'
import subprocess, sys, time
cargo, repo = sys.argv[1:3]
t0 = time.monotonic()
p = subprocess.Popen([cargo, "run", "-p", "upsell-cli", "--", "run"], cwd=repo,
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
built = None
for line in p.stdout:
    if built is None and line.strip().startswith("Running"):
        built = time.monotonic() - t0
    if built is not None and line.strip():
        print(f"{time.monotonic() - t0:7.1f}s {line.rstrip()}")
rc = p.wait()
total = time.monotonic() - t0
if rc != 0 or built is None:
    sys.exit(f"cargo run failed (exit {rc})")
print(f"build {built:.1f} s; first result (the run's summary) {total:.1f} s")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
