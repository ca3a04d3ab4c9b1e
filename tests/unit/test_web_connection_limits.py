"""Connection slots: the trusted hosts' reserve, IPv6 per /64, and how long one keep-alive
connection may serve (sipxcc.web.limits)."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv6Address
from twisted.internet.testing import StringTransport

from sipxcc.web import limits
from tests.unit.test_web_limits import GET_HEALTH, Client, make_site

TRUSTED = "127.0.0.1"


def is_trusted(host: str) -> bool:
    return host == TRUSTED


class Client6(Client):
    """A connection from an IPv6 address."""

    def __init__(self, site, host: str, port: int = 40000):
        address = IPv6Address("TCP", host, port)
        self.transport = StringTransport(peerAddress=address)
        self.channel = site.buildProtocol(address)
        self.channel.makeConnection(self.transport)


def refused(client) -> bool:
    return client.output().startswith(b"HTTP/1.1 503 ") and client.closing


@pytest.mark.parametrize(("host", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("not an address", "not an address"),
])
def test_clients_are_counted_per_ipv4_address_and_per_ipv6_64(host, key):
    assert limits.client_key(host) == key


def test_the_default_reserve_is_a_tenth_of_the_total():
    assert limits.ConnectionLimits().reserved == limits.TRUSTED_RESERVE == 100
    assert limits.ConnectionLimits(total=50).reserved == 5


def test_untrusted_clients_cannot_take_the_trusted_reserve():
    site, _ = make_site()
    site.limits = limits.ConnectionLimits(total=10, per_host=3, reserved=4,
                                          is_trusted=is_trusted)
    held = [Client(site, host=f"192.0.2.{n // 3 + 1}", port=40000 + n) for n in range(6)]
    assert not any(client.closing for client in held)
    # the 7th untrusted connection would eat into the reserve: refused, from a fresh address
    assert refused(Client(site, host="192.0.2.50"))
    # the trusted host gets every reserved slot, and the total caps it too
    trusted = [Client(site, host=TRUSTED, port=41000 + n) for n in range(4)]
    for client in trusted:
        client.send(GET_HEALTH)
        assert client.output().startswith(b"HTTP/1.1 200 ")
    assert refused(Client(site, host=TRUSTED, port=41009))
    # a closing untrusted connection frees an untrusted slot
    held[0].lose()
    again = Client(site, host="192.0.2.50")
    again.send(GET_HEALTH)
    assert again.output().startswith(b"HTTP/1.1 200 ")
    assert site.limits.untrusted == 6 and site.limits.open == 10


def test_trusted_connections_do_not_count_against_the_untrusted_share():
    site, _ = make_site()
    site.limits = limits.ConnectionLimits(total=10, per_host=10, reserved=4,
                                          is_trusted=is_trusted)
    trusted = [Client(site, host=TRUSTED, port=41000 + n) for n in range(3)]
    untrusted = [Client(site, host="192.0.2.1", port=40000 + n) for n in range(6)]
    assert not any(client.closing for client in trusted + untrusted)
    assert refused(Client(site, host="192.0.2.2"))
    for client in trusted + untrusted:
        client.lose()
    assert site.limits.open == 0 and site.limits.untrusted == 0 and site.limits.by_host == {}


def test_the_site_trusts_the_configured_hosts():
    site, _ = make_site()  # make_config trusts 127.0.0.1 and ::1
    assert site.limits.reserved == limits.TRUSTED_RESERVE
    Client(site, host="127.0.0.1")
    Client(site, host="192.0.2.1")
    assert site.limits.untrusted == 1 and site.limits.open == 2


def test_ipv6_addresses_of_one_64_share_the_per_host_cap():
    site, _ = make_site(total=100, per_host=2)
    Client6(site, "2001:db8::1")
    Client6(site, "2001:db8::2")
    assert refused(Client6(site, "2001:db8::ffff:3"))
    other = Client6(site, "2001:db8:0:1::1")  # the next /64
    other.send(GET_HEALTH)
    assert other.output().startswith(b"HTTP/1.1 200 ")


def test_a_keep_alive_connection_closes_after_its_request_cap():
    site, _ = make_site()
    client = Client(site)
    for _ in range(limits.MAX_REQUESTS_PER_CONNECTION - 1):
        client.send(GET_HEALTH)
    assert not client.closing
    assert client.output().count(b"HTTP/1.1 200 ") == limits.MAX_REQUESTS_PER_CONNECTION - 1
    assert b"Connection: close" not in client.output()
    before = len(client.output())
    client.send(GET_HEALTH)
    last = client.output()[before:]
    assert last.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in last
    assert client.closing
    client.send(GET_HEALTH)  # ignored
    assert client.output()[before:] == last


def test_a_keep_alive_connection_is_not_kept_beyond_its_lifetime():
    site, reactor = make_site()
    client = Client(site)
    elapsed = 0.0
    step = limits.IDLE_TIMEOUT - 1  # a request just before each idle timeout
    while elapsed < limits.MAX_CONNECTION_LIFETIME:
        before = len(client.output())
        client.send(GET_HEALTH)
        assert client.output()[before:].startswith(b"HTTP/1.1 200 ")
        assert b"Connection: close" not in client.output()
        reactor.advance(step)
        elapsed += step
        assert not client.closing
    before = len(client.output())
    client.send(GET_HEALTH)
    last = client.output()[before:]
    assert last.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in last
    assert client.closing


def test_a_client_asking_to_close_is_still_answered_with_close():
    site, _ = make_site()
    client = Client(site)
    client.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"Connection: close" in client.output()
    assert client.closing

