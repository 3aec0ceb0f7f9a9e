"""Cluster mode: three `weir serve` nodes sharing one real redis-server (Debian's package,
started here on loopback without persistence), driven by boto3, aws-cli's signer (through
weir-loadgen's official SigV4 signer) and smtplib. Quotas are per account and region, not per
node; the catalog made on one node is seen on the others; Redis killed and restarted empty
neither loses mail nor resets anyone's quota."""

import json
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import WEIR, Account, ROOT, Weir, free_port, wait_for
from fakemx import FakeMX

if shutil.which("redis-server") is None:
    pytest.fail("redis-server is missing: apt-get install redis-server (as .ci/run does)", pytrace=False)

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE  # each node made itself a self-signed certificate
LOADGEN = ROOT / "target" / "debug" / "weir-loadgen"


PASSWORD = "cluster-test-password"


class Redis:
    """A redis-server on a fixed loopback port, with a password, without persistence: a restart
    comes back empty."""

    def __init__(self, tmp):
        self.port, self.dir, self.proc = free_port(), tmp, None
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", PASSWORD, "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.answers(), timeout=10, what="redis-server")
        return self

    def command(self, *args):
        """One command, authenticated, through redis-cli."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", PASSWORD, *args],
                             capture_output=True, text=True, timeout=10)
        return out.stdout

    def answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(f"AUTH {PASSWORD}\r\nPING\r\n".encode())
                time.sleep(0.05)
                return b"+PONG" in s.recv(64)
        except OSError:
            return False

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def cluster_key(tmp):
    """The cluster's key, made once with `weir cluster keygen`, in a file of mode 0600."""
    path = Path(tmp) / "cluster.key"
    if not path.exists():
        key = subprocess.run([WEIR, "cluster", "keygen"], capture_output=True, text=True, check=True).stdout
        path.write_text(key)
        path.chmod(0o600)
    return path


def node(tmp, name, redis, delivery=""):
    data = Path(tmp) / name
    data.mkdir()
    cfg = Path(tmp) / f"{name}.toml"
    cfg.write_text(f'[cluster]\nredis = "{redis.url}"\nnode = "{name}"\ntimeout_ms = 300\n'
                   f'key_file = "{cluster_key(tmp)}"\n'
                   + (f"[delivery]\npoll_interval_ms = 50\nstarttls = false\n{delivery}" if delivery else ""))
    args = ("--config", str(cfg)) if delivery else ("--no-delivery", "--config", str(cfg))
    return Weir(data, extra_args=args, log=Path(tmp) / f"{name}.log").start()


@pytest.fixture
def cluster():
    with tempfile.TemporaryDirectory() as tmp:
        redis = Redis(Path(tmp)).start()
        mx = FakeMX()
        nodes = [node(tmp, "n1", redis, f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n'),
                 node(tmp, "n2", redis), node(tmp, "n3", redis)]
        try:
            yield redis, nodes, mx
        finally:
            for w in nodes:
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
            if redis.proc.poll() is None:
                redis.kill()


def eventually(f, timeout=1, what="condition"):
    """`f()` succeeds within `timeout` seconds: returns True, or (a call) returns anything but a
    bool without raising; a client error counts as not yet."""
    def attempt():
        try:
            r = f()
        except botocore.exceptions.ClientError:
            return False
        return r if isinstance(r, bool) else True
    return wait_for(attempt, timeout=timeout, what=what)


def account_on(w, nodes, *quota_flags):
    """An account created through node `w`, allowed to send from acme.test, once every node in
    `nodes` has its identity and quota."""
    a = w.account()
    a.verify("acme.test")
    if quota_flags:
        a.quota("us-east-1", *quota_flags)
    want = a.client().get_send_quota()
    for n in nodes:
        ses = on(a, n).client()
        eventually(lambda: ses.get_send_quota()["MaxSendRate"] == want["MaxSendRate"]
                   and ses.get_send_quota()["Max24HourSend"] == want["Max24HourSend"]
                   and ses.get_identity_verification_attributes(Identities=["acme.test"])
                   ["VerificationAttributes"].get("acme.test", {}).get("VerificationStatus") == "Success",
                   what=f"the account's settings on {n.base}")
    return a


def on(a, w):
    """The same account's credentials, aimed at node `w`."""
    return Account(w, a.name, a.creds)


def send_v1(ses, to="r@example.test"):
    return ses.send_email(Source="s@acme.test", Destination={"ToAddresses": [to]},
                          Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})


def smtp_send(w, a, to="r@example.test"):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "s@acme.test", to, "s"
    m.set_content("b")
    with smtplib.SMTP(*w.smtp, timeout=10) as s:
        s.starttls(context=TLS)
        s.login(a.creds["smtp_username"], a.creds["smtp_password"])
        s.send_message(m)


def metrics(w):
    import urllib.request
    token = (w.data_dir / "admin-token").read_text().strip()
    req = urllib.request.Request(w.base + "/metrics", headers={"Authorization": f"Bearer {token}"})
    return urllib.request.urlopen(req, timeout=10).read().decode()


def spooled(w, account):
    out = w.cli("queue", "list", "--account", account, "--limit", "100000", "--json")
    return json.loads(out)


def test_catalog_changes_on_one_node_reach_every_node_within_a_second(cluster):
    _, (n1, n2, n3), _ = cluster
    t0 = time.time()
    a = n1.account()
    for w in (n2, n3):
        eventually(lambda: on(a, w).client().get_send_quota(), what=f"the account on {w.base}")
    seen = time.time() - t0
    # An identity made on n2 and a quota set on n3 govern a send through n1.
    n2.cli("identity", "add", a.name, "--region", "us-east-1", "acme.test", "--verified")
    n3.cli("account", "quota", a.name, "--region", "us-east-1", "--production", "--max-24h", "1000")
    eventually(lambda: on(a, n1).client().get_send_quota()["Max24HourSend"] == 1000, what="the quota on n1")
    eventually(lambda: send_v1(on(a, n1).client(), "anyone@example.test"), what="a send through n1")
    # A suppressed address put through n3's API is on the list n1 and n2 see.
    on(a, n3).client("sesv2").put_suppressed_destination(EmailAddress="gone@example.test", Reason="BOUNCE")
    for w in (n1, n2):
        eventually(lambda: on(a, w).client("sesv2").get_suppressed_destination(EmailAddress="gone@example.test"),
                   what="the suppression")
    on(a, n1).client("sesv2").delete_suppressed_destination(EmailAddress="gone@example.test")

    def gone_on_n3():
        try:
            on(a, n3).client("sesv2").get_suppressed_destination(EmailAddress="gone@example.test")
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"] == "NotFoundException"
    wait_for(gone_on_n3, timeout=1, what="the deletion on n3")
    # One name, one account, cluster-wide; ids never collide.
    dup = subprocess.run([str(ROOT / "target" / "debug" / "weir"), "account", "create", a.name,
                          "--data-dir", str(n2.data_dir)], capture_output=True, text=True)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    b = n2.account()
    c = n3.account()
    wait_for(lambda: {a.name, b.name, c.name} <= {x["name"] for x in json.loads(n1.cli("account", "list", "--json"))},
             timeout=1, what="accounts made on n2 and n3 listed on n1")
    print(f"catalog: account visible on the other nodes after {seen * 1000:.0f} ms")


def test_daily_quota_is_shared_exactly_across_nodes_and_front_doors(cluster):
    _, nodes, _ = cluster
    a = account_on(nodes[0], nodes, "--production", "--max-24h", "300", "--max-rate", "-1")
    outcomes = []
    lock = threading.Lock()

    def v1(w):
        ses = on(a, w).client()
        for _ in range(30):
            try:
                send_v1(ses)
                r = "ok"
            except botocore.exceptions.ClientError as e:
                r = (e.response["Error"]["Code"], e.response["Error"]["Message"])
            with lock:
                outcomes.append(r)

    def v2(w):
        ses = on(a, w).client("sesv2")
        for _ in range(30):
            try:
                ses.send_email(FromEmailAddress="s@acme.test", Destination={"ToAddresses": ["r@example.test"]},
                               Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}})
                r = "ok"
            except botocore.exceptions.ClientError as e:
                r = (e.response["Error"]["Code"], e.response["Error"]["Message"])
            with lock:
                outcomes.append(r)

    def smtp(w):
        for _ in range(30):
            try:
                smtp_send(w, a)
                r = "ok"
            except smtplib.SMTPResponseException as e:
                r = (e.smtp_code, e.smtp_error.decode())
            with lock:
                outcomes.append(r)

    threads = [threading.Thread(target=f, args=(w,)) for w in nodes for f in (v1, v1, v2, smtp)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 360
    refusals = [o for o in outcomes if o != "ok"]
    # Exactly the quota, not a recipient more or less, across three nodes and three front doors.
    assert len(outcomes) - len(refusals) == 300, set(refusals)
    assert all("Daily message quota exceeded" in str(r[1]) for r in refusals), set(refusals)
    for w in nodes:
        assert on(a, w).client().get_send_quota()["SentLast24Hours"] == 300
    # Every accepted message is in the spool of the node that accepted it.
    assert sum(len(spooled(w, a.name)) for w in nodes) == 300


def loadgen(w, a, seconds, out):
    p = subprocess.run([str(LOADGEN), "--endpoint", w.base, "--access-key", a.creds["access_key_id"],
                        "--secret", a.creds["secret_access_key"], "--concurrency", "32", "--duration", str(seconds),
                        "--from", "s@acme.test", "--to", "r@example.test"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out.append(json.loads(p.stdout.strip().splitlines()[-1]))


def test_send_rate_is_shared_across_nodes_at_over_1000_requests_per_second(cluster):
    _, nodes, _ = cluster
    rate = 50
    a = account_on(nodes[0], nodes, "--production", "--max-24h", "-1", "--max-rate", str(rate), "--burst-seconds", "1")
    results = []
    boto_ok = []

    def boto(w, stop):
        ses = on(a, w).client()
        while not stop.is_set():
            try:
                send_v1(ses)
                boto_ok.append(1)
            except botocore.exceptions.ClientError as e:
                assert e.response["Error"]["Code"] == "Throttling", e.response
    stop = threading.Event()
    t0 = time.time()
    threads = [threading.Thread(target=loadgen, args=(w, a, 4, results)) for w in nodes]
    threads += [threading.Thread(target=boto, args=(w, stop)) for w in nodes]
    for t in threads:
        t.start()
    for t in threads[:3]:
        t.join()
    stop.set()
    for t in threads[3:]:
        t.join()
    elapsed = time.time() - t0
    attempts = sum(r["accepted"] + r["errors"] for r in results)
    accepted = sum(r["accepted"] for r in results) + len(boto_ok)
    per_second = attempts / 4
    print(f"rate: {attempts} loadgen requests in 4 s ({per_second:.0f}/s) + boto3; "
          f"{accepted} accepted over {elapsed:.2f} s at {rate}/s")
    assert per_second >= 1000, f"only {per_second:.0f} requests/s"
    # GCRA with one second of burst: at most rate * elapsed + rate (the burst) + 1.
    assert accepted <= rate * elapsed + rate + 1
    assert accepted >= rate * 4 * 0.8, "the shared rate is used, not starved"
    # The same figure as the shared counters.
    assert on(a, nodes[2]).client().get_send_quota()["SentLast24Hours"] == accepted


def test_redis_killed_and_restarted_empty_refuses_then_recovers_without_reset(cluster):
    redis, nodes, mx = cluster
    n1 = nodes[0]
    a = account_on(n1, nodes, "--production", "--max-24h", "200", "--max-rate", "-1")
    accepted = []
    for i in range(120):
        w = nodes[i % 3]
        accepted.append(send_v1(on(a, w).client())["MessageId"])
    # Mail n1 accepted for fake.test is held at the MX's end-of-data while Redis goes away.
    mx.hold.set()
    for i in range(5):
        accepted.append(send_v1(on(a, n1).client(), f"d{i}@fake.test")["MessageId"])
    wait_for(lambda: mx.transactions >= 1, what="a delivery under way")
    redis.kill()
    mx.hold.clear()
    down_started = time.time()
    # Refused the way SES throttles, with Retry-After, on every front door of every node.
    for w in nodes:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            send_v1(on(a, w).client())
        assert e.value.response["Error"]["Code"] == "Throttling"
        assert e.value.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after") == "1"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            on(a, w).client("sesv2").send_email(
                FromEmailAddress="s@acme.test", Destination={"ToAddresses": ["r@example.test"]},
                Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}})
        assert e.value.response["Error"]["Code"] == "TooManyRequestsException"
        with pytest.raises(smtplib.SMTPResponseException) as e:
            smtp_send(w, a)
        assert e.value.smtp_code == 454
    # The operator sees it: `weir cluster status` and the metrics of any node.
    st = wait_for(lambda: (v := json.loads(nodes[2].cli("cluster", "status", "--json")))["redis_up"] is False and v,
                  timeout=5, what="redis seen down")
    assert st["epoch"] is None and st["node"] == "n3"
    assert 'weir_cluster_admitting{node="n3"} 0' in metrics(nodes[2])
    assert 'reason="unavailable"' in metrics(nodes[2])
    # Delivery does not need Redis: what n1 accepted reaches the MX while Redis is down.
    wait_for(lambda: len(mx.messages) >= 5, what="deliveries while redis is down")
    assert not redis.answers()
    assert time.time() - down_started < 20
    # Redis comes back empty; the nodes re-seed it from their ledgers and admit again.
    redis.start()
    t_back = time.time()

    def admits(w):
        def attempt():
            try:
                accepted.append(send_v1(on(a, w).client())["MessageId"])
                return True
            except botocore.exceptions.ClientError as e:
                assert e.response["Error"]["Code"] == "Throttling", e.response
                return False
        return attempt
    wait_for(admits(nodes[1]), timeout=15, what="sends admitted again")
    print(f"redis restart: admitting again {time.time() - t_back:.2f} s after redis answered")
    for w in nodes:
        wait_for(admits(w), timeout=5, what=f"sends admitted again on {w.base}")
    st = json.loads(nodes[0].cli("cluster", "status", "--json"))
    assert st["redis_up"] and st["epoch"] and st["members"] == ["n1", "n2", "n3"], st
    assert 'weir_cluster_admitting{node="n1"} 1' in metrics(nodes[0])
    # Nobody's quota was reset: 125 + 4 were spent, so exactly 71 more pass, then none.
    for i in range(100):
        try:
            accepted.append(send_v1(on(a, nodes[i % 3]).client())["MessageId"])
        except botocore.exceptions.ClientError as e:
            assert "Daily message quota exceeded" in e.response["Error"]["Message"], e.response
    assert len(accepted) == 200
    # 0 lost: every accepted MessageId is in some node's spool.
    spool = set()
    for w in nodes:
        spool |= {r["message_id"] for r in spooled(w, a.name)}
    assert set(accepted) <= spool
    # The catalog came back too: an account made after the restart is seen everywhere.
    b = nodes[2].account()
    eventually(lambda: on(b, n1).client().get_send_quota(), timeout=2, what="a new account after the restart")


def test_a_redis_that_hangs_is_refused_within_the_timeout_and_resumed_after(cluster):
    redis, nodes, _ = cluster
    a = account_on(nodes[0], nodes, "--production", "--max-24h", "-1", "--max-rate", "-1")
    send_v1(on(a, nodes[2]).client())
    redis.proc.send_signal(signal.SIGSTOP)  # alive, listening, answering nothing
    try:
        t = time.time()
        with pytest.raises(botocore.exceptions.ClientError) as e:
            send_v1(on(a, nodes[2]).client())
        waited = time.time() - t
        assert e.value.response["Error"]["Code"] == "Throttling"
        # timeout_ms = 300, one retry after a timeout: well under two seconds, not a hang.
        assert waited < 2, f"refused after {waited:.2f} s"
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    eventually(lambda: send_v1(on(a, nodes[2]).client()), timeout=10, what="sends admitted again")


def test_templates_and_configuration_sets_made_on_one_node_serve_sends_on_the_others(cluster):
    _, (n1, n2, n3), _ = cluster
    a = account_on(n1, (n1, n2, n3), "--production", "--max-24h", "-1", "--max-rate", "-1")
    on(a, n1).client().create_template(Template={"TemplateName": "welcome", "SubjectPart": "Hi {{name}}",
                                                 "TextPart": "Hello {{name}}"})
    on(a, n3).client().create_configuration_set(ConfigurationSet={"Name": "marketing"})
    ses2 = on(a, n2).client()
    sent = []
    eventually(lambda: sent.append(ses2.send_templated_email(
        Source="s@acme.test", Destination={"ToAddresses": ["r@example.test"]}, Template="welcome",
        TemplateData='{"name": "Ada"}', ConfigurationSetName="marketing")), what="the template and set on n2")
    assert sent[0]["MessageId"]
    # Paused on n1 (once n1 has the set): refused on n2 as soon as the change arrives.
    eventually(lambda: on(a, n1).client().describe_configuration_set(ConfigurationSetName="marketing"),
               what="the set on n1")
    on(a, n1).client().update_configuration_set_sending_enabled(ConfigurationSetName="marketing", Enabled=False)

    def paused():
        try:
            send_v1(ses2)
            ses2.send_templated_email(Source="s@acme.test", Destination={"ToAddresses": ["r@example.test"]},
                                      Template="welcome", TemplateData='{"name": "Ada"}',
                                      ConfigurationSetName="marketing")
            return False
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"] == "ConfigurationSetSendingPausedException"
    wait_for(paused, timeout=1, what="the paused set on n2")
    # Deleted on n2: gone on n3.
    ses2.delete_template(TemplateName="welcome")

    def gone():
        try:
            on(a, n3).client().get_template(TemplateName="welcome")
            return False
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"] == "TemplateDoesNotExist"
    wait_for(gone, timeout=1, what="the deleted template on n3")


def test_dkim_keys_made_on_one_node_are_the_keys_of_every_node(cluster):
    _, (n1, n2, n3), _ = cluster
    a = account_on(n1, (n1, n2, n3))
    made = on(a, n1).client("sesv2").create_email_identity(EmailIdentity="dk.test")["DkimAttributes"]
    assert len(made["Tokens"]) == 3

    def same_keys():
        got = on(a, n3).client("sesv2").get_email_identity(EmailIdentity="dk.test")["DkimAttributes"]
        return got["Tokens"] == made["Tokens"] and got["SigningEnabled"]
    eventually(same_keys, what="the DKIM selectors on n3")
    # Disabled through n2: disabled on n1.
    eventually(lambda: on(a, n2).client("sesv2").put_email_identity_dkim_attributes(
        EmailIdentity="dk.test", SigningEnabled=False), what="the identity on n2")
    eventually(lambda: not on(a, n1).client("sesv2").get_email_identity(EmailIdentity="dk.test")
               ["DkimAttributes"]["SigningEnabled"], what="signing disabled on n1")


def test_a_shared_lane_cap_paces_the_lane_across_nodes():
    """Two nodes deliver to one receiver through a lane capped at 600/min cluster-wide: together
    they take the time one capped sender would, where each alone is unlimited."""
    with tempfile.TemporaryDirectory() as tmp:
        redis = Redis(Path(tmp)).start()
        mx = FakeMX()
        lane = f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n' \
               f'[delivery.lanes."route:127.0.0.1:{mx.port}"]\nmax_connections = 4\ncluster_messages_per_minute = 600\n'
        nodes = [node(tmp, "n1", redis, lane), node(tmp, "n2", redis, lane)]
        try:
            a = account_on(nodes[0], nodes, "--production", "--max-24h", "-1", "--max-rate", "-1")
            for i in range(30):
                for w in nodes:
                    send_v1(on(a, w).client(), f"r{i}-{w.data_dir.name}@fake.test")
            wait_for(lambda: len(mx.messages) >= 60, timeout=30, what="60 deliveries")
            times = sorted(m[0] for m in mx.messages)
            span = times[-1] - times[0]
            # 10 a second with a second of burst: 60 messages need at least ~4.8 s in all.
            assert span >= 4.5, f"60 messages in {span:.2f} s: the cap was not shared"
            assert span <= 12, f"60 messages in {span:.2f} s: starved"
            senders = {m[2][0].split("-")[1].split("@")[0] for m in mx.messages}
            assert senders == {"n1", "n2"}
            print(f"shared lane cap: 60 messages from two nodes over {span:.2f} s at 600/min")
        finally:
            for w in nodes:
                w.proc.kill()
                w.proc.wait()
            redis.kill()


def test_redis_killed_and_restarted_under_concurrent_load_loses_nothing_and_over_sends_nothing(cluster):
    """boto3 and smtplib senders on all three nodes, without pause, while Redis is killed and
    restarted empty: every answer is an acceptance, SES's throttling error (Redis away) or the
    daily quota; exactly the quota is accepted in all; every accepted message is spooled."""
    import collections
    redis, nodes, _ = cluster
    quota = 1500
    a = account_on(nodes[0], nodes, "--production", "--max-24h", str(quota), "--max-rate", "-1")
    accepted, outcomes, lock, stop = [], collections.Counter(), threading.Lock(), threading.Event()
    phase = ["before"]

    def record(kind, mid=None):
        with lock:
            outcomes[(phase[0], kind)] += 1
            if mid:
                accepted.append(mid)

    def api(w):
        ses = on(a, w).client()
        while not stop.is_set():
            try:
                record("ok", send_v1(ses)["MessageId"])
            except botocore.exceptions.ClientError as e:
                err = e.response["Error"]
                record("daily" if "Daily message quota" in err["Message"] else f'{err["Code"]}: {err["Message"]}')

    def smtp(w):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "s@acme.test", "r@example.test", "s"
        m.set_content("b")
        while not stop.is_set():
            with smtplib.SMTP(*w.smtp, timeout=10) as s:
                s.starttls(context=TLS)
                s.login(a.creds["smtp_username"], a.creds["smtp_password"])
                while not stop.is_set():
                    code, text = s.mail("s@acme.test")
                    if code != 250:
                        record("daily" if b"Daily message quota" in text else f"{code} {text.decode()}")
                        s.rset()
                        continue
                    s.rcpt("r@example.test")
                    code, text = s.data(m.as_bytes())
                    if code == 250:
                        record("ok", text.decode().split()[-1])
                    else:
                        record("daily" if b"Daily message quota" in text else f"{code} {text.decode()}")

    threads = [threading.Thread(target=f, args=(w,), daemon=True) for w in nodes for f in (api, api, smtp)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with lock:
        phase[0] = "down"
    redis.kill()
    time.sleep(1.5)
    with lock:
        phase[0] = "after"
    redis.start()
    wait_for(lambda: outcomes[("after", "daily")] >= 30, timeout=40, what="the daily quota reached after the restart")
    stop.set()
    for t in threads:
        t.join(timeout=15)
    print("redis killed under load:", dict(outcomes))
    kinds = {k for _, k in outcomes}

    def unavailable(k):
        return k == "Throttling: Rate exceeded" or (k.startswith("454 ") and "Temporary service failure" in k)
    assert all(k in ("ok", "daily") or unavailable(k) for k in kinds), kinds
    assert sum(n for (p, k), n in outcomes.items() if p == "down" and unavailable(k)) > 0, "the kill was not felt"
    assert outcomes[("before", "ok")] > 0 and outcomes[("after", "ok")] > 0
    # 0 over-send: exactly the quota across the outage (a reset would have allowed more).
    assert len(accepted) == quota == len(set(accepted))
    # 0 lost: every acceptance is in a spool.
    spool = set()
    for w in nodes:
        spool |= {r["message_id"] for r in spooled(w, a.name)}
    assert set(accepted) <= spool


def test_a_forgotten_node_is_not_waited_for_when_redis_comes_back_empty(cluster):
    redis, (n1, n2, n3), _ = cluster
    a = account_on(n1, (n1, n2), "--production", "--max-24h", "-1", "--max-rate", "-1")
    send_v1(on(a, n2).client())
    n3.proc.kill()  # n3 leaves for good
    n3.proc.wait()
    out = subprocess.run([str(ROOT / "target" / "debug" / "weir"), "cluster", "forget", "n1",
                          "--data-dir", str(n1.data_dir)], capture_output=True, text=True)
    assert out.returncode != 0 and "this node" in out.stderr
    n1.cli("cluster", "forget", "n3")
    for w in (n1, n2):
        wait_for(lambda: json.loads(w.cli("cluster", "status", "--json"))["members"] == ["n1", "n2"], timeout=1,
                 what=f"n3 forgotten on {w.base}")
    # reseed_wait is 30 s: had n3 still been a member, nothing would be admitted for 30 s.
    redis.kill()
    redis.start()
    t = time.time()
    eventually(lambda: send_v1(on(a, n2).client()), timeout=10, what="sends admitted again without n3")
    assert time.time() - t < 10


def test_reputation_is_judged_on_every_nodes_sending():
    """Two nodes each deliver 30 messages, too few on either for a verdict (min_volume 50); 7 of
    the 60 bounce (11.7 %): judged on the sum, the account is paused, on both nodes."""
    with tempfile.TemporaryDirectory() as tmp:
        redis = Redis(Path(tmp)).start()
        mx = FakeMX()
        cfg = f'routes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n[reputation]\nmin_volume = 50\ninterval_seconds = 1\n'
        nodes = [node(tmp, "n1", redis, cfg), node(tmp, "n2", redis, cfg)]
        try:
            a = account_on(nodes[0], nodes, "--production", "--max-24h", "-1", "--max-rate", "-1")
            for i in range(30):
                for k, w in enumerate(nodes):
                    bad = (i < 4) if k == 0 else (i < 3)
                    send_v1(on(a, w).client(), f"nosuch+{k}-{i}@fake.test" if bad else f"ok+{k}-{i}@fake.test")
            for w in nodes:
                wait_for(lambda: on(a, w).client("sesv2").get_account()["EnforcementStatus"] == "SHUTDOWN",
                         timeout=30, what=f"the account paused on {w.base}")
        finally:
            for w in nodes:
                w.proc.kill()
                w.proc.wait()
            redis.kill()


def test_send_statistics_on_any_node_count_every_nodes_sending(cluster):
    _, (n1, n2, n3), _ = cluster
    a = account_on(n1, (n1, n2, n3), "--production", "--max-24h", "-1", "--max-rate", "-1")
    for i, w in enumerate((n1, n2, n2, n3, n3, n3)):
        send_v1(on(a, w).client(), f"r{i}@example.test")
    with pytest.raises(botocore.exceptions.ClientError):  # a reject on n2: unverified source
        on(a, n2).client().send_email(Source="s@unverified.test", Destination={"ToAddresses": ["r@example.test"]},
                                      Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})

    def totals(w):
        pts = on(a, w).client().get_send_statistics()["SendDataPoints"]
        return sum(p["DeliveryAttempts"] for p in pts), sum(p["Rejects"] for p in pts)
    for w in (n1, n2, n3):
        wait_for(lambda: totals(w) == (6, 1), timeout=3, what=f"every node's statistics on {w.base}")
