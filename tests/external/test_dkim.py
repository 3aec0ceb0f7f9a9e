"""DKIM end to end: keys made through the SES APIs (v1 VerifyDomainDkim, v2 CreateEmailIdentity
with Easy DKIM or BYODKIM), records published in a DNS zone served on loopback (dnslib), the
status weir reads from that zone, and signatures on delivered mail verified by dkimpy — a
verifier no one here wrote — against the same zone."""

import base64
import subprocess
import tempfile
import threading
import time

import dkim
import dns.message
import dns.query
import pytest
from dnslib import MX, QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSServer

from conftest import wait_for
from fakemx import FakeMX
from test_delivery import free_port, sender, start
from test_smtp import login


class Zone(BaseResolver):
    """TXT records by name, changed by the test while the server runs."""

    def __init__(self):
        self.txt = {}
        self.mx = {}
        self.servfail = set()  # domains whose names get SERVFAIL: a DNS that misbehaves
        self.lock = threading.Lock()

    def publish(self, name, value):
        with self.lock:
            self.txt[name.lower().rstrip(".")] = value

    def remove(self, name):
        with self.lock:
            self.txt.pop(name.lower().rstrip("."), None)

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        with self.lock:
            value = self.txt.get(name)
            mx = self.mx.get(name)
            if any(name == d or name.endswith("." + d) for d in self.servfail):
                reply.header.rcode = RCODE.SERVFAIL
                return reply
        if mx is not None and QTYPE[request.q.qtype] == "MX":
            reply.add_answer(RR(request.q.qname, QTYPE.MX, rdata=MX(mx, 10), ttl=1))
        if value is not None and QTYPE[request.q.qtype] == "TXT":
            # A TXT string holds at most 255 bytes: long keys are split, as zone files do.
            chunks = [value[i:i + 255].encode() for i in range(0, len(value), 255)]
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=1))
        return reply


@pytest.fixture
def zone():
    z = Zone()
    port = free_port()
    server = DNSServer(z, port=port, address="127.0.0.1")
    server.start_thread()
    z.port = port
    yield z
    server.stop()


def dkim_ok(zone, message):
    """dkimpy's verdict, looking keys up in the loopback zone over real DNS queries."""
    def dnsfunc(name, timeout=5):
        q = dns.message.make_query(name.decode().rstrip("."), "TXT")
        r = dns.query.udp(q, "127.0.0.1", port=zone.port, timeout=timeout)
        for rrset in r.answer:
            for rd in rrset:
                return b"".join(rd.strings)
        return None
    return dkim.verify(message, dnsfunc=dnsfunc)


def openssl_key():
    """A customer's own RSA-2048 key made by OpenSSL: (base64 DER private key, its DKIM record)."""
    pem = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-outform", "DER"], input=pem, capture_output=True, check=True).stdout
    pub = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem, capture_output=True,
                         check=True).stdout
    return base64.b64encode(der).decode(), "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()


def server(tmp, zone, mx, fail_after=4):
    return start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n'
                      f'dns_servers = ["127.0.0.1:{zone.port}"]\n'
                      f'[dkim]\ncheck_interval_seconds = 1\nfail_after_seconds = {fail_after}\n')


def publish_all(w, a, domain, zone):
    import json
    records = json.loads(w.cli("identity", "dns", a.name, "--region", "us-east-1", domain, "--json"))["records"]
    dkim_records = [r for r in records if r["purpose"] == "DKIM"]
    for r in dkim_records:
        zone.publish(r["name"], r["value"])
    return dkim_records


def v1_status(ses, identity):
    return ses.get_identity_dkim_attributes(Identities=[identity])["DkimAttributes"][identity]


def delivered_to(mx, rcpt, n=1):
    wait_for(lambda: len(mx.delivered_to(rcpt)) >= n, what=f"{n} message(s) for {rcpt} at the fake MX")
    return [m[3] for m in mx.delivered_to(rcpt)]


def test_easy_dkim_signs_api_and_smtp_mail_once_dns_shows_the_keys(zone):
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, zone, mx)
        try:
            a = sender(w, "--production", "--max-rate", "100")
            ses = a.client()
            tokens = ses.verify_domain_dkim(Domain="acme.test")["DkimTokens"]
            assert len(tokens) == 3 and len(set(tokens)) == 3, tokens
            assert ses.verify_domain_dkim(Domain="acme.test")["DkimTokens"] == tokens, "tokens are stable"
            attrs = v1_status(ses, "acme.test")
            assert attrs == {"DkimEnabled": True, "DkimVerificationStatus": "Pending", "DkimTokens": tokens}, attrs

            # Before DNS shows the keys, mail goes out unsigned.
            msg = {"Subject": {"Data": "before"}, "Body": {"Text": {"Data": "hello"}}}
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["early@fake.test"]}, Message=msg)
            assert b"DKIM-Signature" not in delivered_to(mx, "early@fake.test")[0]

            records = publish_all(w, a, "acme.test", zone)
            assert sorted(r["name"] for r in records) == sorted(f"{t}._domainkey.acme.test" for t in tokens)
            wait_for(lambda: v1_status(ses, "acme.test")["DkimVerificationStatus"] == "Success",
                     what="DKIM status Success once the records are published")
            v2 = a.client("sesv2").get_email_identity(EmailIdentity="acme.test")["DkimAttributes"]
            assert v2["Status"] == "SUCCESS" and v2["SigningEnabled"] and v2["Tokens"] == tokens, v2
            assert v2["SigningAttributesOrigin"] == "AWS_SES" and v2["CurrentSigningKeyLength"] == "RSA_2048_BIT", v2

            # Simple content; raw content with 8-bit text and a long folded header; SMTP submission.
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["simple@fake.test"]},
                           Message={"Subject": {"Data": "Grüße"}, "Body": {"Text": {"Data": "héllo wörld"}}})
            long_subject = "Subject: " + " ".join(f"word{i}" for i in range(60))
            raw = ("From: Ann <ann@acme.test>\r\nTo: raw@fake.test\r\n" + long_subject[:70] + "\r\n " +
                   long_subject[70:] + "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Transfer-Encoding: 8bit\r\n\r\nSch\u00f6ne Gr\u00fc\u00dfe\r\n.leading dot\r\n").encode()
            ses.send_raw_email(RawMessage={"Data": raw})
            with login(w, a) as s:
                s.sendmail("a@acme.test", ["smtp@fake.test"],
                           b"From: a@acme.test\r\nTo: smtp@fake.test\r\nSubject: via smtp\r\n\r\nbody\r\n")
            for rcpt in ["simple@fake.test", "raw@fake.test", "smtp@fake.test"]:
                data = delivered_to(mx, rcpt)[0]
                assert data.startswith(b"DKIM-Signature:"), data[:200]
                assert b"d=acme.test" in data and f"s={tokens[0]}".encode() in data, data[:400]
                assert dkim_ok(zone, data), f"dkimpy refused the signature for {rcpt}"
                # A changed body no longer verifies: the check is real.
                assert not dkim_ok(zone, data.replace(b"\r\n\r\n", b"\r\n\r\nX", 1)), rcpt

            # Signing can be switched off.
            ses.set_identity_dkim_enabled(Identity="acme.test", DkimEnabled=False)
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["off@fake.test"]}, Message=msg)
            assert b"DKIM-Signature" not in delivered_to(mx, "off@fake.test")[0]
        finally:
            w.stop()


def test_dkim_status_follows_the_records_pending_success_then_temporary_failure_and_failed(zone):
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, zone, mx, fail_after=4)
        try:
            a = sender(w, "--production")
            ses = a.client()
            ses.verify_domain_dkim(Domain="acme.test")
            ses.verify_domain_dkim(Domain="never.test")
            zone.servfail.add("flaky.test")
            ses.verify_domain_dkim(Domain="flaky.test")
            records = publish_all(w, a, "acme.test", zone)
            wait_for(lambda: v1_status(ses, "acme.test")["DkimVerificationStatus"] == "Success", what="Success")
            # Never published: Pending, then Failed once the (shortened) 72 hours are over.
            assert v1_status(ses, "never.test")["DkimVerificationStatus"] in ("Pending", "Failed")
            # A DNS server that answers SERVFAIL: a temporary failure, not Pending or Failed.
            wait_for(lambda: v1_status(ses, "flaky.test")["DkimVerificationStatus"] == "TemporaryFailure",
                     what="TemporaryFailure while DNS fails")
            wait_for(lambda: v1_status(ses, "never.test")["DkimVerificationStatus"] == "Failed", what="Failed")
            # Removed after success: a temporary failure first, then failed.
            zone.remove(records[0]["name"])
            wait_for(lambda: v1_status(ses, "acme.test")["DkimVerificationStatus"] == "TemporaryFailure",
                     what="TemporaryFailure after the records went away")
            wait_for(lambda: v1_status(ses, "acme.test")["DkimVerificationStatus"] == "Failed", what="Failed")
            v2 = a.client("sesv2").get_email_identity(EmailIdentity="acme.test")["DkimAttributes"]
            assert v2["Status"] == "FAILED", v2
        finally:
            w.stop()


def test_byodkim_key_and_selector_sign_and_verify(zone):
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, zone, mx)
        try:
            a = sender(w, "--production", "--max-rate", "100")
            der_b64, record = openssl_key()
            v2 = a.client("sesv2")
            with pytest.raises(v2.exceptions.BadRequestException):
                v2.create_email_identity(EmailIdentity="byo.test", DkimSigningAttributes={
                    "DomainSigningSelector": "sel1", "DomainSigningPrivateKey": "bm90IGEga2V5"})
            out = v2.create_email_identity(EmailIdentity="byo.test", DkimSigningAttributes={
                "DomainSigningSelector": "sel1", "DomainSigningPrivateKey": der_b64})
            assert out["DkimAttributes"]["SigningAttributesOrigin"] == "EXTERNAL", out
            assert out["DkimAttributes"]["Status"] == "PENDING", out
            w.cli("identity", "add", a.name, "--region", "us-east-1", "byo.test", "--verified")
            zone.publish("sel1._domainkey.byo.test", record)
            wait_for(lambda: v2.get_email_identity(EmailIdentity="byo.test")["DkimAttributes"]["Status"] == "SUCCESS",
                     what="BYODKIM Success")
            a.client().send_email(Source="news@byo.test", Destination={"ToAddresses": ["byo@fake.test"]},
                                  Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
            data = delivered_to(mx, "byo@fake.test")[0]
            assert b"s=sel1" in data and dkim_ok(zone, data), data[:400]
        finally:
            w.stop()


def test_domain_verification_follows_the_amazonses_record(zone):
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, zone, mx, fail_after=4)
        try:
            a = w.account()
            a.quota("us-east-1", "--production")
            ses = a.client()
            token = ses.verify_domain_identity(Domain="shop.test")["VerificationToken"]
            ses.verify_domain_identity(Domain="nobody.test")

            def status(d):
                return ses.get_identity_verification_attributes(Identities=[d])["VerificationAttributes"][d][
                    "VerificationStatus"]

            assert status("shop.test") == "Pending"
            msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
            with pytest.raises(ses.exceptions.MessageRejected):
                ses.send_email(Source="a@shop.test", Destination={"ToAddresses": ["x@fake.test"]}, Message=msg)
            zone.publish("_amazonses.shop.test", token)
            wait_for(lambda: status("shop.test") == "Success", what="Success once _amazonses carries the token")
            ses.send_email(Source="a@shop.test", Destination={"ToAddresses": ["x@fake.test"]}, Message=msg)
            wait_for(lambda: status("nobody.test") == "Failed", what="Failed after the (shortened) 72 hours")
        finally:
            w.stop()


def test_identity_check_says_which_records_are_missing_until_all_are_published(zone):
    import json
    from conftest import WEIR
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, zone, mx)
        try:
            a = sender(w)
            a.client().verify_domain_dkim(Domain="acme.test")
            check = [WEIR, "identity", "check", a.name, "--region", "us-east-1", "acme.test",
                     "--dns-server", f"127.0.0.1:{zone.port}", "--data-dir", str(w.data_dir)]
            r = subprocess.run(check, capture_output=True, text=True, timeout=60)
            assert r.returncode == 1, r
            assert r.stdout.count("MISSING") == 5, r.stdout  # three DKIM keys, _amazonses, _dmarc
            assert "5 of 5 records missing" in r.stderr, r.stderr
            records = json.loads(w.cli("identity", "dns", a.name, "--region", "us-east-1", "acme.test",
                                       "--json"))["records"]
            for rec in records:
                zone.publish(rec["name"], rec["value"])
            r = subprocess.run(check, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and "all 5 records published" in r.stdout, (r.stdout, r.stderr)
        finally:
            w.stop()


def test_an_email_address_verifies_through_the_link_in_its_verification_mail():
    import re
    import urllib.error
    import urllib.request
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n'
                       '[verification]\nfrom = "no-reply@weir.test"\n')
        try:
            a = w.account()
            ses = a.client()
            ses.verify_email_identity(EmailAddress="bob@fake.test")

            def status(addr):
                return ses.get_identity_verification_attributes(Identities=[addr])["VerificationAttributes"][addr][
                    "VerificationStatus"]

            mail = delivered_to(mx, "bob@fake.test")[0]
            assert b"From: no-reply@weir.test" in mail and b"Verification Request in region US-EAST-1" in mail, mail
            link = re.search(rb"(http://\S+/verify\?\S+)", mail).group(1).decode()
            assert status("bob@fake.test") == "Pending"
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(link[:-4] + "0000", timeout=10)
            assert e.value.code == 403
            assert status("bob@fake.test") == "Pending"
            page = urllib.request.urlopen(link, timeout=10).read().decode()
            assert "bob@fake.test is now verified" in page, page
            assert status("bob@fake.test") == "Success"
            # v2 sends one too (one per second per account); each counts against the quota.
            time.sleep(1.1)
            a.client("sesv2").create_email_identity(EmailIdentity="carol@fake.test")
            assert b"/verify?" in delivered_to(mx, "carol@fake.test")[0]
            assert ses.get_send_quota()["SentLast24Hours"] == 2
        finally:
            w.stop()


def test_a_new_key_waits_as_the_pending_selector_until_dns_shows_it(zone):
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, zone, mx)
        try:
            a = sender(w, "--production", "--max-rate", "100")
            v2 = a.client("sesv2")

            def signed_with(rcpt):
                a.client().send_email(Source="a@acme.test", Destination={"ToAddresses": [rcpt]},
                                      Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
                data = delivered_to(mx, rcpt)[0]
                assert dkim_ok(zone, data), data[:300]
                return data.split(b"s=", 1)[1].split(b";", 1)[0].decode()

            k1, rec1 = openssl_key()
            v2.put_email_identity_dkim_signing_attributes(
                EmailIdentity="acme.test", SigningAttributesOrigin="EXTERNAL",
                SigningAttributes={"DomainSigningSelector": "one", "DomainSigningPrivateKey": k1})
            zone.publish("one._domainkey.acme.test", rec1)
            wait_for(lambda: v2.get_email_identity(EmailIdentity="acme.test")["DkimAttributes"]["Status"] == "SUCCESS",
                     what="SUCCESS with the first key")
            assert signed_with("first@fake.test") == "one"
            # The next key is pending: mail goes on being signed with the first until DNS shows it.
            k2, rec2 = openssl_key()
            v2.put_email_identity_dkim_signing_attributes(
                EmailIdentity="acme.test", SigningAttributesOrigin="EXTERNAL",
                SigningAttributes={"DomainSigningSelector": "two", "DomainSigningPrivateKey": k2})
            assert signed_with("second@fake.test") == "one"
            zone.publish("two._domainkey.acme.test", rec2)
            wait_for(lambda: v2.get_email_identity(EmailIdentity="acme.test")["DkimAttributes"]["Tokens"] == ["two"],
                     what="the second key in use")
            assert signed_with("third@fake.test") == "two"
        finally:
            w.stop()
