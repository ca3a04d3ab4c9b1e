"""
Caller ID on both legs. The calling user's phone (both modes) is shown the called party:
its directory display name and identity, or the URI asked for; the agent's credentials
still answer the proxy. callerId / callerIdName (INVITE mode): what the called user is
shown, limited to the agent's own identity or the calling user's; validated before
anything is sent.
"""

from __future__ import annotations

import pytest

from sipxcc.calls.call import CallRequest
from sipxcc.calls.context import FlowContext, shown_to_calling_user
from sipxcc.calls.invite import InviteFlow
from sipxcc.calls.refer import ReferFlow
from sipxcc.calls.registry import CallRegistry
from sipxcc.sip.grammar import UnsafeValue
from sipxcc.sip.uri import Address
from sipxcc.users import User
from sipxcc.web.params import BadParameter
from tests.unit import test_invite_flow as invite_mode
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer
from tests.unit.test_invite_flow import md5
from tests.unit.test_web_params import parse
from tests.unit.webfakes import WebHarness


def from_shown_to_callee(**kw) -> Address:
    net, registry, call = invite_mode.setup(**kw)
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(invite_mode.A_ANSWER1))
    _, invite2 = net.sent_messages()
    return Address.parse(invite2.headers.get("From"))


def test_by_default_the_callee_is_shown_the_agent():
    shown = from_shown_to_callee()
    assert (shown.display, str(shown.uri)) == ("The Agent", "sip:agent@sipx.test")


def test_the_callee_is_shown_the_calling_user_when_asked():
    shown = from_shown_to_callee(caller_id="user1@sipx.test", caller_id_name="Sales: User One")
    assert (shown.display, str(shown.uri)) == ("Sales: User One", "sip:user1@sipx.test")


def test_a_name_alone_keeps_the_agents_identity():
    shown = from_shown_to_callee(caller_id_name='Desk "7"')
    assert (shown.display, str(shown.uri)) == ('Desk "7"', "sip:agent@sipx.test")


def test_a_caller_id_alone_shows_no_name_unless_it_is_the_agents_own():
    shown = from_shown_to_callee(caller_id="user1@sipx.test")
    assert (shown.display, str(shown.uri)) == (None, "sip:user1@sipx.test")
    shown = from_shown_to_callee(caller_id="agent@sipx.test")
    assert (shown.display, str(shown.uri)) == ("The Agent", "sip:agent@sipx.test")


def test_callerid_changes_only_what_the_called_user_sees():
    net, registry, call = invite_mode.setup(caller_id="user1@sipx.test", caller_id_name="X")
    [invite1] = net.sent_messages()
    assert str(Address.parse(invite1.headers.get("From")).uri) == "sip:user2@sipx.test"


# What the calling user's phone is shown: the called party, in both modes

USER2 = User("user2@sipx.test", "user2", ("202",), 'Sales "2" \\ Desk',
             md5("user2:sipx.test:123"), md5("user2:sipx.test:pass2"))


def first_invite_of(method: str, called: str, called_user: User | None = USER2):
    net = FakeNetwork()
    ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
    flows = {"REFER": lambda call, end: ReferFlow(ctx, call, end),
             "INVITE": lambda call, end: InviteFlow(ctx, call, end)}
    registry = CallRegistry(net.clock, flows)
    registry.place(CallRequest(invite_mode.AGENT, "user1@sipx.test", called, method=method,
                               called_user=called_user))
    [invite] = net.sent_messages()
    return net, invite


@pytest.mark.parametrize("method", ["REFER", "INVITE"])
def test_the_calling_users_phone_is_shown_the_called_users_name_and_number(method):
    # dialled by its alias: shown by its directory identity and display name
    net, invite = first_invite_of(method, "202@sipx.test")
    assert invite.headers.get("From").startswith(
        '"Sales \\"2\\" \\\\ Desk" <sip:user2@sipx.test>;tag=')
    shown = Address.parse(invite.headers.get("From"))
    assert (shown.display, str(shown.uri)) == ('Sales "2" \\ Desk', "sip:user2@sipx.test")
    asserted = Address.parse(invite.headers.get("P-Asserted-Identity"))
    assert (asserted.display, asserted.uri, asserted.params) == (shown.display, shown.uri, {})
    assert str(Address.parse(invite.headers.get("To")).uri) == "sip:user1@sipx.test"


@pytest.mark.parametrize("method", ["REFER", "INVITE"])
def test_the_proxy_still_authenticates_the_agent(method):
    net, invite = first_invite_of(method, "user2@sipx.test")
    net.deliver(answer(invite, 407, "Proxy Authentication Required", "p1",
                       [("Proxy-Authenticate", invite_mode.CHALLENGE)]))
    _, retry = net.sent_messages()
    assert 'username="agent"' in retry.headers.get("Proxy-Authorization")
    assert retry.headers.get("From") == invite.headers.get("From")
    assert retry.headers.get("P-Asserted-Identity") == invite.headers.get("P-Asserted-Identity")


@pytest.mark.parametrize("method", ["REFER", "INVITE"])
@pytest.mark.parametrize("called,shown", [
    ("+4930123@sipx.test", "<sip:+4930123@sipx.test>"),
    ("bob@example.org:5070", "<sip:bob@example.org:5070>"),
    ("alice@[2001:db8::1]", "<sip:alice@[2001:db8::1]>"),
])
def test_a_party_outside_the_directory_is_shown_as_its_uri(method, called, shown):
    net, invite = first_invite_of(method, called, called_user=None)
    assert invite.headers.get("From").startswith(shown + ";tag=")
    assert invite.headers.get("P-Asserted-Identity") == shown


def test_what_is_shown_goes_through_the_validated_constructors():
    hostile = User("user2@sipx.test", "user2", (), "Two\r\nX-Evil: 1", None, None)
    with pytest.raises(UnsafeValue):
        shown_to_calling_user(CallRequest(invite_mode.AGENT, "user1@sipx.test",
                                          "user2@sipx.test", called_user=hostile))
    with pytest.raises(UnsafeValue):
        shown_to_calling_user(CallRequest(invite_mode.AGENT, "user1@sipx.test",
                                          "bob>@example.org"))


def test_in_dialog_requests_keep_the_dialogs_from():
    """The REFER goes in the dialog the calling user's phone answered: its From is the
    called user's (RFC 3261 §12.2.1.1), its Refer-To the called user."""
    net, invite = first_invite_of("REFER", "user2@sipx.test")
    phone = FarEnd(invite)
    net.deliver(phone.ok(b""))
    _, refer = net.sent_messages()
    assert refer.headers.get("From") == invite.headers.get("From")
    assert Address.parse(refer.headers.get("Refer-To")).uri == Address.parse(
        invite.headers.get("From")).uri


def test_the_web_layer_finds_the_called_user_in_the_directory():
    web = WebHarness()
    for called, expected in (("user2", "user2@sipx.test"), ("202", "user2@sipx.test"),
                             ("user2@sipx.test", "user2@sipx.test"),
                             ("202@SIPX.TEST", "user2@sipx.test"),
                             ("user2@elsewhere.test", None), ("+4930123", None)):
        web.registry.calls.clear()
        request = web.request(b"POST", f"/callcontroller/user1/{called}", client="127.0.0.1")
        assert request.responseCode == 200, request.body
        [call] = web.registry.calls
        found = call.request.called_user
        assert (found.identity if found else None) == expected, called


def test_caller_id_is_the_agents_or_the_calling_users_only():
    wanted = parse({"sipMethod": "INVITE", "callerId": "user1"})
    assert wanted.caller_id == "user1@sipx.test"
    assert parse({"sipMethod": "INVITE", "agent": "user3", "callerId": "user3"}).caller_id == \
        "user3@sipx.test"
    for other in ("user2", "user9@sipx.test", "user1@elsewhere.test", "911"):
        with pytest.raises(BadParameter) as caught:
            parse({"sipMethod": "INVITE", "callerId": other})
        assert "only the agent's or the calling user's identity" in str(caught.value)


@pytest.mark.parametrize("bad", ["user1\r\nX-Evil: 1", "user1>", "<sip:user1@x>", "", "a b"])
def test_caller_id_is_refused_by_grammar(bad):
    with pytest.raises(BadParameter) as caught:
        parse({"sipMethod": "INVITE", "callerId": bad})
    assert str(caught.value).startswith("Bad parameter callerId")


@pytest.mark.parametrize("bad", ["Bob\r\nX-Evil: 1", "a\x00", "\t", "", "x" * 65])
def test_caller_id_name_is_printable_and_bounded(bad):
    with pytest.raises(BadParameter) as caught:
        parse({"sipMethod": "INVITE", "callerIdName": bad})
    assert str(caught.value).startswith("Bad parameter callerIdName")


def test_caller_id_needs_invite_mode():
    for name in ("callerId", "callerIdName"):
        with pytest.raises(BadParameter) as caught:
            parse({name: "user1"})
        assert "sipMethod=INVITE" in str(caught.value)


def test_the_request_carries_what_the_web_layer_validated():
    wanted = parse({"sipMethod": "INVITE", "callerId": "user1", "callerIdName": "One"})
    request = CallRequest.wanted_by(invite_mode.AGENT, wanted)
    assert (request.caller_id, request.caller_id_name) == ("user1@sipx.test", "One")
