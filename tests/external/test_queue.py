"""Queue control end to end: mail sent with aws-cli to a receiver that keeps deferring it, then
listed, shown, held, released, retried and deleted with `weir queue …` against the running
server (its admin API)."""

import json
import sqlite3
import subprocess
import tempfile
import time

from conftest import WEIR, events, wait_for
from fakemx import FakeMX
from test_delivery import sender
from test_delivery import start as start_delivering


def start(tmp, routes):
    """A server whose deferred recipients wait 30 s: they sit `queued` while commands run."""
    return start_delivering(tmp, routes, retry_first=30, retry_max=60)


def send(acct, *to):
    r = acct.aws("ses", "send-email", "--from", "a@acme.test", "--destination", "ToAddresses=" + ",".join(to),
                 "--message", "Subject={Data=s},Body={Text={Data=b}}")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["MessageId"]


def show(w, mid):
    return {r["address"]: r for r in json.loads(w.cli("queue", "show", mid, "--json"))}


def test_hold_release_retry_and_delete_a_deferred_message():
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            acct = sender(w, "--production", "--max-rate", "100")
            mid = send(acct, "defer@fake.test", "ok@fake.test")
            r = wait_for(lambda: show(w, mid)["defer@fake.test"]["attempts"] >= 1 and show(w, mid), what="a deferral")
            assert r["ok@fake.test"]["state"] == "delivered"
            d = r["defer@fake.test"]
            assert d["state"] == "queued" and d["last_reply"].startswith("451") and d["next_attempt_ms"], d
            assert d["lane"], d
            listed = json.loads(w.cli("queue", "list", "--state", "queued", "--json"))
            assert [(x["message_id"], x["address"]) for x in listed] == [(mid, "defer@fake.test")]
            assert json.loads(w.cli("queue", "list", "--recipient", "nobody@fake.test", "--json")) == []

            # Held: no attempts until released, even when it falls due.
            assert "1 recipient" in w.cli("queue", "hold", mid)
            tried = len(mx.attempts["defer@fake.test"])
            db = sqlite3.connect(w.data_dir / "weir.db")
            db.execute("UPDATE recipients SET next_attempt_ms = 0 WHERE message_id = ?", (mid,))
            db.commit()
            db.close()
            assert "0 recipient" in w.cli("queue", "retry", mid)  # retry applies to queued ones only
            time.sleep(3)
            assert len(mx.attempts["defer@fake.test"]) == tried, "attempted while held"
            summary = json.loads(w.cli("queue", "summary", "--json"))
            assert [(s["state"], s["recipients"]) for s in summary] == [("held", 1)], summary
            assert w.cli("spool", "count").strip() == "1"

            # Released: attempted again at once.
            assert "1 recipient" in w.cli("queue", "release", mid)
            wait_for(lambda: len(mx.attempts["defer@fake.test"]) > tried, what="an attempt after release")
            wait_for(lambda: show(w, mid)["defer@fake.test"]["state"] == "queued", what="queued after the attempt")
            tried = len(mx.attempts["defer@fake.test"])
            assert "1 recipient" in w.cli("queue", "retry", "--recipient", "defer@fake.test")
            wait_for(lambda: len(mx.attempts["defer@fake.test"]) > tried, what="an attempt after retry")

            # Deleted: out of the queue with a Bounce event, and never attempted again.
            wait_for(lambda: show(w, mid)["defer@fake.test"]["state"] == "queued", what="queued between attempts")
            assert "1 recipient" in w.cli("queue", "delete", mid)
            b = wait_for(lambda: [e for e in events(w, "Bounce") if e["mail"]["messageId"] == mid], what="the bounce")
            assert b[0]["bounce"]["bouncedRecipients"][0]["emailAddress"] == "defer@fake.test"
            assert "operator" in b[0]["bounce"]["bouncedRecipients"][0]["diagnosticCode"]
            assert show(w, mid)["defer@fake.test"]["state"] == "bounced"
            tried = len(mx.attempts["defer@fake.test"])
            time.sleep(3)
            assert len(mx.attempts["defer@fake.test"]) == tried
            assert json.loads(w.cli("queue", "summary", "--json")) == []
            assert w.cli("spool", "count").strip() == "0"
        finally:
            w.stop()


def test_queue_commands_refuse_bad_input_clearly():
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
        try:
            def fails(*args):
                r = subprocess.run([WEIR, *args, "--data-dir", str(w.data_dir)], capture_output=True, text=True)
                assert r.returncode != 0, r.stdout
                return r.stderr
            assert "unknown state 'stuck'" in fails("queue", "list", "--state", "stuck")
            assert "give a MessageId or at least one filter" in fails("queue", "hold")
            assert "no message nope" in fails("queue", "show", "nope")
        finally:
            w.stop()
