#!/usr/bin/env bash
# Durable SendEmail over HTTP with SigV4 (weir-loadgen) against several builds of weir, rounds
# alternating between them in one run, so a change's cost is measured side by side on the same
# noisy machine. A build is a git revision, or `.` for the working tree.
#
#   benches/api_builds.sh ROUNDS SECONDS CONCURRENCY REV [REV ...]
#   e.g. benches/api_builds.sh 4 6 64 HEAD~3 .
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
ROUNDS=$1 SECS=$2 CONC=$3
shift 3
cargo build --release -q -p weir -p weir-loadgen
LOAD=target/release/weir-loadgen
work=$(mktemp -d)
cleanup() {
  kill "${weir_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true
  for t in "$work"/tree-*; do [ -d "$t" ] && git worktree remove --force "$t"; done
  rm -rf "$work"
}
trap cleanup EXIT

labels=()
for rev in "$@"; do
  label=$rev
  if [ "$rev" = . ]; then
    cp target/release/weir "$work/weir-$(echo "$label" | tr -c 'A-Za-z0-9\n' _)"
  else
    tree=$work/tree-$(git rev-parse --short "$rev")
    git worktree add -q --detach "$tree" "$rev"
    # One target dir for all builds: only weir's own crates are compiled again.
    CARGO_TARGET_DIR=target/bench-builds cargo build --release -q -p weir --manifest-path "$tree/Cargo.toml"
    cp target/bench-builds/release/weir "$work/weir-$(echo "$label" | tr -c 'A-Za-z0-9\n' _)"
  fi
  labels+=("$label")
done

results=()
for _ in $(seq "$ROUNDS"); do
  for label in "${labels[@]}"; do
    bin=$work/weir-$(echo "$label" | tr -c 'A-Za-z0-9\n' _)
    dir=$work/data-$RANDOM
    start_api_weir "$bin" "$dir" --no-smtp --no-delivery 2>"$dir.log"
    results+=("$($LOAD --label "$label" --endpoint "$weir_url" --access-key "$akid" --secret "$secret" \
      --concurrency "$CONC" --duration "$SECS" --from sender@bench.test --to rcpt@bench.test)")
    kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(r) for r in sys.argv[1:]]
labels = list(dict.fromkeys(r["label"] for r in rows))
base = None
for label in labels:
    xs = [r["per_second"] for r in rows if r["label"] == label]
    med = statistics.median(xs)
    base = base or med
    print(f"{label}: median {med:.0f} sends/s ({' · '.join(f'{x:.0f}' for x in xs)}), x{med / base:.3f} of {labels[0]}")
PY
