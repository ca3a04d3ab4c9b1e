"""`make demo` works as the README promises: real phones talk, the client sees its status,
an untrusted client needs its PIN, and one Ctrl-C stops everything cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.daemon import PROJECT_ROOT, twistd_env
from tests.integration.demo import PROXY_PORT, WORKDIR

DEMO = [sys.executable, "-m", "tests.integration.demo"]


@pytest.mark.timeout(180)
def test_demo_shows_a_complete_click_to_call_between_two_real_phones():
    out = subprocess.run([*DEMO, "--once"], cwd=PROJECT_ROOT, env=twistd_env(),
                         capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "<error-flag>OK</error-flag>" in text  # the POST
    # the timeline, from the phones' own events
    for moment in ("POST accepted", "user1 ringing", "user1 answered",
                   "REFER accepted by user1's phone (202)", "user2 ringing", "user2 answered",
                   "user1 \u21c4 user2 connected (RTP both ways)",
                   "user1's phone reports the transfer done (NOTIFY 200 OK)"):
        assert f"s  {moment}\n" in text, text
    # the status XML the daemon shows
    assert "<status-line>SIP/2.0 180 Ringing</status-line>" in text
    assert "<method>REFER</method>\n\t<status-line>SIP/2.0 202 Accepted" in text
    assert "<method>NOTIFY</method>\n\t<status-line>SIP/2.0 200 OK" in text
    # a client at 127.0.0.2 is not trusted
    assert "-> 401 (wrong PIN; expected 401)" in text
    assert "-> 403 (user2 asks for user1's call; expected 403)" in text
    assert "-> 200 (user1 with its PIN; expected 200)" in text
    # each phone's own RTCP report: RTP packets received and sent during the 6-s call
    counts = re.findall(r"(user[12])'s phone: (\d+) RTP packets received, (\d+) sent", text)
    assert [user for user, _received, _sent in counts] == ["user1", "user2"], text
    for _user, received, sent in counts:
        assert int(received) > 0 and int(sent) > 0, text
    # a callee nobody knows: the phone's INVITE fails and its NOTIFY says so
    assert "reports: NOTIFY SIP/2.0 404 Not Found" in text
    # user2's phone itself says it rang and talked to user1
    user2_log = (WORKDIR / "phones" / "baresip-user2" / "baresip.log").read_text(
        errors="replace")
    assert "Incoming call from:  sip:user1@sipx.test" in user2_log
    assert "Call established: sip:user1@sipx.test" in user2_log
    assert "incoming rtp for 'audio' established" in user2_log
    # user2's phone registered, and the proxy relayed user1's phone's own INVITE there
    proxy_log = (WORKDIR / "kamailio" / f"kamailio-{PROXY_PORT}.log").read_text(
        errors="replace")
    assert "registered sip:user2@sipx.test" in proxy_log
    assert re.search(r"relaying INVITE to sip:user2\S*@127\.0\.0\.1:", proxy_log), proxy_log


def _collect(stream, lines: list[str], changed: threading.Condition) -> None:
    for line in stream:
        with changed:
            lines.append(line)
            changed.notify_all()


@pytest.mark.timeout(180)
def test_one_ctrl_c_stops_the_demo_and_everything_it_started_without_a_critical_line():
    log_path = WORKDIR / "sipxcc.log"
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    demo = subprocess.Popen(DEMO, cwd=PROJECT_ROOT, env=twistd_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    lines: list[str] = []
    changed = threading.Condition()
    reader = threading.Thread(target=_collect, args=(demo.stdout, lines, changed), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        with changed:
            while not any("Ctrl-C stops everything." in line for line in lines):
                remaining = deadline - time.monotonic()
                assert remaining > 0 and demo.poll() is None, "".join(lines)
                changed.wait(remaining)
        # a terminal's Ctrl-C: SIGINT to the whole foreground process group
        os.killpg(demo.pid, signal.SIGINT)
        status = demo.wait(60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
    reader.join(10)
    demo.stdout.close()
    assert status == 0, "".join(lines)
    with open(log_path, "rb") as log:
        log.seek(log_offset)
        daemon_log = log.read().decode(errors="replace")
    assert "Main loop terminated." in daemon_log
    assert "critical" not in daemon_log, daemon_log
    assert "Traceback" not in "".join(lines)
    # nothing the demo started is left in its process group
    leftovers = subprocess.run(["pgrep", "-g", str(demo.pid)], capture_output=True, text=True)
    assert leftovers.stdout == "", leftovers.stdout
