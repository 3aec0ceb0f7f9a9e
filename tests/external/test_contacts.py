"""Contact lists, topics and contacts through boto3 (SES v2), and list management on sends:
RFC 8058 one-click unsubscribe headers, the unsubscribe endpoint weir serves (followed by an HTTP
client as a mailbox provider's one-click button does, and opened in headless Chromium),
`{{amazonSESUnsubscribeUrl}}`, and no delivery to contacts who unsubscribed."""

import email
import email.policy
import json
import shutil
import sqlite3
import subprocess
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from conftest import events, wait_for

TOPICS = [
    {"TopicName": "news", "DisplayName": "News", "Description": "Monthly news", "DefaultSubscriptionStatus": "OPT_IN"},
    {"TopicName": "offers", "DisplayName": "Offers", "DefaultSubscriptionStatus": "OPT_OUT"},
]


def code(e):
    return e.value.response["Error"]["Code"]


@pytest.fixture
def acct(acct):
    acct.quota("us-east-1", "--max-rate", "1000", "--burst-seconds", "1")
    return acct


def spooled(weir, message_id):
    db = sqlite3.connect(f"file:{weir.data_dir / 'weir.db'}?mode=ro", uri=True)
    row = db.execute("SELECT body FROM messages WHERE id = ?", (message_id,)).fetchone()
    states = [r[0] for r in db.execute("SELECT state FROM recipients WHERE message_id = ?", (message_id,))]
    return email.message_from_bytes(row[0], policy=email.policy.default), states


def send(v2, to, topic="news", text="Hi. Unsubscribe: {{amazonSESUnsubscribeUrl}}", lists="customers"):
    lm = {"ContactListName": lists}
    if topic:
        lm["TopicName"] = topic
    return v2.send_email(FromEmailAddress="news@acme.test", Destination={"ToAddresses": to},
                         Content={"Simple": {"Subject": {"Data": "News"}, "Body": {"Text": {"Data": text}}}},
                         ListManagementOptions=lm)["MessageId"]


def test_contact_list_lifecycle(acct):
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS, Description="All customers",
                           Tags=[{"Key": "k", "Value": "v"}])
    g = v2.get_contact_list(ContactListName="customers")
    assert g["ContactListName"] == "customers" and g["Description"] == "All customers"
    assert g["Topics"] == TOPICS and g["Tags"] == [{"Key": "k", "Value": "v"}]
    assert [l["ContactListName"] for l in v2.list_contact_lists()["ContactLists"]] == ["customers"]
    with pytest.raises(ClientError) as e:
        v2.create_contact_list(ContactListName="second")
    assert code(e) == "LimitExceededException"
    with pytest.raises(ClientError) as e:
        v2.create_contact_list(ContactListName="customers")
    assert code(e) == "AlreadyExistsException"
    v2.update_contact_list(ContactListName="customers", Topics=TOPICS[:1], Description="Changed")
    assert v2.get_contact_list(ContactListName="customers")["Topics"] == TOPICS[:1]
    with pytest.raises(ClientError) as e:
        v2.update_contact_list(ContactListName="customers",
                               Topics=[{"TopicName": "x", "DisplayName": "X", "DefaultSubscriptionStatus": "MAYBE"}])
    assert code(e) == "BadRequestException" and "[OPT_IN, OPT_OUT]" in e.value.response["Error"]["Message"]
    v2.delete_contact_list(ContactListName="customers")
    with pytest.raises(ClientError) as e:
        v2.get_contact_list(ContactListName="customers")
    assert code(e) == "NotFoundException"


def test_contact_lifecycle_and_filters(acct):
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS)
    v2.create_contact(ContactListName="customers", EmailAddress="Ann@acme.test",
                      TopicPreferences=[{"TopicName": "offers", "SubscriptionStatus": "OPT_IN"}],
                      AttributesData='{"tier": "gold"}')
    v2.create_contact(ContactListName="customers", EmailAddress="bob@acme.test")
    v2.create_contact(ContactListName="customers", EmailAddress="cy@acme.test", UnsubscribeAll=True)
    with pytest.raises(ClientError) as e:
        v2.create_contact(ContactListName="customers", EmailAddress="bob@acme.test")
    assert code(e) == "AlreadyExistsException"
    with pytest.raises(ClientError) as e:
        v2.create_contact(ContactListName="customers", EmailAddress="d@acme.test",
                          TopicPreferences=[{"TopicName": "nosuch", "SubscriptionStatus": "OPT_IN"}])
    assert code(e) == "BadRequestException"
    with pytest.raises(ClientError) as e:
        v2.create_contact(ContactListName="nolist", EmailAddress="d@acme.test")
    assert code(e) == "NotFoundException"
    c = v2.get_contact(ContactListName="customers", EmailAddress="ann@acme.test")
    assert c["EmailAddress"] == "ann@acme.test" and c["AttributesData"] == '{"tier": "gold"}'
    assert c["TopicPreferences"] == [{"TopicName": "offers", "SubscriptionStatus": "OPT_IN"}]
    assert c["TopicDefaultPreferences"] == [{"TopicName": "news", "SubscriptionStatus": "OPT_IN"}]
    assert c["UnsubscribeAll"] is False
    all_ = [c["EmailAddress"] for c in v2.list_contacts(ContactListName="customers")["Contacts"]]
    assert all_ == ["ann@acme.test", "bob@acme.test", "cy@acme.test"]
    offers_in = v2.list_contacts(ContactListName="customers", Filter={
        "FilteredStatus": "OPT_IN", "TopicFilter": {"TopicName": "offers", "UseDefaultIfPreferenceUnavailable": True}})
    assert [c["EmailAddress"] for c in offers_in["Contacts"]] == ["ann@acme.test"]
    out = v2.list_contacts(ContactListName="customers", Filter={"FilteredStatus": "OPT_OUT"})
    assert [c["EmailAddress"] for c in out["Contacts"]] == ["cy@acme.test"]
    page = v2.list_contacts(ContactListName="customers", PageSize=2)
    assert len(page["Contacts"]) == 2 and page["NextToken"]
    v2.update_contact(ContactListName="customers", EmailAddress="bob@acme.test", UnsubscribeAll=True)
    assert v2.get_contact(ContactListName="customers", EmailAddress="bob@acme.test")["UnsubscribeAll"] is True
    v2.delete_contact(ContactListName="customers", EmailAddress="bob@acme.test")
    with pytest.raises(ClientError) as e:
        v2.get_contact(ContactListName="customers", EmailAddress="bob@acme.test")
    assert code(e) == "NotFoundException"


def test_list_management_adds_one_click_headers_and_the_link(weir, acct):
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS)
    mid = send(v2, ["ann@acme.test"])
    msg, states = spooled(weir, mid)
    assert states == ["queued"]
    url = msg["List-Unsubscribe"].strip("<>")
    assert url.startswith(weir.base + "/unsubscribe/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_body(("plain",)).get_content().strip() == f"Hi. Unsubscribe: {url}"
    # A template gets the URL as the variable amazonSESUnsubscribeUrl.
    v2.create_email_template(TemplateName="lm", TemplateContent={"Subject": "S", "Html": '<a href="{{amazonSESUnsubscribeUrl}}">stop</a>'})
    mid = v2.send_email(FromEmailAddress="news@acme.test", Destination={"ToAddresses": ["ann@acme.test"]},
                        Content={"Template": {"TemplateName": "lm", "TemplateData": "{}"}},
                        ListManagementOptions={"ContactListName": "customers", "TopicName": "news"})["MessageId"]
    msg, _ = spooled(weir, mid)
    assert f'<a href="{msg["List-Unsubscribe"].strip("<>")}">stop</a>' in msg.get_body(("html",)).get_content()
    with pytest.raises(ClientError) as e:
        send(v2, ["ann@acme.test", "bob@acme.test"])
    assert code(e) == "BadRequestException" and "one recipient" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        send(v2, ["ann@acme.test"], lists="nolist")
    assert code(e) == "BadRequestException"


def test_topic_default_opt_out_is_not_sent_to_non_contacts(weir, acct):
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS)
    _, states = spooled(weir, send(v2, ["zed@acme.test"], topic="offers"))
    assert states == ["suppressed"]
    v2.create_contact(ContactListName="customers", EmailAddress="zed@acme.test",
                      TopicPreferences=[{"TopicName": "offers", "SubscriptionStatus": "OPT_IN"}])
    _, states = spooled(weir, send(v2, ["zed@acme.test"], topic="offers"))
    assert states == ["queued"]


def one_click(url):
    """What a mailbox provider's unsubscribe button does (RFC 8058)."""
    req = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read().decode()


def test_one_click_unsubscribe_suppresses_the_next_send_on_that_topic(weir, acct):
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS)
    v2.create_contact(ContactListName="customers", EmailAddress="ann@acme.test")
    msg, _ = spooled(weir, send(v2, ["ann@acme.test"], topic="news"))
    url = msg["List-Unsubscribe"].strip("<>")
    # A GET (a link scanner, a preview) changes nothing.
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200 and "<form" in r.read().decode()
    c = v2.get_contact(ContactListName="customers", EmailAddress="ann@acme.test")
    assert c["TopicPreferences"] == []
    status, page = one_click(url)
    assert status == 200 and "ann@acme.test is unsubscribed" in page
    c = v2.get_contact(ContactListName="customers", EmailAddress="ann@acme.test")
    assert c["TopicPreferences"] == [{"TopicName": "news", "SubscriptionStatus": "OPT_OUT"}]
    assert c["UnsubscribeAll"] is False
    ev = wait_for(lambda: [e for e in events(weir, "Subscription")
                           if e["subscription"]["emailAddress"] == "ann@acme.test"
                           and e["mail"]["sendingAccountId"] == acct.name], what="the Subscription event")[0]
    s = ev["subscription"]
    assert s["contactList"] == "customers" and s["source"] == "UnsubscribeHeader"
    assert {"topicName": "news", "subscriptionStatus": "OptOut"} in s["newTopicPreferences"]["topicSubscriptionStatus"]
    assert {"topicName": "news", "subscriptionStatus": "OptIn"} in s["oldTopicPreferences"]["topicSubscriptionStatus"]
    # The next send on that topic is accepted and not delivered; another topic still is.
    _, states = spooled(weir, send(v2, ["ann@acme.test"], topic="news"))
    assert states == ["suppressed"]
    v2.update_contact(ContactListName="customers", EmailAddress="ann@acme.test",
                      TopicPreferences=[{"TopicName": "news", "SubscriptionStatus": "OPT_OUT"},
                                        {"TopicName": "offers", "SubscriptionStatus": "OPT_IN"}])
    _, states = spooled(weir, send(v2, ["ann@acme.test"], topic="offers"))
    assert states == ["queued"]


def test_unsubscribe_without_a_topic_unsubscribes_from_all(weir, acct):
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS)
    msg, _ = spooled(weir, send(v2, ["bob@acme.test"], topic=None))
    assert one_click(msg["List-Unsubscribe"].strip("<>"))[0] == 200
    assert v2.get_contact(ContactListName="customers", EmailAddress="bob@acme.test")["UnsubscribeAll"] is True
    _, states = spooled(weir, send(v2, ["bob@acme.test"], topic="news"))
    assert states == ["suppressed"]


def test_a_forged_unsubscribe_link_is_refused(weir, acct):
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS)
    msg, _ = spooled(weir, send(v2, ["ann@acme.test"]))
    url = msg["List-Unsubscribe"].strip("<>")
    forged = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    with pytest.raises(urllib.error.HTTPError) as e:
        one_click(forged)
    assert e.value.code == 404
    with pytest.raises(ClientError):
        v2.get_contact(ContactListName="customers", EmailAddress="ann@acme.test")


def test_opening_the_link_in_headless_chromium_shows_the_button_and_changes_nothing(weir, acct):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: apt-get install chromium (as .ci/run does)"
    v2 = acct.client("sesv2")
    v2.create_contact_list(ContactListName="customers", Topics=TOPICS)
    msg, _ = spooled(weir, send(v2, ["eve@acme.test"], topic="news"))
    url = msg["List-Unsubscribe"].strip("<>")
    page = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
                          capture_output=True, text=True, timeout=60).stdout
    assert "Unsubscribe</button>" in page and 'method="post"' in page
    with pytest.raises(ClientError) as e:
        v2.get_contact(ContactListName="customers", EmailAddress="eve@acme.test")
    assert code(e) == "NotFoundException"
