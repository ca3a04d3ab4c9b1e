"""Real SIP peers for integration tests: Kamailio as the sipX proxy, sipp as phones.

Everything listens on 127.0.0.1 on ports chosen free at random.  Both peers are
context managers that always stop their process on exit.

``tests/integration/demo.py`` (``make demo``) builds the demo PBX from them.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.integration.daemon import free_ports

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
CONFIG_TEMPLATE = HERE / "kamailio.cfg"
LOOPBACK = "127.0.0.1"
DOMAIN = "sipx.test"

# user -> (alias, SIP password)
DEMO_USERS = {
    "user1": ("201", "pass1"),
    "user2": ("202", "pass2"),
    "user3": ("203", "pass3"),
    "user4": ("204", "pass4"),
}


class PeerError(RuntimeError):
    """A peer process failed to start or misbehaved."""


def ha1(user: str, password: str, realm: str = DOMAIN) -> str:
    """The SIP digest HA1 (sipX "passtoken"): md5hex("user:realm:password")."""
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


def demo_ha1s() -> dict[str, str]:
    """user -> HA1 for the demo users."""
    return {user: ha1(user, password) for user, (_alias, password) in DEMO_USERS.items()}


def demo_aliases() -> dict[str, str]:
    """alias -> user for the demo users."""
    return {alias: user for user, (alias, _password) in DEMO_USERS.items()}


def _bindable(port: int, kinds: tuple[int, ...]) -> bool:
    sockets = []
    try:
        for kind in kinds:
            sock = socket.socket(socket.AF_INET, kind)
            sockets.append(sock)
            sock.bind((LOOPBACK, port))
        return True
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()


def free_port(count: int = 1) -> int:
    """A port p on 127.0.0.1 such that p .. p+count-1 are free for both UDP and TCP (from
    below the ephemeral range, never one handed out lately: see L{free_ports})."""
    return free_ports(1, LOOPBACK, span=count)[0]


def _stop_process(process: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the process (and its process group), then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    # kamailio's children may outlive a killed parent: clean the whole group
    _signal_group(process, signal.SIGKILL)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _options_probe(port: int, transport: str) -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(8)
    return (
        f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} {LOOPBACK}:9;branch={branch};rport\r\n"
        "Max-Forwards: 5\r\n"
        f"From: <sip:probe@{LOOPBACK}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{LOOPBACK}:{port}>\r\n"
        f"Call-ID: probe-{secrets.token_hex(8)}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def sip_probe(port: int, transport: str = "udp", timeout: float = 0.5) -> str | None:
    """Send one OPTIONS to 127.0.0.1:port; the first response line, or None."""
    try:
        if transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.sendto(_options_probe(port, "udp"), (LOOPBACK, port))
                data = sock.recv(65535)
        else:
            with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                sock.sendall(_options_probe(port, "tcp"))
                data = sock.recv(65535)
    except OSError:
        return None
    return data.decode("utf-8", "replace").split("\r\n", 1)[0] or None


class Kamailio:
    """Kamailio 5.6 configured from kamailio.cfg as the sipX proxy.

    `users`: user -> HA1 (credentials the controller may use); `locations`:
    user -> contact URI the proxy relays to; `aliases`: alias -> user;
    `controller`: "ip:port" of the daemon, whose requests must be authenticated
    (matched on source address, or on top-Via port for TCP).  With
    `bad_credentials_reply=403` a wrong password is refused with 403 instead of
    re-challenged with 407.
    """

    def __init__(self, workdir, port: int, users: dict[str, str], locations: dict[str, str],
                 controller: str, *, auth_in_dialog: bool = True,
                 transports: tuple[str, ...] = ("udp", "tcp"),
                 aliases: dict[str, str] | None = None, realm: str = DOMAIN,
                 domain: str = DOMAIN, bad_credentials_reply: int = 407,
                 start_timeout: float = 10.0):
        if bad_credentials_reply not in (403, 407):
            raise ValueError("bad_credentials_reply must be 403 or 407")
        if not transports or set(transports) - {"udp", "tcp"}:
            raise ValueError(f"transports must be udp and/or tcp, not {transports!r}")
        self.workdir = Path(workdir)
        self.port = port
        self.users = dict(users)
        self.locations = dict(locations)
        self.aliases = dict(aliases or {})
        self.controller_ip, _, controller_port = controller.rpartition(":")
        self.controller_port = int(controller_port)
        self.auth_in_dialog = auth_in_dialog
        self.transports = tuple(transports)
        self.realm = realm
        self.domain = domain
        self.bad_credentials_reply = bad_credentials_reply
        self.start_timeout = start_timeout
        self.config_path = self.workdir / f"kamailio-{port}.cfg"
        self.log_path = self.workdir / f"kamailio-{port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """"127.0.0.1:port" -- what a UAC puts after its options."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def route_uri(self) -> str:
        """The loose-route URI the daemon uses as its proxy."""
        return f"sip:{LOOPBACK}:{self.port};lr"

    def config_text(self) -> str:
        """The kamailio.cfg template with every %%TOKEN%% filled in."""
        tables = []
        for table, entries in (("ha1", self.users), ("loc", self.locations),
                               ("alias", self.aliases)):
            for key, value in entries.items():
                _check_token(key)
                _check_token(value)
                tables.append(f'\t$sht({table}=>{key}) = "{value}";')
        defines = []
        if self.auth_in_dialog:
            defines.append("#!define AUTH_IN_DIALOG")
        if self.bad_credentials_reply == 403:
            defines.append("#!define BAD_CREDENTIALS_403")
        listen = "\n".join(f"listen={t}:{LOOPBACK}:{self.port}" for t in self.transports)
        values = {
            "LISTEN": listen,
            "DISABLE_TCP": "no" if "tcp" in self.transports else "yes",
            "DOMAIN": self.domain,
            "REALM": self.realm,
            "SECRET": secrets.token_hex(16),
            "TABLES": "\n".join(tables) or "\txlog(\"L_INFO\", \"no users\\n\");",
            "DEFINES": "\n".join(defines),
            "CONTROLLER_IP": self.controller_ip,
            "CONTROLLER_PORT": str(self.controller_port),
        }
        text = CONFIG_TEMPLATE.read_text()
        for name, value in values.items():
            text = text.replace(f"%%{name}%%", value)
        leftover = re.search(r"%%\w+%%", text)
        if leftover:
            raise PeerError(f"kamailio.cfg token {leftover.group()} has no value")
        return text

    def start(self) -> Kamailio:
        """Write the config, start kamailio in the foreground and wait until it answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        command = [
            shutil.which("kamailio") or "/usr/sbin/kamailio",
            "-DD", "-E", "-f", str(self.config_path),
            "-m", "32", "-M", "8", "-n", "2",
            "-Y", str(self.workdir), "-w", str(self.workdir),
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        probe_transport = "udp" if "udp" in self.transports else "tcp"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PeerError(f"kamailio exited with {self.process.returncode}:\n"
                                + self.log_tail())
            if sip_probe(self.port, probe_transport, timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise PeerError(f"kamailio did not answer OPTIONS on port {self.port} within "
                        f"{self.start_timeout} s:\n" + self.log_tail())

    def stop(self) -> None:
        """Stop kamailio: SIGTERM, then SIGKILL."""
        if self.process is not None:
            _stop_process(self.process)

    def log_text(self) -> str:
        """Everything kamailio logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def errors(self) -> list[str]:
        """Log lines at ERROR or CRITICAL level."""
        return [line for line in self.log_text().splitlines()
                if re.search(r"\b(ERROR|CRITICAL|BUG):", line)]

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _check_token(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.:;=@+\-]+", value):
        raise ValueError(f"unsafe value for kamailio.cfg: {value!r}")


def scenario_path(name: str) -> Path:
    """The scenario file for `name` ("phone_answer" or "phone_answer.xml")."""
    path = SCENARIOS / (name if name.endswith(".xml") else name + ".xml")
    if not path.is_file():
        raise ValueError(f"no sipp scenario {path.name} in {SCENARIOS}")
    return path


class SippPhone:
    """One sipp process playing a phone (UAS) or a test UAC from scenarios/<name>.xml.

    `port`: the SIP port sipp binds on 127.0.0.1; `remote`: "ip:port" to send to
    (required for UAC scenarios); `calls`: -m (None = unlimited, a looping phone);
    `transport`: "u1" or "t1"; `service`: -s (the R-URI user of a UAC);
    `auth`: (user, password) for the scenario's [authentication];
    `keys`: -key name value (text substituted for [name] in the scenario);
    `variables`: -set name value.  The exit code of sipp is 0 when every call
    succeeded.
    """

    def __init__(self, scenario: str, port: int, workdir, *, calls: int | None = 1,
                 transport: str = "u1", remote: str | None = None,
                 service: str | None = None, auth: tuple[str, str] | None = None,
                 keys: dict[str, str] | None = None, variables: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = (), name: str | None = None,
                 timeout: float | None = None):
        if transport not in ("u1", "t1"):
            raise ValueError(f"transport must be u1 or t1, not {transport!r}")
        self.scenario = scenario_path(scenario)
        self.port = port
        self.workdir = Path(workdir)
        self.name = name or f"{self.scenario.stem}-{port}"
        self.media_port = free_port(4)
        self.message_path = self.workdir / f"{self.name}.msg.log"
        self.error_path = self.workdir / f"{self.name}.err.log"
        self.screen_path = self.workdir / f"{self.name}.out.log"
        command = [
            shutil.which("sipp") or "/usr/bin/sipp",
            "-sf", str(self.scenario), "-i", LOOPBACK, "-p", str(port), "-t", transport,
            "-mi", LOOPBACK, "-mp", str(self.media_port), "-nostdin",
            "-trace_msg", "-message_file", str(self.message_path),
            "-trace_err", "-error_file", str(self.error_path),
        ]
        if remote is None:
            # A phone: over UDP through a multi-process proxy an in-dialog request may
            # overtake the ACK sent before it (seen with Kamailio's UDP workers); a phone
            # does not hang up over that, and the request's retransmission then finds the
            # scenario ready for it.
            command += ["-default_behaviors", "all,-abortunexp"]
        if calls is not None:
            command += ["-m", str(calls)]
        if service is not None:
            command += ["-s", service]
        if auth is not None:
            command += ["-au", auth[0], "-ap", auth[1]]
        if timeout is not None:
            command += ["-timeout", f"{int(timeout)}s", "-timeout_error"]
        # [lf]: a bare line feed, for scenarios that imitate sloppy phones
        for key, value in {"lf": "\n", **(keys or {})}.items():
            command += ["-key", key, value]
        for key, value in (variables or {}).items():
            command += ["-set", key, value]
        command += list(extra_args)
        if remote is not None:
            command.append(remote)
        self.command = command
        self.remote = remote
        self.transport = transport
        self.process: subprocess.Popen | None = None

    @property
    def contact(self) -> str:
        """The URI a proxy routes to for this phone (user part is the scenario name)."""
        return f"sip:{self.scenario.stem}@{LOOPBACK}:{self.port}"

    def start(self) -> SippPhone:
        """Start sipp in the background; wait until it listens when it is a UAS."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.screen_path, "wb") as screen:
            self.process = subprocess.Popen(
                self.command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=screen,
                stderr=subprocess.STDOUT, start_new_session=True)
        if self.remote is None:
            self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 5.0) -> None:
        kind = socket.SOCK_DGRAM if self.transport == "u1" else socket.SOCK_STREAM
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PeerError(f"sipp {self.name} exited with {self.process.returncode}: "
                                + self.output())
            if not _bindable(self.port, (kind,)):
                return
            time.sleep(0.02)
        raise PeerError(f"sipp {self.name} is not listening on {self.port}")

    def wait(self, timeout: float) -> int:
        """Wait for sipp to finish; its exit code (0: all calls succeeded).

        Raises PeerError (after stopping sipp) if it is still running after `timeout`.
        """
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise PeerError(f"sipp {self.name} still running after {timeout} s; "
                            f"errors:\n{self.errors()}\nmessages:\n{self.messages()}") from None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        """Stop sipp if it still runs."""
        if self.process is not None:
            _stop_process(self.process, grace=2.0)

    def messages(self) -> str:
        """The message trace: every SIP message sipp sent and received, as text."""
        return _read(self.message_path)

    def received(self, first_line: str = "") -> list[str]:
        """Messages sipp received whose first line starts with `first_line`.

        E.g. received("BYE "), received("SIP/2.0 407").
        """
        return [message for direction, message in _split_trace(self.messages())
                if direction == "received" and message.startswith(first_line)]

    def sent(self, first_line: str = "") -> list[str]:
        """Messages sipp sent whose first line starts with `first_line`."""
        return [message for direction, message in _split_trace(self.messages())
                if direction == "sent" and message.startswith(first_line)]

    def times(self, direction: str, first_line: str = "") -> list[float]:
        """When (epoch seconds, from sipp's trace) each message C{direction} ("sent" or
        "received") whose first line starts with C{first_line} went or came."""
        return [datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
                for stamp, way, line in _TRACE_TIMES.findall(self.messages())
                if way == direction and line.startswith(first_line)]

    def errors(self) -> str:
        """sipp's error log (unexpected messages, failed checks)."""
        return _read(self.error_path)

    def output(self) -> str:
        """sipp's last screen, and its error file (why it stopped: a port it could not
        bind, a scenario error) when there is one."""
        errors = _read(self.error_path)[-2000:] if self.error_path.exists() else ""
        return _read(self.screen_path)[-3000:] + (f"\n--- {self.error_path.name}:\n{errors}"
                                                   if errors.strip() else "")

    def __enter__(self) -> SippPhone:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _read(path: Path) -> str:
    try:
        # newline="": keep CRLF and bare LF as sent, tests may check line endings
        with open(path, encoding="utf-8", errors="replace", newline="") as file:
            return file.read()
    except FileNotFoundError:
        return ""


_TRACE_HEADER = re.compile(
    r"^-{20,} [^\n]*\r?\n(?:UDP|TCP|TLS|SCTP) message (sent|received)[^\n]*\r?\n\r?\n",
    re.M)


_TRACE_TIMES = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\r?\n"
    r"(?:UDP|TCP|TLS|SCTP) message (sent|received)[^\n]*\r?\n\r?\n([^\r\n]*)", re.M)


def _split_trace(trace: str) -> list[tuple[str, str]]:
    """sipp's -trace_msg text -> [("sent"|"received", message)]."""
    parts = _TRACE_HEADER.split(trace)
    # parts: [preamble, direction, message, direction, message, ...]
    # sipp writes each message followed by one "\n"
    return [(parts[i], parts[i + 1].removesuffix("\n"))
            for i in range(1, len(parts) - 1, 2)]
