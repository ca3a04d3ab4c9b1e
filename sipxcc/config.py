"""The daemon's INI configuration, parsed into frozen dataclasses.

Every problem becomes a ``ConfigError`` whose message is one line naming the file,
the ``section.key`` and what is wrong, so that start-up can print it as it is.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sipxcc.hosts import is_ip

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
RINGBACK_TONES = ("us", "eu", "uk")  # the cadences of sipxcc.media.tones
SIP_TRANSPORTS = ("udp", "tcp", "tls")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
# RFC 3261 §25.1 "user" characters, without escapes: enough for our own Contact user part.
_SIP_USER = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/]+$")
_SIP_URI = re.compile(r"^sips?:[^\s<>\"]+$", re.IGNORECASE)


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line naming file, key and problem."""


@dataclass(frozen=True)
class SIPConfig:
    """``[sip]``: our SIP identity, the proxy we route through and where we listen."""

    domain: str
    realm: str
    proxy: str
    address: str
    port: int
    transports: tuple[str, ...]
    contact_user: str
    max_connections: int = 1000
    max_connections_per_host: int = 64


@dataclass(frozen=True)
class HTTPConfig:
    """``[http]``: web listeners (0 disables one) and the hosts that need no auth.

    ``internal`` is the port sipXconfig's redirector forwards to (plain HTTP, trusted
    hosts only, the ``sipx-user`` header names the user), bound on ``internal_address``.
    """

    https: int
    http: int
    address: str
    trusted: tuple[IPNetwork, ...]
    internal: int = 0
    internal_address: str = "127.0.0.1"
    max_streams: int = 100
    max_streams_per_user: int = 4
    metrics: frozenset[str] = frozenset({"trusted", "agents"})  # who may GET /metrics


@dataclass(frozen=True)
class TLSConfig:
    """``[tls]``: PEM certificate and key; both None means a generated self-signed pair."""

    certificate: str | None
    key: str | None
    ca_file: str | None = None  # CAs for the SIP proxy's certificate; None: the platform's


@dataclass(frozen=True)
class UsersConfig:
    """``[users]``: the sipX user directory file and the users allowed to act as agents."""

    directory: str
    agents: frozenset[str]


@dataclass(frozen=True)
class CallsConfig:
    """``[calls]``: call defaults and limits; hosts allowed as status-callback targets."""

    timeout: int
    result_cache_time: int
    max_calls: int
    max_calls_per_agent: int
    callback_hosts: tuple[str, ...]
    max_retained: int = 100_000
    max_retained_per_owner: int = 1000
    max_result_cache_time: int = 86400
    callback_ports: tuple[int, ...] = (80, 443)
    idempotency_ttl: int = 86400
    callback_secret: str | None = None


@dataclass(frozen=True)
class RingbackConfig:
    """``[ringback]``: the tone a calling user hears while the called user rings (INVITE
    mode): at most ``max_streams`` at once (0: none), each from an even UDP port of
    ``ports`` (low, high), offered after the callee has rung ``delay`` seconds."""

    max_streams: int = 100
    ports: tuple[int, int] = (24000, 24199)
    delay: int = 1
    tone: str = "us"


@dataclass(frozen=True)
class DaemonConfig:
    """``[daemon]``: where state (the generated certificate) lives, and the log level."""

    state_dir: str
    log_level: str


@dataclass(frozen=True)
class RegistryConfig:
    """``[registry]``: where the calls are kept: ``memory`` (this process) or ``redis``
    (shared by several nodes; ``node_id`` None: hostname:sip.port)."""

    backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password_file: str | None = None
    node_id: str | None = None
    max_buffered_writes: int = 50_000
    write_window_ms: int = 15


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``source`` is the file it was read from."""

    source: str
    sip: SIPConfig
    http: HTTPConfig
    tls: TLSConfig
    users: UsersConfig
    calls: CallsConfig
    daemon: DaemonConfig
    ringback: RingbackConfig = RingbackConfig()
    registry: RegistryConfig = RegistryConfig()

    def is_trusted(self, host: str) -> bool:
        """True if ``host`` (a peer address, maybe ``::ffff:a.b.c.d``) is in http.trusted."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.http.trusted
        )


class _Invalid(ValueError):
    """Raised by a value parser; the message says what is wrong with the value."""


# --- value parsers: text -> value, raising _Invalid -------------------------------------


def _text(value: str) -> str:
    if not value:
        raise _Invalid("must not be empty")
    return value


def _domain(value: str) -> str:
    if is_ip(value) or _HOSTNAME.match(value):
        return value
    raise _Invalid(f"{value!r} is not a host name or IP address")


def _sip_uri(value: str) -> str:
    if not _SIP_URI.match(value):
        raise _Invalid(f"{value!r} is not a sip: or sips: URI")
    return value


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _Invalid(f"{value!r} is not an IPv4 or IPv6 address") from None


def _integer(value: str, low: int, high: int) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise _Invalid(f"{value!r} is not an integer") from None
    if not low <= number <= high:
        raise _Invalid(f"{number} is out of range {low}..{high}")
    return number


def _port(value: str) -> int:
    return _integer(value, 1, 65535)


def _port_or_zero(value: str) -> int:
    return _integer(value, 0, 65535)


def _int_range(low: int, high: int) -> Callable[[str], int]:
    return lambda value: _integer(value, low, high)


def _words(value: str) -> list[str]:
    return value.replace(",", " ").split()


def _transports(value: str) -> tuple[str, ...]:
    words = [word.lower() for word in _words(value)]
    if not words:
        raise _Invalid(f"must name at least one of {', '.join(SIP_TRANSPORTS)}")
    for word in words:
        if word not in SIP_TRANSPORTS:
            raise _Invalid(f"unknown transport {word!r} (use {', '.join(SIP_TRANSPORTS)})")
    return tuple(dict.fromkeys(words))


def _contact_user(value: str) -> str:
    if not _SIP_USER.match(value):
        raise _Invalid(f"{value!r} is not a valid SIP user part")
    return value


def _networks(value: str) -> tuple[IPNetwork, ...]:
    networks = []
    for word in _words(value):
        try:
            networks.append(ipaddress.ip_network(word, strict=True))
        except ValueError as error:
            raise _Invalid(f"{word!r} is not an address or CIDR ({error})") from None
    return tuple(networks)


def _ports(value: str) -> tuple[int, ...]:
    ports = tuple(dict.fromkeys(_port(word) for word in _words(value)))
    if not ports:
        raise _Invalid("must name at least one port")
    return ports


def _metrics_access(value: str) -> frozenset[str]:
    words = frozenset(_words(value.lower().replace(",", " ")))
    if words == {"off"}:
        return frozenset()
    if not words or not words <= {"trusted", "agents"}:
        raise _Invalid(f"{value!r}: expected off, or any of trusted, agents")
    return words


def _user_names(value: str) -> frozenset[str]:
    return frozenset(_words(value))


def _hosts(value: str) -> tuple[str, ...]:
    return tuple(_domain(word) for word in _words(value))


def _port_range(value: str) -> tuple[int, int]:
    low_text, dash, high_text = value.partition("-")
    if not dash:
        raise _Invalid(f"{value!r} is not a port range low-high")
    low, high = _integer(low_text.strip(), 1024, 65535), _integer(high_text.strip(), 1024, 65535)
    if high - low < 1:
        raise _Invalid(f"{value!r}: the range must hold at least two ports (RTP and RTCP)")
    return low, high


def _tone(value: str) -> str:
    tone = value.lower()
    if tone not in RINGBACK_TONES:
        raise _Invalid(f"{value!r} is not one of {', '.join(RINGBACK_TONES)}")
    return tone


def _log_level(value: str) -> str:
    level = value.lower()
    if level == "warning":
        level = "warn"
    if level not in LOG_LEVELS:
        raise _Invalid(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


REGISTRY_BACKENDS = ("memory", "redis")
_REDIS_URL = re.compile(r"^rediss?://(?:[^@/\s]*@)?[A-Za-z0-9.\-\[\]:]+(?:/\d{1,2})?/?$")
_NODE_ID = re.compile(r"^[A-Za-z0-9.\-_:]{1,100}$")


def _registry_backend(value: str) -> str:
    if value not in REGISTRY_BACKENDS:
        raise _Invalid(f"{value!r} is not one of {', '.join(REGISTRY_BACKENDS)}")
    return value


def _redis_url(value: str) -> str:
    if not _REDIS_URL.match(value):
        raise _Invalid(f"{value!r} is not a redis:// or rediss:// URL "
                       "(redis://[:password@]host[:port][/db])")
    try:
        port = urlsplit(value).port
    except ValueError:  # a port that is no number or out of range, a broken [IPv6]
        port = 0
    if port == 0:
        raise _Invalid(f"{value!r}: the host must be a name or an address (IPv6 in [ ]) "
                       "and the port a number from 1 to 65535")
    return value


def _node_id(value: str) -> str:
    if not _NODE_ID.match(value):
        raise _Invalid(f"{value!r}: 1 to 100 letters, digits and . - _ :")
    return value


# --- the schema ---------------------------------------------------------------------------

REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One config key: its parser, default (REQUIRED, None or text) and help text."""

    section: str
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    is_path: bool = False

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


KEYS: tuple[Key, ...] = (
    Key("sip", "domain", _domain, REQUIRED, "SIP domain; bare user names get @domain"),
    Key("sip", "realm", _text, None, "digest realm of the sipX credentials (default: domain)"),
    Key("sip", "proxy", _sip_uri, REQUIRED, "SIP URI of the sipX proxy (loose route)"),
    Key("sip", "address", _ip_address, "127.0.0.1", "SIP address to bind and advertise"),
    Key("sip", "port", _port, "6050", "SIP port"),
    Key("sip", "transports", _transports, "udp tcp", "SIP transports: udp, tcp, tls"),
    Key("sip", "contact_user", _contact_user, "callcontroller", "user part of our Contact"),
    Key("sip", "max_connections", _int_range(1, 1_000_000), "1000",
        "incoming SIP TCP/TLS connections open at once"),
    Key("sip", "max_connections_per_host", _int_range(1, 1_000_000), "64",
        "incoming SIP TCP/TLS connections per address (IPv6: per /64; not the proxy)"),
    Key("http", "https", _port_or_zero, "6666", "HTTPS port (0 disables)"),
    Key("http", "http", _port_or_zero, "0",
        "plain-HTTP port, Digest only; 0 (default) disables it"),
    Key("http", "address", _ip_address, "0.0.0.0", "address the web listeners bind"),
    Key("http", "trusted", _networks, "127.0.0.1 ::1", "addresses/CIDRs needing no auth"),
    Key("http", "internal", _port_or_zero, "0",
        "internal plain-HTTP port for sipXconfig's redirector, trusted hosts only (0 disables)"),
    Key("http", "internal_address", _ip_address, "127.0.0.1",
        "address the internal listener binds"),
    Key("http", "max_streams", _int_range(1, 100_000), "100",
        "live event streams open at once; beyond → 503"),
    Key("http", "max_streams_per_user", _int_range(1, 10_000), "4",
        "live event streams per user (trusted hosts share one count); beyond → 429"),
    Key("http", "metrics", _metrics_access, "trusted agents",
        "who may GET /metrics: off, or any of trusted (hosts) and agents (users.agents)"),
    Key("tls", "certificate", _text, None, "PEM certificate file", is_path=True),
    Key("tls", "key", _text, None, "PEM private key file", is_path=True),
    Key("tls", "ca_file", _text, None, "PEM CA certificates that sign the SIP proxy's "
        "TLS certificate (default: the platform's trust store)", is_path=True),
    Key("users", "directory", _text, REQUIRED, "validusers.xml or credential.xml", True),
    Key("users", "agents", _user_names, "", "users allowed to act as agent for others"),
    Key("calls", "timeout", _int_range(1, 86400), "180", "default ring time in seconds"),
    Key("calls", "result_cache_time", _int_range(0, 86400), "180",
        "seconds a finished call stays queryable"),
    Key("calls", "max_calls", _int_range(1, 1_000_000), "2000", "calls in progress at once"),
    Key("calls", "max_calls_per_agent", _int_range(1, 1_000_000), "10",
        "calls in progress per agent"),
    Key("calls", "callback_hosts", _hosts, "", "hosts statusCallback URLs may point at"),
    Key("calls", "max_retained", _int_range(1, 10_000_000), "100000",
        "finished calls kept queryable in all; beyond, the oldest is forgotten"),
    Key("calls", "max_retained_per_owner", _int_range(1, 1_000_000), "1000",
        "finished calls kept queryable per agent; beyond, its oldest is forgotten"),
    Key("calls", "max_result_cache_time", _int_range(0, 86400), "86400",
        "largest resultCacheTime honoured; a larger one is lowered to it"),
    Key("calls", "callback_ports", _ports, "80 443", "ports statusCallback URLs may use"),
    Key("calls", "idempotency_ttl", _int_range(1, 7 * 86400), "86400",
        "seconds an Idempotency-Key is remembered"),
    Key("calls", "callback_secret", _text, None,
        "status callback signing key: a file (absolute path, mode 0600) or the key itself"),
    Key("ringback", "max_streams", _int_range(0, 10_000), "100",
        "ringback tones played at once (INVITE mode); beyond, the calling user hears "
        "silence; 0: never"),
    Key("ringback", "ports", _port_range, "24000-24199",
        "UDP ports the ringback streams send from, one even port each"),
    Key("ringback", "delay", _int_range(0, 60), "1",
        "seconds the called user rings before the calling user is offered the tone"),
    Key("ringback", "tone", _tone, "us",
        "ringback cadence: us (440+480 Hz, 2 s on 4 s off), eu (425 Hz, 1 on 4 off), "
        "uk (400+450 Hz, 0.4 on 0.2 off 0.4 on 2 off)"),
    Key("daemon", "state_dir", _text, "/var/lib/sipxcc", "generated certificate and state",
        is_path=True),
    Key("daemon", "log_level", _log_level, "info", "debug, info, warn, error or critical"),
    Key("registry", "backend", _registry_backend, "memory",
        "where calls are kept: memory (this process) or redis (shared by several nodes)"),
    Key("registry", "redis_url", _redis_url, "redis://127.0.0.1:6379/0",
        "the Redis server (rediss:// for TLS); a password may be in the URL"),
    Key("registry", "redis_password_file", _text, None,
        "file (mode 0600) holding the Redis password", is_path=True),
    Key("registry", "node_id", _node_id, None,
        "this node's name, unique in the cluster (default: hostname:sip.port)"),
    Key("registry", "max_buffered_writes", _int_range(1, 10_000_000), "50000",
        "writes (status lines, states, ends) kept while Redis is unreachable; the oldest "
        "beyond are dropped, counted in /health"),
    Key("registry", "write_window_ms", _int_range(0, 1000), "15",
        "milliseconds status lines, states and ends are collected before they go to Redis "
        "in one pipeline (0: once per reactor turn)"),
)

_KEYS_BY_NAME = {key.dotted: key for key in KEYS}
_SECTIONS = tuple(dict.fromkeys(key.section for key in KEYS))


# --- loading ------------------------------------------------------------------------------


def load_config(path: str, overrides: Mapping[str, str] | None = None) -> Config:
    """Read the INI file at ``path``, apply ``{"section.key": text}`` overrides, validate."""
    overrides = dict(overrides or {})
    raw = _read_ini(path)
    for dotted, text in overrides.items():
        if dotted not in _KEYS_BY_NAME:
            raise ConfigError(f"{path}: {dotted}: unknown key (from the command line)")
        raw[dotted] = text
    base_dir = os.path.dirname(os.path.abspath(path))
    values: dict[str, Any] = {}
    for key in KEYS:
        values[key.dotted] = _value_of(path, key, raw.get(key.dotted), base_dir,
                                       from_command_line=key.dotted in overrides)
    if values["sip.realm"] is None:
        values["sip.realm"] = values["sip.domain"]
    if values["calls.result_cache_time"] > values["calls.max_result_cache_time"]:
        raise ConfigError(f"{path}: calls.result_cache_time: {values['calls.result_cache_time']}"
                          " is above calls.max_result_cache_time "
                          f"({values['calls.max_result_cache_time']})")
    low, high = values["ringback.ports"]
    room = len(range(low + low % 2, high, 2))
    if values["ringback.max_streams"] > room:
        raise ConfigError(f"{path}: ringback.max_streams: {values['ringback.max_streams']} is "
                          f"above the {room} streams ringback.ports ({low}-{high}) holds, one "
                          "even port each")
    if (values["tls.certificate"] is None) != (values["tls.key"] is None):
        missing = "tls.key" if values["tls.key"] is None else "tls.certificate"
        raise ConfigError(f"{path}: {missing}: tls.certificate and tls.key must be set together")
    return _build(os.path.abspath(path), values)


def _read_ini(path: str) -> dict[str, str]:
    # A default_section nobody writes: "[DEFAULT]" must be an unknown section, not magic.
    parser = configparser.ConfigParser(
        interpolation=None, default_section="\0", strict=True, empty_lines_in_values=False
    )
    try:
        with open(path, encoding="utf-8") as stream:
            parser.read_file(stream)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except configparser.DuplicateSectionError as error:
        raise ConfigError(f"{path}: line {error.lineno}: duplicate section "
                          f"[{error.section}]") from None
    except configparser.DuplicateOptionError as error:
        raise ConfigError(f"{path}: line {error.lineno}: {error.section}.{error.option}: "
                          "set twice") from None
    except configparser.MissingSectionHeaderError as error:
        raise ConfigError(f"{path}: line {error.lineno}: a [section] header must come "
                          "before the first key") from None
    except configparser.ParsingError as error:
        lines = ", ".join(str(lineno) for lineno, _ in error.errors)
        raise ConfigError(f"{path}: line {lines}: not a 'key = value' line") from None
    raw: dict[str, str] = {}
    for section in parser.sections():
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: [{section}]: unknown section "
                              f"(known: {', '.join(_SECTIONS)})")
        for name, text in parser.items(section, raw=True):
            dotted = f"{section}.{name}"
            if dotted not in _KEYS_BY_NAME:
                raise ConfigError(f"{path}: {dotted}: unknown key")
            raw[dotted] = text.strip()
    return raw


def _value_of(path: str, key: Key, text: str | None, base_dir: str,
              from_command_line: bool) -> Any:
    origin = " (from the command line)" if from_command_line else ""
    if not text:
        if key.default is REQUIRED:
            problem = "required key is missing" if text is None else "must not be empty"
            raise ConfigError(f"{path}: {key.dotted}: {problem}{origin}")
        if key.default is None:
            return None
        if text is None:
            text = key.default
    if "\n" in text:
        raise ConfigError(f"{path}: {key.dotted}: must be a single line{origin}")
    try:
        value = key.parse(text)
    except _Invalid as error:
        raise ConfigError(f"{path}: {key.dotted}: {error}{origin}") from None
    if key.is_path:
        value = os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
    return value


def _build(source: str, values: Mapping[str, Any]) -> Config:
    def section(name: str) -> dict[str, Any]:
        prefix = name + "."
        return {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}

    return Config(
        source=source,
        sip=SIPConfig(**section("sip")),
        http=HTTPConfig(**section("http")),
        tls=TLSConfig(**section("tls")),
        users=UsersConfig(**section("users")),
        calls=CallsConfig(**section("calls")),
        daemon=DaemonConfig(**section("daemon")),
        ringback=RingbackConfig(**section("ringback")),
        registry=RegistryConfig(**section("registry")),
    )
