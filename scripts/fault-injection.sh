#!/usr/bin/env bash
# Fault injection at scale: N sample events (default 10,000; 1% malformed, 2% redelivered)
# through `upsell run` with model throttling (5%), invalid model output (1%) and transient
# worker errors (1%) injected, the process killed with SIGKILL twice and restarted until it
# finishes, then `upsell redrive` for the failed events. Runs the integration test
# crates/upsell-cli/tests/fault_injection.rs (which checks one terminal record per event, no
# duplicate approval, reasons on every quarantine) at that size and prints its table.
#
#   scripts/fault-injection.sh [EVENTS] [SEED]
#
# The table goes in docs/reliability.md ("Fault injection at scale").
set -euo pipefail
cd "$(dirname "$0")/.."

set +e
UPSELL_FAULT_EVENTS="${1:-10000}" UPSELL_FAULT_SEED="${2:-7}" \
  cargo test -p upsell-cli --features fault-injection --test fault_injection -- --nocapture 2>&1 \
  | grep -E '^\||^UPSELL_FAULT_EVENTS|^test result|panicked|FAILED'
status=${PIPESTATUS[0]}
exit "$status"
