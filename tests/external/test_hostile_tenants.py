"""Attacks by a tenant, by an outsider who received one message, and by a local user, performed
against the real binary on loopback as they would perform them; each checks the outcome and that
another tenant is served while the attack runs."""

import datetime
import os
import subprocess
import json
import tempfile
import smtplib
import socket
import threading
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import WEIR, Weir, events, free_port, raw_http, read_all, sender, server, smtp_login, wait_for
from fakemx import FakeMX
from reports import arf, dsn


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
        # An attack refused quickly may end before the bystander's second round; let it finish
        # two rounds (six answers) so "served" is judged on more than one sample of each.
        deadline = time.monotonic() + 30
        while len(self.lat) + len(self.failures) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
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


def render_and_send(ses, template, data):
    """The errors of TestRenderTemplate and of SendTemplatedEmail with `template` and `data`."""
    rendered = api_error(lambda: ses.test_render_template(TemplateName=template, TemplateData=data))
    sent = api_error(lambda: ses.send_templated_email(
        Source="a@acme.test", Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
        Template=template, TemplateData=data))
    return rendered, sent


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
            rendered, sent = render_and_send(ses, "balloon", data)
            assert rendered["Code"] == "InvalidRenderingParameter" and "larger than 10485760 bytes" in rendered["Message"]
            assert sent["Code"] == "InvalidParameterValue" and "larger than 10485760 bytes" in sent["Message"], sent
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
    # botocore parses the XML answer: a NUL in it would fail parsing instead.
    rendered, sent = render_and_send(ses, "nul", json.dumps({"v": "a\u0000b"}))
    assert rendered["Code"] == "InvalidRenderingParameter" and "NUL" in rendered["Message"], rendered
    assert sent["Code"] == "InvalidParameterValue" and "NUL" in sent["Message"], sent


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
            # not its secret: nine bodies of 10 MB from three addresses, each sent but for its last
            # bytes, then held.
            held, refused = [], 0
            for i in range(9):
                c = garbage_signed(w, victim.creds["access_key_id"], 10_000_000, f"127.0.0.{9 + i % 3}")
                try:
                    c.sendall(b"A" * 9_999_000)
                    held.append(c)
                except OSError:
                    refused += 1
            time.sleep(0.5)
            answers = [read_all(c, timeout=0.2) for c in held]
            refused += sum(1 for a in answers if a.startswith(b"HTTP/1.1 503"))
            # A key claimed where it never signed correctly holds at most a quarter, however many
            # addresses claim it.
            assert refused >= 6, answers
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


# --- Feedback: bounces and complaints that come back -----------------------------------------------


class Returning:
    """A server that delivers fake.test to a fake receiver with per-recipient return paths at
    bounces.test, takes reports on its feedback listener, and trusts 127.0.0.77 as a feedback loop."""

    def __init__(self, tmp):
        self.mx, self.fb_port = FakeMX(), free_port()
        self.w = server(tmp, f'[feedback]\nreturn_path_domain = "bounces.test"\nlisten = "127.0.0.1:{self.fb_port}"\n'
                             'loop_sources = ["127.0.0.77/32"]\n',
                        delivery_to=self.mx.port)
        self.a = sender(self.w)

    def send(self, *to):
        return self.a.client().send_email(Source="a@acme.test", Destination={"ToAddresses": list(to)},
                                          Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})["MessageId"]

    def return_path_of(self, rcpt):
        """The envelope sender the receiver saw for `rcpt`: what that recipient holds."""
        got = wait_for(lambda: self.mx.delivered_to(rcpt), what=f"delivery to {rcpt}")
        return got[-1][1]

    def report(self, to, message, source="127.0.0.5"):
        with smtplib.SMTP("127.0.0.1", self.fb_port, timeout=30, source_address=(source, 0)) as c:
            c.sendmail("", [to], message)

    def kinds(self, kind, mid):
        return [e for e in events(self.w, kind) if e["mail"]["messageId"] == mid]

    def suppressed(self, address):
        try:
            self.a.client("sesv2").get_suppressed_destination(EmailAddress=address)
            return True
        except ClientError:
            return False


@pytest.fixture
def returning():
    with tempfile.TemporaryDirectory() as tmp:
        r = Returning(tmp)
        yield r
        r.w.stop()


def test_a_complaint_naming_only_a_message_id_from_an_unknown_address_is_ignored(returning):
    r = returning
    mid = r.send("me@fake.test")
    r.return_path_of("me@fake.test")
    # An outsider who received one message knows its Message-ID and their own address.
    for _ in range(15):
        r.report("fbl@bounces.test", arf("fbl@bounces.test", message_id=mid, rcpt_to="me@fake.test"))
    time.sleep(1)
    assert r.kinds("Complaint", mid) == []
    assert not r.suppressed("me@fake.test")


def test_a_replayed_complaint_counts_once(returning):
    r = returning
    mids = [r.send(f"u{i}@fake.test") for i in range(3)]
    rp = r.return_path_of("u0@fake.test")
    for _ in range(8):
        r.report(rp, arf(rp))  # to the recipient's own return path
        r.report("fbl@bounces.test", arf("fbl@bounces.test", return_path=rp))  # to the complaints address
    wait_for(lambda: r.kinds("Complaint", mids[0]), what="the one complaint")
    time.sleep(0.5)
    assert len(r.kinds("Complaint", mids[0])) == 1
    # What reputation is judged on: one complaint, not sixteen.
    points = r.a.client().get_send_statistics()["SendDataPoints"]
    assert sum(p["Complaints"] for p in points) == 1, points


def test_a_replayed_dsn_bounces_once(returning):
    r = returning
    mid = r.send("gone@fake.test")
    rp = r.return_path_of("gone@fake.test")
    for _ in range(20):
        r.report(rp, dsn(rp, [("gone@fake.test", "5.1.1")]))
    wait_for(lambda: r.kinds("Bounce", mid), what="the bounce")
    time.sleep(0.5)
    assert len(r.kinds("Bounce", mid)) == 1


def test_a_dsn_with_sixty_thousand_failed_groups_makes_one_bounce(returning):
    r = returning
    mid = r.send("gone@fake.test")
    rp = r.return_path_of("gone@fake.test")
    started = time.monotonic()
    r.report(rp, dsn(rp, [(f"x{i}@fake.test", "5.1.1") for i in range(60_000)]))
    wait_for(lambda: r.kinds("Bounce", mid), what="the bounce")
    assert time.monotonic() - started < 10
    time.sleep(0.5)
    assert len(events(r.w, "Bounce")) == 1
    assert r.kinds("Bounce", mid)[0]["bounce"]["bouncedRecipients"][0]["emailAddress"] == "gone@fake.test"


def test_a_recipient_cannot_get_a_co_recipient_suppressed(returning):
    r = returning
    mid = r.send("attacker@fake.test", "victim@fake.test")
    rp = r.return_path_of("attacker@fake.test")
    assert rp != r.return_path_of("victim@fake.test"), "each recipient has its own return path"
    # A DSN to the attacker's own return path naming the co-recipient...
    r.report(rp, dsn(rp, [("victim@fake.test", "5.1.1")]))
    # ... and a complaint carrying the attacker's return path naming the co-recipient.
    r.report("fbl@bounces.test", arf("fbl@bounces.test", return_path=rp, message_id=mid, rcpt_to="victim@fake.test"))
    wait_for(lambda: r.kinds("Complaint", mid) and r.kinds("Bounce", mid), what="the attacker's own reports")
    time.sleep(0.5)
    named = {x["emailAddress"] for e in r.kinds("Bounce", mid) for x in e["bounce"]["bouncedRecipients"]}
    named |= {x["emailAddress"] for e in r.kinds("Complaint", mid) for x in e["complaint"]["complainedRecipients"]}
    assert named == {"attacker@fake.test"}, named
    assert not r.suppressed("victim@fake.test")


def test_reports_from_one_address_are_capped_per_minute():
    with tempfile.TemporaryDirectory() as tmp:
        mx, fb_port = FakeMX(), free_port()
        w = server(tmp, f'[feedback]\nreturn_path_domain = "bounces.test"\nlisten = "127.0.0.1:{fb_port}"\n'
                        'reports_per_minute = 5\n', delivery_to=mx.port)
        try:
            codes = []
            for _ in range(8):
                with smtplib.SMTP("127.0.0.1", fb_port, timeout=10, source_address=("127.0.0.6", 0)) as c:
                    c.ehlo("isp.test")
                    codes.append(c.mail("")[0])
            assert codes == [250] * 5 + [450] * 3, codes
            with smtplib.SMTP("127.0.0.1", fb_port, timeout=10, source_address=("127.0.0.7", 0)) as c:
                c.ehlo("isp.test")
                assert c.mail("")[0] == 250  # another address has its own allowance
        finally:
            w.stop()


# --- Verification mail ---------------------------------------------------------------------------


def test_verification_mail_is_one_per_second_and_counted_against_the_quota():
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, '[verification]\nfrom = "no-reply@weir.test"\n', delivery_to=mx.port)
        try:
            a = w.account()  # a sandboxed tenant: 200 a day, 1 a second
            ses, v2 = a.client(), a.client("sesv2")
            started, sent, refused = time.monotonic(), 0, []
            for i in range(30):
                try:
                    if i % 2:
                        ses.verify_email_identity(EmailAddress=f"stranger{i}@fake.test")
                    else:
                        v2.create_email_identity(EmailIdentity=f"stranger{i}@fake.test")
                    sent += 1
                except ClientError as e:
                    refused.append(e.response["Error"]["Code"])
            elapsed = time.monotonic() - started
            assert sent <= elapsed + 2, (sent, elapsed)
            assert set(refused) <= {"Throttling", "TooManyRequestsException"}, refused
            assert ses.get_send_quota()["SentLast24Hours"] == sent
            time.sleep(1)
            wait_for(lambda: len({r for m in mx.messages for r in m[2]}) == sent, what="the verification mail")
            # A made-up region gets nothing.
            e = api_error(lambda: a.client(region="zz-fake-1").verify_email_identity(EmailAddress="x@fake.test"))
            assert e["Code"] in ("InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"), e
        finally:
            w.stop()


# --- Resource counts -----------------------------------------------------------------------------


def create_many(w, a, n, make):
    """`make(client, i)` for i in range(n), on eight connections at once."""
    from concurrent.futures import ThreadPoolExecutor
    local = threading.local()

    def one(i):
        if not hasattr(local, "c"):
            local.c = a.client("sesv2")
        make(local.c, i)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))


def test_templates_and_configuration_sets_stop_at_ses_s_limits():
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, "[spool]\nfsync = false\n")
        try:
            a = w.account()
            create_many(w, a, 10_000, lambda c, i: c.create_email_template(
                TemplateName=f"t{i}", TemplateContent={"Subject": "s", "Text": "t"}))
            e = api_error(lambda: a.client().create_template(Template={"TemplateName": "one-more", "SubjectPart": "s"}))
            assert e["Code"] == "LimitExceeded" and "at most 10000" in e["Message"], e
            create_many(w, a, 10_000, lambda c, i: c.create_configuration_set(ConfigurationSetName=f"c{i}"))
            e = api_error(lambda: a.client("sesv2").create_configuration_set(ConfigurationSetName="one-more"))
            assert e["Code"] == "LimitExceededException", e
            # Another tenant is not affected by this one's count.
            assert w.account().client().create_template(Template={"TemplateName": "t0", "SubjectPart": "s"})
        finally:
            w.stop()


def test_listing_templates_reads_names_not_bodies(weir, acct, bystander_account):
    big = "x" * 450_000
    # The report's case: 300 templates of 450 KB, 135 MB that a listing must not read.
    create_many(weir, acct, 300, lambda c, i: c.create_email_template(
        TemplateName=f"big{i}", TemplateContent={"Subject": "s", "Text": big}))
    before, peak, done = rss_mb(weir), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(weir))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with Bystander(weir, bystander_account) as b:
        create_many(weir, acct, 40, lambda c, i: c.list_email_templates(PageSize=10))
    done.set()
    sampler.join()
    assert peak[0] - before < 40, (before, peak[0])
    b.assert_served()


# --- Event topics --------------------------------------------------------------------------------


def test_a_tenant_cannot_attach_the_topic_declared_for_another_tenant():
    from test_configuration_sets import Receiver
    rx = Receiver()
    b_arn = "arn:aws:sns:us-east-1:000000000000:tenant-b-events"
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, f'[[events.topics]]\narn = "{b_arn}"\naccounts = ["tenant-b"]\n'
                        f'url = "http://127.0.0.1:{rx.port}/b"\nformat = "ses"\nsecret = "b-secret"\n')
        try:
            creds = {n: json.loads(w.cli("account", "create", n, "--json")) for n in ("tenant-a", "tenant-b")}
            from conftest import Account
            a, b = (Account(w, n, creds[n]) for n in ("tenant-a", "tenant-b"))
            dest = {"Enabled": True, "MatchingEventTypes": ["SEND"], "SnsDestination": {"TopicArn": b_arn}}
            v2a = a.client("sesv2")
            v2a.create_configuration_set(ConfigurationSetName="mine")
            e = api_error(lambda: v2a.create_configuration_set_event_destination(
                ConfigurationSetName="mine", EventDestinationName="steal", EventDestination=dest))
            assert e["Code"] == "BadRequestException" and "not available to this account" in e["Message"], e
            e_v1 = api_error(lambda: a.client().create_configuration_set_event_destination(
                ConfigurationSetName="mine", EventDestination={
                    "Name": "steal", "Enabled": True, "MatchingEventTypes": ["send"],
                    "SNSDestination": {"TopicARN": b_arn}}))
            assert "not available to this account" in e_v1["Message"], e_v1
            # Refused the same whether or not the topic exists: nothing is learnt about B.
            other = api_error(lambda: v2a.create_configuration_set_event_destination(
                ConfigurationSetName="mine", EventDestinationName="x", EventDestination={
                    **dest, "SnsDestination": {"TopicArn": b_arn + "-nope"}}))
            assert other["Message"].replace("-nope", "") == e["Message"]
            # B itself may.
            v2b = b.client("sesv2")
            v2b.create_configuration_set(ConfigurationSetName="own")
            v2b.create_configuration_set_event_destination(ConfigurationSetName="own", EventDestinationName="d",
                                                           EventDestination=dest)
        finally:
            w.stop()
            rx.server.shutdown()


# --- Cluster mode: what reaches Redis ------------------------------------------------------------

from test_cluster import PASSWORD, Redis, account_on, cluster_key, eventually, node, on, send_v1  # noqa: E402
from pathlib import Path  # noqa: E402


@pytest.fixture
def two_nodes():
    with tempfile.TemporaryDirectory() as tmp:
        redis = Redis(Path(tmp)).start()
        nodes = [node(tmp, "n1", redis), node(tmp, "n2", redis)]
        try:
            yield redis, nodes, Path(tmp)
        finally:
            for w in nodes:
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
            redis.kill()


def resp(port, *commands):
    """Commands in Redis's protocol on a fresh connection, as a local user without the password
    would send them; the raw answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        for cmd in commands:
            c.sendall(b"".join([f"*{len(cmd)}\r\n".encode()]
                               + [f"${len(a.encode())}\r\n{a}\r\n".encode() for a in cmd]))
        time.sleep(0.2)
        return c.recv(65536).decode(errors="replace")


def test_a_local_user_without_the_password_gets_nothing_from_redis(two_nodes):
    redis, (n1, _), _ = two_nodes
    n1.account()
    answer = resp(redis.port, ["XRANGE", "weir:catalog", "-", "+"], ["DEL", "weir:epoch"], ["KEYS", "*"])
    assert answer.count("-NOAUTH") == 3, answer


def test_a_node_refuses_a_redis_url_without_a_password(two_nodes):
    redis, _, tmp = two_nodes
    cfg = tmp / "open.toml"
    cfg.write_text(f'[cluster]\nredis = "redis://127.0.0.1:{redis.port}/"\nkey_file = "{cluster_key(tmp)}"\n')
    (tmp / "open").mkdir()
    p = subprocess.run([WEIR, "serve", "--config", str(cfg), "--data-dir", str(tmp / "open"), "--http", "127.0.0.1:0",
                        "--no-smtp", "--no-delivery"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "has no password" in p.stderr, p.stderr


def test_the_catalog_in_redis_holds_no_secret_key_or_dkim_key(two_nodes):
    redis, (n1, n2), _ = two_nodes
    a = account_on(n1, [n1, n2])
    made = a.client("sesv2").create_email_identity(EmailIdentity="dk.test")["DkimAttributes"]
    eventually(lambda: on(a, n2).client("sesv2").get_email_identity(EmailIdentity="dk.test")["DkimAttributes"][
        "Tokens"] == made["Tokens"], what="the DKIM keys on n2")
    stream = redis.command("XRANGE", "weir:catalog", "-", "+")
    assert stream.strip(), "the stream has entries"
    assert a.creds["secret_access_key"] not in stream
    assert a.name not in stream and "dk.test" not in stream and "acme.test" not in stream


def test_a_forged_catalog_entry_is_ignored_and_logged(two_nodes):
    redis, (n1, n2), tmp = two_nodes
    a = account_on(n1, [n1, n2])
    victim_id = json.loads(n1.cli("account", "list", "--json"))[0]
    # The attacker holds the Redis password, not the cluster key: a takeover of the account in the
    # old plain form, and one sealed with a key of its own.
    takeover = json.dumps({"change": "Account", "account": {**victim_id, "access_key_id": "AKIAATTACKER00000000",
                                                             "secret": "attacker-secret"}})
    redis.command("XADD", "weir:catalog", "*", "node", "n1", "change", takeover)
    redis.command("XADD", "weir:catalog", "*", "node", "n1", "ts", str(int(time.time() * 1e6) + 10**9),
                  "sealed", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    time.sleep(1)
    for w in (n1, n2):
        assert on(a, w).client().get_send_quota()  # the account's own key still works
    log = (tmp / "n2.log").read_text()
    assert log.count("catalog entry ignored") >= 2, log[-2000:]
    assert "AKIAATTACKER" not in n2.cli("account", "list", "--json")


def test_a_replayed_catalog_entry_is_ignored(two_nodes):
    redis, (n1, n2), tmp = two_nodes
    a = account_on(n1, [n1, n2], "--production", "--max-24h", "1000")
    raw = subprocess.run(["redis-cli", "-p", str(redis.port), "--no-auth-warning", "-a", PASSWORD, "--json",
                          "XREVRANGE", "weir:catalog", "+", "-", "COUNT", "1"], capture_output=True, text=True)
    fields = json.loads(raw.stdout)[0][1]
    a.quota("us-east-1", "--max-24h", "500")
    eventually(lambda: on(a, n2).client().get_send_quota()["Max24HourSend"] == 500, what="500 on n2")
    # Someone with the Redis password adds the earlier "1000" entry again.
    flat = fields if isinstance(fields, list) else [x for kv in fields.items() for x in kv]
    assert "ts" in flat and "sealed" in flat, flat
    redis.command("XADD", "weir:catalog", "*", *flat)
    time.sleep(1)
    for w in (n1, n2):
        assert on(a, w).client().get_send_quota()["Max24HourSend"] == 500
    assert "a replay" in (tmp / "n2.log").read_text()


def test_deleted_quota_keys_are_reseeded_not_reset(two_nodes):
    redis, nodes, _ = two_nodes
    a = account_on(nodes[0], nodes, "--production", "--max-24h", "20", "--max-rate", "-1")
    for i in range(20):
        send_v1(on(a, nodes[i % 2]).client())
    keys = [k for k in redis.command("KEYS", "{weir:q:*").split() if k]
    assert keys
    redis.command("DEL", *keys)
    accepted = 0
    for i in range(40):
        try:
            send_v1(on(a, nodes[i % 2]).client())
            accepted += 1
        except ClientError as e:
            assert e.response["Error"]["Code"] == "Throttling", e.response
    assert accepted == 0
    eventually(lambda: on(a, nodes[1]).client().get_send_quota()["SentLast24Hours"] == 20, timeout=10,
               what="the 20 re-seeded")


def test_a_redis_over_tls_with_a_ca_file_is_used(tmp_path):
    ca, ca_key, cert, key = (tmp_path / n for n in ("ca.pem", "ca.key", "cert.pem", "key.pem"))
    csr, ext = tmp_path / "server.csr", tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for cmd in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
                 "-subj", "/CN=weir test CA"],
                ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
                ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
                 "-extfile", ext]):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                             "--tls-key-file", str(key), "--tls-auth-clients", "no", "--requirepass", PASSWORD,
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        (tmp_path / "n").mkdir()
        cfg = tmp_path / "n.toml"
        cfg.write_text(f'[cluster]\nredis = "rediss://:{PASSWORD}@127.0.0.1:{port}/"\nca_file = "{ca}"\n'
                       f'key_file = "{cluster_key(tmp_path)}"\nnode = "tls1"\n')
        w = Weir(tmp_path / "n", extra_args=("--no-delivery", "--config", str(cfg))).start()
        try:
            a = account_on(w, [w], "--production")
            assert send_v1(a.client())["MessageId"]
        finally:
            w.stop()
    finally:
        proc.kill()
        proc.wait()


def test_links_and_return_paths_made_by_one_node_are_honoured_by_another():
    import re
    import urllib.error
    import urllib.request
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        redis = Redis(Path(tmp)).start()
        fb = [free_port(), free_port()]
        nodes = [node(tmp, f"n{i + 1}", redis,
                      f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n'
                      f'[feedback]\nreturn_path_domain = "bounces.test"\nlisten = "127.0.0.1:{fb[i]}"\n'
                      '[verification]\nfrom = "no-reply@weir.test"\n') for i in range(2)]
        try:
            n1, n2 = nodes
            a = account_on(n1, nodes, "--production", "--max-rate", "100")
            # A return path made by n1 is taken by n2's feedback listener.
            send_v1(a.client(), "ok@fake.test")
            rp = wait_for(lambda: mx.delivered_to("ok@fake.test"), what="delivery")[0][1]
            with smtplib.SMTP("127.0.0.1", fb[1], timeout=10) as c:
                c.ehlo("mx.fake.test")
                c.mail("")
                assert c.rcpt(rp)[0] == 250, rp
            # A verification link mailed by n1, followed on n2.
            a.client().verify_email_identity(EmailAddress="bob@fake.test")
            mail = wait_for(lambda: [m for m in mx.messages if "bob@fake.test" in m[2]], what="verification")[0][3]
            link = re.search(rb"http://\S+(/verify\?\S+)", mail).group(1).decode()
            eventually(lambda: "bob@fake.test" in on(a, n2).client().get_identity_verification_attributes(
                Identities=["bob@fake.test"])["VerificationAttributes"], what="the identity on n2")
            try:
                page = urllib.request.urlopen(n2.base + link, timeout=10).read().decode()
            except urllib.error.HTTPError as e:
                raise AssertionError((link, e.read()))
            assert "bob@fake.test is now verified" in page, page
            # An unsubscribe link made by n1, clicked on n2.
            v2 = a.client("sesv2")
            v2.create_contact_list(ContactListName="customers")
            eventually(lambda: on(a, n2).client("sesv2").get_contact_list(ContactListName="customers"),
                       what="the list on n2")
            v2.send_email(FromEmailAddress="news@acme.test", Destination={"ToAddresses": ["ann@fake.test"]},
                          Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
                          ListManagementOptions={"ContactListName": "customers"})
            mail = wait_for(lambda: [m for m in mx.messages if "ann@fake.test" in m[2]], what="newsletter")[0][3]
            path = re.search(rb"List-Unsubscribe: <http://[^/]+(/unsubscribe/[^>]+)>", mail).group(1).decode()
            req = urllib.request.Request(n2.base + path, data=b"List-Unsubscribe=One-Click", method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200 and "ann@fake.test is unsubscribed" in r.read().decode()
        finally:
            for w in nodes:
                w.stop()
            redis.kill()


# --- Low: the rest --------------------------------------------------------------------------------

def test_an_unsubscribe_link_is_opaque_and_a_replay_changes_nothing(weir, acct):
    import base64
    from test_contacts import TOPICS, one_click, send, spooled
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS)
    mid = send(v2, ["ann@acme.test"], topic="news")
    url = spooled(weir, mid)[0]["List-Unsubscribe"].strip("<>")
    token = url.rsplit("/", 1)[1]
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for secret in (b"customers", b"news", mid.encode(), b"ann@acme.test", b"us-east-1"):
        assert secret not in raw, secret
    for _ in range(6):
        assert one_click(url)[0] == 200
    time.sleep(0.5)
    subs = [e for e in events(weir, "Subscription") if e["mail"]["messageId"] == mid]
    assert len(subs) == 1, subs


def test_pages_for_browsers_cannot_be_framed_and_run_no_inline_script(weir, acct):
    import urllib.error
    import urllib.request
    from test_contacts import TOPICS, send, spooled
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS)
    unsub = spooled(weir, send(v2, ["ann@acme.test"]))[0]["List-Unsubscribe"].strip("<>")
    pages = [weir.base + "/dashboard", unsub, weir.base + "/verify?a=1&r=us-east-1&i=x%40y.test&t=00"]
    for url in pages:
        try:
            r = urllib.request.urlopen(url, timeout=10)
        except urllib.error.HTTPError as e:
            r = e
        h = r.headers
        assert h["X-Frame-Options"] == "DENY", (url, dict(h))
        csp = h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp, (url, csp)
        script = [d for d in csp.split(";") if d.strip().startswith(("script-src", "default-src"))]
        assert all("unsafe-inline" not in d for d in script), (url, csp)
    html = urllib.request.urlopen(weir.base + "/dashboard", timeout=10).read().decode()
    assert "<script>" not in html and '<script src="/dashboard.js"></script>' in html


def test_resent_from_another_tenants_address_is_refused_over_the_api_and_smtp(weir):
    sender(weir, "victim.test")
    a = sender(weir)
    for field in ("Resent-From", "Resent-Sender"):
        raw = (f"From: a@acme.test\r\n{field}: ceo@victim.test\r\nTo: x@example.net\r\nSubject: s\r\n\r\nb\r\n").encode()
        e = api_error(lambda: a.client().send_raw_email(RawMessage={"Data": raw}))
        assert e["Code"] == "MessageRejected" and "ceo@victim.test" in e["Message"], e
        s = smtp_login(weir, a)
        s.mail("a@acme.test")
        s.rcpt("x@example.net")
        code, msg = s.data(raw)
        assert code == 554 and b"ceo@victim.test" in msg, (code, msg)
        s.quit()


def test_smtputf8_is_not_offered_and_a_utf8_address_gets_a_clear_refusal(weir):
    a = sender(weir)
    s = smtp_login(weir, a)
    s.ehlo("client.test")
    assert "smtputf8" not in s.esmtp_features
    s.command_encoding = "utf-8"  # a client that sends UTF-8 anyway
    code, msg = s.docmd("MAIL FROM:<zoë@acme.test>")
    assert code in (501, 553, 555) and (b"ASCII" in msg or b"address" in msg.lower()), (code, msg)
    s.quit()


def test_an_ehlo_name_outside_printable_ascii_is_refused(weir):
    with socket.create_connection(weir.smtp, timeout=5) as c:
        c.recv(512)
        c.sendall("EHLO ÿþ\r\n".encode("utf-8"))
        assert c.recv(512).startswith(b"501"), "EHLO ÿþ"


def test_domain_literal_recipients_are_refused(weir):
    a = sender(weir)
    e = api_error(lambda: a.client().send_email(
        Source="a@acme.test", Destination={"ToAddresses": ["root@[127.0.0.1]"]},
        Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}))
    assert e["Code"] == "InvalidParameterValue" and "Domain literals" in e["Message"], e
    s = smtp_login(weir, a)
    s.mail("a@acme.test")
    code, _ = s.rcpt("root@[127.0.0.1]")
    assert code >= 500, code
    s.quit()


def test_a_session_token_is_refused_not_ignored(weir, acct):
    import boto3
    c = boto3.client("ses", region_name="us-east-1", endpoint_url=weir.base,
                     aws_access_key_id=acct.creds["access_key_id"],
                     aws_secret_access_key=acct.creds["secret_access_key"], aws_session_token="FwoGZXIvYXdzEBY")
    e = api_error(c.get_send_quota)
    assert e["Code"] == "InvalidClientTokenId" and "security token" in e["Message"], e
    c2 = boto3.client("sesv2", region_name="us-east-1", endpoint_url=weir.base,
                      aws_access_key_id=acct.creds["access_key_id"],
                      aws_secret_access_key=acct.creds["secret_access_key"], aws_session_token="FwoGZXIvYXdzEBY")
    e = api_error(c2.get_account)
    assert e["Code"] == "UnrecognizedClientException", e


def test_a_made_up_region_is_refused(weir, acct):
    for service, code in (("ses", "SignatureDoesNotMatch"), ("sesv2", "InvalidSignatureException")):
        e = api_error(lambda: acct.client(service, region="zz-fake-1").get_send_quota() if service == "ses"
                      else acct.client(service, region="zz-fake-1").get_account())
        assert e["Code"] == code and "valid region" in e["Message"], e
    out = subprocess.run([WEIR, "account", "quota", acct.name, "--region", "zz-fake-1", "--production",
                          "--data-dir", str(weir.data_dir)], capture_output=True, text=True)
    assert out.returncode != 0 and "region" in out.stderr, out.stderr


def test_a_guessable_admin_token_is_refused_at_start(tmp_path):
    data = tmp_path / "weir"
    data.mkdir(mode=0o700)
    (data / "admin-token").write_text("a" * 64 + "\n")
    (data / "admin-token").chmod(0o600)
    p = subprocess.run([WEIR, "serve", "--data-dir", str(data), "--http", "127.0.0.1:0", "--no-smtp", "--no-delivery"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "easy to guess" in p.stderr, p.stderr


def test_the_dashboard_takes_its_token_out_of_the_address_bar(weir):
    """In a real browser: after the page read `#token=…`, the tab's URL no longer holds it."""
    import shutil
    import urllib.request
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: apt-get install chromium (as .ci/run does)"
    token = (weir.data_dir / "admin-token").read_text().strip()
    port = free_port()
    # Chromium's helper processes may still write to the profile as it is removed.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        p = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                              f"--remote-debugging-port={port}", f"{weir.base}/dashboard#token={token}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def pages():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                        return [t for t in json.loads(r.read()) if t.get("type") == "page"]
                except OSError:
                    return None
            tabs = wait_for(lambda: [t for t in (pages() or []) if "/dashboard" in t["url"]], timeout=60,
                            what="the dashboard open in chromium")
            wait_for(lambda: all(token not in t["url"] for t in (pages() or tabs)), timeout=30,
                     what="the token gone from the URL")
            assert all(t["url"].endswith("/dashboard") for t in pages()), pages()
        finally:
            p.kill()
            p.wait()
