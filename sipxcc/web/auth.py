"""
Who is asking: trusted peers over HTTPS, HTTP Basic over HTTPS, HTTP Digest.

Built on twisted.cred (a L{Portal} with a pintoken checker) and the twisted.web.guard
credential factories, subclassed to close their gaps: server-side nonces that expire on
the injected clock, each (nonce, nc) accepted once (RFC 7616 §3.4 / RFC 2617 §3.2.2),
the digest C{uri} bound to the request, MD5 with qop=auth only, constant-time compares,
and a throttle for repeated failures. Credentials are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import guard, http
from zope.interface import Interface, implementer

from sipxcc.config import Config
from sipxcc.hosts import client_key
from sipxcc.logs import logger, shown
from sipxcc.timers import Clock
from sipxcc.users import User
from sipxcc.web.params import BadParameter, check_user

NONCE_LIFETIME = 300.0
MAX_NONCES = 20000
MAX_NC_PER_NONCE = 1000
FAILURE_LIMIT = 10
FAILURE_WINDOW = 60.0
BLOCK_TIME = 60.0
MAX_TRACKED_HOSTS = 10000
ACCOUNT_FAILURE_LIMIT = 20
"""Failed logins for one account (from any address) within L{ACCOUNT_FAILURE_WINDOW}
seconds that lock the account for L{ACCOUNT_BLOCK_TIME} seconds."""
ACCOUNT_FAILURE_WINDOW = 600.0
ACCOUNT_BLOCK_TIME = 600.0
MAX_TRACKED_ACCOUNTS = 10000

log = logger(__name__)

# RFC 7235 §2.1 auth-param: token "=" ( token / quoted-string )
_AUTH_PARAM = re.compile(
    rb'\s*([A-Za-z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


def md5_hex(text: bytes) -> bytes:
    return hashlib.md5(text).hexdigest().encode("ascii")


class Directory(Protocol):
    """What authentication uses of the user directory (L{sipxcc.users.UserDirectory})."""

    def lookup(self, name: str) -> User | None: ...


class Owned(Protocol):
    """A call, live or finished: whose it is."""

    @property
    def owner(self) -> str: ...


class AuthFailure(Exception):
    """A request that may not proceed: C{code} 401, 403 or 429 and what to tell the client."""

    def __init__(self, code: int, text: str, challenges: tuple[bytes, ...] = (),
                 retry_after: int | None = None):
        super().__init__(text)
        self.code = code
        self.challenges = challenges
        self.retry_after = retry_after


class StaleNonce(error.UnauthorizedLogin):
    """The digest was right but its nonce expired or is unknown: RFC 7616 C{stale=true}."""


class IAgent(Interface):
    """The avatar interface: an authenticated sipX user (L{sipxcc.users.User})."""


@dataclass(frozen=True)
class Principal:
    """The requester: a trusted peer (any agent, sees every call) or an authenticated user."""

    user: User | None
    trusted: bool = False

    @property
    def identity(self) -> str | None:
        return None if self.user is None else self.user.identity

    def may_see(self, call: Owned) -> bool:
        return self.trusted or call.owner == self.identity


TRUSTED = Principal(None, trusted=True)

SIPX_USER = b"sipx-user"
"""The header by which sipXconfig's redirector names the portal user it authenticated."""


def via_internal_listener(request: http.Request) -> bool:
    """Whether C{request} came in on the internal listener (its Site says C{internal})."""
    return getattr(getattr(request, "site", None), "internal", False) is True


def client_host(request: http.Request) -> str:
    """The address of the connection's peer (no header counts), or "" if it has none."""
    host: str = getattr(request.getClientAddress(), "host", None) or ""
    return host


class DigestNonces:
    """Server-issued nonces with their issue time and the nonce counts already accepted."""

    def __init__(self, clock: Clock, lifetime: float = NONCE_LIFETIME, capacity: int = MAX_NONCES):
        self._clock = clock
        self._lifetime = lifetime
        self._capacity = capacity
        self._issued: OrderedDict[bytes, tuple[float, set[bytes]]] = OrderedDict()

    def issue(self) -> bytes:
        nonce = secrets.token_hex(16).encode("ascii")
        self._issued[nonce] = (self._clock.seconds(), set())
        while len(self._issued) > self._capacity:
            self._issued.popitem(last=False)
        return nonce

    def is_fresh(self, nonce: bytes) -> bool:
        entry = self._issued.get(nonce)
        if entry is None:
            return False
        if self._clock.seconds() - entry[0] > self._lifetime:
            del self._issued[nonce]
            return False
        return True

    def consume(self, nonce: bytes, nc: bytes) -> bool:
        """Accept C{(nonce, nc)} once; False for a replay or a nonce gone meanwhile."""
        entry = self._issued.get(nonce)
        if entry is None or nc in entry[1] or len(entry[1]) >= MAX_NC_PER_NONCE:
            return False
        entry[1].add(nc)
        return True


class PinDigestCredentials(credentials.DigestedCredentials):
    """Digest credentials checked against a stored HA1 in constant time (RFC 7616 §3.4.1)."""

    def __init__(self, username: bytes, method: bytes, realm: bytes, fields: dict[str, bytes],
                 nonces: DigestNonces, fresh: bool):
        super().__init__(username, method, realm, fields)  # type: ignore[no-untyped-call]  # Twisted's, untyped
        self._nonces = nonces
        self._fresh = fresh

    def checkPassword(self, password: bytes) -> bool:
        raise NotImplementedError("only stored HA1 values are supported")

    def checkHash(self, digestHash: bytes) -> bool:
        f = self.fields
        ha2 = md5_hex(self.method + b":" + f["uri"])
        expected = md5_hex(b":".join((digestHash.lower(), f["nonce"], f["nc"], f["cnonce"],
                                      f["qop"], ha2)))
        if not hmac.compare_digest(expected, f["response"].lower()):
            return False
        if not self._fresh:
            raise StaleNonce("digest nonce expired")
        if not self._nonces.consume(f["nonce"], f["nc"]):
            raise error.UnauthorizedLogin("digest nonce count replayed")
        return True


def parse_auth_params(text: bytes) -> dict[str, bytes]:
    """The auth-params of an Authorization header; L{error.LoginFailed} on garbage."""
    fields: dict[str, bytes] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _AUTH_PARAM.match(text, position)
        if match is None or match.end() == position:
            raise error.LoginFailed("malformed digest response")
        name = match.group(1).decode("ascii").lower()
        quoted = match.group(2)
        value = re.sub(rb"\\(.)", rb"\1", quoted) if quoted is not None else match.group(3)
        fields.setdefault(name, value)
        position = match.end()
    return fields


class StrictDigestFactory(guard.DigestCredentialFactory):
    """
    twisted.web.guard's Digest factory with its gaps closed (its own nonces never expire,
    it accepts any algorithm and does not bind C{uri} to the request): our own
    expiring nonces, MD5 + qop=auth only, realm and C{uri} checked against the request.
    """

    def __init__(self, realm: str, nonces: DigestNonces):
        super().__init__(b"md5", realm.encode("utf-8"))  # type: ignore[no-untyped-call]  # Twisted's, untyped
        self.realm = realm.encode("utf-8")
        self.nonces = nonces

    def getChallenge(self, request: http.Request) -> dict[str, bytes]:
        return {"realm": self.realm, "qop": b"auth", "algorithm": b"MD5",
                "nonce": self.nonces.issue()}

    def challenge_header(self, request: http.Request, stale: bool | None = None) -> bytes:
        params = self.getChallenge(request)
        parts = [b'realm="%s"' % params["realm"], b'qop="%s"' % params["qop"],
                 b"algorithm=%s" % params["algorithm"], b'nonce="%s"' % params["nonce"]]
        if stale is not None:
            parts.append(b"stale=true" if stale else b"stale=false")
        return b"Digest " + b", ".join(parts)

    def decode(self, response: bytes, request: http.Request) -> PinDigestCredentials:
        fields = parse_auth_params(response)
        for name in ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce"):
            if not fields.get(name):
                raise error.LoginFailed(f"digest response without {name}")
        if fields.get("algorithm", b"MD5").upper() != b"MD5" or fields["qop"] != b"auth":
            raise error.LoginFailed("unsupported digest algorithm or qop")
        if not re.fullmatch(rb"[0-9A-Fa-f]{8}", fields["nc"]):
            raise error.LoginFailed("malformed nonce count")
        if not hmac.compare_digest(fields["realm"], self.realm):
            raise error.LoginFailed("digest realm does not match")
        if fields["uri"] != request.uri:
            raise error.LoginFailed("digest uri does not match the request")
        fresh = self.nonces.is_fresh(fields["nonce"])
        return PinDigestCredentials(fields["username"], request.method, self.realm, fields,
                                    self.nonces, fresh)


@implementer(ICredentialsChecker)
class PintokenChecker:
    """Checks Basic and Digest credentials against the directory's pintokens (PIN HA1)."""

    credentialInterfaces = (credentials.IUsernameDigestHash, credentials.IUsernamePassword)

    def __init__(self, directory: Directory, realm: str):
        self._directory = directory
        self._realm = realm.encode("utf-8")

    # our avatar ids are identities (str), which twisted.cred passes through untouched
    def requestAvatarId(self, creds: Any) -> defer.Deferred[str]:  # type: ignore[override]
        return defer.maybeDeferred(self._check, creds)

    def _check(self, creds: Any) -> str:
        try:
            name = creds.username.decode("utf-8")
        except UnicodeDecodeError:
            raise error.UnauthorizedLogin("user name is not UTF-8") from None
        user = self._directory.lookup(name)
        if user is None or not user.pintoken:
            raise error.UnauthorizedLogin("unknown user or user without PIN")
        pintoken = user.pintoken.lower().encode("ascii")
        if credentials.IUsernamePassword.providedBy(creds):
            # sipX computes the pintoken over the user name, whichever alias was typed.
            given = md5_hex(user.user_name.encode("utf-8") + b":" + self._realm + b":"
                            + creds.password)
            good = hmac.compare_digest(given, pintoken)
        else:
            good = bool(creds.checkHash(pintoken))
        if not good:
            raise error.UnauthorizedLogin("wrong PIN")
        return user.identity


@implementer(IRealm)
class AgentRealm:
    """Maps an authenticated identity to its L{IAgent} avatar, the directory's user."""

    def __init__(self, directory: Directory):
        self._directory = directory

    def requestAvatar(self, avatarId: str, mind: object,  # type: ignore[override]  # str ids
                      *interfaces: Any) -> tuple[Any, User, Callable[[], None]]:
        if IAgent not in interfaces:
            raise NotImplementedError("only IAgent avatars")
        user = self._directory.lookup(avatarId)
        if user is None:
            raise error.UnauthorizedLogin("user vanished from the directory")
        return IAgent, user, lambda: None


class FailureThrottle:
    """
    Counts authentication failures per key (a client address, or an account);
    C{limit} failures within C{window} seconds block the key for C{block} seconds, logged
    once as the blocking of a C{what}. Memory is bounded by C{max_hosts} keys.
    """

    def __init__(self, clock: Clock, limit: int = FAILURE_LIMIT, window: float = FAILURE_WINDOW,
                 block: float = BLOCK_TIME, max_hosts: int = MAX_TRACKED_HOSTS,
                 what: str = "client"):
        self._clock = clock
        self._what = what
        self._limit, self._window, self._block = limit, window, block
        self._max_hosts = max_hosts
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def retry_after(self, host: str) -> int | None:
        """Seconds until C{host} may try again, or None if it is not blocked."""
        until = self._blocked.get(host)
        if until is None:
            return None
        remaining = until - self._clock.seconds()
        if remaining <= 0:
            del self._blocked[host]
            return None
        return max(1, int(remaining + 0.999))

    def failed(self, host: str) -> None:
        now = self._clock.seconds()
        recent = [t for t in self._failures.pop(host, []) if now - t < self._window]
        recent.append(now)
        if len(recent) >= self._limit:
            self._blocked[host] = now + self._block
            self._trim(self._blocked)
            log.warn("blocking {what} {host} for {seconds:.0f} s after {count} "
                     "authentication failures", what=self._what, host=host,
                     seconds=self._block, count=len(recent))
            return
        self._failures[host] = recent
        self._trim(self._failures)

    def _trim(self, table: OrderedDict[str, Any]) -> None:
        while len(table) > self._max_hosts:
            table.popitem(last=False)


class Authenticator:
    """
    Decides who a request comes from. C{authenticate(request)} returns a Deferred
    L{Principal} or fails with L{AuthFailure}.
    """

    def __init__(self, config: Config, directory: Directory, clock: Clock,
                 nonce_lifetime: float = NONCE_LIFETIME):
        self._config = config
        realm = config.sip.realm
        self._portal = Portal(AgentRealm(directory), [PintokenChecker(directory, realm)])
        self.digest = StrictDigestFactory(realm, DigestNonces(clock, nonce_lifetime))
        self.basic = guard.BasicCredentialFactory(realm.encode("utf-8"))
        self._directory = directory
        self.throttle = FailureThrottle(clock)
        # Per account, whatever the address: guessing a PIN from many addresses. Only
        # accounts that exist are counted (an unknown name has no PIN to guess), so made-up
        # names cannot push the real ones out of the table.
        self.accounts = FailureThrottle(clock, ACCOUNT_FAILURE_LIMIT, ACCOUNT_FAILURE_WINDOW,
                                        ACCOUNT_BLOCK_TIME, MAX_TRACKED_ACCOUNTS,
                                        what="account")
        self._trust: dict[str, bool] = {}

    def _trusted_host(self, host: str) -> bool:
        """config.is_trusted, remembered per peer address (bounded)."""
        known = self._trust.get(host)
        if known is None:
            if len(self._trust) >= 4096:
                self._trust.clear()
            known = self._trust[host] = self._config.is_trusted(host)
        return known

    def trusted(self, request: http.Request) -> Principal | None:
        """
        The principal when it is known without checking credentials (no I/O, no wait): a
        trusted peer over HTTPS, or on the internal listener the L{internal} identity.
        """
        if via_internal_listener(request):
            try:
                return self.internal(request)
            except AuthFailure:
                return None  # authenticate() answers it, and logs why
        host = client_host(request)
        # Trust comes from the TLS connection's peer address only, never from a header.
        if host and request.isSecure() and self._trusted_host(host):
            return TRUSTED
        return None

    def internal(self, request: http.Request) -> Principal:
        """
        Who a request on the internal listener comes from. Only trusted hosts may use that
        listener; C{sipx-user} names the user sipXconfig authenticated, who then gets
        exactly a Digest user's rights; without it the host acts as a trusted peer.
        Raises L{AuthFailure} 403 for an untrusted host, or a malformed (the URL's user
        grammar), repeated or unknown C{sipx-user}. The header is read here only, so
        on every other listener it is ignored.
        """
        host = client_host(request)
        if not (host and self._trusted_host(host)):
            raise AuthFailure(403, "Only trusted hosts may use this port")
        values = request.requestHeaders.getRawHeaders(SIPX_USER)
        if values is None:
            return TRUSTED
        if len(values) != 1:
            raise AuthFailure(403, "More than one sipx-user header")
        try:
            name = check_user("sipx-user", values[0].decode("utf-8"))
        except (UnicodeDecodeError, BadParameter):
            raise AuthFailure(403, "Malformed sipx-user header") from None
        user = self._directory.lookup(name)
        if user is None:
            raise AuthFailure(403, "Unknown sipx-user")
        return Principal(user)

    def authenticate(self, request: http.Request) -> defer.Deferred[Principal]:
        if via_internal_listener(request):
            try:
                return defer.succeed(self.internal(request))
            except AuthFailure as failure:
                named = ", ".join(shown(value) for value in
                                  request.requestHeaders.getRawHeaders(SIPX_USER) or ())
                host = client_host(request)
                log.warn("internal listener: refused a request from {host}: {why} "
                         "(sipx-user: {named})", host=host, why=str(failure), named=named)
                return defer.fail(failure)
        address = client_host(request)
        secure = bool(request.isSecure())
        if secure and address and self._trusted_host(address):
            return defer.succeed(TRUSTED)
        host = client_key(address)  # IPv6 clients are throttled per /64
        retry = self.throttle.retry_after(host)
        if retry is not None:
            return defer.fail(AuthFailure(429, "Too many authentication failures",
                                          retry_after=retry))
        header = request.getHeader(b"authorization") or b""
        scheme, _, response = header.strip().partition(b" ")
        scheme = scheme.lower()
        try:
            if scheme == b"digest":
                creds = self.digest.decode(response, request)
            elif scheme == b"basic" and secure:
                creds = self.basic.decode(response.strip(), request)
            elif scheme == b"basic":
                return defer.fail(self._challenge(
                    request, "Basic authentication is not accepted over plain HTTP"))
            else:
                return defer.fail(self._challenge(request, "Authentication required"))
        except error.LoginFailed as reason:
            return defer.fail(self._failed(request, host, str(reason), stale=False))
        account = self._account(creds)
        retry = None if account is None else self.accounts.retry_after(account)
        if retry is not None:
            return defer.fail(AuthFailure(429, "Too many authentication failures for this "
                                          "account", retry_after=retry))
        d = self._portal.login(creds, None, IAgent)
        return d.addCallbacks(
            lambda result: Principal(cast(User, result[1])),  # AgentRealm's avatar
            lambda failure: self._login_failed(failure, request, host, creds))

    def _login_failed(self, failure: Failure, request: http.Request, host: str,
                      creds: Any) -> Principal:
        if failure.check(StaleNonce):
            failure.trap(StaleNonce)
            raise self._challenge(request, "Authentication required", stale=True)
        failure.trap(error.LoginFailed)
        user = creds.username.decode("utf-8", "replace")
        account = self._account(creds)
        if account is not None:
            self.accounts.failed(account)
        raise self._failed(request, host, f"{failure.getErrorMessage()} (user {user!r})",
                           stale=False)

    def _account(self, creds: Any) -> str | None:
        """The identity of the directory user the credentials name, None if there is none."""
        try:
            name = creds.username.decode("utf-8")
        except UnicodeDecodeError:
            return None
        user = self._directory.lookup(name)
        return None if user is None else user.identity

    def _failed(self, request: http.Request, host: str, why: str, stale: bool) -> AuthFailure:
        log.info("authentication failed from {host}: {why}", host=host, why=why)
        self.throttle.failed(host)
        return self._challenge(request, "Authentication failed", stale=stale)

    def _challenge(self, request: http.Request, text: str,
                   stale: bool | None = None) -> AuthFailure:
        challenges = [self.digest.challenge_header(request, stale)]
        if request.isSecure():
            challenges.append(b'Basic realm="%s"' % self.digest.realm)
        return AuthFailure(401, text, tuple(challenges))


def same_user(directory: Directory, user: User, name: str) -> bool:
    """Whether C{name} (user name, alias, identity or addr-spec) refers to C{user}."""
    if name == user.identity or name in user.names:
        return True
    other = directory.lookup(name)
    return other is not None and other.identity == user.identity


def authorize(principal: Principal, agent: User, calling_user: str, directory: Directory,
              agents: Iterable[str]) -> None:
    """
    The authenticated user must be the agent, and may act for another calling
    user only when listed in C{users.agents}. Trusted peers may act as anyone.
    """
    if principal.trusted:
        return
    user = principal.user
    assert user is not None  # a principal that is not trusted is a user
    if user.identity != agent.identity:
        raise AuthFailure(403, f"{user.user_name} may not act as agent {agent.user_name}")
    if same_user(directory, user, calling_user):
        return
    if not (user.names & frozenset(agents)):
        raise AuthFailure(403, f"{user.user_name} may not place calls for {calling_user}")
