"""One tenant runs every attack of the hostile-tenant suite in a loop while another sends steadily
over the API and over SMTP; weir's memory is sampled throughout. Prints one JSON line.

    python3 benches/hostile_soak.py WEIR_BIN [SECONDS]

The attacks are the suite's (tests/external/test_hostile_tenants.py), each repeated as fast as
weir answers it: recursive, deep, explosive and helper-laden templates; forged, replayed and
oversized feedback; bodies that will fail their signature; verification floods; resource floods
and listings of large templates; unsubscribe replays; Resent-From, domain literals, session
tokens, made-up regions and a non-ASCII EHLO.
"""

import datetime
import email
import json
import multiprocessing
import smtplib
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "external"))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from conftest import Account, Weir  # noqa: E402
from fakemx import FakeMX  # noqa: E402
from reports import arf, dsn  # noqa: E402

SECS = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
stop = threading.Event()
counts = {}
lock = threading.Lock()


def count(name, outcome):
    with lock:
        counts.setdefault(name, {}).setdefault(outcome, 0)
        counts[name][outcome] += 1


def loop(name, f):
    """Run `f` until the end, counting outcomes; an attack that raises is an answered attack."""
    def run():
        while not stop.is_set():
            try:
                f()
                count(name, "accepted")
            except ClientError as e:
                count(name, e.response["Error"]["Code"])
            except (smtplib.SMTPException, OSError) as e:
                count(name, type(e).__name__)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def bystanders(base, smtp_addr, creds, secs, out):
    """Another tenant: SendEmail at 20 per second and an SMTP send at 5 per second (on one
    authenticated session, as pooling clients do), each in a process of its own, for `secs`."""
    def api(q):
        ses = boto3.client("ses", region_name="us-east-1", endpoint_url=base,
                           aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"],
                           config=Config(retries={"total_max_attempts": 1}))
        lat, fail, end = [], [], time.monotonic() + secs
        while time.monotonic() < end:
            t = time.monotonic()
            try:
                ses.send_email(Source="a@good.test", Destination={"ToAddresses": ["ok@fake.test"]},
                               Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
                lat.append(time.monotonic() - t)
            except Exception as e:  # noqa: BLE001
                fail.append(f"api: {e!r}")
            time.sleep(max(0.0, 0.05 - (time.monotonic() - t)))
        q.put((lat, fail))

    def smtp(q):
        ctx = ssl._create_unverified_context()
        lat, fail, end, s = [], [], time.monotonic() + secs, None
        while time.monotonic() < end:
            t = time.monotonic()
            try:
                if s is None:
                    s = smtplib.SMTP(*smtp_addr, timeout=10)
                    s.starttls(context=ctx)
                    s.login(creds["smtp_username"], creds["smtp_password"])
                    t = time.monotonic()
                s.sendmail("a@good.test", ["ok@fake.test"], b"From: a@good.test\r\nSubject: s\r\n\r\nb\r\n")
                lat.append(time.monotonic() - t)
            except Exception as e:  # noqa: BLE001
                fail.append(f"smtp: {e!r}")
                s = None
            time.sleep(max(0.0, 0.2 - (time.monotonic() - t)))
        q.put((lat, fail))

    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=f, args=(q,)) for f in (api, smtp)]
    for p in procs:
        p.start()
    (a_lat, a_fail), (b_lat, b_fail) = q.get(), q.get()
    for p in procs:
        p.join()
    # Which is which: the API sends far more.
    (api_lat, api_fail), (smtp_lat, smtp_fail) = sorted([(a_lat, a_fail), (b_lat, b_fail)], key=lambda x: -len(x[0]))
    out.put((api_lat, smtp_lat, api_fail + smtp_fail))


results_q = multiprocessing.Queue()


def main():
    mx = FakeMX()
    tmp = Path(tempfile.mkdtemp())
    fb_port = socket.socket()
    fb_port.bind(("127.0.0.1", 0))
    fb = fb_port.getsockname()[1]
    fb_port.close()
    (tmp / "weir.toml").write_text(
        f'[feedback]\nreturn_path_domain = "bounces.test"\nlisten = "127.0.0.1:{fb}"\n'
        '[verification]\nfrom = "no-reply@weir.test"\n'
        f'[delivery]\npoll_interval_ms = 50\nstarttls = false\nroutes = {{ "fake.test" = "127.0.0.1:{mx.port}" }}\n')
    import conftest
    conftest.WEIR = sys.argv[1]  # the release build under test, not the test suite's debug one
    (tmp / "data").mkdir()
    w = Weir(tmp / "data", extra_args=("--config", str(tmp / "weir.toml")), log=tmp / "weir.log").start()
    pid = w.proc.pid

    def make(name, domain):
        creds = json.loads(w.cli("account", "create", name, "--json"))
        a = Account(w, name, creds)
        a.verify(domain)
        a.quota("us-east-1", "--production", "--max-24h", "-1", "--max-rate", "-1")
        return a

    attacker, victim = make("attacker", "evil.test"), make("bystander", "good.test")
    cfg = Config(retries={"total_max_attempts": 1})

    def client(a, service="ses", **kw):
        return boto3.client(service, region_name=kw.get("region", "us-east-1"), endpoint_url=w.base,
                            aws_access_key_id=a.creds["access_key_id"],
                            aws_secret_access_key=a.creds["secret_access_key"],
                            aws_session_token=kw.get("token"), config=cfg)

    # --- the bystander: steady sends, API and SMTP, in processes of their own (the attacker's
    # threads must not slow the measuring client), every latency kept
    bystander = multiprocessing.Process(target=bystanders, args=(w.base, w.smtp, victim.creds, SECS, results_q))
    # --- the attacker's set-up
    ses, v2 = client(attacker), client(attacker, "sesv2")
    ses.create_template(Template={"TemplateName": "cube", "SubjectPart": "s",
                                  "TextPart": "{{#each a}}{{#each ../a}}{{#each ../../a}}{{this}}{{/each}}{{/each}}{{/each}}"})
    ses.create_template(Template={"TemplateName": "balloon", "SubjectPart": "s",
                                  "TextPart": "{{#each a}}{{#each ../a}}{{../../s}}{{/each}}{{/each}}"})
    for i in range(20):
        v2.create_email_template(TemplateName=f"big{i}", TemplateContent={"Subject": "s", "Text": "x" * 450_000})
    v2.create_contact_list(ContactListName="list", Topics=[{"TopicName": "news", "DisplayName": "n",
                                                             "DefaultSubscriptionStatus": "OPT_IN"}])
    cube_data = json.dumps({"a": list(range(2200))})
    balloon_data = json.dumps({"a": list(range(500)), "s": "x" * 2000})
    mid = ses.send_email(Source="a@evil.test", Destination={"ToAddresses": ["me@fake.test"]},
                         Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})["MessageId"]
    deadline = time.time() + 20
    while not mx.delivered_to("me@fake.test") and time.time() < deadline:
        time.sleep(0.05)
    rp = mx.delivered_to("me@fake.test")[0][1]
    unsub_mid = v2.send_email(FromEmailAddress="a@evil.test", Destination={"ToAddresses": ["u@fake.test"]},
                              Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
                              ListManagementOptions={"ContactListName": "list", "TopicName": "news"})["MessageId"]
    while not [m for m in mx.messages if "u@fake.test" in m[2]] and time.time() < deadline:
        time.sleep(0.05)
    unsub_mail = [m for m in mx.messages if "u@fake.test" in m[2]][0][3]
    unsub_url = email.message_from_bytes(unsub_mail)["List-Unsubscribe"].strip("<> \r\n")
    unsub_path = unsub_url.split("/", 3)[3]
    huge_dsn = dsn(rp, [(f"x{i}@fake.test", "5.1.1") for i in range(60_000)])
    deep = "{{#if a}}" * 2000 + "{{/if}}" * 2000

    def feedback(to, message):
        with smtplib.SMTP("127.0.0.1", fb, timeout=30) as c:
            c.sendmail("", [to], message)

    def garbage_body():
        now = datetime.datetime.now(datetime.timezone.utc)
        head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                f"Authorization: AWS4-HMAC-SHA256 Credential={victim.creds['access_key_id']}/{now:%Y%m%d}/us-east-1/"
                f"ses/aws4_request, SignedHeaders=host;x-amz-date, Signature={'0' * 64}\r\n"
                f"X-Amz-Date: {now:%Y%m%dT%H%M%SZ}\r\nContent-Length: 60000000\r\n\r\n").encode()
        host, port = w.base.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10, source_address=("127.0.0.9", 0)) as c:
            c.sendall(head)
            c.sendall(b"A" * 8_000_000)
            c.settimeout(3)
            try:
                c.recv(100)
            except socket.timeout:
                pass

    n = [0]

    def seq():
        n[0] += 1
        return n[0]

    attacks = {
        "partials": lambda: ses.create_template(Template={"TemplateName": "loop", "SubjectPart": "{{> text}}",
                                                          "TextPart": "{{> subject}}"}),
        "inline partial send": lambda: v2.send_email(
            FromEmailAddress="a@evil.test", Destination={"ToAddresses": ["x@fake.test"]},
            Content={"Template": {"TemplateContent": {"Subject": "{{> text}}", "Text": "{{> subject}}"},
                                  "TemplateData": "{}"}}),
        "2000 nested ifs": lambda: ses.create_template(Template={"TemplateName": "deep", "SubjectPart": "s",
                                                                 "TextPart": deep}),
        "nested each": lambda: ses.test_render_template(TemplateName="cube", TemplateData=cube_data),
        "nested each (2)": lambda: ses.test_render_template(TemplateName="cube", TemplateData=cube_data),
        "500 MB render": lambda: ses.test_render_template(TemplateName="balloon", TemplateData=balloon_data),
        "500 MB send": lambda: ses.send_templated_email(Source="a@evil.test",
                                                        Destination={"ToAddresses": ["x@fake.test"]},
                                                        Template="balloon", TemplateData=balloon_data),
        "log helper": lambda: ses.create_template(Template={"TemplateName": "log", "SubjectPart": "s",
                                                            "TextPart": '{{log "SMTP AUTH failed peer=1.2.3.4"}}'}),
        "forged complaints": lambda: feedback("fbl@bounces.test", arf("fbl@bounces.test", message_id=mid,
                                                                      rcpt_to="me@fake.test")),
        "replayed DSN": lambda: feedback(rp, dsn(rp, [("me@fake.test", "5.1.1")])),
        "60,000-group DSN": lambda: feedback(rp, huge_dsn),
        "garbage-signed bodies": garbage_body,
        "garbage-signed bodies (2)": garbage_body,
        "garbage-signed bodies (3)": garbage_body,
        "verification flood": lambda: v2.create_email_identity(EmailIdentity=f"stranger{seq()}@fake.test"),
        "template flood": lambda: v2.create_email_template(TemplateName=f"t{seq()}",
                                                           TemplateContent={"Subject": "s", "Text": "t"}),
        "configuration set flood": lambda: v2.create_configuration_set(ConfigurationSetName=f"c{seq()}"),
        "list large templates": lambda: ses.list_templates(MaxItems=10),
        "unsubscribe replay": lambda: urllib.request.urlopen(urllib.request.Request(
            f"{w.base}/{unsub_path}", data=b"List-Unsubscribe=One-Click", method="POST"), timeout=10).read(),
        "Resent-From": lambda: ses.send_raw_email(RawMessage={"Data": b"From: a@evil.test\r\nResent-From: a@good.test"
                                                                      b"\r\nTo: x@fake.test\r\nSubject: s\r\n\r\nb\r\n"}),
        "domain literal": lambda: ses.send_email(Source="a@evil.test", Destination={"ToAddresses": ["r@[127.0.0.1]"]},
                                                 Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}),
        "session token": lambda: client(attacker, token="FwoGZXIvYXdzEBY").get_send_quota(),
        "made-up region": lambda: client(attacker, region="zz-fake-1").get_send_quota(),
    }

    rss, stop_rss = [], threading.Event()

    def sample():
        while not stop_rss.is_set():
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    rss.append(int(line.split()[1]) / 1024)
            time.sleep(0.25)

    threading.Thread(target=sample, daemon=True).start()
    # Side by side in one run: the same bystander alone first, then under attack.
    quiet = multiprocessing.Process(target=bystanders, args=(w.base, w.smtp, victim.creds, SECS / 3, results_q))
    quiet.start()
    quiet.join(timeout=SECS + 120)
    base_api, base_smtp, base_failures = results_q.get(timeout=10)
    bystander.start()  # forked before the attack threads exist
    threads = [loop(name, f) for name, f in attacks.items()]
    bystander.join(timeout=SECS + 120)
    lat_api, lat_smtp, failures = results_q.get(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    stop_rss.set()
    alive = w.proc.poll() is None and w.proc.pid == pid
    bounces = sum(1 for line in (tmp / "data" / "events.jsonl").read_text().splitlines()
                  if '"eventType":"Bounce"' in line and mid in line)
    complaints = sum(1 for line in (tmp / "data" / "events.jsonl").read_text().splitlines()
                     if '"eventType":"Complaint"' in line and mid in line)
    subscriptions = sum(1 for line in (tmp / "data" / "events.jsonl").read_text().splitlines()
                        if '"eventType":"Subscription"' in line and unsub_mid in line)
    w.stop()

    def p(xs, q):
        xs = sorted(xs)
        return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else None

    print(json.dumps({
        "seconds": SECS,
        "baseline_api": {"sent": len(base_api), "p50_ms": p(base_api, 0.5), "p99_ms": p(base_api, 0.99)},
        "baseline_smtp": {"sent": len(base_smtp), "p50_ms": p(base_smtp, 0.5), "p99_ms": p(base_smtp, 0.99)},
        "baseline_failures": len(base_failures),
        "bystander_api": {"sent": len(lat_api), "p50_ms": p(lat_api, 0.5), "p99_ms": p(lat_api, 0.99),
                          "max_ms": p(lat_api, 1.0)},
        "bystander_smtp": {"sent": len(lat_smtp), "p50_ms": p(lat_smtp, 0.5), "p99_ms": p(lat_smtp, 0.99),
                           "max_ms": p(lat_smtp, 1.0)},
        "bystander_failures": failures[:5],
        "bystander_failure_count": len(failures),
        "rss_mb": {"start": round(rss[0]) if rss else None, "max": round(max(rss)) if rss else None,
                   "end": round(rss[-1]) if rss else None},
        "same_process_alive": alive,
        "events_from_the_attack": {"bounces": bounces, "complaints": complaints, "subscriptions": subscriptions},
        "attacks": {k: sum(v.values()) for k, v in counts.items()},
        "attack_outcomes": counts,
    }))


if __name__ == "__main__":
    main()
