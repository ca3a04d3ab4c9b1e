"""
`make demo`: Kamailio as the sipX proxy, a sipp phone per demo user, the daemon with
etc/demo.ini, and a real click-to-call made with curl whose status XML is shown.

    python -m tests.integration.demo [--once]

With --once everything stops after the click-to-call (the demo's own test uses that);
otherwise the daemon keeps running for you to try the printed commands until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from tests.integration.daemon import PROJECT_ROOT, Daemon
from tests.integration.peers import (
    DEMO_USERS,
    Kamailio,
    SippPhone,
    demo_aliases,
    demo_ha1s,
    free_port,
)

CONFIG = PROJECT_ROOT / "etc" / "demo.ini"
WORKDIR = PROJECT_ROOT / ".demo"
BASE = "https://127.0.0.1:6666"
TRY = [
    "curl -k -X POST -u user1:123 {base}/callcontroller/user1/user2",
    "curl -k -u user1:123 {base}/callcontroller/user1/user2",
    "curl -k -X POST -u user3:123 '{base}/callcontroller/user1/user2?agent=user3'",
    "curl -k '{base}/callcontroller/user1/user2?agent=user3'",
    "curl -k -u user3:123 -X GET '{base}/callcontroller/user1/user2?agent=user3'",
    "curl -k --digest -u user1:123 http://127.0.0.1:6667/callcontroller/user1/user2",
    "curl -H 'sipx-user: user1' http://127.0.0.1:6668/callcontroller/user1/user2",
    "curl -k -H 'Accept: application/json' {base}/calls",
]


def show(command: list[str]) -> str:
    print("$ " + " ".join(command), flush=True)
    out = subprocess.run(command, capture_output=True, text=True, timeout=20).stdout
    print(out, flush=True)
    return out


def click_to_call() -> bool:
    """POST as user1, then GET until the transfer's final NOTIFY is in the status."""
    show(["curl", "-sk", "-X", "POST", "-u", "user1:123",
          f"{BASE}/callcontroller/user1/user2"])
    print("(user1's phone rings and answers; the daemon REFERs it to user2 ...)\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = subprocess.run(["curl", "-sk", "-u", "user1:123",
                              f"{BASE}/callcontroller/user1/user2"],
                             capture_output=True, text=True, timeout=20).stdout
        if "<method>NOTIFY</method>\n\t<status-line>SIP/2.0 200 OK" in out:
            show(["curl", "-sk", "-u", "user1:123", f"{BASE}/callcontroller/user1/user2"])
            return True
        time.sleep(0.2)  # polling interval
    print("the click-to-call did not complete; see .demo/ for the logs", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.demo")
    parser.add_argument("--once", action="store_true", help="stop after the click-to-call")
    args = parser.parse_args(argv)
    WORKDIR.mkdir(exist_ok=True)
    phones = {user: SippPhone("refer_transferee" if user == "user1" else "phone_answer",
                              free_port(), WORKDIR / "phones", calls=None, name=f"demo-{user}")
              for user in DEMO_USERS}
    proxy = Kamailio(WORKDIR / "kamailio", 5080, demo_ha1s(),
                     {user: phone.contact for user, phone in phones.items()},
                     "127.0.0.1:6050", aliases=demo_aliases())
    daemon = Daemon(CONFIG)
    daemon.log_path = WORKDIR / "sipxcc.log"
    daemon.output_path = WORKDIR / "twistd.out"
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        for phone in phones.values():
            phone.start()
        proxy.start()
        daemon.start()
        print("Kamailio (the sipX proxy) on 127.0.0.1:5080 with digest auth; sipp phones for "
              "user1..user4 (PIN 123, SIP passwords pass1..pass4); sipxcc on "
              "https://127.0.0.1:6666, http://127.0.0.1:6667, SIP 127.0.0.1:6050.\n")
        ok = click_to_call()
        if args.once:
            return 0 if ok else 1
        print("Try (logs in .demo/):")
        for line in TRY:
            print("  " + line.format(base=BASE))
        print("Ctrl-C stops everything.", flush=True)
        while not stop and daemon.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        daemon.stop()
        proxy.stop()
        for phone in phones.values():
            phone.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
