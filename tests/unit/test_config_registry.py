"""The [registry] section: memory by default, redis with a URL and a node name."""

from __future__ import annotations

import pytest

from sipxcc.config import ConfigError, RegistryConfig, load_config

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
    ("node_id = pbx 1", "registry.node_id"),
])
def test_bad_registry_values_are_refused_naming_the_key(tmp_path, line, named):
    with pytest.raises(ConfigError, match=named):
        load(tmp_path, f"[registry]\n{line}\n")


def test_a_redis_registry_is_refused_at_start_with_one_line_until_the_web_layer_uses_it(
        tmp_path):
    from sipxcc.tap import StartupError, build_service
    config = load(tmp_path, "[registry]\nbackend = redis\n")
    with pytest.raises(StartupError, match="registry.backend: 'redis' is not served"):
        build_service(config, reactor=None)
