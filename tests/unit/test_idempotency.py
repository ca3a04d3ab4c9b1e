"""Idempotency-Key on POST: one call per key, 409 while in progress, 422 for other
parameters, 400 for a bad key; the store's bounds and expiry; the asynchronous store
interface (nothing runs before the key is claimed, a store out of reach is 503, only the
claiming request stores or drops the key) and the bound on a remembered answer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lxml import etree
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipxcc.calls.errors import RegistryUnavailable, TooManyCalls
from sipxcc.web.auth import TRUSTED
from sipxcc.web.callcontroller import WebContext, install
from sipxcc.web.errors import ApiError, PathResource, Reply, error_reply
from sipxcc.web.idempotency import MAX_ANSWER, Entry, Idempotency, MemoryStore
from tests.unit.webfakes import WebHarness, WebRequest, basic

URI = "/callcontroller/user1/user2"
NS = "{http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00}"
DAY = 86400


class Harness(WebHarness):
    """The resource tree with an Idempotency on a MemoryStore."""

    def __init__(self, store=None, **store_options):
        super().__init__(trusted=("127.0.0.0/8",))
        # not "store or ...": an empty MemoryStore is false (it has a length)
        self.store = store if store is not None else MemoryStore(self.clock, **store_options)
        self.root = PathResource()
        install(self.root, WebContext(self.config, self.directory, self.call_store, self.auth,
                                      idempotency=Idempotency(self.store, self.clock, DAY)))

    def post(self, key: bytes | None, uri: str = URI, user: str = "user1", **options):
        headers = basic(user)
        if key is not None:
            headers[b"Idempotency-Key"] = key
        return self.request(b"POST", uri, headers=headers, **options)


def fired(d: defer.Deferred):
    """What a Deferred that has fired fired with (raising its failure's exception)."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def code_and_text(request) -> tuple[int, int, str]:
    root = etree.fromstring(request.body)
    return request.responseCode, int(root.find(NS + "error-code").text), \
        root.find(NS + "error-text").text


@pytest.fixture
def web():
    return Harness()


def test_a_repeated_key_replays_the_answer_and_places_no_second_call(web):
    first = web.post(b"order-4711")
    again = web.post(b"order-4711")
    assert len(web.registry.calls) == 1
    assert again.responseCode == first.responseCode == 200
    assert again.body == first.body
    assert again.header(b"location") == first.header(b"location")
    assert again.header(b"idempotent-replayed") == b"true"
    assert first.header(b"idempotent-replayed") is None


def test_without_a_key_every_post_places_a_call(web):
    web.post(None)
    web.post(None, uri=URI + "?timeout=30")
    assert len(web.registry.calls) == 2


def test_the_same_key_with_other_parameters_is_422(web):
    web.post(b"k1", uri=URI + "?timeout=30")
    other = web.post(b"k1", uri=URI + "?timeout=31")
    assert code_and_text(other)[:2] == (422, 422)
    assert "Idempotency-Key" in code_and_text(other)[2]
    assert len(web.registry.calls) == 1


def test_parameter_order_does_not_matter(web):
    web.post(b"k1", uri=URI + "?timeout=30&subject=hi")
    again = web.post(b"k1", uri=URI + "?subject=hi&timeout=30")
    assert again.header(b"idempotent-replayed") == b"true"
    assert len(web.registry.calls) == 1


def test_both_urls_of_the_resource_are_the_same_request_other_users_are_not(web):
    web.post(b"k1")
    again = web.post(b"k1", uri="/sipxconfig/rest/my/redirect/callcontroller/user1/user2")
    assert again.header(b"idempotent-replayed") == b"true"
    assert web.post(b"k1", uri="/callcontroller/user1/user3").responseCode == 422
    assert len(web.registry.calls) == 1


def test_keys_are_per_user(web):
    web.post(b"k1", uri="/callcontroller/user1/user2")
    other = web.post(b"k1", uri="/callcontroller/user2/user1", user="user2")
    assert other.responseCode == 200 and other.header(b"idempotent-replayed") is None
    assert len(web.registry.calls) == 2


def test_trusted_hosts_share_one_scope(web):
    web.request(b"POST", URI, client="127.0.0.1", headers={b"Idempotency-Key": b"t"})
    again = web.request(b"POST", URI, client="127.0.0.2",
                        headers={b"Idempotency-Key": b"t"})
    assert again.header(b"idempotent-replayed") == b"true"
    assert len(web.registry.calls) == 1


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"tab\there", b"caf\xc3\xa9", b"a\x7f"])
def test_a_malformed_key_is_400_naming_the_header(web, key):
    request = web.post(key)
    code, _, text = code_and_text(request)
    assert code == 400 and "Idempotency-Key" in text
    assert not web.registry.calls


def test_the_longest_key_is_accepted(web):
    assert web.post(b"~" * 255).responseCode == 200


def test_a_failed_post_is_not_remembered(web):
    web.registry.error = TooManyCalls("Too many calls")
    refused = web.post(b"k1")
    assert (refused.responseCode, refused.header(b"retry-after")) == (503, b"5")
    web.registry.error = None
    retry = web.post(b"k1")
    assert retry.responseCode == 200 and retry.header(b"idempotent-replayed") is None
    assert len(web.registry.calls) == 1


def test_a_key_expires_after_the_ttl(web):
    web.post(b"k1")
    web.clock.advance(DAY - 1)
    assert web.post(b"k1").header(b"idempotent-replayed") == b"true"
    web.clock.advance(1)
    assert web.post(b"k1").header(b"idempotent-replayed") is None
    assert len(web.registry.calls) == 2


def test_while_the_first_is_in_progress_the_same_key_is_409():
    clock = Clock()
    idempotency = Idempotency(MemoryStore(clock), clock, DAY)
    first = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})
    pending = defer.Deferred()
    result = idempotency.run(first, TRUSTED, lambda: pending)
    second = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})
    with pytest.raises(ApiError) as raised:
        fired(idempotency.run(second, TRUSTED, lambda: Reply(200, b"second")))
    assert raised.value.code == 409
    pending.callback(Reply(200, b"first"))
    assert fired(result).body == b"first"
    replay = fired(idempotency.run(second, TRUSTED, lambda: Reply(200, b"second")))
    assert replay.body == b"first" and (b"idempotent-replayed", b"true") in replay.headers


def test_the_store_keeps_at_most_max_per_user_keys_per_user_oldest_forgotten():
    clock = Clock()
    store = MemoryStore(clock, max_keys=100, max_per_user=3)
    for n in range(5):
        store.put("alice", f"k{n}", Entry(b"f", None, DAY))
    store.put("bob", "k0", Entry(b"f", None, DAY))
    assert store.count_of("alice") == 3 and len(store) == 4
    assert store.get("alice", "k0") is None and store.get("alice", "k1") is None
    assert store.get("alice", "k4") is not None and store.get("bob", "k0") is not None
    assert store.evicted == 2


def test_the_store_keeps_at_most_max_keys_in_all_oldest_forgotten():
    clock = Clock()
    store = MemoryStore(clock, max_keys=3, max_per_user=10)
    for user in ("a", "b", "c", "d"):
        store.put(user, "k", Entry(b"f", None, DAY))
    assert len(store) == 3 and store.get("a", "k") is None and store.get("d", "k") is not None


def test_expire_forgets_expired_keys():
    clock = Clock()
    store = MemoryStore(clock)
    store.put("a", "k1", Entry(b"f", None, 10))
    store.put("a", "k2", Entry(b"f", None, 20))
    clock.advance(15)
    store.expire()
    assert len(store) == 1 and store.count_of("a") == 1


def test_the_fingerprint_is_the_query_string_not_a_body():
    from sipxcc.web.idempotency import fingerprint

    def post(uri: bytes, args: dict[bytes, list[bytes]]):
        return SimpleNamespace(uri=uri, postpath=[b"user1", b"user2"], args=args)

    plain = fingerprint(post(b"/callcontroller/user1/user2?subject=a&timeout=5", {}))
    # the same parameters in another order are the same request
    assert fingerprint(post(b"/callcontroller/user1/user2?timeout=5&subject=a", {})) == plain
    # fields twisted.web merged in from a body do not count (a body is refused anyway)
    merged = {b"subject": [b"a"], b"timeout": [b"5"], b"autoAnswer": [b"true"]}
    assert fingerprint(post(b"/callcontroller/user1/user2?subject=a&timeout=5", merged)) == plain
    # a repeated name whose first value differs is another request (the first one counts)
    assert (fingerprint(post(b"/x/user1/user2?subject=a&subject=b", {}))
            != fingerprint(post(b"/x/user1/user2?subject=b&subject=a", {})))


# --- what the client is told, and which answers are remembered ------------------------------

def test_the_refusals_say_exactly_why(web):
    assert code_and_text(web.post(b"tab\there")) == (
        400, 400, "Bad header Idempotency-Key: 1 to 255 printable ASCII characters")
    web.post(b"k1", uri=URI + "?timeout=30")
    assert code_and_text(web.post(b"k1", uri=URI + "?timeout=31")) == (
        422, 422, "Idempotency-Key already used with other parameters")


def test_a_key_in_progress_is_409_come_back_in_a_second():
    clock = Clock()
    idempotency = Idempotency(MemoryStore(clock), clock, DAY)
    first = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})
    idempotency.run(first, TRUSTED, defer.Deferred)  # still running
    second = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})
    with pytest.raises(ApiError) as raised:
        fired(idempotency.run(second, TRUSTED, lambda: Reply(200, b"second")))
    answer = error_reply(second, Failure(raised.value))
    assert (answer.code, answer.headers) == (409, [(b"retry-after", b"1")])
    assert etree.fromstring(answer.body).find(NS + "error-text").text == (
        "A request with this Idempotency-Key is still being processed")


def test_a_key_may_contain_spaces(web):
    assert web.post(b"order 4711").responseCode == 200
    assert web.post(b"order 4711").header(b"idempotent-replayed") == b"true"


def run_twice(first_answer) -> list[str]:
    """Run a POST answered C{first_answer}, then the same POST again: which ran."""
    clock = Clock()
    idempotency = Idempotency(MemoryStore(clock), clock, DAY)
    ran: list[str] = []

    def request():
        return WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})

    def first():
        ran.append("first")
        return first_answer()
    result = idempotency.run(request(), TRUSTED, first)
    if isinstance(result, defer.Deferred):
        result.addErrback(lambda _: None)
    idempotency.run(request(), TRUSTED, lambda: ran.append("second") or Reply(200, b""))
    return ran


@pytest.mark.parametrize("code", [299])
def test_a_2xx_answer_is_remembered(code):
    assert run_twice(lambda: Reply(code, b"")) == ["first"]


@pytest.mark.parametrize("code", [300, 409])
def test_an_answer_that_is_not_2xx_is_forgotten(code):
    assert run_twice(lambda: Reply(code, b"")) == ["first", "second"]


def test_a_post_that_fails_later_is_forgotten():
    assert run_twice(lambda: defer.fail(RuntimeError("no"))) == ["first", "second"]
    assert run_twice(lambda: defer.succeed(Reply(503, b""))) == ["first", "second"]


def test_a_key_written_again_counts_as_the_newest():
    store = MemoryStore(Clock(), max_keys=100, max_per_user=2)
    store.put("alice", "k1", Entry(b"f", None, DAY))
    store.put("alice", "k2", Entry(b"f", None, DAY))
    store.put("alice", "k1", Entry(b"g", None, DAY))  # k1 again: now the newest
    store.put("alice", "k3", Entry(b"f", None, DAY))
    assert store.get("alice", "k2") is None
    assert store.get("alice", "k1").fingerprint == b"g"
    store = MemoryStore(Clock(), max_keys=2, max_per_user=10)
    store.put("a", "k", Entry(b"f", None, DAY))
    store.put("b", "k", Entry(b"f", None, DAY))
    store.put("a", "k", Entry(b"g", None, DAY))
    store.put("c", "k", Entry(b"f", None, DAY))
    assert store.get("b", "k") is None and store.get("a", "k") is not None


def test_an_expired_key_is_forgotten_at_its_expiry_time():
    clock = Clock()
    store = MemoryStore(clock)
    store.put("a", "k1", Entry(b"f", None, 10))
    store.put("a", "k2", Entry(b"f", None, 10))
    clock.advance(10)
    assert store.get("a", "k1") is None
    assert len(store) == 1  # read after expiry: gone from memory too
    store.expire()
    assert len(store) == 0 and store.count_of("a") == 0


# --- the asynchronous store interface ---------------------------------------------------

class SlowStore(MemoryStore):
    """A memory store whose claims are answered when the test says (as over a network)."""

    def __init__(self, clock):
        super().__init__(clock)
        self.waiting: list[tuple[defer.Deferred, Entry | None]] = []

    def claim(self, scope, key, entry):
        d = defer.Deferred()
        self.waiting.append((d, fired(super().claim(scope, key, entry))))
        return d

    def answer(self):
        waiting, self.waiting = self.waiting, []
        for d, found in waiting:
            d.callback(found)


def test_nothing_runs_before_the_store_answered_the_claim():
    clock = Clock()
    store = SlowStore(clock)
    idempotency = Idempotency(store, clock, DAY)
    ran = []
    request = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})
    answer = idempotency.run(request, TRUSTED, lambda: ran.append(1) or Reply(200, b"ok"))
    assert ran == [] and not answer.called
    store.answer()
    assert ran == [1] and fired(answer).body == b"ok"


class UnreachableStore:
    """A shared store that cannot be reached (Redis down)."""

    def claim(self, scope, key, entry):
        return defer.fail(RegistryUnavailable("Redis is not connected"))

    remember = release = claim


def test_a_store_out_of_reach_is_503_with_retry_after_and_no_call_is_placed():
    web = Harness(store=UnreachableStore())
    refused = web.post(b"k1")
    assert (refused.responseCode, refused.header(b"retry-after")) == (503, b"5")
    assert code_and_text(refused)[2] == "The call registry is unavailable; try again later"
    assert not web.registry.calls
    assert web.post(None).responseCode == 200  # without a key the store is not asked


class ForgetfulStore(MemoryStore):
    """Claims, but cannot store an answer (Redis went away meanwhile)."""

    def remember(self, scope, key, entry):
        return defer.fail(RegistryUnavailable("Redis connection lost"))


def test_an_answer_the_store_could_not_keep_still_reaches_the_client():
    web = Harness(store=ForgetfulStore(Clock()))
    placed = web.post(b"k1")
    assert placed.responseCode == 200 and len(web.registry.calls) == 1


class UnreleasingStore(MemoryStore):
    """Claims, but cannot drop a claim (Redis went away meanwhile)."""

    def release(self, scope, key, token):
        return defer.fail(RegistryUnavailable("Redis connection lost"))


def test_a_failed_request_whose_claim_could_not_be_dropped_still_gets_its_own_error():
    clock = Clock()
    idempotency = Idempotency(UnreleasingStore(clock), clock, DAY)
    request = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})
    failing = defer.fail(ApiError(403, "could not find credentials for nobody"))
    with pytest.raises(ApiError) as raised:
        fired(idempotency.run(request, TRUSTED, lambda: failing))
    assert raised.value.code == 403

def test_only_the_request_that_claimed_a_key_stores_its_answer_or_drops_it():
    store = MemoryStore(Clock())
    assert fired(store.claim("a", "k", Entry(b"f", None, DAY, "mine"))) is None
    assert fired(store.claim("a", "k", Entry(b"f", None, DAY, "other"))).token == "mine"
    fired(store.release("a", "k", "other"))  # not its claim: nothing happens
    fired(store.remember("a", "k", Entry(b"f", Reply(200, b"x"), DAY, "other")))
    assert store.get("a", "k").reply is None and store.get("a", "k").token == "mine"
    fired(store.remember("a", "k", Entry(b"f", Reply(200, b"x"), DAY, "mine")))
    assert store.get("a", "k").reply.body == b"x"
    fired(store.release("a", "k", "mine"))
    assert store.get("a", "k") is None


def test_a_claim_lasts_the_claim_lifetime_not_the_keys_ttl():
    clock = Clock()
    idempotency = Idempotency(MemoryStore(clock), clock, DAY, claim_lifetime=60)
    request = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})
    idempotency.run(request, TRUSTED, defer.Deferred)  # never answers (its node died)
    clock.advance(59)
    with pytest.raises(ApiError):
        fired(idempotency.run(request, TRUSTED, lambda: Reply(200, b"")))
    clock.advance(1)
    assert fired(idempotency.run(request, TRUSTED, lambda: Reply(200, b"again"))).body == (
        b"again")



def test_a_request_answering_after_its_claim_lapsed_leaves_the_retrys_claim_alone():
    clock = Clock()
    idempotency = Idempotency(MemoryStore(clock), clock, DAY, claim_lifetime=60)
    request = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})
    late, retry = defer.Deferred(), defer.Deferred()
    first = idempotency.run(request, TRUSTED, lambda: late)
    clock.advance(60)  # its claim lapsed: a retry takes the key over
    second = idempotency.run(request, TRUSTED, lambda: retry)
    late.callback(Reply(200, b"late"))
    assert fired(first).body == b"late"
    with pytest.raises(ApiError) as in_progress:  # the retry's claim still holds the key
        fired(idempotency.run(request, TRUSTED, lambda: Reply(200, b"third")))
    assert in_progress.value.code == 409
    retry.callback(Reply(200, b"retry"))
    assert fired(second).body == b"retry"
    replayed = fired(idempotency.run(request, TRUSTED, lambda: Reply(200, b"third")))
    assert replayed.body == b"retry"


def test_a_handler_that_raises_frees_the_key_and_its_error_is_answered():
    clock = Clock()
    idempotency = Idempotency(MemoryStore(clock), clock, DAY)
    request = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})

    def refused():
        raise ApiError(403, "could not find credentials for nobody")
    with pytest.raises(ApiError) as raised:
        fired(idempotency.run(request, TRUSTED, refused))
    assert (raised.value.code, str(raised.value)) == (403, "could not find credentials for nobody")
    assert fired(idempotency.run(request, TRUSTED, lambda: Reply(200, b"ran"))).body == b"ran"

# --- the bound on a remembered answer ---------------------------------------------------

def answer_of(size: int) -> Reply:
    """A 2xx answer of exactly C{size} bytes: its body, its content type (10 bytes) and
    one header (8 + 8 bytes), counted here by hand."""
    return Reply(200, b"x" * (size - 26), b"text/plain", [(b"location", b"/calls/x")])


def test_an_answer_at_the_bound_is_remembered_one_byte_more_is_not():
    assert run_twice(lambda: answer_of(MAX_ANSWER)) == ["first"]
    assert run_twice(lambda: answer_of(MAX_ANSWER + 1)) == ["first", "second"]


def test_an_answer_not_remembered_for_its_size_is_counted_and_the_key_freed():
    clock = Clock()
    store = MemoryStore(clock)
    idempotency = Idempotency(store, clock, DAY, max_answer=100)
    request = WebRequest(b"POST", URI.encode(), headers={b"Idempotency-Key": b"k"})
    assert fired(idempotency.run(request, TRUSTED, lambda: answer_of(101))).code == 200
    assert idempotency.too_large == 1 and len(store) == 0
    assert fired(idempotency.run(request, TRUSTED, lambda: answer_of(101))).code == 200
    assert idempotency.too_large == 2  # the retry ran again, and was counted again
