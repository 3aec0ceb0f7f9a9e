"""Slow-client soak: a normal client keeps sending (SendEmail over HTTP with boto3, and SMTP with
smtplib) while thousands of hostile connections sit idle, trickle headers or bodies, or start
60 MB unauthenticated uploads. Prints one JSON line per phase: sends done and failed, latency,
and weir's descriptors and memory.

    python3 benches/slow_clients.py WEIR_BIN DATA_DIR SECONDS HOSTILE
"""

import json
import os
import resource
import selectors
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time

import boto3
from botocore.config import Config

WEIR, DATA, SECS, HOSTILE = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cli(*args):
    return subprocess.run([WEIR, *args, "--data-dir", DATA], check=True, capture_output=True, text=True).stdout


info = json.load(open(f"{DATA}/server.json"))
http_host, http_port = info["http"].removeprefix("http://").rsplit(":", 1)
smtp_host, smtp_port = info["smtp"].rsplit(":", 1)
creds = json.loads(cli("account", "create", "soak", "--json"))
cli("account", "quota", "soak", "--region", "us-east-1", "--production", "--max-24h", "-1", "--max-rate", "-1")
cli("identity", "add", "soak", "--region", "us-east-1", "soak.test", "--verified")
pid = int(subprocess.run(["pgrep", "-f", f"serve.*{DATA}"], capture_output=True, text=True).stdout.split()[0])


def weir_usage():
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")) // 1024
    return fds, rss


class Normal(threading.Thread):
    """One API client and one SMTP client, each sending one message after another."""

    def __init__(self, kind):
        super().__init__(daemon=True)
        self.kind, self.lat, self.failed, self.errors, self.stop = kind, [], 0, {}, False

    def run(self):
        if self.kind == "api":
            ses = boto3.client("ses", region_name="us-east-1", endpoint_url=info["http"],
                               aws_access_key_id=creds["access_key_id"],
                               aws_secret_access_key=creds["secret_access_key"],
                               config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=5))
        while not self.stop:
            t = time.perf_counter()
            try:
                if self.kind == "api":
                    ses.send_email(Source="a@soak.test", Destination={"ToAddresses": ["b@example.net"]},
                                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
                else:
                    s = smtplib.SMTP(smtp_host, int(smtp_port), timeout=5)
                    s.starttls(context=ssl._create_unverified_context())
                    s.login(creds["smtp_username"], creds["smtp_password"])
                    s.sendmail("a@soak.test", ["b@example.net"], b"From: a@soak.test\r\nSubject: s\r\n\r\nb\r\n")
                    s.quit()
                self.lat.append(time.perf_counter() - t)
            except Exception as e:  # a failure is what the soak measures
                self.failed += 1
                k = type(e).__name__
                self.errors[k] = self.errors.get(k, 0) + 1
                time.sleep(0.05)


class Hostile(threading.Thread):
    """Keeps `n` hostile connections open from 127.0.0.2… (50 per address), reopening any the
    server closes. Kinds, in turn: idle HTTP, half-sent headers, half-sent body, a 60 MB
    unauthenticated upload being pushed, idle SMTP."""

    KINDS = ("idle", "headers", "body", "upload", "smtp")

    def __init__(self, n):
        super().__init__(daemon=True)
        self.n, self.socks, self.opened, self.refused, self.stop = n, {}, 0, 0, False
        self.sel = selectors.DefaultSelector()  # epoll: thousands of sockets, beyond select()'s 1024
        self.up_hdr = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       b"Content-Length: 60000000\r\n\r\n")

    def open_one(self, i):
        kind = self.KINDS[i % len(self.KINDS)]
        src = f"127.0.0.{2 + (i // 50) % 250}"
        port = int(smtp_port) if kind == "smtp" else int(http_port)
        try:
            s = socket.create_connection((http_host, port), timeout=2, source_address=(src, 0))
        except OSError:
            self.refused += 1
            return
        s.setblocking(False)
        try:
            if kind == "headers":
                s.send(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            elif kind == "body":
                s.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nAction=Send")
            elif kind == "upload":
                s.send(self.up_hdr)
        except OSError:
            pass
        self.socks[s] = (i, kind)
        self.sel.register(s, selectors.EVENT_READ | (selectors.EVENT_WRITE if kind == "upload" else 0))
        self.opened += 1

    def run(self):
        for i in range(self.n):
            self.open_one(i)
        chunk = b"x" * 65536
        while not self.stop:
            for key, ev in self.sel.select(0.2):
                s = key.fileobj
                if s not in self.socks:
                    continue
                if ev & selectors.EVENT_WRITE:
                    try:
                        s.send(chunk)
                    except OSError:
                        pass
                if ev & selectors.EVENT_READ:
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:  # closed by the server: come back, as an attacker would
                        i, _ = self.socks.pop(s)
                        self.sel.unregister(s)
                        s.close()
                        self.open_one(i)

    def close(self):
        self.stop = True
        self.join()
        for s in list(self.socks):
            s.close()


def phase(name, hostile):
    api, smtp = Normal("api"), Normal("smtp")
    h = Hostile(hostile) if hostile else None
    if h:
        h.start()
        time.sleep(2)  # let the flood build up
    api.start()
    smtp.start()
    peak_fds, peak_rss = 0, 0
    end = time.time() + SECS
    while time.time() < end:
        fds, rss = weir_usage()
        peak_fds, peak_rss = max(peak_fds, fds), max(peak_rss, rss)
        time.sleep(0.2)
    api.stop = smtp.stop = True
    api.join()
    smtp.join()
    held = len(h.socks) if h else 0
    if h:
        h.close()

    def pct(l, p):
        return round(sorted(l)[int(p * (len(l) - 1))] * 1000, 1) if l else None

    print(json.dumps({
        "phase": name, "hostile_target": hostile, "hostile_open_at_end": held,
        "hostile_opened": h.opened if h else 0, "hostile_connect_failed": h.refused if h else 0,
        "api_sent": len(api.lat), "api_failed": api.failed, "api_errors": api.errors,
        "api_p50_ms": pct(api.lat, .5), "api_p99_ms": pct(api.lat, .99),
        "smtp_sent": len(smtp.lat), "smtp_failed": smtp.failed, "smtp_errors": smtp.errors,
        "smtp_p50_ms": pct(smtp.lat, .5), "smtp_p99_ms": pct(smtp.lat, .99),
        "weir_peak_fds": peak_fds, "weir_peak_rss_mb": peak_rss,
    }), flush=True)


phase("baseline", 0)
phase("under attack", HOSTILE)
time.sleep(1)
phase("after", 0)
