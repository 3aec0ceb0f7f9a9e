#!/usr/bin/env bash
# Delivery benchmarks, side by side in one run.
#
#  1. End-to-end relay rate at 1 KiB: smtp-source injects N messages into weir and into Postfix
#     (each relaying to the same smtp-sink, each with 20 connections to it); the clock stops when
#     the last message has been delivered (weir: every recipient `delivered` in its spool;
#     Postfix: its queue is empty). weir fsyncs every state change (group commit).
#  2. Spool → sink drain: the same N messages already queued (weir started with --no-delivery,
#     then restarted with delivery on); time to deliver them all.
#  3. Memory with 1,000,000 recipients queued (100,000 messages × 10 recipients) while the
#     scheduler runs against an unreachable route (every attempt deferred): peak RSS.
#
#   benches/delivery.sh [N]        # default N = 20000
#
# Needs Debian's postfix package and root (for the private Postfix instance).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
N=${1:-20000}
cargo build --release -q -p weir
WEIR=$PWD/target/release/weir
work=$(mktemp -d /tmp/weir-delivery-bench.XXXXXX)
chmod 755 "$work"
PF=$work/postfix
pids=()
cleanup() {
  stop_postfix "$PF"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
states() { sqlite3 "file:$1/weir.db?mode=ro" "SELECT state || '=' || count(*) FROM recipients GROUP BY state" | tr '\n' ' '; }
delivered() { sqlite3 "file:$1/weir.db?mode=ro" "SELECT count(*) FROM recipients WHERE state = 'delivered'"; }

SINK=$(free_port)
smtp-sink -u postfix 127.0.0.1:"$SINK" 1024 >/dev/null 2>&1 & pids+=($!)
wait_port "$SINK"

start_weir() {  # dir smtp_port extra-args...
  local dir=$1 port=$2; shift 2
  relay_weir_toml "$port" "$SINK" > "$work/weir-$port.toml"
  rm -f "$dir/server.json"
  WEIR_LOG=warn $WEIR serve --config "$work/weir-$port.toml" --data-dir "$dir" --http 127.0.0.1:0 "$@" & weir_pid=$!
  pids+=($weir_pid)
  wait_port "$port"
}
setup_account() {
  $WEIR account create bench --data-dir "$1" >/dev/null
  $WEIR account quota bench --region us-east-1 --production --max-24h -1 --max-rate -1 --data-dir "$1" >/dev/null
  $WEIR identity add bench --region us-east-1 bench.test --verified --data-dir "$1" >/dev/null
}

# ---------------- Postfix relay to the sink
PFPORT=$(free_port)
start_postfix "$PF" "$PFPORT" "$SINK" "default_destination_concurrency_limit = 20" "smtp_tls_security_level = none"
wait_port "$PFPORT"
pf_queued() { find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/maildrop" -type f | wc -l; }

# ---------------- 1. end-to-end relay
WP=$(free_port); start_weir "$work/w1" "$WP"; setup_account "$work/w1"
t0=$(now)
smtp-source -d -s 20 -m "$N" -l 1024 -f sender@bench.test -t rcpt@example.net 127.0.0.1:"$WP"
until [ "$(delivered "$work/w1")" -ge "$N" ]; do sleep 0.05; done
t1=$(now)
weir_e2e=$(python3 -c "print(f'{$N / ($t1 - $t0):.0f}')")

t0=$(now)
smtp-source -d -s 20 -m "$N" -l 1024 -f sender@bench.test -t rcpt@example.net 127.0.0.1:"$PFPORT"
sleep 0.2
until [ "$(pf_queued)" -eq 0 ]; do sleep 0.05; done
t1=$(now)
pf_e2e=$(python3 -c "print(f'{$N / ($t1 - $t0):.0f}')")
sent=$(grep -c "status=sent" "$PF/maillog" || true)
echo "end-to-end relay, $N x 1 KiB, 20 sessions in, 20 connections out:"
echo "  weir      $weir_e2e msg/s   (spool: $(states "$work/w1"))"
echo "  postfix   $pf_e2e msg/s   (maillog status=sent: $sent)"
echo "  ratio weir/postfix = $(python3 -c "print(f'{$weir_e2e/$pf_e2e:.2f}x')")"
kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true

# ---------------- 2. spool -> sink drain
WP=$(free_port); start_weir "$work/w2" "$WP" --no-delivery; setup_account "$work/w2"
smtp-source -d -s 20 -m "$N" -l 1024 -f sender@bench.test -t rcpt@example.net 127.0.0.1:"$WP"
kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true
t0=$(now)
start_weir "$work/w2" "$WP"
until [ "$(delivered "$work/w2")" -ge "$N" ]; do sleep 0.05; done
t1=$(now)
echo "spool -> sink drain of $N queued messages: weir $(python3 -c "print(f'{$N / ($t1 - $t0):.0f}')") msg/s (includes start-up)"
kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true

# ---------------- 3. memory with 1,000,000 recipients queued
WP=$(free_port); start_weir "$work/w3" "$WP" --no-delivery; setup_account "$work/w3"
smtp-source -d -s 20 -m 100000 -r 10 -l 1024 -f sender@bench.test -t rcpt@example.net 127.0.0.1:"$WP"
kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true
DEAD=$(free_port)   # nothing listens here: every attempt is deferred
sed -i "s|^smarthost = .*|smarthost = \"127.0.0.1:$DEAD\"|" "$work/weir-$WP.toml"
rm -f "$work/w3/server.json"
WEIR_LOG=error $WEIR serve --config "$work/weir-$WP.toml" --data-dir "$work/w3" --http 127.0.0.1:0 & weir_pid=$!; pids+=($weir_pid)
sleep 30
rss=$(grep VmHWM /proc/"$weir_pid"/status | awk '{print $2}')
echo "1,000,000 recipients queued, scheduler running 30 s: peak RSS $((rss / 1024)) MiB; spool: $(states "$work/w3")"
