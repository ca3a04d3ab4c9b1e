"""The web listeners' limits (sipxcc.web.limits): connection caps, deadlines, body size."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from sipxcc.calls.store import MemoryCallStore
from sipxcc.web import limits
from sipxcc.web.site import build_site
from tests.unit.webfakes import FakeDirectory, FakeRegistry, make_config

GET_HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


class Client:
    """One connection to the site over a StringTransport."""

    def __init__(self, site, host: str = "192.0.2.1", port: int = 40000):
        address = IPv4Address("TCP", host, port)
        self.transport = StringTransport(peerAddress=address)
        self.channel = site.buildProtocol(address)
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def output(self) -> bytes:
        return self.transport.value()

    @property
    def closing(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


def make_site(**caps):
    reactor = MemoryReactorClock()
    site = build_site(make_config(), FakeDirectory(), MemoryCallStore(FakeRegistry()),
                      reactor)
    if caps:
        site.limits = limits.ConnectionLimits(**caps)
    site.startFactory()
    return site, reactor


def test_a_request_is_served():
    site, _ = make_site()
    client = Client(site)
    client.send(GET_HEALTH)
    assert client.output().startswith(b"HTTP/1.1 200 ")
    assert client.output().endswith(b"ok\n")


def test_connections_beyond_the_per_host_cap_get_503_and_are_closed():
    site, _ = make_site(total=10, per_host=2)
    kept = [Client(site, port=40000 + n) for n in range(2)]
    refused = Client(site, port=40009)
    assert refused.output().startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 5" in refused.output()
    assert refused.closing
    other_host = Client(site, host="192.0.2.2")
    other_host.send(GET_HEALTH)
    assert other_host.output().startswith(b"HTTP/1.1 200 ")
    kept[0].lose()
    again = Client(site, port=40010)
    again.send(GET_HEALTH)
    assert again.output().startswith(b"HTTP/1.1 200 ")


def test_total_cap_counts_every_host_and_frees_on_close():
    site, _ = make_site(total=3, per_host=3)
    clients = [Client(site, host=f"192.0.2.{n}") for n in range(1, 4)]
    assert Client(site, host="192.0.2.9").output().startswith(b"HTTP/1.1 503 ")
    for client in clients:
        client.lose()
    assert site.limits.open == 0 and site.limits.by_host == {}
    assert Client(site, host="192.0.2.9").output() == b""


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline():
    site, reactor = make_site()
    client = Client(site)
    reactor.advance(limits.REQUEST_DEADLINE - 0.1)
    assert not client.closing
    reactor.advance(0.2)
    assert client.output().startswith(b"HTTP/1.1 408 ")
    assert client.closing


def test_a_slow_head_is_cut_off_although_bytes_keep_coming():
    site, reactor = make_site()
    client = Client(site)
    client.send(GET_HEALTH)  # the first request is fine
    sent = client.output()
    for byte in b"GET /health HTTP/1.1\r\nX-Slow: ":
        client.send(bytes([byte]))
        reactor.advance(1)
        if client.closing:
            break
    assert client.closing
    assert client.output()[len(sent):].startswith(b"HTTP/1.1 408 ")


def test_the_deadline_is_not_reset_by_a_finished_request():
    site, reactor = make_site()
    client = Client(site)
    for _ in range(3):
        client.send(GET_HEALTH)
        reactor.advance(limits.REQUEST_DEADLINE * 0.9)
    assert client.output().count(b"HTTP/1.1 200 ") == 3
    assert not client.closing


def test_an_announced_oversized_body_is_413_before_it_arrives():
    site, _ = make_site()
    client = Client(site)
    client.send(b"POST /callcontroller/user1/user2 HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: %d\r\n\r\n" % (limits.MAX_BODY + 1))
    assert client.output().startswith(b"HTTP/1.1 413 ")
    assert client.closing
    client.send(b"x" * 1000)  # ignored, no exception


def test_an_endless_chunked_body_is_413():
    site, _ = make_site()
    client = Client(site)
    client.send(b"POST /callcontroller/user1/user2 HTTP/1.1\r\nHost: x\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"1000\r\n" + b"a" * 0x1000 + b"\r\n"
    for _ in range(40):
        client.send(chunk)
        if client.closing:
            break
    assert client.output().startswith(b"HTTP/1.1 413 ")
    client.lose()


def test_too_many_headers_is_400_and_close():
    site, _ = make_site()
    client = Client(site)
    client.send(b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * (limits.MAX_HEADERS + 1)
                + b"\r\n")
    assert client.output().startswith(b"HTTP/1.1 400 ")
    assert client.closing


def test_an_oversized_head_is_400_and_close():
    site, _ = make_site()
    client = Client(site)
    client.send(b"GET /health HTTP/1.1\r\n" + b"X-Big: " + b"a" * 8000 + b"\r\n"
                + b"X-Big2: " + b"a" * 9000 + b"\r\n\r\n")
    assert client.output().startswith(b"HTTP/1.1 400 ")
    assert client.closing


def test_a_refused_connection_that_never_reads_is_aborted():
    site, reactor = make_site(total=1, per_host=1)
    Client(site)
    refused = Client(site, port=40001)
    aborted = []
    refused.transport.abortConnection = lambda: aborted.append(True)
    reactor.advance(limits.ABORT_GRACE + 0.1)
    assert aborted == [True]


def test_an_endless_header_line_is_431_and_close():
    site, _ = make_site()
    client = Client(site)
    client.send(b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 20000)
    assert client.output().startswith(b"HTTP/1.1 431 ")
    assert client.closing


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout():
    site, reactor = make_site()
    client = Client(site)
    client.send(GET_HEALTH)
    assert client.output().startswith(b"HTTP/1.1 200 ")
    reactor.advance(limits.IDLE_TIMEOUT - 1)
    assert not client.closing  # kept open for the next request
    client.send(GET_HEALTH)  # activity starts the idle time again
    reactor.advance(limits.IDLE_TIMEOUT - 1)
    assert not client.closing
    reactor.advance(1)
    assert client.closing
