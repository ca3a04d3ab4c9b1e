"""Tools for the abuse, fault and overload tests: raw SIP and HTTP clients, a lossy relay,
and process memory readings. Everything talks to 127.0.0.x only and is bounded in time."""

from __future__ import annotations

import json
import secrets
import select
import socket
import ssl
import threading
import time
from pathlib import Path


def rss_kib(pid: int) -> int:
    """The resident set size of process C{pid} in KiB (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def sip_request(method: str, port: int, *, call_id: str | None = None,
                from_tag: str | None = None, to_tag: str | None = None, cseq: int = 1,
                branch: str | None = None, via_port: int = 5999, max_forwards: int = 70,
                transport: str = "UDP", extra: str = "", body: bytes = b"",
                uri: str | None = None) -> bytes:
    """A well-formed SIP request for the daemon on 127.0.0.1:C{port}."""
    lines = [
        f"{method} {uri or f'sip:callcontroller@127.0.0.1:{port}'} SIP/2.0",
        f"Via: SIP/2.0/{transport} 127.0.0.1:{via_port};branch="
        f"{branch or 'z9hG4bK' + secrets.token_hex(6)};rport",
        f"Max-Forwards: {max_forwards}",
        f"From: <sip:attacker@127.0.0.1>;tag={from_tag or secrets.token_hex(4)}",
        "To: <sip:callcontroller@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id or secrets.token_hex(8)}",
        f"CSeq: {cseq} {method}",
    ]
    if extra:
        lines.append(extra.rstrip("\r\n"))
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sip_call_id(message: str) -> str | None:
    """The Call-ID of a SIP message given as text (e.g. from a sipp trace)."""
    for line in message.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("call-id", "i"):
            return value.strip()
    return None


def status_of(data: bytes) -> int | None:
    """The status code of a SIP response, None for anything else."""
    if not data.startswith(b"SIP/2.0 "):
        return None
    try:
        return int(data[8:11])
    except ValueError:
        return None


class UDPClient:
    """A UDP socket on 127.0.0.1 that sends datagrams and collects what comes back."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.target = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def drain(self, wait: float = 0.0) -> list[bytes]:
        """Read what arrived, waiting up to C{wait} s for the first datagram."""
        got = []
        deadline = time.monotonic() + wait
        while True:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], left if not got else 0)
            if not ready:
                break
            got.append(self.sock.recv(65536))
        self.received += got
        return got

    def request(self, data: bytes, timeout: float = 2.0) -> bytes | None:
        """Send C{data} and return the first final response (or None at the deadline)."""
        self.send(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for reply in self.drain(deadline - time.monotonic()):
                status = status_of(reply)
                if status is not None and status >= 200:
                    return reply
        return None

    def close(self) -> None:
        self.sock.close()


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def raw_http(port: int, data: bytes, *, secure: bool = True, timeout: float = 10.0,
             source: str = "127.0.0.1") -> bytes:
    """Send C{data} on a fresh connection and read until the server closes or the
    deadline passes; returns what the server sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))
    if secure:
        sock = tls_context().wrap_socket(sock)
    received = b""
    deadline = time.monotonic() + timeout
    try:
        sock.sendall(data)
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError, OSError):
                break
            if not chunk:
                break
            received += chunk
            if _complete(received):
                break
    finally:
        sock.close()
    return received


def _complete(response: bytes) -> bool:
    """Whether C{response} holds a whole HTTP response (head and Content-Length body)."""
    head, separator, body = response.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or 0)
    return False


def http_status(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response[9:12])


def closed_within(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closed C{sock} (EOF or reset), None if still open."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < timeout:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ConnectionResetError, ssl.SSLError, OSError):
            return time.monotonic() - start
    return None


def active_calls(daemon) -> list[dict]:
    """The calls GET /calls (trusted, JSON) lists as neither ended nor failed (among the
    newest MAX_LIST_LIMIT)."""
    from sipxcc.web.params import MAX_LIST_LIMIT
    status, body = daemon.get(f"/calls?limit={MAX_LIST_LIMIT}",
                              headers={"Accept": "application/json"})
    assert status == 200, (status, body)
    return [call for call in json.loads(body)["calls"]
            if call["state"] not in ("ended", "failed")]


class LossyRelay:
    """A UDP relay between the daemon and the proxy that drops and duplicates datagrams.

    The daemon's proxy is C{127.0.0.1:port}; datagrams from the daemon go to the real
    proxy, and the proxy's datagrams come back from the relay. Every C{drop_every}-th
    datagram is dropped (0: none) and every C{duplicate_every}-th is sent twice, ACKs
    excepted (in each direction).
    """

    def __init__(self, proxy_port: int, drop_every: int = 5, duplicate_every: int = 3):
        self.proxy = ("127.0.0.1", proxy_port)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.daemon_address: tuple[str, int] | None = None
        self.drop_every = drop_every
        self.duplicate_every = duplicate_every
        self.count = 0
        self.dropped = 0
        self.duplicated = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LossyRelay:
        self.thread.start()
        return self

    def _forward(self, sock: socket.socket, data: bytes, address) -> None:
        self.count += 1
        if self.drop_every and self.count % self.drop_every == 0:
            self.dropped += 1
            return
        sock.sendto(data, address)
        # sipp aborts on an ACK that arrives twice: neither ACKs nor the 2xx to an INVITE
        # (each copy of which is ACKed, RFC 3261 §13.2.2.4) are duplicated
        acked = data.startswith(b"ACK ") or (data.startswith(b"SIP/2.0 2")
                                             and b" INVITE\r\n" in data)
        if self.count % self.duplicate_every == 0 and not acked:
            self.duplicated += 1
            sock.sendto(data, address)

    def _run(self) -> None:
        while self.running:
            ready, _, _ = select.select([self.front, self.back], [], [], 0.1)
            for sock in ready:
                try:
                    data, address = sock.recvfrom(65536)
                except OSError:
                    continue
                if sock is self.front:
                    self.daemon_address = address
                    self._forward(self.back, data, self.proxy)
                elif self.daemon_address is not None:
                    self._forward(self.front, data, self.daemon_address)

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.front.close()
        self.back.close()
