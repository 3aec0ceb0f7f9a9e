"""README.md's first send, run as written (aws-cli and swaks against a fresh server with delivery
on), so that the commands a new user copies keep working."""

import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import ROOT, Weir, events, wait_for


def first_send_commands():
    """The shell commands of README's "A first send" section, continuation lines joined."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A first send", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.split("  #", 1)[0].strip()
            if cmd:
                commands.append(cmd)
    return commands


def test_readme_first_send_is_delivered():
    commands = first_send_commands()
    assert any(c.startswith("aws ") and "send-email" in c for c in commands), commands
    assert any(c.startswith("swaks ") for c in commands), commands
    with tempfile.TemporaryDirectory() as tmp:
        w = Weir(Path(tmp), extra_args=()).start()
        try:
            creds = None
            env = {**os.environ, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
            for cmd in commands:
                argv = shlex.split(cmd)
                if argv[0] == "export":
                    continue  # the credentials printed by the previous command, set below
                if argv[0] == "weir":
                    out = w.cli(*argv[1:])
                    if "--json" in argv and argv[1:3] == ["account", "create"]:
                        creds = json.loads(out)
                        env["AWS_ACCESS_KEY_ID"] = creds["access_key_id"]
                        env["AWS_SECRET_ACCESS_KEY"] = creds["secret_access_key"]
                    continue
                argv = [a.replace("http://127.0.0.1:8787", w.base) for a in argv]
                if argv[0] == "swaks":
                    argv = [{"127.0.0.1:2587": f"{w.smtp[0]}:{w.smtp[1]}", "AKIA…": creds["smtp_username"],
                             "B…": creds["smtp_password"]}.get(a, a) for a in argv]
                if argv[0] == "swaks" or "send-email" in argv:
                    time.sleep(1.1)  # a new account is in the sandbox: one send per second
                r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
                assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
            delivered = wait_for(lambda: len(events(w, "Delivery")) >= 2 and events(w, "Delivery"),
                                 what="both first sends delivered")
            assert {d["delivery"]["recipients"][0] for d in delivered} == {"success@simulator.amazonses.com"}
            assert not events(w, "Bounce")
        finally:
            w.stop()
