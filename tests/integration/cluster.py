"""
Several daemons sharing their calls through one redis-server (``registry.backend =
redis``), behind one Kamailio with the demo users' phones: the `cluster` fixture in
conftest.py makes one. Node 0 is the controller Kamailio challenges (the other nodes'
requests pass without credentials); any node answers the REST interface for any call.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

from tests.integration.daemon import Daemon, free_ports, write_config
from tests.integration.redisserver import RedisServer

USERS = ("user1", "user2", "user3", "user4")


class Cluster:
    """C{nodes} daemons (node ids C{node0}, C{node1}, ...; run by C{twistd} in C{env},
    as L{Daemon}), one redis-server (keeping its data across a stop and start if
    C{redis_save_on_stop}, as Debian's is configured), Kamailio."""

    def __init__(self, tmp_path: Path, kamailio_factory, phone_factory, *, nodes: int = 2,
                 transport: str = "udp", twistd: list[str] | None = None,
                 env: dict[str, str] | None = None, redis_save_on_stop: bool = False,
                 **config):
        self.tmp_path = tmp_path
        self.phone_factory = phone_factory
        self.redis = RedisServer(tmp_path, save_on_stop=redis_save_on_stop)
        self.proxy_port, *sip_ports = free_ports(1 + nodes)
        self.ports = dict(zip(USERS, free_ports(len(USERS)), strict=True))
        self.proxy = kamailio_factory(
            {user: f"sip:{user}@127.0.0.1:{port}" for user, port in self.ports.items()},
            f"127.0.0.1:{sip_ports[0]}", port=self.proxy_port)
        proxy_uri = f"sip:127.0.0.1:{self.proxy_port};lr"
        if transport == "tcp":
            proxy_uri += ";transport=tcp"
        self.daemons: list[Daemon] = []
        for n, sip_port in enumerate(sip_ports):
            directory = tmp_path / f"node{n}"
            directory.mkdir()
            path = write_config(directory, sip_port=sip_port, sip_proxy=proxy_uri,
                                registry_backend="redis", registry_redis_url=self.redis.url,
                                registry_node_id=f"node{n}", **config)
            self.daemons.append(Daemon(path, twistd=twistd, env=env))

    def start(self) -> Cluster:
        """redis-server, then every node (each answers /health 200 once it can place
        calls: connected, and its calls of an earlier run marked ended)."""
        self.redis.start()
        for daemon in self.daemons:
            daemon.start()
        return self

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()
        self.redis.stop()

    def phone(self, user: str, scenario: str, **kwargs):
        """A sipp phone for C{user}, where Kamailio looks for it."""
        return self.phone_factory(scenario, self.ports[user], **kwargs)

    def url(self, node: int, path: str) -> str:
        return self.daemons[node].https_url + path

    def request(self, node: int, method: str, path: str, accept: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        """(status, body as sent, headers by lower-case name) of one request to C{node}
        over HTTPS, from the trusted host (no credentials), with C{headers} if given."""
        daemon = self.daemons[node]
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection("127.0.0.1", daemon.config.http.https,
                                                 timeout=20, context=context)
        try:
            sent = dict(headers or {})
            if accept:
                sent["Accept"] = accept
            connection.request(method, path, headers=sent)
            response = connection.getresponse()
            return (response.status, response.read(),
                    {name.lower(): value for name, value in response.getheaders()})
        finally:
            connection.close()

    def get(self, node: int, path: str, accept: str | None = None) -> bytes:
        """The body of a GET that must answer 200."""
        code, body, _ = self.request(node, "GET", path, accept)
        assert code == 200, (node, path, code, body)
        return body

    def state(self, node: int, location: str) -> str:
        return json.loads(self.get(node, location, "application/json"))["state"]
