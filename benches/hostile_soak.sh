#!/usr/bin/env bash
# Hostile-tenant soak: one tenant runs every attack of the hostile-tenant suite in a loop while
# another sends steadily over the API (20/s) and SMTP (5 sessions/s); prints one JSON line with
# the bystander's latencies and failures, weir's memory, whether the process survived, and what
# the attacks got.
#
#   benches/hostile_soak.sh [SECONDS]
#
# Needs: boto3 (pip, tests/external/requirements.txt), a release build (the script builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
cargo build --release -q -p weir
python3 benches/hostile_soak.py target/release/weir "$SECS"
