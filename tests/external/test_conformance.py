"""Every operation weir implements, called through boto3, and its parsed response checked
against botocore's service model: required members present, each member's type right, enum
values among the model's. The model ships with boto3, so this follows SES's own definition."""

import datetime
import json

import botocore.session
import pytest

MODELS = {name: botocore.session.get_session().get_service_model(name) for name in ("ses", "sesv2")}


def check(shape, value, path, problems):
    """Append to `problems` every way `value` departs from `shape`."""
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a structure, got {type(value).__name__}")
            return
        for r in shape.required_members:
            if r not in value:
                problems.append(f"{path}.{r}: required, missing")
        for k, v in value.items():
            if k == "ResponseMetadata":
                continue
            if k not in shape.members:
                problems.append(f"{path}.{k}: not in the model")
                continue
            check(shape.members[k], v, f"{path}.{k}", problems)
    elif t == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, x in enumerate(value):
            check(shape.member, x, f"{path}[{i}]", problems)
    elif t == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map")
            return
        for k, x in value.items():
            check(shape.value, x, f"{path}[{k}]", problems)
    elif t == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r}")
        elif shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.enum}")
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {value!r}")
    elif t in ("double", "float"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{path}: expected a number, got {value!r}")
    elif t == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean, got {value!r}")
    elif t == "timestamp":
        if not isinstance(value, datetime.datetime):
            problems.append(f"{path}: expected a timestamp, got {value!r}")
    elif t == "blob":
        if not isinstance(value, (bytes, bytearray)):
            problems.append(f"{path}: expected bytes")


def conforms(service, op, response):
    shape = MODELS[service].operation_model(op).output_shape
    problems = []
    if shape is not None:
        check(shape, response, op, problems)
    assert not problems, "\n".join(problems)


def snake(op):
    return "".join("_" + c.lower() if c.isupper() else c for c in op).lstrip("_")


@pytest.fixture(scope="module")
def world(weir):
    """An account with one of everything, so every read has something to show."""
    a = weir.account()
    a.verify("acme.test")
    a.quota("us-east-1", "--max-rate", "1000", "--burst-seconds", "1")
    return a


V1_CALLS = [
    ("SendEmail", dict(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                       Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})),
    ("SendRawEmail", dict(RawMessage={"Data": b"From: a@acme.test\r\nTo: b@acme.test\r\nSubject: s\r\n\r\nb\r\n"})),
    ("CreateTemplate", dict(Template={"TemplateName": "ct", "SubjectPart": "Hi {{n}}", "TextPart": "t",
                                      "HtmlPart": "<p>h</p>"})),
    ("UpdateTemplate", dict(Template={"TemplateName": "ct", "SubjectPart": "Hello {{n}}", "TextPart": "t"})),
    ("GetTemplate", dict(TemplateName="ct")),
    ("ListTemplates", dict()),
    ("TestRenderTemplate", dict(TemplateName="ct", TemplateData='{"n": "x"}')),
    ("SendTemplatedEmail", dict(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                                Template="ct", TemplateData='{"n": "x"}')),
    ("SendBulkTemplatedEmail", dict(Source="a@acme.test", Template="ct", DefaultTemplateData='{"n": "x"}',
                                    Destinations=[{"Destination": {"ToAddresses": ["b@acme.test"]}},
                                                  {"Destination": {"ToAddresses": ["x@elsewhere.test"]}}])),
    ("CreateConfigurationSet", dict(ConfigurationSet={"Name": "cc"})),
    ("UpdateConfigurationSetSendingEnabled", dict(ConfigurationSetName="cc", Enabled=True)),
    ("PutConfigurationSetDeliveryOptions", dict(ConfigurationSetName="cc", DeliveryOptions={"TlsPolicy": "Require"})),
    ("DescribeConfigurationSet", dict(ConfigurationSetName="cc", ConfigurationSetAttributeNames=[
        "eventDestinations", "trackingOptions", "deliveryOptions", "reputationOptions"])),
    ("ListConfigurationSets", dict()),
    ("GetSendQuota", dict()),
    ("GetSendStatistics", dict()),
    ("GetAccountSendingEnabled", dict()),
    ("UpdateAccountSendingEnabled", dict(Enabled=True)),
    ("VerifyEmailIdentity", dict(EmailAddress="new@example.org")),
    ("VerifyEmailAddress", dict(EmailAddress="new2@example.org")),
    ("VerifyDomainIdentity", dict(Domain="example.org")),
    ("VerifyDomainDkim", dict(Domain="example.org")),
    ("ListIdentities", dict()),
    ("ListVerifiedEmailAddresses", dict()),
    ("GetIdentityVerificationAttributes", dict(Identities=["example.org", "new@example.org", "acme.test"])),
    ("GetIdentityDkimAttributes", dict(Identities=["example.org", "acme.test"])),
    ("SetIdentityDkimEnabled", dict(Identity="example.org", DkimEnabled=True)),
    ("SetIdentityMailFromDomain", dict(Identity="example.org", MailFromDomain="mail.example.org")),
    ("GetIdentityMailFromDomainAttributes", dict(Identities=["example.org"])),
    ("DeleteTemplate", dict(TemplateName="ct")),
    ("DeleteConfigurationSet", dict(ConfigurationSetName="cc")),
    ("DeleteIdentity", dict(Identity="new2@example.org")),
    ("DeleteVerifiedEmailAddress", dict(EmailAddress="new@example.org")),
]


def test_v1_responses_match_the_model(world):
    ses = world.client()
    for op, args in V1_CALLS:
        r = getattr(ses, snake(op))(**args)
        conforms("ses", op, r)


V2_CALLS = [
    ("GetAccount", dict()),
    ("PutAccountSendingAttributes", dict(SendingEnabled=True)),
    ("PutAccountSuppressionAttributes", dict(SuppressedReasons=["BOUNCE"])),
    ("CreateConfigurationSet", dict(ConfigurationSetName="v2c", Tags=[{"Key": "a", "Value": "b"}])),
    ("CreateEmailIdentity", dict(EmailIdentity="v2.example.net", ConfigurationSetName="v2c",
                                 Tags=[{"Key": "team", "Value": "x"}])),
    ("CreateEmailIdentity", dict(EmailIdentity="who@example.net")),
    ("GetEmailIdentity", dict(EmailIdentity="v2.example.net")),
    ("ListEmailIdentities", dict()),
    ("PutEmailIdentityDkimAttributes", dict(EmailIdentity="v2.example.net", SigningEnabled=True)),
    ("PutEmailIdentityMailFromAttributes", dict(EmailIdentity="v2.example.net", MailFromDomain="m.v2.example.net")),
    ("PutEmailIdentityConfigurationSetAttributes", dict(EmailIdentity="who@example.net", ConfigurationSetName="v2c")),
    ("PutEmailIdentityDkimSigningAttributes", dict(EmailIdentity="v2.example.net", SigningAttributesOrigin="AWS_SES")),
    ("GetConfigurationSet", dict(ConfigurationSetName="v2c")),
    ("ListConfigurationSets", dict()),
    ("PutConfigurationSetDeliveryOptions", dict(ConfigurationSetName="v2c", TlsPolicy="REQUIRE")),
    ("PutConfigurationSetSendingOptions", dict(ConfigurationSetName="v2c", SendingEnabled=True)),
    ("PutConfigurationSetReputationOptions", dict(ConfigurationSetName="v2c", ReputationMetricsEnabled=True)),
    ("PutConfigurationSetSuppressionOptions", dict(ConfigurationSetName="v2c", SuppressedReasons=["COMPLAINT"])),
    ("PutConfigurationSetTrackingOptions", dict(ConfigurationSetName="v2c", CustomRedirectDomain="t.example.net")),
    ("GetConfigurationSetEventDestinations", dict(ConfigurationSetName="v2c")),
    ("CreateEmailTemplate", dict(TemplateName="v2t", TemplateContent={"Subject": "S {{n}}", "Text": "T"})),
    ("GetEmailTemplate", dict(TemplateName="v2t")),
    ("ListEmailTemplates", dict()),
    ("UpdateEmailTemplate", dict(TemplateName="v2t", TemplateContent={"Subject": "S2 {{n}}"})),
    ("TestRenderEmailTemplate", dict(TemplateName="v2t", TemplateData='{"n": 1}')),
    ("SendEmail", dict(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                       Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}})),
    ("SendBulkEmail", dict(FromEmailAddress="a@acme.test",
                           DefaultContent={"Template": {"TemplateName": "v2t", "TemplateData": '{"n": 2}'}},
                           BulkEmailEntries=[{"Destination": {"ToAddresses": ["b@acme.test"]}},
                                             {"Destination": {"ToAddresses": ["x@elsewhere.test"]}}])),
    ("CreateContactList", dict(ContactListName="cl", Topics=[
        {"TopicName": "t", "DisplayName": "T", "DefaultSubscriptionStatus": "OPT_IN"}])),
    ("GetContactList", dict(ContactListName="cl")),
    ("ListContactLists", dict()),
    ("UpdateContactList", dict(ContactListName="cl", Description="d")),
    ("CreateContact", dict(ContactListName="cl", EmailAddress="c@acme.test", AttributesData="{}")),
    ("GetContact", dict(ContactListName="cl", EmailAddress="c@acme.test")),
    ("ListContacts", dict(ContactListName="cl")),
    ("UpdateContact", dict(ContactListName="cl", EmailAddress="c@acme.test", UnsubscribeAll=True)),
    ("TagResource", dict(ResourceArn="arn:aws:ses:us-east-1:000000000000:contact-list/cl",
                         Tags=[{"Key": "k", "Value": "v"}])),
    ("ListTagsForResource", dict(ResourceArn="arn:aws:ses:us-east-1:000000000000:contact-list/cl")),
    ("UntagResource", dict(ResourceArn="arn:aws:ses:us-east-1:000000000000:contact-list/cl", TagKeys=["k"])),
    ("PutSuppressedDestination", dict(EmailAddress="s@acme.test", Reason="BOUNCE")),
    ("GetSuppressedDestination", dict(EmailAddress="s@acme.test")),
    ("ListSuppressedDestinations", dict()),
    ("DeleteSuppressedDestination", dict(EmailAddress="s@acme.test")),
    ("DeleteContact", dict(ContactListName="cl", EmailAddress="c@acme.test")),
    ("DeleteContactList", dict(ContactListName="cl")),
    ("DeleteEmailTemplate", dict(TemplateName="v2t")),
    ("DeleteEmailIdentity", dict(EmailIdentity="who@example.net")),
    ("DeleteConfigurationSet", dict(ConfigurationSetName="v2c")),
]


def test_v2_responses_match_the_model(world):
    v2 = world.client("sesv2")
    for op, args in V2_CALLS:
        r = getattr(v2, snake(op))(**args)
        conforms("sesv2", op, r)


def test_v2_identity_keeps_tags_and_default_configuration_set(world):
    v2 = world.client("sesv2")
    v2.create_configuration_set(ConfigurationSetName="dflt")
    v2.create_email_identity(EmailIdentity="tagged.example.com", ConfigurationSetName="dflt",
                             Tags=[{"Key": "owner", "Value": "ops"}])
    g = v2.get_email_identity(EmailIdentity="tagged.example.com")
    assert g["ConfigurationSetName"] == "dflt" and g["Tags"] == [{"Key": "owner", "Value": "ops"}]
    arn = "arn:aws:ses:us-east-1:000000000000:identity/tagged.example.com"
    v2.tag_resource(ResourceArn=arn, Tags=[{"Key": "owner", "Value": "dev"}, {"Key": "cost", "Value": "7"}])
    assert v2.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "owner", "Value": "dev"},
                                                                   {"Key": "cost", "Value": "7"}]
    v2.untag_resource(ResourceArn=arn, TagKeys=["owner"])
    assert v2.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "cost", "Value": "7"}]
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.list_tags_for_resource(ResourceArn="arn:aws:ses:us-east-1:000000000000:configuration-set/nosuch")
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.create_email_identity(EmailIdentity="x.example.com", ConfigurationSetName="nosuch")


def test_identity_default_configuration_set_governs_its_mail(weir, world):
    v2 = world.client("sesv2")
    v2.create_configuration_set(ConfigurationSetName="paused-default")
    world.verify("quiet.example.com")
    v2.put_email_identity_configuration_set_attributes(EmailIdentity="quiet.example.com",
                                                       ConfigurationSetName="paused-default")
    v2.put_configuration_set_sending_options(ConfigurationSetName="paused-default", SendingEnabled=False)
    with pytest.raises(v2.exceptions.SendingPausedException):
        v2.send_email(FromEmailAddress="me@quiet.example.com", Destination={"ToAddresses": ["b@acme.test"]},
                      Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}})
    # A set named in the request wins over the identity's default.
    v2.create_configuration_set(ConfigurationSetName="open")
    r = v2.send_email(FromEmailAddress="me@quiet.example.com", Destination={"ToAddresses": ["b@acme.test"]},
                      ConfigurationSetName="open",
                      Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}})
    import sqlite3
    db = sqlite3.connect(f"file:{weir.data_dir / 'weir.db'}?mode=ro", uri=True)
    assert db.execute("SELECT configuration_set FROM messages WHERE id = ?", (r["MessageId"],)).fetchone()[0] == "open"
    v2.put_configuration_set_sending_options(ConfigurationSetName="paused-default", SendingEnabled=True)
    r = v2.send_email(FromEmailAddress="me@quiet.example.com", Destination={"ToAddresses": ["b@acme.test"]},
                      Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}})
    assert db.execute("SELECT configuration_set FROM messages WHERE id = ?",
                      (r["MessageId"],)).fetchone()[0] == "paused-default"


def test_the_checker_finds_departures():
    """The checker itself: each kind of departure is reported."""
    cases = [
        ("ses", "SendEmail", {}, "SendEmail.MessageId: required, missing"),
        ("sesv2", "SendBulkEmail", {"BulkEmailEntryResults": [{"Status": "OK"}]}, "is not one of"),
        ("sesv2", "GetAccount", {"SendingEnabled": "yes"}, "expected a boolean"),
        ("sesv2", "GetAccount", {"SendQuota": {"Max24HourSend": "200"}}, "expected a number"),
        ("sesv2", "ListContactLists", {"ContactLists": {}}, "expected a list"),
        ("sesv2", "GetContactList", {"CreatedTimestamp": 5}, "expected a timestamp"),
    ]
    for service, op, response, expected in cases:
        with pytest.raises(AssertionError) as e:
            conforms(service, op, response)
        assert expected in str(e.value), (op, str(e.value))


def test_constraint_table_matches_the_installed_botocore():
    """crates/api/src/constraints.rs is what scripts/ses-constraints.py makes of these models."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(root / "scripts" / "ses-constraints.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_validation_errors_use_ses_texts(world):
    from botocore.exceptions import ClientError
    ses, v2 = world.client(), world.client("sesv2")
    with pytest.raises(ClientError) as e:
        ses.list_identities(IdentityType="Unknown")
    assert e.value.response["Error"] == {
        "Type": "Sender", "Code": "ValidationError",
        "Message": "1 validation error detected: Value 'Unknown' at 'identityType' failed to satisfy constraint: "
                   "Member must satisfy enum value set: [Domain, EmailAddress]"}
    with pytest.raises(ClientError) as e:
        ses.send_templated_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                                 Template="t", TemplateData="x" * 262145)
    assert e.value.response["Error"]["Code"] == "ValidationError"
    assert ("at 'templateData' failed to satisfy constraint: Member must have length less than or equal to 262144"
            in e.value.response["Error"]["Message"])
    with pytest.raises(ClientError) as e:
        v2.create_contact_list(ContactListName="x", Topics=[
            {"TopicName": "a", "DisplayName": "A", "DefaultSubscriptionStatus": "SOMETIMES"}])
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    assert e.value.response["Error"]["Message"] == (
        "1 validation error detected: Value 'SOMETIMES' at 'topics.1.member.defaultSubscriptionStatus' failed to "
        "satisfy constraint: Member must satisfy enum value set: [OPT_IN, OPT_OUT]")


def test_aws_cli_runs_the_new_operations(world):
    """aws-cli (its own argument parsing and output) over configuration sets, templates, contact
    lists and tags."""
    def aws(*args):
        r = world.aws(*args)
        assert r.returncode == 0, f"aws {' '.join(args)}: {r.stderr}"
        return json.loads(r.stdout) if r.stdout.strip() else {}

    aws("sesv2", "create-configuration-set", "--configuration-set-name", "cli-set",
        "--delivery-options", "TlsPolicy=REQUIRE")
    assert aws("sesv2", "get-configuration-set", "--configuration-set-name", "cli-set")["DeliveryOptions"][
        "TlsPolicy"] == "REQUIRE"
    aws("ses", "create-configuration-set", "--configuration-set", "Name=cli-set-v1")
    names = [c["Name"] for c in aws("ses", "list-configuration-sets")["ConfigurationSets"]]
    assert "cli-set-v1" in names
    aws("sesv2", "create-email-template", "--template-name", "cli-t",
        "--template-content", json.dumps({"Subject": "Hi {{n}}", "Text": "t"}))
    r = aws("sesv2", "send-email", "--from-email-address", "a@acme.test",
            "--destination", json.dumps({"ToAddresses": ["b@acme.test"]}),
            "--content", json.dumps({"Template": {"TemplateName": "cli-t", "TemplateData": '{"n": 1}'}}),
            "--configuration-set-name", "cli-set")
    assert r["MessageId"]
    aws("sesv2", "create-contact-list", "--contact-list-name", "cli-list",
        "--topics", json.dumps([{"TopicName": "t", "DisplayName": "T", "DefaultSubscriptionStatus": "OPT_IN"}]))
    aws("sesv2", "create-contact", "--contact-list-name", "cli-list", "--email-address", "c@acme.test")
    assert aws("sesv2", "list-contacts", "--contact-list-name", "cli-list")["Contacts"][0]["EmailAddress"] == "c@acme.test"
    arn = "arn:aws:ses:us-east-1:000000000000:configuration-set/cli-set"
    aws("sesv2", "tag-resource", "--resource-arn", arn, "--tags", "Key=team,Value=core")
    assert aws("sesv2", "list-tags-for-resource", "--resource-arn", arn)["Tags"] == [{"Key": "team", "Value": "core"}]
    aws("sesv2", "delete-contact-list", "--contact-list-name", "cli-list")
    aws("sesv2", "delete-configuration-set", "--configuration-set-name", "cli-set")
