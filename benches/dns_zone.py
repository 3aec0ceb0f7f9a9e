"""A DNS server on loopback answering TXT queries from a JSON file ({"name": "value"}), re-read
on every query, so a bench can publish records while it runs (dnslib).

    python3 benches/dns_zone.py PORT ZONE.json
"""

import json
import sys
import time

from dnslib import QTYPE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Zone(BaseResolver):
    def __init__(self, path):
        self.path = path

    def resolve(self, request, handler):
        reply = request.reply()
        try:
            with open(self.path) as f:
                records = json.load(f)
        except (OSError, ValueError):
            records = {}
        value = records.get(str(request.q.qname).lower().rstrip("."))
        if value is not None and QTYPE[request.q.qtype] == "TXT":
            chunks = [value[i:i + 255].encode() for i in range(0, len(value), 255)]
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=1))
        return reply


if __name__ == "__main__":
    server = DNSServer(Zone(sys.argv[2]), port=int(sys.argv[1]), address="127.0.0.1",
                       logger=DNSLogger("-request,-reply,-truncated,-data"))
    server.start_thread()
    while True:
        time.sleep(3600)
