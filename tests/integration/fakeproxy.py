"""
A fake sipX proxy on a loopback UDP socket for injection tests: it records every datagram
the daemon sends it and plays the phone behind it (200 to an INVITE with itself as
Contact, so the REFER comes back to it; 202 to a REFER; 200 to anything else but ACK).

Messages are split into header lines by their bytes alone (not by sipxcc's codec), so a
test sees exactly the header lines a real proxy would.
"""

from __future__ import annotations

import secrets
import select
import socket
import threading
import time


def head_lines(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """(start line, [(header name, value)]) of a SIP message, split at CRLF only."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    start, *lines = head.split("\r\n")
    fields = []
    for line in lines:
        name, _, value = line.partition(":")
        fields.append((name.strip(), value.strip()))
    return start, fields


def field(fields: list[tuple[str, str]], name: str) -> str | None:
    return next((value for n, value in fields if n.lower() == name.lower()), None)


class FakeProxy:
    """The proxy the daemon sends every request to; C{received} holds what came, in order."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port};lr"

    def start(self) -> FakeProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> FakeProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def messages(self, method: str | None = None) -> list[bytes]:
        """Requests received (of C{method}, if given), in order; responses left out."""
        with self._lock:
            got = list(self.received)
        return [data for data in got if not data.startswith(b"SIP/2.0")
                and (method is None or data.startswith(method.encode() + b" "))]

    def wait_for(self, method: str, timeout: float = 10.0) -> bytes:
        """The first C{method} request, waiting for it up to C{timeout} seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages(method)
            if found:
                return found[0]
            time.sleep(0.05)  # polling interval, not synchronisation
        raise AssertionError(f"no {method} reached the proxy within {timeout} s")

    def _run(self) -> None:
        while self._running:
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            try:
                data, address = self.sock.recvfrom(65536)
            except OSError:
                continue
            with self._lock:
                self.received.append(data)
            reply = self._answer(data)
            if reply is not None:
                self.sock.sendto(reply, address)

    def _answer(self, data: bytes) -> bytes | None:
        if data.startswith(b"SIP/2.0") or data.startswith(b"ACK "):
            return None
        start, fields = head_lines(data)
        method = start.split(" ", 1)[0]
        status = {"INVITE": "200 OK", "REFER": "202 Accepted"}.get(method, "200 OK")
        lines = [f"SIP/2.0 {status}"]
        for name, value in fields:
            if name.lower() in ("via", "from", "call-id", "cseq"):
                lines.append(f"{name}: {value}")
            elif name.lower() == "to":
                lines.append(f"To: {value}" if ";tag=" in value
                             else f"To: {value};tag={secrets.token_hex(4)}")
        lines.append(f"Contact: <sip:phone@{self.host}:{self.port}>")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
