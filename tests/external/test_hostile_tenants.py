"""Attacks by a tenant, by an outsider who received one message, and by a local user, performed
against the real binary on loopback as they would perform them; each checks the outcome and that
another tenant is served while the attack runs."""

import datetime
import json
import tempfile
import smtplib
import socket
import threading
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import raw_http, read_all, sender, server, wait_for


def rss_mb(w):
    for line in open(f"/proc/{w.proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Bystander:
    """Another tenant going about its business while an attack runs: SendEmail over the API, the
    SMTP greeting and /health, in a loop. Every answer is recorded with its latency."""

    def __init__(self, w, account):
        self.w, self.ses = w, account.client()
        self.lat, self.failures = [], []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def one(self, what, f):
        t = time.monotonic()
        try:
            f()
            self.lat.append(time.monotonic() - t)
        except Exception as e:  # noqa: BLE001 - every failure is the finding
            self.failures.append(f"{what}: {e!r}")

    def send(self):
        self.ses.send_email(Source="a@bystander.test", Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
                            Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})

    def banner(self):
        with socket.create_connection(self.w.smtp, timeout=5) as c:
            c.settimeout(5)
            assert c.recv(512).startswith(b"220")

    def health(self):
        with urllib.request.urlopen(self.w.base + "/health", timeout=5) as r:
            assert r.status == 200

    def run(self):
        while not self.stop_flag.is_set():
            self.one("send", self.send)
            self.one("smtp banner", self.banner)
            self.one("health", self.health)
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(timeout=30)

    def assert_served(self, max_seconds=2.0):
        assert not self.failures, self.failures[:5]
        assert len(self.lat) >= 6, "the bystander made too few requests"
        assert max(self.lat) < max_seconds, sorted(self.lat)[-5:]


@pytest.fixture
def bystander_account(weir):
    a = weir.account()
    a.verify("bystander.test")
    a.quota("us-east-1", "--production", "--max-rate", "1000", "--max-24h", "1000000")
    return a


def api_error(f):
    with pytest.raises(ClientError) as e:
        f()
    return e.value.response["Error"]


# --- Templates -----------------------------------------------------------------------------------


def test_parts_that_include_each_other_are_refused_and_the_server_keeps_running(weir, acct, bystander_account):
    ses, v2 = acct.client(), acct.client("sesv2")
    with Bystander(weir, bystander_account) as b:
        e = api_error(lambda: ses.create_template(Template={
            "TemplateName": "loop", "SubjectPart": "{{> text}}", "TextPart": "{{> subject}}"}))
        assert e["Code"] == "InvalidTemplate" and "partials" in e["Message"]
        e = api_error(lambda: ses.create_template(Template={
            "TemplateName": "inline", "SubjectPart": "x",
            "TextPart": '{{#*inline "a"}}{{> b}}{{/inline}}{{#*inline "b"}}{{> a}}{{/inline}}{{> a}}'}))
        assert e["Code"] == "InvalidTemplate" and "inline partials" in e["Message"]
        # Inline content on v2 SendEmail, nothing stored.
        e = api_error(lambda: v2.send_email(
            FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
            Content={"Template": {"TemplateContent": {"Subject": "{{> text}}", "Text": "{{> subject}}"},
                                  "TemplateData": "{}"}}))
        assert e["Code"] == "BadRequestException" and "partials" in e["Message"]
        time.sleep(0.3)
    assert weir.proc.poll() is None
    b.assert_served()


def test_blocks_nested_two_thousand_deep_are_refused_at_create_and_at_send(weir, acct, bystander_account):
    deep = "{{#if a}}" * 2000 + "x" + "{{/if}}" * 2000
    with Bystander(weir, bystander_account) as b:
        e = api_error(lambda: acct.client().create_template(Template={
            "TemplateName": "deep", "SubjectPart": "s", "TextPart": deep}))
        assert e["Code"] == "InvalidTemplate" and "nested more than 32 deep" in e["Message"]
        e = api_error(lambda: acct.client("sesv2").send_email(
            FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
            Content={"Template": {"TemplateContent": {"Subject": "s", "Html": deep}, "TemplateData": '{"a":1}'}}))
        assert e["Code"] == "BadRequestException" and "nested more than 32 deep" in e["Message"]
        time.sleep(0.3)
    assert weir.proc.poll() is None
    b.assert_served()


def test_nested_loops_over_template_data_stop_at_the_work_budget_while_others_are_served(weir, acct, bystander_account):
    ses = acct.client()
    ses.create_template(Template={"TemplateName": "cube", "SubjectPart": "s",
                                  "TextPart": "{{#each a}}{{#each ../a}}{{#each ../../a}}{{this}}{{/each}}{{/each}}{{/each}}"})
    data = json.dumps({"a": list(range(2200))})  # about 9 KB
    errors = []

    def attack():
        c = acct.client()
        for _ in range(3):
            started = time.monotonic()
            try:
                c.test_render_template(TemplateName="cube", TemplateData=data)
                errors.append("rendered")
            except ClientError as e:
                errors.append((e.response["Error"]["Code"], e.response["Error"]["Message"], time.monotonic() - started))

    with Bystander(weir, bystander_account) as b:
        attackers = [threading.Thread(target=attack) for _ in range(4)]
        for t in attackers:
            t.start()
        for t in attackers:
            t.join(timeout=120)
    assert all(isinstance(e, tuple) for e in errors), errors
    assert {e[0] for e in errors} <= {"InvalidRenderingParameter", "Throttling"}, errors
    assert any("steps" in e[1] or "too long" in e[1] for e in errors), errors
    b.assert_served()


def test_small_data_cannot_render_an_oversized_message_or_balloon_memory(weir, acct, bystander_account):
    ses = acct.client()
    # 2 KB of data, each loop turn prints it again: 500 MB unbounded.
    ses.create_template(Template={"TemplateName": "balloon", "SubjectPart": "s",
                                  "TextPart": "{{#each a}}{{#each ../a}}{{../../s}}{{/each}}{{/each}}"})
    data = json.dumps({"a": list(range(500)), "s": "x" * 2000})
    before = rss_mb(weir)
    with Bystander(weir, bystander_account) as b:
        for _ in range(3):
            e = api_error(lambda: ses.test_render_template(TemplateName="balloon", TemplateData=data))
            assert e["Code"] == "InvalidRenderingParameter" and "larger than 10485760 bytes" in e["Message"], e
            e = api_error(lambda: ses.send_templated_email(
                Source="a@acme.test", Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
                Template="balloon", TemplateData=data))
            assert e["Code"] == "InvalidParameterValue" and "larger than 10485760 bytes" in e["Message"], e
    assert rss_mb(weir) - before < 150, (before, rss_mb(weir))
    b.assert_served()


@pytest.mark.parametrize("part", ['{{log "SMTP AUTH failed peer=1.2.3.4"}}', "{{lookup a b}}", "{{#with a}}x{{/with}}",
                                  "{{{{raw}}}}x{{{{/raw}}}}", "{{eq a b}}", "{{len a}}"])
def test_helpers_ses_does_not_document_are_refused(weir, acct, part):
    e = api_error(lambda: acct.client().create_template(Template={"TemplateName": "h", "SubjectPart": "s",
                                                                  "TextPart": part}))
    assert e["Code"] == "InvalidTemplate" and "not supported" in e["Message"], e


def test_a_nul_in_template_data_is_refused_with_a_readable_error(weir, acct):
    ses = acct.client()
    ses.create_template(Template={"TemplateName": "nul", "SubjectPart": "s {{v}}", "TextPart": "{{v}}"})
    data = json.dumps({"v": "a\u0000b"})
    # botocore parses the XML answer: a NUL in it would fail parsing instead.
    e = api_error(lambda: ses.test_render_template(TemplateName="nul", TemplateData=data))
    assert e["Code"] == "InvalidRenderingParameter" and "NUL" in e["Message"], e
    e = api_error(lambda: ses.send_templated_email(
        Source="a@acme.test", Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
        Template="nul", TemplateData=data))
    assert e["Code"] == "InvalidParameterValue" and "NUL" in e["Message"], e


# --- Request bodies ------------------------------------------------------------------------------


def garbage_signed(w, key_id, length, source):
    """A v1 request head under `key_id` (known to the server) with a signature that will not match."""
    now = datetime.datetime.now(datetime.timezone.utc)
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Authorization: AWS4-HMAC-SHA256 Credential={key_id}/{now:%Y%m%d}/us-east-1/ses/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}\r\n"
            f"X-Amz-Date: {now:%Y%m%dT%H%M%SZ}\r\nContent-Length: {length}\r\n\r\n").encode()
    return raw_http(w, head, source=source, timeout=30)


def test_bodies_that_will_fail_their_signature_cannot_starve_another_tenant():
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, "[http]\nmax_inflight_body_bytes = 67108864\nmax_body_bytes = 12582912\n"
                        "body_timeout_seconds = 120\n")
        try:
            victim = sender(w, "victim.test")
            # The attacker knows the victim's access key ID (it is in every request the victim signs),
            # not its secret: nine bodies of 10 MB, each sent but for its last bytes, then held.
            held, refused = [], 0
            for _ in range(9):
                c = garbage_signed(w, victim.creds["access_key_id"], 10_000_000, "127.0.0.9")
                try:
                    c.sendall(b"A" * 9_999_000)
                    held.append(c)
                except OSError:
                    refused += 1
            time.sleep(0.5)
            answers = [read_all(c, timeout=0.2) for c in held]
            refused += sum(1 for a in answers if a.startswith(b"HTTP/1.1 503"))
            assert refused >= 6, answers  # one address holds at most a quarter of the budget
            ses = victim.client()
            for i in range(40):
                ses.send_email(Source="a@victim.test", Destination={"ToAddresses": ["x@example.net"]},
                               Message={"Subject": {"Data": f"s{i}"}, "Body": {"Text": {"Data": "b"}}})
            big = b"From: a@victim.test\r\nTo: x@example.net\r\nSubject: big\r\n\r\n" + b"y" * 5_000_000 + b"\r\n"
            assert ses.send_raw_email(RawMessage={"Data": big})["MessageId"]
            for c in held:
                c.close()
        finally:
            w.stop()
