"""Attacks and faults, performed against the real binary on loopback: SMTP smuggling towards a
receiver, a second server on one data dir, slow and greedy HTTP clients, a tenant spoofing another
tenant's address, a full disk during delivery, local users reading secrets, and log forging."""

import errno
import json
import os
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import WEIR, Weir, events, raw_http, read_all, sender, server, smtp_login, wait_for
from fakemx import FakeMX


# --- 1. Outbound SMTP smuggling -------------------------------------------------------------------

# Each of these, relayed as is, ends DATA early at some receiver and starts a message of the
# attacker's own, from the other tenant's verified address.
SMUGGLE = (b"first line\r.\rMAIL FROM:<ceo@victim.test>\rRCPT TO:<ok@fake.test>\rDATA\r"
           b"From: ceo@victim.test\r\rpay the invoice\r.\r"
           b"then\r.\nMAIL FROM:<ceo@victim.test>\n"
           b"and\r.\r\nMAIL FROM:<ceo@victim.test>\r\n"
           b"and a bare\nline feed\r\n")


def only_crlf(data: bytes) -> bool:
    return data.replace(b"\r\n", b"").count(b"\r") == 0 and data.replace(b"\r\n", b"").count(b"\n") == 0


def test_bare_cr_and_lf_never_reach_the_receiver():
    mx = FakeMX()
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, delivery_to=mx.port)
        try:
            a = sender(w)
            s = smtp_login(w, a)
            s.mail("a@acme.test")
            s.rcpt("ok@fake.test")
            # smtplib would normalise the line ends itself, so the body goes out raw.
            assert s.docmd("DATA")[0] == 354
            s.send(b"From: a@acme.test\r\nTo: ok@fake.test\r\nSubject: via smtp\r\n\r\n" + SMUGGLE + b"\r\n.\r\n")
            assert s.getreply()[0] == 250
            s.quit()
            ses = a.client()
            ses.send_raw_email(RawMessage={"Data": b"From: a@acme.test\r\nTo: ok@fake.test\r\nSubject: raw\r\n\r\n"
                                                  + SMUGGLE})
            ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["ok@fake.test"]},
                           Message={"Subject": {"Data": "simple"}, "Body": {"Text": {"Data": SMUGGLE.decode()}}})
            wait_for(lambda: len(events(w, "Delivery")) == 3, what="three deliveries")
            time.sleep(0.3)
            assert len(mx.messages) == 3, [m[1] for m in mx.messages]
            for (_, mail_from, rcpts, data), wire in zip(mx.messages, mx.wire):
                assert mail_from == "a@acme.test" and rcpts == ["ok@fake.test"]
                assert only_crlf(data), data
                # The would-be commands arrived as the body's own lines, in one message.
                assert data.count(b"MAIL FROM:<ceo@victim.test>") >= 3
                assert b"\r\n.\r\n" not in wire, wire  # a lone dot line went out dot-stuffed
        finally:
            w.stop()


# --- 2. One server per data dir -------------------------------------------------------------------

def test_second_server_on_the_same_data_dir_exits_and_the_first_keeps_serving(fresh_weir):
    w = fresh_weir
    before = (w.data_dir / "server.json").read_text()
    second = subprocess.run([WEIR, "serve", "--http", "127.0.0.1:0", "--smtp", "127.0.0.1:0", "--smtps",
                             "127.0.0.1:0", "--data-dir", str(w.data_dir), "--no-delivery"],
                            capture_output=True, text=True, timeout=20, env={**os.environ, "WEIR_LOG": "warn"})
    assert second.returncode != 0
    assert "in use by another weir server" in second.stderr and str(w.proc.pid) in second.stderr
    assert (w.data_dir / "server.json").read_text() == before
    a = sender(w)
    r = a.client().send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@example.net"]},
                              Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    assert r["MessageId"]


# --- 3. Slow and greedy HTTP clients ---------------------------------------------------------------

def test_content_length_over_the_limit_is_refused_at_once_with_413(weir):
    t = time.time()
    c = raw_http(weir, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       b"Content-Length: 1000000000000\r\n\r\n")
    reply = read_all(c)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"RequestEntityTooLarge" in reply and time.time() - t < 3


def test_unauthenticated_body_is_refused_before_it_is_sent(weir):
    c = raw_http(weir, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       b"Authorization: AWS4-HMAC-SHA256 Credential=AKIANOSUCHKEY0000000/20261201/us-east-1/ses/"
                       b"aws4_request, SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64 + b"\r\n"
                       b"X-Amz-Date: 20261201T000000Z\r\nContent-Length: 60000000\r\n\r\n")
    c.settimeout(5)
    reply = c.recv(65536)  # no byte of the 60 MB body was sent
    assert reply.startswith(b"HTTP/1.1 403"), reply[:300]


def test_idle_and_half_sent_connections_are_closed_after_the_header_timeout():
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, "[http]\nheader_timeout_seconds = 1\nbody_timeout_seconds = 2\n")
        try:
            t = time.time()
            idle = raw_http(w, b"")
            half = raw_http(w, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le")
            kept = raw_http(w, b"GET /ping-after-which-i-wait HTTP/1.1\r\nHost: x\r\n\r\n")
            body = raw_http(w, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
            for c in (idle, half, kept, body):
                read_all(c, timeout=10)  # returns when the server closes
            assert time.time() - t < 5
        finally:
            w.stop()


def test_connections_per_ip_are_capped_while_other_clients_and_smtp_still_work():
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, "[http]\nmax_connections_per_ip = 20\nheader_timeout_seconds = 30\n")
        try:
            held = [raw_http(w, b"GET / HTTP/1.1\r\n") for _ in range(20)]
            time.sleep(0.2)
            over = read_all(raw_http(w, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
            assert over.startswith(b"HTTP/1.1 503"), over[:200]
            other = raw_http(w, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", source="127.0.0.2")
            assert not read_all(other).startswith(b"HTTP/1.1 503")
            s = smtplib.SMTP(*w.smtp, timeout=10)
            assert s.ehlo()[0] == 250
            s.quit()
            for c in held:
                c.close()
        finally:
            w.stop()


def test_idle_connections_filling_the_cap_make_room_for_clients_with_work():
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, "[http]\nmax_connections = 40\nmax_connections_per_ip = 10\nheader_timeout_seconds = 30\n"
                        "[smtp]\nmax_connections = 20\nmax_connections_per_ip = 10\n")
        try:
            a = sender(w)
            host, port = w.smtp
            # Every slot of both listeners taken by idle connections from four other addresses.
            held = [raw_http(w, b"GET / HTTP/1.1\r\n", source=f"127.0.0.{2 + i % 4}") for i in range(40)]
            held += [socket.create_connection((host, port), timeout=5, source_address=(f"127.0.0.{2 + i % 2}", 0))
                     for i in range(20)]
            time.sleep(0.3)
            for _ in range(5):
                a.client().send_email(Source="a@acme.test", Destination={"ToAddresses": ["x@example.net"]},
                                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
                s = smtp_login(w, a)
                s.sendmail("a@acme.test", ["x@example.net"], b"From: a@acme.test\r\nSubject: s\r\n\r\nb\r\n")
                s.quit()
            # An idle SMTP session that made room was told why; the others still hold their slot.
            told = [read_all(c, timeout=0.5) for c in held[40:]]
            assert any(b"421 4.7.0" in t or b"421 Too many connections" in t for t in told), told
            for c in held:
                c.close()
        finally:
            w.stop()


def test_sigterm_with_open_slow_connections_exits_within_the_grace():
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, "[http]\nheader_timeout_seconds = 60\nbody_timeout_seconds = 60\nshutdown_grace_seconds = 1\n")
        held = [raw_http(w, b"") for _ in range(30)]
        held += [raw_http(w, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab") for _ in range(30)]
        time.sleep(0.2)
        t = time.time()
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(timeout=10) == 0
        assert time.time() - t < 4
        for c in held:
            c.close()


# --- 4. From, Sender and Return-Path belong to the sending account ---------------------------------

def test_a_tenant_cannot_send_as_another_tenants_verified_address(weir):
    sender(weir, "victim.test")  # the other tenant
    a = sender(weir)
    ses = a.client()

    def raw(headers):
        with pytest.raises(ClientError) as e:
            ses.send_raw_email(RawMessage={"Data": headers + b"To: b@example.net\r\nSubject: s\r\n\r\nbody\r\n"})
        return e.value.response["Error"]

    for h in (b"From: a@acme.test, ceo@victim.test\r\n",
              b"From: ceo@victim.test, a@acme.test\r\n",
              b"From: a@acme.test\r\nSender: ceo@victim.test\r\n",
              b"From: a@acme.test\r\nReturn-Path: <ceo@victim.test>\r\n"):
        err = raw(h)
        assert err["Code"] == "MessageRejected" and "ceo@victim.test" in err["Message"], (h, err)
    err = raw(b"From: a@acme.test\r\nFrom: ceo@victim.test\r\n")
    assert err == {**err, "Code": "InvalidParameterValue", "Message": "Duplicate header 'From'."}
    err = raw(b"From: a@acme.test\r\nSender: a@acme.test\r\nSender: ceo@victim.test\r\n")
    assert err["Message"] == "Duplicate header 'Sender'."
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="a@acme.test", ReturnPath="ceo@victim.test", Destination={"ToAddresses": ["b@example.net"]},
                       Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    assert e.value.response["Error"]["Code"] == "MessageRejected"

    s = smtp_login(weir, a)
    for h in (b"From: a@acme.test, ceo@victim.test\r\n", b"From: a@acme.test\r\nSender: ceo@victim.test\r\n",
              b"From: a@acme.test\r\nFrom: ceo@victim.test\r\n"):
        s.mail("a@acme.test")
        s.rcpt("b@example.net")
        code, text = s.data(h + b"To: b@example.net\r\nSubject: s\r\n\r\nbody\r\n")
        assert code == 554, (h, code, text)
        s.rset()
    assert s.mail("ceo@victim.test")[0] >= 500
    s.quit()


# --- 5. A full disk during delivery ----------------------------------------------------------------

@pytest.fixture
def small_fs():
    d = tempfile.mkdtemp()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", d], capture_output=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip("mounting a small tmpfs needs root")
    yield Path(d)
    subprocess.run(["umount", "-l", d])
    os.rmdir(d)


def fill(path: Path):
    """Write `path` until the filesystem is full."""
    with open(path, "ab", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
        try:
            os.fsync(f.fileno())
        except OSError:
            pass


def test_full_disk_during_delivery_recovers_without_restart_and_delivers_once(small_fs):
    mx = FakeMX()
    mx.hold.set()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "weir.log"
        w = server(tmp, delivery_to=mx.port, data=small_fs / "weir", log=log)
        try:
            a = sender(w)
            ses = a.client()
            sent = [ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["ok@fake.test"]},
                                   Message={"Subject": {"Data": f"n{i}"}, "Body": {"Text": {"Data": "b"}}})["MessageId"]
                    for i in range(12)]
            wait_for(lambda: mx.messages, what="a transfer held at end of data")
            filler = small_fs / "filler"
            fill(filler)
            # Refused while the disk is full: 503 over the API, 451 over SMTP.
            with pytest.raises(ClientError) as e:
                ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["ok@fake.test"]},
                               Message={"Subject": {"Data": "full"}, "Body": {"Text": {"Data": "b"}}})
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            s = smtp_login(w, a)
            s.mail("a@acme.test")
            s.rcpt("ok@fake.test")
            assert s.data(b"From: a@acme.test\r\nTo: ok@fake.test\r\nSubject: full\r\n\r\nb\r\n")[0] == 451
            s.quit()
            mx.hold.clear()
            wait_for(lambda: "cannot record delivery results; retrying" in log.read_text(), what="the retry log line")
            filler.unlink()
            wait_for(lambda: len(events(w, "Delivery")) == 12, timeout=30, what="12 Delivery events")
            assert sorted(e["mail"]["messageId"] for e in events(w, "Delivery")) == sorted(sent)
            assert len(mx.messages) == 12
            # Nothing is left in `sending`, so a crash now delivers nothing twice.
            w.stop(signal.SIGKILL)
            w.start()
            time.sleep(1.5)
            assert len(mx.messages) == 12
        finally:
            if w.proc.poll() is None:
                w.stop()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["after a crash", "after a clean stop"])
def test_server_starts_on_a_full_disk_and_answers_451(small_fs, stop):
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp, data=small_fs / "weir")
        a = sender(w)
        w.stop(stop)
        # One page kept aside for server.json (which a clean stop removes); none for anything else:
        # the database's WAL and shared-memory files must still be there.
        (small_fs / "reserve").write_bytes(b"x")
        fill(small_fs / "filler")
        (small_fs / "reserve").unlink()
        w.start()
        try:
            s = smtp_login(w, a)
            s.mail("a@acme.test")
            s.rcpt("b@example.net")
            assert s.data(b"From: a@acme.test\r\nTo: b@example.net\r\nSubject: s\r\n\r\nb\r\n")[0] == 451
            s.quit()
        finally:
            w.stop()


# --- 6. Secrets are private to the server's user ---------------------------------------------------

def modes(d: Path):
    out = {".": stat.S_IMODE(d.stat().st_mode)}
    for p in d.iterdir():
        out[p.name] = stat.S_IMODE(p.stat().st_mode)
    return out


def test_data_dir_is_0700_and_files_0600_and_a_loosened_install_is_tightened():
    with tempfile.TemporaryDirectory() as tmp:
        w = server(tmp)
        a = sender(w)
        a.client().send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@example.net"]},
                              Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
        m = modes(w.data_dir)
        assert {"weir.db", "admin-token", "server.json"} <= m.keys()
        assert m == {**{k: 0o600 for k in m}, ".": 0o700}, m
        w.stop()
        os.chmod(w.data_dir, 0o755)
        for p in w.data_dir.iterdir():
            os.chmod(p, 0o644)
        w.start()
        try:
            m = modes(w.data_dir)
            assert m == {**{k: 0o600 for k in m}, ".": 0o700}, m
        finally:
            w.stop()


def test_short_or_shared_admin_token_is_not_trusted():
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "weir"
        data.mkdir(mode=0o700)
        (data / "admin-token").write_text("short\n")
        p = subprocess.run([WEIR, "serve", "--http", "127.0.0.1:0", "--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
                            "--data-dir", str(data), "--no-delivery"], capture_output=True, text=True, timeout=20)
        assert p.returncode != 0 and "admin-token" in p.stderr


# --- 7. Hostile protocol input and log forging -----------------------------------------------------

def test_ehlo_with_nul_or_spaces_is_refused(weir):
    s = smtplib.SMTP(*weir.smtp, timeout=10)
    assert s.docmd("EHLO", "evil\0host")[0] == 501
    assert s.docmd("EHLO", "client.example")[0] == 250
    s.quit()


def test_auth_username_cannot_forge_log_lines():
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "weir.log"
        w = server(tmp, log=log)
        try:
            s = smtplib.SMTP(*w.smtp, timeout=10)
            s.starttls(context=ssl._create_unverified_context())
            s.ehlo()
            import base64
            user = "x\nSMTP AUTH failed peer=203.0.113.9:25 \x1b[31m"
            creds = base64.b64encode(b"\0" + user.encode() + b"\0wrong").decode()
            assert s.docmd("AUTH", "PLAIN " + creds)[0] == 535
            s.close()
            text = wait_for(lambda: "AUTH failed" in log.read_text() and log.read_text(), what="the AUTH log line")
            assert "203.0.113.9" in text  # logged, but escaped, inside the one line
            lines = [l for l in text.splitlines() if "203.0.113.9" in l]
            assert len(lines) == 1 and "peer=127.0.0.1" in lines[0], lines
            assert "\x1b" not in text
        finally:
            w.stop()


def test_configuration_set_name_with_line_breaks_is_refused(weir):
    a = sender(weir)
    with pytest.raises(ClientError) as e:
        a.client().send_email(Source="a@acme.test", Destination={"ToAddresses": ["b@example.net"]},
                              ConfigurationSetName="set\r\nX-Injected: 1",
                              Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}})
    assert e.value.response["Error"]["Code"] in ("InvalidParameterValue", "ValidationError",
                                                  "ConfigurationSetDoesNotExist")
