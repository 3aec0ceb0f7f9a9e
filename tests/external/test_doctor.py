"""`weir doctor` on a mail log written by a real Postfix (a private instance relaying to a fake
receiver that defers, refuses and throttles), and on weir's own events."""

import os
import smtplib
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from conftest import ROOT, WEIR, events, wait_for
from fakemx import FakeMX
from test_delivery import free_port, sender, start


def doctor(*logs, html=False):
    r = subprocess.run([WEIR, "doctor", *map(str, logs), *(["--html"] if html else [])],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_doctor_reads_a_postfix_mail_log():
    assert os.geteuid() == 0, "a private Postfix instance needs root (CI runs as root)"
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        pf = Path(tmp) / "postfix"
        port = free_port()
        lib = ROOT / "benches" / "lib.sh"
        start_pf = f'source {lib}; start_postfix {pf} {port} {mx.port} "smtp_tls_security_level = none"'
        subprocess.run(["bash", "-c", start_pf], check=True, timeout=60)
        try:
            wait_for(lambda: subprocess.run(["bash", "-c", f"echo > /dev/tcp/127.0.0.1/{port}"],
                                            capture_output=True).returncode == 0, what="Postfix")
            s = smtplib.SMTP("127.0.0.1", port, timeout=30)
            # A null sender: no bounce message of Postfix's own joins the log.
            s.sendmail("", ["ok@fake.test", "defer@fake.test", "nosuch@fake.test", "unusual@fake.test"],
                       "Subject: hi\r\n\r\nhello\r\n")
            s.quit()
            log = pf / "maillog"
            wait_for(lambda: log.exists() and log.read_text().count(" status=") >= 4, timeout=60,
                     what="four delivery outcomes in Postfix's log")
            report = doctor(log)
            assert "== other" in report, report
            assert "first attempts 4, first-deferral 50.00 % — act" in report, report
            assert "delivered 1, bounced 1" in report, report
            assert "UnusualRate" in report and "InvalidRecipient" in report, report
            assert "pause this provider" in report and "clean the list" in report, report
            page = Cells()
            page.feed(doctor(log, html=True))
            row = page.rows["other"]
            assert row[1:3] == [("num", "4"), ("act", "50.00 % (act)")], row
            assert any("UnusualRate" in text for _, text in page.cells), page.cells
            assert "bar" in page.classes and "remedies" in page.classes, page.classes
        finally:
            subprocess.run(["bash", "-c", f"source {lib}; stop_postfix {pf}"], timeout=60)


class Cells(HTMLParser):
    """The report's table cells as (class, text), rows by their data-provider, and every class."""

    def __init__(self):
        super().__init__()
        self.cells, self.rows, self.classes, self.row, self.cell = [], {}, set(), None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.classes.update((a.get("class") or "").split())
        if tag == "tr":
            self.row = self.rows.setdefault(a["data-provider"], []) if "data-provider" in a else None
        elif tag == "td":
            self.cell = [a.get("class") or "", ""]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            cell = (self.cell[0], self.cell[1].strip())
            self.cells.append(cell)
            if self.row is not None:
                self.row.append(cell)
            self.cell = None


def test_doctor_reads_weir_s_own_events():
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, "")
        try:
            ses = sender(w, "--production", "--max-rate", "100").client()
            msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}
            for to in ["success@simulator.amazonses.com", "bounce@simulator.amazonses.com"]:
                ses.send_email(Source="a@acme.test", Message=msg, Destination={"ToAddresses": [to]})
            wait_for(lambda: events(w, "Delivery") and events(w, "Bounce"), what="a delivery and a bounce")
            report = doctor(w.data_dir / "events.jsonl")
            assert "first attempts 2, first-deferral 0.00 % — normal" in report, report
            assert "delivered 1, bounced 1: final delivery 50.00 %" in report, report
            assert "clean the list" in report, report
        finally:
            w.stop()
