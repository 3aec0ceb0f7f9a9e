"""Bounces and complaints that come back after delivery: weir sends with per-recipient return
paths at its return-path domain; a real Postfix accepts the mail (250), fails to deliver it
onward and sends its DSN to that return path, which reaches weir's feedback listener; weir
emits SES's Bounce event and suppresses the address. A complaint report (ARF, our own fixture)
to a return path becomes a Complaint. The listener relays nothing."""

import os
import smtplib
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, events, wait_for
from fakemx import FakeMX
from test_delivery import free_port, sender, start
from reports import arf
from test_dkim import zone  # noqa: F401  (a fixture)

def test_a_postfix_dsn_and_an_arf_report_come_back_as_bounce_and_complaint():
    assert os.geteuid() == 0, "a private Postfix instance needs root (CI runs as root)"
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        fb_port, pf_port = free_port(), free_port()
        pf = Path(tmp) / "postfix"
        lib = ROOT / "benches" / "lib.sh"
        # Postfix relays fake.test to the fake receiver and sends mail for the return-path domain
        # (its bounces) to weir's feedback listener.
        start_pf = (f'source {lib}; start_postfix {pf} {pf_port} {mx.port} "smtp_tls_security_level = none" '
                    f'"transport_maps = inline:{{ bounces.test=smtp:[127.0.0.1]:{fb_port} }}"')
        subprocess.run(["bash", "-c", start_pf], check=True, timeout=60)
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{pf_port}" }}\n'
                       f'[feedback]\nreturn_path_domain = "bounces.test"\nlisten = "127.0.0.1:{fb_port}"\n'
                       'loop_sources = ["127.0.0.77/32"]\n')
        try:
            wait_for(lambda: subprocess.run(["bash", "-c", f"echo > /dev/tcp/127.0.0.1/{pf_port}"],
                                            capture_output=True).returncode == 0, what="Postfix")
            a = sender(w, "--production", "--max-rate", "100")
            ses = a.client()
            msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
            gone = ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["nosuch@fake.test"]},
                                  Message=msg)["MessageId"]
            ok = ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["ok@fake.test"]},
                                Message=msg)["MessageId"]

            # Postfix took both (weir logs Delivery), then refused nosuch@ onward and bounced.
            bounce = wait_for(lambda: [e for e in events(w, "Bounce") if e["mail"]["messageId"] == gone],
                              timeout=60, what="a Bounce from Postfix's DSN")[0]
            assert any(e["mail"]["messageId"] == gone for e in events(w, "Delivery")), "first hop took it"
            assert bounce["bounce"]["bounceType"] == "Permanent", bounce
            assert bounce["bounce"]["bounceSubType"] == "NoEmail", bounce
            rcpt = bounce["bounce"]["bouncedRecipients"][0]
            assert rcpt["emailAddress"] == "nosuch@fake.test" and rcpt["status"] == "5.1.1", rcpt
            assert "550" in rcpt["diagnosticCode"], rcpt
            v2 = a.client("sesv2")
            s = v2.get_suppressed_destination(EmailAddress="nosuch@fake.test")["SuppressedDestination"]
            assert s["Reason"] == "BOUNCE" and s["Attributes"]["MessageId"] == gone, s

            # The return path of the delivered message, as the receiver saw it.
            wait_for(lambda: mx.delivered_to("ok@fake.test"), what="ok@ at the receiver")
            return_path = mx.delivered_to("ok@fake.test")[0][1]
            assert return_path.endswith("@bounces.test") and ok in return_path, return_path
            with smtplib.SMTP("127.0.0.1", fb_port, timeout=10) as c:
                c.sendmail("", [return_path], arf(return_path))
            complaint = wait_for(lambda: events(w, "Complaint"), what="a Complaint")[0]
            assert complaint["mail"]["messageId"] == ok, complaint
            assert complaint["complaint"]["complainedRecipients"] == [{"emailAddress": "ok@fake.test"}], complaint
            s = v2.get_suppressed_destination(EmailAddress="ok@fake.test")["SuppressedDestination"]
            assert s["Reason"] == "COMPLAINT", s

            # A feedback loop (from its configured address) that sends to the complaints address:
            # the report names the message by weir's Message-ID inside and the recipient by
            # Original-Rcpt-To.
            third = ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["third@fake.test"]},
                                   Message=msg)["MessageId"]
            wait_for(lambda: mx.delivered_to("third@fake.test"), what="third@ at the receiver")
            report = arf("fbl@bounces.test", message_id=third, rcpt_to="third@fake.test", original_to="third@fake.test")
            with smtplib.SMTP("127.0.0.1", fb_port, timeout=10, source_address=("127.0.0.77", 0)) as c:
                c.sendmail("", ["fbl@bounces.test"], report)
            second = wait_for(lambda: [e for e in events(w, "Complaint") if e["mail"]["messageId"] == third],
                              what="a Complaint through the complaints address")[0]
            assert second["complaint"]["complainedRecipients"] == [{"emailAddress": "third@fake.test"}], second

            # No relay, no forged return paths.
            with smtplib.SMTP("127.0.0.1", fb_port, timeout=10) as c:
                c.ehlo("x.test")
                assert "auth" not in c.esmtp_features
                c.mail("")
                for to in ["victim@elsewhere.test", return_path.replace("@", "x@", 1),
                           "b+" + ok + "+x+0000000000000000@bounces.test"]:
                    code, _ = c.rcpt(to)
                    assert code == 550, (to, code)
        finally:
            w.stop()
            subprocess.run(["bash", "-c", f"source {lib}; stop_postfix {pf}"], timeout=60)


def test_custom_mail_from_domain_follows_its_mx_record_and_carries_the_return_path(zone):
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        fb_port = free_port()
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n'
                       f'dns_servers = ["127.0.0.1:{zone.port}"]\n'
                       '[dkim]\ncheck_interval_seconds = 1\nfail_after_seconds = 600\n'
                       f'[feedback]\nmx_host = "feedback.weir.test"\nlisten = "127.0.0.1:{fb_port}"\n')
        try:
            a = sender(w, "--production", "--max-rate", "100")
            ses = a.client()
            with pytest.raises(ses.exceptions.ClientError) as e:
                ses.set_identity_mail_from_domain(Identity="acme.test", MailFromDomain="bounce.other.test")
            assert "is not subdomain of the domain of the identity" in str(e.value), e.value
            ses.set_identity_mail_from_domain(Identity="acme.test", MailFromDomain="bounce.acme.test",
                                              BehaviorOnMXFailure="RejectMessage")

            def attrs():
                return ses.get_identity_mail_from_domain_attributes(Identities=["acme.test"])[
                    "MailFromDomainAttributes"]["acme.test"]

            assert attrs() == {"MailFromDomain": "bounce.acme.test", "MailFromDomainStatus": "Pending",
                               "BehaviorOnMXFailure": "RejectMessage"}, attrs()
            msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
            # RejectMessage: no send while the MX record is missing.
            with pytest.raises(ses.exceptions.MessageRejected):
                ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["ok@fake.test"]}, Message=msg)
            zone.mx["bounce.acme.test"] = "feedback.weir.test"
            wait_for(lambda: attrs()["MailFromDomainStatus"] == "Success", what="MAIL FROM Success once the MX is there")
            got = a.client("sesv2").get_email_identity(EmailIdentity="acme.test")["MailFromAttributes"]
            assert got == {"MailFromDomain": "bounce.acme.test", "MailFromDomainStatus": "SUCCESS",
                           "BehaviorOnMxFailure": "REJECT_MESSAGE"}, got
            import json
            records = json.loads(w.cli("identity", "dns", a.name, "--region", "us-east-1", "acme.test", "--json"))
            assert {"purpose": "MAIL FROM: bounces come back to weir", "name": "bounce.acme.test", "type": "MX",
                    "value": "10 feedback.weir.test"} in records["records"], records
            mid = ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["ok@fake.test"]},
                                 Message=msg)["MessageId"]
            wait_for(lambda: mx.delivered_to("ok@fake.test"), what="delivery")
            return_path = mx.delivered_to("ok@fake.test")[0][1]
            assert return_path.startswith(f"b+{mid}+0+") and return_path.endswith("@bounce.acme.test"), return_path
            # The feedback listener takes mail for that return path.
            with smtplib.SMTP("127.0.0.1", fb_port, timeout=10) as c:
                c.ehlo("x.test")
                c.mail("")
                assert c.rcpt(return_path)[0] == 250
        finally:
            w.stop()
