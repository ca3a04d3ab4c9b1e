"""``twistd sipxcc``: command-line options and the service tree.

This is the only module that imports the global reactor. Everything that can stop
start-up (config, user directory, certificate, a port in use) is checked here, before
twistd starts logging or daemonizes, and reported as one line on stderr with a non-zero
exit status instead of a traceback.
"""

from __future__ import annotations

import gc
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import LogLevel
from twisted.python import usage

from sipxcc import __version__
from sipxcc.calls.callbacks import read_secret
from sipxcc.calls.calllog import CallLog
from sipxcc.calls.control import CallControl
from sipxcc.calls.store import CallStore, MemoryCallStore
from sipxcc.config import KEYS, Config, ConfigError, load_config
from sipxcc.hosts import host_port
from sipxcc.logs import enabled as log_enabled
from sipxcc.logs import logger
from sipxcc.logs import set_level as set_log_level
from sipxcc.privatefile import SecretError
from sipxcc.sip.uri import URI
from sipxcc.tls import TLSError, client_options, server_context_factory
from sipxcc.users import DirectoryError, UserDirectory
from sipxcc.web.idempotency import IdempotencyStore
from sipxcc.web.metrics import Metrics
from sipxcc.web.site import build_internal_site, build_site
from sipxcc.web.stream import StreamsService

DEFAULT_CONFIG = "/etc/sipxcc/sipxcc.ini"

log = logger(__name__)

PLAIN_HTTP_WARNING = (
    "plain HTTP is enabled on {where} (http.http): anyone who captures one Digest "
    "exchange can find the user's PIN offline in about a second; use HTTPS and set "
    "http.http = 0")


def option_name(dotted: str) -> str:
    """``calls.max_calls`` -> ``calls-max-calls`` (the command-line spelling of a key)."""
    return dotted.replace(".", "-").replace("_", "-")


class Options(usage.Options):
    """``--config PATH`` plus one ``--section-key`` option per config key."""

    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "The INI configuration file."],
    ] + [
        [option_name(key.dotted), None, None, f"Override {key.dotted}: {key.help}."]
        for key in KEYS
    ]

    def opt_version(self) -> NoReturn:
        """Print the version and exit."""
        print(f"sipxcc {__version__}")
        sys.exit(0)

    def overrides(self) -> dict[str, str]:
        """The config keys given on the command line, as ``{"section.key": text}``."""
        return {
            key.dotted: self[option_name(key.dotted)]
            for key in KEYS
            if self[option_name(key.dotted)] is not None
        }


class ListeningPortService(Service):
    """Owns a port that is already listening; stops listening when the service stops."""

    def __init__(self, port: IListeningPort):
        self.port = port

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        stopped: Deferred[None] | None = self.port.stopListening()
        return stopped


class DirectoryPollerService(Service):
    """Polls the user directory file for changes while the daemon runs."""

    def __init__(self, directory: UserDirectory):
        self.directory = directory

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        self.directory.start()

    def stopService(self) -> None:
        self.directory.stop()
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's, untyped


class StartupWarningService(Service):
    """Logs warnings about the configuration once logging has begun (when it starts)."""

    def __init__(self, warnings: list[str]):
        self.warnings = warnings

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        for text in self.warnings:
            log.warn("{text}", text=text)


class StartupError(Exception):
    """Start-up cannot go on; ``str()`` is the one line to show the operator."""


def makeService(options: Options) -> MultiService:
    """Build the sipxcc service on the global reactor, or exit with one line on stderr."""
    from twisted.internet import reactor

    try:
        config = load_config(options["config"], options.overrides())
        service = build_service(config, reactor)
    except (ConfigError, DirectoryError, TLSError, StartupError) as error:
        sys.stderr.write(f"sipxcc: {error}\n")
        sys.stderr.flush()
        raise SystemExit(1) from None
    tune_garbage_collector()
    stop_once_on_signals(reactor)
    return service


def stop_once_on_signals(reactor: Any) -> None:
    """Let only the first of SIGINT, SIGTERM and SIGBREAK stop ``reactor``.

    Twisted's handlers each schedule ``reactor.stop()``; a second signal while shutting
    down (systemd's SIGTERM, then an impatient Ctrl-C) made the second ``stop()`` raise
    ReactorNotRunning, logged as critical. Later signals are logged and ignored. The
    reactor looks its handlers up when it starts running, so this must be called before.
    """
    received: list[int] = []
    for name in ("sigInt", "sigTerm", "sigBreak"):
        original = getattr(reactor, name, None)
        if original is not None:
            setattr(reactor, name, _first_signal_only(original, received))


SignalHandler = Callable[[int, FrameType | None], None]


def _first_signal_only(original: SignalHandler, received: list[int]) -> SignalHandler:
    def handler(number: int, frame: FrameType | None = None) -> None:
        if received:
            log.info("signal {number} while shutting down: ignored", number=number)
            return
        received.append(number)
        original(number, frame)
    return handler


def tune_garbage_collector() -> None:
    """
    Every call allocates a few hundred short-lived objects; the default generation-0
    threshold (700) makes the cyclic collector run every few calls and dominate the
    profile at load (bench/results). Collect young objects less often, and leave what
    start-up built out of every later collection. Not much less often: Twisted's TLS and
    HTTP connections leave reference cycles, and with rare full collections (tried:
    50,000/50/100) RSS grew by 20 KiB per HTTPS connection (tests/integration/test_memory.py).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def build_service(config: Config, reactor: Any) -> MultiService:
    """The service tree for ``config``: user directory poller and the web listeners.

    The listeners are bound here, not when the service starts, so that a port in use is
    reported as a StartupError before twistd redirects output or daemonizes.
    """
    set_log_level(config.daemon.log_level)
    directory = UserDirectory(config.users.directory, reactor)
    try:
        directory.load()
    except DirectoryError as error:
        # The operator edits the config file's key, so name both (and the directory file).
        raise DirectoryError(f"{config.source}: users.directory: {error}") from None
    control = _build_call_control(config, reactor)
    metrics = Metrics(reactor)
    metrics.follow(control.registry)
    metrics.follow_callbacks(control.callbacks)
    control.transport.stats = metrics.sip  # the UA, made at listen(), takes it from there
    if log_enabled(LogLevel.info):  # the lines are info: below it, no work per call
        CallLog(reactor).follow(control.registry)
    top = MultiService()
    store = _build_store(config, control, reactor, top)
    site = build_site(config, directory, store, reactor, metrics,
                      _build_idempotency_store(config, store, reactor))
    if not log_enabled(LogLevel.info):
        site.access_log = False  # the access log is info-level chatter

    DirectoryPollerService(directory).setServiceParent(top)  # type: ignore[no-untyped-call]  # Twisted's, untyped
    control.setServiceParent(top)  # type: ignore[no-untyped-call]  # Twisted's, untyped
    bound: list[IListeningPort] = []
    try:
        if config.http.https:
            tls_options = server_context_factory(config)
            bound.append(_listen(config, "http.https", lambda: reactor.listenSSL(
                config.http.https, site, tls_options, interface=config.http.address)))
        if config.http.http:
            bound.append(_listen(config, "http.http", lambda: reactor.listenTCP(
                config.http.http, site, interface=config.http.address)))
        if config.http.internal:
            internal = build_internal_site(site, config, reactor)
            if not log_enabled(LogLevel.info):
                internal.access_log = False
            bound.append(_listen(config, "http.internal", lambda: reactor.listenTCP(
                config.http.internal, internal, interface=config.http.internal_address)))
    except BaseException:
        for port in bound:
            port.stopListening()
        raise
    for port in bound:
        ListeningPortService(port).setServiceParent(top)  # type: ignore[no-untyped-call]  # Twisted's, untyped
    assert site.streams is not None  # build_site installs them
    # stopped first: ends live streams
    StreamsService(site.streams).setServiceParent(top)  # type: ignore[no-untyped-call]  # Twisted's, untyped
    if config.http.http:
        where = host_port(config.http.address, config.http.http)
        warning = StartupWarningService([PLAIN_HTTP_WARNING.format(where=where)])
        warning.setServiceParent(top)  # type: ignore[no-untyped-call]  # Twisted's, untyped
    return top


def _build_call_control(config: Config, reactor: Any) -> CallControl:
    """The SIP stack and the CallRegistry, its SIP ports already bound."""
    sip = config.sip
    tls_context = server_context_factory(config) if "tls" in sip.transports else None
    # outgoing SIP over TLS verifies the proxy: chain to tls.ca_file, name from sip.proxy
    tls_client = client_options(URI.parse(sip.proxy).host.strip("[]"), config.tls.ca_file)
    control = CallControl(reactor, domain=sip.domain, proxy=sip.proxy, address=sip.address,
                          port=sip.port, transports=sip.transports,
                          contact_user=sip.contact_user, max_calls=config.calls.max_calls,
                          max_calls_per_agent=config.calls.max_calls_per_agent,
                          tls_context=tls_context, calls_config=config.calls,
                          realm=sip.realm, tls_client_context=tls_client,
                          max_connections=sip.max_connections,
                          max_connections_per_host=sip.max_connections_per_host,
                          ringback=config.ringback)
    try:
        control.callbacks.secret = read_secret(config.calls.callback_secret)
    except SecretError as error:
        raise StartupError(f"{config.source}: {error}") from None
    if control.callbacks.secret is None:
        log.info("calls.callback_secret is not set: status callbacks are sent unsigned")
    try:
        control.listen()
    except CannotListenError as error:
        reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
        raise StartupError(f"{config.source}: sip.port: cannot listen on "
                           f"{host_port(sip.address, sip.port)}: {reason}") from None
    return control


def _build_store(config: Config, control: CallControl, reactor: Any,
                 top: MultiService) -> CallStore:
    """The calls as the web layer sees them: this process's (C{registry.backend =
    memory}), or shared through Redis by several nodes, this one's service in C{top}."""
    registry = config.registry
    if registry.backend != "redis":
        return MemoryCallStore(control.registry)
    try:  # redis-py is needed only here (Debian: python3-redis, a Recommends)
        from sipxcc.calls.redis_node import RedisNode, read_password_file
    except ImportError as error:
        raise StartupError(f"{config.source}: {error}") from None
    password = None
    if registry.redis_password_file is not None:
        try:
            password = read_password_file(registry.redis_password_file)
        except SecretError as error:
            raise StartupError(f"{config.source}: {error}") from None
    node_id = registry.node_id or f"{socket.gethostname()}:{config.sip.port}"
    node = RedisNode(reactor, control.registry, url=registry.redis_url, password=password,
                     node_id=node_id, max_calls=config.calls.max_calls,
                     max_calls_per_agent=config.calls.max_calls_per_agent,
                     max_buffered_writes=registry.max_buffered_writes,
                     write_window=registry.write_window_ms / 1000,
                     shutdown_timeout=control.shutdown_timeout, ca_file=config.tls.ca_file)
    node.setServiceParent(top)  # type: ignore[no-untyped-call]  # Twisted's, untyped
    return node.store


def _build_idempotency_store(config: Config, store: CallStore, reactor: Any
                             ) -> IdempotencyStore | None:
    """Idempotency keys in Redis, through the node's connection, when the calls are
    there (C{registry.backend = redis}): a retry on another node finds its key. None:
    in this process' memory."""
    if config.registry.backend != "redis":
        return None
    from sipxcc.calls.redis_store import RedisCallStore
    from sipxcc.web.idempotency_redis import RedisIdempotencyStore
    assert isinstance(store, RedisCallStore)
    return RedisIdempotencyStore(reactor, store.redis, config.calls.idempotency_ttl,
                                 prefix=store.prefix)


def _listen(config: Config, dotted: str, listen: Callable[[], IListeningPort]) -> IListeningPort:
    try:
        return listen()
    except CannotListenError as error:
        port = getattr(config.http, dotted.split(".", 1)[1])
        address = (config.http.internal_address if dotted == "http.internal"
                   else config.http.address)
        reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
        raise StartupError(
            f"{config.source}: {dotted}: cannot listen on "
            f"{host_port(address, port)}: {reason}"
        ) from None


