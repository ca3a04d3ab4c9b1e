"""The SIP connection caps in the configuration: defaults, overrides, one-line errors, and
that the daemon's transport gets them."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

from sipxcc.calls.control import CallControl
from sipxcc.config import load_config
from tests.unit.test_config import MINIMAL, error_of, write


def test_the_caps_default_to_1000_and_64(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert (config.sip.max_connections, config.sip.max_connections_per_host) == (1000, 64)


def test_the_caps_come_from_the_file_and_the_command_line(tmp_path):
    path = write(tmp_path, MINIMAL.replace("[users]", "max_connections = 50\n[users]"))
    config = load_config(path, {"sip.max_connections_per_host": "5"})
    assert (config.sip.max_connections, config.sip.max_connections_per_host) == (50, 5)


def test_a_bad_cap_is_a_one_line_error_naming_the_key(tmp_path):
    path = write(tmp_path, MINIMAL.replace("[users]", "max_connections = 0\n[users]"))
    assert "sip.max_connections: 0 is out of range" in error_of(path)
    path = write(tmp_path, MINIMAL)
    message = error_of(path, {"sip.max_connections_per_host": "many"})
    assert "sip.max_connections_per_host: 'many' is not an integer" in message


def test_the_transport_gets_the_caps():
    control = CallControl(MemoryReactorClock(), domain="sipx.test", proxy="sip:127.0.0.1;lr",
                          address="127.0.0.1", port=6050, max_connections=7,
                          max_connections_per_host=3)
    limits = control.transport.limits
    assert (limits.total, limits.per_host) == (7, 3)
