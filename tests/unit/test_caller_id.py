"""
Caller ID on both legs. The calling user's phone (both modes) is shown the called party:
its directory display name and identity, or the URI asked for. In INVITE mode the called
user is shown the calling user the same way, whoever the agent is, and a transfer target
the called user it will talk to; From and P-Asserted-Identity say the same, and the
agent's credentials still answer the proxy. callerId / callerIdName (INVITE mode) change
what the called user is shown, limited to the agent's own identity or the calling user's;
validated before anything is sent.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sipxcc.calls.call import CallRequest
from sipxcc.calls.context import FlowContext, presented_address, shown_to_calling_user
from sipxcc.calls.invite import InviteFlow
from sipxcc.calls.refer import ReferFlow
from sipxcc.calls.registry import CallRegistry
from sipxcc.sip.grammar import UnsafeValue
from sipxcc.sip.uri import Address
from sipxcc.users import User, parse_directory
from sipxcc.web.params import BadParameter
from tests.unit import test_invite_flow as invite_mode
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer
from tests.unit.test_invite_flow import md5
from tests.unit.test_web_params import parse
from tests.unit.webfakes import WebHarness

USER1 = User("user1@sipx.test", "user1", ("201",), "User One", md5("user1:sipx.test:123"),
             md5("user1:sipx.test:pass1"))


def invite_to_callee(calling: str = "user1@sipx.test", **kw):
    """The INVITE that rings the called user (INVITE mode), once the calling user answered."""
    net = FakeNetwork()
    ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
    registry = CallRegistry(net.clock, {"INVITE": lambda call, end: InviteFlow(ctx, call, end)})
    registry.place(CallRequest(invite_mode.AGENT, calling, "user2@sipx.test", method="INVITE",
                               **kw))
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(invite_mode.A_ANSWER1))
    _, invite2 = net.sent_messages()
    return net, invite2


def shown_to_callee(calling: str = "user1@sipx.test", **kw) -> tuple[str | None, str]:
    """(display name, URI) the called user's phone is shown; P-Asserted-Identity must say
    the same, without parameters."""
    _, invite2 = invite_to_callee(calling, **kw)
    shown = Address.parse(invite2.headers.get("From"))
    asserted = Address.parse(invite2.headers.get("P-Asserted-Identity"))
    assert (asserted.display, asserted.uri, asserted.params) == (shown.display, shown.uri, {})
    return shown.display, str(shown.uri)


def test_an_agent_placing_a_call_shows_the_called_user_the_calling_user():
    # the operator ("The Agent") connects user1 to user2: user2's phone shows user1
    net, invite2 = invite_to_callee(calling_user=USER1)
    assert invite2.headers.get("From").startswith('"User One" <sip:user1@sipx.test>;tag=')
    assert invite2.headers.get("P-Asserted-Identity") == '"User One" <sip:user1@sipx.test>'
    assert invite2.headers.get("To") == "<sip:user2@sipx.test>"


def test_the_proxy_authenticates_the_agent_for_the_called_users_invite():
    net, invite2 = invite_to_callee(calling_user=USER1)
    net.deliver(answer(invite2, 407, "Proxy Authentication Required", "p2",
                       [("Proxy-Authenticate", invite_mode.CHALLENGE)]))
    _, retry = net.sent_messages()
    assert 'username="agent"' in retry.headers.get("Proxy-Authorization")
    assert retry.headers.get("From") == invite2.headers.get("From")
    assert retry.headers.get("P-Asserted-Identity") == invite2.headers.get("P-Asserted-Identity")


def test_an_agent_calling_for_itself_is_shown_as_before():
    assert shown_to_callee("agent@sipx.test", calling_user=invite_mode.AGENT) == (
        "The Agent", "sip:agent@sipx.test")


@pytest.mark.parametrize("calling", ["+4930123@sipx.test", "bob@example.org:5070"])
def test_a_calling_party_outside_the_directory_is_shown_as_its_uri(calling):
    assert shown_to_callee(calling) == (None, f"sip:{calling}")


@pytest.mark.parametrize("asked,shown", [
    ({"caller_id": "agent@sipx.test"}, ("The Agent", "sip:agent@sipx.test")),
    ({"caller_id": "agent@sipx.test", "caller_id_name": "Desk 7"},
     ("Desk 7", "sip:agent@sipx.test")),
    ({"caller_id": "user1@sipx.test"}, ("User One", "sip:user1@sipx.test")),
    ({"caller_id": "user1@sipx.test", "caller_id_name": "Sales: User One"},
     ("Sales: User One", "sip:user1@sipx.test")),
    # a name alone keeps the calling user's identity
    ({"caller_id_name": 'Desk "7"'}, ('Desk "7"', "sip:user1@sipx.test")),
])
def test_caller_id_picks_what_the_called_user_is_shown(asked, shown):
    assert shown_to_callee(calling_user=USER1, **asked) == shown


def test_caller_id_of_a_calling_party_outside_the_directory_is_its_uri():
    assert shown_to_callee("+4930123@sipx.test", caller_id="+4930123@sipx.test",
                           caller_id_name="Hotline") == ("Hotline", "sip:+4930123@sipx.test")


def test_callerid_changes_only_what_the_called_user_sees():
    net, registry, call = invite_mode.setup(caller_id="user1@sipx.test", caller_id_name="X")
    [invite1] = net.sent_messages()
    assert str(Address.parse(invite1.headers.get("From")).uri) == "sip:user2@sipx.test"


@pytest.mark.parametrize("fields", [
    {"calling_user": replace(USER1, display_name="One\r\nX-Evil: 1")},
    {"calling_user": USER1, "caller_id_name": "One\nX-Evil: 1"},
    {"calling_user": USER1, "caller_id_name": "One\x00"},
])
def test_a_hostile_name_never_reaches_the_called_users_invite(fields):
    request = CallRequest(invite_mode.AGENT, "user1@sipx.test", "user2@sipx.test",
                          method="INVITE", **fields)
    with pytest.raises(UnsafeValue):
        presented_address(request)


def test_a_directory_name_with_line_breaks_is_cleaned_before_it_is_shown(tmp_path):
    path = tmp_path / "validusers.xml"
    path.write_text(
        '<validusers xmlns="http://www.sipfoundry.org/sipX/schema/xml/validusers-00-00">'
        "<user><identity>user1@sipx.test</identity><userName>user1</userName>"
        "<displayName>One&#13;&#10;X-Evil: 1 &quot;boss&quot; \\</displayName></user>"
        "</validusers>")
    [user] = parse_directory(str(path))
    net, invite2 = invite_to_callee(calling_user=user)
    assert invite2.headers.get("From").startswith(
        '"One X-Evil: 1 \\"boss\\" \\\\" <sip:user1@sipx.test>;tag=')
    assert "X-Evil" not in invite2.headers
    assert Address.parse(invite2.headers.get("P-Asserted-Identity")).display == \
        'One X-Evil: 1 "boss" \\'


# What a transfer target is shown (INVITE mode): the called user it will talk to

def test_a_transfer_target_is_shown_the_called_user_not_the_agent():
    c = invite_mode.Connected(calling_user=USER1, called_user=USER2)
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    assert invite_x.headers.get("To") == "<sip:user3@sipx.test>"
    shown = '"Sales \\"2\\" \\\\ Desk" <sip:user2@sipx.test>'
    assert invite_x.headers.get("From").startswith(shown + ";tag=")
    assert invite_x.headers.get("P-Asserted-Identity") == shown
    # the proxy still authenticates the agent
    c.net.deliver(answer(invite_x, 407, "Proxy Authentication Required", "p3",
                         [("Proxy-Authenticate", invite_mode.CHALLENGE)]))
    _, retry = c.sent()
    assert 'username="agent"' in retry.headers.get("Proxy-Authorization")
    assert retry.headers.get("From") == invite_x.headers.get("From")
    # once X answers, its dialog's local party (what it is shown) is the called user
    x = FarEnd(retry, "<sip:user3@127.0.0.1:5073>")
    c.net.deliver(x.ok(invite_mode.X_ANSWER))
    assert [(d.local_party, d.remote_party) for d in c.call.dialogs()][-1] == (
        "sip:user2@sipx.test", "sip:user3@sipx.test")


def test_a_transfer_target_is_shown_a_called_number_as_its_uri():
    c = invite_mode.Connected(calling_user=USER1)
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    assert invite_x.headers.get("From").startswith("<sip:user2@sipx.test>;tag=")
    assert invite_x.headers.get("P-Asserted-Identity") == "<sip:user2@sipx.test>"


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


PARTIES = (("user2", "user2@sipx.test"), ("202", "user2@sipx.test"),
           ("user2@sipx.test", "user2@sipx.test"), ("202@SIPX.TEST", "user2@sipx.test"),
           ("user2@elsewhere.test", None), ("+4930123", None))


def placed(web: WebHarness, path: str, expect: int = 200):
    """POST C{path} from a trusted host; the request the call store was given."""
    web.registry.calls.clear()
    request = web.request(b"POST", path, client="127.0.0.1")
    assert request.responseCode == expect, request.body
    if expect != 200:
        assert web.registry.calls == []
        return request
    [call] = web.registry.calls
    return call.request


@pytest.mark.parametrize("party,expected", PARTIES)
def test_the_web_layer_finds_the_called_user_in_the_directory(party, expected):
    found = placed(WebHarness(), f"/callcontroller/user1/{party}").called_user
    assert (found.identity if found else None) == expected


@pytest.mark.parametrize("party,expected", PARTIES)
def test_the_web_layer_finds_the_calling_user_the_same_way(party, expected):
    # an agent (user3, listed in users.agents) places the call for the calling party
    found = placed(WebHarness(), f"/callcontroller/{party}/user4?agent=user3").calling_user
    assert (found.identity if found else None) == expected



def test_a_user_whose_identity_is_in_another_domain_is_found_by_that_identity():
    web = WebHarness()
    partner = replace(web.directory.users[3], identity="user5@partner.test",
                      user_name="user5", aliases=("205",))
    web.directory.users.append(partner)
    assert placed(web, "/callcontroller/user1/user5@partner.test").called_user == partner
    assert placed(web, "/callcontroller/user5@partner.test/user4?agent=user3"
                  ).calling_user == partner

INVITE = "?sipMethod=INVITE&agent=user3&callerId="


@pytest.mark.parametrize("caller_id,identity", [
    ("user1", "user1@sipx.test"), ("201", "user1@sipx.test"),
    ("user1@sipx.test", "user1@sipx.test"), ("201@sipx.test", "user1@sipx.test"),
    ("user3", "user3@sipx.test"), ("203", "user3@sipx.test"),
])
def test_caller_id_names_the_agent_or_the_calling_user_by_any_of_its_names(caller_id,
                                                                           identity):
    request = placed(WebHarness(), f"/callcontroller/user1/user2{INVITE}{caller_id}")
    assert request.caller_id == identity


@pytest.mark.parametrize("other", ["user2", "202", "user9@sipx.test", "user1@elsewhere.test",
                                   "911"])
def test_caller_id_is_the_agents_or_the_calling_users_only(other):
    request = placed(WebHarness(), f"/callcontroller/user1/user2{INVITE}{other}", 400)
    assert b"only the agent's or the calling user's identity" in request.body


def test_caller_id_of_a_calling_party_outside_the_directory_is_its_uri_only():
    web = WebHarness()
    path = "/callcontroller/%2B4930123/user2" + INVITE
    assert placed(web, path + "%2B4930123").caller_id == "+4930123@sipx.test"
    for other in ("%2B4930124", "user1"):
        placed(web, path + other, 400)


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
