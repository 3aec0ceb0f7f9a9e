"""Reputation enforcement as SES does it, end to end: a campaign with 12 % bounces (a fake
receiver on loopback refusing 6 of 50 recipients with 550 5.1.1) pauses the account's sending
(SHUTDOWN), GetAccount shows it, a send is refused with SES's error, an event
says so; the operator lifts it and sending resumes."""

import tempfile
import time

import pytest
from botocore.exceptions import ClientError

from conftest import events, wait_for
from fakemx import FakeMX
from test_delivery import start


def test_twelve_percent_bounces_pause_the_account_until_the_operator_lifts_it():
    with tempfile.TemporaryDirectory() as tmp:
        mx = FakeMX()
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n'
                       "[reputation]\nmin_volume = 50\ninterval_seconds = 1\n")
        try:
            a = w.account()
            a.verify("acme.test")
            a.quota("us-east-1", "--production", "--max-rate", "100")
            v2 = a.client("sesv2")
            content = {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}}
            assert v2.get_account()["EnforcementStatus"] == "HEALTHY"
            for i in range(50):
                to = f"nosuch+{i}@fake.test" if i % 25 < 3 else f"ok+{i}@fake.test"
                v2.send_email(FromEmailAddress="a@acme.test", Destination={"ToAddresses": [to]}, Content=content)
            acct = wait_for(lambda: (g := v2.get_account())["EnforcementStatus"] == "SHUTDOWN" and g,
                            timeout=30, what="the account paused")
            assert acct["SendingEnabled"] is False
            with pytest.raises(ClientError) as e:
                v2.send_email(FromEmailAddress="a@acme.test", Content=content,
                              Destination={"ToAddresses": ["ok@fake.test"]})
            assert e.value.response["Error"]["Code"] == "SendingPausedException"
            v1 = a.client("ses")
            assert v1.get_account_sending_enabled()["Enabled"] is False
            changes = events(w, "EnforcementChange")
            assert changes and changes[-1]["enforcement"]["to"] == "SHUTDOWN", changes
            assert abs(changes[-1]["enforcement"]["bounceRate"] - 0.12) < 1e-9, changes[-1]
            # The operator lifts it: sending works again, and the old bounces no longer count.
            w.cli("account", "quota", a.name, "--region", "us-east-1", "--enforcement", "HEALTHY")
            assert v2.get_account()["EnforcementStatus"] == "HEALTHY"
            v2.send_email(FromEmailAddress="a@acme.test", Content=content,
                          Destination={"ToAddresses": ["ok@fake.test"]})
            time.sleep(2.5)
            assert v2.get_account()["EnforcementStatus"] == "HEALTHY"
        finally:
            w.stop()


def test_an_unknown_enforcement_status_is_refused_and_changes_nothing(weir):
    """The operator's enforcement value is parsed into SES's three statuses: a wrong case, an
    unknown word, a number or a huge string is refused with the valid names, and the account
    keeps its status."""
    import subprocess
    from conftest import WEIR
    a = weir.account()
    for bad in ["healthy", "PAUSED", "1", "S" * 100_000]:
        r = subprocess.run([WEIR, "account", "quota", a.name, "--region", "us-east-1", "--enforcement", bad,
                            "--data-dir", str(weir.data_dir)], capture_output=True, text=True)
        assert r.returncode != 0, r.stdout
        assert "HEALTHY" in r.stderr and "PROBATION" in r.stderr and "SHUTDOWN" in r.stderr, r.stderr[:300]
    shown = weir.cli("account", "quota", a.name, "--region", "us-east-1")
    assert "HEALTHY" in shown, shown
