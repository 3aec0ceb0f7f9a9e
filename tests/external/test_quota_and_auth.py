"""Quota refusals, authentication failures and durability, as botocore and aws-cli see them."""

import datetime
import json
import signal
import threading
import time

import botocore.auth
import pytest
from botocore.exceptions import ClientError

from test_delivery import urlopen_admin

MSG = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}


def err(e: ClientError):
    return e.response["Error"]["Code"], e.response["Error"]["Message"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def send(ses, to=("b@acme.test",)):
    return ses.send_email(Source="a@acme.test", Destination={"ToAddresses": list(to)}, Message=MSG)


def test_rate_one_per_second(acct):
    ses = acct.client()
    send(ses)
    with pytest.raises(ClientError) as e:
        send(ses)
    assert err(e.value) == ("Throttling", "Maximum sending rate exceeded.", 400)
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    assert ses.get_send_quota()["SentLast24Hours"] == 1.0, "a refused send is not charged"
    time.sleep(1.05)
    send(ses)
    # Ten recipients at 1/s: accepted, then ~10 s of debt.
    time.sleep(1.05)
    send(ses, [f"r{i}@acme.test" for i in range(10)])
    with pytest.raises(ClientError) as e:
        send(ses)
    assert int(e.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 9


def test_sdk_default_retries_get_through_a_rate_limit(acct):
    # botocore's own retry policy (legacy: 5 attempts with backoff) rides out a 1/s throttle.
    ses = acct.client(retries=None)
    for _ in range(3):
        send(ses)
    assert ses.get_send_quota()["SentLast24Hours"] == 3.0


def test_daily_quota_200(acct):
    # The sandbox's 200 per 24 h, reached quickly: a 250-second burst lets four 50-recipient
    # messages through at once (rate stays 1/s).
    acct.quota("us-east-1", "--burst-seconds", "250")
    ses = acct.client()
    for batch in range(4):
        send(ses, [f"r{batch}-{i}@acme.test" for i in range(50)])
    assert ses.get_send_quota() | {"ResponseMetadata": None} == {
        "Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 200.0, "ResponseMetadata": None}
    with pytest.raises(ClientError) as e:
        send(ses)
    assert err(e.value) == ("Throttling", "Daily message quota exceeded.", 400)
    assert int(e.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) > 86_000
    v2 = acct.client("sesv2")
    with pytest.raises(ClientError) as e:
        v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                      Content={"Simple": MSG})
    assert err(e.value) == ("LimitExceededException", "Daily message quota exceeded.", 400)
    r = acct.aws("ses", "send-email", "--from", "a@acme.test", "--destination", "ToAddresses=b@acme.test",
                 "--message", "Subject={Data=hi},Body={Text={Data=hello}}")
    # aws-cli prints "(reached max retries: N)" for retryable errors.
    assert "An error occurred (Throttling) when calling the SendEmail operation" in r.stderr
    assert r.stderr.strip().endswith(": Daily message quota exceeded.")
    # Each refusal is counted by reason in /metrics: v1, v2 and every attempt of aws-cli's.
    text = urlopen_admin(acct.weir, "/metrics")
    line = f'weir_quota_refusals_total{{account="{acct.name}",region="us-east-1",reason="daily_quota"}} '
    counted = [int(l[len(line):]) for l in text.splitlines() if l.startswith(line)]
    assert counted and counted[0] >= 3, text


def test_v2_rate_is_429(acct):
    v2 = acct.client("sesv2")
    v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]}, Content={"Simple": MSG})
    with pytest.raises(ClientError) as e:
        v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                      Content={"Simple": MSG})
    assert err(e.value) == ("TooManyRequestsException", "Maximum sending rate exceeded.", 429)


def test_production_lifts_recipient_rule(acct):
    acct.quota("us-east-1", "--production", "--max-24h", "50000", "--max-rate", "14")
    ses = acct.client()
    send(ses, ["anyone@example.net"])
    q = ses.get_send_quota()
    assert (q["Max24HourSend"], q["MaxSendRate"]) == (50000.0, 14.0)
    acct.quota("us-east-1", "--max-24h", "-1")
    assert ses.get_send_quota()["Max24HourSend"] == -1.0


def test_unknown_key(acct):
    ses = acct.client(key="AKIAUNKNOWN000000000")
    with pytest.raises(ClientError) as e:
        ses.get_send_quota()
    assert err(e.value) == ("InvalidClientTokenId", "The security token included in the request is invalid.", 403)
    with pytest.raises(ClientError) as e:
        acct.client("sesv2", key="AKIAUNKNOWN000000000").get_account()
    assert err(e.value)[0] == "UnrecognizedClientException" and err(e.value)[2] == 403


def test_bad_signature(acct):
    with pytest.raises(ClientError) as e:
        acct.client(secret="not-the-secret").get_send_quota()
    code, message, status = err(e.value)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert message.startswith("The request signature we calculated does not match the signature you provided.")
    with pytest.raises(ClientError) as e:
        acct.client("sesv2", secret="not-the-secret").get_account()
    assert err(e.value)[:1] + err(e.value)[2:] == ("InvalidSignatureException", 403)
    env_bad = acct.aws("ses", "get-send-quota")
    assert env_bad.returncode == 0


def test_expired_signature(acct, monkeypatch):
    late = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=6)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: late)
    with pytest.raises(ClientError) as e:
        acct.client().get_send_quota()
    code, message, status = err(e.value)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert message.startswith(f"Signature expired: {late.strftime('%Y%m%dT%H%M%SZ')} is now earlier than ")
    assert message.endswith(" - 5 min.)")
    with pytest.raises(ClientError) as e:
        acct.client("sesv2").get_account()
    assert err(e.value)[0] == "InvalidSignatureException" and "Signature expired" in err(e.value)[1]


def test_restart_keeps_sent_last_24_hours(fresh_weir):
    a = fresh_weir.account()
    a.verify("acme.test")
    a.quota("us-east-1", "--max-rate", "100")
    ses = a.client()
    for i in range(3):
        send(ses, [f"x{i}@acme.test", f"y{i}@acme.test"])
    assert ses.get_send_quota()["SentLast24Hours"] == 6.0
    fresh_weir.stop()
    fresh_weir.start()
    assert a.client().get_send_quota()["SentLast24Hours"] == 6.0


def test_kill_9_after_message_ids_were_returned(fresh_weir):
    a = fresh_weir.account()
    a.verify("acme.test")
    a.quota("us-east-1", "--production", "--max-24h", "-1", "--max-rate", "-1")
    acked, stop = [], threading.Event()

    def worker(n):
        ses = a.client()
        i = 0
        while not stop.is_set():
            try:
                acked.append(send(ses, [f"w{n}-{i}@acme.test"])["MessageId"])
            except Exception:
                return
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(2)
    fresh_weir.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 20
    fresh_weir.start()
    spooled = {m["message_id"] for m in json.loads(fresh_weir.cli("spool", "list", "--json"))}
    lost = [m for m in acked if m not in spooled]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages missing after kill -9"
    assert a.client().get_send_quota()["SentLast24Hours"] == float(len(spooled))
