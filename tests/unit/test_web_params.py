"""Parameter validation: every value that reaches a SIP message follows the SIP grammar."""

from __future__ import annotations

import pytest

from sipxcc.web import params
from sipxcc.web.params import BadParameter, Query

INJECTIONS = ["\r", "\n", "\r\nX-Evil: 1", "<", ">", '"', " ", ";", "?", "\x00", ",",
              "%0", "%zz"]


def parse(args: dict[str, str], calling="user1", called="user2"):
    encoded = {k.encode(): [v.encode()] for k, v in args.items()}
    return params.parse_call_parameters(
        Query(encoded), calling, called, domain="sipx.test", default_timeout=180,
        default_cache_time=180, callback_hosts=("hooks.example",))


def rejected(args: dict[str, str], calling="user1", called="user2") -> str:
    with pytest.raises(BadParameter) as caught:
        parse(args, calling, called)
    return str(caught.value)


def test_defaults():
    wanted = parse({})
    assert (wanted.agent, wanted.calling, wanted.called) == (
        "user1", "user1@sipx.test", "user2@sipx.test")
    assert (wanted.method, wanted.action, wanted.timeout, wanted.result_cache_time) == (
        "REFER", "call", 180, 180)
    assert wanted.subject is wanted.confpin is wanted.target is wanted.status_callback is None
    assert not wanted.forwarding_allowed and not wanted.auto_answer


def test_every_parameter_parsed():
    wanted = parse({"agent": "user3", "sipMethod": "invite", "action": "transfer",
                    "target": "+4930123@[2001:db8::1]:5080", "timeout": "30",
                    "resultCacheTime": "0", "subject": "Café call", "confpin": "12*#",
                    "isForwardingAllowed": "TRUE", "autoAnswer": "True",
                    "statusCallback": "https://hooks.example:8443/cb?x=1"})
    assert wanted.agent == "user3" and wanted.method == "INVITE"
    assert wanted.action == "transfer" and wanted.target == "+4930123@[2001:db8::1]:5080"
    assert (wanted.timeout, wanted.result_cache_time) == (30, 0)
    assert wanted.subject == "Café call" and wanted.confpin == "12*#"
    assert wanted.forwarding_allowed and wanted.auto_answer
    assert wanted.status_callback == "https://hooks.example:8443/cb?x=1"


def test_users_with_hosts_keep_them():
    wanted = parse({}, calling="201@10.0.0.1", called="bob@pbx.example.com")
    assert (wanted.calling, wanted.called) == ("201@10.0.0.1", "bob@pbx.example.com")
    assert wanted.agent == "201@10.0.0.1"  # the agent defaults to callingUser as typed


def test_boolean_is_java_parse_boolean():
    assert not parse({"isForwardingAllowed": "yes"}).forwarding_allowed
    assert not parse({"autoAnswer": "1"}).auto_answer


@pytest.mark.parametrize("name", ["agent", "target"])
@pytest.mark.parametrize("bad", INJECTIONS)
def test_injection_in_user_parameters(name, bad):
    assert name in rejected({name: "user" + bad + "x"})


@pytest.mark.parametrize("position", ["callingUser", "calledUser"])
@pytest.mark.parametrize("bad", INJECTIONS + ["a@", "@host", "a@b@c", "a@-bad-", "a@1.2.3.999",
                                              "a@[::zz]", "a@host:99999", ""])
def test_injection_in_path_users(position, bad):
    users = {"callingUser": "user1", "calledUser": "user2"}
    users[position] = bad if "@" in bad or not bad else "user" + bad
    text = rejected({"agent": "user3"}, users["callingUser"], users["calledUser"])
    assert position in text


@pytest.mark.parametrize("bad", ["\r\nX: y", "a\nb", "nul\x00", "bell\x07", "del\x7f",
                                 "x" * 257])
def test_subject_rejects_control_characters(bad):
    assert "subject" in rejected({"subject": bad})


@pytest.mark.parametrize("bad", ["12a", "1;2", "1?x", "1 2", "<1>", "1" * 33, "1\r\n"])
def test_confpin_digits_only(bad):
    assert "confpin" in rejected({"confpin": bad})


@pytest.mark.parametrize("name,bad", [
    ("timeout", "abc"), ("timeout", "-1"), ("timeout", "0"), ("timeout", "86401"),
    ("timeout", "1.5"), ("timeout", ""), ("timeout", "99999999999"),
    ("resultCacheTime", "x"), ("resultCacheTime", "-1"), ("resultCacheTime", "86401"),
    ("sipMethod", "BYE"), ("sipMethod", ""), ("action", "Call"), ("action", "hangup"),
])
def test_bad_values_named_in_the_error(name, bad):
    assert rejected({name: bad}) == f"Bad parameter {name} = {bad}"


@pytest.mark.parametrize("bad", ["ftp://hooks.example/x", "https://evil.example/x",
                                 "hooks.example/x", "https://user:pw@hooks.example/",
                                 "https://hooks.example:99999/", "http://hooks.example/ a"])
def test_status_callback_limited_to_allowed_hosts(bad):
    assert "statusCallback" in rejected({"statusCallback": bad})


def test_first_occurrence_wins_and_names_are_case_sensitive():
    query = Query({b"timeout": [b"30", b"abc"], b"Timeout": [b"x"]})
    wanted = params.parse_call_parameters(query, "user1", "user2", domain="sipx.test",
                                          default_timeout=180, default_cache_time=180,
                                          callback_hosts=())
    assert wanted.timeout == 30


def test_value_that_is_not_utf8_is_rejected():
    with pytest.raises(BadParameter, match="subject"):
        Query({b"subject": [b"\xff\xfe"]}).get("subject")


def test_error_text_escapes_control_characters():
    assert rejected({"agent": "a\r\nb"}) == "Bad parameter agent = a\\x0d\\x0ab"


def test_limit():
    assert params.parse_limit(Query({})) == 50
    assert params.parse_limit(Query({b"limit": [b"500"]})) == 500
    with pytest.raises(BadParameter, match="limit"):
        params.parse_limit(Query({b"limit": [b"501"]}))
