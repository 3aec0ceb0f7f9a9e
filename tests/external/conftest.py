"""Fixtures for the external-client suite: the real `weir serve` binary, driven by clients we did
not write (boto3/botocore and aws-cli)."""

import json
import os
import signal
import smtplib
import ssl
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
WEIR = os.environ.get("WEIR_BIN", str(ROOT / "target" / "debug" / "weir"))


class Weir:
    """One running server with its own data dir."""

    def __init__(self, data_dir: Path, extra_args=("--no-delivery",), log=None):
        self.data_dir = data_dir
        self.log = log  # a path: the server's log goes there (at info) instead of the terminal
        self.extra_args = list(extra_args)
        self.proc = None
        self.base = None
        self.smtp = None
        self.smtps = None

    def start(self):
        (self.data_dir / "server.json").unlink(missing_ok=True)
        logf = open(self.log, "ab") if self.log else None
        self.proc = subprocess.Popen(
            [WEIR, "serve", "--http", "127.0.0.1:0", "--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
             "--data-dir", str(self.data_dir), *self.extra_args],
            env={**os.environ, "WEIR_LOG": "info" if self.log else "warn"},
            stderr=logf,
        )
        if logf:
            logf.close()  # the child has its own copy
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                info = json.loads((self.data_dir / "server.json").read_text())
                self.base = info["http"]
                self.smtp = tuple(info["smtp"].rsplit(":", 1))
                self.smtp = (self.smtp[0], int(self.smtp[1]))
                self.smtps = tuple(info["smtps"].rsplit(":", 1))
                self.smtps = (self.smtps[0], int(self.smtps[1]))
                return self
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                time.sleep(0.02)
        self.proc.kill()
        raise RuntimeError("weir did not start")

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)

    def cli(self, *args):
        out = subprocess.run([WEIR, *args, "--data-dir", str(self.data_dir)], capture_output=True, text=True)
        assert out.returncode == 0, f"weir {args} failed: {out.stderr}"
        return out.stdout

    def account(self, region="us-east-1"):
        name = "t" + uuid.uuid4().hex[:12]
        creds = json.loads(self.cli("account", "create", name, "--region", region, "--json"))
        return Account(self, name, creds)


class Account:
    def __init__(self, weir, name, creds):
        self.weir, self.name, self.creds = weir, name, creds

    def client(self, service="ses", region="us-east-1", retries=1, secret=None, key=None):
        """A boto3 client; retries=1 means a single attempt, so refusals are seen as they are."""
        cfg = Config(retries={"total_max_attempts": retries, "mode": "standard"}) if retries else None
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.weir.base,
            aws_access_key_id=key or self.creds["access_key_id"],
            aws_secret_access_key=secret or self.creds["secret_access_key"],
            config=cfg,
        )

    def aws(self, *args, region="us-east-1", attempts=1):
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.creds["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.creds["secret_access_key"],
            "AWS_MAX_ATTEMPTS": str(attempts),
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        return subprocess.run(
            ["aws", "--endpoint-url", self.weir.base, "--region", region, "--output", "json", *args],
            capture_output=True,
            text=True,
            env=env,
        )

    def quota(self, region="us-east-1", *flags):
        return self.weir.cli("account", "quota", self.name, "--region", region, *flags)

    def verify(self, identity, region="us-east-1"):
        self.weir.cli("identity", "add", self.name, "--region", region, identity, "--verified")


@pytest.fixture(scope="module")
def weir():
    with tempfile.TemporaryDirectory() as d:
        w = Weir(Path(d)).start()
        yield w
        if w.proc.poll() is None:
            w.stop()


@pytest.fixture
def acct(weir):
    a = weir.account()
    a.verify("acme.test")
    return a


@pytest.fixture
def fresh_weir():
    """A server of its own, for restart and crash tests."""
    with tempfile.TemporaryDirectory() as d:
        w = Weir(Path(d)).start()
        yield w
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def free_port():
    """A TCP port on 127.0.0.1 free at the time of asking."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=20, what="condition"):
    """Poll `pred` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events(w, kind=None):
    """The events weir wrote to events.jsonl, of one type or all."""
    path = w.data_dir / "events.jsonl"
    if not path.exists():
        return []
    out = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    return [e for e in out if kind is None or e["eventType"] == kind]


def server(tmp, config="", delivery_to=None, data=None, log=None):
    """A server in `tmp` with `config` (TOML); with `delivery_to` a port, it delivers fake.test there."""
    data = data or Path(tmp) / "weir"
    data.mkdir(exist_ok=True)
    cfg = Path(tmp) / "weir.toml"
    if delivery_to:
        config += ("\n[delivery]\npoll_interval_ms = 50\nretry_first_seconds = 1\nretry_max_seconds = 2\n"
                   f'starttls = false\nroutes = {{ "fake.test" = "127.0.0.1:{delivery_to}" }}\n')
    cfg.write_text(config)
    args = ("--config", str(cfg)) + (() if delivery_to else ("--no-delivery",))
    return Weir(data, extra_args=args, log=log).start()


def sender(w, domain="acme.test"):
    a = w.account()
    a.verify(domain)
    a.quota("us-east-1", "--production", "--max-rate", "200")
    return a


def smtp_login(w, a):
    s = smtplib.SMTP(*w.smtp, timeout=10)
    s.starttls(context=ssl._create_unverified_context())
    s.login(a.creds["smtp_username"], a.creds["smtp_password"])
    return s


def raw_http(w, request: bytes, source="127.0.0.1", timeout=5):
    host, port = w.base.removeprefix("http://").rsplit(":", 1)
    c = socket.create_connection((host, int(port)), timeout=timeout, source_address=(source, 0))
    c.sendall(request)
    return c


def read_all(c, timeout=5):
    c.settimeout(timeout)
    out = b""
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out
