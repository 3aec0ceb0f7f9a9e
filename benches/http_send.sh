#!/usr/bin/env bash
# End-to-end durable SendEmail over HTTP with SigV4: weir beside moto_server, same load generator,
# same machine, same run. Prints one JSON line per target and the ratio.
#
#   benches/http_send.sh [CONCURRENCY] [SECONDS]
#
# Needs: moto[server] (pip), a release build (the script builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
CONC=${1:-64}
SECS=${2:-10}

cargo build --release -q -p weir -p weir-loadgen
WEIR=target/release/weir
LOAD=target/release/weir-loadgen
work=$(mktemp -d)
cleanup() { kill "${weir_pid:-}" "${moto_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT


# weir: fsync on every group commit (the default), production account without quota limits.
start_api_weir "$WEIR" "$work/weir"

moto_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 & moto_pid=$!
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && break; sleep 0.05; done

weir_out=$($LOAD --label weir --endpoint "$weir_url" --access-key "$akid" --secret "$secret" \
  --concurrency "$CONC" --duration "$SECS" --from sender@bench.test --to rcpt@bench.test)
echo "$weir_out"
moto_out=$($LOAD --label moto_server --endpoint "http://127.0.0.1:$moto_port" --access-key AKIAIOSFODNN7EXAMPLE \
  --secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY --verify-first \
  --concurrency "$CONC" --duration "$SECS" --from sender@bench.test --to rcpt@bench.test)
echo "$moto_out"
spooled=$($WEIR spool count --data-dir "$work/weir")
python3 - "$weir_out" "$moto_out" "$spooled" <<'PY'
import json, sys
w, m, spooled = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
print(f"weir {w['per_second']:.0f}/s (p50 {w['p50_ms']:.1f} ms, p99 {w['p99_ms']:.1f} ms, errors {w['errors']}), "
      f"moto_server {m['per_second']:.0f}/s (p50 {m['p50_ms']:.1f} ms, errors {m['errors']}), "
      f"ratio weir/moto = {w['per_second'] / max(m['per_second'], 1e-9):.1f}x; "
      f"weir spool holds {spooled} messages (accepted: {w['accepted']})")
PY
