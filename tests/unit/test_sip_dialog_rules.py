"""RFC 3261 §12 dialog rules as the far end sees them: route set and Contact in our requests,
CSeq order of theirs, target refresh, and a dialog no flow listens to."""

from __future__ import annotations

from sipxcc.sip.digest import DigestCredentials
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer


def dialog_up(record_route=None, credentials=None):
    net = FakeNetwork()
    invite = net.ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                "<sip:user1@sipx.test>")
    outgoing = net.ua.invite(invite, credentials)
    [sent] = net.sent_messages()
    phone = FarEnd(sent)
    net.deliver(phone.ok(record_route=record_route))
    return net, outgoing.dialog, phone


def test_in_dialog_requests_follow_the_route_set_to_the_contact():
    net, dialog, phone = dialog_up("<sip:192.0.2.2;lr>, <sip:192.0.2.1;lr>")
    dialog.request("INFO")
    [(info, addr)] = net.sent()
    assert addr == ("192.0.2.1", 5060)  # the first route
    assert info.uri == "sip:user1@127.0.0.1:5071"
    assert info.headers.values("Route") == ["<sip:192.0.2.1;lr>", "<sip:192.0.2.2;lr>"]
    assert info.headers.get("Max-Forwards") == "70"
    assert info.headers.get("Contact") is None  # INFO refreshes no target
    assert info.body == b""
    dialog.request("UPDATE")
    dialog.request("REFER", [("Refer-To", "<sip:x@sipx.test>")])
    update, refer = net.sent_messages()
    assert update.headers.get("Contact") == refer.headers.get("Contact") == (
        "<sip:callcontroller@127.0.0.1:6050>")
    assert [info.cseq[0] + 1, info.cseq[0] + 2] == [update.cseq[0], refer.cseq[0]]


def test_their_requests_must_not_go_back_in_cseq():
    net, dialog, phone = dialog_up()
    seen = []
    dialog.on_request = lambda request, txn: (seen.append(request.method),
                                              txn and txn.respond(200, "OK"))
    phone.cseq = 10
    net.deliver(phone.request("INFO"))  # CSeq 11
    net.deliver(phone.request("INFO"))  # CSeq 12
    phone.cseq = 10
    old = phone.request("INFO")  # CSeq 11 again, a new transaction
    old.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKold")
    net.deliver(old)
    sent = net.sent_messages()
    assert [m.status for m in sent] == [200, 200, 500]
    assert (sent[2].reason, sent[2].headers.get("Retry-After")) == ("Server Internal Error", "1")
    assert seen == ["INFO", "INFO"]
    same = phone.request("INFO")  # CSeq 11 < 12 still
    same.headers.set("CSeq", "12 INFO")
    same.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKsame")
    net.deliver(same)  # an equal CSeq is not "lower"
    assert [m.status for m in net.sent_messages()] == [200]


def test_a_target_refresh_moves_our_next_requests():
    net, dialog, phone = dialog_up()
    dialog.on_request = lambda request, txn: txn and txn.respond(200, "OK")
    phone.contact = "<sip:user1@192.0.2.77:5090>"
    net.deliver(phone.request("UPDATE", [("Contact", phone.contact)]))
    net.sent_messages()
    dialog.request("INFO")
    [info] = net.sent_messages()
    assert info.uri == "sip:user1@192.0.2.77:5090"
    net.deliver(phone.request("INFO", [("Contact", "<sip:elsewhere@192.0.2.99>")]))
    net.sent_messages()
    dialog.request("INFO")
    [again] = net.sent_messages()
    assert again.uri == "sip:user1@192.0.2.77:5090"  # INFO is no target refresh


def test_a_dialog_no_flow_listens_to_answers_bye_and_refuses_the_rest():
    net, dialog, phone = dialog_up()
    ended = []
    dialog.on_terminated = lambda: ended.append(True)
    net.deliver(phone.request("INFO"))
    [refused] = net.sent_messages()
    assert (refused.status, refused.reason) == (481, "Call/Transaction Does Not Exist")
    assert ended == [] and dialog.state == "confirmed"
    net.deliver(phone.request("BYE"))
    [ok] = net.sent_messages()
    assert (ok.status, ok.reason) == (200, "OK")
    assert ended == [True] and dialog.state == "terminated"
    assert dialog.on_request is None and dialog.on_terminated is None
    dialog.terminate()
    assert ended == [True]


def test_a_retransmitted_2xx_gets_the_same_ack_only_for_the_invite_it_answers():
    net, dialog, phone = dialog_up()
    ok = phone.ok()
    dialog.retransmitted_2xx(ok)
    assert net.sent_messages() == []  # nothing ACKed yet: nothing to repeat
    dialog.ack()
    [ack] = net.sent_messages()
    dialog.retransmitted_2xx(ok)
    [again] = net.sent_messages()
    assert again.to_bytes() == ack.to_bytes()
    other = phone.ok()
    other.headers.set("CSeq", f"{ok.cseq[0] + 5} INVITE")
    dialog.retransmitted_2xx(other)
    assert net.sent_messages() == []


def test_our_from_and_to_in_the_dialog_carry_only_the_dialog_tags():
    net, dialog, phone = dialog_up()
    dialog.request("INFO")
    [info] = net.sent_messages()
    assert info.headers.get("From").count("tag=") == 1
    assert info.headers.get("To") == f"<sip:user1@sipx.test>;tag={phone.tag}"


def test_in_dialog_requests_are_answered_to_the_dialogs_credentials():
    creds = DigestCredentials("agent", {"MD5": "0" * 32})
    # routed through the proxy: in-dialog requests straight to the far end's Contact
    # answer no challenge
    net, dialog, phone = dialog_up("<sip:127.0.0.1:5080;lr>", credentials=creds)
    progress = []
    outgoing = dialog.request("INFO", on_response=progress.append)
    [info] = net.sent_messages()
    net.deliver(answer(info, 100, "Trying"))
    net.deliver(answer(info, 401, "Unauthorized", None,
                       [("WWW-Authenticate", 'Digest realm="sipx.test", nonce="n9"')]))
    [retry] = net.sent_messages()
    assert 'username="agent"' in retry.headers.get("Authorization")
    assert [r.status for r in progress] == [100, 401]
    assert outgoing.credentials is creds
