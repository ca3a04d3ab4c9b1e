"""Self-tests of the real-peer harness: Kamailio and sipp only, no daemon.

A sipp UAC plays the controller (the daemon's part) so each test proves that the
proxy and the phone scenarios behave as the daemon's integration tests assume.
"""

from __future__ import annotations

import pytest

from tests.integration.peers import LOOPBACK, free_port

CALL_TIMEOUT = 15  # seconds; each test stays under 20 s


def controller_uac(phone_factory, proxy, port, scenario="uac_call", target="user2",
                   user="user3", password="pass3", transport="u1"):
    """A sipp UAC at the controller's address calling `target` through `proxy`."""
    return phone_factory(scenario, port=port, remote=proxy.address, service=target,
                         auth=(user, password), keys={"caller": user}, transport=transport,
                         timeout=CALL_TIMEOUT)


def first_lines(messages):
    return [message.split("\r\n", 1)[0] for message in messages]


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_authenticated_call_through_proxy(kamailio_factory, phone_factory, transport):
    controller_port = free_port()
    phone = phone_factory("phone_answer")
    proxy = kamailio_factory({"user2": phone.contact}, f"{LOOPBACK}:{controller_port}")

    uac = controller_uac(phone_factory, proxy, controller_port, transport=transport)

    assert uac.wait(CALL_TIMEOUT) == 0, uac.errors()
    assert phone.wait(CALL_TIMEOUT) == 0, phone.errors()
    received = first_lines(uac.received())
    assert received[0] == "SIP/2.0 407 Proxy Authentication Required"
    assert "SIP/2.0 200 OK" in received
    # the in-dialog BYE was challenged too, and answered with credentials
    assert len(uac.sent("BYE ")) == 2
    assert "Proxy-Authorization: Digest" in uac.sent("BYE ")[1]
    assert len(phone.received("BYE ")) == 1
    assert proxy.errors() == []


def test_alias_reaches_the_user(kamailio_factory, phone_factory):
    controller_port = free_port()
    phone = phone_factory("phone_answer")
    proxy = kamailio_factory({"user2": phone.contact}, f"{LOOPBACK}:{controller_port}")

    uac = controller_uac(phone_factory, proxy, controller_port, target="202")

    assert uac.wait(CALL_TIMEOUT) == 0, uac.errors()
    assert phone.wait(CALL_TIMEOUT) == 0, phone.errors()


def test_unknown_user_gets_404(kamailio_factory, phone_factory):
    controller_port = free_port()
    proxy = kamailio_factory({}, f"{LOOPBACK}:{controller_port}")

    uac = controller_uac(phone_factory, proxy, controller_port, scenario="uac_rejected",
                         target="nobody")

    assert uac.wait(CALL_TIMEOUT) == 0, uac.errors()
    assert first_lines(uac.received()) == [
        "SIP/2.0 407 Proxy Authentication Required", "SIP/2.0 404 Not Found"]


@pytest.mark.parametrize("bad_credentials_reply, final", [
    (407, "SIP/2.0 407 Proxy Authentication Required"),
    (403, "SIP/2.0 403 Forbidden"),
])
def test_wrong_password_is_refused(kamailio_factory, phone_factory, bad_credentials_reply,
                                   final):
    controller_port = free_port()
    phone = phone_factory("phone_answer")
    proxy = kamailio_factory({"user2": phone.contact}, f"{LOOPBACK}:{controller_port}",
                             bad_credentials_reply=bad_credentials_reply)

    uac = controller_uac(phone_factory, proxy, controller_port, scenario="uac_rejected",
                         password="wrong")

    assert uac.wait(CALL_TIMEOUT) == 0, uac.errors()
    assert first_lines(uac.received()) == ["SIP/2.0 407 Proxy Authentication Required", final]
    assert phone.received() == []


def test_phones_are_not_challenged(kamailio_factory, phone_factory):
    # the UAC is not at the controller's address: the proxy trusts it like a phone
    phone = phone_factory("phone_answer")
    proxy = kamailio_factory({"user2": phone.contact}, f"{LOOPBACK}:{free_port()}")

    uac = controller_uac(phone_factory, proxy, free_port(), scenario="uac_rejected")

    assert uac.wait(CALL_TIMEOUT) != 0
    assert "SIP/2.0 407" not in "".join(first_lines(uac.received()))
    assert len(phone.received("INVITE ")) == 1


@pytest.mark.parametrize("password, uas_result, uac_result, final", [
    ("pass1", 0, 0, "SIP/2.0 200 OK"),
    ("wrong", 1, None, "SIP/2.0 403 Forbidden"),
])
def test_uas_auth_checks_credentials(phone_factory, password, uas_result, uac_result, final):
    uas = phone_factory("uas_auth")
    scenario = "uac_call" if password == "pass1" else "uac_rejected"

    uac = phone_factory(scenario, remote=f"{LOOPBACK}:{uas.port}", service="user1",
                        auth=("user1", password), keys={"caller": "user1"},
                        timeout=CALL_TIMEOUT)

    assert uac.wait(CALL_TIMEOUT) == 0, uac.errors()
    assert uas.wait(CALL_TIMEOUT) == uas_result, uas.errors()
    received = first_lines(uac.received())
    assert received[0] == "SIP/2.0 407 Proxy Authentication Required"
    assert final in received
