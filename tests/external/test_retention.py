"""Retention under constant load: bodies of finished mail go after `body_seconds`, the rows after
`metadata_seconds`, events.jsonl is rotated, and the data dir stops growing (new mail reuses the
pages retention freed); `weir spool compact` gives them back once the server is stopped. Real
server, boto3 sends, smtp-sink as the receiver."""

import json
import subprocess
import tempfile
import threading
import time

from conftest import WEIR
from test_delivery import sender, sink, start  # noqa: F401  (sink is a fixture)

BODY = "x" * 20_000


def disk(w):
    return sum(p.stat().st_size for p in w.data_dir.iterdir() if p.name.startswith(("weir.db", "events.jsonl")))


def test_disk_use_levels_off_under_constant_load(sink):  # noqa: F811
    port, _ = sink
    with tempfile.TemporaryDirectory() as tmp:
        w = start(tmp, f'smarthost = "127.0.0.1:{port}"\n'
                       '[retention]\nbody_seconds = 1\nmetadata_seconds = 3\nevents_max_bytes = 200000\n'
                       'events_files = 2\ninterval_seconds = 1\n')
        try:
            ses = sender(w, "--production", "--max-24h", "-1", "--max-rate", "1000").client()
            stop = threading.Event()
            sent = []

            def load():
                while not stop.is_set():
                    ses.send_email(Source="a@acme.test", Destination={"ToAddresses": ["r@sink.test"]},
                                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": BODY}}})
                    sent.append(time.time())
                    time.sleep(0.02)

            t = threading.Thread(target=load)
            t.start()
            samples = []
            for _ in range(12):
                time.sleep(2.5)
                samples.append(disk(w))
            stop.set()
            t.join()
            # Without retention 30 s of this load keeps adding ~1 MB/s of bodies alone.
            assert len(sent) > 400, len(sent)
            grew_late = samples[-1] - samples[5]
            assert grew_late < 0.25 * samples[5], f"still growing: {samples}"
            # The WAL (reused after each checkpoint) is most of what stays.
            assert samples[-1] < len(sent) * len(BODY) * 0.5, f"{samples} bytes for {len(sent)} messages"
            rotated = sorted(p.name for p in w.data_dir.iterdir() if p.name.startswith("events.jsonl"))
            assert rotated == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"], rotated
            spool = json.loads(w.cli("spool", "list", "--json"))
            assert len(spool) < len(sent) / 2, "old messages' rows were not purged"
            busy = subprocess.run([WEIR, "spool", "compact", "--data-dir", str(w.data_dir)],
                                  capture_output=True, text=True)
            assert busy.returncode != 0 and "in use by another weir server" in busy.stderr, busy
        finally:
            w.stop()
        db = w.data_dir / "weir.db"
        before = db.stat().st_size
        out = w.cli("spool", "compact")
        after = db.stat().st_size
        assert after < before * 0.8, f"compact: {out!r}, {before} -> {after} bytes"
        assert f"{after} after" in out, out
