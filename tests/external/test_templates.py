"""SES templates through boto3 and aws-cli: v1 Create/Update/Get/List/Delete/TestRenderTemplate,
SendTemplatedEmail and SendBulkTemplatedEmail; v2 EmailTemplate CRUD, TestRenderEmailTemplate,
SendEmail with Template content and SendBulkEmail."""

import email
import email.policy
import json
import sqlite3

import pytest
from botocore.exceptions import ClientError
from conftest import events, wait_for


@pytest.fixture
def acct(acct):
    """The sandbox account, with room to send several messages a second."""
    acct.quota("us-east-1", "--max-rate", "1000", "--burst-seconds", "1")
    return acct


def code(e):
    return e.value.response["Error"]["Code"]


def message(e):
    return e.value.response["Error"]["Message"]


def spooled(weir, message_id):
    """The stored MIME of a message, parsed, or None."""
    db = sqlite3.connect(f"file:{weir.data_dir / 'weir.db'}?mode=ro", uri=True)
    row = db.execute("SELECT body FROM messages WHERE id = ?", (message_id,)).fetchone()
    return email.message_from_bytes(row[0], policy=email.policy.default) if row else None


def parts(msg):
    """(text, html) bodies of a parsed message."""
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    return (text.get_content() if text else None, html.get_content() if html else None)


def test_v1_template_lifecycle(acct):
    ses = acct.client()
    ses.create_template(Template={"TemplateName": "welcome", "SubjectPart": "Hi {{name}}",
                                  "TextPart": "Hello {{name}}", "HtmlPart": "<p>Hello {{name}}</p>"})
    t = ses.get_template(TemplateName="welcome")["Template"]
    assert t == {"TemplateName": "welcome", "SubjectPart": "Hi {{name}}", "TextPart": "Hello {{name}}",
                 "HtmlPart": "<p>Hello {{name}}</p>"}
    with pytest.raises(ClientError) as e:
        ses.create_template(Template={"TemplateName": "welcome", "SubjectPart": "x"})
    assert code(e) == "AlreadyExists"
    ses.update_template(Template={"TemplateName": "welcome", "SubjectPart": "Welcome {{name}}"})
    assert ses.get_template(TemplateName="welcome")["Template"]["SubjectPart"] == "Welcome {{name}}"
    ses.create_template(Template={"TemplateName": "another", "SubjectPart": "x"})
    listed = ses.list_templates()["TemplatesMetadata"]
    assert [t["Name"] for t in listed] == ["another", "welcome"]
    assert all(t["CreatedTimestamp"].year >= 2024 for t in listed)
    page = ses.list_templates(MaxItems=1)
    assert len(page["TemplatesMetadata"]) == 1 and page["NextToken"]
    assert ses.list_templates(NextToken=page["NextToken"])["TemplatesMetadata"][0]["Name"] == "welcome"
    ses.delete_template(TemplateName="another")
    with pytest.raises(ClientError) as e:
        ses.get_template(TemplateName="another")
    assert (code(e), message(e)) == ("TemplateDoesNotExist", "Template another does not exist.")
    with pytest.raises(ClientError) as e:
        ses.update_template(Template={"TemplateName": "nosuch", "SubjectPart": "x"})
    assert code(e) == "TemplateDoesNotExist"


def test_v1_invalid_template_is_refused(acct):
    with pytest.raises(ClientError) as e:
        acct.client().create_template(Template={"TemplateName": "broken", "SubjectPart": "{{#if x}}open"})
    assert code(e) == "InvalidTemplate" and "broken" in message(e)
    with pytest.raises(ClientError) as e:
        acct.client().create_template(Template={"TemplateName": "bad name!", "SubjectPart": "x"})
    assert code(e) == "InvalidTemplate" or code(e) == "InvalidParameterValue"


RENDER_CASES = [
    ("variable", "Hi {{name}}", {"name": "Ann"}, "Hi Ann"),
    ("nested object", "{{user.address.city}}", {"user": {"address": {"city": "Oslo"}}}, "Oslo"),
    ("if true", "{{#if vip}}VIP{{else}}regular{{/if}}", {"vip": True}, "VIP"),
    ("if false", "{{#if vip}}VIP{{else}}regular{{/if}}", {"vip": False}, "regular"),
    ("if absent", "{{#if vip}}VIP{{else}}regular{{/if}}", {}, "regular"),
    ("each", "{{#each items}}[{{this}}]{{/each}}", {"items": ["a", "b", "c"]}, "[a][b][c]"),
    ("each of objects", "{{#each items}}{{name}}={{qty}};{{/each}}", {"items": [{"name": "x", "qty": 2}]}, "x=2;"),
    ("number", "{{n}} items", {"n": 3}, "3 items"),
    ("unicode", "Grüße {{name}}", {"name": "Zoë"}, "Grüße Zoë"),
]


@pytest.mark.parametrize("name,subject,data,expected", RENDER_CASES, ids=[c[0] for c in RENDER_CASES])
def test_rendering_table(acct, name, subject, data, expected):
    ses = acct.client()
    tname = "r" + str(abs(hash(name)))[:10]
    ses.create_template(Template={"TemplateName": tname, "SubjectPart": subject, "TextPart": "t"})
    mime = ses.test_render_template(TemplateName=tname, TemplateData=json.dumps(data))["RenderedTemplate"]
    msg = email.message_from_string(mime, policy=email.policy.default)
    assert msg["Subject"] == expected


def test_html_part_escapes_and_triple_braces_do_not(acct):
    v2 = acct.client("sesv2")
    v2.create_email_template(TemplateName="esc", TemplateContent={
        "Subject": "{{v}}", "Text": "{{v}}", "Html": "<p>{{v}}</p><p>{{{v}}}</p>"})
    mime = v2.test_render_email_template(TemplateName="esc", TemplateData='{"v": "<b>&</b>"}')["RenderedTemplate"]
    text, html = parts(email.message_from_string(mime, policy=email.policy.default))
    assert text.strip() == "<b>&</b>"
    assert "<p>&lt;b&gt;&amp;&lt;/b&gt;</p><p><b>&</b></p>" in html


def test_test_render_errors(acct):
    ses = acct.client()
    ses.create_template(Template={"TemplateName": "needs", "SubjectPart": "Hi {{name}}"})
    with pytest.raises(ClientError) as e:
        ses.test_render_template(TemplateName="needs", TemplateData="{}")
    assert (code(e), message(e)) == ("MissingRenderingAttribute",
                                     "Attribute 'name' is not present in the rendering data.")
    with pytest.raises(ClientError) as e:
        ses.test_render_template(TemplateName="needs", TemplateData="{not json")
    assert code(e) == "InvalidRenderingParameter"
    with pytest.raises(ClientError) as e:
        ses.test_render_template(TemplateName="nosuch", TemplateData="{}")
    assert code(e) == "TemplateDoesNotExist"


def test_send_templated_email_spools_the_rendered_message(weir, acct):
    ses = acct.client()
    ses.create_template(Template={"TemplateName": "order", "SubjectPart": "Order {{id}}",
                                  "TextPart": "{{#each lines}}{{sku}} x{{qty}}\n{{/each}}",
                                  "HtmlPart": "<h1>{{customer.name}}</h1>"})
    data = {"id": "A-17", "lines": [{"sku": "tea", "qty": 2}], "customer": {"name": "Ann"}}
    r = ses.send_templated_email(Source="shop@acme.test", Destination={"ToAddresses": ["ann@acme.test"]},
                                 Template="order", TemplateData=json.dumps(data))
    msg = spooled(weir, r["MessageId"])
    assert msg["Subject"] == "Order A-17" and msg["From"] == "shop@acme.test" and msg["To"] == "ann@acme.test"
    text, html = parts(msg)
    assert text.strip() == "tea x2" and "<h1>Ann</h1>" in html
    with pytest.raises(ClientError) as e:
        ses.send_templated_email(Source="shop@acme.test", Destination={"ToAddresses": ["ann@acme.test"]},
                                 Template="nosuch", TemplateData="{}")
    assert (code(e), message(e)) == ("TemplateDoesNotExist", "Template nosuch does not exist.")


def test_missing_variable_is_a_rendering_failure_event_not_an_error(weir, acct):
    ses = acct.client()
    ses.create_template(Template={"TemplateName": "greet", "SubjectPart": "Hi {{firstName}}", "TextPart": "x"})
    before = ses.get_send_quota()["SentLast24Hours"]
    r = ses.send_templated_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                                 Template="greet", TemplateData='{"lastName": "Doe"}')
    mid = r["MessageId"]
    assert spooled(weir, mid) is None, "a message that could not be rendered must not be queued"
    assert ses.get_send_quota()["SentLast24Hours"] == before
    ev = wait_for(lambda: [e for e in events(weir, "Rendering Failure") if e["mail"]["messageId"] == mid],
                  what="the Rendering Failure event")[0]
    assert ev["failure"] == {"templateName": "greet",
                             "errorMessage": "Attribute 'firstName' is not present in the rendering data."}
    assert ev["mail"]["source"] == "a@acme.test" and ev["mail"]["region"] == "us-east-1"


def test_send_bulk_templated_email_mixed_results(weir, acct):
    ses = acct.client()
    ses.create_template(Template={"TemplateName": "bulk1", "SubjectPart": "Hi {{name}} from {{shop}}",
                                  "TextPart": "x"})
    dests = [
        {"Destination": {"ToAddresses": ["ann@acme.test"]}, "ReplacementTemplateData": '{"name": "Ann"}'},
        {"Destination": {"ToAddresses": ["bob@acme.test"]}},  # default data only
        {"Destination": {"ToAddresses": ["eve@unverified.test"]}, "ReplacementTemplateData": '{"name": "Eve"}'},
        {"Destination": {"ToAddresses": ["cy@acme.test"]}, "ReplacementTemplateData": "{broken"},
    ]
    r = ses.send_bulk_templated_email(Source="shop@acme.test", Template="bulk1",
                                      DefaultTemplateData='{"name": "friend", "shop": "Acme"}', Destinations=dests)
    st = r["Status"]
    assert [s["Status"] for s in st] == ["Success", "Success", "MessageRejected", "InvalidParameterValue"]
    assert spooled(weir, st[0]["MessageId"])["Subject"] == "Hi Ann from Acme"
    assert spooled(weir, st[1]["MessageId"])["Subject"] == "Hi friend from Acme"
    assert "unverified.test" in st[2]["Error"]
    with pytest.raises(ClientError) as e:
        ses.send_bulk_templated_email(Source="shop@acme.test", Template="nosuch", DefaultTemplateData="{}",
                                      Destinations=dests[:1])
    assert code(e) == "TemplateDoesNotExist"


def test_v2_email_template_lifecycle(acct):
    v2 = acct.client("sesv2")
    v2.create_email_template(TemplateName="v2t", TemplateContent={"Subject": "S {{a}}", "Text": "T", "Html": "<b>H</b>"})
    g = v2.get_email_template(TemplateName="v2t")
    assert g["TemplateName"] == "v2t" and g["TemplateContent"] == {"Subject": "S {{a}}", "Text": "T", "Html": "<b>H</b>"}
    with pytest.raises(ClientError) as e:
        v2.create_email_template(TemplateName="v2t", TemplateContent={"Subject": "x"})
    assert code(e) == "AlreadyExistsException"
    v2.update_email_template(TemplateName="v2t", TemplateContent={"Subject": "New {{a}}"})
    assert v2.get_email_template(TemplateName="v2t")["TemplateContent"] == {"Subject": "New {{a}}"}
    names = [t["TemplateName"] for t in v2.list_email_templates()["TemplatesMetadata"]]
    assert "v2t" in names
    mime = v2.test_render_email_template(TemplateName="v2t", TemplateData='{"a": "1"}')["RenderedTemplate"]
    assert "Subject: New 1" in mime
    v2.delete_email_template(TemplateName="v2t")
    with pytest.raises(ClientError) as e:
        v2.get_email_template(TemplateName="v2t")
    assert code(e) == "NotFoundException" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as e:
        v2.delete_email_template(TemplateName="v2t")
    assert code(e) == "NotFoundException"


def test_v2_send_email_with_stored_and_inline_templates(weir, acct):
    v2 = acct.client("sesv2")
    v2.create_email_template(TemplateName="stored", TemplateContent={"Subject": "Stored {{x}}", "Text": "t {{x}}"})
    r = v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                      Content={"Template": {"TemplateName": "stored", "TemplateData": '{"x": "one"}'}})
    assert spooled(weir, r["MessageId"])["Subject"] == "Stored one"
    r = v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                      Content={"Template": {"TemplateContent": {"Subject": "Inline {{x}}", "Text": "t"},
                                            "TemplateData": '{"x": "two"}',
                                            "Headers": [{"Name": "X-Campaign", "Value": "c1"}]}})
    msg = spooled(weir, r["MessageId"])
    assert msg["Subject"] == "Inline two" and msg["X-Campaign"] == "c1"
    arn = "arn:aws:ses:us-east-1:123456789012:template/stored"
    r = v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                      Content={"Template": {"TemplateArn": arn, "TemplateData": '{"x": "three"}'}})
    assert spooled(weir, r["MessageId"])["Subject"] == "Stored three"


def test_v2_send_bulk_email_fifty_destinations_with_mixed_results(weir, acct):
    v2 = acct.client("sesv2")
    v2.create_email_template(TemplateName="b50", TemplateContent={"Subject": "#{{n}} for {{who}}", "Text": "t"})
    entries = []
    for n in range(50):
        rcpt = f"r{n}@acme.test"
        if n % 10 == 3:
            rcpt = f"r{n}@elsewhere.test"  # sandbox: not verified
        if n % 10 == 7:
            rcpt = "not an address"
        entries.append({"Destination": {"ToAddresses": [rcpt]},
                        "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": json.dumps({"n": n})}},
                        "ReplacementTags": [{"Name": "n", "Value": str(n)}]})
    r = v2.send_bulk_email(FromEmailAddress="a@acme.test", DefaultEmailTags=[{"Name": "campaign", "Value": "fifty"}],
                           DefaultContent={"Template": {"TemplateName": "b50", "TemplateData": '{"who": "you"}'}},
                           BulkEmailEntries=entries)
    res = r["BulkEmailEntryResults"]
    assert len(res) == 50
    for n, e in enumerate(res):
        want = {3: "MESSAGE_REJECTED", 7: "INVALID_PARAMETER"}.get(n % 10, "SUCCESS")
        assert e["Status"] == want, (n, e)
        if want == "SUCCESS":
            assert spooled(weir, e["MessageId"])["Subject"] == f"#{n} for you"
    db = sqlite3.connect(f"file:{weir.data_dir / 'weir.db'}?mode=ro", uri=True)
    tags = json.loads(db.execute("SELECT tags FROM messages WHERE id = ?", (res[0]["MessageId"],)).fetchone()[0])
    assert {"Name": "campaign", "Value": "fifty"} in tags and {"Name": "n", "Value": "0"} in tags
    with pytest.raises(ClientError) as e:
        v2.send_bulk_email(FromEmailAddress="a@acme.test",
                           DefaultContent={"Template": {"TemplateName": "b50", "TemplateData": "{}"}},
                           BulkEmailEntries=entries + entries[:1])
    assert code(e) == "BadRequestException" and "50" in message(e)


def test_aws_cli_templates(acct):
    r = acct.aws("ses", "create-template", "--template",
                 json.dumps({"TemplateName": "cli", "SubjectPart": "Hi {{n}}", "TextPart": "x"}))
    assert r.returncode == 0, r.stderr
    r = acct.aws("sesv2", "list-email-templates")
    assert r.returncode == 0, r.stderr
    assert "cli" in [t["TemplateName"] for t in json.loads(r.stdout)["TemplatesMetadata"]]
    r = acct.aws("ses", "test-render-template", "--template-name", "cli", "--template-data", '{"n": "x"}')
    assert r.returncode == 0 and "Subject: Hi x" in json.loads(r.stdout)["RenderedTemplate"], r.stderr
