"""The baresip phone driver other tests build on: ring, answer by hand, talk, bounds."""

from __future__ import annotations

import pytest

from tests.integration.peers import Kamailio, PeerError, demo_aliases, demo_ha1s, free_port
from tests.integration.phones import MAX_EVENTS, BaresipPhone


@pytest.fixture
def two_phones(tmp_path):
    proxy_port = free_port()
    proxy_uri = f"sip:127.0.0.1:{proxy_port};lr"
    caller = BaresipPhone("user1", "pass1", tmp_path, proxy=proxy_uri, sip_port=free_port(41))
    callee = BaresipPhone("user2", "pass2", tmp_path, proxy=proxy_uri, sip_port=free_port(41),
                          auto_answer=False)
    proxy = Kamailio(tmp_path / "kamailio", proxy_port, demo_ha1s(),
                     {"user1": caller.contact, "user2": callee.contact},
                     f"127.0.0.1:{free_port()}", aliases=demo_aliases())
    with caller, callee, proxy:
        yield caller, callee


def test_a_phone_rings_until_answered_and_then_both_hear_each_other(two_phones):
    caller, callee = two_phones
    caller.dial("202")  # an alias, resolved by the proxy
    callee.wait_for("CALL_INCOMING")
    caller.wait_for("CALL_RINGING")
    assert "CALL_ESTABLISHED" not in callee.event_types()
    callee.answer()
    callee.wait_for("CALL_ESTABLISHED")
    caller.wait_for("CALL_ESTABLISHED")
    # each side received the other's RTP
    callee.wait_for("CALL_RTPESTAB")
    caller.wait_for("CALL_RTPESTAB")
    caller.hangup()
    callee.wait_for("CALL_CLOSED")


def test_the_event_history_is_bounded(tmp_path):
    phone = BaresipPhone("user1", "pass1", tmp_path, proxy="sip:127.0.0.1:5060;lr",
                         auto_answer=False)
    for number in range(MAX_EVENTS + 5):
        phone._record({"event": True, "type": "CALL_RTCP", "n": number})
    assert len(phone.events) == MAX_EVENTS
    assert phone.events[0]["n"] == 5


def test_a_registered_phone_is_reached_through_its_registration(tmp_path):
    proxy_port = free_port()
    proxy_uri = f"sip:127.0.0.1:{proxy_port};lr"
    # no static routes: the proxy knows the phones only by their REGISTERs
    with Kamailio(tmp_path / "kamailio", proxy_port, demo_ha1s(), {},
                  f"127.0.0.1:{free_port()}", aliases=demo_aliases()) as proxy:
        with BaresipPhone("user1", "pass1", tmp_path, proxy=proxy_uri, register=True,
                          sip_port=free_port(41)) as caller, \
                BaresipPhone("user2", "pass2", tmp_path, proxy=proxy_uri, register=True,
                             sip_port=free_port(41)) as callee:
            caller.dial("user2")
            callee.wait_for("CALL_ESTABLISHED")
            caller.wait_for("CALL_RTPESTAB")
        assert "registered sip:user2@sipx.test" in proxy.log_text()


def test_a_phone_with_a_wrong_password_is_not_registered(tmp_path):
    proxy_port = free_port()
    with Kamailio(tmp_path / "kamailio", proxy_port, demo_ha1s(), {},
                  f"127.0.0.1:{free_port()}", aliases=demo_aliases()) as proxy:
        phone = BaresipPhone("user1", "wrong", tmp_path, register=True,
                             proxy=f"sip:127.0.0.1:{proxy_port};lr", sip_port=free_port(41))
        with pytest.raises(PeerError, match="did not register"):
            phone.start()
        assert "registered sip:user1@sipx.test" not in proxy.log_text()
