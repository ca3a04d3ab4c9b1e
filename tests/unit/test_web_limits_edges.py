"""The web limits' exact answers and boundaries: status lines, the body size limit itself,
the refusal count, a channel without the site's shared deadline queue, and a deadline that
passes while a response is under way."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web import http, resource, server

from sipxcc.web import limits, render
from sipxcc.web.site import LimitedSite
from tests.unit.test_web_limits import GET_HEALTH, Client, make_site

CLOSE = b"Connection: close\r\nContent-Length: 0\r\n\r\n"


def test_refusals_have_exact_status_lines():
    site, reactor = make_site()
    slow = Client(site)
    reactor.advance(limits.REQUEST_DEADLINE)
    assert slow.output() == b"HTTP/1.1 408 Request Timeout\r\n" + CLOSE
    big = Client(site)
    big.send(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
             % (limits.MAX_BODY + 1))
    assert big.output() == b"HTTP/1.1 413 Payload Too Large\r\n" + CLOSE
    long_line = Client(site)
    long_line.send(b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 20000)
    assert long_line.output() == b"HTTP/1.1 431 Request Header Fields Too Large\r\n" + CLOSE


def test_a_chunked_body_too_large_gets_the_same_413():
    site, _ = make_site()
    client = Client(site)
    client.send(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"1000\r\n" + b"a" * 0x1000 + b"\r\n"  # 4104 bytes with its framing
    allowed = (limits.MAX_BODY + limits.MAX_HEAD_SIZE) // len(chunk)
    client.send(chunk * allowed)
    assert client.output() == b""
    client.send(chunk)
    assert client.output() == b"HTTP/1.1 413 Payload Too Large\r\n" + CLOSE
    client.lose()


def test_a_body_of_exactly_the_limit_is_read():
    site, _ = make_site()
    client = Client(site)
    client.send(b"POST /callcontroller/user1/user2 HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: %d\r\n\r\n" % limits.MAX_BODY + b"x" * limits.MAX_BODY)
    # read whole (not 413), then refused because a POST takes its parameters in the query
    assert client.output().startswith(b"HTTP/1.1 415 Unsupported Media Type\r\n")


def test_refused_connections_are_counted_once_each_and_send_nothing_more():
    site, _ = make_site(total=10, per_host=1)
    Client(site)
    assert site.limits.refused == 0
    refused = Client(site, port=40001)
    again = Client(site, port=40002)
    assert site.limits.refused == 2
    assert refused.output() == b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n" + CLOSE
    refused.send(GET_HEALTH)
    assert refused.output().count(b"HTTP/1.1") == 1
    assert again.closing


def test_the_per_host_count_starts_at_zero_and_is_released():
    caps = limits.ConnectionLimits(total=10, per_host=2)
    assert caps.admit("a") and caps.admit("a") and not caps.admit("a")
    assert caps.by_host == {"a": 2} and caps.open == 2
    caps.release("a")
    assert caps.by_host == {"a": 1}
    caps.release("a")
    assert caps.by_host == {} and caps.open == 0
    caps.release("never-admitted")
    assert caps.by_host == {}


def test_a_released_connection_frees_its_host():
    site, _ = make_site(total=10, per_host=1)
    first = Client(site)
    first.lose()
    assert site.limits.by_host == {} and site.limits.open == 0
    second = Client(site, port=40001)
    assert not second.closing


def channel_without_site_deadlines():
    reactor = MemoryReactorClock()
    factory = http.HTTPFactory(reactor=reactor)
    factory.protocol = limits.LimitedChannel
    factory.startFactory()
    return reactor, factory


def test_without_the_sites_queue_the_channel_keeps_its_own_deadline():
    reactor, factory = channel_without_site_deadlines()
    client = Client(factory)
    assert not hasattr(factory, "limits")
    reactor.advance(limits.REQUEST_DEADLINE - 0.1)
    assert client.output() == b""
    reactor.advance(0.1)
    assert client.output() == b"HTTP/1.1 408 Request Timeout\r\n" + CLOSE


class Forever(resource.Resource):
    """Answers nothing: the response stays under way."""

    isLeaf = True

    def render_GET(self, request):
        return server.NOT_DONE_YET


def test_a_deadline_during_a_response_closes_without_a_408():
    reactor = MemoryReactorClock()
    site = LimitedSite(Forever(), reactor)
    site.startFactory()
    client = Client(site)
    client.send(GET_HEALTH)  # handled, never answered
    client.send(b"GET /next HTTP/1.1\r\n")  # a pipelined request starts a new deadline
    reactor.advance(limits.REQUEST_DEADLINE)
    assert client.closing
    assert b"408" not in client.output()
    client.send(b"Host: x\r\n\r\n")  # ignored once closing
    reactor.advance(limits.REQUEST_DEADLINE)
    assert b"408" not in client.output()


class ClosingTransport(StringTransport):
    """A StringTransport that, as a closing TCP transport does, ignores being asked to
    read again (StringTransport raises)."""

    def resumeProducing(self):
        if not self.disconnecting:
            super().resumeProducing()


class Late(resource.Resource):
    """Answers each GET when the test says so; records the paths it was asked for."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.asked: list[bytes] = []
        self.waiting: list[server.Request] = []

    def render_GET(self, request):
        self.asked.append(request.path)
        self.waiting.append(request)
        return server.NOT_DONE_YET


def test_a_request_that_ends_its_deadline_mid_response_is_the_connections_last():
    reactor = MemoryReactorClock()
    late = Late()
    site = LimitedSite(late, reactor)
    site.startFactory()
    client = Client(site)
    client.transport = ClosingTransport(peerAddress=client.transport.getPeer())
    client.channel.transport = client.transport
    client.send(GET_HEALTH)  # handled, not answered yet
    client.send(b"GET /next HTTP/1.1\r\n")
    reactor.advance(limits.REQUEST_DEADLINE)
    assert client.closing
    client.send(b"Host: x\r\n\r\n")  # the pipelined request completes after the deadline
    late.waiting[0].write(b"ok\n")
    late.waiting[0].finish()  # the late answer still goes out ...
    assert client.output().startswith(b"HTTP/1.1 200 OK\r\n")
    assert late.asked == [b"/health"]  # ... but nothing read after the deadline runs


# --- exact answers at each limit's edge ------------------------------------------------------

def test_an_endless_request_line_gets_exactly_414_and_the_document():
    site, _ = make_site()
    client = Client(site)
    # a colon later in the line (a SIP URI in the query) does not make it a header line
    client.send(b"GET /callcontroller/user1/user2?target=sip:" + b"a" * 20000)
    body = render.processing_status_xml(414, "Request URI too long")
    assert client.output() == (b"HTTP/1.1 414 URI Too Long\r\nConnection: close\r\n"
                               b"Content-Type: text/xml; charset=UTF-8\r\n"
                               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert client.closing


def test_an_endless_folded_header_line_is_431_not_414():
    site, _ = make_site()
    client = Client(site)
    client.send(b"GET /health HTTP/1.1\r\nX-Big: a\r\n " + b"a b" * 7000)  # obs-fold
    assert client.output() == b"HTTP/1.1 431 Request Header Fields Too Large\r\n" + CLOSE


def test_a_chunked_body_of_exactly_the_limit_is_still_read():
    site, _ = make_site()
    client = Client(site)
    client.send(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    limit = limits.MAX_BODY + limits.MAX_HEAD_SIZE  # body bytes with their chunk framing
    chunk = b"1000\r\n" + b"a" * 0x1000 + b"\r\n"
    whole, rest = divmod(limit, len(chunk))
    client.send(chunk * whole)
    last = b"%x\r\n" % (rest - 7) + b"a" * (rest - 7) + b"\r\n"  # 3 hex digits + 4 framing
    assert len(last) == rest
    client.send(last)
    assert client.output() == b""
    client.send(b"0")
    assert client.output() == b"HTTP/1.1 413 Payload Too Large\r\n" + CLOSE
    client.lose()


def test_connections_over_the_total_are_counted_each():
    site, _ = make_site(total=1, per_host=10)
    Client(site)
    for port in (40001, 40002, 40003):
        Client(site, port=port)
    assert site.limits.refused == 3


def test_a_connection_is_kept_alive_until_it_is_300_seconds_old():
    site, reactor = make_site()
    reactor.advance(1000)  # the connection's age is counted from its opening
    client = Client(site)
    for _ in range(int(limits.MAX_CONNECTION_LIFETIME // 5) - 1):
        reactor.advance(5)
        client.send(GET_HEALTH)
    assert b"Connection: close" not in client.output()  # 295 s old
    reactor.advance(5)
    client.send(GET_HEALTH)  # 300 s old: the last response
    *_, last = client.output().split(b"HTTP/1.1 ")
    assert b"Connection: close\r\n" in last
    assert client.output().count(b"Connection: close") == 1


def test_without_a_clock_a_connection_is_kept_alive():
    _, factory = channel_without_site_deadlines()
    client = Client(factory)

    class Answered(http.Request):
        def process(self):
            self.finish()
    client.channel.requestFactory = Answered
    client.send(GET_HEALTH)
    assert client.output().startswith(b"HTTP/1.1 ")
    assert b"Connection: close" not in client.output()


def test_an_aborted_connection_is_released_when_it_is_lost():
    site, reactor = make_site(total=1, per_host=1)
    Client(site)
    refused = Client(site, port=40001)
    refused.transport.abortConnection = lambda: None
    reactor.advance(limits.ABORT_GRACE + 0.1)  # aborted; the reactor then reports the loss
    refused.lose()
    assert site.limits.open == 1


def test_a_request_under_way_learns_why_its_connection_was_lost():
    reactor = MemoryReactorClock()
    site = LimitedSite(Forever(), reactor)
    site.startFactory()
    client = Client(site)
    client.send(GET_HEALTH)  # handled, never answered
    [request] = client.channel.requests
    reasons = []
    request.notifyFinish().addErrback(reasons.append)
    client.lose()
    assert [r.type for r in reasons] == [ConnectionDone]
