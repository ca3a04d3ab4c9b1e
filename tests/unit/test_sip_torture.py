"""
RFC 4475 "SIP Torture Test Messages", §3.1.1 (valid) and §3.1.2 / §3.3 (invalid), typed in
(long ones shortened with repetition, as §2.3 does), plus RFC 5118 IPv6 cases. Long lines
are split with Python's backslash-newline string continuation (RFC 4475 §2.1's <allOneLine>).

Every message goes through parse_datagram and, one byte at a time, through StreamParser.
Framing-sensitive cases: "dblreq" (two messages on a stream, one in a datagram) and
"clerr" (on a stream a too-large Content-Length just waits for more bytes).
"""

import pytest

from sipxcc.sip.framing import StreamParser, parse_datagram
from sipxcc.sip.message import SIPParseError
from sipxcc.sip.uri import URI, Via, parse_address_list

SDP = (b"v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\n"
       b"t=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\n"
       b"a=rtpmap:31 LPC\r\n")


def build(head: str, body: bytes = b"") -> bytes:
    """CRLF line ends; '{CL}' becomes the body length in bytes."""
    head = head.strip("\n").replace("{CL}", str(len(body)))
    return head.replace("\n", "\r\n").encode("utf-8") + b"\r\n\r\n" + body


def stream_parse(data: bytes) -> list:
    messages = []
    parser = StreamParser(messages.append)
    for i in range(len(data)):
        parser.feed(data[i:i + 1])
    return messages


WSINV = build('''
INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : {CL}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33
''', SDP)

INTMETH = build('''
!interesting-Method0123456789_*+`.%indeed'~ \
sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,\
weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" \
<sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\
"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439";\
tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb
Content-Length: 0
''')

ESC01 = build('''
INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: {CL}
''', SDP)

ESCNULL = build('''
REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0
''')

ESC02 = build('''
RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209asdjf
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0
''')

LWSDISP = build('''
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0
''')

LONG = "longvalue" * 100
LONGREQ = build(f'''
INVITE sip:user@example.com SIP/2.0
To: "I have a user name of {LONG} {LONG}" <sip:{LONG}@example.com>
From: sip:caller@example.net;tag={LONG}
Call-ID: longreq.one{LONG}
CSeq: 3882340 INVITE
Max-Forwards: 70
''' + "\n".join(f"Via: SIP/2.0/TCP sip33.example.com;branch=z9hG4bK{i}{LONG}"
                for i in range(20)) + f'''
Route: {", ".join(f"<sip:{LONG}@example.net;lr>" for _ in range(10))}
Contact: <sip:amazinglylongcallername{LONG}@host5.example.net>
Content-Type: application/sdp
l: {{CL}}
''', SDP)

DBLREQ = build('''
REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKon23mdxjfasdf8
Content-Length: 0
''') + build('''
INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: {CL}
''', SDP)

SEMIURI = build('''
OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0
''')

TRANSPORTS = build('''
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0
''')

MPART_BODY = (b"--7a9cbec02ceef655\r\nContent-Type: application/sdp\r\n\r\n" + SDP
              + b"\r\n--7a9cbec02ceef655\r\nContent-Type: application/octet-stream\r\n"
              b"Content-Transfer-Encoding: binary\r\n\r\n"
              + bytes(range(256)) + b"\r\n\r\n\n\n\x00\xff\r\n--7a9cbec02ceef655--\r\n")
MPART01 = build('''
MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080;lr>
Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+\
813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeiv\
UhkMWYUA=
Contact: <sip:fluffy@127.0.0.1:5070>
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Date: Sat, 15 Oct 2005 04:44:56 GMT
User-Agent: SIPimp.org/0.2.5 (curses)
Content-Length: {CL}
''', MPART_BODY)

UNREASON = build('''
SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \
\u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442\u043e \
\u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: {CL}
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>
''', SDP)

NOREASON = build('''
SIP/2.0 100 \n\
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>
''')

ZEROMF = build('''
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=3ghsd41
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
Content-Length: 0
''')

INV2543 = build('''
INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.15
From: <sip:UserA@example.com>
To: <sip:UserB@example.com>
Call-ID: 010203040506@192.0.2.15
CSeq: 1 INVITE
Contact: <sip:UserA@192.0.2.15>
Content-Type: application/sdp
Content-Length: {CL}
''', SDP)

UNKSCM = build('''
OPTIONS nobodyKnowsThisScheme:totallyopaque-content SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.net;branch=z9hG4bKkdjuw39234
Content-Length: 0
''')

NOVELSC = build('''
OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.net;branch=z9hG4bKkdjuw39234
Content-Length: 0
''')

UNKSM2 = build('''
REGISTER sip:example.com SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: unksm2.daksdj@hyphenated-host.example.com
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0
''')

CPARAM01 = build('''
REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe
To: sip:watson@example.com
Call-ID: cparam01.70710@saturn.example.com
CSeq: 2 REGISTER
Contact: sip:+19725552222@gw1.example.net;unknownparam
l: 0
''')

CPARAM02 = build('''
REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=838293
To: sip:watson@example.com
Call-ID: cparam02.70710@saturn.example.com
CSeq: 3 REGISTER
Contact: <sip:+19725552222@gw1.example.net;unknownparam>
l: 0
''')

REGAUT01 = build('''
REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=87321hj23128
Max-Forwards: 8
Call-ID: regaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length:0
''')

BEXT01 = build('''
OPTIONS sip:user@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw
Content-Length: 0
''')

IPV6 = build('''
REGISTER sip:[2001:db8::10] SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=81x2
Via: SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111;received=[2001:db8::9:255];rport
Call-ID: SSG9559905523997077@hlau_4100
Max-Forwards: 70
Contact: "Caller" <sip:caller@[2001:db8::9:1]:5070>
CSeq: 98176 REGISTER
Content-Length: 0
''')


def test_wsinv_short_tortuous_invite():
    m = parse_datagram(WSINV)
    assert m.method == "INVITE"
    assert m.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert m.to_tag == "1918181833n"
    assert m.from_address.display == 'J Rosenberg \\"'
    assert m.from_tag == "98asjd8"
    assert m.headers.get("Max-Forwards") == "0068"
    assert m.cseq == (9, "INVITE")
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    vias = m.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239")]
    contact = parse_address_list(m.headers.get("Contact"))[0]
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    route = parse_address_list(m.headers.get("Route"))[0]
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert m.body == SDP


# sipxcc refuses a raw NUL anywhere in a message head (it never writes one, so it could
# not answer, ACK or relay such a message): the torture case is kept without its NUL.
INTMETH_NO_NUL = INTMETH.replace(b" NUL:\\\x00", b"")


def test_intmeth_with_its_escaped_nul_is_refused():
    with pytest.raises(SIPParseError, match="NUL"):
        parse_datagram(INTMETH)


def test_intmeth_wide_range_of_valid_characters():
    m = parse_datagram(INTMETH_NO_NUL)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq == (139122385, m.method)
    ruri = URI.parse(m.uri)
    assert ruri.host == "example.com"
    assert ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to_address.display == "BEL:\x07 DEL:\x7f"
    assert m.from_address.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.from_address.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert m.body == b""


def test_esc01_percent_escapes_kept_as_written():
    m = parse_datagram(ESC01)
    assert URI.parse(m.uri).user == "sips%3Auser%40example.com"
    assert m.to_address.uri.user == "%75se%72"
    assert m.from_address.uri.user == "I%20have%20spaces"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.headers.get("Content-Type") == "application/sdp"
    contact = parse_address_list(m.headers.get("m"))[0]
    assert contact.uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}


def test_escnull_escaped_nulls():
    m = parse_datagram(ESCNULL)
    assert m.to_address.uri.user == "null-%00-null"
    assert [str(a.uri) for v in m.headers.values("Contact") for a in parse_address_list(v)] \
        == ["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]


def test_esc02_percent_in_method_is_not_an_escape():
    m = parse_datagram(ESC02)
    assert m.method == "RE%47IST%45R"
    assert m.to_address.display == "%Z%45"
    assert len(m.headers.values("Contact")) == 2
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_no_space_before_angle():
    m = parse_datagram(LWSDISP)
    assert m.from_address.display == "caller"
    assert m.from_tag == "323"


def test_longreq_long_values():
    m = parse_datagram(LONGREQ)
    assert len(m.vias) == 20
    assert m.to_address.uri.user == LONG
    assert m.from_tag == LONG
    assert len(m.headers.values("Route")) == 10
    assert m.body == SDP


def test_dblreq_extra_octets_in_datagram_are_dropped():
    m = parse_datagram(DBLREQ)
    assert m.method == "REGISTER" and m.body == b""


def test_dblreq_on_a_stream_is_two_messages():
    assert [m.method for m in stream_parse(DBLREQ)] == ["REGISTER", "INVITE"]


def test_semiuri_semicolon_in_user_part():
    m = parse_datagram(SEMIURI)
    uri = URI.parse(m.uri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u%40example.net", "example.com", {})
    assert len(m.headers.values("Accept")) == 6


def test_transports_varied_and_unknown():
    m = parse_datagram(TRANSPORTS)
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_multipart_body_kept_exactly():
    m = parse_datagram(MPART01)
    assert m.body == MPART_BODY
    assert parse_datagram(m.to_bytes()).body == MPART_BODY


def test_unreason_utf8_reason_phrase():
    m = parse_datagram(UNREASON)
    assert m.status == 200
    assert m.reason.startswith("= 2**3 * 5**2 но")
    assert m.to_tag == "2229"


def test_noreason_empty_reason_phrase():
    m = parse_datagram(NOREASON)
    assert (m.status, m.reason) == (100, "")


def test_zeromf_inv2543_and_other_valid_messages():
    assert parse_datagram(ZEROMF).headers.get("Max-Forwards") == "0"
    old = parse_datagram(INV2543)
    assert (old.branch, old.from_tag, old.headers.get("Max-Forwards")) == (None, None, None)
    assert parse_datagram(UNKSCM).uri == "nobodyKnowsThisScheme:totallyopaque-content"
    assert parse_datagram(NOVELSC).uri == "soap.beep://192.0.2.103:3002"
    unk = parse_datagram(UNKSM2)
    assert (unk.to_address.uri.scheme, unk.to_address.uri.opaque) == ("isbn", "2983792873")
    assert str(unk.from_address.uri) == "http://www.example.com"
    c1 = parse_address_list(parse_datagram(CPARAM01).headers.get("Contact"))[0]
    assert (c1.params, c1.uri.params) == ({"unknownparam": None}, {})
    c2 = parse_address_list(parse_datagram(CPARAM02).headers.get("Contact"))[0]
    assert (c2.params, c2.uri.params) == ({}, {"unknownparam": None})
    reg = parse_datagram(REGAUT01)
    assert reg.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    ext = parse_datagram(BEXT01)
    assert ext.headers.values("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]


def test_ipv6_rfc5118():
    m = parse_datagram(IPV6)
    via = m.top_via
    assert (via.host, via.port, via.received, via.has_rport) == (
        "[2001:db8::9:1]", 5070, "[2001:db8::9:255]", True)
    assert URI.parse(m.uri).host == "[2001:db8::10]"
    contact = parse_address_list(m.headers.get("Contact"))[0]
    assert (contact.uri.host, contact.uri.port) == ("[2001:db8::9:1]", 5070)


VALID = [WSINV, INTMETH_NO_NUL, ESC01, ESCNULL, ESC02, LWSDISP, LONGREQ, SEMIURI, TRANSPORTS,
         MPART01, UNREASON, NOREASON, ZEROMF, INV2543, UNKSCM, NOVELSC, UNKSM2, CPARAM01,
         CPARAM02, REGAUT01, BEXT01, IPV6]


# LONGREQ's 34 KB head is over the stream head limit: test_sip_stream_limits.py
@pytest.mark.parametrize("data", [data for data in VALID if data is not LONGREQ])
def test_valid_messages_byte_by_byte_on_a_stream(data):
    [streamed] = stream_parse(data)
    direct = parse_datagram(data)
    assert streamed.first_line == direct.first_line
    assert streamed.headers.items() == direct.headers.items()
    assert streamed.body == direct.body


@pytest.mark.parametrize("data", VALID)
def test_valid_messages_round_trip(data):
    first = parse_datagram(data)
    again = parse_datagram(first.to_bytes())
    assert again.first_line == first.first_line
    assert again.headers.items() == first.headers.items()
    assert again.body == first.body
    assert again.to_bytes() == first.to_bytes()


# ---- invalid messages (RFC 4475 §3.1.2, §3.3) ----

BADINV01 = build('''
INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: {CL}
Content-Type: application/sdp
''', SDP)

CLERR = build('''
INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999
''', SDP)

NCL = build('''
INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999
''', SDP)

SCALAR02 = build('''
REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1000000000000000000000000000000000000000
Contact: <sip:user@host129.example.com>;expires=280297596632815
Content-Length: 0
''')

SCALARLG = build('''
SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0
''')

QUOTBAL = build('''
INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: {CL}
''', SDP)

COMMON = '''
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: {name}.1@192.0.2.1
CSeq: 1 {method}
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
Content-Length: 0
'''


def with_start(start: str, method: str = "INVITE", name: str = "x") -> bytes:
    return build(start + COMMON.format(name=name, method=method))


LTGTRURI = with_start("INVITE <sip:user@example.com> SIP/2.0")
LWSRURI = with_start("INVITE sip:user@example.com; lr SIP/2.0")
LWSSTART = with_start("INVITE  sip:user@example.com  SIP/2.0")
TRWS = with_start("OPTIONS sip:remote-target@example.com SIP/2.0  ", "OPTIONS")
ESCRURI = with_start("INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0")
MISMATCH01 = with_start("OPTIONS sip:user@example.com SIP/2.0", "INVITE")
MISMATCH02 = with_start("NEWMETHOD sip:user@example.com SIP/2.0", "INVITE")
BIGCODE = build('''
SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>
''')
BADASPEC = build('''
OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0
''')
BADDN = build('''
OPTIONS sip:t.watson@example.org SIP/2.0
Via: SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To: Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0
''')
BADVERS = build('''
OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0
''')
INSUF = build('''
INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: {CL}
''', SDP)
MULTI01 = build('''
INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: {CL}
Contact: <sip:caller@host36.example.net>
Max-Forwards: 5
''', SDP)
MCL01 = build('''
OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain
''', b"There's no way to know how many octets are supposed to be here.")

INVALID = {
    "badinv01": BADINV01, "clerr": CLERR, "ncl": NCL, "scalar02": SCALAR02,
    "scalarlg": SCALARLG, "quotbal": QUOTBAL, "ltgtruri": LTGTRURI, "lwsruri": LWSRURI,
    "lwsstart": LWSSTART, "trws": TRWS, "escruri": ESCRURI, "badaspec": BADASPEC,
    "baddn": BADDN, "badvers": BADVERS, "mismatch01": MISMATCH01, "mismatch02": MISMATCH02,
    "bigcode": BIGCODE, "insuf": INSUF, "multi01": MULTI01, "mcl01": MCL01,
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_is_rejected(name):
    with pytest.raises(SIPParseError):
        parse_datagram(INVALID[name])


@pytest.mark.parametrize("name", sorted(set(INVALID) - {"clerr"}))
def test_invalid_message_is_rejected_on_a_stream(name):
    with pytest.raises(SIPParseError):
        stream_parse(INVALID[name])


def test_clerr_on_a_stream_waits_for_the_missing_bytes():
    assert stream_parse(CLERR) == []


@pytest.mark.parametrize("name, answerable", [
    ("mismatch01", True), ("mismatch02", True), ("quotbal", True), ("scalar02", True),
    ("badvers", True), ("clerr", True), ("escruri", True), ("badinv01", False),
    ("insuf", False), ("bigcode", False), ("lwsstart", False)])
def test_partial_request_is_there_when_a_400_can_be_sent(name, answerable):
    with pytest.raises(SIPParseError) as info:
        parse_datagram(INVALID[name])
    assert (info.value.partial is not None) == answerable


def test_unknown_version_asks_for_505():
    with pytest.raises(SIPParseError) as info:
        parse_datagram(BADVERS)
    assert info.value.status == 505


def test_regbadct_unbracketed_uri_with_headers_is_rejected_when_used():
    m = parse_datagram(build('''
REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E
l: 0
'''))
    with pytest.raises(SIPParseError):
        parse_address_list(m.headers.get("Contact"))


def test_via_parse_errors_are_sip_parse_errors():
    with pytest.raises(SIPParseError):
        Via.parse("SIP/2.0/UDP 192.0.2.15;;")
