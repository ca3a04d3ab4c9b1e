"""ConnectionLimits as its counts: a closed connection frees its slot, per address and in
total, and the proxy's connections neither eat the clients' share nor keep it when closed."""

from __future__ import annotations

from twisted.internet.task import Clock

from sipxcc.sip.limits import ConnectionLimits

PROXY = "192.0.2.100"


def limits() -> ConnectionLimits:
    made = ConnectionLimits(Clock(), total=6, per_host=2)  # the proxy keeps 2: clients get 4
    made.add_proxy(PROXY)
    return made


def test_a_closed_connection_frees_its_slot_for_the_same_address():
    caps = limits()
    first, second = caps.admit("192.0.2.1"), caps.admit("192.0.2.1")
    assert caps.admit("192.0.2.1") is None  # two per address
    caps.release(first)
    third = caps.admit("192.0.2.1")
    assert third is not None and caps.admit("192.0.2.1") is None  # still two open
    caps.release(second)
    caps.release(third)
    assert (caps.open, caps.by_client) == (0, {})


def test_closed_client_connections_free_the_clients_share_one_by_one():
    caps = limits()
    tokens = [caps.admit(f"192.0.2.{n}") for n in range(1, 5)]
    assert None not in tokens and caps.admit("192.0.2.9") is None  # 6 - 2 kept for the proxy
    caps.release(tokens[0])
    caps.release(tokens[1])
    assert caps.open == 2
    assert caps.admit("192.0.2.9") is not None and caps.admit("192.0.2.10") is not None
    assert caps.admit("192.0.2.11") is None


def test_the_proxys_connections_take_no_share_of_the_clients_and_leave_none_behind():
    caps = limits()
    proxy = [caps.admit(PROXY), caps.admit(PROXY)]
    assert None not in proxy
    clients = [caps.admit(f"192.0.2.{n}") for n in range(1, 5)]
    assert None not in clients
    assert caps.admit("192.0.2.9") is None and caps.admit(PROXY) is None  # all 6 taken
    for token in proxy:
        caps.release(token)
    assert (caps.open, caps.proxy_open) == (4, 0)
    assert caps.admit("192.0.2.9") is None  # the clients still hold their 4
    assert caps.admit(PROXY) is not None and caps.admit(PROXY) is not None


def test_a_closed_proxy_connection_leaves_the_clients_their_whole_share():
    caps = limits()
    caps.release(caps.admit(PROXY))
    assert None not in [caps.admit(f"192.0.2.{n}") for n in range(1, 5)]
    assert caps.admit("192.0.2.9") is None
