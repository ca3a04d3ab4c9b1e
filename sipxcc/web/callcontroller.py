"""
The REST resources: C{/callcontroller/{callingUser}/{calledUser}} (also under
C{/sipxconfig/rest/my/redirect/}), C{/calls} and C{/calls/{id}}.

Each request runs: method check (405) → cross-origin and body checks (403, 415;
sipxcc.web.intake) → authentication (401/429) → parameters (400, from the query string
only) → agent lookup (403) → authorization (403) → the call store, whose answers are
Deferreds (at once for the memory backend, after a round trip to Redis for the shared
one). Whatever goes wrong is answered with a processing-status document
(sipxcc.web.errors); an unexpected fault is logged and answered 500 with a generic text.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.server import Request

from sipxcc.calls.call import CallRequest
from sipxcc.calls.store import CallStore, CallView
from sipxcc.config import Config
from sipxcc.logs import logger
from sipxcc.users import User, UserDirectory
from sipxcc.web import intake, params, render
from sipxcc.web.auth import Authenticator, Principal, authorize
from sipxcc.web.errors import ApiError, PathResource, error_reply
from sipxcc.web.idempotency import Idempotency
from sipxcc.web.reply import Answer, Reply, send, status_reply, wants_json

log = logger(__name__)

REDIRECT_PREFIX = (b"sipxconfig", b"rest", b"my", b"redirect")
OK_TEXT = "Success"
CALL_NOT_FOUND = "Call not found."


@dataclass
class WebContext:
    """What the resources share: configuration, users, calls, authentication, render cache."""

    config: Config
    directory: UserDirectory
    store: CallStore
    auth: Authenticator
    cache: render.StatusCache = field(default_factory=render.StatusCache)
    idempotency: Idempotency | None = None  # Idempotency-Key on POST


class ApiResource(resource.Resource):
    """A leaf whose C{handle(request, principal)} answers with a L{Reply}, or a Deferred
    of one, once authenticated; the reply is written unless the client left meanwhile."""

    isLeaf = True
    allowed: tuple[bytes, ...] = ()

    def __init__(self, context: WebContext):
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        self.context = context

    def allowed_for(self, request: Request) -> tuple[bytes, ...]:
        """The methods C{request}'s path allows (405 names them in C{Allow})."""
        return self.allowed

    def render(self, request: Request) -> int:
        allowed = self.allowed_for(request)
        if request.method not in allowed:
            allow = b", ".join(sorted(allowed))
            send(request, status_reply(request, 405, "Method not allowed",
                                       [(b"allow", allow)]))
            return server.NOT_DONE_YET
        try:
            intake.refuse_cross_origin(request)
            intake.refuse_body(request)
        except ApiError as error:
            send(request, status_reply(request, error.code, str(error)))
            return server.NOT_DONE_YET
        principal = self.context.auth.trusted(request)
        if principal is not None:  # a trusted peer: no credentials to check
            answer = self._handled(request, principal)
        else:
            authenticated = defer.maybeDeferred(self.context.auth.authenticate, request)
            answer = authenticated.addCallback(
                lambda principal: self._handled(request, principal))
        gone: list[Failure] = []
        answer.addBoth(self._write, request, gone)
        if not request.finished:  # not answered at once: the client may leave meanwhile
            request.notifyFinish().addErrback(gone.append)
        return server.NOT_DONE_YET

    def _handled(self, request: Request, principal: Principal) -> defer.Deferred[Reply]:
        """What L{handle} answers, as a Deferred (failed if it raised)."""
        try:
            answer = self.handle(request, principal)
        except Exception:
            return defer.fail()
        return answer if isinstance(answer, defer.Deferred) else defer.succeed(answer)

    def _write(self, answer: Reply | Failure, request: Request, gone: list[Failure]) -> None:
        """Write the reply, or the error's (sipxcc.web.errors), unless the client left."""
        if gone:
            return
        try:
            reply = self._failed(answer, request) if isinstance(answer, Failure) else answer
            self.respond(request, reply)
        except Exception:
            log.failure("could not answer a request")

    def respond(self, request: Request, reply: Reply) -> None:
        """Write C{reply} (a streaming resource may have answered already)."""
        send(request, reply)

    def handle(self, request: Request, principal: Principal) -> Answer:
        raise NotImplementedError

    def _failed(self, failure: Failure, request: Request) -> Reply:
        return error_reply(request, failure)

    def ok(self, request: Request, call: CallView) -> Reply:
        reply = status_reply(request, 200, OK_TEXT)
        reply.headers.append((b"location", b"/calls/" + call.id.encode("ascii")))
        return reply

    def call_reply(self, request: Request, call: CallView) -> Reply:
        as_json = wants_json(request)
        body = render.call_document(call, as_json, self.context.cache)
        return Reply(200, body, render.JSON_TYPE if as_json else render.XML_TYPE)

    def hang_up(self, request: Request, principal: Principal, call: CallView | None
                ) -> defer.Deferred[Reply]:
        """DELETE: end C{call} (on whichever node runs it)."""
        if call is None or not principal.may_see(call):
            raise ApiError(404, CALL_NOT_FOUND)
        return self.context.store.hangup(call.id).addCallback(self._hung_up, request)

    def _hung_up(self, known: bool, request: Request) -> Reply:
        if not known:  # forgotten meanwhile
            raise ApiError(404, CALL_NOT_FOUND)
        return status_reply(request, 200, OK_TEXT)


class CallControllerResource(ApiResource):
    """C{/callcontroller/{callingUser}/{calledUser}}: POST places, GET shows, DELETE ends."""

    allowed = (b"DELETE", b"GET", b"POST")

    def handle(self, request: Request, principal: Principal) -> Answer:
        if request.method == b"POST" and self.context.idempotency is not None:
            return self.context.idempotency.run(request, principal,
                                                lambda: self._handle(request, principal))
        return self._handle(request, principal)

    def _handle(self, request: Request, principal: Principal) -> Answer:
        path = request.postpath or []
        if not _two_segments(path):
            raise ApiError(404, "Not found")
        calling_user = params.decode_segment("callingUser", path[0])
        called_user = params.decode_segment("calledUser", path[1])
        config = self.context.config
        query = intake.query(request)
        if request.method == b"POST":
            wanted = params.parse_call_parameters(
                query, calling_user, called_user, domain=config.sip.domain,
                default_timeout=config.calls.timeout,
                default_cache_time=config.calls.result_cache_time,
                callback_hosts=tuple(config.calls.callback_hosts))
            agent = self._agent(wanted.agent, principal, calling_user)
            if wanted.action == params.TRANSFER:
                return self._transfer(request, agent, wanted)
            placed = self.context.store.place(self._call_request(agent, wanted))
            return placed.addCallback(lambda call: self.ok(request, call))
        calling = params.addr_spec(params.check_user("callingUser", calling_user),
                                   config.sip.domain)
        called = params.addr_spec(params.check_user("calledUser", called_user),
                                  config.sip.domain)
        method = params.parse_method(query)
        agent = self._agent(params.parse_agent(query, calling_user), principal, calling_user)
        found = self.context.store.lookup((agent.identity, calling, called))
        if request.method == b"DELETE":
            return found.addCallback(lambda call: self.hang_up(request, principal, call))
        return found.addCallback(self._show, request, principal, method)

    def _show(self, call: CallView | None, request: Request, principal: Principal,
              method: str) -> Reply:
        if call is None or not principal.may_see(call):
            as_json = wants_json(request)
            return Reply(200, render.empty_document(method, as_json),
                         render.JSON_TYPE if as_json else render.XML_TYPE)
        return self.call_reply(request, call)

    def _agent(self, name: str, principal: Principal, calling_user: str) -> User:
        agent = self.context.directory.lookup(name)
        if agent is None:
            raise ApiError(403, f"could not find credentials for {name}")
        authorize(principal, agent, calling_user, self.context.directory,
                  self.context.config.users.agents)
        return agent

    def _call_request(self, agent: User, wanted: params.CallParameters) -> CallRequest:
        """The call C{agent} asks for, with the calling and the called party's directory
        entries, and C{callerId} checked against them (L{params.presentable_caller_id})."""
        calling_user = self._directory_entry(wanted.calling)
        if wanted.caller_id is not None:
            wanted = replace(wanted, caller_id=params.presentable_caller_id(
                wanted.caller_id, self._directory_entry(wanted.caller_id),
                agent=agent, calling=wanted.calling, calling_user=calling_user))
        return CallRequest.wanted_by(agent, wanted, self._directory_entry(wanted.called),
                                     calling_user=calling_user)

    def _directory_entry(self, party: str) -> User | None:
        """A party's (addr-spec) directory entry: by identity, or, in our domain, by user
        name or alias; None for a number or URI the directory does not know."""
        directory = self.context.directory
        user, _, host = party.partition("@")
        found = directory.lookup(party)
        if found is None and host.lower() == self.context.config.sip.domain.lower():
            found = directory.lookup(user)
        return found

    def _transfer(self, request: Request, agent: User,
                  wanted: params.CallParameters) -> defer.Deferred[Reply]:
        if wanted.target is None:
            raise ApiError(400, "Need a transfer target parameter")
        target = wanted.target
        found = self.context.store.lookup((agent.identity, wanted.calling, wanted.called))

        def transfer(call: CallView | None) -> defer.Deferred[Reply]:
            if call is None:
                raise ApiError(404, CALL_NOT_FOUND)
            # the transfer request's own timeout: how long the target may ring
            sent = self.context.store.transfer(call.id, target, wanted.timeout)

            def transferred(known: bool) -> Reply:
                if not known:  # forgotten meanwhile
                    raise ApiError(404, CALL_NOT_FOUND)
                return self.ok(request, call)
            return sent.addCallback(transferred)
        return found.addCallback(transfer)


class CallsResource(ApiResource):
    """C{/calls}: the requester's calls, newest first; C{/calls/{id}}: one call."""

    allowed = (b"DELETE", b"GET")
    events: resource.Resource | None = None  # /calls/{id}/events (sipxcc.web.stream)

    def render(self, request: Request) -> int:
        path = request.postpath or []
        if self.events is not None and len(path) == 2 and path[1] == b"events":
            status: int = self.events.render(request)
            return status
        return super().render(request)

    def allowed_for(self, request: Request) -> tuple[bytes, ...]:
        path = request.postpath
        return (b"GET",) if not path or path == [b""] else self.allowed

    def handle(self, request: Request, principal: Principal) -> Answer:
        path = request.postpath
        if not path or path == [b""]:
            limit = params.parse_limit(intake.query(request))
            owner = None if principal.trusted else principal.identity
            listed = self.context.store.calls_of(owner, limit)
            return listed.addCallback(self._list, request)
        if len(path) != 1 or b"/" in path[0]:
            raise ApiError(404, "Not found")
        call_id = params.decode_segment("id", path[0])
        found = self.context.store.get(call_id)
        if request.method == b"DELETE":
            return found.addCallback(lambda call: self.hang_up(request, principal, call))
        return found.addCallback(self._show, request, principal)

    def _list(self, calls: list[CallView], request: Request) -> Reply:
        if wants_json(request):
            return Reply(200, render.calls_json(calls), render.JSON_TYPE)
        return Reply(200, render.calls_xml(calls))

    def _show(self, call: CallView | None, request: Request, principal: Principal) -> Reply:
        if call is None or not principal.may_see(call):
            raise ApiError(404, CALL_NOT_FOUND)
        if wants_json(request):
            return Reply(200, render.call_json(call), render.JSON_TYPE)
        return self.call_reply(request, call)


def _two_segments(path: list[bytes]) -> bool:
    # twisted.web splits the path at "/" before percent-decoding: "%2F" decodes into one.
    return len(path) == 2 and all(segment and b"/" not in segment for segment in path)


def install(root: resource.Resource, context: WebContext) -> None:
    """Put the REST resources under C{root} (a L{PathResource})."""
    controller = CallControllerResource(context)
    root.putChild(b"callcontroller", controller)
    root.putChild(b"calls", CallsResource(context))
    node = root
    for name in REDIRECT_PREFIX:
        child = PathResource()
        node.putChild(name, child)
        node = child
    node.putChild(b"callcontroller", controller)
