"""Delivery end to end: weir delivers what it accepted to local receivers on loopback — Postfix's
smtp-sink and a scriptable fake MX — and reads their replies. No DNS: routes come from config."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Weir, events, free_port, wait_for
from fakemx import FakeMX

if shutil.which("smtp-sink") is None:
    pytest.fail("smtp-sink is missing: it comes with Debian's postfix package "
                "(apt-get install postfix, as .ci/run does)", pytrace=False)


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def sender(w, *quota_flags):
    """An account that may send from acme.test, with its quota changed by `quota_flags`."""
    a = w.account()
    a.verify("acme.test")
    if quota_flags:
        a.quota("us-east-1", *quota_flags)
    return a


def start(tmp, delivery_toml, retry_first=1, retry_max=2):
    data = Path(tmp) / "weir"
    data.mkdir()
    cfg = Path(tmp) / "weir.toml"
    cfg.write_text(f"[delivery]\npoll_interval_ms = 50\nretry_first_seconds = {retry_first}\n"
                   f"retry_max_seconds = {retry_max}\nstarttls = false\n" + delivery_toml)
    return Weir(data, extra_args=("--config", str(cfg))).start()


@pytest.fixture
def sink():
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        port = free_port()
        proc = subprocess.Popen(["smtp-sink", "-u", "postfix", "-d", f"{d}/%H%M%S.", f"127.0.0.1:{port}", "256"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(port), what="smtp-sink")
        yield port, Path(d)
        proc.kill()
        proc.wait()


@pytest.fixture
def mx():
    return FakeMX()


def test_api_and_smtp_mail_reach_smtp_sink(sink):
    port, dumps = sink
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'smarthost = "127.0.0.1:{port}"\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            r = a.aws("ses", "send-email", "--from", "a@acme.test", "--destination", "ToAddresses=b@example.net",
                      "--message", "Subject={Data=via api},Body={Text={Data=hello}}")
            assert r.returncode == 0, r.stderr
            api_id = json.loads(r.stdout)["MessageId"]
            swaks = subprocess.run(["swaks", "--server", f"{w.smtp[0]}:{w.smtp[1]}", "--tls", "--from", "a@acme.test",
                                    "--to", "c@example.net", "--auth", "PLAIN", "--auth-user", a.creds["smtp_username"],
                                    "--auth-password", a.creds["smtp_password"], "--header", "Subject: via smtp"],
                                   capture_output=True, text=True, timeout=30)
            assert swaks.returncode == 0, swaks.stdout
            wait_for(lambda: len(list(dumps.iterdir())) >= 2, what="two messages at smtp-sink")
            bodies = [p.read_bytes() for p in dumps.iterdir()]
            assert any(b"via api" in b and api_id.encode() in b for b in bodies)
            assert any(b"via smtp" in b for b in bodies)
            wait_for(lambda: len(events(w, "Delivery")) == 2, what="two Delivery events")
            d = events(w, "Delivery")[0]
            assert d["delivery"]["smtpResponse"].startswith("250") and d["mail"]["source"] == "a@acme.test"
            status = json.loads(urlopen_admin(w, "/admin/v1/delivery"))
            lane = status["lanes"][f"route:127.0.0.1:{port}"]
            assert lane["delivered"] == 2 and lane["first_deferral_rate"] == 0.0 and lane["final_delivery_rate"] == 1.0
        finally:
            w.stop()


def urlopen_admin(w, path):
    import urllib.request
    token = (w.data_dir / "admin-token").read_text().strip()
    req = urllib.request.Request(w.base + path, headers={"Authorization": f"Bearer {token}"})
    return urllib.request.urlopen(req, timeout=10).read().decode()


def test_per_recipient_replies_and_suppression(mx):
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            ses = a.client()
            r = ses.send_email(Source="a@acme.test",
                               Destination={"ToAddresses": ["ok@fake.test", "nosuch@fake.test", "slow@fake.test"]},
                               Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
            wait_for(lambda: events(w, "Bounce") and events(w, "Delivery"), what="bounce and delivery")
            # One transaction: one accepted, one refused for good, one deferred.
            assert len(mx.messages) == 1 and mx.messages[0][2] == ["ok@fake.test"]
            b = events(w, "Bounce")[0]["bounce"]
            assert (b["bounceType"], b["bounceSubType"]) == ("Permanent", "NoEmail")
            assert b["bouncedRecipients"][0]["emailAddress"] == "nosuch@fake.test"
            assert b["bouncedRecipients"][0]["status"] == "5.1.1"
            assert "550 5.1.1" in b["bouncedRecipients"][0]["diagnosticCode"]
            delay = wait_for(lambda: events(w, "DeliveryDelay"), what="a delay")[0]["deliveryDelay"]
            assert delay["delayedRecipients"][0]["emailAddress"] == "slow@fake.test"
            # The 5.1.1 put the address on the account's suppression list...
            v2 = a.client("sesv2")
            s = wait_for(lambda: v2.list_suppressed_destinations()["SuppressedDestinationSummaries"], what="suppression")
            assert [x["EmailAddress"] for x in s] == ["nosuch@fake.test"] and s[0]["Reason"] == "BOUNCE"
            assert v2.get_suppressed_destination(EmailAddress="nosuch@fake.test")["SuppressedDestination"]["Attributes"]["MessageId"] == r["MessageId"]
            # ... so the next send to it is accepted but not delivered.
            before = len(mx.attempts["nosuch@fake.test"])
            r2 = ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["nosuch@fake.test"]},
                                Message={"Subject": {"Data": "again"}, "Body": {"Text": {"Data": "b"}}})
            spool = json.loads(w.cli("spool", "list", "--json"))
            assert [m["recipients"] for m in spool if m["message_id"] == r2["MessageId"]][0] == [
                {"address": "nosuch@fake.test", "state": "suppressed"}]
            time.sleep(0.5)
            assert len(mx.attempts["nosuch@fake.test"]) == before
            # Bounces are counted in GetSendStatistics.
            assert sum(p["Bounces"] for p in ses.get_send_statistics()["SendDataPoints"]) == 1
        finally:
            w.stop()


def test_deferral_is_retried_on_schedule_and_window_expires(mx):
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'retry_window_seconds = 4\nroutes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            ses = a.client()
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["flaky@fake.test", "defer@fake.test"]},
                           Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
            wait_for(lambda: mx.delivered_to("flaky@fake.test"), what="flaky delivered on retry")
            times = mx.attempts["flaky@fake.test"]
            assert len(times) == 2 and times[1] - times[0] >= 0.85, times  # first retry after 1 s ± 10 %
            bounce = wait_for(lambda: events(w, "Bounce"), timeout=20, what="expiry bounce")[0]["bounce"]
            assert bounce["bounceType"] == "Transient"
            diag = bounce["bouncedRecipients"][0]["diagnosticCode"]
            assert "retry window expired" in diag and "451 4.3.0 Temporary local problem" in diag
            tries = mx.attempts["defer@fake.test"]
            gaps = [b - a for a, b in zip(tries, tries[1:])]
            assert len(tries) >= 3 and all(g >= 0.85 for g in gaps), gaps  # backoff, never a burst
            status = json.loads(urlopen_admin(w, "/admin/v1/delivery"))["lanes"][f"route:127.0.0.1:{mx.port}"]
            assert status["first_attempts"] == 2 and status["first_attempt_deferrals"] == 2
            assert status["delivered"] == 1 and status["expired"] == 1 and status["final_delivery_rate"] == 0.5
        finally:
            w.stop()


def test_provider_throttling_replies_defer_not_bounce(mx):
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            a.client().send_email(Source="a@acme.test",
                                  Destination={"ToAddresses": ["ts04@fake.test", "unusual@fake.test", "spf@fake.test"]},
                                  Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
            delays = wait_for(lambda: len(events(w, "DeliveryDelay")) >= 1 and events(w, "DeliveryDelay"), what="delays")
            assert not events(w, "Bounce")
            diag = delays[0]["deliveryDelay"]["delayedRecipients"][0]["diagnosticCode"]
            assert diag.startswith("smtp; 421")
        finally:
            w.stop()


def test_mailbox_simulator(sink):
    port, _ = sink
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'smarthost = "127.0.0.1:{port}"\n')
        try:
            a = sender(w, "--burst-seconds", "10")
            ses = a.client()
            sim = "@simulator.amazonses.com"
            ses.send_email(Source="a@acme.test",
                           Destination={"ToAddresses": ["success" + sim, "bounce" + sim, "complaint" + sim, "ooto" + sim,
                                                        "suppressionlist" + sim]},
                           Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
            wait_for(lambda: len(events(w, "Delivery")) == 3 and len(events(w, "Bounce")) == 2, what="simulator events")
            assert [e["complaint"]["complainedRecipients"][0]["emailAddress"] for e in events(w, "Complaint")] == ["complaint" + sim]
            kinds = sorted(e["bounce"]["bouncedRecipients"][0]["emailAddress"] for e in events(w, "Bounce"))
            assert kinds == ["bounce" + sim, "suppressionlist" + sim]
            points = ses.get_send_statistics()["SendDataPoints"]
            assert sum(p["Complaints"] for p in points) == 1 and sum(p["Bounces"] for p in points) == 2
            # Simulator bounces never touch the suppression list.
            assert a.client("sesv2").list_suppressed_destinations()["SuppressedDestinationSummaries"] == []
        finally:
            w.stop()


@pytest.mark.parametrize("flags,expect", [
    (["-r", "RCPT"], "deferred"),        # 4xx to every RCPT: retried, never bounced
    (["-f", "RCPT"], "bounced"),         # 5xx to every RCPT: bounced at once
    (["-Q", "DATA"], "deferred"),        # 421 and disconnect at DATA: retried
    (["-w", "3"], "delivered"),          # slow DATA reply (3 s): still delivered
])
def test_smtp_sink_fault_injection(flags, expect):
    """Postfix's smtp-sink injects the faults; weir must classify each correctly."""
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        proc = subprocess.Popen(["smtp-sink", "-u", "postfix", *flags, f"127.0.0.1:{port}", "64"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: port_open(port), what="smtp-sink")
            w = start(d, f'smarthost = "127.0.0.1:{port}"\n')
            try:
                a = sender(w)
                a.client().send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                                      Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
                if expect == "deferred":
                    delays = wait_for(lambda: len(events(w, "DeliveryDelay")) >= 2 and events(w, "DeliveryDelay"),
                                      what="retries")
                    assert delays[0]["deliveryDelay"]["delayedRecipients"][0]["status"].startswith("4.")
                    assert not events(w, "Bounce") and not events(w, "Delivery")
                elif expect == "bounced":
                    b = wait_for(lambda: events(w, "Bounce"), what="bounce")[0]["bounce"]
                    assert b["bounceType"] == "Permanent"
                    assert b["bouncedRecipients"][0]["diagnosticCode"].startswith("smtp; 5")
                    assert not events(w, "DeliveryDelay")
                else:
                    wait_for(lambda: events(w, "Delivery"), timeout=30, what="delivery")
            finally:
                w.stop()
        finally:
            proc.kill()
            proc.wait()


def test_send_reject_events_and_webhooks():
    """Every event goes to events.jsonl and to the configured webhook (a local HTTP server)."""
    import http.server
    import threading

    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200 if len(got) > 1 else 503)  # the first POST fails: retried
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            w = start(tmp, f'webhooks = ["http://127.0.0.1:{srv.server_address[1]}/hook"]\n')
            try:
                a = sender(w)
                ses = a.client()
                r = ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
                                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
                with pytest.raises(Exception):
                    ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["x@unverified.test"]},
                                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
                wait_for(lambda: {e["eventType"] for e in got} >= {"Send", "Delivery", "Reject"}, what="webhook events")
                send = [e for e in got if e["eventType"] == "Send"][0]
                assert send["mail"]["messageId"] == r["MessageId"]
                assert send["send"]["destination"] == ["success@simulator.amazonses.com"]
                assert events(w, "Reject")[0]["reject"]["reason"].startswith("Email address is not verified")
                # The counter moves once the hook's answer is read, a moment after the POST arrived.
                status = wait_for(lambda: (st := json.loads(urlopen_admin(w, "/admin/v1/delivery")))
                                  ["webhooks"]["delivered"] >= 3 and st, what="webhook deliveries counted")
                assert status["webhooks"]["failed"] == 0
            finally:
                w.stop()
    finally:
        srv.shutdown()


def test_repeated_hard_bounces_suppress(mx):
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            ses, v2 = a.client(), a.client("sesv2")
            msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["hard@fake.test"]}, Message=msg)
            wait_for(lambda: len(events(w, "Bounce")) == 1, what="first bounce")
            assert events(w, "Bounce")[0]["bounce"]["bounceType"] == "Permanent"
            time.sleep(0.3)
            assert v2.list_suppressed_destinations()["SuppressedDestinationSummaries"] == [], "one hard bounce is not enough"
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["hard@fake.test"]}, Message=msg)
            wait_for(lambda: len(events(w, "Bounce")) == 2, what="second bounce")
            s = wait_for(lambda: v2.list_suppressed_destinations()["SuppressedDestinationSummaries"], what="suppressed")
            assert [x["EmailAddress"] for x in s] == ["hard@fake.test"]
        finally:
            w.stop()


def test_lane_controller_pauses_on_4_7_28_in_real_time(mx):
    """The pacing controller in the real server: a 4.7.28 pauses the whole lane (timings scaled
    down: 3 s instead of 10 min), other mail for that lane waits, then flows again, and the
    incident timeline shows why."""
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n'
                       '[delivery.pacing]\npause_ms = 3000\nstep_interval_ms = 500\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            ses = a.client()
            msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["unusual-once@fake.test"]}, Message=msg)
            wait_for(lambda: mx.attempts.get("unusual-once@fake.test"), what="the 4.7.28")
            paused_at = mx.attempts["unusual-once@fake.test"][0]
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["ok@fake.test"]}, Message=msg)
            wait_for(lambda: mx.delivered_to("ok@fake.test"), what="delivery after the pause")
            waited = mx.delivered_to("ok@fake.test")[0][0] - paused_at
            assert waited >= 2.8, f"lane was not paused: delivered {waited:.2f} s after the 4.7.28"
            lane = json.loads(urlopen_admin(w, "/admin/v1/delivery"))["lanes"][f"route:127.0.0.1:{mx.port}"]
            kinds = wait_for(lambda: (k := [e["kind"] for e in json.loads(urlopen_admin(w, "/admin/v1/delivery"))["lanes"][
                f"route:127.0.0.1:{mx.port}"]["timeline"]]) and "drained" in k and k, what="drained entry")
            assert kinds[:3] == ["pause", "probe", "resume"] and "drained" in kinds, kinds
            assert "4.7.28" in lane["timeline"][0]["reason"]
            assert lane["timeline"][0]["connections"] == 1
            assert not lane["paused"] and lane["safe_rate_per_minute"] > 0
            # The change is in the event log too.
            change = [e for e in events(w, "LaneChange")][0]["lane"]
            assert change["change"]["kind"] == "pause" and "4.7.28" in change["change"]["reason"]
        finally:
            w.stop()


def test_mx_records_null_mx_and_opportunistic_starttls(mx):
    """MX routing from static records (no DNS): preference order, implicit MX, null MX bounce;
    and opportunistic STARTTLS toward a receiver that offers it (a second weir, whose
    self-signed certificate is accepted as opportunistic TLS allows)."""
    with tempfile.TemporaryDirectory() as tmp:
        rdir = Path(tmp) / "receiver"
        rdir.mkdir()
        rcfg = Path(tmp) / "receiver.toml"
        rcfg.write_text('[smtp]\ntrusted_networks = ["127.0.0.0/8"]\ntrusted_account = "inbound"\n')
        receiver = Weir(rdir, extra_args=("--config", str(rcfg), "--no-delivery")).start()
        try:
            receiver.cli("account", "create", "inbound")
            receiver.cli("account", "quota", "inbound", "--region", "us-east-1", "--production")
            receiver.cli("identity", "add", "inbound", "--region", "us-east-1", "acme.test", "--verified")
            sender_dir = Path(tmp) / "sender"
            sender_dir.mkdir()
            scfg = Path(tmp) / "sender.toml"
            scfg.write_text(
                "[delivery]\npoll_interval_ms = 50\nretry_first_seconds = 1\nstarttls = true\n"
                f"routes = {{ \"tls.test\" = \"127.0.0.1:{receiver.smtp[1]}\" }}\n"
                f"mx_port = {mx.port}\n"
                "[delivery.mx]\n"
                '"multi.test" = ["20 127.0.0.2", "10 localhost"]\n'
                '"null.test" = ["0 ."]\n')
            w = Weir(sender_dir, extra_args=("--config", str(scfg))).start()
            try:
                a = sender(w, "--production", "--max-rate", "100")
                ses = a.client()
                msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
                ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["ok@multi.test"]}, Message=msg)
                ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["x@null.test"]}, Message=msg)
                r = ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["someone@tls.test"]}, Message=msg)
                # Preference 10 (localhost) is tried first, and it is the fake MX.
                wait_for(lambda: mx.delivered_to("ok@multi.test"), what="delivery by MX")
                bounce = wait_for(lambda: events(w, "Bounce"), what="null MX bounce")[0]["bounce"]
                assert bounce["bounceType"] == "Permanent"
                assert "null MX" in bounce["bouncedRecipients"][0]["diagnosticCode"]
                d = wait_for(lambda: [e for e in events(w, "Delivery") if e["mail"]["messageId"] == r["MessageId"]],
                             what="delivery over STARTTLS")[0]
                assert d["delivery"]["tls"] is True
                spooled = json.loads(receiver.cli("spool", "list", "--json"))
                assert [m["recipients"][0]["address"] for m in spooled] == ["someone@tls.test"]
                lanes = json.loads(urlopen_admin(w, "/admin/v1/delivery"))["lanes"]
                assert "mx:127.0.0.2,localhost" in lanes, list(lanes)
            finally:
                w.stop()
        finally:
            receiver.stop()


def test_real_dns_resolution_against_a_loopback_dns_server(mx):
    """The hickory resolver (the production code path) against a DNS server on loopback:
    MX records, the MX host's A record, NXDOMAIN and a null MX — no static routes."""
    from dnslib import MX, QTYPE, RCODE, RR, A
    from dnslib.server import BaseResolver, DNSServer

    class Zone(BaseResolver):
        def resolve(self, request, handler):
            reply = request.reply()
            name, qtype = str(request.q.qname).lower(), QTYPE[request.q.qtype]
            if name == "viadns.test." and qtype == "MX":
                reply.add_answer(RR("viadns.test.", QTYPE.MX, rdata=MX("mx1.viadns.test.", 10), ttl=60))
            elif name == "mx1.viadns.test." and qtype == "A":
                reply.add_answer(RR("mx1.viadns.test.", QTYPE.A, rdata=A("127.0.0.1"), ttl=60))
            elif name == "nullmx.test." and qtype == "MX":
                reply.add_answer(RR("nullmx.test.", QTYPE.MX, rdata=MX(".", 0), ttl=60))
            elif name.endswith("viadns.test.") or name.endswith("nullmx.test."):
                pass  # exists, no records of that type
            else:
                reply.header.rcode = RCODE.NXDOMAIN
            return reply

    port = free_port()
    dns = DNSServer(Zone(), port=port, address="127.0.0.1")
    dns.start_thread()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            w = start(tmp, f'mx_port = {mx.port}\ndns_servers = ["127.0.0.1:{port}"]\n')
            try:
                a = sender(w, "--production", "--max-rate", "100")
                ses = a.client()
                msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
                for to in ["ok@viadns.test", "x@nullmx.test", "y@nowhere-at-all.test"]:
                    ses.send_email(Source="a@acme.test", Destination={"ToAddresses": [to]}, Message=msg)
                wait_for(lambda: mx.delivered_to("ok@viadns.test"), what="delivery through DNS-found MX")
                bounces = wait_for(lambda: len(events(w, "Bounce")) == 2 and events(w, "Bounce"), what="two bounces")
                diags = sorted(b["bounce"]["bouncedRecipients"][0]["diagnosticCode"] for b in bounces)
                assert "null MX" in diags[0] or "null MX" in diags[1]
                assert any("does not exist" in d for d in diags)
                lanes = json.loads(urlopen_admin(w, "/admin/v1/delivery"))["lanes"]
                assert "mx:mx1.viadns.test" in lanes, list(lanes)
            finally:
                w.stop()
    finally:
        dns.stop()


def test_each_message_and_attempt_is_logged_with_its_message_id(mx):
    """At the default level, one plain-text line when a message is accepted and one per attempt
    (lane, MTA, reply, and when deferred the next attempt), each with the MessageId."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "weir"
        data.mkdir()
        cfg = Path(tmp) / "weir.toml"
        cfg.write_text("[delivery]\npoll_interval_ms = 50\nretry_first_seconds = 60\nstarttls = false\n"
                       f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        log = Path(tmp) / "weir.log"
        w = Weir(data, extra_args=("--config", str(cfg)), log=log).start()
        try:
            ses = sender(w, "--production", "--max-rate", "100").client()
            mid = ses.send_email(Source="a@acme.test", Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}},
                                 Destination={"ToAddresses": ["ok@fake.test", "defer@fake.test", "nosuch@fake.test"]}
                                 )["MessageId"]
            lines = lambda: [l for l in log.read_text().splitlines() if mid in l]
            got = wait_for(lambda: len(lines()) >= 4 and lines(), what="four log lines")
            text = "\n".join(got)
            assert "\x1b[" not in log.read_text(), "colour codes in a log file"
            accepted = [l for l in got if " accepted" in l]
            assert len(accepted) == 1 and "recipients=3" in accepted[0], got
            assert any(" delivered" in l and "recipient=ok@fake.test" in l and "lane=" in l and "mta=" in l
                       for l in got), text
            deferred = [l for l in got if " deferred" in l]
            assert deferred and "recipient=defer@fake.test" in deferred[0] and "451" in deferred[0], text
            assert "next_attempt_in_s=" in deferred[0], text
            assert any(" bounced" in l and "recipient=nosuch@fake.test" in l and "550" in l for l in got), text
        finally:
            w.stop()


def test_metrics_after_real_sends_and_deliveries(mx):
    """`GET /metrics` (admin token) after sends through boto3: SES event counters per account and
    region, request counters, the waiting recipient in the spool gauge under its lane, the lane's
    own gauges and its attempts by outcome and reply class, which survive a restart. Without the
    token: refused."""
    import urllib.error
    import urllib.request
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            ses = a.client()
            msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
            ses.send_email(Source="a@acme.test", Message=msg, Destination={"ToAddresses": ["ok@fake.test"]})
            ses.send_email(Source="a@acme.test", Message=msg, Destination={"ToAddresses": ["defer@fake.test"]})
            wait_for(lambda: events(w, "DeliveryDelay"), what="a deferral")
            text = urlopen_admin(w, "/metrics")
            lane = f"route:127.0.0.1:{mx.port}"
            acct = f'account="{a.name}",region="us-east-1"'
            assert f'weir_ses_events_total{{event="Send",{acct}}} 2' in text, text
            assert f'weir_ses_events_total{{event="Delivery",{acct}}} 1' in text, text
            assert 'weir_http_requests_total{api="v1",status="200",code=""}' in text, text
            assert f'weir_spool_recipients{{state="queued",lane="{lane}"}} 1' in text, text
            assert f'weir_lane_connections_allowed{{lane="{lane}",provider="other"}}' in text, text
            assert f'weir_lane_first_attempts_total{{lane="{lane}",provider="other"}} 2' in text, text
            assert f'weir_lane_first_attempt_deferrals_total{{lane="{lane}",provider="other"}} 1' in text, text
            delivered = f'weir_delivery_attempts_total{{lane="{lane}",provider="other",outcome="delivered",class="accepted"}} 1'
            assert delivered in text, text
            assert f'weir_delivery_attempts_total{{lane="{lane}",provider="other",outcome="deferred",class="temporary_other"}}' in text, text
            assert "weir_http_request_duration_seconds_bucket" in text
            assert f'weir_quota_sent_last_24h_recipients{{{acct}}} 2' in text, text
            assert f'weir_reputation_enforcement{{{acct}}} 0' in text, text
            # A refusal is counted with SES's error code.
            from botocore.exceptions import ClientError
            with pytest.raises(ClientError):
                ses.send_email(Source="nobody@unverified.test", Message=msg, Destination={"ToAddresses": ["ok@fake.test"]})
            text = urlopen_admin(w, "/metrics")
            assert 'weir_http_requests_total{api="v1",status="400",code="MessageRejected"} 1' in text, text
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(w.base + "/metrics", timeout=5)
            assert e.value.code in (401, 403)
            # The delivery counters are kept in the spool: a restart does not reset them.
            w.stop()
            w.start()
            text = urlopen_admin(w, "/metrics")
            assert f'weir_lane_first_attempts_total{{lane="{lane}",provider="other"}} 2' in text, text
            assert delivered in text, text
        finally:
            w.stop()


def test_configuration_set_requiring_tls_is_not_sent_in_clear_text(sink):
    port, dumps = sink
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'smarthost = "127.0.0.1:{port}"\n')  # smtp-sink offers no STARTTLS
        try:
            a = sender(w, "--production", "--max-rate", "100")
            v2 = a.client("sesv2")
            v2.create_configuration_set(ConfigurationSetName="secure", DeliveryOptions={"TlsPolicy": "REQUIRE"})
            content = {"Simple": {"Subject": {"Data": "tls only"}, "Body": {"Text": {"Data": "secret"}}}}
            secure = v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@example.net"]},
                                   Content=content, ConfigurationSetName="secure")["MessageId"]
            plain = v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["c@example.net"]},
                                  Content={"Simple": {"Subject": {"Data": "any"}, "Body": {"Text": {"Data": "x"}}}}
                                  )["MessageId"]
            wait_for(lambda: [e for e in events(w, "Delivery") if e["mail"]["messageId"] == plain], what="plain delivery")
            delay = wait_for(lambda: [e for e in events(w, "DeliveryDelay") if e["mail"]["messageId"] == secure],
                             what="the TLS-required message deferred")[0]
            r = delay["deliveryDelay"]["delayedRecipients"][0]
            assert r["status"] == "4.7.10" and "TLS is required by configuration set secure" in r["diagnosticCode"]
            assert not any(b"tls only" in p.read_bytes() for p in dumps.iterdir())
            assert not [e for e in events(w, "Delivery") if e["mail"]["messageId"] == secure]
        finally:
            w.stop()


def test_configuration_set_suppression_options_replace_the_accounts(mx):
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            v2 = a.client("sesv2")
            # The account suppresses bounces; this set suppresses nothing.
            v2.create_configuration_set(ConfigurationSetName="keep", SuppressionOptions={"SuppressedReasons": []})
            content = {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}}
            r = v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["nosuch@fake.test"]},
                              Content=content, ConfigurationSetName="keep")
            wait_for(lambda: [e for e in events(w, "Bounce") if e["mail"]["messageId"] == r["MessageId"]],
                     what="the bounce through the set")
            time.sleep(0.5)
            assert v2.list_suppressed_destinations()["SuppressedDestinationSummaries"] == []
            # Without the set, the account's setting applies: the same bounce suppresses.
            r = v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["nosuch@fake.test"]},
                              Content=content)
            s = wait_for(lambda: v2.list_suppressed_destinations()["SuppressedDestinationSummaries"],
                         what="suppression without the set")
            assert [x["EmailAddress"] for x in s] == ["nosuch@fake.test"]
        finally:
            w.stop()
