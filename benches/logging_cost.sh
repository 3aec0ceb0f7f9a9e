#!/usr/bin/env bash
# The cost of per-message logging on the API front door: durable SendEmail over HTTP with SigV4
# (weir-loadgen), the server logging at the default level (one line per accepted message, to a
# file) beside the same server with WEIR_LOG=warn, alternating rounds in one run.
#
#   benches/logging_cost.sh [ROUNDS] [SECONDS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
ROUNDS=${1:-3}
SECS=${2:-8}
CONC=${3:-64}
cargo build --release -q -p weir -p weir-loadgen
WEIR=target/release/weir
LOAD=target/release/weir-loadgen
work=$(mktemp -d)
cleanup() { kill "${weir_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

round() {  # level
  local dir=$work/$1-$RANDOM
  WEIR_LOG=$1 start_api_weir "$WEIR" "$dir" --no-smtp --no-delivery 2>"$dir.log"
  $LOAD --label "$1" --endpoint "$weir_url" --access-key "$akid" --secret "$secret" \
    --concurrency "$CONC" --duration "$SECS" --from sender@bench.test --to rcpt@bench.test
  kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true
  echo "  ($1: $(grep -c ' accepted' "$dir.log" || true) 'accepted' log lines)" >&2
}

results=()
for _ in $(seq "$ROUNDS"); do
  results+=("$(round info)")
  results+=("$(round warn)")
done
printf '%s\n' "${results[@]}"
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(r) for r in sys.argv[1:]]
on = [r["per_second"] for r in rows if r["label"] == "info"]
off = [r["per_second"] for r in rows if r["label"] == "warn"]
print(f"per-message logs on (info): median {statistics.median(on):.0f}/s {on}; "
      f"off (warn): median {statistics.median(off):.0f}/s {off}; "
      f"on/off = {statistics.median(on) / statistics.median(off):.3f}")
PY
