"""
The call registry shared by several nodes through Redis. Each node keeps the calls it
places (their SIP side) in its own L{CallRegistry}; Redis holds every call's record, its
status lines and the cluster-wide limits, so that any node can answer GET for any call.

Keys (C{P} is the prefix, C{sipxcc:} by default):

 - C{P call:<id>}: a hash, the call's record (owner, calling, called, mode, state,
   ended, created, node), expiring C{result_cache_time} seconds after the call ended;
 - C{P lines:<id>}: a list, the call's status lines in order (same expiry);
 - C{P key:<owner> <calling> <called>}: the id of the latest call for that key;
 - C{P active}, C{P active:<owner>}: sets of the slots of the calls in progress (the limits);
 - C{P busy:<owner> <calling> <called>}: the slot and mode of the call in progress for a key;
 - C{P slots:<node>}: a hash, slot -> owner and key, of the node's calls in progress
   (what is released when the node is lost);
 - C{P recent}, C{P recent:<owner>}: sorted sets of call ids by creation time (GET /calls).

No PIN, passtoken or callback secret is ever written: only the user identity, the
calling and called users, the mode and the status lines.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from typing import Any, NamedTuple

from twisted.internet import defer

from sipxcc.calls.call import (
    INVITE,
    MAX_EVENTS,
    MAX_FINAL_EVENTS,
    Call,
    CallRequest,
    DialogInfo,
    StatusEvent,
    new_call_id,
)
from sipxcc.calls.errors import AgentLimit, CallInProgress, RegistryUnavailable, TooManyCalls
from sipxcc.calls.hub import CallEvent
from sipxcc.calls.registry import CallRegistry
from sipxcc.logs import logger

log = logger(__name__)

#: writes kept while Redis is unreachable; beyond, the oldest status line (or state) is
#: dropped to make room, a call's end only when nothing else is left to drop
MAX_BUFFERED_WRITES = 50_000
#: entries kept in each "recent calls" index (older ones are trimmed)
MAX_RECENT = 100_000
#: seconds status lines, states and ends are collected before they go to Redis in one
#: pipeline (0: at the end of each reactor turn)
WRITE_WINDOW = 0.015
#: writes queued that are sent at once, without waiting for the end of the window
FLUSH_AT = 1000

# A new call: the cluster-wide limits (the one call in progress per key, max_calls, per
# agent), and once granted, in the same command, its limit slot, its record, its key and
# its places in the "recent calls" indexes (trimmed to ARGV[9] entries once beyond them).
# Returns the verdict, the slot of the call it replaces and that call's id (or '', '').
# KEYS: active, active:owner, busy:key, slots:node, call:<id>, key:<key>, recent,
#       recent:<owner>
# ARGV: slot, owner, method, max_calls, max_per_agent, slot record, call id, created,
#       MAX_RECENT, the record's field, value, ...
PLACE = """
local replacing = 0
local busy = redis.call('GET', KEYS[3])
local previous = ''
if busy then
  local sep = string.find(busy, ' ', 1, true)
  local pslot, pmode = string.sub(busy, 1, sep - 1), string.sub(busy, sep + 1)
  if redis.call('SISMEMBER', KEYS[1], pslot) == 1 then
    if pmode == 'INVITE' or ARGV[3] == 'INVITE' then return {'in_progress', '', ''} end
    replacing = 1
    previous = pslot
  end
end
if redis.call('SCARD', KEYS[1]) - replacing >= tonumber(ARGV[4]) then
  return {'too_many', '', ''}
end
if redis.call('SCARD', KEYS[2]) - replacing >= tonumber(ARGV[5]) then
  return {'agent_limit', '', ''}
end
if replacing == 1 then
  redis.call('SREM', KEYS[1], previous)
  redis.call('SREM', KEYS[2], previous)
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
redis.call('HSET', KEYS[5], unpack(ARGV, 10))
local before = ''
if replacing == 1 then before = redis.call('GET', KEYS[6]) or '' end
redis.call('SET', KEYS[6], ARGV[7])
local most = tonumber(ARGV[9])
for i = 7, 8 do
  redis.call('ZADD', KEYS[i], ARGV[8], ARGV[7])
  if redis.call('ZCARD', KEYS[i]) > most then
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -most - 1)
  end
end
return {'ok', previous, before}
"""

# A call's end in one command: its last state (and count of events, dialogs), its record,
# lines and key expiring after the result cache time, and (ARGV[2] not empty) its limit
# slot released (and the key's "busy" entry if it is still this slot's).
# KEYS: call:<id>, lines:<id>, key:<key>, active, active:owner, busy:key, slots:node
# ARGV: seconds to keep, slot or '', the record's field, value, ...
END = """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
local slot = ARGV[2]
if slot ~= '' then
  redis.call('SREM', KEYS[4], slot)
  redis.call('SREM', KEYS[5], slot)
  redis.call('HDEL', KEYS[7], slot)
  local busy = redis.call('GET', KEYS[6])
  if busy and string.sub(busy, 1, string.len(slot) + 1) == slot .. ' ' then
    redis.call('DEL', KEYS[6])
  end
end
return 1
"""

# A status line beyond the lines a call keeps replaces the last one (as Call.record does).
# KEYS: lines; ARGV: the line's position (1-based), the line
SET_LINE = """
local n = tonumber(ARGV[1])
if redis.call('LLEN', KEYS[1]) >= n then
  redis.call('LSET', KEYS[1], n - 1, ARGV[2])
else
  redis.call('RPUSH', KEYS[1], ARGV[2])
end
return 1
"""



# A lost (or restarted) node's calls in progress: release their limits and mark them
# ended with a reason, an INVITE-mode call's dialogs terminated (nobody runs them any
# more: no early or confirmed dialog is left on show). KEYS: slots:node, nodes;
# ARGV: prefix, node, reason
LOST = """
local slots = redis.call('HGETALL', KEYS[1])
local p = ARGV[1]
local count = 0
for i = 1, #slots, 2 do
  local slot = slots[i]
  local info = cjson.decode(slots[i + 1])
  local owner, busykey = info[1], p .. 'busy:' .. info[2] .. ' ' .. info[3] .. ' ' .. info[4]
  redis.call('SREM', p .. 'active', slot)
  redis.call('SREM', p .. 'active:' .. owner, slot)
  local busy = redis.call('GET', busykey)
  if busy and string.sub(busy, 1, string.len(slot) + 1) == slot .. ' ' then
    redis.call('DEL', busykey)
  end
  local id, ttl = info[5], info[6]
  if id and redis.call('HGET', p .. 'call:' .. id, 'ended') == '0' then
    redis.call('HSET', p .. 'call:' .. id, 'state', 'ended', 'ended', '1',
               'reason', ARGV[3])
    local dialogs = redis.call('HGET', p .. 'call:' .. id, 'dialogs')
    if dialogs then
      local infos = cjson.decode(dialogs)
      for _, info in ipairs(infos) do info[4] = 'Terminated Dialog' end
      if #infos > 0 then  -- (cjson would write an empty list as {})
        redis.call('HSET', p .. 'call:' .. id, 'dialogs', cjson.encode(infos))
      end
    end
    redis.call('EXPIRE', p .. 'call:' .. id, ttl)
    redis.call('EXPIRE', p .. 'lines:' .. id, ttl)
    redis.call('EXPIRE', p .. 'key:' .. info[2] .. ' ' .. info[3] .. ' ' .. info[4], ttl)
    count = count + 1
  end
end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= 'restart' then redis.call('SREM', KEYS[2], ARGV[2]) end
return count
"""

#: seconds between heartbeats; a node is lost when its heartbeat is older than HEARTBEAT_TTL
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL = 6.0
#: the longest wait between two attempts to reconnect to Redis (sipxcc.calls.redis_client)
RECONNECT_MAX_DELAY = 5.0


class StoredCall(NamedTuple):
    """A call as Redis holds it: what any node shows for it (a
    L{sipxcc.calls.store.CallView}, rendered as its L{Call} is)."""

    id: str
    owner: str
    calling: str
    called: str
    mode: str
    state: str
    ended: bool
    created: float
    node: str
    events: list[StatusEvent]
    #: why the call ended without its owner: "node lost", "restart" (else "")
    reason: str = ""
    #: the call's events so far, its end included (sipxcc.calls.hub numbers them)
    seq: int = 0
    #: an INVITE-mode call's dialogs, as its owner last wrote them
    dialog_infos: tuple[DialogInfo, ...] = ()

    @property
    def event_count(self) -> int:
        return len(self.events)

    def dialogs(self) -> list[DialogInfo]:
        return list(self.dialog_infos)


def line_text(event: StatusEvent) -> str:
    """One status line as the C{lines:<id>} list holds it (JSON, ASCII only)."""
    return json.dumps(list(event))


def new_record_fields(call_id: str, request: CallRequest, created: float, node: str
                      ) -> list[str | int]:
    """The C{call:<id>} hash of a call about to be placed (field, value, ...): state
    "calling", no event yet, no dialog; L{progress_fields} and the end update it."""
    fields: list[str | int] = [
        "owner", request.agent.identity, "calling", request.calling, "called",
        request.called, "mode", request.method, "ended", 0, "created", repr(created),
        "node", node, "state", "calling", "seq", 0]
    if request.method == INVITE:
        fields += ["dialogs", "[]"]
    return fields


def progress_fields(call: Call) -> list[str | int]:
    """What changes as a call goes on: its state, its event count and (INVITE mode)
    its dialogs; written once per write window in which the call had events."""
    fields: list[str | int] = ["state", call.state, "seq", call.seq]
    if call.mode == INVITE:
        fields += ["dialogs", json.dumps([list(info) for info in call.dialogs()])]
    return fields


def stored_call(call_id: str, fields: list[bytes], lines: list[bytes]) -> StoredCall | None:
    """The L{StoredCall} from Redis' replies to C{HGETALL call:<id>} and C{LRANGE
    lines:<id>}; None if there is no (complete) record."""
    record = {_text(fields[i]): _text(fields[i + 1]) for i in range(0, len(fields) - 1, 2)}
    if "owner" not in record:  # unknown, or only late writes for an expired record
        return None
    dialogs = tuple(DialogInfo(*info) for info in json.loads(record.get("dialogs") or "[]"))
    return StoredCall(call_id, record["owner"], record["calling"], record["called"],
                      record["mode"], record["state"], record["ended"] == "1",
                      float(record["created"]), record["node"],
                      [StatusEvent(*json.loads(line)) for line in lines],
                      record.get("reason", ""), int(record.get("seq") or 0), dialogs)


def _text(value: bytes) -> str:
    return value.decode("utf-8")


def _joined(writes: deque[tuple[bytes | str | int | float, ...]]
            ) -> list[tuple[bytes | str | int | float, ...]]:
    """C{writes} with the status lines queued for each call (C{RPUSH} to its list) sent
    as one C{RPUSH} of them all, at the place of the first: a call's lines keep their
    order (the only other write to a list, C{SET_LINE}, is for a line beyond the bound,
    and every later line of that call is one too: no C{RPUSH} follows it)."""
    joined: list[list[bytes | str | int | float]] = []
    pushes: dict[Any, list[bytes | str | int | float]] = {}  # list key -> its RPUSH
    for write in writes:
        if write[0] == "RPUSH":
            push = pushes.get(write[1])
            if push is not None:
                push.extend(write[2:])
                continue
            push = pushes[write[1]] = list(write)
            joined.append(push)
            continue
        joined.append(list(write))
    return [tuple(write) for write in joined]


class _End(NamedTuple):
    """A call's end waiting to be written (its command is made when it is sent: the
    state and dialogs as they are by then)."""

    call: Call


Write = tuple[bytes | str | int | float, ...]


class RedisCallStore:
    """
    Places calls through the local L{CallRegistry} once Redis granted the cluster-wide
    limits, and keeps every call's record and status lines in Redis. Status lines, states
    and ends are collected for C{write_window} seconds on the clock (or until C{flush_at}
    writes are queued) and written in one pipeline, each call's in order: its lines, then
    its end. A new call's record is written before the call starts (the POST waits for
    it): with the writes of the window open when it is placed, after them, in the same
    round trip; at once when no write waits. The SIP side never waits on Redis. While
    Redis is unreachable L{place} and the reads fail with L{RegistryUnavailable}, and up
    to C{max_buffered} writes wait for it: beyond, the oldest status line or state is
    dropped (counted in C{dropped} and logged); a call's end only when nothing else is
    left to drop.
    """

    def __init__(self, clock: Any, registry: CallRegistry, redis: Any, node_id: str, *,
                 max_calls: int, max_calls_per_agent: int, prefix: str = "sipxcc:",
                 max_buffered: int = MAX_BUFFERED_WRITES,
                 write_window: float = WRITE_WINDOW, flush_at: int = FLUSH_AT):
        self.clock = clock
        self.registry = registry
        self.redis = redis
        self.node_id = node_id
        self.prefix = prefix
        self.max_calls = max_calls
        self.max_calls_per_agent = max_calls_per_agent
        self.max_buffered = max_buffered
        self.write_window = write_window
        self.flush_at = flush_at
        #: status lines, states and index clean-ups waiting to be written, in order
        self.buffer: deque[Write] = deque()
        #: calls' ends (and releases of limits) waiting, written after the buffer
        self.ends: deque[_End | Write] = deque()
        self.dropped = 0
        self._flush_timer: Any = None  # the end of the current window
        #: calls being placed that wait for the end of the window, to go with its writes
        self._placing: list[defer.Deferred[None]] = []
        self._slots: dict[str, str] = {}  # call id -> its limit slot
        self._progressed: dict[str, Call] = {}  # calls with events since the last write
        self._unsubscribe = registry.subscribe(self._event)
        self.router: Any = None  # a CommandRouter, to reach calls owned by other nodes
        #: False from L{start} until this node's calls of an earlier run are marked ended
        #: (a call placed before would be taken for one of them)
        self.ready = True
        self.heartbeat_interval, self.heartbeat_ttl = HEARTBEAT_INTERVAL, HEARTBEAT_TTL
        #: no other node is taken for lost before this time (see L{_connection_changed})
        self._sweep_after = 0.0
        self._beating: Any = None  # the next heartbeat (or start attempt), once started
        redis.on_state = self._connection_changed

    def _connection_changed(self, up: bool) -> None:
        """Redis came back (or is reached for the first time): write what waited, beat at
        once, and take no other node for lost until every live node had the time to
        reconnect and beat too. Their heartbeats expired while Redis was away (or Redis
        restarted without them): the first node back would otherwise end the calls in
        progress of every node that is merely slower to reconnect."""
        if up:
            if self.buffered:
                log.info("Redis is back: writing {count} buffered writes",
                         count=self.buffered)
            self.resume()
            self._sweep_after = (self.clock.seconds() + self.heartbeat_ttl
                                 + RECONNECT_MAX_DELAY)
            if self.ready and self._beating is not None:
                self._heartbeat().addErrback(
                    lambda f: log.warn("heartbeat failed: {error}", error=f.value))

    @property
    def buffered(self) -> int:
        """Writes waiting (status lines, states, ends)."""
        return len(self.buffer) + len(self.ends)

    def health(self) -> dict[str, Any]:
        """What /health reports of the registry."""
        state = "down" if not self.redis.up else "up" if self.ready else "starting"
        return {"backend": "redis", "node": self.node_id, "state": state,
                "buffered_writes": self.buffered, "dropped_writes": self.dropped}

    # --- keys -------------------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @staticmethod
    def _keytext(key: tuple[str, str, str]) -> str:
        return " ".join(key)

    def _limit_keys(self, owner: str, key: tuple[str, str, str]) -> tuple[str, ...]:
        return (self._k("active"), self._k("active", owner),
                self._k("busy", self._keytext(key)), self._k("slots", self.node_id))

    # --- placing ----------------------------------------------------------------------------
    @defer.inlineCallbacks
    def place(self, request: CallRequest) -> Any:
        """Start a call once Redis granted the limits and holds its record (one
        command, one round trip); fires with the L{Call} (fails with a
        L{sipxcc.calls.errors.CallError} or L{RegistryUnavailable})."""
        if not self.ready:
            raise RegistryUnavailable("This node is starting (its calls of an earlier run "
                                      "are not marked ended yet)")
        if self._flush_timer is not None:
            # writes wait for the end of a window: this call's record goes with them, in
            # the same round trip (one per window rather than one per call placed)
            joined: defer.Deferred[None] = defer.Deferred()
            self._placing.append(joined)
            yield joined
        else:
            # nothing waits, unless Redis was away: that goes first, in the same round trip
            self._flush().addErrback(lambda _: None)
        owner = request.agent.identity
        slot = secrets.token_urlsafe(9)
        call_id, created = new_call_id(), self.clock.seconds()
        ttl = max(1, self.registry.request_cache_time(request))
        keys = (*self._limit_keys(owner, request.key), self._k("call", call_id),
                self._k("key", self._keytext(request.key)), self._k("recent"),
                self._k("recent", owner))
        # the writes went first: the limits this node's ended calls release are free
        # before this call asks for its own
        verdict, previous, before = yield self.redis.execute(
            "EVAL", PLACE, len(keys), *keys, slot, owner, request.method, self.max_calls,
            self.max_calls_per_agent, json.dumps([owner, *request.key, call_id, ttl]),
            call_id, repr(created), MAX_RECENT,
            *new_record_fields(call_id, request, created, self.node_id))
        verdict = _text(verdict)
        if verdict == "in_progress":
            raise CallInProgress(f"Call in progress for {request.calling} to {request.called}")
        if verdict == "too_many":
            raise TooManyCalls("Too many calls in progress")
        if verdict == "agent_limit":
            raise AgentLimit(f"Too many calls in progress for {owner}")
        if previous:  # a REFER call replaces the one in progress for its key
            yield self._replace_remote(_text(before))
        try:
            call = self.registry.place(request, call_id, created)
        except Exception:
            # its record is there already: it shows the call failed, and frees the slot
            self._write_end(("EVAL", END, 7, *self._end_keys(call_id, owner, request.key),
                             ttl, slot, "state", "failed", "ended", 1))
            raise
        self._slots[call.id] = slot
        call.on_state = self._state_changed
        return call

    @defer.inlineCallbacks
    def _replace_remote(self, previous_id: str) -> Any:
        """Hang up C{previous_id}, the call in progress this call replaces, if another
        node owns it (this node's own registry replaces a local one itself)."""
        if not previous_id or self.registry.get(previous_id) is not None:
            return
        stored = yield self.get(previous_id)
        if stored is None or stored.ended or self.router is None:
            return
        sent = self.router.send(stored.node, "hangup", stored.id)
        sent.addErrback(lambda f: log.warn("could not hang up replaced call {id} on "
                                           "{node}: {error}", id=stored.id,
                                           node=stored.node, error=f.value))

    def _end_keys(self, call_id: str, owner: str, key: tuple[str, str, str]
                  ) -> tuple[str, ...]:
        busy = self._keytext(key)
        return (self._k("call", call_id), self._k("lines", call_id), self._k("key", busy),
                self._k("active"), self._k("active", owner), self._k("busy", busy),
                self._k("slots", self.node_id))

    def _end_command(self, call: Call) -> Write:
        """The C{END} script for C{call}: its last state, expiry, and its slot released."""
        ttl = max(1, self.registry.cache_time(call))
        slot = self._slots.pop(call.id, "")
        return ("EVAL", END, 7, *self._end_keys(call.id, call.owner, call.key), ttl, slot,
                *progress_fields(call), "ended", 1)

    # --- status lines, collected over a window ----------------------------------------------
    def _event(self, call: Call, event: CallEvent) -> None:
        status = event.status
        if status is None:  # the end: its command carries the state, once it is sent
            self._progressed.pop(call.id, None)
            self._write_end(_End(call))
            return
        # the state and dialogs as they are when the window is over (a flow may record a
        # line before it changes them)
        self._progressed[call.id] = call
        lines = self._k("lines", call.id)
        count = call.event_count
        if count < MAX_EVENTS + MAX_FINAL_EVENTS:
            self._write(("RPUSH", lines, line_text(status)))
        else:  # at the bound: the line replaced the last one
            self._write(("EVAL", SET_LINE, 1, lines, count, line_text(status)))

    def _state_changed(self, call: Call) -> None:
        """A state the flow set without a status line (connected after a re-INVITE, ...)."""
        if not call.ended:
            self._progressed[call.id] = call
            self._flush_later()

    def _full(self) -> bool:
        """No room for one more write without dropping one."""
        return self.buffered >= self.max_buffered

    def _count_dropped(self) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warn("Redis write buffer full ({bound}): {dropped} writes dropped so far",
                     bound=self.max_buffered, dropped=self.dropped)

    def _keep(self, command: Write) -> None:
        """Queue a status line, state or clean-up, within the bound (the oldest of them
        is dropped beyond it; if only ends wait, this one is)."""
        if self._full():
            self._count_dropped()
            if not self.buffer:
                return
            self.buffer.popleft()
        self.buffer.append(command)

    def _write(self, command: Write) -> None:
        self._keep(command)
        self._flush_later()

    def _write_end(self, end: _End | Write) -> None:
        """Queue a call's end: room is made by dropping a status line, never an end
        while there is one."""
        if self._full():
            self._count_dropped()
            if self.buffer:
                self.buffer.popleft()
            else:
                self.ends.popleft()
        self.ends.append(end)
        self._flush_later()

    def _flush_later(self) -> None:
        """Write what is queued at the end of the window (at once when C{flush_at}
        writes wait)."""
        timer = self._flush_timer
        if self.buffered >= self.flush_at and self.redis.up:
            # at the end of this reactor turn, not now: a call being placed has its
            # record sent (and its slot known) before its end is written
            if timer is not None and timer.getTime() > self.clock.seconds():
                timer.cancel()
                timer = None
            if timer is None:
                self._flush_timer = self.clock.callLater(0, self._window_over)
        elif timer is None:
            self._flush_timer = self.clock.callLater(self.write_window, self._window_over)

    def _window_over(self) -> None:
        self._flush_timer = None
        self._flush().addErrback(lambda _: None)

    def _queue_progress(self) -> None:
        """Queue the state (and dialogs) of the calls that had events since the last time."""
        progressed, self._progressed = self._progressed, {}
        for call in progressed.values():
            self._keep(("HSET", self._k("call", call.id), *progress_fields(call)))

    def _flush(self) -> defer.Deferred[Any]:
        """Send every queued write in one pipeline (kept queued while Redis is down), then
        let the calls waiting to be placed go, in the same reactor turn: their records
        follow the writes in the same round trip."""
        if self._flush_timer is not None:
            if self._flush_timer.active():
                self._flush_timer.cancel()
            self._flush_timer = None
        sent = self._send_writes()
        self._release_placing()
        return sent

    def _release_placing(self) -> None:
        placing, self._placing = self._placing, []
        for joined in placing:
            joined.callback(None)

    def _send_writes(self) -> defer.Deferred[Any]:
        self._queue_progress()
        if not self.buffered:
            return defer.succeed(None)
        if not self.redis.up:
            return defer.fail(RegistryUnavailable("Redis is not connected"))
        commands = _joined(self.buffer)
        commands += [self._end_command(end.call) if isinstance(end, _End) else end
                     for end in self.ends]
        count = self.buffered
        self.buffer, self.ends = deque(), deque()
        d: defer.Deferred[Any] = self.redis.pipeline(commands)

        def lost(failure: Any) -> Any:
            if failure.check(RegistryUnavailable):  # in flight when the connection broke
                self.dropped += count
                log.warn("{count} Redis writes lost with the connection ({dropped} dropped "
                         "so far)", count=count, dropped=self.dropped)
            return failure
        d.addErrback(lost)
        return d

    def flush(self) -> defer.Deferred[None]:
        """Write what is queued now (when the daemon stops); fires once Redis took it, or
        at once if Redis cannot be reached."""
        d = self._flush()
        d.addErrback(lambda _: None)
        return d

    def resume(self) -> None:
        """Redis is reachable again: write what waited."""
        self._flush().addErrback(lambda _: None)

    # --- reading ----------------------------------------------------------------------------
    @defer.inlineCallbacks
    def get(self, call_id: str) -> Any:
        """Fires with the L{StoredCall} of C{call_id}, or None."""
        fields, lines = yield self.redis.pipeline([
            ("HGETALL", self._k("call", call_id)),
            ("LRANGE", self._k("lines", call_id), 0, -1)])
        return stored_call(call_id, fields, lines)

    @defer.inlineCallbacks
    def lookup(self, key: tuple[str, str, str]) -> Any:
        """Fires with the latest L{StoredCall} for (agent, calling, called), or None."""
        call_id = yield self.redis.execute("GET", self._k("key", self._keytext(key)))
        if call_id is None:
            return None
        found = yield self.get(_text(call_id))
        return found

    @defer.inlineCallbacks
    def calls_of(self, owner: str | None, limit: int) -> Any:
        """Fires with up to C{limit} L{StoredCall}s of C{owner} (None: all), newest first."""
        if limit <= 0:
            return []
        index = self._k("recent") if owner is None else self._k("recent", owner)
        ids = yield self.redis.execute("ZREVRANGE", index, 0, limit - 1)
        ids = [_text(i) for i in ids]
        commands: list[tuple[bytes | str | int | float, ...]] = []
        for call_id in ids:
            commands.append(("HGETALL", self._k("call", call_id)))
            commands.append(("LRANGE", self._k("lines", call_id), 0, -1))
        replies = yield self.redis.pipeline(commands)
        found, gone = [], []
        for n, call_id in enumerate(ids):
            stored = stored_call(call_id, replies[2 * n], replies[2 * n + 1])
            if stored is None:
                gone.append(call_id)
            else:
                found.append(stored)
        if gone:  # expired records: drop them from the indexes
            self._write(("ZREM", self._k("recent"), *gone))
            if owner is not None:
                self._write(("ZREM", index, *gone))
        return found

    @defer.inlineCallbacks
    def hangup(self, call_id: str) -> Any:
        """Hang up C{call_id} wherever it is owned (sent to its owner through
        C{self.router}); fires with False if no node knows the call."""
        result = yield self._on_owner(call_id, "hangup")
        return result

    @defer.inlineCallbacks
    def transfer(self, call_id: str, target: str, timeout: int | None = None) -> Any:
        """Transfer an INVITE-mode call wherever it is owned; False if unknown."""
        result = yield self._on_owner(call_id, "transfer", target, timeout)
        return result

    @defer.inlineCallbacks
    def _on_owner(self, call_id: str, op: str, target: str | None = None,
                  timeout: int | None = None) -> Any:
        call = self.registry.get(call_id)
        if call is not None:
            if op == "hangup":
                self.registry.hangup(call)
            else:
                self.registry.transfer(call, target or "", timeout)
            return True
        stored = yield self.get(call_id)
        if stored is None:
            return False
        if stored.ended and op == "hangup":
            return True
        if self.router is None:
            raise RegistryUnavailable("no command route to other nodes")
        yield self.router.send(stored.node, op, call_id, target, timeout)
        return True

    # --- node liveness ---------------------------------------------------------------------
    def start(self, interval: float = HEARTBEAT_INTERVAL, ttl: float = HEARTBEAT_TTL
              ) -> defer.Deferred[Any]:
        """Mark this node's calls left from an earlier run ended ("restart"), then beat
        every C{interval} seconds (the heartbeat lasts C{ttl}) and look for lost nodes."""
        self.heartbeat_interval, self.heartbeat_ttl = interval, ttl
        self.ready = False
        d = self.sweep_node(self.node_id, "restart")
        d.addCallbacks(self._started, self._start_later)
        return d

    def _started(self, _: object) -> defer.Deferred[Any]:
        self.ready = True
        return self._beat()

    def _start_later(self, failure: Any) -> None:
        """Redis was not reachable at start: try the restart sweep again shortly."""
        log.warn("could not mark this node's earlier calls ended ({error}); retrying",
                 error=failure.value)
        self._beating = self.clock.callLater(
            self.heartbeat_interval,
            lambda: self.start(self.heartbeat_interval, self.heartbeat_ttl))

    def _beat(self) -> defer.Deferred[Any]:
        self._beating = self.clock.callLater(self.heartbeat_interval, self._beat)
        if not self.redis.up:
            return defer.succeed(None)
        d = self._heartbeat()
        d.addCallback(lambda _: self.sweep_lost()
                      if self.clock.seconds() >= self._sweep_after else 0)
        d.addErrback(lambda f: log.warn("heartbeat failed: {error}", error=f.value))
        return d

    def _heartbeat(self) -> defer.Deferred[Any]:
        """Refresh this node's heartbeat (and its name among the nodes)."""
        beat: defer.Deferred[Any] = self.redis.pipeline([
            ("SET", self._k("node", self.node_id), repr(self.clock.seconds()), "PX",
             int(self.heartbeat_ttl * 1000)),
            ("SADD", self._k("nodes"), self.node_id)])
        return beat

    @defer.inlineCallbacks
    def sweep_lost(self) -> Any:
        """End the calls of every node whose heartbeat expired ("node lost"); fires with
        how many calls that ended."""
        nodes = yield self.redis.execute("SMEMBERS", self._k("nodes"))
        others = [_text(n) for n in nodes if _text(n) != self.node_id]
        if not others:
            return 0
        alive = yield self.redis.pipeline(
            [("EXISTS", self._k("node", n)) for n in others])
        ended = 0
        for node, up in zip(others, alive, strict=True):
            if not up:
                count = yield self.sweep_node(node, "node lost")
                if count:
                    log.warn("node {node} lost: {count} of its calls marked ended",
                             node=node, count=count)
                ended += count
        return ended

    def sweep_node(self, node: str, reason: str) -> defer.Deferred[Any]:
        """Release the limits of C{node}'s calls in progress and mark them ended."""
        swept: defer.Deferred[Any] = self.redis.execute(
            "EVAL", LOST, 2, self._k("slots", node), self._k("nodes"), self.prefix, node,
            reason)
        return swept

    def close(self) -> None:
        self._unsubscribe()
        placing, self._placing = self._placing, []
        for joined in placing:
            joined.errback(RegistryUnavailable("This node is stopping"))
        if self._beating is not None and self._beating.active():
            self._beating.cancel()

