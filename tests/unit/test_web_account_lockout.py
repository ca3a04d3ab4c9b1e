"""PIN guessing from many addresses: the per-account failure limit, and IPv6 clients
throttled per /64 (sipxcc.web.auth)."""

from __future__ import annotations

import pytest
from lxml import etree
from twisted.internet.address import IPv6Address
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.resource import getChildForRequest

from sipxcc.web import auth
from tests.unit.webfakes import PIN, WebHarness, WebRequest, basic

URI = "/callcontroller/user1/user2"
URI2 = "/callcontroller/user2/user1"


@pytest.fixture
def harness():
    return WebHarness()


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def status(request) -> tuple[int, int]:
    return request.responseCode, int(etree.fromstring(request.body)[1].text)


def guess(harness, user: str, client: str, uri: str = URI, pin: str = "999999") -> int:
    return harness.request(b"GET", uri, headers=basic(user, pin), client=client).responseCode


def spread_guesses(harness, user: str, count: int, uri: str = URI) -> None:
    """C{count} wrong PINs for C{user}, from as many addresses as the per-address limit needs."""
    for n in range(count):
        client = f"198.51.100.{n // (auth.FAILURE_LIMIT - 1) + 1}"
        assert guess(harness, user, client, uri) == 401


def test_failures_for_one_account_from_many_addresses_lock_it(harness, logged):
    spread_guesses(harness, "user1", auth.ACCOUNT_FAILURE_LIMIT - 1)
    # one below the limit: the right PIN still works, from a fresh address
    assert guess(harness, "user1", "203.0.113.1", pin=PIN) == 200
    assert guess(harness, "user1", "203.0.113.2") == 401  # the limit-th failure
    locked = harness.request(b"GET", URI, headers=basic("user1"), client="203.0.113.3")
    assert status(locked) == (429, 429)
    assert int(locked.header(b"retry-after")) == auth.ACCOUNT_BLOCK_TIME
    # by an alias it is the same account
    alias = harness.request(b"GET", "/callcontroller/201/user2", headers=basic("201"),
                            client="203.0.113.4")
    assert alias.responseCode == 429
    lines = [formatEvent(e) for e in logged if "account" in formatEvent(e)]
    assert len(lines) == 1, lines
    assert "user1@sipx.test" in lines[0]
    assert PIN not in lines[0] and "999999" not in lines[0]


def test_the_lock_is_logged_once_however_often_the_account_is_tried(harness, logged):
    spread_guesses(harness, "user1", auth.ACCOUNT_FAILURE_LIMIT)
    for n in range(30):
        assert guess(harness, "user1", f"203.0.113.{n + 1}") == 429
    assert sum("blocking account" in formatEvent(e) for e in logged) == 1


def test_a_locked_account_does_not_lock_other_accounts_or_trusted_hosts(harness):
    spread_guesses(harness, "user1", auth.ACCOUNT_FAILURE_LIMIT)
    assert guess(harness, "user1", "203.0.113.9", pin=PIN) == 429
    assert guess(harness, "user2", "203.0.113.9", uri=URI2, pin=PIN) == 200
    trusted = harness.request(b"POST", URI, client="127.0.0.1")
    assert trusted.responseCode == 200
    assert harness.registry.calls[0].owner == "user1@sipx.test"


def test_the_lock_ends_after_the_block_time(harness):
    spread_guesses(harness, "user1", auth.ACCOUNT_FAILURE_LIMIT)
    harness.clock.advance(auth.ACCOUNT_BLOCK_TIME - 1)
    assert guess(harness, "user1", "203.0.113.9", pin=PIN) == 429
    harness.clock.advance(1)
    assert guess(harness, "user1", "203.0.113.9", pin=PIN) == 200


def test_failures_older_than_the_window_do_not_count(harness):
    spread_guesses(harness, "user1", auth.ACCOUNT_FAILURE_LIMIT - 1)
    harness.clock.advance(auth.ACCOUNT_FAILURE_WINDOW)
    assert guess(harness, "user1", "203.0.113.1") == 401
    assert guess(harness, "user1", "203.0.113.1", pin=PIN) == 200


def test_unknown_user_names_are_not_tracked_as_accounts(harness):
    for n in range(auth.ACCOUNT_FAILURE_LIMIT * 3):
        assert guess(harness, f"nobody{n}", f"198.51.100.{n % 200 + 1}") == 401
    assert len(harness.auth.accounts._failures) == 0


def test_account_memory_is_bounded(harness):
    accounts = harness.auth.accounts
    for n in range(auth.MAX_TRACKED_ACCOUNTS * 2):
        accounts.failed(f"user{n}@sipx.test")
    assert len(accounts._failures) <= auth.MAX_TRACKED_ACCOUNTS


def request6(harness, client: str, headers: dict):
    """A request from an IPv6 client address."""
    request = WebRequest(b"GET", URI.encode(), headers=headers)
    request.client = IPv6Address("TCP", client, 40000)
    request.prepath = []
    request.render(getChildForRequest(harness.root, request))
    assert request.finished
    return request


def test_ipv6_clients_are_throttled_per_64(harness):
    for n in range(auth.FAILURE_LIMIT):
        assert request6(harness, f"2001:db8::{n + 1:x}",
                        basic("user1", "0")).responseCode == 401
    # another address of the same /64: blocked as well
    assert request6(harness, "2001:db8::ffff", basic("user2")).responseCode == 429
    # the next /64 is another client
    assert request6(harness, "2001:db8:0:1::1", basic("user1")).responseCode == 200
