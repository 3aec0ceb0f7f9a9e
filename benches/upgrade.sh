#!/usr/bin/env bash
# A data dir written by an older build opens with this one, keeps what it held, and delivers
# the mail it had accepted.
#
#   benches/upgrade.sh REV        # e.g. benches/upgrade.sh a96e3a7
#
# The older build (a worktree of REV, built in target/bench-builds) accepts mail with delivery
# off, and stores an identity, a template, a configuration set, a contact list and a suppressed
# address. Then this tree's build opens the same data dir with delivery on, relaying to a
# Postfix smtp-sink: everything is read back through the API and every message is delivered.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
REV=$1
cargo build --release -q -p weir
NEW=$PWD/target/release/weir
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  kill "${weir_pid:-}" "${sink_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true
  [ -d "$work/tree" ] && git worktree remove --force "$work/tree"
  rm -rf "$work"
}
trap cleanup EXIT
git worktree add -q --detach "$work/tree" "$REV"
CARGO_TARGET_DIR=target/bench-builds cargo build --release -q -p weir --manifest-path "$work/tree/Cargo.toml"
OLD=$work/weir-old
cp target/bench-builds/release/weir "$OLD"

SINK=$(free_port)
smtp-sink -u postfix 127.0.0.1:"$SINK" 1024 >/dev/null 2>&1 & sink_pid=$!
wait_port "$SINK"
PORT=$(free_port)
relay_weir_toml "$PORT" "$SINK" > "$work/weir.toml"
dir=$work/data
mkdir -m 700 -p "$dir"

# ---------------- the older build writes
start_api_weir "$OLD" "$dir" --config "$work/weir.toml" --no-delivery
python3 - "$weir_url" "$akid" "$secret" write <<'PY'
import sys, boto3
url, akid, secret, step = sys.argv[1:]
v2 = boto3.client("sesv2", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id=akid, aws_secret_access_key=secret)
v2.create_email_identity(EmailIdentity="upgrade.test")
v2.create_email_template(TemplateName="kept", TemplateContent={"Subject": "Hi {{n}}", "Text": "{{n}}"})
v2.create_configuration_set(ConfigurationSetName="kept-set")
v2.create_contact_list(ContactListName="kept-list")
v2.put_suppressed_destination(EmailAddress="gone@example.net", Reason="BOUNCE")
for i in range(50):
    v2.send_email(FromEmailAddress="a@bench.test", Destination={"ToAddresses": [f"r{i}@example.net"]},
                  Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}})
print("older build: wrote an identity, a template, a configuration set, a contact list, a suppressed address, 50 messages")
PY
kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true

# ---------------- this build reads and delivers
rm -f "$dir/server.json"
WEIR_LOG=warn $NEW serve --data-dir "$dir" --http 127.0.0.1:0 --config "$work/weir.toml" & weir_pid=$!
for _ in $(seq 100); do [ -f "$dir/server.json" ] && break; sleep 0.05; done
weir_url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$dir/server.json")
python3 - "$weir_url" "$akid" "$secret" <<'PY'
import sys, boto3
url, akid, secret = sys.argv[1:]
v2 = boto3.client("sesv2", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id=akid, aws_secret_access_key=secret)
assert v2.get_email_identity(EmailIdentity="upgrade.test")["IdentityType"] == "DOMAIN"
assert v2.get_email_template(TemplateName="kept")["TemplateContent"]["Subject"] == "Hi {{n}}"
assert v2.get_configuration_set(ConfigurationSetName="kept-set")["ConfigurationSetName"] == "kept-set"
assert v2.get_contact_list(ContactListName="kept-list")["ContactListName"] == "kept-list"
got = v2.get_suppressed_destination(EmailAddress="gone@example.net")["SuppressedDestination"]
assert got["Reason"] == "BOUNCE", got
assert v2.get_account()["SendQuota"]["SentLast24Hours"] == 50.0
print("this build: everything the older build wrote reads back, and the quota still counts its 50 sends")
PY
for _ in $(seq 600); do
  n=$(sqlite3 "file:$dir/weir.db?mode=ro" "SELECT count(*) FROM recipients WHERE state = 'delivered'")
  [ "$n" -ge 50 ] && break
  sleep 0.1
done
echo "this build: $n of 50 messages the older build accepted delivered to the sink"
[ "$n" -ge 50 ]
