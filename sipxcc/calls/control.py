"""Call control assembled: SIP transports, the user agent, the flows and the registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer

from sipxcc.calls.call import INVITE, REFER, Call
from sipxcc.calls.callbacks import CallbackPolicy, StatusCallbacks, treq_poster
from sipxcc.calls.context import FlowContext
from sipxcc.calls.invite import InviteFlow
from sipxcc.calls.refer import ReferFlow
from sipxcc.calls.registry import CallRegistry
from sipxcc.config import CallsConfig, RingbackConfig
from sipxcc.media.ringback import RingbackStreams
from sipxcc.sip.transport import TransportLayer
from sipxcc.sip.useragent import UASettings, UserAgent


class CallControl(Service):
    """
    The SIP side of the daemon as one service. L{listen} binds the SIP ports (so a port
    in use stops start-up); stopping the service hangs up every call first.
    """

    def __init__(self, reactor: Any, *, domain: str, proxy: str, address: str, port: int,
                 transports: tuple[str, ...] = ("udp", "tcp"),
                 contact_user: str = "callcontroller",
                 max_calls: int = 2000, max_calls_per_agent: int = 10, tls_context: Any = None,
                 shutdown_timeout: float = 5.0, calls_config: CallsConfig | None = None,
                 realm: str | None = None, tls_client_context: Any = None,
                 max_connections: int = 1000, max_connections_per_host: int = 64,
                 ringback: RingbackConfig | None = None):
        self.reactor = reactor
        self.shutdown_timeout = shutdown_timeout
        self.transport = TransportLayer(reactor, address, port, transports,
                                        tls_context=tls_context,
                                        max_connections=max_connections,
                                        max_connections_per_host=max_connections_per_host)
        self.transport.client_tls = tls_client_context  # None: refuse outgoing TLS
        # the realm of the proxy's challenges: the only ones the agents' credentials answer
        self.settings = UASettings(proxy, address, port, contact_user, tuple(transports),
                                   realm if realm is not None else domain)
        self.ua: UserAgent | None = None
        self.domain = domain
        self.address = address
        # the calling user's ringback tone in INVITE mode: RTP from the SIP address
        self.ringback: RingbackStreams | None = None
        if ringback is not None and ringback.max_streams:
            self.ringback = RingbackStreams(reactor, reactor, address, ringback.ports,
                                            ringback.max_streams, ringback.tone,
                                            ringback.delay)
        limits = calls_config or CallsConfig(180, 180, max_calls, max_calls_per_agent, ())
        policy = CallbackPolicy(limits.callback_hosts, limits.callback_ports)
        self.callbacks = StatusCallbacks(reactor, treq_poster(reactor, policy))
        self.registry = CallRegistry(reactor, {REFER: self._refer, INVITE: self._invite},
                                     max_calls, max_calls_per_agent,
                                     observers=(self.callbacks.attach,),
                                     max_retained=limits.max_retained,
                                     max_retained_per_owner=limits.max_retained_per_owner,
                                     max_result_cache_time=limits.max_result_cache_time)

    def listen(self) -> None:
        """Bind the SIP transports; raises CannotListenError when the port is taken."""
        self.transport.start()
        settings = self.settings
        if settings.port != self.transport.port:
            settings = UASettings(settings.proxy, settings.address, self.transport.port,
                                  settings.contact_user, settings.transports, settings.realm)
        self.ua = UserAgent(self.reactor, self.transport, settings)
        self.context = FlowContext(self.ua, self.reactor, self.domain, self.address)

    def _refer(self, call: Call, on_end: Callable[[Call], None]) -> ReferFlow:
        return ReferFlow(self.context, call, on_end)

    def _invite(self, call: Call, on_end: Callable[[Call], None]) -> InviteFlow:
        return InviteFlow(self.context, call, on_end, self.ringback)

    def stopService(self) -> defer.Deferred[object]:
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        d = self.registry.shutdown(self.shutdown_timeout)

        def stop_transport(_: object) -> object:
            self.registry.clear()
            if self.ringback is not None:
                self.ringback.stop()
            if self.ua is not None:
                self.ua.stop()
            return self.transport.stop()
        return d.addCallback(stop_transport)
