"""The REFER flow end to end against a scripted proxy and phone, on a Clock."""

from __future__ import annotations

import hashlib

from sipxcc.calls.call import CallRequest
from sipxcc.calls.context import FlowContext
from sipxcc.calls.refer import ReferFlow
from sipxcc.calls.registry import CallRegistry
from sipxcc.sip.uri import URI
from sipxcc.timers import SLACK
from sipxcc.users import User
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer

REALM = "sipx.test"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


USER1 = User("user1@sipx.test", "user1", ("201",), "User One", md5("user1:sipx.test:123"),
             md5("user1:sipx.test:pass1"))

CHALLENGE = 'Digest realm="sipx.test", nonce="abc123", qop="auth", algorithm=MD5'


def setup(**kw):
    net = FakeNetwork()
    ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
    registry = CallRegistry(net.clock, {"REFER": lambda call, end: ReferFlow(ctx, call, end)})
    request = CallRequest(USER1, "user1@sipx.test", "user2@sipx.test", **kw)
    call = registry.place(request)
    return net, registry, call


def lines(call):
    return [(e.method, e.status_line) for e in call.events]


def connect(net, call):
    """Drive the INVITE through a 407 round and an answer; returns (far end, REFER)."""
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 100, "Trying"))
    net.deliver(answer(invite, 407, "Proxy Authentication Required", "p1",
                       [("Proxy-Authenticate", CHALLENGE)]))
    ack, invite2 = net.sent_messages()
    assert ack.method == "ACK"
    phone = FarEnd(invite2)
    net.deliver(answer(invite2, 180, "Ringing", phone.tag))
    net.deliver(phone.ok(b"v=0\r\n"))
    ack2, refer = net.sent_messages()
    assert (ack2.method, refer.method) == ("ACK", "REFER")
    return invite, invite2, phone, refer


def test_first_invite_is_what_sipx_expects():
    net, registry, call = setup(subject="Sales", timeout=30)
    [invite] = net.sent_messages()
    uri = URI.parse(invite.uri)
    assert (uri.user, uri.host) == ("user1", "sipx.test")
    assert uri.params["sipx-noroute"] == "Voicemail"
    assert uri.params["sipx-userforward"] == "false"
    # the calling user is shown the called party (not in the directory here: its URI)
    assert invite.headers.get("From").startswith('<sip:user2@sipx.test>;tag=')
    assert invite.headers.get("P-Asserted-Identity") == "<sip:user2@sipx.test>"
    assert invite.headers.get("Route") == "<sip:127.0.0.1:5080;lr>"
    assert invite.headers.get("Contact") == "<sip:callcontroller@127.0.0.1:6050>"
    assert invite.headers.get("Subject") == "Sales"
    assert b"a=recvonly" in invite.body and b"c=IN IP4 127.0.0.1" in invite.body


def test_happy_path_records_every_status_and_hangs_up_on_final_sipfrag():
    net, registry, call = setup()
    invite, invite2, phone, refer = connect(net, call)
    auth = invite2.headers.get("Proxy-Authorization")
    assert 'username="user1"' in auth and 'nonce="abc123"' in auth
    assert invite2.cseq[0] == invite.cseq[0] + 1
    assert refer.headers.get("Refer-To") == "<sip:user2@sipx.test>"
    assert refer.headers.get("Referred-By") == "<sip:user1@sipx.test>"
    # no Record-Route: the REFER goes straight to the phone's Contact, without credentials
    # (tests/unit/test_sip_credentials.py has the dialog routed through the proxy)
    assert "Proxy-Authorization" not in refer.headers
    net.deliver(answer(refer, 202, "Accepted"))
    assert call.state == "transferring"
    sent = []
    for frag, sub in ((b"SIP/2.0 100 Trying\r\n", "active"),
                      (b"SIP/2.0 200 OK\n", "terminated;reason=noresource")):
        notify = phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", sub),
                                          ("Content-Type", "message/sipfrag")], frag)
        net.deliver(notify)
        sent += net.sent_messages()
        [ok] = [m for m in sent if m.cseq == notify.cseq]
        assert ok.status == 200
    bye = [m for m in sent if getattr(m, "method", None) == "BYE"]
    assert len(bye) == 1
    assert bye[0].headers.get("Reason").startswith("SIP;cause=200")
    net.deliver(answer(bye[0], 200, "OK"))
    assert call.ended and call.state == "ended"
    assert lines(call) == [
        ("INVITE", "SIP/2.0 100 Trying"),
        ("INVITE", "SIP/2.0 407 Proxy Authentication Required"),
        ("INVITE", "SIP/2.0 180 Ringing"),
        ("INVITE", "SIP/2.0 200 OK"),
        ("REFER", "SIP/2.0 202 Accepted"),
        ("NOTIFY", "SIP/2.0 100 Trying"),
        ("NOTIFY", "SIP/2.0 200 OK"),
    ]
    assert registry.active_count == 0
    net.clock.advance(180 + SLACK)
    assert registry.lookup(call.key) is None


def test_busy_target_gives_bye_with_reason_486():
    net, registry, call = setup()
    _, _, phone, refer = connect(net, call)
    net.deliver(answer(refer, 202, "Accepted"))
    net.deliver(phone.request("NOTIFY", [("Event", "refer"),
                                         ("Subscription-State", "terminated"),
                                         ("Content-Type", "message/sipfrag;version=2.0")],
                              b"SIP/2.0 486 Busy Here\r\n"))
    bye = [m for m in net.sent_messages() if getattr(m, "method", None) == "BYE"]
    assert bye[0].headers.get("Reason") == 'SIP;cause=486;text="Busy Here"'


def test_caller_no_answer_is_cancelled_at_timeout():
    net, registry, call = setup(timeout=20)
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 180, "Ringing", "t1"))
    net.clock.advance(20)
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL" and cancel.cseq == (invite.cseq[0], "CANCEL")
    net.deliver(answer(cancel, 200, "OK", "t1"))
    net.deliver(answer(invite, 487, "Request Terminated", "t1"))
    [ack] = net.sent_messages()
    assert ack.method == "ACK"
    assert lines(call)[-1] == ("INVITE", "SIP/2.0 487 Request Terminated")
    assert (call.ended, call.state) == (True, "failed")


def test_phone_hangs_up_first():
    net, registry, call = setup()
    _, _, phone, refer = connect(net, call)
    net.deliver(answer(refer, 202, "Accepted"))
    net.deliver(phone.request("BYE"))
    [ok] = net.sent_messages()
    assert (ok.status, ok.cseq[1]) == (200, "BYE")
    assert (call.ended, call.state) == (True, "ended")


def test_refer_rejected_hangs_up():
    net, registry, call = setup()
    _, _, phone, refer = connect(net, call)
    net.deliver(answer(refer, 603, "Declined"))
    [bye] = net.sent_messages()
    assert bye.method == "BYE" and "cause=603" in bye.headers.get("Reason")


def test_no_response_at_all_times_out_after_timer_b():
    net, registry, call = setup()
    [invite] = net.sent_messages()
    net.clock.advance(0.5)
    net.clock.advance(1.0)
    assert [m.method for m in net.sent_messages()] == ["INVITE", "INVITE"]
    net.clock.advance(32)
    assert call.ended and lines(call) == [("INVITE", "SIP/2.0 408 Request Timeout")]


def test_forged_in_dialog_requests_change_nothing():
    net, registry, call = setup()
    _, _, phone, refer = connect(net, call)
    net.deliver(answer(refer, 202, "Accepted"))
    before = list(call.events)
    # the right dialog, from an address that is neither the proxy nor the phone
    notify = phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", "terminated"),
                                      ("Content-Type", "message/sipfrag")], b"SIP/2.0 200 OK\r\n")
    net.deliver(notify, ("192.0.2.66", 5060))
    # a wrong tag, from the proxy's address
    bye = phone.request("BYE")
    bye.headers.set("To", bye.headers.get("To").rsplit(";tag=", 1)[0] + ";tag=forged")
    net.deliver(bye)
    assert [m.status for m in net.sent_messages()] == [403, 481]
    assert call.events == before and call.state == "transferring"


def test_a_second_forked_2xx_is_acked_and_hung_up():
    net, registry, call = setup()
    [invite] = net.sent_messages()
    phone, fork = FarEnd(invite), FarEnd(invite, "<sip:user1@127.0.0.1:5072>")
    net.deliver(phone.ok(b"v=0\r\n"))
    ack, refer = net.sent_messages()
    net.deliver(fork.ok(b"v=0\r\n"))
    fork_ack, fork_bye = net.sent_messages()
    assert (fork_ack.method, fork_bye.method) == ("ACK", "BYE")
    assert fork_ack.to_tag == fork_bye.to_tag == fork.tag != phone.tag
    assert fork_bye.uri == "sip:user1@127.0.0.1:5072"
    net.deliver(phone.ok(b"v=0\r\n"))  # a retransmission of the first 2xx: ACKed again
    [again] = net.sent_messages()
    assert again.method == "ACK" and again.to_bytes() == ack.to_bytes()
    assert call.state == "connected"


def test_a_duplicated_provisional_response_is_recorded_once():
    net, registry, call = setup()
    [invite] = net.sent_messages()
    ringing = answer(invite, 180, "Ringing", "t1")
    net.deliver(ringing)
    net.deliver(ringing)
    net.deliver(answer(invite, 180, "Ringing", "t2"))  # another fork rings: a new line
    assert lines(call) == [("INVITE", "SIP/2.0 180 Ringing")] * 2


def test_a_finished_call_leaves_no_reference_cycle_behind():
    """Everything a call used is freed by reference counting, without the cyclic GC."""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        net, registry, call = setup()
        flow = weakref.ref(call.flow)
        invite, invite2, phone, refer = connect(net, call)
        outgoing, dialog = weakref.ref(call.flow.outgoing), weakref.ref(call.flow.dialog)
        transactions = [weakref.ref(t) for t in net.ua.transactions.clients.values()]
        net.deliver(answer(refer, 202, "Accepted"))
        net.deliver(phone.request("NOTIFY", [("Event", "refer"),
                                             ("Subscription-State", "terminated"),
                                             ("Content-Type", "message/sipfrag")],
                                  b"SIP/2.0 200 OK\r\n"))
        [bye] = [m for m in net.sent_messages() if getattr(m, "method", None) == "BYE"]
        net.deliver(answer(bye, 200, "OK"))
        del invite, invite2, phone, refer, bye
        net.clock.advance(200)  # every transaction timer and the retention
        assert call.ended and registry.get(call.id) is None
        assert not net.ua.transactions.clients and not net.ua.transactions.servers
        assert not net.ua.dialogs
        leaked = [name for name, ref in [("flow", flow), ("outgoing", outgoing),
                                         ("dialog", dialog)] + [("txn", t) for t in transactions]
                  if ref() is not None]
        assert leaked == []
    finally:
        gc.enable()
