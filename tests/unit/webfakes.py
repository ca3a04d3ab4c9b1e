"""Fakes for the web layer's unit tests: config, directory, registry, and requests."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from urllib.parse import unquote_to_bytes, urlencode

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from sipxcc.calls.call import Call, StatusEvent
from sipxcc.calls.errors import CallError
from sipxcc.calls.redis_store import (
    line_text,
    new_record_fields,
    progress_fields,
    stored_call,
)
from sipxcc.calls.store import MemoryCallStore
from sipxcc.config import (
    CallsConfig,
    Config,
    DaemonConfig,
    HTTPConfig,
    SIPConfig,
    TLSConfig,
    UsersConfig,
)
from sipxcc.users import User
from sipxcc.web.auth import Authenticator
from sipxcc.web.callcontroller import WebContext, install
from sipxcc.web.errors import PathResource

REALM = "sipx.test"
PIN = "123"


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def make_user(name: str, alias: str) -> User:
    return User(identity=f"{name}@{REALM}", user_name=name, aliases=(alias,),
                display_name=None, pintoken=md5_hex(f"{name}:{REALM}:{PIN}"),
                passtoken=md5_hex(f"{name}:{REALM}:secret"))


def make_config(trusted=("127.0.0.1/32", "::1/128"), agents=("user3",),
                callback_hosts=("hooks.example",)) -> Config:
    return Config(
        source="test.ini",
        sip=SIPConfig(domain=REALM, realm=REALM, proxy="sip:127.0.0.1:5060;lr",
                      address="127.0.0.1", port=6050, transports=("udp",),
                      contact_user="callcontroller"),
        http=HTTPConfig(https=6666, http=6667, address="127.0.0.1",
                        trusted=tuple(ipaddress.ip_network(t) for t in trusted)),
        tls=TLSConfig(certificate=None, key=None),
        users=UsersConfig(directory="validusers.xml", agents=frozenset(agents)),
        calls=CallsConfig(timeout=180, result_cache_time=180, max_calls=2000,
                          max_calls_per_agent=10, callback_hosts=tuple(callback_hosts)),
        daemon=DaemonConfig(state_dir="/tmp", log_level="info"),
    )


class FakeDirectory:
    """user1..user4 (aliases 201..204), every PIN 123."""

    def __init__(self):
        self.users = [make_user(f"user{n}", f"20{n}") for n in range(1, 5)]

    def lookup(self, name: str) -> User | None:
        for user in self.users:
            if name in user.names:
                return user
        return None


class FakeRegistry:
    """Records what the web layer asks; C{error} makes the next call raise it."""

    def __init__(self):
        self.calls: list[Call] = []
        self.hung_up: list[Call] = []
        self.transfers: list[tuple[Call, str]] = []
        self.error: CallError | None = None
        self.raise_unexpected = False

    def _maybe_fail(self):
        if self.raise_unexpected:
            raise RuntimeError("secret internal detail")
        if self.error is not None:
            raise self.error

    def place(self, request) -> Call:
        self._maybe_fail()
        call = Call(request, created=1000.0 + len(self.calls))
        self.calls.append(call)
        return call

    def lookup(self, key):
        for call in reversed(self.calls):
            if call.key == key:
                return call
        return None

    def get(self, call_id):
        return next((call for call in self.calls if call.id == call_id), None)

    def calls_of(self, owner, limit):
        mine = [c for c in reversed(self.calls) if owner is None or c.owner == owner]
        return mine[:limit]

    def hangup(self, call) -> None:
        self._maybe_fail()
        self.hung_up.append(call)

    def transfer(self, call, target, timeout=None) -> None:
        self._maybe_fail()
        self.transfers.append((call, target, timeout))

    @property
    def active_count(self) -> int:
        return len(self.calls)


SEED_EVENTS = [
    StatusEvent(1259114103662, "7959e447b88502416ee2477f3d36a480@12.23.34.45", "INVITE",
                "SIP/2.0 100 Trying"),
    StatusEvent(1259114103667, "7959e447b88502416ee2477f3d36a480@12.23.34.45", "INVITE",
                "SIP/2.0 407 Proxy Authentication Required"),
    StatusEvent(1259114103678, "7959e447b88502416ee2477f3d36a480@12.23.34.45", "INVITE",
                "SIP/2.0 100 Trying"),
    StatusEvent(1259114103841, "7959e447b88502416ee2477f3d36a480@12.23.34.45", "INVITE",
                "SIP/2.0 180 Ringing"),
]


def stored_form(call, node="a"):
    """C{call} written to Redis and read back: the replies of HGETALL and LRANGE as the
    client hands them over (bytes), made into a StoredCall."""
    written = [*new_record_fields(call.id, call.request, call.created, node),
               *progress_fields(call), "ended", int(call.ended)]  # HSETs, in order
    fields = [str(value).encode() for value in written]
    lines = [line_text(event).encode() for event in call.events]
    return stored_call(call.id, fields, lines)


class WebRequest(DummyRequest):
    """A DummyRequest with a real URI, query arguments, client address and TLS flag."""

    def __init__(self, method: bytes, uri: bytes, client: str = "192.0.2.10",
                 secure: bool = True, headers: dict | None = None):
        path, _, query = uri.partition(b"?")
        super().__init__([unquote_to_bytes(s) for s in path[1:].split(b"/")])
        self.client = IPv4Address("TCP", client, 40000)
        self.method = method
        self.uri = uri
        self.path = path
        self._secure = secure
        for pair in query.split(b"&") if query else []:
            name, _, value = pair.partition(b"=")
            self.args.setdefault(unquote_to_bytes(name.replace(b"+", b" ")), []).append(
                unquote_to_bytes(value.replace(b"+", b" ")))
        for name, value in (headers or {}).items():
            self.requestHeaders.addRawHeader(name, value)

    def setHeader(self, name, value) -> None:
        # As twisted.web's Request does: setHeader replaces (DummyRequest's appends).
        self.responseHeaders.setRawHeaders(name, [value])

    def isSecure(self) -> bool:
        return self._secure

    @property
    def body(self) -> bytes:
        return b"".join(self.written)

    def header(self, name: bytes) -> bytes | None:
        values = self.responseHeaders.getRawHeaders(name)
        return values[0] if values else None

    def headers(self, name: bytes) -> list[bytes]:
        return self.responseHeaders.getRawHeaders(name) or []


def basic(user: str, pin: str = PIN) -> dict:
    token = base64.b64encode(f"{user}:{pin}".encode()).decode()
    return {b"Authorization": f"Basic {token}".encode()}


def query(**values) -> str:
    return "?" + urlencode(values) if values else ""


class WebHarness:
    """The resource tree on fakes; C{request()} renders one request through it."""

    def __init__(self, **config_options):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.config = make_config(**config_options)
        self.directory = FakeDirectory()
        self.registry = FakeRegistry()
        self.auth = Authenticator(self.config, self.directory, self.clock)
        self.root = PathResource()
        self.call_store = MemoryCallStore(self.registry)
        install(self.root, WebContext(self.config, self.directory, self.call_store, self.auth))

    def request(self, method: bytes, uri: str | bytes, **options) -> WebRequest:
        raw = uri.encode("utf-8") if isinstance(uri, str) else uri
        request = WebRequest(method, raw, **options)
        request.prepath = []
        resource = getChildForRequest(self.root, request)
        request.render(resource)
        assert request.finished, "the request was never answered"
        return request
