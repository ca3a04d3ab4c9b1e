"""
Text we do not write ourselves, on its way into SIP messages and logs: display names and
names from the sipX user directory, and a peer's SDP quoted in errors and Warning headers.
"""

from __future__ import annotations

import re

import pytest

from sipxcc.calls.sdp import MAX_SHOWN, SessionDescription
from sipxcc.users import MAX_DISPLAY_NAME, DirectoryError, parse_directory
from tests.unit.test_invite_flow import SDP_TYPE, Connected

NS = "http://www.sipfoundry.org/sipX/schema/xml/validusers-00-00"


def directory(tmp_path, user_xml: str):
    path = tmp_path / "validusers.xml"
    path.write_text(f'<?xml version="1.0"?><validusers xmlns="{NS}">{user_xml}</validusers>')
    return parse_directory(str(path))


def user(identity="user1@sipx.test", name="user1", display="", aliases=()) -> str:
    alias_xml = "".join(f"<alias>{alias}</alias>" for alias in aliases)
    return (f"<user><identity>{identity}</identity><userName>{name}</userName>"
            f"<aliases>{alias_xml}</aliases><displayName>{display}</displayName></user>")


@pytest.mark.parametrize("display, cleaned", [
    ("Evil&#13;&#10;X-Injected: yes", "Evil X-Injected: yes"),
    ("A&#9;&#9;B\u2028\u2028C", "A B C"),
    ("&#x7f;&#x85;Bob\u202e&#13;", "Bob"),
    ('Say "hi" \\o/', 'Say "hi" \\o/'),
    ("&#13;&#10;", None),
    ("Ünïcödé 名前", "Ünïcödé 名前"),
])
def test_display_names_are_cleaned_of_control_characters(tmp_path, display, cleaned):
    [loaded] = directory(tmp_path, user(display=display))
    assert loaded.display_name == cleaned


def test_display_names_are_bounded(tmp_path):
    [loaded] = directory(tmp_path, user(display="x" * 10000))
    assert loaded.display_name == "x" * MAX_DISPLAY_NAME


def test_aliases_with_white_space_or_controls_are_left_out(tmp_path):
    [loaded] = directory(tmp_path, user(aliases=("201", "2&#13;&#10;02", "20 3", "204")))
    assert loaded.aliases == ("201", "204")


@pytest.mark.parametrize("name", ["user&#10;1", "user 1", "user&#x85;1"])
def test_a_user_name_with_white_space_or_controls_makes_the_directory_unusable(tmp_path,
                                                                               name):
    with pytest.raises(DirectoryError, match="white space or control characters"):
        directory(tmp_path, user(name=name))


@pytest.mark.parametrize("identity", [
    "user1@sipx.test&#13;&#10;X-Injected: yes", "user 1@sipx.test", "user1",
    "user1@[fe80::1%eth0]", "us&lt;er1@sipx.test", "user1@sipx.test&gt;", "@sipx.test",
    '"user1"@sipx.test', "user1@sipx.test:port",
])
def test_an_identity_outside_sip_grammar_makes_the_directory_unusable(tmp_path, identity):
    with pytest.raises(DirectoryError, match="not user@host"):
        directory(tmp_path, user(identity=identity))


@pytest.mark.parametrize("identity", [
    "user1@sipx.test", "~~id~media@sipx.test", "+4930%41@192.0.2.1:5060",
    "user1@[2001:db8::1]",
])
def test_sip_identities_are_accepted(tmp_path, identity):
    [loaded] = directory(tmp_path, user(identity=identity))
    assert loaded.identity == identity


EVIL_ORIGIN = 'o=evil" \\ \x00\x1b[31m' + "A" * 200


@pytest.mark.parametrize("body", [
    f"v=0\r\n{EVIL_ORIGIN}\r\n".encode(),
    f"v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\nm=audio x\x00\x1b{'B' * 200}\r\n".encode(),
    b"v=0\r\n\x00\x1b\"\\ not a line" + b"C" * 200 + b"\r\n",
])
def test_sdp_errors_quote_the_peer_bounded_and_printable(body):
    with pytest.raises(ValueError) as error:
        SessionDescription.parse(body)
    text = str(error.value)
    assert text.isprintable()
    assert len(text) <= 40 + MAX_SHOWN


def test_a_bad_sdp_is_refused_with_a_well_formed_warning():
    c = Connected()
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], f"v=0\r\n{EVIL_ORIGIN}\r\n".encode()))
    [refused] = c.sent()
    assert refused.status == 400
    warning = refused.headers.get("Warning")
    m = re.fullmatch(r'399 sipxcc "((?:[^"\\]|\\.)*)"', warning)
    assert m is not None, warning
    assert warning.isprintable() and len(warning) < 150
    assert re.sub(r"\\(.)", r"\1", m.group(1)).startswith('bad SDP origin line: o=evil" \\ ??')
