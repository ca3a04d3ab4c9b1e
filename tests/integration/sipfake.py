"""
Scripted SIP peers on real loopback sockets for the integration tests: a fake proxy or far
end on UDP driven step by step by the test (L{UDPPeer}), a fake proxy that answers by
itself and records every datagram (L{FakeProxy}), a TLS server that records what its
clients do, certificates made with ``cryptography``, and placing a call on the daemon over
HTTPS.

L{FakeProxy} splits messages into header lines by their bytes alone (not by sipxcc's
codec, L{tests.sipwire.head_lines}), so a test sees exactly the header lines a real proxy
would.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import secrets
import select
import socket
import ssl
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sipxcc.sip.framing import parse_datagram
from sipxcc.sip.message import Request, Response, response_to
from tests.sipwire import challenge as challenge  # re-exported for the tests
from tests.sipwire import field as field
from tests.sipwire import head_lines

AUTH_HEADERS = ("authorization:", "proxy-authorization:")


def carries_credentials(data: bytes) -> bool:
    """Whether a raw SIP message has an Authorization or Proxy-Authorization header."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").lower()
    return any(line.startswith(AUTH_HEADERS) for line in head.split("\r\n"))


class UDPPeer:
    """A UDP socket on 127.0.0.1 that keeps every datagram it receives (C{received})."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._unread: list[tuple[bytes, tuple]] = []

    def _read(self, wait: float) -> None:
        ready, _, _ = select.select([self.sock], [], [], wait)
        while ready:
            data, addr = self.sock.recvfrom(65536)
            self.received.append(data)
            self._unread.append((data, addr))
            ready, _, _ = select.select([self.sock], [], [], 0)

    def expect(self, method: str, timeout: float = 10.0):
        """The next request of C{method} (other messages are kept but skipped), and its
        source; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            while self._unread:
                data, addr = self._unread.pop(0)
                message = parse_datagram(data)
                if isinstance(message, Request) and message.method == method:
                    return message, addr
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {method} within {timeout} s")
            self._read(left)

    def drain(self) -> None:
        """Read whatever has arrived by now."""
        self._read(0)

    def send(self, message: Request | Response, to: tuple) -> None:
        self.sock.sendto(message.to_bytes(), to)

    def close(self) -> None:
        self.sock.close()


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


def respond(request: Request, status: int, reason: str, headers=(), to_tag: str = "p1"):
    response = response_to(request, status, reason, to_tag)
    for name, value in headers:
        response.headers.add(name, value)
    return response


def via_address(request: Request) -> tuple[str, int]:
    """Where a response to C{request} goes (its top Via)."""
    via = request.top_via
    return via.host.strip("[]"), via.port or 5060


# Placing calls and reading their state

def https_request(daemon, method: str, path: str, accept: str | None = "application/json"):
    """(status, Location, body) of one request to the daemon's HTTPS port from 127.0.0.1
    (a trusted host: no credentials); no Accept header when C{accept} is None."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", daemon.config.http.https,
                                             timeout=10, context=context)
    try:
        connection.request(method, path,
                           headers={"Accept": accept} if accept is not None else {})
        response = connection.getresponse()
        return response.status, response.getheader("Location"), response.read()
    finally:
        connection.close()


def place_call(daemon, calling: str, called: str, query: str = "") -> str:
    """POST a click-to-call from a trusted host; returns the call's /calls/{id} path."""
    status, location, body = https_request(daemon, "POST", f"/callcontroller/{calling}/{called}"
                                    + (f"?{query}" if query else ""))
    assert status == 200 and location, (status, body)
    return location


def call_state(daemon, location: str) -> str:
    status, _, body = https_request(daemon, "GET", location)
    assert status == 200, (status, body)
    return json.loads(body)["state"]


def call_status_lines(daemon, location: str) -> list[str]:
    """The status lines recorded for a REFER-mode call."""
    status, _, body = https_request(daemon, "GET", location)
    assert status == 200, (status, body)
    return [event["status-line"] for event in json.loads(body)["status-lines"]]


def wait_for_state(daemon, location: str, states, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = call_state(daemon, location)
        if state in states:
            return state
        time.sleep(0.1)  # polling interval, not synchronisation
    raise AssertionError(f"call {location} not in {states} within {timeout} s")


# Certificates

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificate(subject: str, issuer=None, *, ca: bool = False,
                     addresses=("127.0.0.1",)) -> tuple[bytes, bytes, object]:
    """(certificate PEM, key PEM, (cert, key)) signed by C{issuer} = (cert, key), else self."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject))
               .issuer_name(issuer_cert.subject if issuer_cert else _name(subject))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, (cert, key)


class TLSServer:
    """
    A TLS listener on 127.0.0.1 that accepts one connection at a time in a thread and
    records, per connection, whether the handshake worked (C{handshakes}: True, or the
    error text) and the bytes that arrived after it (C{data}).
    """

    def __init__(self, cert_file: str, key_file: str, ciphers: str | None = None,
                 port: int = 0):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        if ciphers:
            self.context.maximum_version = ssl.TLSVersion.TLSv1_2
            self.context.set_ciphers(ciphers)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.handshakes: list[object] = []
        self.data = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    self.handshakes.append(True)
                    while not self._stop.is_set():
                        try:
                            chunk = tls.recv(65536)
                        except TimeoutError:
                            continue
                        if not chunk:
                            break
                        self.data += chunk
            except (ssl.SSLError, OSError) as error:
                self.handshakes.append(str(error) or type(error).__name__)
                raw.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(5)
