"""An outgoing request's edges: reliable provisionals told apart by RSeq (RFC 3262), the
digest answer checked against RFC 2617's own formula, a challenge over another transport,
in-dialog retries above every CSeq used (RFC 3261 §22.2), a forked 2xx ACKed and BYEd once
(§13.2.2.4), and an INVITE a CANCEL does not end."""

from __future__ import annotations

import hashlib
import re

from sipxcc.sip.digest import DigestCredentials
from sipxcc.sip.framing import parse_datagram
from sipxcc.sip.outgoing import RequestFailed
from sipxcc.sip.transaction import T1
from sipxcc.sip.transport import Source
from tests.unit.sipfakes import PROXY, FakeNetwork, FarEnd, answer

HA1 = hashlib.md5(b"user1:sipx.test:pass1").hexdigest()
CREDS = DigestCredentials("user1", {"MD5": HA1})
CHALLENGE = 'Digest realm="sipx.test", nonce="abc", qop="auth", algorithm=MD5'


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def start_invite(net: FakeNetwork, credentials=None):
    request = net.ua.new_request("INVITE", "sip:user2@sipx.test", "<sip:user1@sipx.test>",
                                 "<sip:user2@sipx.test>")
    seen: list = []
    outgoing = net.ua.invite(request, credentials, on_response=seen.append)
    results: list = []
    outgoing.deferred.addBoth(results.append)
    [sent] = net.sent_messages()
    return outgoing, sent, seen, results


def test_reliable_provisionals_with_another_rseq_each_reach_the_caller():
    net = FakeNetwork()
    outgoing, sent, seen, _ = start_invite(net)
    for rseq in ("1", "2", "2"):
        net.deliver(answer(sent, 183, "Session Progress", "t1", [("RSeq", rseq)]))
    assert [(r.status, r.headers.get("RSeq")) for r in seen] == [(183, "1"), (183, "2")]


def test_the_digest_answer_is_rfc_2617s_response_for_the_invite():
    net = FakeNetwork()
    outgoing, sent, seen, results = start_invite(net, CREDS)
    net.deliver(answer(sent, 407, "Proxy Authentication Required", "c1",
                       [("Proxy-Authenticate", CHALLENGE)]))
    [retry] = [m for m in net.sent_messages() if m.method == "INVITE"]
    value = retry.headers.get("Proxy-Authorization")
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', value))
    assert (params["username"], params["realm"], params["nonce"], params["uri"]) == (
        "user1", "sipx.test", "abc", "sip:user2@sipx.test")
    ha2 = md5(f"INVITE:{params['uri']}")
    expected = md5(f"{HA1}:abc:{params['nc']}:{params['cnonce']}:auth:{ha2}")
    assert params["response"] == expected and params["nc"] == "00000001"


def test_a_challenge_from_the_proxys_address_over_another_transport_is_final():
    net = FakeNetwork()
    outgoing, sent, seen, results = start_invite(net, CREDS)
    challenge = answer(sent, 407, "Proxy Authentication Required", "c1",
                       [("Proxy-Authenticate", CHALLENGE)])
    net.ua.receive(parse_datagram(challenge.to_bytes()), Source("TCP", *PROXY, None))
    assert [m.method for m in net.sent_messages()] == ["ACK"]
    [final] = results
    assert final.status == 407


def dialog_up(net: FakeNetwork, credentials=None):
    outgoing, sent, seen, results = start_invite(net, credentials)
    phone = FarEnd(sent)
    net.deliver(phone.ok(record_route="<sip:127.0.0.1:5080;lr>"))
    outgoing.dialog.ack()
    assert [m.method for m in net.sent_messages()] == ["ACK"]
    return outgoing, sent, phone


def test_an_in_dialog_retry_takes_a_cseq_above_every_request_sent_meanwhile():
    net = FakeNetwork()
    outgoing, _, _ = dialog_up(net, CREDS)
    dialog = outgoing.dialog
    dialog.request("INFO")
    dialog.request("INFO")
    first, second = net.sent_messages()
    assert second.cseq[0] == first.cseq[0] + 1
    net.deliver(answer(first, 401, "Unauthorized", "t1",
                       [("WWW-Authenticate", CHALLENGE + ", stale=false")]))
    [retry] = [m for m in net.sent_messages() if m.method == "INFO"]
    assert retry.cseq == (second.cseq[0] + 1, "INFO")
    stale = CHALLENGE.replace("abc", "def") + ", stale=true"
    net.deliver(answer(retry, 401, "Unauthorized", "t1", [("WWW-Authenticate", stale)]))
    [again] = [m for m in net.sent_messages() if m.method == "INFO"]
    assert sorted(n for n, _ in again.headers.items()) == \
        sorted(n for n, _ in retry.headers.items())  # every header kept, the answer replaced
    assert 'nonce="def"' in again.headers.get("Authorization")


def test_a_2xx_from_another_fork_is_acked_and_byed_and_ours_acked_again_when_resent():
    net = FakeNetwork()
    outgoing, sent, phone = dialog_up(net)
    net.deliver(phone.ok(record_route="<sip:127.0.0.1:5080;lr>"))  # resent: ACK again
    assert [m.method for m in net.sent_messages()] == ["ACK"]
    fork = FarEnd(sent, contact="<sip:user2@127.0.0.1:5072>")
    net.deliver(fork.ok())
    assert [(m.method, m.headers.get("To").endswith(fork.tag)) for m in net.sent_messages()] \
        == [("ACK", True), ("BYE", True)]
    net.clock.advance(64 * T1)  # the BYE to the fork times out: nothing else happens
    assert outgoing.final_status == 200


def test_an_invite_the_cancel_does_not_end_leaves_no_transaction_behind():
    net = FakeNetwork()
    outgoing, sent, seen, results = start_invite(net)
    net.deliver(answer(sent, 180, "Ringing", "t1"))
    outgoing.cancel()
    [cancel] = net.sent_messages()
    net.deliver(answer(cancel, 200, "OK", "t1"))
    net.clock.advance(64 * T1)
    [failure] = results
    assert failure.check(RequestFailed) and str(failure.value) == "408 Request Timeout"
    assert not net.ua.transactions.clients
