"""The dashboard in a real browser (Debian's Chromium, headless): the page served by weir loads,
shows live numbers after sends (accounts and quota use, the queue, a lane with its first-deferral
band), and a message look-up shows each recipient's attempts and replies."""

import re
import shutil
import subprocess
import tempfile

import pytest
from botocore.exceptions import ClientError

from conftest import events, wait_for
from fakemx import FakeMX
from test_delivery import sender, start

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.fail("chromium is missing: apt-get install chromium (as .ci/run does)", pytrace=False)


def dom(url):
    """The page's DOM after its scripts ran (virtual time lets their fetches finish)."""
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_dashboard_shows_live_numbers_and_looks_up_a_message():
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        # The deferred recipient must still be queued when the page is read: no retry within a minute.
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n', retry_first=60, retry_max=120)
        try:
            a = sender(w, "--production", "--max-rate", "100")
            ses = a.client()
            mid = ses.send_email(Source="a@acme.test", Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}},
                                 Destination={"ToAddresses": ["ok@fake.test", "defer@fake.test"]})["MessageId"]
            wait_for(lambda: events(w, "Delivery") and events(w, "DeliveryDelay"), what="a delivery and a deferral")
            with pytest.raises(ClientError):  # a rejected request is charted too
                ses.send_email(Source="a@unverified.test", Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}},
                               Destination={"ToAddresses": ["ok@fake.test"]})
            token = (w.data_dir / "admin-token").read_text().strip()
            page = dom(f"{w.base}/dashboard#token={token}&lookup={mid}")
            lane = f"route:127.0.0.1:{mx.port}"
            assert f'data-account="{a.name}"' in page, page
            account_row = re.search(rf'<tr data-account="{a.name}">(.*?)</tr>', page).group(1)
            assert "production" in account_row and "HEALTHY" in account_row, account_row
            assert 'data-state="queued"' in page, page
            lane_row = re.search(rf'<tr data-lane="{re.escape(lane)}">(.*?)</tr>', page).group(1)
            # One first attempt of two deferred: 50 %, in the "act" band.
            assert "50.00 %" in lane_row and "(act)" in lane_row, lane_row
            assert re.search(r"temporary_other: [1-9]", lane_row), lane_row  # deferrals by reply class
            # The 24-hour chart: this bucket's two recipients sent and one rejected request.
            chart = re.search(r'<div id="chart">(.*?)</div>', page, re.S).group(1)
            assert re.search(r'<rect class="sent" [^>]*data-value="2"', chart), chart
            assert re.search(r'<rect class="rejects" [^>]*data-value="1"', chart), chart
            assert re.search(r'<rect class="sent" [^>]*data-value="2"', account_row), account_row
            found = re.findall(rf'<tr data-message="{mid}">(.*?)</tr>', page)
            assert len(found) == 2, page
            assert any("ok@fake.test" in r and "delivered" in r for r in found), found
            assert any("defer@fake.test" in r and "queued" in r and "451" in r for r in found), found
        finally:
            w.stop()


def test_dashboard_without_the_token_shows_no_data_and_asks_for_it():
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, "")
        try:
            page = dom(f"{w.base}/dashboard")
            assert '<section id="login">' in page, page
            assert not re.search(r'<tr data-account="[^$]', page), "account rows without a token"
            wrong = dom(f"{w.base}/dashboard#token=wrong")
            assert "the admin token was refused" in wrong, wrong
        finally:
            w.stop()
