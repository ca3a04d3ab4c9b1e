"""Run the real daemon (``twistd sipxcc``) for integration tests.

``write_config(tmp_path, ...)`` writes a complete loopback config for the demo users on
free ports; ``Daemon(path)`` is a context manager that starts twistd in the foreground,
waits until ``/health`` answers and stops it again (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from sipxcc.config import KEYS, Config, load_config
from sipxcc.tap import option_name

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_VALIDUSERS = PROJECT_ROOT / "etc" / "validusers.xml"
# The interpreter running the tests runs twistd too ("python -m twisted" would be `twist`).
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; run()"]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(family: int, host: str, port: int, held: list[socket.socket]) -> bool:
    """Bind TCP and UDP on ``port``; keep the sockets in ``held`` on success."""
    sockets = []
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            sock = socket.socket(family, kind)
            sockets.append(sock)
            sock.bind((host, port))
    except OSError:
        for sock in sockets:
            sock.close()
        return False
    held.extend(sockets)
    return True


_RANDOM = random.Random()
_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=2000)
"""Ports given out lately: not given again until 2,000 others have been."""

def _default_ringback_ports() -> range:
    low, high = next(key.parse(key.default) for key in KEYS if key.dotted == "ringback.ports")
    return range(low, high + 1)


RINGBACK_PORTS = _default_ringback_ports()
"""The daemon's default ringback.ports: its tone streams bind there while a callee rings,
so a phone started later in the same test must not have been given one of them."""


def free_ports(count: int, host: str = "127.0.0.1", span: int = 1) -> list[int]:
    """``count`` distinct ports free for TCP and UDP on ``host`` right now.

    With ``span`` > 1 each returned port ``p`` has ``p .. p+span-1`` free as well (the
    daemon's TLS listener takes ``sip.port + 1``). Ports come from below the kernel's
    ephemeral range, so no process's outgoing socket can take one between this check and
    the daemon's bind; only another explicit bind could.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low, _high = _ephemeral_range()
    first, last = 10000, max(10000 + 1000, low - span - 1)
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _attempt in range(10000):
            if len(ports) == count:
                _HANDED_OUT.extend(p for port in ports for p in range(port, port + span))
                return ports
            port = _RANDOM.randint(first, last)
            wanted = range(port, port + span)
            if any(p in _HANDED_OUT or p in RINGBACK_PORTS for p in wanted):
                continue  # free now, but maybe not yet bound by whoever got it
            if all(_bindable(family, host, p, held) for p in wanted):
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    raise RuntimeError(f"no {count} free ports on {host}")


def write_config(tmp_path: Path, **overrides: object) -> Path:
    """A complete loopback config in ``tmp_path``; returns its path.

    Keyword overrides are ``section_key=value`` (``sip_port=5070``,
    ``calls_max_calls=3``); ``None`` leaves the key out of the file. The demo users are
    copied to ``tmp_path/validusers.xml`` so a test may rewrite them.
    """
    tmp_path = Path(tmp_path)
    sip_port, https_port, http_port = free_ports(3)
    users = tmp_path / "validusers.xml"
    if not users.exists():
        shutil.copyfile(DEMO_VALIDUSERS, users)
    values: dict[str, object] = {
        "sip.domain": "sipx.test",
        "sip.realm": "sipx.test",
        "sip.proxy": "sip:127.0.0.1:5080;lr",
        "sip.address": "127.0.0.1",
        "sip.port": sip_port,
        "sip.transports": "udp tcp",
        "http.https": https_port,
        "http.http": http_port,
        "http.address": "127.0.0.1",
        "http.trusted": "127.0.0.1 ::1",
        "users.directory": str(users),
        "users.agents": "user3",
        "calls.callback_hosts": "127.0.0.1 localhost",
        "daemon.state_dir": str(tmp_path / "state"),
        "daemon.log_level": "debug",
    }
    for name, value in overrides.items():
        section, _, key = name.partition("_")
        values[f"{section}.{key}"] = value
    sections: dict[str, list[str]] = {}
    for dotted, value in values.items():
        if value is not None:
            section, key = dotted.split(".", 1)
            sections.setdefault(section, []).append(f"{key} = {value}")
    path = tmp_path / "sipxcc.ini"
    path.write_text("".join(f"[{section}]\n" + "\n".join(lines) + "\n\n"
                            for section, lines in sections.items()))
    return path


def run_twistd(*arguments: str, timeout: float = 30.0, twistd: list[str] | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run twistd to completion (e.g. ``--help`` or a start-up that must fail)."""
    return subprocess.run(
        [*(twistd or TWISTD), *arguments], cwd=PROJECT_ROOT, env=env or twistd_env(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def twistd_env() -> dict[str, str]:
    """The environment for twistd: ours, with the checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                      env.get("PYTHONPATH")]))
    return env


def _url_host(address: str) -> str:
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    return f"[{loopback}]" if ":" in loopback else loopback


class Daemon:
    """The real daemon running ``config_path`` in the foreground under twistd."""

    def __init__(self, config_path: Path | str, overrides: dict[str, str] | None = None,
                 twistd: list[str] | None = None, env: dict[str, str] | None = None):
        """``overrides`` ({"section.key": text}) are passed as ``--section-key`` options."""
        self.config_path = Path(config_path)
        self.overrides = dict(overrides or {})
        self.config: Config = load_config(str(config_path), self.overrides)
        self.extra_arguments = [
            argument
            for dotted, value in self.overrides.items()
            for argument in (f"--{option_name(dotted)}", str(value))
        ]
        self.twistd = twistd or TWISTD
        self.env = env or twistd_env()
        self.work_dir = self.config_path.parent
        self.log_path = self.work_dir / "sipxcc.log"
        self.output_path = self.work_dir / "twistd.out"
        self.process: subprocess.Popen | None = None
        host = _url_host(self.config.http.address)
        self.https_url = f"https://{host}:{self.config.http.https}"
        self.http_url = f"http://{host}:{self.config.http.http}"
        self.sip_port = self.config.sip.port

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start twistd and wait (at most START_TIMEOUT s) until /health answers 200."""
        command = [*self.twistd, "-n", "--pidfile=", f"--logfile={self.log_path}",
                   "sipxcc", "--config", str(self.config_path), *self.extra_arguments]
        with open(self.output_path, "wb") as output:
            self.process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"twistd exited with {self.process.returncode}:\n"
                                   f"{self.output_text()}\n{self.log_text()}")
            if self.health() == 200:
                return
            time.sleep(0.1)  # polling interval, not synchronisation
        self.stop()
        raise RuntimeError(f"sipxcc did not answer /health within {START_TIMEOUT} s:\n"
                           f"{self.output_text()}\n{self.log_text()}")

    def health(self) -> int | None:
        """The status of GET /health (HTTPS if enabled, else HTTP), None if no answer."""
        if self.config.http.https:
            return self.get("/health", secure=True)[0]
        return self.get("/health", secure=False)[0]

    def get(self, path: str, secure: bool = True, timeout: float = 2.0,
            headers: dict[str, str] | None = None) -> tuple[int | None, bytes]:
        """(status, body) of a GET on the daemon; (None, b"") if it does not answer."""
        host = _url_host(self.config.http.address).strip("[]")
        if secure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            connection = http.client.HTTPSConnection(host, self.config.http.https,
                                                     timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(host, self.config.http.http,
                                                    timeout=timeout)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return None, b""
        finally:
            connection.close()

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL; return the exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(STOP_TIMEOUT)

    def log_text(self) -> str:
        """What the daemon logged so far."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def output_text(self) -> str:
        """twistd's own stdout and stderr."""
        with contextlib.suppress(OSError):
            return self.output_path.read_text(errors="replace")
        return ""
