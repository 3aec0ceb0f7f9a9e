"""SES v1 (Query/XML) through boto3 and aws-cli."""

import base64
import json
import time

import pytest
from botocore.exceptions import ClientError


def err(e: ClientError):
    return e.response["Error"]["Code"], e.response["Error"]["Message"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def test_send_email_and_quota_with_boto3(acct):
    ses = acct.client()
    assert ses.get_send_quota() | {"ResponseMetadata": None} == {
        "Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 0.0, "ResponseMetadata": None}
    r = ses.send_email(
        Source="Acme <a@acme.test>",
        Destination={"ToAddresses": ["b@acme.test"], "CcAddresses": ["c@acme.test"]},
        Message={"Subject": {"Data": "Grüße ☃", "Charset": "UTF-8"},
                 "Body": {"Text": {"Data": "a&b=c+d"}, "Html": {"Data": "<b>hi</b>"}}},
        Tags=[{"Name": "campaign", "Value": "fall-2026"}],
    )
    assert r["MessageId"].endswith("-000000")
    assert ses.get_send_quota()["SentLast24Hours"] == 2.0
    spool = json.loads(acct.weir.cli("spool", "list", "--json"))
    mine = [m for m in spool if m["message_id"] == r["MessageId"]]
    assert [x["address"] for x in mine[0]["recipients"]] == ["b@acme.test", "c@acme.test"]


def test_send_raw_email(acct):
    ses = acct.client()
    mime = b"From: a@acme.test\r\nTo: b@acme.test\r\nBcc: hidden@acme.test\r\nSubject: raw\r\n\r\nhello raw\r\n"
    r = ses.send_raw_email(RawMessage={"Data": mime})
    spool = json.loads(acct.weir.cli("spool", "list", "--json"))
    m = [m for m in spool if m["message_id"] == r["MessageId"]][0]
    assert [x["address"] for x in m["recipients"]] == ["b@acme.test", "hidden@acme.test"]
    time.sleep(2.1)
    r = ses.send_raw_email(RawMessage={"Data": mime}, Destinations=["only@acme.test"], Source="a@acme.test")
    assert r["MessageId"]


def test_raw_email_errors(acct):
    ses = acct.client()
    with pytest.raises(ClientError) as e:
        ses.send_raw_email(RawMessage={"Data": b"To: b@acme.test\r\n\r\nno from\r\n"})
    assert err(e.value) == ("InvalidParameterValue", "Missing required header 'From'.", 400)
    with pytest.raises(ClientError) as e:
        ses.send_raw_email(RawMessage={"Data": b"From: a@acme.test\r\nContent-Type: multipart/mixed\r\n\r\nx\r\n"})
    assert err(e.value)[0] == "InvalidParameterValue" and "boundary" in err(e.value)[1]


def test_identities(acct):
    ses = acct.client()
    assert ses.verify_email_identity(EmailAddress="someone@elsewhere.test")["ResponseMetadata"]["HTTPStatusCode"] == 200
    token = ses.verify_domain_identity(Domain="example.org")["VerificationToken"]
    assert len(base64.b64decode(token)) == 32
    ids = ses.list_identities()["Identities"]
    assert set(ids) == {"acme.test", "someone@elsewhere.test", "example.org"}
    assert ses.list_identities(IdentityType="Domain")["Identities"] == ["acme.test", "example.org"]
    with pytest.raises(ClientError) as e:
        ses.list_identities(IdentityType="Unknown")
    assert e.value.response["Error"]["Code"] == "ValidationError"
    assert e.value.response["Error"]["Message"] == (
        "1 validation error detected: Value 'Unknown' at 'identityType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Domain, EmailAddress]")
    page = ses.list_identities(MaxItems=1)
    assert len(page["Identities"]) == 1 and page["NextToken"]
    attrs = ses.get_identity_verification_attributes(Identities=["acme.test", "someone@elsewhere.test", "nope.test"])
    va = attrs["VerificationAttributes"]
    assert va["acme.test"]["VerificationStatus"] == "Success"
    assert va["someone@elsewhere.test"]["VerificationStatus"] == "Pending"
    assert "nope.test" not in va
    ses.delete_identity(Identity="example.org")
    assert "example.org" not in ses.list_identities()["Identities"]
    # A pending (API-created) identity cannot send.
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="someone@elsewhere.test", Destination={"ToAddresses": ["b@acme.test"]},
                       Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    assert err(e.value)[0] == "MessageRejected"


def test_account_sending_enabled(acct):
    ses = acct.client()
    assert ses.get_account_sending_enabled()["Enabled"] is True
    ses.update_account_sending_enabled(Enabled=False)
    assert ses.get_account_sending_enabled()["Enabled"] is False
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                       Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    assert err(e.value)[0] == "AccountSendingPausedException"
    ses.update_account_sending_enabled(Enabled=True)
    assert ses.get_account_sending_enabled()["Enabled"] is True


def test_send_statistics(acct):
    ses = acct.client()
    ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    with pytest.raises(ClientError):
        ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["x@unverified.test"]},
                       Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    points = ses.get_send_statistics()["SendDataPoints"]  # right after: the rejection is already counted
    assert sum(p["DeliveryAttempts"] for p in points) == 1
    assert sum(p["Rejects"] for p in points) == 1
    for p in points:
        assert p["Timestamp"].minute % 15 == 0 and p["Bounces"] == 0 and p["Complaints"] == 0


def test_sandbox_rejection_exact_text(acct):
    ses = acct.client()
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["stranger@example.net"]},
                       Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    assert err(e.value) == (
        "MessageRejected",
        "Email address is not verified. The following identities failed the check in region US-EAST-1: stranger@example.net",
        400,
    )
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="Nobody <nobody@unverified.test>", Destination={"ToAddresses": ["b@acme.test"]},
                       Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    assert err(e.value)[1].endswith("US-EAST-1: Nobody <nobody@unverified.test>")
    # The mailbox simulator is always allowed.
    ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})


def test_validation_errors(acct):
    ses = acct.client()
    msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
    many = [f"r{i}@acme.test" for i in range(51)]
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="a@acme.test", Destination={"ToAddresses": many}, Message=msg)
    assert err(e.value) == ("InvalidParameterValue", "Recipient count exceeds 50.", 400)
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["not-an-address"]}, Message=msg)
    assert err(e.value) == ("InvalidParameterValue", "Missing final '@domain'", 400)
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                       Message={"Subject": {"Data": "s\r\nBcc: x@evil.test"}, "Body": {"Text": {"Data": "b"}}})
    assert err(e.value)[0] == "InvalidParameterValue" and "line break" in err(e.value)[1]
    with pytest.raises(ClientError) as e:
        ses.send_raw_email(RawMessage={"Data": b"From: a@acme.test\r\n\r\n" + b"x" * (10 * 1024 * 1024)})
    assert err(e.value)[0] == "InvalidParameterValue"
    assert err(e.value)[1].startswith("Message length is more than 10485760 bytes long")


def test_aws_cli_v1(acct):
    # One send per 10 s, so the second send below is refused however slowly aws-cli starts.
    acct.quota("us-east-1", "--max-rate", "0.1")
    r = acct.aws("ses", "get-send-quota")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"Max24HourSend": 200.0, "MaxSendRate": 0.1, "SentLast24Hours": 0.0}
    r = acct.aws("ses", "send-email", "--from", "a@acme.test", "--destination", "ToAddresses=b@acme.test",
                 "--message", "Subject={Data=hi},Body={Text={Data=hello}}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["MessageId"].endswith("-000000")
    r = acct.aws("ses", "send-email", "--from", "a@acme.test", "--destination", "ToAddresses=b@acme.test",
                 "--message", "Subject={Data=hi},Body={Text={Data=hello}}")
    assert r.returncode != 0
    assert "An error occurred (Throttling) when calling the SendEmail operation" in r.stderr
    assert r.stderr.strip().endswith(": Maximum sending rate exceeded.")
    r = acct.aws("ses", "verify-email-identity", "--email-address", "new@acme.test")
    assert r.returncode == 0, r.stderr
    r = acct.aws("ses", "list-identities")
    assert "new@acme.test" in json.loads(r.stdout)["Identities"]
    r = acct.aws("ses", "get-identity-verification-attributes", "--identities", "new@acme.test")
    assert json.loads(r.stdout)["VerificationAttributes"]["new@acme.test"]["VerificationStatus"] == "Pending"
    r = acct.aws("ses", "delete-identity", "--identity", "new@acme.test")
    assert r.returncode == 0, r.stderr
    r = acct.aws("ses", "get-send-statistics")
    assert r.returncode == 0 and json.loads(r.stdout)["SendDataPoints"]
    r = acct.aws("ses", "get-account-sending-enabled")
    assert json.loads(r.stdout)["Enabled"] is True
