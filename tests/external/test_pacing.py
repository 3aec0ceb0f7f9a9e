"""The delivery engine's pacing against receivers on loopback that throttle and cap as providers
do (fakemx.py, scripted per recipient; weir-receiver, a modelled provider with hidden limits),
through the real server: replies reach the lane controller, connections follow the lane, and
refusals of a connection do not slow the message rate. Pacing timings are scaled down."""

import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import WEIR, Weir, events, wait_for
from test_delivery import free_port, sender, start, urlopen_admin
from fakemx import FakeMX

MSG = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}


def lane(w, mx):
    return json.loads(urlopen_admin(w, "/admin/v1/delivery"))["lanes"].get(f"route:127.0.0.1:{mx.port}", {})


def test_rcpt_421_4_7_28_then_close_pauses_the_lane():
    """Gmail answers an over-rate RCPT with the multi-line 421-4.7.28 and closes the connection,
    while the rest of the pipelined batch is unanswered. That reply must reach the controller."""
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n'
                       '[delivery.pacing]\npause_ms = 3000\nstep_interval_ms = 500\n')
        try:
            ses = sender(w, "--production", "--max-rate", "100").client()
            ses.send_email(Source="a@acme.test", Message=MSG,
                           Destination={"ToAddresses": ["ok1@fake.test", "gmail-close@fake.test", "ok2@fake.test"]})
            wait_for(lambda: lane(w, mx).get("timeline"), what="a timeline entry")
            first = lane(w, mx)["timeline"][0]
            assert first["kind"] == "pause" and "4.7.28" in first["reason"], first
            text = urlopen_admin(w, "/metrics")
            lane_labels = f'lane="route:127.0.0.1:{mx.port}",provider="other"'
            assert f'weir_lane_changes_total{{{lane_labels},kind="pause"}} 1' in text, text
            assert f'weir_lane_paused{{{lane_labels}}} 1' in text, text
            assert 'weir_webhook_events{outcome="delivered"} 0' in text, text
            delays = wait_for(lambda: len(events(w, "DeliveryDelay")) == 3 and events(w, "DeliveryDelay"),
                              what="three deferrals")
            # Every recipient of the transaction was deferred with Gmail's own reply, none with a
            # local "connection lost".
            assert all("4.7.28" in d["deliveryDelay"]["delayedRecipients"][0]["diagnosticCode"] for d in delays), delays
            wait_for(lambda: sorted(r for m in mx.messages for r in m[2])
                     == ["gmail-close@fake.test", "ok1@fake.test", "ok2@fake.test"], timeout=30,
                     what="all three delivered after the pause")
            assert min(m[0] for m in mx.messages) - mx.attempts["gmail-close@fake.test"][0] >= 2.8, "not paused"
        finally:
            w.stop()


def test_connection_cap_at_the_greeting_lowers_concurrency_not_the_rate():
    """A receiver that takes two connections at once and greets a third with 421 4.7.0 Too many
    concurrent connections: weir settles on two connections, keeps its rate, defers no
    recipient and does not storm the receiver with reconnects."""
    mx = FakeMX(max_conns=2)
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n'
                       '[delivery.pacing]\nstep_interval_ms = 500\n'
                       f'[delivery.lanes."route:127.0.0.1:{mx.port}"]\nmax_connections = 5\nmessages_per_connection = 1000\n')
        try:
            ses = sender(w, "--production", "--max-rate", "1000").client()
            for i in range(150):
                ses.send_email(Source="a@acme.test", Message=MSG, Destination={"ToAddresses": [f"r{i}@fake.test"]})
            wait_for(lambda: len(mx.messages) >= 150, timeout=60, what="all 150 delivered")
            l = lane(w, mx)
            kinds = [e["kind"] for e in l["timeline"]]
            assert "fewer_connections" in kinds, kinds
            assert "slow_down" not in kinds and "pause" not in kinds, kinds
            assert l["safe_rate_per_minute"] == 600000, l["safe_rate_per_minute"]
            assert l["first_attempt_deferrals"] == 0 and l["deferrals"] == 0, l
            assert mx.open_peak <= 2
            assert mx.refused_conns <= 6, f"reconnect storm: {mx.refused_conns} refused connections"
            assert not events(w, "DeliveryDelay")
        finally:
            w.stop()


def test_452_too_many_recipients_sends_the_rest_in_the_next_transaction():
    mx = FakeMX(max_rcpts=3)
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            ses = sender(w, "--production", "--max-rate", "100").client()
            to = [f"r{i}@fake.test" for i in range(8)]
            ses.send_email(Source="a@acme.test", Message=MSG, Destination={"ToAddresses": to})
            wait_for(lambda: sum(len(m[2]) for m in mx.messages) == 8, what="all eight delivered")
            assert [len(m[2]) for m in mx.messages] == [3, 3, 2]
            assert mx.connections == 1
            assert not events(w, "DeliveryDelay")
        finally:
            w.stop()


def test_boto3_campaign_to_a_gmail_like_receiver_with_hidden_limits():
    """A campaign through the real server to a modelled Gmail (weir-receiver: 600/min hidden;
    over the rate a RCPT gets the multi-line 421-4.7.28 and the connection is closed; a sender
    that keeps pushing is refused everything). weir starts at twice that rate, pauses at the
    first 4.7.28 and resumes under the limit: every valid recipient delivered, the invalid ones
    bounced, no escalation, few refusals. Pacing timings scaled (pause 10 s, step 2 s)."""
    receiver_bin = Path(WEIR).parent / "weir-receiver"
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "gmail.toml"
        spec.write_text('style = "gmail"\nlimit_per_min = 600.0\nmax_connections = 10\n'
                        'escalation_deferrals = 60\nescalation_minutes = 0.5\nreply_delay_ms = 5\n')
        status = Path(tmp) / "status.json"
        port = free_port()
        rx = subprocess.Popen([str(receiver_bin), str(spec), f"127.0.0.1:{port}", str(status)])
        try:
            wait_for(status.exists, what="the receiver")
            w = start(tmp, f'routes = {{ "gmail.test" = "127.0.0.1:{port}" }}\n'
                           '[delivery.pacing]\npause_ms = 10000\nstep_interval_ms = 2000\n'
                           f'[delivery.lanes."route:127.0.0.1:{port}"]\nmax_connections = 5\n'
                           'messages_per_minute = 1200\n')
            try:
                ses = sender(w, "--production", "--max-24h", "-1", "--max-rate", "1000").client()
                t0 = time.time()
                for i in range(300):
                    ses.send_email(Source="a@acme.test", Message=MSG, Destination={"ToAddresses": [f"r{i}@gmail.test"]})
                for i in range(3):
                    ses.send_email(Source="a@acme.test", Message=MSG,
                                   Destination={"ToAddresses": [f"invalid{i}@gmail.test"]})
                counters = lambda: json.loads(status.read_text())
                wait_for(lambda: counters()["accepted"] >= 300, timeout=120, what="300 accepted by the receiver")
                drain = time.time() - t0
                c = counters()
                l = json.loads(urlopen_admin(w, "/admin/v1/delivery"))["lanes"][f"route:127.0.0.1:{port}"]
                first = l["timeline"][0]
                assert first["kind"] == "pause" and "4.7.28" in first["reason"], l["timeline"]
                assert c["accepted"] == 300 and c["escalations"] == 0, c
                assert c["rate_refusals"] <= 30, c
                wait_for(lambda: len(events(w, "Bounce")) == 3, what="three bounces")
                # 30 s at the hidden rate, plus the one scaled pause and the first second.
                assert drain < 60, f"drained in {drain:.1f} s"
            finally:
                w.stop()
        finally:
            rx.kill()
            rx.wait()


def recipients(w, mid):
    return {r["address"]: r for r in json.loads(w.cli("queue", "show", mid, "--json"))}


def test_a_refused_connection_is_no_recipients_attempt():
    """Every connection refused at the greeting: the recipients wait in the queue, none has an
    attempt counted or a DeliveryDelay event, and the lane does not say it is drained."""
    mx = FakeMX(max_conns=0)
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            ses = sender(w, "--production", "--max-rate", "100").client()
            mids = [ses.send_email(Source="a@acme.test", Destination={"ToAddresses": [f"r{i}@fake.test"]},
                                   Message=MSG)["MessageId"] for i in range(5)]
            wait_for(lambda: mx.refused_conns >= 3, timeout=20, what="three refused connections")
            for mid in mids:
                # Each waits with the refusal as its last reply, and no attempt counted.
                (r,) = wait_for(lambda: [r for r in recipients(w, mid).values()
                                         if "Too many concurrent connections" in (r.get("last_reply") or "")],
                                timeout=20, what="the refusal as the last reply")
                assert r["state"] in ("queued", "picked", "sending") and r["attempts"] == 0, r
            # Refused connections back off (1, 2, 4 … 60 s between them): wait for one more,
            # however many came before.
            seen = mx.refused_conns
            wait_for(lambda: mx.refused_conns > seen, timeout=70, what="another refused connection")
            assert all(r["attempts"] == 0 for mid in mids for r in recipients(w, mid).values())
            assert not events(w, "DeliveryDelay")
            kinds = [e["kind"] for e in lane(w, mx).get("timeline", [])]
            assert "drained" not in kinds, kinds
        finally:
            w.stop()


def test_a_primary_mx_that_never_greets_is_skipped_for_the_next_one():
    """MX 10 accepts TCP and never greets; MX 20 works. The first message waits the greeting
    timeout, then goes to MX 20; later ones go straight there, and the operator is told."""
    mx = FakeMX()
    silent = socket.socket()
    silent.bind(("127.0.0.3", mx.port))
    silent.listen(64)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "weir.log"
        data = Path(tmp) / "weir"
        data.mkdir()
        cfg = Path(tmp) / "weir.toml"
        cfg.write_text("[delivery]\npoll_interval_ms = 50\nstarttls = false\ngreeting_timeout_seconds = 2\n"
                       f"mx_port = {mx.port}\n[delivery.mx]\n"
                       '"dead.test" = ["10 127.0.0.3", "20 127.0.0.1"]\n')
        w = Weir(data, extra_args=("--config", str(cfg)), log=log).start()
        try:
            ses = sender(w, "--production", "--max-rate", "100").client()
            t0 = time.time()
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["first@dead.test"]}, Message=MSG)
            wait_for(lambda: mx.delivered_to("first@dead.test"), timeout=20, what="delivery through MX 20")
            assert time.time() - t0 >= 1.9, "the greeting was not waited for"
            t1 = time.time()
            for i in range(5):
                ses.send_email(Source="a@acme.test", Destination={"ToAddresses": [f"later{i}@dead.test"]}, Message=MSG)
            wait_for(lambda: all(mx.delivered_to(f"later{i}@dead.test") for i in range(5)), timeout=20,
                     what="later mail")
            assert time.time() - t1 < 1.9, "later mail waited for the dead host again"
            text = log.read_text()
            assert "did not answer" in text and "127.0.0.3" in text, text[-2000:]
            lanes = json.loads(urlopen_admin(w, "/admin/v1/delivery"))["lanes"]
            timeline = [e for l in lanes.values() for e in l.get("timeline", [])]
            assert any(e["kind"] == "host_skipped" and "127.0.0.3" in e["reason"] for e in timeline), timeline
        finally:
            w.stop()
            silent.close()


def test_a_domain_whose_authentication_is_refused_waits_and_other_domains_go_on():
    """Microsoft's 550 5.7.515 speaks for the sending domain: no bounce for the recipient, that
    domain's next mail to the receiver waits, another domain's goes at once, and the timeline
    names the domain."""
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            a.verify("other.test")
            ses = a.client()
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["auth515@fake.test"]}, Message=MSG)
            wait_for(lambda: mx.attempts.get("auth515@fake.test"), what="the 5.7.515")
            time.sleep(0.3)
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["later@fake.test"]}, Message=MSG)
            ses.send_email(Source="b@other.test", Destination={"ToAddresses": ["other@fake.test"]}, Message=MSG)
            wait_for(lambda: mx.delivered_to("other@fake.test"), what="the other domain's mail")
            time.sleep(2)
            assert not mx.attempts.get("later@fake.test"), "the refused domain's mail was sent"
            assert not events(w, "Bounce")
            timeline = lane(w, mx)["timeline"]
            assert any(e["kind"] == "incident" and "acme.test" in e["reason"] and "5.7.515" in e["reason"]
                       for e in timeline), timeline
            assert not lane(w, mx)["paused"]
        finally:
            w.stop()


def test_pacing_settings_that_cannot_work_are_refused_at_start():
    """A zero greeting timeout, a climb that does not climb, a lock-out ceiling under the pause:
    the server does not start, and says which setting and why."""
    cases = [
        ("[delivery]\ngreeting_timeout_seconds = 0\n", "greeting_timeout_seconds"),
        ("[delivery]\ngreylist_retry_seconds = 0\n", "greylist_retry_seconds"),
        ("[delivery.pacing]\nclimb_factor = 1.0\n", "climb_factor"),
        ("[delivery.pacing]\npause_ms = 60000\nmax_lockout_ms = 1000\n", "max_lockout_ms"),
        ("[delivery.pacing]\nmeasure_window_ms = 10\n", "measure_window_ms"),
    ]
    for config, word in cases:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "weir.toml"
            cfg.write_text(config)
            r = subprocess.run([WEIR, "serve", "--config", str(cfg), "--data-dir", str(Path(tmp) / "d"),
                                "--http", "127.0.0.1:0", "--no-smtp", "--no-delivery"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode != 0 and word in r.stderr, (config, r.returncode, r.stderr[-500:])


def test_a_receiver_asking_for_an_immediate_retry_is_not_hammered():
    """A greylister that says "try again in 0 seconds" every time: weir waits at least its own
    greylist retry between attempts (never under it, at most a minute), never a tight loop."""
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'greylist_retry_seconds = 2\nroutes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            ses = sender(w, "--production", "--max-rate", "100").client()
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["greyzero@fake.test"]}, Message=MSG)
            wait_for(lambda: len(mx.attempts.get("greyzero@fake.test", [])) >= 2, timeout=20, what="a retry")
            time.sleep(3)
            tries = mx.attempts["greyzero@fake.test"]
            gaps = [b - a for a, b in zip(tries, tries[1:])]
            assert all(g >= 1.9 for g in gaps) and len(tries) <= 4, gaps
        finally:
            w.stop()


def test_a_hot_mailbox_takes_its_messages_at_its_pace_with_few_refusals():
    """A mailbox that takes two messages in any three seconds and answers the rest with Gmail's
    multi-line 452-4.2.1 (that mailbox only): all twelve of its messages are delivered, with at
    most two refusals per delivery, and the other mailboxes of the same receiver are not held
    back behind it."""
    mx = FakeMX(hot=(2, 3.0))
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            ses = sender(w, "--production", "--max-rate", "100").client()
            for _ in range(12):
                ses.send_email(Source="a@acme.test", Message=MSG, Destination={"ToAddresses": ["hot@fake.test"]})
            for i in range(12):
                ses.send_email(Source="a@acme.test", Message=MSG, Destination={"ToAddresses": [f"ok+{i}@fake.test"]})
            hot = lambda: [m[0] for m in mx.messages if "hot@fake.test" in m[2]]
            wait_for(lambda: len(hot()) == 12, timeout=120, what="the hot mailbox's twelve messages")
            refusals = len(mx.attempts["hot@fake.test"]) - 12
            assert refusals <= 2 * 12, f"{refusals} refusals for 12 deliveries"
            others = [m[0] for m in mx.messages if any(r.startswith("ok+") for r in m[2])]
            assert len(others) == 12
            assert max(others) < max(hot()) - 5, "the other mailboxes waited behind the hot one"
        finally:
            w.stop()
