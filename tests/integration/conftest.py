"""Fixtures for tests that need real SIP peers: Kamailio as the proxy, sipp phones.

Every process a fixture starts is stopped when the test ends, pass or fail.
"""

from __future__ import annotations

import shutil

import pytest

from tests.integration.cluster import Cluster
from tests.integration.e2e import Setup
from tests.integration.peers import Kamailio, SippPhone, demo_aliases, demo_ha1s, free_port

_TOOLS = {"kamailio": "/usr/sbin/kamailio", "sipp": "/usr/bin/sipp"}


def _require(tool: str) -> None:
    if shutil.which(tool) is None and shutil.which(_TOOLS[tool]) is None:
        pytest.skip(f"{tool} is not installed")


@pytest.fixture
def phone_factory(tmp_path):
    """phone_factory(scenario, **SippPhone kwargs) -> a started SippPhone on a free port."""
    _require("sipp")
    phones: list[SippPhone] = []

    def make(scenario: str, port: int | None = None, **kwargs) -> SippPhone:
        phone = SippPhone(scenario, port or free_port(), tmp_path / "sipp", **kwargs)
        phones.append(phone)
        return phone.start()

    yield make
    for phone in phones:
        phone.stop()


@pytest.fixture
def kamailio_factory(tmp_path):
    """kamailio_factory(locations, controller, **Kamailio kwargs) -> a started Kamailio.

    Users default to the demo users (user1..user4 with pass1..pass4, aliases 201..204).
    """
    _require("kamailio")
    proxies: list[Kamailio] = []

    def make(locations: dict[str, str], controller: str, **kwargs) -> Kamailio:
        kwargs.setdefault("users", demo_ha1s())
        kwargs.setdefault("aliases", demo_aliases())
        proxy = Kamailio(tmp_path / "kamailio", kwargs.pop("port", None) or free_port(),
                         locations=locations, controller=controller, **kwargs)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def setup(tmp_path, kamailio_factory, phone_factory):
    """setup(**Setup kwargs) -> Kamailio, phones and a started daemon, all stopped at the end."""
    made = []

    def make(**kwargs) -> Setup:
        s = Setup(tmp_path, kamailio_factory, phone_factory, **kwargs)
        s.daemon.start()
        made.append(s)
        return s
    yield make
    for s in made:
        s.daemon.stop()


@pytest.fixture
def cluster(tmp_path, kamailio_factory, phone_factory):
    """cluster(**Cluster kwargs) -> redis-server, Kamailio, phones and started daemons
    sharing their calls (tests/integration/cluster.py), all stopped at the end."""
    made = []

    def make(**kwargs) -> Cluster:
        c = Cluster(tmp_path, kamailio_factory, phone_factory, **kwargs)
        made.append(c)
        return c.start()
    yield make
    for c in made:
        c.stop()
