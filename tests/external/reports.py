"""Reports that come back to a sender, built as mailbox providers write them: ARF complaint reports
(RFC 5965) and delivery status notifications (RFC 3464)."""


def arf(to, *, return_path=None, message_id=None, rcpt_to=None, original_to="ok@fake.test"):
    """A complaint report to `to` about a message whose headers carried `return_path` and
    `message_id`, naming `rcpt_to` as the recipient who complained."""
    fields = "Feedback-Type: abuse\r\nUser-Agent: isp-fbl/2.0\r\nVersion: 1\r\n"
    if rcpt_to:
        fields += f"Original-Rcpt-To: <{rcpt_to}>\r\n"
    headers = ""
    if return_path:
        headers += f"Return-Path: <{return_path}>\r\n"
    if message_id:
        headers += f"Message-ID: <{message_id}@weir.test>\r\n"
    return (f"From: fbl@isp.test\r\nTo: {to}\r\nSubject: complaint about a message\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"\r\n\r\n'
            "--arf\r\nContent-Type: text/plain\r\n\r\nA user of ours marked a message as spam.\r\n\r\n"
            f"--arf\r\nContent-Type: message/feedback-report\r\n\r\n{fields}\r\n"
            f"--arf\r\nContent-Type: message/rfc822\r\n\r\n{headers}From: a@acme.test\r\nTo: {original_to}\r\n"
            "Subject: s\r\n\r\nb\r\n--arf--\r\n").encode()


def dsn(to, failed):
    """A delivery status notification to `to` saying each (address, status) of `failed` failed."""
    groups = "".join(f"Final-Recipient: rfc822; {a}\r\nAction: failed\r\nStatus: {s}\r\n"
                     f"Diagnostic-Code: smtp; 550 {s} <{a}>: no such user\r\n\r\n" for a, s in failed)
    return (f"From: MAILER-DAEMON@mx.fake.test\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.fake.test\r\n\r\n"
            f"{groups}--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: a@acme.test\r\n\r\n--B--\r\n").encode()
