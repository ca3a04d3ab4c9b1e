"""
Scripted SIP peers on real loopback sockets for the credential and TLS tests: a fake proxy
or far end on UDP, a TLS server that records what its clients do, certificates made with
``cryptography``, and placing a call on the daemon over HTTPS.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
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


def respond(request: Request, status: int, reason: str, headers=(), to_tag: str = "p1"):
    response = response_to(request, status, reason, to_tag)
    for name, value in headers:
        response.headers.add(name, value)
    return response


def challenge(status: int = 407, realm: str = "sipx.test", nonce: str = "n1",
              stale: bool = False) -> tuple[int, str, list]:
    """(status, reason, headers) of a Digest challenge."""
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    value = f'Digest realm="{realm}", nonce="{nonce}", qop="auth", algorithm=MD5'
    if stale:
        value += ", stale=true"
    reason = "Proxy Authentication Required" if status == 407 else "Unauthorized"
    return status, reason, [(header, value)]


def via_address(request: Request) -> tuple[str, int]:
    """Where a response to C{request} goes (its top Via)."""
    via = request.top_via
    return via.host.strip("[]"), via.port or 5060


# Placing calls and reading their state

def _https(daemon, method: str, path: str, accept: str = "application/json"):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", daemon.config.http.https,
                                             timeout=10, context=context)
    try:
        connection.request(method, path, headers={"Accept": accept})
        response = connection.getresponse()
        return response.status, response.getheader("Location"), response.read()
    finally:
        connection.close()


def place_call(daemon, calling: str, called: str, query: str = "") -> str:
    """POST a click-to-call from a trusted host; returns the call's /calls/{id} path."""
    status, location, body = _https(daemon, "POST", f"/callcontroller/{calling}/{called}"
                                    + (f"?{query}" if query else ""))
    assert status == 200 and location, (status, body)
    return location


def call_state(daemon, location: str) -> str:
    status, _, body = _https(daemon, "GET", location)
    assert status == 200, (status, body)
    return json.loads(body)["state"]


def call_status_lines(daemon, location: str) -> list[str]:
    """The status lines recorded for a REFER-mode call."""
    status, _, body = _https(daemon, "GET", location)
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
