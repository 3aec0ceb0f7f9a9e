"""SMTP submission with Python's smtplib and swaks (Debian's package), against the real server."""

import base64
import json
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE  # weir made itself a self-signed certificate

MSG = "From: a@acme.test\r\nTo: b@acme.test\r\nSubject: hello\r\n\r\nhello over SMTP\r\n"


def starttls(weir):
    s = smtplib.SMTP(*weir.smtp, timeout=10)
    s.ehlo("client.test")
    s.starttls(context=TLS)
    s.ehlo("client.test")
    return s


def login(weir, acct):
    s = starttls(weir)
    s.login(acct.creds["smtp_username"], acct.creds["smtp_password"])
    return s


def spooled(weir, message_id):
    return [m for m in json.loads(weir.cli("spool", "list", "--json")) if m["message_id"] == message_id]


def test_starttls_auth_plain_and_login(weir, acct):
    s = starttls(weir)
    assert "AUTH PLAIN LOGIN" in s.ehlo_resp.decode()
    s.login(acct.creds["smtp_username"], acct.creds["smtp_password"])  # smtplib prefers PLAIN... then LOGIN
    code, text = s.mail("a@acme.test")
    assert code == 250
    s.rcpt("b@acme.test")
    code, text = s.data(MSG)
    assert code == 250 and text.startswith(b"Ok ")
    message_id = text.decode().split()[1]
    m = spooled(weir, message_id)
    assert m and m[0]["recipients"] == [{"address": "b@acme.test", "state": "queued"}]
    s.quit()
    time.sleep(1.05)
    s = starttls(weir)
    s.user, s.password = acct.creds["smtp_username"], acct.creds["smtp_password"]
    code, _ = s.auth("LOGIN", s.auth_login)
    assert code == 235
    s.sendmail("a@acme.test", ["b@acme.test"], MSG)
    s.quit()


def test_implicit_tls(weir, acct):
    s = smtplib.SMTP_SSL(*weir.smtps, context=TLS, timeout=10)
    s.login(acct.creds["smtp_username"], acct.creds["smtp_password"])
    assert s.sendmail("a@acme.test", ["b@acme.test"], MSG) == {}
    s.quit()


def test_auth_requires_tls_and_mail_requires_auth(weir, acct):
    s = smtplib.SMTP(*weir.smtp, timeout=10)
    s.ehlo("client.test")
    assert "AUTH" not in s.ehlo_resp.decode() and "STARTTLS" in s.ehlo_resp.decode()
    code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0u\0p").decode())
    assert (code, text) == (538, b"Encryption required for requested authentication mechanism")
    code, text = s.mail("a@acme.test")
    assert (code, text) == (530, b"Authentication required")
    s.quit()
    s = starttls(weir)
    assert s.mail("a@acme.test") == (530, b"Authentication required")
    s.quit()


def test_wrong_password(weir, acct):
    s = starttls(weir)
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.login(acct.creds["smtp_username"], acct.creds["smtp_password"][:-1] + "x")
    assert e.value.smtp_code == 535 and e.value.smtp_error == b"Authentication Credentials Invalid"
    # The secret access key itself is not the SMTP password (SES derives one per region).
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login(acct.creds["smtp_username"], acct.creds["secret_access_key"])


def test_throttling_replies(weir, acct):
    s = login(weir, acct)
    s.sendmail("a@acme.test", ["b@acme.test"], MSG)
    # 1/s in the sandbox: refused at MAIL FROM, before the client uploads a body.
    assert s.mail("a@acme.test") == (454, b"Throttling failure: Maximum sending rate exceeded")
    s.rset()
    s.quit()


def test_daily_quota_reply(weir, acct):
    acct.quota("us-east-1", "--max-24h", "3", "--max-rate", "100")
    s = login(weir, acct)
    s.sendmail("a@acme.test", ["b@acme.test", "c@acme.test", "d@acme.test"], MSG)
    assert s.mail("a@acme.test") == (454, b"Throttling failure: Daily message quota exceeded")
    s.quit()


def test_daily_quota_at_end_of_data(weir, acct):
    # Two recipients left, three asked for: MAIL FROM passes (one could), the DATA dot is refused
    # and nothing is charged.
    acct.quota("us-east-1", "--max-24h", "2", "--max-rate", "100")
    s = login(weir, acct)
    s.mail("a@acme.test")
    for r in ("b@acme.test", "c@acme.test", "d@acme.test"):
        s.rcpt(r)
    assert s.data(MSG) == (454, b"Throttling failure: Daily message quota exceeded")
    assert acct.client().get_send_quota()["SentLast24Hours"] == 0.0
    s.quit()


def test_sandbox_and_relay_attempts(weir, acct):
    s = login(weir, acct)
    with pytest.raises(smtplib.SMTPDataError) as e:
        s.sendmail("a@acme.test", ["stranger@example.net"], MSG)
    assert e.value.smtp_code == 554
    assert e.value.smtp_error == (b"Message rejected: Email address is not verified. The following identities "
                                  b"failed the check in region US-EAST-1: stranger@example.net")
    # An unverified envelope sender is refused at MAIL FROM.
    code, text = s.mail("someone@unverified.test")
    assert code == 554 and text.endswith(b"region US-EAST-1: someone@unverified.test")
    s.quit()


def test_more_than_50_recipients_and_oversize(weir, acct):
    acct.quota("us-east-1", "--max-rate", "100")
    s = login(weir, acct)
    s.mail("a@acme.test")
    for i in range(51):
        assert s.rcpt(f"r{i}@acme.test")[0] == 250
    assert s.docmd("DATA") == (554, b"Transaction failed: Recipient count exceeds 50.")
    s.rset()
    assert s.docmd("MAIL FROM:<a@acme.test> SIZE=50000000") == (552, b"Message is too long.")
    s.mail("a@acme.test")
    s.rcpt("b@acme.test")
    big = MSG + ("x" * 998 + "\r\n") * (41 * 1024)
    assert s.data(big) == (552, b"Message is too long.")
    # The session is still usable afterwards.
    assert s.sendmail("a@acme.test", ["b@acme.test"], MSG) == {}
    s.quit()


def test_pipelined_session(weir, acct):
    """Several transactions written in one go, replies read afterwards."""
    acct.quota("us-east-1", "--max-rate", "100", "--burst-seconds", "10")
    raw = socket.create_connection(weir.smtp, timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220 ")
    raw.sendall(b"EHLO pipe.test\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    raw.sendall(b"STARTTLS\r\n")
    assert f.readline().startswith(b"220 ")
    tls = TLS.wrap_socket(raw, server_hostname="localhost")
    f = tls.makefile("rb")
    auth = base64.b64encode(b"\0" + acct.creds["smtp_username"].encode() + b"\0" + acct.creds["smtp_password"].encode())
    body = MSG.encode() + b".\r\n"
    batch = b"EHLO pipe.test\r\nAUTH PLAIN " + auth + b"\r\n"
    for i in range(3):
        batch += b"MAIL FROM:<a@acme.test>\r\nRCPT TO:<b@acme.test>\r\nRCPT TO:<c@acme.test>\r\nDATA\r\n" + body
    batch += b"QUIT\r\n"
    tls.sendall(batch)
    replies = []
    while True:
        line = f.readline()
        if not line:
            break
        if line[3:4] == b" ":
            replies.append(line.decode().strip())
    assert replies[0].startswith("250 ") and replies[1] == "235 Authentication successful"
    oks = [r for r in replies if r.startswith("250 Ok 0100")]
    assert len(oks) == 3, replies
    assert replies[-1] == "221 Bye"


def test_client_dropping_mid_data_leaves_nothing(weir, acct):
    before = len(json.loads(weir.cli("spool", "list", "--json")))
    sent_before = acct.client().get_send_quota()["SentLast24Hours"]
    s = login(weir, acct)
    s.mail("a@acme.test")
    s.rcpt("b@acme.test")
    s.putcmd("DATA")
    assert s.getreply()[0] == 354
    s.send(b"From: a@acme.test\r\nSubject: cut\r\n\r\nhalf a message")
    s.sock.close()
    time.sleep(0.3)
    assert len(json.loads(weir.cli("spool", "list", "--json"))) == before
    assert acct.client().get_send_quota()["SentLast24Hours"] == sent_before


def test_smtp_and_api_share_one_quota(weir, acct):
    acct.quota("us-east-1", "--max-24h", "2", "--max-rate", "100")
    ses = acct.client()
    ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@acme.test"]},
                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    s = login(weir, acct)
    s.sendmail("a@acme.test", ["c@acme.test"], MSG)
    assert ses.get_send_quota()["SentLast24Hours"] == 2.0
    assert s.mail("a@acme.test") == (454, b"Throttling failure: Daily message quota exceeded")
    s.quit()


def test_x_ses_headers_are_read_and_stripped(weir, acct):
    acct.client().create_configuration_set(ConfigurationSet={"Name": "transactional"})
    s = login(weir, acct)
    msg = ("From: a@acme.test\r\nTo: b@acme.test\r\nX-SES-CONFIGURATION-SET: transactional\r\n"
           "X-SES-MESSAGE-TAGS: campaign=fall\r\nSubject: s\r\n\r\nbody\r\n")
    s.mail("a@acme.test")
    s.rcpt("b@acme.test")
    code, text = s.data(msg)
    assert code == 250
    s.quit()
    db = weir.data_dir / "weir.db"
    import sqlite3
    row = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
        "SELECT configuration_set, tags, body FROM messages WHERE id = ?", (text.decode().split()[1],)).fetchone()
    assert row[0] == "transactional" and json.loads(row[1]) == [{"Name": "campaign", "Value": "fall"}]
    assert b"X-SES" not in row[2]


def test_unknown_configuration_set_header_is_refused(weir, acct):
    s = login(weir, acct)
    msg = "From: a@acme.test\r\nTo: b@acme.test\r\nX-SES-CONFIGURATION-SET: nosuchset\r\nSubject: s\r\n\r\nbody\r\n"
    s.mail("a@acme.test")
    s.rcpt("b@acme.test")
    code, text = s.data(msg)
    assert code == 554 and b"Configuration set <nosuchset> does not exist" in text, (code, text)
    s.quit()


def test_swaks(weir, acct):
    assert shutil.which("swaks"), "swaks is missing: apt-get install swaks (as .ci/run does)"
    host, port = weir.smtp
    base = ["swaks", "--server", f"{host}:{port}", "--from", "a@acme.test", "--to", "b@acme.test",
            "--helo", "swaks.test", "--tls", "--auth-user", acct.creds["smtp_username"]]
    ok = subprocess.run(base + ["--auth", "LOGIN", "--auth-password", acct.creds["smtp_password"]],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "<~  250 Ok 0100" in ok.stdout
    throttled = subprocess.run(base + ["--auth", "PLAIN", "--auth-password", acct.creds["smtp_password"]],
                               capture_output=True, text=True, timeout=30)
    assert throttled.returncode != 0
    assert "<~* 454 Throttling failure: Maximum sending rate exceeded" in throttled.stdout, throttled.stdout
    bad = subprocess.run(base + ["--auth", "LOGIN", "--auth-password", "nope"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "535 Authentication Credentials Invalid" in bad.stdout
    time.sleep(1.05)
    ok = subprocess.run(base + ["--auth", "PLAIN", "--auth-password", acct.creds["smtp_password"]],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    host2, port2 = weir.smtps
    time.sleep(1.05)
    wrapped = subprocess.run(["swaks", "--server", f"{host2}:{port2}", "--tls-on-connect", "--from", "a@acme.test",
                              "--to", "b@acme.test", "--auth", "PLAIN", "--auth-user", acct.creds["smtp_username"],
                              "--auth-password", acct.creds["smtp_password"]], capture_output=True, text=True, timeout=30)
    assert wrapped.returncode == 0, wrapped.stdout + wrapped.stderr


def test_smtp_sessions_and_auth_failures_are_counted_in_metrics(weir, acct):
    from test_delivery import urlopen_admin

    def value(text, name):
        lines = [l for l in text.splitlines() if l.startswith(name)]
        return sum(float(l.rsplit(" ", 1)[1]) for l in lines)

    before = urlopen_admin(weir, "/metrics")
    s = starttls(weir)
    s.user, s.password = acct.creds["smtp_username"], "wrong-password"
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.auth("PLAIN", s.auth_plain)  # one attempt (login() would try PLAIN, then LOGIN)
    s.close()
    s = smtplib.SMTP_SSL(*weir.smtps, context=TLS, timeout=10)
    s.quit()
    after = urlopen_admin(weir, "/metrics")
    assert value(after, "weir_smtp_auth_failures_total") == value(before, "weir_smtp_auth_failures_total") + 1
    assert value(after, 'weir_smtp_sessions_total{listener="starttls"}') >= \
        value(before, 'weir_smtp_sessions_total{listener="starttls"}') + 1
    assert value(after, 'weir_smtp_sessions_total{listener="implicit_tls"}') >= \
        value(before, 'weir_smtp_sessions_total{listener="implicit_tls"}') + 1
