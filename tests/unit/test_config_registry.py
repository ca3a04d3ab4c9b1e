"""The [registry] section: memory by default, redis with a URL and a node name."""

from __future__ import annotations

import socket

import pytest
from twisted.application.service import MultiService
from twisted.internet.task import Clock

from sipxcc.calls.redis_node import RedisNode
from sipxcc.calls.redis_store import RedisCallStore
from sipxcc.calls.registry import CallRegistry
from sipxcc.calls.store import MemoryCallStore
from sipxcc.config import ConfigError, RegistryConfig, load_config
from sipxcc.tap import StartupError, _build_idempotency_store, _build_store
from sipxcc.web.idempotency_redis import RedisIdempotencyStore

BASE = """
[sip]
domain = sipx.test
proxy = sip:127.0.0.1:5060;lr
[users]
directory = validusers.xml
"""


def load(tmp_path, extra=""):
    path = tmp_path / "sipxcc.ini"
    path.write_text(BASE + extra)
    return load_config(str(path))


def test_without_a_registry_section_calls_stay_in_memory(tmp_path):
    assert load(tmp_path).registry == RegistryConfig()
    assert load(tmp_path).registry.backend == "memory"


def test_a_redis_registry_is_read_with_its_url_and_node_name(tmp_path):
    config = load(tmp_path, "[registry]\nbackend = redis\n"
                  "redis_url = rediss://:secret@redis.example:6380/2\nnode_id = pbx1:6050\n")
    assert config.registry.backend == "redis"
    assert config.registry.redis_url == "rediss://:secret@redis.example:6380/2"
    assert config.registry.node_id == "pbx1:6050"


@pytest.mark.parametrize("line, named", [
    ("backend = postgres", "registry.backend"),
    ("redis_url = http://redis.example", "registry.redis_url"),
    ("redis_url = redis://host/db", "registry.redis_url"),
    ("redis_url = redis://host:abc/0", "registry.redis_url"),
    ("redis_url = redis://host:99999/0", "registry.redis_url"),
    ("redis_url = redis://host:0/0", "registry.redis_url"),
    ("redis_url = redis://[::1/0", "registry.redis_url"),
    ("node_id = pbx 1", "registry.node_id"),
    ("max_buffered_writes = 0", "registry.max_buffered_writes"),
    ("max_buffered_writes = lots", "registry.max_buffered_writes"),
    ("write_window_ms = -1", "registry.write_window_ms"),
    ("write_window_ms = 1001", "registry.write_window_ms"),
])
def test_bad_registry_values_are_refused_naming_the_key(tmp_path, line, named):
    """Refused when the configuration is read: the daemon does not start (no traceback
    later, when the node would connect)."""
    with pytest.raises(ConfigError, match=named):
        load(tmp_path, f"[registry]\n{line}\n")


def test_a_redis_url_with_an_ipv6_address_and_the_highest_port_is_accepted(tmp_path):
    config = load(tmp_path, "[registry]\nbackend = redis\nredis_url = redis://[::1]:65535/1\n")
    assert config.registry.redis_url == "redis://[::1]:65535/1"


class Control:
    """What building the store needs of the call control."""

    def __init__(self):
        self.registry = CallRegistry(Clock(), {})
        self.shutdown_timeout = 5.0


def test_the_memory_backend_is_this_process_registry(tmp_path):
    top = MultiService()
    control = Control()
    store = _build_store(load(tmp_path), control, Clock(), top)
    assert isinstance(store, MemoryCallStore) and store.registry is control.registry
    assert list(top) == []


def test_a_redis_backend_is_a_node_started_with_the_daemon(tmp_path):
    top = MultiService()
    control = Control()
    config = load(tmp_path, "[registry]\nbackend = redis\nredis_url = redis://10.9.8.7:6390/3\n")
    store = _build_store(config, control, Clock(), top)
    assert isinstance(store, RedisCallStore) and store.registry is control.registry
    [node] = list(top)
    assert isinstance(node, RedisNode) and node.store is store
    settings = node.connection.settings
    assert (settings.host, settings.port, settings.database) == ("10.9.8.7", 6390, 3)
    assert store.node_id == f"{socket.gethostname()}:{config.sip.port}"
    assert store.health()["state"] == "down"  # not started: not connected
    assert store.max_buffered == 50_000
    assert store.write_window == 0.015


def test_idempotency_keys_go_to_redis_through_the_nodes_connection_with_redis_only(tmp_path):
    config = load(tmp_path, "[registry]\nbackend = redis\n[calls]\nidempotency_ttl = 600\n")
    top = MultiService()
    store = _build_store(config, Control(), Clock(), top)
    keys = _build_idempotency_store(config, store, Clock())
    [node] = list(top)
    assert isinstance(keys, RedisIdempotencyStore)
    assert keys.redis is node.connection and (keys.ttl, keys.prefix) == (600, store.prefix)
    memory = load(tmp_path)
    assert _build_idempotency_store(memory, _build_store(memory, Control(), Clock(),
                                                          MultiService()), Clock()) is None


def test_the_write_buffer_bound_is_the_configured_one(tmp_path):
    config = load(tmp_path, "[registry]\nbackend = redis\nmax_buffered_writes = 7\n")
    store = _build_store(config, Control(), Clock(), MultiService())
    assert store.max_buffered == 7


def test_the_write_window_is_the_configured_one(tmp_path):
    config = load(tmp_path, "[registry]\nbackend = redis\nwrite_window_ms = 40\n")
    store = _build_store(config, Control(), Clock(), MultiService())
    assert store.write_window == 0.04


def test_the_redis_password_is_read_from_a_file_only_its_owner_may_read(tmp_path):
    secret = tmp_path / "redis.password"
    secret.write_text("s3cret pass\nignored\n")
    secret.chmod(0o600)
    config = load(tmp_path, f"[registry]\nbackend = redis\nredis_password_file = {secret}\n"
                  "node_id = pbx1:6050\n")
    top = MultiService()
    store = _build_store(config, Control(), Clock(), top)
    [node] = list(top)
    assert store.redis.password == "s3cret pass" and store.node_id == "pbx1:6050"
    assert node.subscription.password == "s3cret pass"
    secret.chmod(0o644)
    with pytest.raises(StartupError, match="registry.redis_password_file: .* readable by group"):
        _build_store(config, Control(), Clock(), MultiService())
    secret.write_text("\n")
    secret.chmod(0o600)
    with pytest.raises(StartupError, match="registry.redis_password_file: .* is empty"):
        _build_store(config, Control(), Clock(), MultiService())
    secret.unlink()
    with pytest.raises(StartupError, match="registry.redis_password_file: cannot read"):
        _build_store(config, Control(), Clock(), MultiService())
