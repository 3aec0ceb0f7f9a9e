"""A small scriptable SMTP receiver for delivery tests (loopback only).

The local part of each recipient picks the reply to its RCPT TO, so one transaction can mix
accepted, deferred and refused recipients:

    ok@…          250
    nosuch@…      550 5.1.1 The email account that you tried to reach does not exist.
    slow@…        450 4.2.1 The user you are trying to contact is receiving mail too quickly.
    ts04@…        421 4.7.0 [TS04] Messages from 192.0.2.1 temporarily deferred
    unusual@…     421 4.7.28 Gmail has detected an unusual rate of unsolicited mail.
    spf@…         421 4.7.27 SPF authentication did not pass.
    defer@…       451 4.3.0 Temporary local problem (always)
    hard@…        554 5.0.0 Rejected for no stated reason (a hard bounce that is not 5.1.1)
    flaky@…       451 4.3.0 on the first attempt, 250 afterwards
    unusual-once@ 421 4.7.28 on the first attempt, 250 afterwards
    gmail-close@  the multi-line 421-4.7.28 Gmail sends, and the connection is closed, on the
                  first attempt; 250 afterwards

A hot mailbox: with `hot=(n, seconds)`, `hot@…` takes at most n messages in any `seconds` and
answers Gmail's multi-line `452-4.2.1` (that mailbox only) to the rest.

Receiver-wide limits: `max_conns` (a connection beyond it gets `421 4.7.0 Too many concurrent
connections` at the greeting and is closed) and `max_rcpts` (`452 4.5.3 Too many recipients`
beyond that many RCPTs in one transaction).

Every accepted message is recorded with its recipients and the time it arrived.
"""

import asyncio
import threading
import time

REPLIES = {
    "nosuch": "550 5.1.1 The email account that you tried to reach does not exist.",
    "slow": "450 4.2.1 The user you are trying to contact is receiving mail too quickly.",
    "ts04": "421 4.7.0 [TS04] Messages from 192.0.2.1 temporarily deferred",
    "unusual": "421 4.7.28 Gmail has detected an unusual rate of unsolicited mail.",
    "spf": "421 4.7.27 SPF authentication did not pass.",
    "greyzero": "450 4.2.0 Recipient address rejected: Greylisted, please try again in 0 seconds",
    "auth515": "550 5.7.515 Access denied, sending domain [acme.test] does not meet the required authentication level.",
    "defer": "451 4.3.0 Temporary local problem",
    "hard": "554 5.0.0 Rejected for no stated reason",
}


GMAIL_4_7_28 = ("421-4.7.28 Gmail has detected an unusual rate of unsolicited mail originating\r\n"
                "421-4.7.28 from your SPF domain. To protect our users from spam, mail sent from\r\n"
                "421 4.7.28 your domain has been temporarily rate limited.")


HOT_452 = ("452-4.2.1 The user you are trying to contact is receiving mail at a rate that\r\n"
           "452 4.2.1 prevents additional messages from being delivered.")


class FakeMX:
    def __init__(self, max_conns=None, max_rcpts=None, hot=None):
        self.hot = hot
        self.hot_taken = []  # times the hot mailbox accepted a message
        self.messages = []  # (time, mail_from, [rcpts], data)
        self.wire = []  # each message's DATA as it came over the wire (dot-stuffed)
        self.attempts = {}  # rcpt -> [times]
        self.connections = 0
        self.max_conns, self.max_rcpts = max_conns, max_rcpts
        self.open_now = self.open_peak = self.refused_conns = 0
        self.transactions = 0
        self.hold = threading.Event()  # while set, the reply to end-of-data waits
        self.loop = asyncio.new_event_loop()
        self.port = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(5)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._session, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def reply_for(self, rcpt):
        # `nosuch+3@…` answers as `nosuch@…`: distinct addresses with the same behaviour.
        local = rcpt.split("@")[0].lower().split("+")[0]
        self.attempts.setdefault(rcpt.lower(), []).append(time.time())
        if local == "unusual-once":
            return ("421 4.7.28 Gmail has detected an unusual rate of unsolicited mail."
                    if len(self.attempts[rcpt.lower()]) == 1 else "250 2.1.5 Ok")
        if local == "gmail-close":
            return GMAIL_4_7_28 if len(self.attempts[rcpt.lower()]) == 1 else "250 2.1.5 Ok"
        if local == "hot" and self.hot:
            n, window = self.hot
            now = time.time()
            self.hot_taken = [t for t in self.hot_taken if now - t < window]
            if len(self.hot_taken) >= n:
                return HOT_452
            self.hot_taken.append(now)
            return "250 2.1.5 Ok"
        if local == "flaky":
            return "451 4.3.0 Try again" if len(self.attempts[rcpt.lower()]) == 1 else "250 2.1.5 Ok"
        return REPLIES.get(local, "250 2.1.5 Ok")

    async def _session(self, reader, writer):
        self.connections += 1
        out = lambda s: writer.write((s + "\r\n").encode())
        if self.max_conns is not None and self.open_now >= self.max_conns:
            self.refused_conns += 1
            out("421 4.7.0 Too many concurrent connections")
            await writer.drain()
            writer.close()
            return
        self.open_now += 1
        self.open_peak = max(self.open_peak, self.open_now)
        out("220 fakemx.test ESMTP")
        mail_from, rcpts, n_rcpt = None, [], 0
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                cmd = line.decode(errors="replace").strip()
                verb = cmd[:4].upper()
                if verb in ("EHLO", "HELO"):
                    out("250-fakemx.test\r\n250-PIPELINING\r\n250 8BITMIME")
                elif verb == "MAIL":
                    mail_from, rcpts, n_rcpt = cmd.split(":", 1)[1].strip().split()[0].strip("<>"), [], 0
                    self.transactions += 1
                    out("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpt = cmd.split(":", 1)[1].strip().strip("<>")
                    n_rcpt += 1
                    if self.max_rcpts is not None and n_rcpt > self.max_rcpts:
                        out("452 4.5.3 Too many recipients")
                        await writer.drain()
                        continue
                    r = self.reply_for(rcpt)
                    if r.startswith("250"):
                        rcpts.append(rcpt)
                    out(r)
                    if r == GMAIL_4_7_28:  # as Gmail does: the reply, then the connection closes
                        await writer.drain()
                        break
                elif verb == "DATA":
                    if not rcpts:
                        out("554 5.5.1 No valid recipients")
                        continue
                    out("354 End data with <CR><LF>.<CR><LF>")
                    await writer.drain()
                    data, wire = [], []
                    while True:
                        l = await reader.readline()
                        if l in (b".\r\n", b".\n", b""):
                            break
                        wire.append(l)
                        data.append(l[1:] if l.startswith(b".") else l)  # dot-unstuffing (RFC 5321 4.5.2)
                    self.wire.append(b"".join(wire))
                    self.messages.append((time.time(), mail_from, list(rcpts), b"".join(data)))
                    while self.hold.is_set():
                        await asyncio.sleep(0.02)
                    out("250 2.0.0 Ok: queued")
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    out("250 2.0.0 Ok")
                elif verb == "QUIT":
                    out("221 2.0.0 Bye")
                    await writer.drain()
                    break
                else:
                    out("250 2.0.0 Ok")
                await writer.drain()
        finally:
            self.open_now -= 1
            writer.close()

    def delivered_to(self, rcpt):
        return [m for m in self.messages if rcpt.lower() in (r.lower() for r in m[2])]
