"""Self-tests of the real-peer harness: Kamailio and sipp only, no daemon.

A sipp UAC plays the controller (the daemon's part) so each test proves that the
proxy and the phone scenarios behave as the daemon's integration tests assume.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.peers import LOOPBACK, free_port

CALL_TIMEOUT = 15  # seconds; each test stays under 20 s
# the Request-URI of each UAC scenario, which the digest "uri" must repeat (RFC 3261 22.4)
REQUEST_URIS = {
    "uac_call": "sip:{}@sipx.test;sipx-noroute=Voicemail;sipx-userforward=false",
    "uac_rejected": "sip:{}@sipx.test",
    "uac_refer": "sip:{}@sipx.test;sipx-noroute=Voicemail;sipx-userforward=false",
    "uac_cancel": "sip:{}@sipx.test;sipx-noroute=Voicemail;sipx-userforward=false",
    "uac_3pcc_a": "sip:{}@sipx.test;sipx-noroute=Voicemail;sipx-userforward=false",
    "uac_3pcc_b": "sip:{}@sipx.test;sipx-noroute=Voicemail;sipx-userforward=false",
}


def uac(phone_factory, remote, port=None, scenario="uac_call", target="user2", user="user3",
        password="pass3", transport="u1"):
    """A sipp UAC at 127.0.0.1:`port` calling `target` at `remote` as `user`."""
    return phone_factory(scenario, port=port, remote=remote, service=target,
                         auth=(user, password), keys={"caller": user}, transport=transport,
                         timeout=CALL_TIMEOUT,
                         extra_args=("-auth_uri", REQUEST_URIS[scenario].format(target)))


def controller_uac(phone_factory, proxy, port, **kwargs):
    """A sipp UAC at the controller's address calling through `proxy`."""
    return uac(phone_factory, proxy.address, port, **kwargs)


def first_lines(messages):
    return [message.split("\r\n", 1)[0] for message in messages]


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_authenticated_call_through_proxy(kamailio_factory, phone_factory, transport):
    controller_port = free_port()
    phone = phone_factory("phone_answer")
    proxy = kamailio_factory({"user2": phone.contact}, f"{LOOPBACK}:{controller_port}")

    caller = controller_uac(phone_factory, proxy, controller_port, transport=transport)

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert phone.wait(CALL_TIMEOUT) == 0, phone.errors()
    received = first_lines(caller.received())
    assert received[0] == "SIP/2.0 407 Proxy Authentication Required"
    assert "SIP/2.0 200 OK" in received
    # the in-dialog BYE was challenged too, and answered with credentials
    assert len(caller.sent("BYE ")) == 2
    assert "Proxy-Authorization: Digest" in caller.sent("BYE ")[1]
    assert len(phone.received("BYE ")) == 1
    assert proxy.errors() == []


def test_alias_reaches_the_user(kamailio_factory, phone_factory):
    controller_port = free_port()
    phone = phone_factory("phone_answer")
    proxy = kamailio_factory({"user2": phone.contact}, f"{LOOPBACK}:{controller_port}")

    caller = controller_uac(phone_factory, proxy, controller_port, target="202")

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert phone.wait(CALL_TIMEOUT) == 0, phone.errors()


def test_unknown_user_gets_404(kamailio_factory, phone_factory):
    controller_port = free_port()
    proxy = kamailio_factory({}, f"{LOOPBACK}:{controller_port}")

    caller = controller_uac(phone_factory, proxy, controller_port, scenario="uac_rejected",
                         target="nobody")

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert first_lines(caller.received()) == [
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

    caller = controller_uac(phone_factory, proxy, controller_port, scenario="uac_rejected",
                         password="wrong")

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert first_lines(caller.received()) == ["SIP/2.0 407 Proxy Authentication Required", final]
    assert phone.received() == []


def test_phones_are_not_challenged(kamailio_factory, phone_factory):
    # the UAC is not at the controller's address: the proxy trusts it like a phone
    phone = phone_factory("phone_answer")
    proxy = kamailio_factory({"user2": phone.contact}, f"{LOOPBACK}:{free_port()}")

    caller = controller_uac(phone_factory, proxy, free_port(), scenario="uac_rejected")

    assert caller.wait(CALL_TIMEOUT) == 1, caller.errors()  # sipp: a call failed (not a crash)
    assert "SIP/2.0 407" not in "".join(first_lines(caller.received()))
    assert len(phone.received("INVITE ")) == 1


@pytest.mark.parametrize("password, uas_result, final", [
    ("pass1", 0, "SIP/2.0 200 OK"),
    ("wrong", 97, "SIP/2.0 403 Forbidden"),
])
def test_uas_auth_checks_credentials(phone_factory, password, uas_result, final):
    uas = phone_factory("uas_auth")
    scenario = "uac_call" if password == "pass1" else "uac_rejected"

    caller = uac(phone_factory, f"{LOOPBACK}:{uas.port}", scenario=scenario, target="user1",
                 user="user1", password=password)

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert uas.wait(CALL_TIMEOUT) == uas_result, uas.errors()
    received = first_lines(caller.received())
    assert received[0] == "SIP/2.0 401 Unauthorized"
    assert final in received


@pytest.mark.parametrize("scenario, sipfrags", [
    ("refer_transferee", ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"]),
    ("refer_busy", ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"]),
    ("refer_bare_lf", ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]),
    ("refer_rejected", []),
])
def test_refer_flow_phones(kamailio_factory, phone_factory, scenario, sipfrags):
    controller_port = free_port()
    phone = phone_factory(scenario)
    proxy = kamailio_factory({"user1": phone.contact}, f"{LOOPBACK}:{controller_port}")

    caller = controller_uac(phone_factory, proxy, controller_port, scenario="uac_refer",
                            target="user1", user="user1", password="pass1")

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert phone.wait(CALL_TIMEOUT) == 0, phone.errors()
    notifies = caller.received("NOTIFY ")
    assert [n.split("\r\n\r\n", 1)[1].rstrip("\r\n") for n in notifies] == sipfrags
    assert "Refer-To: <sip:user2@sipx.test>" in phone.received("REFER ")[0]
    # the in-dialog REFER was challenged by the proxy and re-sent with credentials
    assert len(caller.sent("REFER ")) == 2
    assert len(phone.received("BYE ")) == 1
    assert proxy.errors() == []


def test_bare_lf_phone_sends_sloppy_sipfrags(kamailio_factory, phone_factory):
    controller_port = free_port()
    phone = phone_factory("refer_bare_lf")
    proxy = kamailio_factory({"user1": phone.contact}, f"{LOOPBACK}:{controller_port}")

    caller = controller_uac(phone_factory, proxy, controller_port, scenario="uac_refer",
                            target="user1", user="user1", password="pass1")

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    final = caller.received("NOTIFY ")[-1]
    assert "Content-Type: message/sipfrag\r\n" in final
    assert re.search(r"\r\nContent-Length: *15\r\n", final)
    assert final.split("\r\n\r\n", 1)[1].startswith("SIP/2.0 200 OK\n")
    assert "Event: refer;id=4\r\n" in final  # the CSeq of the REFER that was accepted


def test_caller_hangs_up_during_transfer(kamailio_factory, phone_factory):
    controller_port = free_port()
    phone = phone_factory("caller_hangs_up")
    proxy = kamailio_factory({"user1": phone.contact}, f"{LOOPBACK}:{controller_port}")

    caller = controller_uac(phone_factory, proxy, controller_port, scenario="uac_refer",
                            target="user1", user="user1", password="pass1")

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert phone.wait(CALL_TIMEOUT) == 0, phone.errors()
    assert len(caller.received("BYE ")) == 1
    assert caller.received("NOTIFY ") == []


def test_busy_caller(kamailio_factory, phone_factory):
    controller_port = free_port()
    phone = phone_factory("caller_busy")
    proxy = kamailio_factory({"user1": phone.contact}, f"{LOOPBACK}:{controller_port}")

    caller = controller_uac(phone_factory, proxy, controller_port, scenario="uac_rejected",
                            target="user1", user="user1", password="pass1")

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert phone.wait(CALL_TIMEOUT) == 0, phone.errors()
    assert first_lines(caller.received())[-1] == "SIP/2.0 486 Busy Here"


def test_caller_no_answer_is_cancelled(kamailio_factory, phone_factory):
    controller_port = free_port()
    phone = phone_factory("caller_no_answer")
    proxy = kamailio_factory({"user1": phone.contact}, f"{LOOPBACK}:{controller_port}")

    caller = controller_uac(phone_factory, proxy, controller_port, scenario="uac_cancel",
                            target="user1", user="user1", password="pass1")

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert phone.wait(CALL_TIMEOUT) == 0, phone.errors()
    assert "SIP/2.0 487 Request Terminated" in first_lines(caller.received())
    assert len(phone.received("CANCEL ")) == 1


def test_invite_flow_phone_a_takes_a_reinvite(kamailio_factory, phone_factory):
    controller_port = free_port()
    phone = phone_factory("invite_a")
    proxy = kamailio_factory({"user1": phone.contact}, f"{LOOPBACK}:{controller_port}",
                             auth_in_dialog=False)

    caller = controller_uac(phone_factory, proxy, controller_port, scenario="uac_3pcc_a",
                            target="user1", user="user1", password="pass1")

    assert caller.wait(CALL_TIMEOUT) == 0, caller.errors()
    assert phone.wait(CALL_TIMEOUT) == 0, phone.errors()
    assert len(phone.received("INVITE ")) == 2


# caller_result: sipp's exit code for the controller's side, which completes its own scenario
# either way; phone B's scenario is the one that fails (1) when it is offered SDP.
@pytest.mark.parametrize("scenario, phone_result, caller_result", [("uac_3pcc_b", 0, 0),
                                                                 ("uac_call", 1, 0)])
def test_invite_flow_phone_b_insists_on_late_offer(kamailio_factory, phone_factory, scenario,
                                                   phone_result, caller_result):
    # uac_call offers SDP in the INVITE, which phone B must refuse as a failed call
    controller_port = free_port()
    phone = phone_factory("invite_b")
    proxy = kamailio_factory({"user2": phone.contact}, f"{LOOPBACK}:{controller_port}")

    caller = controller_uac(phone_factory, proxy, controller_port, scenario=scenario)

    assert caller.wait(CALL_TIMEOUT) == caller_result, caller.errors()
    assert phone.wait(CALL_TIMEOUT) == phone_result, phone.errors()
    if phone_result == 0:
        assert "v=0" in phone.received("ACK ")[0]
