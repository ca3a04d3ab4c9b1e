"""The calls.* keys that bound retention and status callbacks, and the ringback keys."""

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


def write(tmp_path, extra=""):
    path = tmp_path / "sipxcc.ini"
    path.write_text(textwrap.dedent(MINIMAL) + textwrap.dedent(extra))
    return str(path)


def test_the_retention_and_callback_bounds_have_documented_defaults(tmp_path):
    calls = load_config(write(tmp_path)).calls
    assert (calls.max_retained, calls.max_retained_per_owner) == (100_000, 1000)
    assert calls.max_result_cache_time == 86400
    assert calls.callback_ports == (80, 443)


def test_the_bounds_can_be_set(tmp_path):
    calls = load_config(write(tmp_path, """
        [calls]
        max_retained = 5000
        max_retained_per_owner = 50
        max_result_cache_time = 600
        callback_ports = 443, 8443 443
        """)).calls
    assert (calls.max_retained, calls.max_retained_per_owner) == (5000, 50)
    assert (calls.max_result_cache_time, calls.callback_ports) == (600, (443, 8443))


@pytest.mark.parametrize("extra, problem", [
    ("max_retained = 0", "calls.max_retained: 0 is out of range 1..10000000"),
    ("max_retained_per_owner = -1", "calls.max_retained_per_owner: -1 is out of range"),
    ("max_result_cache_time = 86401", "calls.max_result_cache_time: 86401 is out of range"),
    ("callback_ports = 80 http", "calls.callback_ports: 'http' is not an integer"),
    ("callback_ports = 0", "calls.callback_ports: 0 is out of range 1..65535"),
    ("max_result_cache_time = 60",
     "calls.result_cache_time: 180 is above calls.max_result_cache_time (60)"),
])
def test_bad_bounds_stop_start_up_with_one_line(tmp_path, extra, problem):
    path = write(tmp_path, "[calls]\n" + extra + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_the_ringback_keys_have_documented_defaults_and_can_be_set(tmp_path):
    ringback = load_config(write(tmp_path)).ringback
    assert (ringback.max_streams, ringback.ports) == (100, (24000, 24199))
    assert (ringback.delay, ringback.tone) == (1, "us")
    ringback = load_config(write(tmp_path, """
        [ringback]
        max_streams = 0
        ports = 40000 - 40009
        delay = 0
        tone = EU
        """)).ringback
    assert (ringback.max_streams, ringback.ports, ringback.delay, ringback.tone) == \
        (0, (40000, 40009), 0, "eu")


@pytest.mark.parametrize("extra, problem", [
    ("ports = 24000", "ringback.ports: '24000' is not a port range low-high"),
    ("ports = 24000-24000", "ringback.ports: '24000-24000': the range must hold at least two"),
    ("ports = 24010-24000", "ringback.ports: '24010-24000': the range must hold at least two"),
    ("ports = 80-200", "ringback.ports: 80 is out of range 1024..65535"),
    ("ports = 24000-65536", "ringback.ports: 65536 is out of range 1024..65535"),
    ("ports = a-b", "ringback.ports: 'a' is not an integer"),
    ("tone = mars", "ringback.tone: 'mars' is not one of us, eu, uk"),
    ("delay = 61", "ringback.delay: 61 is out of range 0..60"),
    ("max_streams = -1", "ringback.max_streams: -1 is out of range 0..10000"),
    ("ports = 24000-24009\nmax_streams = 6",
     "ringback.max_streams: 6 is above the 5 streams ringback.ports (24000-24009) holds"),
])
def test_bad_ringback_keys_stop_start_up_with_one_line(tmp_path, extra, problem):
    path = write(tmp_path, "[ringback]\n" + extra + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert problem in str(caught.value) and "\n" not in str(caught.value)
