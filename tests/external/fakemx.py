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
    "defer": "451 4.3.0 Temporary local problem",
    "hard": "554 5.0.0 Rejected for no stated reason",
}


class FakeMX:
    def __init__(self):
        self.messages = []  # (time, mail_from, [rcpts], data)
        self.attempts = {}  # rcpt -> [times]
        self.connections = 0
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
        local = rcpt.split("@")[0].lower()
        self.attempts.setdefault(rcpt.lower(), []).append(time.time())
        if local == "unusual-once":
            return ("421 4.7.28 Gmail has detected an unusual rate of unsolicited mail."
                    if len(self.attempts[rcpt.lower()]) == 1 else "250 2.1.5 Ok")
        if local == "flaky":
            return "451 4.3.0 Try again" if len(self.attempts[rcpt.lower()]) == 1 else "250 2.1.5 Ok"
        return REPLIES.get(local, "250 2.1.5 Ok")

    async def _session(self, reader, writer):
        self.connections += 1
        out = lambda s: writer.write((s + "\r\n").encode())
        out("220 fakemx.test ESMTP")
        mail_from, rcpts = None, []
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
                    mail_from, rcpts = cmd.split(":", 1)[1].strip().split()[0].strip("<>"), []
                    out("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpt = cmd.split(":", 1)[1].strip().strip("<>")
                    r = self.reply_for(rcpt)
                    if r.startswith("250"):
                        rcpts.append(rcpt)
                    out(r)
                elif verb == "DATA":
                    if not rcpts:
                        out("554 5.5.1 No valid recipients")
                        continue
                    out("354 End data with <CR><LF>.<CR><LF>")
                    await writer.drain()
                    data = []
                    while True:
                        l = await reader.readline()
                        if l in (b".\r\n", b".\n", b""):
                            break
                        data.append(l)
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
            writer.close()

    def delivered_to(self, rcpt):
        return [m for m in self.messages if rcpt.lower() in (r.lower() for r in m[2])]
