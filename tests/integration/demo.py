"""
`make demo`: Kamailio as the sipX proxy, a real (baresip) phone per demo user, the daemon
with etc/demo.ini, and a real click-to-call made with curl, shown as a timeline and as the
status XML; then what a client that is not trusted gets (wrong PIN, another user's call,
right PIN).

    python -m tests.integration.demo [--once]

With --once everything stops after that (the demo's own test uses it); otherwise the
daemon and the phones keep running for you to try the printed commands until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time

from tests.integration.daemon import PROJECT_ROOT, Daemon
from tests.integration.peers import (
    DEMO_USERS,
    Kamailio,
    PeerError,
    demo_aliases,
    demo_ha1s,
    free_port,
)
from tests.integration.phones import BaresipPhone

CONFIG = PROJECT_ROOT / "etc" / "demo.ini"
WORKDIR = PROJECT_ROOT / ".demo"
BASE = "https://127.0.0.1:6666"
PROXY_PORT = 5080
CALL = f"{BASE}/callcontroller/user1/user2"
# An address of the loopback network that is not in http.trusted.
UNTRUSTED = "127.0.0.2"
RING_SECONDS = 1.0
"""How long each phone rings before it answers."""
TALK_SECONDS = 6.0
"""How long user1 and user2 talk: long enough for RTCP, whose report counts the packets."""
TRY = [
    "curl -k -X POST -u user1:123 {base}/callcontroller/user1/user2",
    "curl -k -u user1:123 {base}/callcontroller/user1/user2",
    "curl -k -X POST -u user3:123 '{base}/callcontroller/user1/user2?agent=user3'",
    "curl -k '{base}/callcontroller/user1/user2?agent=user3'",
    "curl -k --interface 127.0.0.2 -u user3:123 "
    "'{base}/callcontroller/user1/user2?agent=user3'",
    "curl -k --digest -u user1:123 http://127.0.0.1:6667/callcontroller/user1/user2",
    "curl -H 'sipx-user: user1' http://127.0.0.1:6668/callcontroller/user1/user2",
    "curl -k -H 'Accept: application/json' {base}/calls",
    "curl -k {base}/health",
]


def curl(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sk", *arguments], capture_output=True, text=True,
                          timeout=20)


def show(*arguments: str) -> str:
    print("$ curl -k " + " ".join(arguments), flush=True)
    out = curl(*arguments).stdout
    print(out, flush=True)
    return out


class Timeline:
    """Moments of the call in the order they cause each other, as offsets from the POST.

    The phones' moments are when their events reached us, the daemon's are its own
    timestamps; a few milliseconds apart they may disagree, so an offset is never shown
    smaller than the one before it.
    """

    def __init__(self, start: float):
        self.start = start
        self.moments: list[tuple[float, str]] = []

    def add(self, wall: float | None, text: str) -> None:
        if wall is not None:
            self.moments.append((wall - self.start, text))

    def print(self) -> None:
        shown = 0.0
        for offset, text in self.moments:
            shown = max(shown, offset)
            print(f"  +{shown:5.2f} s  {text}")
        print(flush=True)


def status_lines() -> list[dict]:
    """The call's status lines as JSON (as user1)."""
    out = curl("-u", "user1:123", "-H", "Accept: application/json", CALL).stdout
    try:
        document = json.loads(out)
    except ValueError:
        return []
    return document.get("status-lines", []) if isinstance(document, dict) else []


def first(events: list[dict], method: str, status: str) -> float | None:
    for event in events:
        if event.get("method") == method and event.get("status-line", "").startswith(status):
            return event["timestamp"] / 1000
    return None


def event_time(phone: BaresipPhone, event_type: str, after: float = 0.0) -> float | None:
    for event in list(phone.events):
        if event.get("type") == event_type and event["time"] >= after:
            return event["wall"]
    return None


def click_to_call(phones: dict[str, BaresipPhone]) -> bool:
    """POST as user1; follow both phones until they talk; print the timeline and status."""
    user1, user2 = phones["user1"], phones["user2"]
    began = time.monotonic()
    timeline = Timeline(time.time())
    print("$ curl -k -X POST -u user1:123 " + CALL, flush=True)
    posted = curl("-X", "POST", "-u", "user1:123", CALL)
    print(posted.stdout, flush=True)
    if "<error-flag>OK</error-flag>" not in posted.stdout:
        print("the POST was refused; see .demo/ for the logs", file=sys.stderr)
        return False
    timeline.add(time.time(), "POST accepted")
    try:
        user1.wait_for("CALL_ESTABLISHED", 15, after=began)
        ringing = user2.wait_for("CALL_INCOMING", 15, after=began)
        user2.wait_for("CALL_ESTABLISHED", 15, after=began)
        user2.wait_for("CALL_RTPESTAB", 10, after=began)
        # user1's phone: RTP from user2 on its new call (the one it placed to user2)
        user1.wait_for("CALL_RTPESTAB", 10, after=ringing["time"])
    except PeerError as error:
        print(f"the click-to-call did not complete: {error}\n(logs in .demo/)",
              file=sys.stderr)
        return False
    deadline = time.monotonic() + 15
    events = status_lines()
    while first(events, "NOTIFY", "SIP/2.0 200") is None and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the daemon's status
        events = status_lines()
    timeline.add(event_time(user1, "CALL_INCOMING", began), "user1 ringing")
    timeline.add(event_time(user1, "CALL_ESTABLISHED", began), "user1 answered")
    timeline.add(first(events, "REFER", "SIP/2.0 202"),
                 "REFER accepted by user1's phone (202)")
    timeline.add(event_time(user2, "CALL_INCOMING", began), "user2 ringing")
    timeline.add(event_time(user2, "CALL_ESTABLISHED", began), "user2 answered")
    timeline.add(first(events, "NOTIFY", "SIP/2.0 200"),
                 "user1's phone reports the transfer done (NOTIFY 200 OK)")
    both = max(event_time(user2, "CALL_RTPESTAB", began) or 0,
               event_time(user1, "CALL_RTPESTAB", ringing["time"]) or 0)
    timeline.add(both, "user1 \u21c4 user2 connected (RTP both ways)")
    print("What happened (seconds after the POST):")
    timeline.print()
    show("-u", "user1:123", CALL)
    return first(events, "NOTIFY", "SIP/2.0 200") is not None


def untrusted_client() -> bool:
    """What a client that is not in http.trusted gets; True if each answer is as expected."""
    print(f"From {UNTRUSTED}, which is not in http.trusted, a PIN is required:")
    ok = True
    for credentials, expected, meaning in (
            ("user1:wrong", 401, "wrong PIN"),
            ("user2:123", 403, "user2 asks for user1's call"),
            ("user1:123", 200, "user1 with its PIN")):
        command = ["--interface", UNTRUSTED, "-o", "/dev/null", "-w", "%{http_code}",
                   "-u", credentials, CALL]
        status = curl(*command).stdout.strip()
        print(f"  $ curl -k --interface {UNTRUSTED} -u {credentials} {CALL}\n"
              f"    -> {status} ({meaning}; expected {expected})")
        ok = ok and status == str(expected)
    print(flush=True)
    return ok


def hang_up_and_count_rtp(phones: dict[str, BaresipPhone]) -> bool:
    """user1 hangs up after TALK_SECONDS; each phone's RTP packets, from its RTCP report."""
    user1, user2 = phones["user1"], phones["user2"]
    answered = user2.wait_for("CALL_ESTABLISHED", 1)["time"]
    print(f"user1 and user2 talk for {TALK_SECONDS:.0f} s, then user1 hangs up.", flush=True)
    time.sleep(max(0.0, answered + TALK_SECONDS - time.monotonic()))  # the call's length
    began = time.monotonic()
    before = {phone.user: len(phone.rtp_summaries()) for phone in (user1, user2)}
    user1.hangup()
    try:
        user2.wait_for("CALL_CLOSED", 10, after=began)
    except PeerError as error:
        print(f"user1 could not hang up: {error}", file=sys.stderr)
        return False
    ok = True
    for phone in (user1, user2):
        summaries = phone.wait_for_rtp_summaries(before[phone.user] + 1)
        if len(summaries) <= before[phone.user]:
            print(f"  {phone.user}'s phone reported no RTP statistics", file=sys.stderr)
            return False
        last = summaries[-1]
        print(f"  {phone.user}'s phone: {last.received} RTP packets received, "
              f"{last.sent} sent")
        ok = ok and last.received > 0 and last.sent > 0
    print(flush=True)
    return ok


def unknown_callee(phones: dict[str, BaresipPhone]) -> bool:
    """A call to a user the proxy does not know ends in NOTIFY 404."""
    url = f"{BASE}/callcontroller/user1/nosuch"
    print("A call to a user the proxy does not know:")
    print(f"$ curl -k -X POST -u user1:123 {url}", flush=True)
    curl("-X", "POST", "-u", "user1:123", url)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = curl("-u", "user1:123", "-H", "Accept: application/json", url).stdout
        with contextlib.suppress(ValueError, AttributeError):
            lines = json.loads(out).get("status-lines", [])
            notify = [line["status-line"] for line in lines if line.get("method") == "NOTIFY"
                      and not line.get("status-line", "").startswith("SIP/2.0 1")]
            if notify:
                print(f"  user1's phone answered, was REFERred to nosuch and reports: "
                      f"NOTIFY {notify[0]}\n", flush=True)
                return notify[0].startswith("SIP/2.0 404")
        time.sleep(0.2)  # polling the daemon's status
    print("no final NOTIFY for the call to nosuch", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.demo")
    parser.add_argument("--once", action="store_true", help="stop after the click-to-call")
    args = parser.parse_args(argv)
    WORKDIR.mkdir(exist_ok=True)
    proxy_uri = f"sip:127.0.0.1:{PROXY_PORT};lr"
    phones = {user: BaresipPhone(user, password, WORKDIR / "phones", proxy=proxy_uri,
                                 sip_port=free_port(41), answer_delay=RING_SECONDS,
                                 register=True)
              for user, (_alias, password) in DEMO_USERS.items()}
    # no static routes: the proxy finds each phone by its registration
    proxy = Kamailio(WORKDIR / "kamailio", PROXY_PORT, demo_ha1s(), {}, "127.0.0.1:6050",
                     aliases=demo_aliases())
    daemon = Daemon(CONFIG)
    daemon.log_path = WORKDIR / "sipxcc.log"
    daemon.output_path = WORKDIR / "twistd.out"
    stop: list[int] = []

    def stop_on(number, _frame):
        stop.append(number)

    # Ctrl-C in a terminal reaches the whole process group: the children stop themselves
    # and we stop them once more, so the first signal is all it takes.
    signal.signal(signal.SIGTERM, stop_on)
    signal.signal(signal.SIGINT, stop_on)
    try:
        proxy.start()
        for phone in phones.values():
            phone.start()  # and registers
        daemon.start()
        print(f"Kamailio (the sipX proxy) on 127.0.0.1:{PROXY_PORT} with digest auth; "
              "baresip phones for user1..user4, registered there and each answering after "
              f"{RING_SECONDS:.0f} s (PIN 123, SIP passwords pass1..pass4); sipxcc on "
              "https://127.0.0.1:6666, http://127.0.0.1:6667, SIP 127.0.0.1:6050.\n",
              flush=True)
        ok = (click_to_call(phones) and untrusted_client() and hang_up_and_count_rtp(phones)
              and unknown_callee(phones))
        if args.once:
            return 0 if ok else 1
        print("Try (logs in .demo/):")
        for line in TRY:
            print("  " + line.format(base=BASE))
        print("Ctrl-C stops everything.", flush=True)
        while not stop and daemon.process.poll() is None:
            time.sleep(0.5)  # waiting for Ctrl-C
        return 0 if ok else 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C cannot cut this short
        daemon.stop()
        proxy.stop()
        for phone in phones.values():
            phone.stop()


if __name__ == "__main__":
    sys.exit(main())
