"""SES v2 (REST/JSON) through boto3 and aws-cli."""

import json

import pytest
from botocore.exceptions import ClientError
from conftest import events, wait_for


def err(e: ClientError):
    return e.response["Error"]["Code"], e.response["Error"]["Message"], e.response["ResponseMetadata"]["HTTPStatusCode"]


SIMPLE = {"Simple": {"Subject": {"Data": "hi"}, "Body": {"Text": {"Data": "hello"}}}}


def test_get_account_and_sending_attributes(acct):
    v2 = acct.client("sesv2")
    a = v2.get_account()
    assert a["SendQuota"] == {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 0.0}
    assert a["ProductionAccessEnabled"] is False and a["SendingEnabled"] is True
    assert a["EnforcementStatus"] == "HEALTHY"
    v2.put_account_sending_attributes(SendingEnabled=False)
    assert v2.get_account()["SendingEnabled"] is False
    with pytest.raises(ClientError) as e:
        v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]}, Content=SIMPLE)
    assert err(e.value)[0] == "SendingPausedException"
    v2.put_account_sending_attributes(SendingEnabled=True)
    v2.put_account_suppression_attributes(SuppressedReasons=["BOUNCE"])
    assert v2.get_account()["SuppressionAttributes"]["SuppressedReasons"] == ["BOUNCE"]


def test_send_simple_and_raw(acct):
    v2 = acct.client("sesv2")
    acct.quota("us-east-1", "--burst-seconds", "10")
    r = v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]}, Content=SIMPLE,
                      EmailTags=[{"Name": "k", "Value": "v"}])
    assert r["MessageId"].endswith("-000000")
    raw = b"From: a@acme.test\r\nTo: b@acme.test\r\nSubject: raw\r\n\r\nhello\r\n"
    r = v2.send_email(Content={"Raw": {"Data": raw}})
    assert r["MessageId"]
    assert v2.get_account()["SendQuota"]["SentLast24Hours"] == 2.0
    with pytest.raises(ClientError) as e:
        v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                      Content={"Template": {"TemplateName": "t1", "TemplateData": "{}"}})
    assert err(e.value) == ("NotFoundException", "Template t1 does not exist.", 404)
    with pytest.raises(ClientError) as e:
        v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["nobody@else.test"]}, Content=SIMPLE)
    assert err(e.value) == ("MessageRejected",
                            "Email address is not verified. The following identities failed the check in region US-EAST-1: nobody@else.test",
                            400)


def test_email_identities(acct):
    v2 = acct.client("sesv2")
    r = v2.create_email_identity(EmailIdentity="v2sender@example.com")
    assert r["IdentityType"] == "EMAIL_ADDRESS" and r["VerifiedForSendingStatus"] is False
    assert v2.create_email_identity(EmailIdentity="example.org")["IdentityType"] == "DOMAIN"
    with pytest.raises(ClientError) as e:
        v2.create_email_identity(EmailIdentity="example.org")
    assert err(e.value)[0] == "AlreadyExistsException"
    g = v2.get_email_identity(EmailIdentity="v2sender@example.com")
    assert g["VerificationStatus"] == "PENDING" and g["IdentityType"] == "EMAIL_ADDRESS"
    assert v2.get_email_identity(EmailIdentity="acme.test")["VerifiedForSendingStatus"] is True
    names = {i["IdentityName"]: i for i in v2.list_email_identities()["EmailIdentities"]}
    assert set(names) == {"acme.test", "v2sender@example.com", "example.org"}
    assert names["acme.test"]["VerificationStatus"] == "SUCCESS"
    page = v2.list_email_identities(PageSize=2)
    assert len(page["EmailIdentities"]) == 2
    rest = v2.list_email_identities(PageSize=2, NextToken=page["NextToken"])
    assert len(rest["EmailIdentities"]) == 1 and "NextToken" not in rest
    v2.delete_email_identity(EmailIdentity="v2sender@example.com")
    with pytest.raises(ClientError) as e:
        v2.get_email_identity(EmailIdentity="v2sender@example.com")
    assert err(e.value)[0] == "NotFoundException" and err(e.value)[2] == 404
    with pytest.raises(ClientError) as e:
        v2.list_email_identities(NextToken="garbage")
    assert err(e.value)[0] == "InvalidNextTokenException"


def test_suppression_list(acct):
    v2 = acct.client("sesv2")
    v2.put_suppressed_destination(EmailAddress="bad@acme.test", Reason="BOUNCE")
    v2.put_suppressed_destination(EmailAddress="angry@acme.test", Reason="COMPLAINT")
    g = v2.get_suppressed_destination(EmailAddress="bad@acme.test")["SuppressedDestination"]
    assert g["EmailAddress"] == "bad@acme.test" and g["Reason"] == "BOUNCE"
    assert g["LastUpdateTime"].year >= 2024
    bounces = v2.list_suppressed_destinations(Reasons=["BOUNCE"])["SuppressedDestinationSummaries"]
    assert [s["EmailAddress"] for s in bounces] == ["bad@acme.test"]
    everything = v2.list_suppressed_destinations()["SuppressedDestinationSummaries"]
    assert {s["EmailAddress"] for s in everything} == {"bad@acme.test", "angry@acme.test"}
    # A send to a suppressed address is accepted (and charged) but not queued for delivery.
    r = v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["bad@acme.test"]}, Content=SIMPLE)
    spool = json.loads(acct.weir.cli("spool", "list", "--json"))
    m = [m for m in spool if m["message_id"] == r["MessageId"]][0]
    assert m["recipients"] == [{"address": "bad@acme.test", "state": "suppressed"}]
    v2.delete_suppressed_destination(EmailAddress="bad@acme.test")
    with pytest.raises(ClientError) as e:
        v2.get_suppressed_destination(EmailAddress="bad@acme.test")
    assert err(e.value)[0] == "NotFoundException"
    with pytest.raises(ClientError) as e:
        v2.delete_suppressed_destination(EmailAddress="bad@acme.test")
    assert err(e.value)[0] == "NotFoundException"


def test_aws_cli_v2(acct):
    r = acct.aws("sesv2", "get-account")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["SendQuota"]["Max24HourSend"] == 200.0
    r = acct.aws("sesv2", "send-email", "--from-email-address", "a@acme.test", "--destination",
                 "ToAddresses=b@acme.test", "--content", "Simple={Subject={Data=Hi},Body={Text={Data=Hello}}}")
    assert r.returncode == 0, r.stderr
    r = acct.aws("sesv2", "create-email-identity", "--email-identity", "cli@example.com")
    assert r.returncode == 0, r.stderr
    r = acct.aws("sesv2", "get-email-identity", "--email-identity", "cli@example.com")
    assert json.loads(r.stdout)["VerificationStatus"] == "PENDING"
    r = acct.aws("sesv2", "get-email-identity", "--email-identity", "missing@example.com")
    assert r.returncode != 0 and "(NotFoundException)" in r.stderr
    r = acct.aws("sesv2", "put-suppressed-destination", "--email-address", "x@acme.test", "--reason", "BOUNCE")
    assert r.returncode == 0, r.stderr
    r = acct.aws("sesv2", "list-suppressed-destinations", "--reasons", "BOUNCE", "COMPLAINT", "--page-size", "10")
    assert [s["EmailAddress"] for s in json.loads(r.stdout)["SuppressedDestinationSummaries"]] == ["x@acme.test"]


def test_send_to_a_suppressed_address_emits_an_on_account_suppression_list_bounce(acct):
    """As SES: the send is accepted, the suppressed address is not sent to, and a Bounce event
    (Permanent, OnAccountSuppressionList) says so; the other recipient is queued."""
    v2 = acct.client("sesv2")
    v2.put_suppressed_destination(EmailAddress="gone@acme.test", Reason="BOUNCE")
    r = v2.send_email(FromEmailAddress="a@acme.test", Content=SIMPLE,
                      Destination={"ToAddresses": ["gone@acme.test", "here@acme.test"]})
    bounces = wait_for(lambda: [e for e in events(acct.weir, "Bounce") if e["mail"]["messageId"] == r["MessageId"]],
                       what="the bounce event")
    b = bounces[0]["bounce"]
    assert (b["bounceType"], b["bounceSubType"]) == ("Permanent", "OnAccountSuppressionList"), b
    assert [x["emailAddress"] for x in b["bouncedRecipients"]] == ["gone@acme.test"]
    assert "suppression list" in b["bouncedRecipients"][0]["diagnosticCode"]
    spool = json.loads(acct.weir.cli("spool", "list", "--json"))
    m = [m for m in spool if m["message_id"] == r["MessageId"]][0]
    assert {x["address"]: x["state"] for x in m["recipients"]} == {"gone@acme.test": "suppressed",
                                                                    "here@acme.test": "queued"}
