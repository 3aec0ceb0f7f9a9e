"""Configuration sets through boto3: v1 and v2 CRUD, the Put…Options actions, sends that name a
set, and event destinations: SNS topics that weir maps to HTTP(S) endpoints, checked by a
receiver on loopback (payloads, signatures, MatchingEventTypes, retries after it was down)."""

import hashlib
import hmac
import http.server
import json
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import Weir, free_port, wait_for

SIMPLE_V1 = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
SIMPLE_V2 = {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}}
SNS_ARN = "arn:aws:sns:us-east-1:000000000000:ses-events"
GENERIC_ARN = "arn:aws:sns:us-east-1:000000000000:bounces"
SES_ARN = "arn:aws:sns:us-east-1:000000000000:raw"
TLS_ARN = "arn:aws:sns:us-east-1:000000000000:tls"
SECRET = "s3cret-for-tests"


def code(e):
    return e.value.response["Error"]["Code"]


def message(e):
    return e.value.response["Error"]["Message"]


@pytest.fixture
def acct(acct):
    acct.quota("us-east-1", "--max-rate", "1000", "--burst-seconds", "1")
    return acct


def test_v1_configuration_set_lifecycle(acct):
    ses = acct.client()
    ses.create_configuration_set(ConfigurationSet={"Name": "cs-one"})
    with pytest.raises(ClientError) as e:
        ses.create_configuration_set(ConfigurationSet={"Name": "cs-one"})
    assert (code(e), message(e)) == ("ConfigurationSetAlreadyExists", "Configuration set <cs-one> already exists.")
    with pytest.raises(ClientError) as e:
        ses.create_configuration_set(ConfigurationSet={"Name": "bad name"})
    assert code(e) == "InvalidConfigurationSet"
    ses.create_configuration_set(ConfigurationSet={"Name": "cs-two"})
    assert [c["Name"] for c in ses.list_configuration_sets()["ConfigurationSets"]] == ["cs-one", "cs-two"]
    d = ses.describe_configuration_set(ConfigurationSetName="cs-one",
                                       ConfigurationSetAttributeNames=["eventDestinations", "deliveryOptions",
                                                                       "reputationOptions"])
    assert d["ConfigurationSet"] == {"Name": "cs-one"}
    assert d["EventDestinations"] == []
    assert d["DeliveryOptions"] == {"TlsPolicy": "Optional"}
    assert d["ReputationOptions"]["SendingEnabled"] is True
    ses.put_configuration_set_delivery_options(ConfigurationSetName="cs-one", DeliveryOptions={"TlsPolicy": "Require"})
    d = ses.describe_configuration_set(ConfigurationSetName="cs-one", ConfigurationSetAttributeNames=["deliveryOptions"])
    assert d["DeliveryOptions"] == {"TlsPolicy": "Require"}
    ses.delete_configuration_set(ConfigurationSetName="cs-two")
    with pytest.raises(ClientError) as e:
        ses.describe_configuration_set(ConfigurationSetName="cs-two")
    assert (code(e), message(e)) == ("ConfigurationSetDoesNotExist", "Configuration set <cs-two> does not exist.")
    with pytest.raises(ClientError) as e:
        ses.delete_configuration_set(ConfigurationSetName="cs-two")
    assert code(e) == "ConfigurationSetDoesNotExist"


def test_v1_sends_naming_a_set(acct):
    ses = acct.client()
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]}, Message=SIMPLE_V1,
                       ConfigurationSetName="nosuch")
    assert (code(e), message(e)) == ("ConfigurationSetDoesNotExist", "Configuration set <nosuch> does not exist.")
    ses.create_configuration_set(ConfigurationSet={"Name": "paused"})
    assert ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]}, Message=SIMPLE_V1,
                          ConfigurationSetName="paused")["MessageId"]
    ses.update_configuration_set_sending_enabled(ConfigurationSetName="paused", Enabled=False)
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]}, Message=SIMPLE_V1,
                       ConfigurationSetName="paused")
    assert code(e) == "ConfigurationSetSendingPausedException"
    raw = b"From: a@acme.test\r\nTo: b@acme.test\r\nX-SES-CONFIGURATION-SET: paused\r\nSubject: s\r\n\r\nb\r\n"
    with pytest.raises(ClientError) as e:
        ses.send_raw_email(RawMessage={"Data": raw})
    assert code(e) == "ConfigurationSetSendingPausedException"
    ses.update_configuration_set_sending_enabled(ConfigurationSetName="paused", Enabled=True)
    d = ses.describe_configuration_set(ConfigurationSetName="paused", ConfigurationSetAttributeNames=["reputationOptions"])
    assert d["ReputationOptions"]["SendingEnabled"] is True and d["ReputationOptions"]["LastFreshStart"]


def test_v2_configuration_set_lifecycle_and_options(acct):
    v2 = acct.client("sesv2")
    v2.create_configuration_set(ConfigurationSetName="v2set", DeliveryOptions={"TlsPolicy": "REQUIRE"},
                                SendingOptions={"SendingEnabled": True}, Tags=[{"Key": "team", "Value": "core"}],
                                SuppressionOptions={"SuppressedReasons": ["BOUNCE"]})
    g = v2.get_configuration_set(ConfigurationSetName="v2set")
    assert g["ConfigurationSetName"] == "v2set"
    assert g["DeliveryOptions"]["TlsPolicy"] == "REQUIRE"
    assert g["SendingOptions"] == {"SendingEnabled": True}
    assert g["Tags"] == [{"Key": "team", "Value": "core"}]
    assert g["SuppressionOptions"] == {"SuppressedReasons": ["BOUNCE"]}
    with pytest.raises(ClientError) as e:
        v2.create_configuration_set(ConfigurationSetName="v2set")
    assert code(e) == "AlreadyExistsException"
    v2.put_configuration_set_delivery_options(ConfigurationSetName="v2set", TlsPolicy="OPTIONAL",
                                              MaxDeliverySeconds=600)
    v2.put_configuration_set_reputation_options(ConfigurationSetName="v2set", ReputationMetricsEnabled=True)
    v2.put_configuration_set_suppression_options(ConfigurationSetName="v2set", SuppressedReasons=["BOUNCE", "COMPLAINT"])
    v2.put_configuration_set_tracking_options(ConfigurationSetName="v2set", CustomRedirectDomain="t.acme.test")
    g = v2.get_configuration_set(ConfigurationSetName="v2set")
    assert g["DeliveryOptions"] == {"TlsPolicy": "OPTIONAL", "MaxDeliverySeconds": 600}
    assert g["ReputationOptions"]["ReputationMetricsEnabled"] is True
    assert g["SuppressionOptions"]["SuppressedReasons"] == ["BOUNCE", "COMPLAINT"]
    assert g["TrackingOptions"]["CustomRedirectDomain"] == "t.acme.test"
    with pytest.raises(ClientError) as e:
        v2.put_configuration_set_delivery_options(ConfigurationSetName="v2set", TlsPolicy="SOMETIMES")
    assert code(e) == "BadRequestException"
    assert message(e) == ("1 validation error detected: Value 'SOMETIMES' at 'tlsPolicy' failed to satisfy "
                          "constraint: Member must satisfy enum value set: [OPTIONAL, REQUIRE]")
    v2.put_configuration_set_sending_options(ConfigurationSetName="v2set", SendingEnabled=False)
    with pytest.raises(ClientError) as e:
        v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                      Content=SIMPLE_V2, ConfigurationSetName="v2set")
    assert code(e) == "SendingPausedException"
    with pytest.raises(ClientError) as e:
        v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                      Content=SIMPLE_V2, ConfigurationSetName="nosuch")
    assert code(e) == "NotFoundException" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "v2set" in v2.list_configuration_sets()["ConfigurationSets"]
    v2.delete_configuration_set(ConfigurationSetName="v2set")
    with pytest.raises(ClientError) as e:
        v2.get_configuration_set(ConfigurationSetName="v2set")
    assert code(e) == "NotFoundException"


def test_event_destination_must_be_a_declared_sns_topic(acct):
    v2 = acct.client("sesv2")
    v2.create_configuration_set(ConfigurationSetName="dests")
    with pytest.raises(ClientError) as e:
        v2.create_configuration_set_event_destination(
            ConfigurationSetName="dests", EventDestinationName="d1",
            EventDestination={"Enabled": True, "MatchingEventTypes": ["SEND"],
                              "SnsDestination": {"TopicArn": "arn:aws:sns:us-east-1:1:undeclared"}})
    assert code(e) == "BadRequestException" and "undeclared" in message(e) and "events.topics" in message(e)
    with pytest.raises(ClientError) as e:
        v2.create_configuration_set_event_destination(
            ConfigurationSetName="dests", EventDestinationName="d1",
            EventDestination={"Enabled": True, "MatchingEventTypes": ["SEND"],
                              "CloudWatchDestination": {"DimensionConfigurations": []}})
    assert code(e) == "BadRequestException" and "CloudWatchDestination" in message(e)
    with pytest.raises(ClientError) as e:
        v2.create_configuration_set_event_destination(
            ConfigurationSetName="dests", EventDestinationName="d1",
            EventDestination={"Enabled": True, "MatchingEventTypes": ["SENT"],
                              "SnsDestination": {"TopicArn": "arn:aws:sns:us-east-1:1:undeclared"}})
    assert code(e) == "BadRequestException" and "enum value set" in message(e)
    ses = acct.client()
    with pytest.raises(ClientError) as e:
        ses.create_configuration_set_event_destination(
            ConfigurationSetName="dests",
            EventDestination={"Name": "d1", "Enabled": True, "MatchingEventTypes": ["send"],
                              "SNSDestination": {"TopicARN": "arn:aws:sns:us-east-1:1:undeclared"}})
    assert code(e) == "InvalidSNSDestination"


class Receiver:
    """An HTTP(S) endpoint on loopback that records every request; it can be started late."""

    def __init__(self, port=0, tls=None):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.requests.append((self.path, dict(self.headers), body.decode()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path):
        with self.lock:
            return [(h, b) for p, h, b in self.requests if p == path]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def make_tls(d: Path):
    """A CA and a server certificate for 127.0.0.1 signed by it (rustls refuses a CA certificate
    as a server's own)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=weir test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem",
        "-days", "2", "-extfile", "ext.cnf")
    return d / "ca.pem", (str(d / "srv.pem"), str(d / "srv.key"))


@pytest.fixture(scope="module")
def published():
    """weir with four topics on one receiver (plain HTTP) and one on a TLS receiver, delivering
    (mailbox simulator only), and a receiver for a fifth topic that starts late."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ca, tls = make_tls(d)
        rx = Receiver()
        rx_tls = Receiver(tls=tls)
        late_port = free_port()
        base = f"http://127.0.0.1:{rx.port}"
        cfg = d / "weir.toml"
        cfg.write_text(f"""
[delivery]
poll_interval_ms = 50

[[events.topics]]
arn = "{SNS_ARN}"
accounts = ["*"]
url = "{base}/sns"
format = "sns"
secret = "{SECRET}"

[[events.topics]]
arn = "{GENERIC_ARN}"
accounts = ["*"]
url = "{base}/generic"
format = "generic"

[[events.topics]]
arn = "{SES_ARN}"
accounts = ["*"]
url = "{base}/ses"
format = "ses"

[[events.topics]]
arn = "{TLS_ARN}"
accounts = ["*"]
url = "https://127.0.0.1:{rx_tls.port}/tls"
format = "ses"
ca_file = "{ca}"

[[events.topics]]
arn = "arn:aws:sns:us-east-1:000000000000:late"
accounts = ["*"]
url = "http://127.0.0.1:{late_port}/late"
format = "ses"
""")
        data = d / "data"
        data.mkdir()
        w = Weir(data, extra_args=("--config", str(cfg))).start()
        try:
            yield w, rx, rx_tls, late_port
        finally:
            w.stop()
            rx.stop()
            rx_tls.stop()


def sns_dest(arn, types, enabled=True):
    return {"Enabled": enabled, "MatchingEventTypes": types, "SnsDestination": {"TopicArn": arn}}


def messages_for(rx, path, message_id, kind_of):
    return [b for h, b in rx.bodies(path) if message_id in b and kind_of(h, b)]


def test_events_reach_only_matching_enabled_destinations(published):
    w, rx, rx_tls, _ = published
    a = w.account()
    a.verify("acme.test")
    a.quota("us-east-1", "--max-rate", "100", "--burst-seconds", "1")
    v2 = a.client("sesv2")
    v2.create_configuration_set(ConfigurationSetName="pub")
    v2.create_configuration_set_event_destination(ConfigurationSetName="pub", EventDestinationName="sends",
                                                  EventDestination=sns_dest(SNS_ARN, ["SEND", "DELIVERY"]))
    v2.create_configuration_set_event_destination(ConfigurationSetName="pub", EventDestinationName="bounces",
                                                  EventDestination=sns_dest(GENERIC_ARN, ["BOUNCE"]))
    v2.create_configuration_set_event_destination(ConfigurationSetName="pub", EventDestinationName="off",
                                                  EventDestination=sns_dest(SES_ARN, ["SEND", "BOUNCE"], enabled=False))
    v2.create_configuration_set_event_destination(ConfigurationSetName="pub", EventDestinationName="tls",
                                                  EventDestination=sns_dest(TLS_ARN, ["BOUNCE", "RENDERING_FAILURE"]))
    dests = v2.get_configuration_set_event_destinations(ConfigurationSetName="pub")["EventDestinations"]
    assert {d["Name"]: d["MatchingEventTypes"] for d in dests} == {
        "sends": ["SEND", "DELIVERY"], "bounces": ["BOUNCE"], "off": ["SEND", "BOUNCE"],
        "tls": ["BOUNCE", "RENDERING_FAILURE"]}
    ok = v2.send_email(FromEmailAddress="a@acme.test", ConfigurationSetName="pub", Content=SIMPLE_V2,
                       Destination={"ToAddresses": ["success@simulator.amazonses.com"]})["MessageId"]
    bounced = v2.send_email(FromEmailAddress="a@acme.test", ConfigurationSetName="pub", Content=SIMPLE_V2,
                            Destination={"ToAddresses": ["bounce@simulator.amazonses.com"]})["MessageId"]
    unset = v2.send_email(FromEmailAddress="a@acme.test", Content=SIMPLE_V2,
                          Destination={"ToAddresses": ["bounce@simulator.amazonses.com"]})["MessageId"]

    # The SNS-format topic: Send and Delivery of `ok`, Send of `bounced`, in SNS envelopes, signed.
    def sns_events():
        out = []
        for h, b in rx.bodies("/sns"):
            env = json.loads(b)
            out.append((h, b, env, json.loads(env["Message"])))
        return out
    wait_for(lambda: {(e["eventType"], e["mail"]["messageId"]) for *_, e in sns_events()} >=
             {("Send", ok), ("Delivery", ok), ("Send", bounced)}, what="SEND and DELIVERY at the SNS topic")
    for h, body, env, ev in sns_events():
        assert env["Type"] == "Notification" and env["TopicArn"] == SNS_ARN
        assert h["x-amz-sns-message-type"] == "Notification" and h["x-amz-sns-topic-arn"] == SNS_ARN
        assert ev["eventType"] in ("Send", "Delivery"), ev
        assert ev["mail"]["tags"]["ses:configuration-set"] == ["pub"]
        t, v1 = dict(p.split("=", 1) for p in h["x-weir-signature"].split(",")).values()
        want = hmac.new(SECRET.encode(), f"{t}.".encode() + body.encode(), hashlib.sha256).hexdigest()
        assert hmac.compare_digest(v1, want), "signature does not verify"
        assert abs(int(t) - time.time()) < 120
    # The generic topic: only the Bounce of `bounced` (not of `unset`, which named no set).
    wait_for(lambda: rx.bodies("/generic"), what="the bounce at the generic topic")
    time.sleep(1.0)
    generic = [json.loads(b) for _, b in rx.bodies("/generic")]
    assert [(g["event"], g["message_id"]) for g in generic] == [("bounce", bounced)]
    assert generic[0]["recipients"] == ["bounce@simulator.amazonses.com"]
    assert generic[0]["bounce_type"] == "Permanent" and generic[0]["configuration_set"] == "pub"
    assert "x-weir-signature" not in {k.lower() for k in rx.bodies("/generic")[0][0]}
    # The disabled destination got nothing.
    assert rx.bodies("/ses") == []
    # HTTPS, with the endpoint's own CA: the Bounce as SES JSON.
    tls = wait_for(lambda: rx_tls.bodies("/tls"), what="the bounce over HTTPS")
    ev = json.loads(tls[0][1])
    assert ev["eventType"] == "Bounce" and ev["mail"]["messageId"] == bounced
    assert all(unset not in b for _, b in rx.bodies("/sns") + rx.bodies("/generic") + rx_tls.bodies("/tls"))


def test_rendering_failure_reaches_its_destination(published):
    w, rx, rx_tls, _ = published
    a = w.account()
    a.verify("acme.test")
    ses = a.client()
    ses.create_configuration_set(ConfigurationSet={"Name": "render"})
    ses.create_configuration_set_event_destination(
        ConfigurationSetName="render",
        EventDestination={"Name": "rf", "Enabled": True, "MatchingEventTypes": ["renderingFailure"],
                          "SNSDestination": {"TopicARN": TLS_ARN}})
    d = ses.describe_configuration_set(ConfigurationSetName="render", ConfigurationSetAttributeNames=["eventDestinations"])
    assert d["EventDestinations"] == [{"Name": "rf", "Enabled": True, "MatchingEventTypes": ["renderingFailure"],
                                       "SNSDestination": {"TopicARN": TLS_ARN}}]
    ses.create_template(Template={"TemplateName": "needs-x", "SubjectPart": "{{x}}", "TextPart": "t"})
    mid = ses.send_templated_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                                   Template="needs-x", TemplateData="{}", ConfigurationSetName="render")["MessageId"]
    got = wait_for(lambda: [json.loads(b) for _, b in rx_tls.bodies("/tls") if mid in b], what="Rendering Failure")
    assert got[0]["eventType"] == "Rendering Failure"
    assert got[0]["failure"]["templateName"] == "needs-x"


def test_events_are_retried_until_a_down_endpoint_comes_back(published):
    w, _, _, late_port = published
    a = w.account()
    a.verify("acme.test")
    v2 = a.client("sesv2")
    v2.create_configuration_set(ConfigurationSetName="late")
    v2.create_configuration_set_event_destination(
        ConfigurationSetName="late", EventDestinationName="late",
        EventDestination=sns_dest("arn:aws:sns:us-east-1:000000000000:late", ["SEND"]))
    mid = v2.send_email(FromEmailAddress="a@acme.test", ConfigurationSetName="late", Content=SIMPLE_V2,
                        Destination={"ToAddresses": ["success@simulator.amazonses.com"]})["MessageId"]
    time.sleep(2.5)  # several attempts fail: nothing listens yet
    rx = Receiver(port=late_port)
    try:
        got = wait_for(lambda: rx.bodies("/late"), timeout=40, what="the event after the endpoint came up")
        ev = json.loads(got[0][1])
        assert ev["eventType"] == "Send" and ev["mail"]["messageId"] == mid
        ids = {h["x-weir-event-id"] for h, _ in rx.bodies("/late")}
        assert len(ids) == 1
    finally:
        rx.stop()
