#!/usr/bin/env bash
# Pacing against receivers with hidden limits, side by side in one run: weir's server and a
# private Postfix (Debian's 3.7, defaults; its retry timings scaled as weir's) each deliver the
# same campaign, at the same time, to their own instance of the same modelled receiver
# (weir-receiver) on loopback. Both are fed by Postfix's smtp-source.
#
#   benches/pacing.sh [SCENARIO.toml ...]     # default: scenarios/scaled/{gmail,connection-cap}.toml
#
# A scenario gives the receiver's hidden limits ([provider.receiver]), the campaign (messages,
# invalid_fraction), weir's lane (max_rate_per_min, max_connections) and its scaled pacing
# timings ([weir]), and the first retry (retry_first_seconds), used by both senders.
# Needs Debian's postfix package and root (for the private Postfix instance).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(scenarios/scaled/gmail.toml scenarios/scaled/connection-cap.toml)
cargo build --release -q -p weir -p weir-receivers
WEIR=$PWD/target/release/weir
RECV=$PWD/target/release/weir-receiver
work=$(mktemp -d /tmp/weir-pacing-bench.XXXXXX)
chmod 755 "$work"
pids=()
pfs=()
cleanup() {
  for pf in "${pfs[@]}"; do stop_postfix "$pf"; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
field() { python3 -c "import tomllib,sys; d=tomllib.load(open('$1','rb')); print(eval(sys.argv[1]))" "$2"; }

for sc in "${scenarios[@]}"; do
  name=$(field "$sc" "d['name']")
  n=$(field "$sc" "d['provider'][0]['messages']")
  invalid=$(field "$sc" "round(d['provider'][0]['messages'] * d['provider'][0].get('invalid_fraction', 0))")
  valid=$((n - invalid))
  limit=$(field "$sc" "d['provider'][0]['receiver']['limit_per_min']")
  retry=$(field "$sc" "d.get('retry_first_seconds', 900)")
  rate=$(field "$sc" "int(d['weir']['max_rate_per_min'])")
  conns=$(field "$sc" "d['weir']['max_connections']")
  s=$work/$(basename "$sc" .toml)
  mkdir -p "$s"
  python3 -c "import tomllib,json; d=tomllib.load(open('$sc','rb'))['provider'][0]['receiver']
print('\n'.join(f'{k} = {json.dumps(v)}' for k, v in d.items()))" > "$s/receiver.toml"
  python3 -c "import tomllib,json; d=tomllib.load(open('$sc','rb'))['weir']
print('\n'.join(f'{k} = {json.dumps(v)}' for k, v in d.items() if k not in ('max_rate_per_min', 'max_connections')))" > "$s/pacing.toml"

  R1=$(free_port); R2=$(free_port)
  $RECV "$s/receiver.toml" 127.0.0.1:"$R1" "$s/weir-receiver.json" 2>/dev/null & pids+=($!)
  $RECV "$s/receiver.toml" 127.0.0.1:"$R2" "$s/postfix-receiver.json" 2>/dev/null & pids+=($!)
  wait_port "$R1"; wait_port "$R2"

  # weir: the campaign's domain routed to its receiver; an unknown provider's lane at the
  # scenario's rate and connections; scaled pacing and retry timings.
  WP=$(free_port)
  cat > "$s/weir.toml" <<TOML
[smtp]
listen = "127.0.0.1:$WP"
listen_tls = "127.0.0.1:0"
trusted_networks = ["127.0.0.0/8"]
trusted_account = "bench"
[delivery]
starttls = false
poll_interval_ms = 50
retry_first_seconds = $retry
retry_max_seconds = $((retry * 8))
[delivery.routes]
"campaign.test" = "127.0.0.1:$R1"
[delivery.lanes.other]
max_connections = $conns
messages_per_minute = $rate
messages_per_connection = 100
recipients_per_transaction = 50
[delivery.pacing]
$(cat "$s/pacing.toml")
TOML
  WEIR_LOG=warn $WEIR serve --config "$s/weir.toml" --data-dir "$s/weir" --http 127.0.0.1:0 2>"$s/weir.log" & wpid=$!; pids+=($wpid)
  wait_port "$WP"
  $WEIR account create bench --data-dir "$s/weir" >/dev/null
  $WEIR account quota bench --region us-east-1 --production --max-24h -1 --max-rate -1 --data-dir "$s/weir" >/dev/null
  $WEIR identity add bench --region us-east-1 bench.test --verified --data-dir "$s/weir" >/dev/null

  # Postfix: defaults (20 connections per destination, no rate limit), relaying to its receiver,
  # retry timings scaled as weir's (first retry after $retry s, queue scanned as often).
  PF=$s/postfix; pfs+=("$PF")
  PP=$(free_port)
  start_postfix "$PF" "$PP" "$R2" "smtp_tls_security_level = none" \
    "minimal_backoff_time = ${retry}s" "maximal_backoff_time = $((retry * 8))s" "queue_run_delay = ${retry}s"
  wait_port "$PP"

  weir_left() { sqlite3 "file:$s/weir/weir.db?mode=ro" "SELECT count(*) FROM recipients WHERE state IN ('queued','sending','picked')"; }
  pf_left() { find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/maildrop" -type f | wc -l; }

  t0=$(now)
  inject() {  # port
    smtp-source -s 5 -m "$valid" -f sender@bench.test -t user@campaign.test 127.0.0.1:"$1"
    if [ "$invalid" -gt 0 ]; then
      smtp-source -s 1 -m "$invalid" -f sender@bench.test -t invalid@campaign.test 127.0.0.1:"$1"
    fi
  }
  inject "$WP" & i1=$!
  inject "$PP" & i2=$!
  wait "$i1" "$i2"
  sleep 1
  wdone=""; pdone=""
  limit_s=$(python3 -c "print(int($valid / $limit * 60 * 4 + 30))")
  while [ -z "$wdone" ] || [ -z "$pdone" ]; do
    el=$(python3 -c "print($(now) - $t0)")
    [ -z "$wdone" ] && [ "$(weir_left)" -eq 0 ] && wdone=$el
    [ -z "$pdone" ] && [ "$(pf_left)" -eq 0 ] && pdone=$el
    if python3 -c "import sys; sys.exit(0 if $el > $limit_s else 1)"; then
      [ -z "$wdone" ] && wdone="$el (time limit)"; [ -z "$pdone" ] && pdone="$el (time limit)"
    fi
    sleep 0.2
  done
  best=$(python3 -c "print(f'{$valid / $limit * 60:.1f}')")
  wfirst=$(sqlite3 "file:$s/weir/weir.db?mode=ro" "SELECT count(*) FROM recipients WHERE first_reply IS NOT NULL")
  pfirst=$(grep "status=deferred" "$PF/maillog" | sed -E 's/.*\]: ([0-9A-F]+):.*/\1/' | sort -u | wc -l)
  pdefer=$(grep -c "status=deferred" "$PF/maillog" || true)
  wdefer=$(sqlite3 "file:$s/weir/weir.db?mode=ro" "SELECT coalesce(sum(attempts),0) - count(*) FROM recipients")
  echo "== $name ($sc): $valid valid + $invalid invalid recipients; best possible $best s"
  report() {  # sender drain first_deferred deferrals receiver.json
    python3 - "$@" <<'PY'
import json, sys
sender, drain, first, defer, path, n, best = sys.argv[1:8]
c = json.load(open(path))
d = drain.split()[0]
print(f"  {sender:<8} drain {float(d):7.1f} s{'' if drain == d else ' (time limit)'}  ratio {float(d)/float(best):5.2f}x  "
      f"first-attempt deferred {int(first)/int(n)*100:5.1f}%  deferral replies {defer:>6}  "
      f"receiver: accepted {c['accepted']}, rate refusals {c['rate_refusals']}, "
      f"connections refused {c['connection_refusals']}, peak connections {c['peak_connections']}, escalations {c['escalations']}")
PY
  }
  report weir "$wdone" "$wfirst" "$wdefer" "$s/weir-receiver.json" "$n" "$best"
  report postfix "$pdone" "$pfirst" "$pdefer" "$s/postfix-receiver.json" "$n" "$best"
  kill "$wpid" 2>/dev/null || true
  stop_postfix "$PF"
done
