"""Real SIP phones for integration tests and the demo: baresip and linphonec, headless.

``LinphonePhone`` (at the end) drives Debian's linphonec on its console, answering every
call at once, as a second phone implementation with its own RTP timeout rule.

``BaresipPhone(user, password, workdir, proxy=..., sip_port=...)`` writes a baresip
configuration into its own directory and runs ``baresip -f DIR``: no sound card (a 440 Hz
sine as microphone; what it hears is played into an ``aubridge`` device nobody reads),
G.711 only, every request sent via ``proxy``. With ``register`` it registers there with
its password and ``start()`` waits for the proxy's 200; without, the proxy must route
``user@domain`` to ``contact`` itself. The ``ctrl_tcp`` module carries the phone's events
(ringing, answered, RTP flowing, closed) and our commands (dial, answer, hangup). With
``auto_answer`` it answers each incoming call after ``answer_delay`` seconds. A call's
``CALL_RTPESTAB`` event means RTP from the other side arrived; ``rtp_summaries()`` reads
the packets each call sent and received from the ``rtcpsummary`` module's line, printed
when a call that lasted long enough for RTCP ends.

Usable as a context manager and so as a pytest fixture::

    with BaresipPhone("user2", "pass2", tmp_path, proxy=kamailio.route_uri,
                      sip_port=free_port()) as phone:
        ...
        phone.wait_for("CALL_ESTABLISHED", timeout=10)

Every wait has a deadline, the event history and the log read are bounded.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tests.integration.peers import DOMAIN, LOOPBACK, PeerError, free_port

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
MODULE_PATH = "/usr/lib/baresip/modules"
MAX_EVENTS = 1000
"""Events kept per phone; older ones are forgotten."""
MAX_NETSTRING = 65536
MAX_LOG_BYTES = 4 * 1024 * 1024
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

_SUMMARY = re.compile(r"EX=BareSip;.*?PR=(\d+);PS=(\d+);")


def available() -> bool:
    """True when baresip and the modules the phones use are installed."""
    return Path(BARESIP).exists() and all(
        (Path(MODULE_PATH) / f"{module}.so").exists()
        for module in ("ctrl_tcp", "ausine", "aubridge", "g711", "rtcpsummary", "account",
                       "menu"))


@dataclass(frozen=True)
class RtpSummary:
    """RTP packets one call received and sent, from baresip's RTCP summary."""

    received: int
    sent: int


class _PhoneProcess:
    """What both phone drivers share: a C{user} at C{sip_port} on loopback, one process
    (C{process}) with a reader thread (C{_reader}), a log at C{log_path}; use as a context
    manager."""

    user: str
    sip_port: int
    log_path: Path
    process: subprocess.Popen | None
    _reader: threading.Thread | None

    @property
    def contact(self) -> str:
        """The URI the proxy relays this user's calls to."""
        return f"sip:{self.user}@{LOOPBACK}:{self.sip_port}"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _terminate(self) -> None:
        """SIGTERM the process, then SIGKILL after STOP_TIMEOUT s; wait for it."""
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)

    def log_text(self) -> str:
        """The process's log so far (its first MAX_LOG_BYTES), "" if there is none."""
        with contextlib.suppress(OSError), open(self.log_path, "rb") as log:
            return log.read(MAX_LOG_BYTES).decode("utf-8", errors="replace")
        return ""


class BaresipPhone(_PhoneProcess):
    """One headless baresip for ``user``@``domain``, sending everything via ``proxy``."""

    def __init__(self, user: str, password: str, workdir: Path | str, *,
                 proxy: str, sip_port: int | None = None, domain: str = DOMAIN,
                 auto_answer: bool = True, answer_delay: float = 0.0, register: bool = False,
                 ctrl_port: int | None = None, name: str | None = None):
        self.user = user
        self.password = password
        self.domain = domain
        self.proxy = proxy
        self.auto_answer = auto_answer
        self.answer_delay = answer_delay
        self.register = register
        self.sip_port = sip_port or free_port()
        self.ctrl_port = ctrl_port or free_port()
        self.name = name or user
        self.dir = Path(workdir) / f"baresip-{self.name}"
        self.log_path = self.dir / "baresip.log"
        self.process: subprocess.Popen | None = None
        self.events: collections.deque[dict] = collections.deque(maxlen=MAX_EVENTS)
        self.responses: collections.deque[dict] = collections.deque(maxlen=MAX_EVENTS)
        self._tokens = 0
        self._changed = threading.Condition()
        self._socket: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._timers: list[threading.Timer] = []

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    def config_text(self) -> str:
        modules = ["ausine", "aubridge", "g711", "rtcpsummary", "ctrl_tcp"]
        lines = [
            f"sip_listen\t\t{LOOPBACK}:{self.sip_port}",
            "sip_trans_def\t\tudp",
            f"module_path\t\t{MODULE_PATH}",
            *(f"module\t\t\t{module}.so" for module in modules),
            "module_app\t\taccount.so",
            "module_app\t\tmenu.so",
            "statmode_default\toff",
            "audio_source\t\tausine,440",
            "ausrc_srate\t\t48000",
            "ausrc_channels\t\t2",
            # what the phone hears goes to a bridge device nobody reads (no sound card)
            f"audio_player\t\taubridge,heard-{self.name}",
            f"audio_alert\t\taubridge,alert-{self.name}",
            f"rtp_ports\t\t{self.sip_port + 2}-{self.sip_port + 40}",
            "rtcp_mux\t\tno",
            f"ctrl_tcp_listen\t\t{LOOPBACK}:{self.ctrl_port}",
            f"net_interface\t\t{LOOPBACK}",
            "dns_fallback\t\t127.0.0.1:53",
        ]
        return "\n".join(lines) + "\n"

    def account_text(self) -> str:
        # Answering is ours (answer_delay), so baresip itself never auto-answers.
        return (f"<sip:{self.user}@{self.domain}>;auth_pass={self.password}"
                f";outbound=\"{self.proxy}\";regint={600 if self.register else 0}"
                ";audio_codecs=PCMU,PCMA"
                ";answermode=manual\n")

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start baresip and connect to its control port (within START_TIMEOUT s)."""
        if not available():
            raise PeerError("baresip (Debian baresip-core) is not installed")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config").write_text(self.config_text())
        (self.dir / "accounts").write_text(self.account_text())
        (self.dir / "contacts").write_text("")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([BARESIP, "-f", str(self.dir)], cwd=self.dir,
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PeerError(f"baresip for {self.user} exited with "
                                f"{self.process.returncode}:\n{self.log_text()}")
            with contextlib.suppress(OSError):
                self._socket = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1)
                break
            time.sleep(0.05)  # polling interval while baresip starts
        else:
            self.stop()
            raise PeerError(f"baresip for {self.user} did not open its control port:\n"
                            f"{self.log_text()}")
        self._socket.settimeout(None)
        self._reader = threading.Thread(target=self._read_events, daemon=True,
                                        name=f"baresip-{self.name}")
        self._reader.start()
        if self.register:
            try:
                self._wait_registered(deadline)
            except PeerError:
                self.stop()
                raise

    def _wait_registered(self, deadline: float) -> None:
        # The REGISTER_OK event may come before we are connected: ask instead.
        while True:
            info = self.request("reginfo", timeout=max(0.1, deadline - time.monotonic()))
            if re.search(r"\bOK\b", re.sub(r"\x1b\[[0-9;]*m", "", info)):
                return
            if time.monotonic() > deadline:
                raise PeerError(f"{self.user}'s phone did not register: {info!r}\n"
                                f"{self.log_text()}")
            time.sleep(0.1)  # polling the phone's registration state

    def stop(self) -> None:
        """Stop baresip (SIGTERM, then SIGKILL after STOP_TIMEOUT s)."""
        for timer in self._timers:
            timer.cancel()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        if self.process is not None and self.process.poll() is None:
            self._terminate()
        self._join_reader()

    # -- control ------------------------------------------------------------------------

    def command(self, name: str, params: str = "") -> str:
        """Send a baresip command (``dial``, ``accept``, ``hangup``, ...); its token."""
        if self._socket is None:
            raise PeerError("baresip is not running")
        with self._changed:
            self._tokens += 1
            token = f"{name}-{self._tokens}"
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        self._socket.sendall(b"%d:%s," % (len(body), body))
        return token

    def request(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        """Send a command and return the text of baresip's answer to it."""
        token = self.command(name, params)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for response in self.responses:
                    if response.get("token") == token:
                        return str(response.get("data", ""))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerError(f"{self.user}'s phone did not answer {name!r} within "
                                    f"{timeout} s")
                self._changed.wait(remaining)

    def dial(self, target: str) -> None:
        """Call ``target`` (a SIP URI, or a user name of the domain) via the proxy."""
        self.command("dial", target if ":" in target else f"sip:{target}@{self.domain}")

    def answer(self) -> None:
        self.command("accept")

    def hangup(self) -> None:
        self.command("hangup")

    def _read_events(self) -> None:
        buffer = b""
        while True:
            try:
                data = self._socket.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while True:
                length, colon, rest = buffer.partition(b":")
                if not colon:
                    break
                if not length.isdigit() or int(length) > MAX_NETSTRING:
                    return  # not a netstring: stop reading rather than grow
                size = int(length)
                if len(rest) < size + 1:
                    break
                payload, buffer = rest[:size], rest[size + 1:]
                with contextlib.suppress(ValueError):
                    self._record(json.loads(payload))
            if len(buffer) > MAX_NETSTRING:
                return

    def _record(self, message: dict) -> None:
        if message.get("response"):
            with self._changed:
                self.responses.append(message)
                self._changed.notify_all()
            return
        if not message.get("event"):
            return
        message["time"] = time.monotonic()
        message["wall"] = time.time()
        with self._changed:
            self.events.append(message)
            self._changed.notify_all()
        if message.get("type") == "CALL_INCOMING" and self.auto_answer:
            timer = threading.Timer(self.answer_delay, self._answer_quietly)
            self._timers.append(timer)
            timer.start()

    def _answer_quietly(self) -> None:
        with contextlib.suppress(OSError, PeerError):
            self.answer()

    # -- observing ----------------------------------------------------------------------

    def event_types(self) -> list[str]:
        with self._changed:
            return [event.get("type", "") for event in self.events]

    def wait_for(self, event_type: str, timeout: float = 10.0, after: float = 0.0) -> dict:
        """The first event of ``event_type`` (seen at or after monotonic ``after``)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if event.get("type") == event_type and event["time"] >= after:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerError(f"{self.user}'s phone saw no {event_type} within "
                                    f"{timeout} s; it saw {self.event_types()}")
                self._changed.wait(remaining)

    def rtp_summaries(self) -> list[RtpSummary]:
        """One summary per ended call: RTP packets received and sent."""
        return [RtpSummary(int(received), int(sent))
                for received, sent in _SUMMARY.findall(self.log_text())]

    def wait_for_rtp_summaries(self, count: int, timeout: float = 10.0) -> list[RtpSummary]:
        """At least ``count`` summaries (they are logged when each call ends)."""
        deadline = time.monotonic() + timeout
        while True:
            summaries = self.rtp_summaries()
            if len(summaries) >= count or time.monotonic() > deadline:
                return summaries
            time.sleep(0.1)  # polling baresip's log file


LINPHONEC = shutil.which("linphonec") or "/usr/bin/linphonec"
MAX_LINES = 2000
"""Lines of linphonec's console output kept per phone; older ones are forgotten."""


def linphone_available() -> bool:
    """True when Debian's linphone-cli (linphonec) is installed."""
    return Path(LINPHONEC).exists()


class LinphonePhone(_PhoneProcess):
    """
    One headless linphonec (Debian ``linphone-cli``, liblinphone 5.1) answering every call
    at once (``-a``), as a second real phone implementation beside baresip. It does not
    register: the proxy routes ``user@domain`` to ``contact``. ``nortp_timeout`` is
    liblinphone's own rule that ends a call after that many seconds without RTP (its
    default is 30). No sound card: ALSA's null device, whatever it finds.

    ``lines`` is its console output (``Call 1 ... connected.``, ``Call 1 ... ended ...``);
    ``log_text()`` is liblinphone's log, which holds every SIP message it received.
    """

    def __init__(self, user: str, workdir: Path | str, *, sip_port: int | None = None,
                 nortp_timeout: int = 30, name: str | None = None):
        self.user = user
        self.sip_port = sip_port or free_port(41)
        self.nortp_timeout = nortp_timeout
        self.name = name or user
        self.dir = Path(workdir) / f"linphone-{self.name}"
        self.log_path = self.dir / "linphone.log"
        self.process: subprocess.Popen | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None

    def config_text(self) -> str:
        return "\n".join([
            "[sip]", f"sip_port={self.sip_port}", "sip_tcp_port=-1", "sip_tls_port=-1",
            "default_proxy=-1", "bind_address=127.0.0.1",
            "[rtp]", f"audio_rtp_port={self.sip_port + 2}",
            f"nortp_timeout={self.nortp_timeout}",
            "[net]", "ipv6=0",
            "[sound]", "echocancellation=0",
            "[video]", "enabled=0", "capture=0", "display=0",
        ]) + "\n"

    def start(self) -> None:
        """Start linphonec; ready once its prompt appears (within START_TIMEOUT s)."""
        if not linphone_available():
            raise PeerError("linphonec (Debian linphone-cli) is not installed")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "linphonerc").write_text(self.config_text())
        # its call history database; without it the core never comes on
        (self.dir / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [LINPHONEC, "-c", str(self.dir / "linphonerc"), "-a", "-d", "6",
             "-l", str(self.log_path)],
            cwd=self.dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env={"HOME": str(self.dir),
                                                      "PATH": "/usr/bin:/bin"})
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"linphonec-{self.name}")
        self._reader.start()
        # liblinphone 5.1 leaves the configured sip_port unused: set it on the console
        self.command(f"ports sip {self.sip_port}")
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # a call that comes before the core is on gets a 503
            self.command("states global")
            try:
                self.wait_for("LinphoneGlobalOn", timeout=1.0)
                return
            except PeerError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def command(self, text: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def wait_for(self, pattern: str, timeout: float = 10.0) -> str:
        """The first console line matching C{pattern} (a regex), waiting at most C{timeout}."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerError(f"linphonec {self.name}: no {pattern!r} within {timeout} s;"
                                    f" its output:\n" + "\n".join(list(self.lines)[-40:]))
                self._changed.wait(left)

    def said(self, pattern: str) -> bool:
        regex = re.compile(pattern)
        with self._changed:
            return any(regex.search(line) for line in self.lines)

    def stop(self) -> None:
        """``quit``, then SIGTERM / SIGKILL after STOP_TIMEOUT s each."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.command("quit")
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._terminate()
        self._join_reader()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()

    def sip_messages(self) -> list[tuple[str, str]]:
        """Every SIP message in its log, in order, as ("received" or "sent", text)."""
        messages: list[tuple[str, str]] = []
        direction: str | None = None
        current: list[str] | None = None
        for line in self.log_text().splitlines():
            if _LOG_LINE.match(line):
                if current is not None and direction is not None:
                    messages.append((direction, "\r\n".join(current)))
                current = None
                direction = ("received" if "new bytes from" in line else
                             "sent" if "message sent to" in line else None)
            elif direction is not None and current is None:
                current = [line]
            elif current is not None:
                current.append(line)
        if current is not None and direction is not None:
            messages.append((direction, "\r\n".join(current)))
        return messages

    def received(self, start: str) -> list[str]:
        """The SIP messages it received whose first line starts with C{start}."""
        return [text for way, text in self.sip_messages()
                if way == "received" and text.startswith(start)]

    def sent(self, start: str) -> list[str]:
        """The SIP messages it sent whose first line starts with C{start}."""
        return [text for way, text in self.sip_messages()
                if way == "sent" and text.startswith(start)]


_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} ")
