"""Dialog edges (RFC 3261 §12, §13.2.2.4, §14): a 2xx resent before our ACK exists, an ACK
older than the phone's last request, and the remote target a re-INVITE's 2xx names."""

from __future__ import annotations

from tests.unit.sipfakes import FakeNetwork, FarEnd, answer, request_fields


def dialog_up():
    net = FakeNetwork()
    invite = net.ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                "<sip:user1@sipx.test>")
    outgoing = net.ua.invite(invite)
    [sent] = net.sent_messages()
    phone = FarEnd(sent)
    ok = phone.ok()
    net.deliver(ok)
    return net, outgoing.dialog, phone, ok


def test_a_2xx_resent_before_we_acked_it_gets_no_ack_yet():
    net, dialog, phone, ok = dialog_up()
    net.deliver(ok)
    assert net.sent_messages() == []
    dialog.ack()
    net.deliver(ok)
    assert [m.method for m in net.sent_messages()] == ["ACK", "ACK"]


def test_the_ack_of_their_re_invite_reaches_the_flow_after_a_later_request():
    net, dialog, phone, ok = dialog_up()
    dialog.ack()
    net.sent_messages()
    seen = []
    dialog.on_request = lambda request, txn: (seen.append(request.method),
                                              txn and txn.respond(200, "OK"))
    reinvite = phone.request("INVITE")  # CSeq 101
    info = phone.request("INFO")  # CSeq 102
    net.deliver(reinvite)
    net.deliver(info)
    ack = phone.request("ACK")
    ack.headers.set("CSeq", f"{reinvite.cseq[0]} ACK")
    net.deliver(ack)
    assert seen == ["INVITE", "INFO", "ACK"]
    assert [m.status for m in net.sent_messages()] == [200, 200]


def test_our_re_invites_2xx_names_the_remote_target_for_later_requests():
    net, dialog, phone, ok = dialog_up()
    dialog.ack()
    net.sent_messages()
    dialog.request("INVITE")
    [reinvite] = net.sent_messages()
    net.deliver(answer(reinvite, 200, "OK", phone.tag, [("Contact", "<sip:user1@192.0.2.9:5077>")]))
    dialog.request("INFO")
    [(info, addr)] = [(m, a) for m, a in net.sent() if m.method == "INFO"]
    assert info.uri == "sip:user1@192.0.2.9:5077" and addr == ("192.0.2.9", 5077)


def test_a_2xx_without_a_to_tag_makes_a_dialog_whose_requests_carry_no_to_tag():
    # RFC 3261 §12.1.2: a To without a tag is a null remote tag (RFC 2543 peers), and
    # §12.2.1.1: the To of a request in the dialog then carries no tag either
    net = FakeNetwork()
    invite = net.ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                "<sip:user1@sipx.test>")
    outgoing = net.ua.invite(invite)
    [sent] = net.sent_messages()
    net.deliver(answer(sent, 200, "OK", None, [("Contact", "<sip:user1@127.0.0.1:5071>")]))
    dialog = outgoing.dialog
    assert outgoing.final_status == 200 and dialog.remote_tag is None
    dialog.ack()
    dialog.request("BYE")
    sent_fields = [dict(request_fields(m)) for m in net.sent_messages()]
    assert [(f["CSeq"], f["Content-Length"]) for f in sent_fields] == [("1 ACK", "0"),
                                                                        ("2 BYE", "0")]
    assert [f["To"] for f in sent_fields] == ["<sip:user1@sipx.test>"] * 2
    assert [f["From"] for f in sent_fields] == [dict(request_fields(sent))["From"]] * 2
