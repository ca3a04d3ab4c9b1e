"""
The agents' SIP credentials (their HA1) answer only the proxy's challenges: realm
C{sip.realm}, the 401/407 from the proxy's address, the request sent through the proxy,
once per realm per request plus one stale retry. Anything else is the final response.
"""

from __future__ import annotations

import hashlib

from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher

from sipxcc.sip.digest import DigestCredentials
from tests.sipwire import challenge
from tests.unit.sipfakes import PROXY, FakeNetwork, FarEnd, answer

HA1 = hashlib.md5(b"user1:sipx.test:pass1").hexdigest()
CREDS = DigestCredentials("user1", {"MD5": HA1})
FAR_END = ("127.0.0.1", 5071)  # the phone's Contact address, not the proxy's port
STRANGER = ("192.0.2.66", 5060)
AUTH_HEADERS = ("Authorization", "Proxy-Authorization")


def start_invite(net: FakeNetwork):
    request = net.ua.new_request("INVITE", "sip:user2@sipx.test", "<sip:user1@sipx.test>",
                                 "<sip:user2@sipx.test>")
    outgoing = net.ua.invite(request, CREDS)
    finals = []
    outgoing.deferred.addBoth(finals.append)
    [sent] = net.sent_messages()
    return outgoing, sent, finals


def deliver_challenge(net, request, source=PROXY, **kw):
    status, reason, headers = challenge(**kw)
    net.deliver(answer(request, status, reason, "c1", headers), source)
    return [m for m in net.sent_messages() if getattr(m, "method", None) != "ACK"]


def carries_credentials(message) -> bool:
    return any(name in message.headers for name in AUTH_HEADERS)


def test_the_proxys_challenge_is_answered_once_and_a_second_one_is_final():
    net = FakeNetwork()
    outgoing, invite, finals = start_invite(net)
    [retry] = deliver_challenge(net, invite)
    assert 'username="user1"' in retry.headers.get("Proxy-Authorization")
    assert deliver_challenge(net, retry, nonce="n2") == []  # wrong password: no third try
    assert finals[0].status == 407 and outgoing.final_status == 407


def test_a_challenge_for_another_realm_is_final_and_never_answered():
    for status in (401, 407):
        net = FakeNetwork()
        outgoing, invite, finals = start_invite(net)
        assert deliver_challenge(net, invite, status=status, realm="evil.example") == []
        assert finals[0].status == status


def test_a_challenge_in_our_realm_not_from_the_proxy_is_final():
    for source in (FAR_END, STRANGER):
        net = FakeNetwork()
        outgoing, invite, finals = start_invite(net)
        assert deliver_challenge(net, invite, source=source, status=401) == []
        assert finals[0].status == 401
        # the proxy's own challenge afterwards finds the request settled
        assert deliver_challenge(net, invite) == []


def test_stale_challenges_get_one_retry_not_hundreds():
    net = FakeNetwork()
    outgoing, invite, finals = start_invite(net)
    [retry] = deliver_challenge(net, invite)
    sent = [retry]
    for n in range(500):
        request = sent[-1]
        sent += deliver_challenge(net, request, nonce=f"stale{n}", stale=True)
        if finals:
            break
    assert len(sent) == 2  # the answer, and one stale retry with the new nonce
    assert 'nonce="stale0"' in sent[1].headers.get("Proxy-Authorization")
    assert finals[0].status == 407


def test_a_far_end_challenge_relayed_after_the_proxy_accepted_ours_is_final():
    net = FakeNetwork()
    outgoing, invite, finals = start_invite(net)
    [retry] = deliver_challenge(net, invite)
    # the proxy took our answer and forwarded the INVITE; the far end asks in the same realm
    assert deliver_challenge(net, retry, status=401, nonce="chosen-by-far-end") == []
    assert finals[0].status == 401


def test_no_realm_configured_means_no_challenge_is_answered():
    net = FakeNetwork(realm=None)
    outgoing, invite, finals = start_invite(net)
    assert deliver_challenge(net, invite) == []
    assert finals[0].status == 407


def test_a_refused_challenge_is_logged_once_without_secrets():
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        net = FakeNetwork()
        outgoing, invite, finals = start_invite(net)
        for _ in range(3):  # the 401 and two retransmissions of it
            deliver_challenge(net, invite, status=401, realm="evil.example")
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events if "not answering" in formatEvent(e)]
    assert len(lines) == 1
    assert "evil.example" in lines[0] and "127.0.0.1:5080" in lines[0]
    assert HA1 not in lines[0] and "response=" not in lines[0]


def connected_dialog(net, record_route=None):
    """An INVITE answered by the proxy's 407, then the far end's 200; returns the dialog."""
    outgoing, invite, finals = start_invite(net)
    [retry] = deliver_challenge(net, invite)
    phone = FarEnd(retry)
    net.deliver(phone.ok(record_route=record_route),
                PROXY if record_route else FAR_END)
    net.sent_messages()
    return outgoing.dialog, phone


def test_in_dialog_requests_to_the_far_ends_contact_carry_no_credentials():
    net = FakeNetwork()
    dialog, phone = connected_dialog(net)
    bye = dialog.request("BYE")
    [(sent, address)] = net.sent()
    assert address == FAR_END and sent.method == "BYE"
    assert not carries_credentials(sent)
    # and a challenge from the far end (even from the proxy's host, in our realm) is final
    for source in (FAR_END, PROXY):
        net.deliver(answer(sent, *challenge(401)[:2], phone.tag, challenge(401)[2]), source)
    assert net.sent_messages() == []
    assert bye.final_status == 401


def test_in_dialog_requests_routed_through_the_proxy_reuse_its_challenge():
    net = FakeNetwork()
    dialog, phone = connected_dialog(net, record_route="<sip:127.0.0.1:5080;lr>")
    bye = dialog.request("BYE")
    [(sent, address)] = net.sent()
    assert address == PROXY
    auth = sent.headers.get("Proxy-Authorization")
    assert 'nonce="n1"' in auth and "nc=00000002" in auth
    # the proxy's nonce expired: one stale retry, then a further challenge is final
    [retry] = deliver_challenge(net, sent, nonce="n2", stale=True)
    assert 'nonce="n2"' in retry.headers.get("Proxy-Authorization")
    assert deliver_challenge(net, retry, nonce="n3", stale=True) == []
    assert bye.final_status == 407


def test_an_in_dialog_ack_from_a_stranger_is_ignored_like_other_in_dialog_requests():
    net = FakeNetwork()
    dialog, phone = connected_dialog(net)
    got = []
    dialog.on_request = lambda request, txn: got.append((request.method, txn))
    ack = phone.request("ACK")
    net.deliver(ack, STRANGER)
    info = phone.request("INFO")
    net.deliver(info, STRANGER)
    assert got == []
    assert [m.status for m in net.sent_messages()] == [403]  # the INFO; an ACK is never answered
    net.deliver(phone.request("ACK"), FAR_END)
    assert [method for method, _ in got] == ["ACK"]


def test_a_proxy_named_by_host_name_is_recognised_by_the_address_it_resolved_to():
    net = FakeNetwork(proxy="sip:proxy.sipx.test;lr")
    net.clock.resolve = lambda host: defer.succeed("127.0.0.7")
    outgoing, invite, finals = start_invite(net)
    # another port of the proxy's host is not the proxy
    assert deliver_challenge(net, invite, source=("127.0.0.7", 5070)) == []
    outgoing, invite, finals = start_invite(net)
    [retry] = deliver_challenge(net, invite, source=("127.0.0.7", 5060))
    assert carries_credentials(retry)
