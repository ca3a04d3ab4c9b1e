"""A throw-away redis-server for tests: its own free port and temporary directory, no
persistence (or, with C{save_on_stop}, a snapshot written when it stops and read when it
starts again, as Debian's redis.conf does); stopped (and restartable on the same port) by
the test. Optionally with a password (C{requirepass}) or TLS only (C{tls=(cert file, key
file)})."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

from bench.harness import stop as stop_process
from tests.integration.peers import free_port


class RedisServer:
    """One redis-server on 127.0.0.1:C{port}, data in C{directory}, nothing saved unless
    C{save_on_stop} (then stopping it writes C{directory}/dump.rdb, which the next start
    loads). C{wrapper} is put before the command (e.g. C{taskset -c 0})."""

    def __init__(self, directory: Path, port: int | None = None, *,
                 password: str | None = None, tls: tuple[str, str] | None = None,
                 save_on_stop: bool = False, wrapper: tuple[str, ...] = ()):
        self.directory = directory
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.save_on_stop = save_on_stop
        self.wrapper = wrapper
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make deps)")
        # a save point makes redis-server write its snapshot when it is stopped (SIGTERM)
        save = "3600 1" if self.save_on_stop else ""
        args = [*self.wrapper, binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(self.directory), "--save", save, "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file",
                     self.tls[0], "--tls-key-file", self.tls[1], "--tls-auth-clients", "no"]
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING in time")

    def ping(self) -> bool:
        """Redis answers (a password refusal is an answer too)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as plain:
                if not self.tls:
                    return self._pong(plain)
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # only: is it up?
                with context.wrap_socket(plain) as sock:
                    return self._pong(sock)
        except OSError:
            return False

    @staticmethod
    def _pong(sock: socket.socket) -> bool:
        sock.sendall(b"PING\r\n")
        return sock.recv(16)[:6] in (b"+PONG\r", b"-NOAUT")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
