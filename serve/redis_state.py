"""Live conversations and the alert stream in Redis: shared by every server process, kept across restarts.

``tonewatch serve --state redis://HOST:6379/0`` keeps, under the key prefix (``tonewatch`` by default):

- ``P:conv:{id}``: a hash with the conversation's tracker snapshot (``data``, JSON: its turns, context,
  escalation state, alert state; :meth:`ConversationTracker.snapshot`), who opened it, and the id of its
  last alert;
- ``P:active`` and ``P:owner:{key name}``: sorted sets of live conversation ids by last activity (wall-clock
  seconds): capacity, idle expiry, and when a slot frees;
- ``P:summary``: a hash of each conversation's ranking fields (alert active, risk, queue, team) for the list;
- ``P:lock:{id}``: held by the process adding a turn (or ending the conversation), with a time to live;
- ``P:seq`` and ``P:events``: event ids and the alert stream (a Redis stream, the latest
  ``stream_length`` events). Every process reads the stream and hands each event to its own SSE clients,
  so a client of any process sees the alerts of all of them, in one order, with one numbering.

A turn takes the conversation's lock (waiting while another process adds a turn to it), reads the
snapshot, is classified, and is committed by one Lua script that checks the lock is still its own,
publishes the turn's events and writes the new snapshot, atomically. A turn is acknowledged only after
that: with Redis's append-only file on (``appendonly yes``), an acknowledged turn survives a restart of
Redis as well as of every server process. When Redis cannot be reached, turns, reads of live
conversations and ends are refused with :class:`StateUnavailableError` (the server answers a typed 503),
``/readyz`` says not ready, texts are still classified, and everything resumes by itself when Redis is back.

One Redis server (or a primary managed by Sentinel) is assumed; the scripts use several keys of one
conversation at once, which Redis Cluster would need hash tags for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import time
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

from tonewatch.serve.alerts import AlertHub
from tonewatch.serve.state import (
    CapacityError,
    ConversationBusyError,
    LiveConversation,
    StateUnavailableError,
)
from tonewatch.tracking import AlertEvent, ConversationState, ConversationTracker

logger = logging.getLogger("tonewatch.serve")

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""State URLs that mean Redis (``redis-py``'s ``from_url`` forms)."""

# Reserve a slot for a new conversation (or find the existing one) once its lock is held.
# KEYS: conv, active, owner set; ARGV: id, now, max conversations, max per owner (0: none), owner.
_BEGIN = """
local data = redis.call('HMGET', KEYS[1], 'data', 'owner', 'last_alert_id')
if data[1] then return {1, data[1], data[2] or '', data[3] or '0'} end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {2, oldest[2] or ARGV[2], '', '0'}
  end
  if tonumber(ARGV[4]) > 0 and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {3, oldest[2] or ARGV[2], tostring(redis.call('ZCARD', KEYS[3])), '0'}
  end
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return {0, '', ARGV[5], '0'}
"""

# Commit a turn: the lock must still be this process's; events get their ids and go on the stream in order,
# and the snapshot is written, in one step.
# KEYS: lock, conv, active, owner set, seq, events, summary
# ARGV: token, id, data, owner, now, summary, stream length, position of the last alert among the events
#       (0: none), events...
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('TONEWATCH_LOCK_LOST') end
local ids = {}
for i = 9, #ARGV do
  local id = redis.call('INCR', KEYS[5])
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[7], '*', 'id', id, 'event', ARGV[i])
  ids[#ids + 1] = id
end
redis.call('HSET', KEYS[2], 'data', ARGV[3], 'owner', ARGV[4])
local last = tonumber(ARGV[8])
if last > 0 then redis.call('HSET', KEYS[2], 'last_alert_id', ids[last]) end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
redis.call('HSET', KEYS[7], ARGV[2], ARGV[6])
return ids
"""

# End a conversation whose lock this process holds: drop its state, publish its ended event.
# KEYS: lock, conv, active, owner set, seq, events, summary; ARGV: token, id, stream length, event
_END = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('TONEWATCH_LOCK_LOST') end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[7], ARGV[2])
local id = redis.call('INCR', KEYS[5])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], '*', 'id', id, 'event', ARGV[4])
return id
"""

# Give back a reserved slot whose first turn was not committed (the model failed, the client went away).
# KEYS: conv, active, owner set; ARGV: id
_UNRESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# After Redis lost data (no append-only file), never hand out ids the stream's readers have seen.
_RAISE_SEQ = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
if seq < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
"""


def is_redis_url(state: str) -> bool:
    return state.startswith(REDIS_SCHEMES)


class RedisConversationStore:
    """Live conversations in Redis (see the module docstring); the same async API as
    :class:`~tonewatch.serve.state.ConversationStore`.

    ``new_tracker(conversation_id, on_event)`` makes a new conversation's tracker and
    ``restore_tracker(snapshot, on_event)`` continues one; both must use ``clock`` (wall-clock seconds, shared by
    every process) as their clock. ``hub`` gets every event of the stream (its SSE clients and ``/v1/alerts``);
    ``on_publish(event)`` is called for the events this process publishes (logs, metrics).
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        new_tracker: Callable[[str, Callable], ConversationTracker],
        restore_tracker: Callable[[dict, Callable], ConversationTracker],
        hub: AlertHub,
        on_publish: Callable[[AlertEvent], None] = lambda event: None,
        idle_timeout_s: float = 900.0,
        sweep_interval_s: float = 5.0,
        max_conversations: int = 10_000,
        max_per_owner: int | None = None,
        prefix: str = "tonewatch",
        lock_wait_s: float = 10.0,
        lock_ttl_s: float = 60.0,
        stream_length: int = 10_000,
        clock: Callable[[], float] = time.time,
    ):
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as error:  # pragma: no cover - the serve extra installs it
            raise RuntimeError("a Redis state store needs the redis package: pip install 'tonewatch[serve]'") from error
        self.url = url
        self._new_tracker = new_tracker
        self._restore_tracker = restore_tracker
        self.hub = hub
        self._on_publish = on_publish
        self.idle_timeout_s = idle_timeout_s
        self.sweep_interval_s = sweep_interval_s
        self.max_conversations = max_conversations
        self.max_per_owner = max_per_owner
        self.prefix = prefix
        self.lock_wait_s = lock_wait_s
        self.lock_ttl_s = lock_ttl_s
        self.stream_length = stream_length
        self._clock = clock
        self._redis = None
        self._reader = None
        self._reader_task: asyncio.Task | None = None
        self._scripts: dict[str, Any] = {}
        self._problem: str | None = "not connected yet"
        self._count = 0
        self._local_locks: dict[str, list] = {}  # id -> [asyncio.Lock, users]: one turn per conversation here

    # -- keys -------------------------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _conversation_keys(self, conversation_id: str, owner: str) -> dict[str, str]:
        return {
            "lock": self._key("lock", conversation_id),
            "conv": self._key("conv", conversation_id),
            "active": self._key("active"),
            "owner": self._key("owner", owner),
            "seq": self._key("seq"),
            "events": self._key("events"),
            "summary": self._key("summary"),
        }

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect (lazily: an unreachable Redis is retried in the background) and start reading the stream."""
        import redis.asyncio as redis

        options = {"decode_responses": True, "socket_connect_timeout": 2.0, "health_check_interval": 15}
        self._redis = redis.Redis.from_url(self.url, socket_timeout=5.0, **options)
        # The reader blocks on the stream for up to a second at a time: a longer socket timeout.
        self._reader = redis.Redis.from_url(self.url, socket_timeout=10.0, **options)
        for name, source in (
            ("begin", _BEGIN),
            ("commit", _COMMIT),
            ("end", _END),
            ("unreserve", _UNRESERVE),
            ("release", _RELEASE),
            ("raise_seq", _RAISE_SEQ),
        ):
            self._scripts[name] = self._redis.register_script(source)
        self._reader_task = asyncio.create_task(self._read_stream_forever(), name="tonewatch-redis-stream")

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None
        for client in (self._redis, self._reader):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._redis = self._reader = None

    def problem(self) -> str | None:
        """Why turns cannot be taken now (``None``: they can), as the stream reader last saw it."""
        return self._problem

    async def check(self) -> str | None:
        """Ping Redis now: ``None`` when it answers, else what is wrong (``/readyz``)."""
        try:
            async with self._unavailable_as_error():
                await asyncio.wait_for(self._redis.ping(), 2.0)
        except (StateUnavailableError, TimeoutError) as error:
            return f"the state store (Redis) cannot be reached: {error or 'timed out'}"
        return self._problem if self._problem != "not connected yet" else None

    def __len__(self) -> int:
        """Live conversations at the latest count (refreshed by :meth:`expire_idle` and :meth:`count`)."""
        return self._count

    async def count(self) -> int:
        async with self._unavailable_as_error():
            self._count = int(await self._redis.zcard(self._key("active")))
        return self._count

    # -- turns ------------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def turn(self, conversation_id: str, owner: str | None = None) -> AsyncIterator[LiveConversation]:
        """The conversation, loaded from Redis (made when new), held by this process for one turn; committed
        to Redis when the block ends without an error, with the events the tracker made in it."""
        async with self._local_lock(conversation_id):
            token = await self._acquire(conversation_id)
            keys = self._conversation_keys(conversation_id, owner or "")
            created = committed = False
            try:
                async with self._unavailable_as_error():
                    status, data, stored_owner, last_alert_id = await self._scripts["begin"](
                        keys=[keys["conv"], keys["active"], keys["owner"]],
                        args=[
                            conversation_id,
                            self._clock(),
                            self.max_conversations,
                            self.max_per_owner or 0,
                            owner or "",
                        ],
                    )
                status = int(status)
                if status in (2, 3):
                    retry_after = float(data) + self.idle_timeout_s - self._clock()
                    if status == 2:
                        raise CapacityError(
                            f"{self.max_conversations} live conversations already; end some first (DELETE)", retry_after
                        )
                    who = f"key {owner!r}" if owner else "this client"
                    raise CapacityError(
                        f"{who} holds {stored_owner} live conversations, its limit; end some first (DELETE)",
                        retry_after,
                    )
                live = LiveConversation(owner=stored_owner or None)
                pending: list[AlertEvent] = []

                def collect(event: AlertEvent) -> None:
                    pending.append(event)

                if status == 1:
                    live.tracker = self._restore(json.loads(data), int(last_alert_id), collect)
                else:
                    created = True
                    live.tracker = self._new_tracker(conversation_id, collect)
                yield live
                keys = self._conversation_keys(conversation_id, live.owner or "")
                published = await self._commit(keys, token, conversation_id, live, pending)
                committed = True
                for event in published:
                    live.tracker.numbered(event)
                    live.published(event)
                    self._on_publish(event)
            finally:
                await self._finish_turn(keys, token, conversation_id, created and not committed)

    async def _commit(
        self, keys: dict[str, str], token: str, conversation_id: str, live: LiveConversation, events: list[AlertEvent]
    ) -> list[AlertEvent]:
        tracker = live.tracker
        last_alert = 0
        for position, event in enumerate(events, 1):
            if event.kind == "alert":
                last_alert = position
        state = tracker.state
        summary = {"alert_active": state.alert_active, "risk": state.risk, "updated_at": state.updated_at}
        summary.update(queue=state.queue, team=state.team)
        async with self._unavailable_as_error():
            ids = await self._scripts["commit"](
                keys=[keys[name] for name in ("lock", "conv", "active", "owner", "seq", "events", "summary")],
                args=[
                    token,
                    conversation_id,
                    json.dumps(tracker.snapshot(), ensure_ascii=False),
                    live.owner or "",
                    tracker.last_activity,
                    json.dumps(summary, ensure_ascii=False),
                    self.stream_length,
                    last_alert,
                    *(_event_json(event) for event in events),
                ],
            )
        return [dataclasses.replace(event, id=int(event_id)) for event, event_id in zip(events, ids, strict=True)]

    async def _finish_turn(self, keys: dict[str, str], token: str, conversation_id: str, unreserve: bool) -> None:
        with contextlib.suppress(StateUnavailableError):
            async with self._unavailable_as_error():
                if unreserve:
                    await self._scripts["unreserve"](
                        keys=[keys["conv"], keys["active"], keys["owner"]], args=[conversation_id]
                    )
                await self._scripts["release"](keys=[keys["lock"]], args=[token])

    # -- reads and ends ---------------------------------------------------------------------------------------
    async def fetch(self, conversation_id: str) -> ConversationState | None:
        async with self._unavailable_as_error():
            data, last_alert_id = await self._redis.hmget(self._key("conv", conversation_id), "data", "last_alert_id")
        if data is None:
            return None
        tracker = self._restore(json.loads(data), int(last_alert_id or 0), None)
        if self._idle(tracker):
            return None  # expired; the next sweep publishes its end
        return tracker.state

    async def finish(self, conversation_id: str, reason: str = "deleted") -> AlertEvent | None:
        """End ``conversation_id`` (waiting for a turn in progress): its ``ended`` event, or ``None``."""
        async with self._local_lock(conversation_id):
            token = await self._acquire(conversation_id)
            try:
                return await self._end_locked(conversation_id, token, reason)
            finally:
                keys = self._conversation_keys(conversation_id, "")
                await self._finish_turn(keys, token, conversation_id, False)

    async def _end_locked(
        self, conversation_id: str, token: str, reason: str, *, only_if_idle: bool = False
    ) -> AlertEvent | None:
        async with self._unavailable_as_error():
            data, owner, last_alert_id = await self._redis.hmget(
                self._key("conv", conversation_id), "data", "owner", "last_alert_id"
            )
            in_active = await self._redis.zscore(self._key("active"), conversation_id)
        if data is None and in_active is None:
            return None
        events: list[AlertEvent] = []
        if data is not None:
            tracker = self._restore(json.loads(data), int(last_alert_id or 0), events.append)
            if only_if_idle and not self._idle(tracker):
                return None
            event = tracker.end(reason)
        else:  # a slot whose snapshot is gone (reserved by a process that died): end it plainly
            event = AlertEvent(kind="ended", conversation_id=conversation_id, reason=reason, time=time.time())
        keys = self._conversation_keys(conversation_id, owner or "")
        async with self._unavailable_as_error():
            event_id = await self._scripts["end"](
                keys=[keys[name] for name in ("lock", "conv", "active", "owner", "seq", "events", "summary")],
                args=[token, conversation_id, self.stream_length, _event_json(event)],
            )
        event = dataclasses.replace(event, id=int(event_id))
        self._on_publish(event)
        return event

    async def list_states(
        self, keep: Callable[[Any], bool] | None = None, limit: int | None = None
    ) -> tuple[int, list[ConversationState]]:
        """How many live conversations ``keep`` accepts (it reads ``queue`` and ``team``), and the states of the
        ``limit`` riskiest of them."""
        async with self._unavailable_as_error():
            summaries = await self._redis.hgetall(self._key("summary"))
        rows = []
        for conversation_id, text in summaries.items():
            row = types.SimpleNamespace(conversation_id=conversation_id, **json.loads(text))
            if keep is None or keep(row):
                rows.append(row)
        rows.sort(key=lambda row: (row.alert_active, row.risk, row.updated_at), reverse=True)
        chosen = rows[:limit] if limit is not None else rows
        states = []
        if chosen:
            async with self._unavailable_as_error():
                pipe = self._redis.pipeline(transaction=False)
                for row in chosen:
                    pipe.hmget(self._key("conv", row.conversation_id), "data", "last_alert_id")
                stored = await pipe.execute()
            for data, last_alert_id in stored:
                if data is not None:  # ended between the two reads
                    states.append(self._restore(json.loads(data), int(last_alert_id or 0), None).state)
        return len(rows), states

    async def expire_idle(self) -> list[str]:
        """End the conversations idle for ``idle_timeout_s`` (each by one process: the one that gets its lock)."""
        now = self._clock()
        async with self._unavailable_as_error():
            self._count = int(await self._redis.zcard(self._key("active")))
            idle = await self._redis.zrangebyscore(
                self._key("active"), "-inf", now - self.idle_timeout_s, start=0, num=500
            )
        expired = []
        for conversation_id in idle:
            token = secrets.token_hex(12)
            async with self._unavailable_as_error():
                locked = await self._redis.set(
                    self._key("lock", conversation_id), token, nx=True, px=int(self.lock_ttl_s * 1000)
                )
            if not locked:
                continue  # a turn in progress (it keeps the conversation alive), or another process ends it
            try:
                if await self._end_locked(conversation_id, token, "expired", only_if_idle=True) is not None:
                    expired.append(conversation_id)
            finally:
                await self._finish_turn(self._conversation_keys(conversation_id, ""), token, conversation_id, False)
        return expired

    # -- helpers ----------------------------------------------------------------------------------------------
    def _restore(self, snapshot: dict, last_alert_id: int, on_event) -> ConversationTracker:
        if snapshot.get("last_alert") is not None and last_alert_id:
            snapshot["last_alert"]["id"] = last_alert_id
        return self._restore_tracker(snapshot, on_event)

    def _idle(self, tracker: ConversationTracker) -> bool:
        return self._clock() - tracker.last_activity >= self.idle_timeout_s

    @contextlib.asynccontextmanager
    async def _local_lock(self, conversation_id: str) -> AsyncIterator[None]:
        """Turns of one conversation in this process queue here, in order, rather than polling Redis's lock."""
        entry = self._local_locks.setdefault(conversation_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._local_locks[conversation_id]

    async def _acquire(self, conversation_id: str) -> str:
        """Take the conversation's Redis lock, waiting (up to ``lock_wait_s``) while another process holds it."""
        token = secrets.token_hex(12)
        key = self._key("lock", conversation_id)
        deadline = time.monotonic() + self.lock_wait_s
        pause = 0.002
        while True:
            async with self._unavailable_as_error():
                if await self._redis.set(key, token, nx=True, px=int(self.lock_ttl_s * 1000)):
                    return token
            if time.monotonic() >= deadline:
                raise ConversationBusyError(
                    f"another server process has held conversation {conversation_id!r} for {self.lock_wait_s:g} s"
                )
            await asyncio.sleep(pause)  # another process is adding a turn to it: a few ms
            pause = min(pause * 2, 0.05)

    @contextlib.asynccontextmanager
    async def _unavailable_as_error(self) -> AsyncIterator[None]:
        """Redis connection failures as :class:`StateUnavailableError` (and remembered for ``/readyz``)."""
        from redis.exceptions import BusyLoadingError, ResponseError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError) as error:
            self._problem = f"the state store (Redis) cannot be reached: {error}"
            raise StateUnavailableError(self._problem) from None
        except ResponseError as error:
            if "TONEWATCH_LOCK_LOST" in str(error):
                raise ConversationBusyError(
                    f"this turn held the conversation longer than {self.lock_ttl_s:g} s; it was not saved"
                ) from None
            raise

    async def _read_stream_forever(self) -> None:
        """Hand every event of the shared stream to this process's hub, in stream order; retry while Redis is
        away, then hand over what was published meanwhile."""
        from redis.exceptions import RedisError

        stream = self._key("events")
        last: str | None = None
        started = False
        pause = 0.05
        while True:
            try:
                if last is None:  # (re)connected: the latest events, those not seen yet sent on
                    history = await self._reader.xrevrange(stream, count=self.hub.recent_size)
                    for _, fields in reversed(history):
                        self.hub.deliver(_event_from_fields(fields), fan_out=started)
                    await self._scripts["raise_seq"](keys=[self._key("seq")], args=[self.hub.last_id])
                    last = history[0][0] if history else "0-0"
                    started = True
                    self._problem = None
                    pause = 0.05
                    logger.info("reading the alert stream %s from Redis", stream)
                response = await self._reader.xread({stream: last}, count=500, block=1000)
                for _, messages in response or ():
                    for stream_id, fields in messages:
                        self.hub.deliver(_event_from_fields(fields))
                        last = stream_id
                self._problem = None
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                if self._problem is None or last is not None:
                    logger.warning("the state store (Redis) cannot be reached: %s; retrying", error)
                self._problem = f"the state store (Redis) cannot be reached: {error}"
                last = None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
            except Exception:  # a malformed stream entry must not stop the alerts
                logger.exception("reading the alert stream failed; retrying")
                last = None
                await asyncio.sleep(1.0)


def _event_json(event: AlertEvent) -> str:
    data = event.to_dict(include_text=True)
    data.pop("id")
    return json.dumps(data, ensure_ascii=False)


def _event_from_fields(fields: dict[str, str]) -> AlertEvent:
    data = json.loads(fields["event"])
    return AlertEvent(
        **{**data, "reasons": tuple(data["reasons"]), "since_turn": dict(data["since_turn"]), "id": int(fields["id"])}
    )
