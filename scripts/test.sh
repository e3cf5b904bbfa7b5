#!/usr/bin/env bash
# Runs every test of the workspace and closes with one summary line over all test binaries.
set -uo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests run the real binary.
cargo build -p berth || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# Sum cargo's per-binary "test result:" lines into the one line CI reads.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1); if ($(i) ~ /^ignored/) s += $(i-1) } }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
