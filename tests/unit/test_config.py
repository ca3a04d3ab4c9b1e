"""sipxcc.config: the INI file and its one-line errors."""

import ipaddress
import os
import textwrap

import pytest

from sipxcc.config import ConfigError, load_config

MINIMAL = """
[sip]
domain = sipx.test
proxy = sip:127.0.0.1:5080;lr
[users]
directory = users.xml
"""


def write(tmp_path, text, name="sipxcc.ini"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def error_of(path, overrides=None):
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides or {})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(path + ": ")
    return message


def test_minimal_file_gets_the_documented_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.sip.domain == "sipx.test"
    assert config.sip.realm == "sipx.test"
    assert config.sip.address == "127.0.0.1"
    assert config.sip.port == 6050
    assert config.sip.transports == ("udp", "tcp")
    assert config.sip.contact_user == "callcontroller"
    assert (config.http.https, config.http.http, config.http.address) == (6666, 0, "0.0.0.0")
    assert config.http.trusted == (ipaddress.ip_network("127.0.0.1"),
                                   ipaddress.ip_network("::1"))
    assert (config.tls.certificate, config.tls.key) == (None, None)
    assert config.users.agents == frozenset()
    assert config.calls.timeout == 180
    assert config.calls.result_cache_time == 180
    assert config.calls.max_calls == 2000
    assert config.calls.max_calls_per_agent == 10
    assert config.calls.callback_hosts == ()
    assert config.daemon.state_dir == "/var/lib/sipxcc"
    assert config.daemon.log_level == "info"


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    path = write(tmp_path, MINIMAL + "[daemon]\nstate_dir = ../state\n")
    config = load_config(path)
    assert config.users.directory == str(tmp_path / "users.xml")
    assert config.daemon.state_dir == os.path.normpath(str(tmp_path / ".." / "state"))
    assert config.source == path


def test_overrides_win_over_the_file(tmp_path):
    config = load_config(write(tmp_path, MINIMAL),
                         {"sip.port": "5070", "http.https": "0", "users.agents": "user3 user4"})
    assert config.sip.port == 5070
    assert config.http.https == 0
    assert config.users.agents == frozenset({"user3", "user4"})


def test_the_shipped_example_configs_load(project_root):
    for name in ("sipxcc.ini", "demo.ini"):
        config = load_config(str(project_root / "etc" / name))
        assert config.sip.domain
    demo = load_config(str(project_root / "etc" / "demo.ini"))
    assert demo.users.directory == str(project_root / "etc" / "validusers.xml")
    assert demo.daemon.state_dir == str(project_root / ".demo")
    assert demo.users.agents == frozenset({"user3"})


@pytest.mark.parametrize("extra, key, problem", [
    ("[sip]\nport = 0\n", "sip.port", "out of range"),
    ("[sip]\nport = 65536\n", "sip.port", "out of range"),
    ("[sip]\nport = five\n", "sip.port", "not an integer"),
    ("[http]\nhttps = -1\n", "http.https", "out of range"),
    ("[http]\naddress = localhost\n", "http.address", "not an IPv4 or IPv6 address"),
    ("[http]\ntrusted = 10.0.0.0/33\n", "http.trusted", "not an address or CIDR"),
    ("[http]\ntrusted = 10.0.0.1/8\n", "http.trusted", "host bits set"),
    ("[http]\ntrusted = 127.0.0.1 bogus\n", "http.trusted", "'bogus'"),
    ("[sip]\ntransports = udp sctp\n", "sip.transports", "unknown transport 'sctp'"),
    ("[sip]\ntransports =\n", "sip.transports", "at least one"),
    ("[sip]\nproxy = 127.0.0.1\n", "sip.proxy", "not a sip: or sips: URI"),
    ("[calls]\nmax_calls = 0\n", "calls.max_calls", "out of range"),
    ("[calls]\ncallback_hosts = bad_host!\n", "calls.callback_hosts", "not a host name"),
    ("[daemon]\nlog_level = chatty\n", "daemon.log_level", "not one of"),
    ("[sip]\ncontact_user = a b\n", "sip.contact_user", "not a valid SIP user part"),
    ("[sip]\ncolour = blue\n", "sip.colour", "unknown key"),
    ("[tls]\ncertificate = cert.pem\n", "tls.key", "must be set together"),
])
def test_bad_values_name_the_key_and_the_problem(tmp_path, extra, key, problem):
    text = _merge(MINIMAL, extra)
    message = error_of(write(tmp_path, text))
    assert f": {key}: " in message
    assert problem in message


def test_unknown_section(tmp_path):
    message = error_of(write(tmp_path, MINIMAL + "[media]\nport = 1\n"))
    assert "[media]: unknown section" in message


def test_default_section_is_not_magic(tmp_path):
    message = error_of(write(tmp_path, "[DEFAULT]\nport = 1\n" + MINIMAL))
    assert "[DEFAULT]: unknown section" in message


@pytest.mark.parametrize("missing", ["sip.domain", "sip.proxy", "users.directory"])
def test_missing_required_keys(tmp_path, missing):
    section, key = missing.split(".")
    lines = [line for line in MINIMAL.splitlines() if not line.startswith(key + " =")]
    message = error_of(write(tmp_path, "\n".join(lines) + "\n"))
    assert f": {missing}: required key is missing" in message


def test_unreadable_file(tmp_path):
    path = str(tmp_path / "absent.ini")
    assert "cannot read config file" in error_of(path)


def test_syntax_errors_give_the_line(tmp_path):
    assert "line 2" in error_of(write(tmp_path, "[sip]\nthis is not a key value line\n"))
    assert "[section] header" in error_of(write(tmp_path, "domain = x\n"))
    assert "set twice" in error_of(write(tmp_path, MINIMAL + "[http]\nhttp=1\nhttp=2\n"))


def test_bad_override_says_it_came_from_the_command_line(tmp_path):
    path = write(tmp_path, MINIMAL)
    message = error_of(path, {"sip.port": "x"})
    assert ": sip.port: " in message and "command line" in message
    assert ": sip.colour: unknown key" in error_of(path, {"sip.colour": "blue"})


@pytest.mark.parametrize("host, trusted", [
    ("127.0.0.1", True),
    ("::1", True),
    ("::ffff:127.0.0.1", True),
    ("10.1.2.3", True),
    ("::ffff:10.1.2.3", True),
    ("10.2.0.1", False),
    ("2001:db8::5", True),
    ("192.0.2.1", False),
    ("not an address", False),
    ("", False),
])
def test_is_trusted(tmp_path, host, trusted):
    text = _merge(MINIMAL, "[http]\ntrusted = 127.0.0.1 ::1 10.1.0.0/16 2001:db8::/32\n")
    assert load_config(write(tmp_path, text)).is_trusted(host) is trusted


def _merge(base, extra):
    """base with extra's keys set (replacing same-named keys), as one INI text."""
    sections: dict[str, dict[str, str]] = {}
    for text in (base, extra):
        current = None
        for line in textwrap.dedent(text).splitlines():
            if line.startswith("["):
                current = sections.setdefault(line, {})
            elif line.strip() and current is not None:
                current[line.split("=", 1)[0].strip()] = line
    return "".join(header + "\n" + "".join(line + "\n" for line in keys.values())
                   for header, keys in sections.items())
