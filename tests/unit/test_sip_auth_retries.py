"""Digest on the SIP side beyond the basics: userhash and SHA-512-256 (RFC 7616), how many
challenges we answer, stale nonces, in-dialog retries' CSeq; plus sipfrag parsing, the ACK
for a failure, and Headers.count/copy."""

from __future__ import annotations

import hashlib

import pytest

from sipxcc.sip.digest import Challenge, DigestCredentials, authorization
from sipxcc.sip.headers import Headers
from sipxcc.sip.message import parse_sipfrag
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer


def sha(name: str, text: str) -> str:
    return hashlib.new(name, text.encode()).hexdigest()


def test_a_userhash_challenge_hides_the_user_name():
    challenge = Challenge.parse('Digest realm="sipx.test", nonce="n1", qop="auth", '
                                'algorithm=SHA-256, userhash=TRUE')
    assert challenge.userhash
    creds = DigestCredentials("user1", {"SHA-256": sha("sha256", "user1:sipx.test:pw")})
    value = authorization(challenge, creds, "INVITE", "sip:x@sipx.test", 1, "c0ffee")
    assert f'username="{sha("sha256", "user1:sipx.test")}"' in value
    assert value.endswith(", userhash=true")
    plain = Challenge.parse('Digest realm="sipx.test", nonce="n1", qop="auth", '
                            'algorithm=SHA-256')
    assert not plain.userhash and not plain.stale
    value = authorization(plain, creds, "INVITE", "sip:x@sipx.test", 1, "c0ffee")
    assert 'username="user1"' in value and "userhash" not in value


def test_sha_512_256_is_answered_when_available():
    challenge = Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    ha1 = sha("sha512_256", "u:r:pw")
    value = authorization(challenge, DigestCredentials("u", {"SHA-512-256": ha1}), "BYE",
                          "sip:x@r", 1, "c")
    expected = sha("sha512_256", f"{ha1}:n:{sha('sha512_256', 'BYE:sip:x@r')}")
    assert f'response="{expected}"' in value and "algorithm=SHA-512-256" in value


def test_quoted_values_are_escaped_in_the_answer():
    challenge = Challenge.parse('Digest realm="a\\"b\\\\c", nonce="n"')
    assert challenge.realm == 'a"b\\c'
    value = authorization(challenge, DigestCredentials("u", {"MD5": "0" * 32}), "BYE",
                          "sip:x", 1, "c")
    assert 'realm="a\\"b\\\\c"' in value


@pytest.mark.parametrize("header", ['Digest realm="r", nonce="n", stale=true, ',
                                    'Digest realm="r",nonce="n",stale=TRUE'])
def test_stale_flag_and_trailing_commas(header):
    assert Challenge.parse(header).stale


@pytest.mark.parametrize("header", ["Basic realm=x", 'Digest realm="r"', 'Digest nonce="n"',
                                    'Digest realm="r", nonce="n", =x'])
def test_unusable_challenges_are_refused(header):
    with pytest.raises(ValueError):
        Challenge.parse(header)


CHALLENGE = 'Digest realm="sipx.test", nonce="abc", qop="auth", algorithm=MD5'
CREDS = DigestCredentials("user1", {"MD5": "0" * 32})


def options(net, credentials=CREDS):
    request = net.ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                 "<sip:user1@sipx.test>")
    results = []
    net.ua.send(request, net.ua.proxy_target, credentials=credentials).deferred.addBoth(
        results.append)
    [sent] = net.sent_messages()
    return sent, results


def challenge_to(net, request, *values, status=407):
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    net.deliver(answer(request, status, "Authenticate", "t1", [(header, v) for v in values]))
    return net.sent_messages()


def test_an_unparseable_challenge_is_skipped_for_the_next_one():
    net = FakeNetwork()
    sent, results = options(net)
    [retry] = challenge_to(net, sent, "Digest garbage", CHALLENGE)
    assert 'nonce="abc"' in retry.headers.get("Proxy-Authorization")
    assert results == []


def test_one_failed_try_then_the_challenge_is_the_answer():
    # a second challenge of the realm we answered means our answer was refused: asking
    # again would only hand a guessing stranger more responses
    net = FakeNetwork()
    request, results = options(net)
    [request] = challenge_to(net, request, CHALLENGE)
    assert results == []
    assert challenge_to(net, request, CHALLENGE) == []
    assert [r.status for r in results] == [407]


def test_a_stale_nonce_gets_one_retry_on_top_of_the_answer():
    net = FakeNetwork()
    request, results = options(net)
    stale = CHALLENGE + ", stale=true"
    for value in (CHALLENGE, stale):
        [request] = challenge_to(net, request, value)
    assert results == []
    assert challenge_to(net, request, stale) == []  # a second stale one is final
    assert [r.status for r in results] == [407]


def test_no_credentials_or_no_usable_challenge_means_no_retry():
    net = FakeNetwork()
    sent, results = options(net, credentials=None)
    assert challenge_to(net, sent, CHALLENGE) == []
    assert [r.status for r in results] == [407]
    sent, results = options(net)
    assert challenge_to(net, sent, 'Digest realm="r", nonce="n", algorithm=SHA-999') == []
    assert [r.status for r in results] == [407]


def test_an_in_dialog_retry_takes_the_next_cseq_and_a_new_branch():
    net = FakeNetwork()
    invite = net.ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                "<sip:user1@sipx.test>")
    outgoing = net.ua.invite(invite, CREDS)
    [sent] = net.sent_messages()
    phone = FarEnd(sent)
    # only a dialog routed through the proxy answers its challenges
    net.deliver(phone.ok(record_route="<sip:127.0.0.1:5080;lr>"))
    dialog = outgoing.dialog
    dialog.ack()
    [ack] = net.sent_messages()
    assert ack.method == "ACK"
    bye = dialog.request("BYE")
    [first] = net.sent_messages()
    [retry] = challenge_to(net, first, 'Digest realm="sipx.test", nonce="xyz", qop="auth"',
                           status=401)
    assert retry.cseq == (first.cseq[0] + 1, "BYE")
    assert retry.headers.get("Via") != first.headers.get("Via")
    assert "branch=z9hG4bK" in retry.headers.get("Via")
    assert 'nonce="xyz"' in retry.headers.get("Authorization")
    assert retry.headers.values("Route") == first.headers.values("Route")
    assert dialog.local_seq == retry.cseq[0]
    info = dialog.request("INFO")
    [later] = net.sent_messages()
    assert later.cseq[0] == retry.cseq[0] + 1
    assert 'nonce="xyz"' in later.headers.get("Authorization")  # the dialog keeps it
    assert bye is not None and info is not None


def test_the_ack_for_a_failure_goes_where_the_invite_went():
    net = FakeNetwork()
    invite = net.ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                "<sip:user1@sipx.test>")
    net.ua.invite(invite)
    [sent] = net.sent_messages()
    net.deliver(answer(sent, 486, "Busy Here", "t9"))
    [ack] = net.sent_messages()
    assert (ack.method, ack.uri, ack.cseq) == ("ACK", sent.uri, (sent.cseq[0], "ACK"))
    for name in ("Via", "Route", "From", "Call-ID"):
        assert ack.headers.values(name) == sent.headers.values(name), name
    assert ack.to_tag == "t9" and ack.headers.get("Max-Forwards") == "70"


@pytest.mark.parametrize("body,expected", [
    (b"SIP/2.0 200 OK", (200, "OK", "SIP/2.0 200 OK")),
    (b"\r\n\r\nSIP/2.0 180 Ringing \t\r\nVia: x\r\n", (180, "Ringing", "SIP/2.0 180 Ringing")),
    (b"SIP/2.0 486 Busy Here\nContent-Length: 0\n", (486, "Busy Here", "SIP/2.0 486 Busy Here")),
    (b"SIP/2.0 603 Declined\r", (603, "Declined", "SIP/2.0 603 Declined")),
])
def test_sipfrag_status_lines(body, expected):
    assert parse_sipfrag(body) == expected


@pytest.mark.parametrize("body", [b"", b"\r\n", b"garbage", b"Via: SIP/2.0 200 OK"])
def test_a_body_that_is_no_sipfrag(body):
    assert parse_sipfrag(body) is None


def test_headers_count_and_copy():
    headers = Headers()
    headers.add("Via", "SIP/2.0/UDP a")
    headers.add("v", "SIP/2.0/UDP b")  # the compact form is the same header
    headers.add("Route", "<sip:p>")
    assert headers.count("VIA") == 2 and headers.count("Route") == 1
    assert headers.count("Contact") == 0
    copy = headers.copy()
    copy.add("Contact", "<sip:c>")
    assert headers.count("Contact") == 0 and copy.count("contact") == 1
    assert copy.values("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
