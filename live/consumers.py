"""The `/ws` consumer: authenticated live streams of executions, workflows and notifications.

Live delivery through the channel layer is at-most-once, so the stored log is the source of
truth: each execution subscription remembers the last seq it sent, drops duplicates, and
reads any gap (or anything held back by flow control) from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from accounts.authentication import api_key_authenticate, user_from_access_token
from accounts.models import ApiKey, ApiScope, User
from autoflow.exceptions import TokenInvalid
from autoflow.request_threads import RequestThreads
from executions.events import unbatched
from live import selectors
from live.publish import execution_group, user_group, workflow_group

logger = logging.getLogger(__name__)

PROTOCOL = "autoflow.v1"
BEARER_PREFIX = "bearer."
API_KEY_PREFIX = "af_"

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_FAR_BEHIND = 4429


MESSAGE_HANDLERS = {
    "ping": "_on_ping",
    "auth": "_on_auth",
    "subscribe:execution": "_on_subscribe_execution",
    "unsubscribe:execution": "_on_unsubscribe_execution",
    "subscribe:workflow": "_on_subscribe_workflow",
    "unsubscribe:workflow": "_on_unsubscribe_workflow",
    "ack": "_on_ack",
}


class BadMessage(Exception):
    """A client message that is not valid JSON, of an unknown type, or missing a field."""


@dataclass
class ExecutionSubscription:
    """Delivery state of one execution on one socket."""

    execution_id: str
    sent_seq: int
    acked_seq: int
    known_seq: int
    final: selectors.ExecutionSnapshot | None = None
    complete_sent: bool = False
    last_activity: float = field(default_factory=time.monotonic)
    stall_timer: asyncio.Task[None] | None = None


@dataclass
class WorkflowSubscription:
    """One watched workflow; `always_visible` when the caller owns it or is an admin."""

    workflow_id: str
    always_visible: bool


@dataclass
class Authenticated:
    user: User
    api_key: ApiKey | None = None
    expires_at: float | None = None


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def origin_allowed(scope: dict[str, Any], origin: str) -> bool:
    """An Origin is allowed when it is a CORS-allowed origin or the site the socket is on."""
    allowed = {item.rstrip("/").lower() for item in settings.CORS_ALLOWED_ORIGINS}
    if origin.rstrip("/").lower() in allowed:
        return True
    parts = urlsplit(origin)
    host = (_header(scope, b"host") or "").lower()
    return bool(parts.scheme in ("http", "https") and parts.netloc and parts.netloc.lower() == host)


def _offered_token(scope: dict[str, Any]) -> str | None:
    for protocol in scope.get("subprotocols", []):
        if protocol.startswith(BEARER_PREFIX):
            return str(protocol[len(BEARER_PREFIX) :])
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    tokens = query.get("token")
    return tokens[0] if tokens else None


def _authenticate_token(raw: str) -> Authenticated:
    """Resolve an access JWT or an API key to its user; raises `TokenInvalid`."""
    if raw.startswith(API_KEY_PREFIX):
        api_key = api_key_authenticate(raw)
        return Authenticated(user=api_key.user, api_key=api_key)
    user, token = user_from_access_token(raw)
    return Authenticated(user=user, expires_at=float(token["exp"]))


def _required_str(message: dict[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise BadMessage(f"`{name}` is required and must be a string.")
    return value


def _required_uuid(message: dict[str, Any], name: str) -> str:
    value = _required_str(message, name)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadMessage(f"`{name}` must be a UUID.") from None


def _seq(message: dict[str, Any], name: str, *, required: bool) -> int:
    value = message.get(name)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadMessage(f"`{name}` must be a non-negative integer.")
    return value


class SnapshotBatcher:
    """Coalesce one event loop's snapshot reads into one query at a time.

    A thousand sockets each polling its execution would queue a thousand queries on the few
    request threads (holding each socket's lock meanwhile); reads that arrive while one query
    runs are answered together by the next. The runner starts in a fresh context (the socket
    whose read started it may close before it ends, and that socket's request thread is lent
    to it only while it is open) and borrows a request thread for each query, as a request
    does: on asgiref's process-wide thread every query opened a database connection.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[selectors.ExecutionSnapshot | None]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def get(self, execution_id: str) -> selectors.ExecutionSnapshot | None:
        future: asyncio.Future[selectors.ExecutionSnapshot | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.setdefault(execution_id, []).append(future)
        if self._runner is None or self._runner.done():
            threads = RequestThreads.current.get()
            self._runner = asyncio.create_task(self._run(threads), context=contextvars.Context())
        return await future

    async def _run(self, threads: RequestThreads | None) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                async with threads.context() if threads else contextlib.nullcontext():
                    found = await database_sync_to_async(selectors.execution_snapshots)(
                        execution_ids=list(batch)
                    )
            except Exception as error:  # each waiting socket handles it as its own read would
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
                continue
            for execution_id, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(execution_id))


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SnapshotBatcher] = (
    weakref.WeakKeyDictionary()
)


def snapshot_batched(execution_id: str) -> Awaitable[selectors.ExecutionSnapshot | None]:
    """Read an execution's snapshot through the running loop's batcher."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = SnapshotBatcher()
    return batcher.get(execution_id)


class LiveConsumer(AsyncWebsocketConsumer):
    """Serve SPEC.md's `/ws` protocol to one socket."""

    window_lines = 10_000
    batch_lines = 1_000
    batch_bytes = 256 * 1024
    token_grace_seconds = 10.0
    # How long a client may sit on a full window (sending no ack) before it is closed.
    stall_grace_seconds = 5.0
    # A quiet unfinished subscription is checked against the database this often, so a
    # dropped live message (or a lost `execution.complete`) is still delivered.
    poll_interval_seconds = 5.0
    max_subscriptions = 100

    auth: Authenticated | None
    closing: bool

    async def connect(self) -> None:
        self.auth = None
        self.closing = False
        self.executions: dict[str, ExecutionSubscription] = {}
        self.workflows: dict[str, WorkflowSubscription] = {}
        self.lock = asyncio.Lock()
        self.expiry_task: asyncio.Task[None] | None = None
        self.poll_task: asyncio.Task[None] | None = None
        offered = self.scope.get("subprotocols", [])
        await self.accept(PROTOCOL if PROTOCOL in offered else None)
        # A close before accept reaches a browser as a bare HTTP 403 it cannot read, so the
        # socket is accepted first and closed with an application code before any data.
        code = await self._authenticate()
        if code is not None:
            await self._close(code)
            return
        user = self.current.user
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        await self._send({"type": "connected", "user_id": str(user.pk)})
        self._schedule_expiry()
        self.poll_task = asyncio.create_task(self._poll_forever())

    @property
    def current(self) -> Authenticated:
        """The socket's authentication; messages are only handled once it is set."""
        if self.auth is None:
            raise RuntimeError("The socket is not authenticated.")
        return self.auth

    async def _authenticate(self) -> int | None:
        origin = _header(self.scope, b"origin")
        if origin is not None and not origin_allowed(self.scope, origin):
            return CLOSE_FORBIDDEN
        raw = _offered_token(self.scope)
        if raw is not None:
            try:
                self.auth = await database_sync_to_async(_authenticate_token)(raw)
            except TokenInvalid:
                return CLOSE_UNAUTHENTICATED
            api_key = self.auth.api_key
            if api_key is not None and not api_key.has_scope(ApiScope.EXECUTIONS_READ):
                self.auth = None
                return CLOSE_FORBIDDEN
            return None
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            return CLOSE_UNAUTHENTICATED
        # A cookie rides along on any cross-site socket; only a checked Origin proves the
        # page that opened this one is ours.
        if origin is None:
            return CLOSE_FORBIDDEN
        self.auth = Authenticated(user=user)
        return None

    async def disconnect(self, code: int) -> None:
        self.closing = True
        for task in (self.expiry_task, self.poll_task):
            if task is not None:
                task.cancel()
        for subscription in self.executions.values():
            self._cancel_stall_timer(subscription)
        if self.auth is None:
            return
        groups = [user_group(self.auth.user.pk)]
        groups += [execution_group(key) for key in self.executions]
        groups += [workflow_group(key) for key in self.workflows]
        for group in groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- sending ---------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        if not self.closing:
            await self.send(text_data=json.dumps(message, default=str))

    async def _error(self, code: str, message: str) -> None:
        await self._send({"type": "error", "code": code, "message": message})

    async def _close(self, code: int) -> None:
        if not self.closing:
            self.closing = True
            await self.close(code)

    # --- client messages -------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.auth is None or self.closing:
            return
        try:
            if text_data is None:
                raise BadMessage("Messages are JSON text frames.")
            try:
                message = json.loads(text_data)
            except ValueError:
                raise BadMessage("The message is not valid JSON.") from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise BadMessage("A message is a JSON object with a string `type`.")
            handler_name = MESSAGE_HANDLERS.get(message["type"])
            if handler_name is None:
                raise BadMessage(f"Unknown message type {message['type']!r}.")
            async with self.lock:
                await getattr(self, handler_name)(message)
        except BadMessage as error:
            await self._error("bad_message", str(error))

    async def _on_ping(self, message: dict[str, Any]) -> None:
        await self._send({"type": "pong"})

    async def _on_auth(self, message: dict[str, Any]) -> None:
        raw = _required_str(message, "token")
        try:
            renewed = await database_sync_to_async(_authenticate_token)(raw)
        except TokenInvalid:
            await self._close(CLOSE_UNAUTHENTICATED)
            return
        if renewed.user.pk != self.current.user.pk:
            # A socket belongs to one user for its whole life; switching is a new connection.
            await self._close(CLOSE_UNAUTHENTICATED)
            return
        if renewed.api_key is not None and not renewed.api_key.has_scope(ApiScope.EXECUTIONS_READ):
            await self._close(CLOSE_FORBIDDEN)
            return
        self.auth = renewed
        self._schedule_expiry()

    async def _on_subscribe_execution(self, message: dict[str, Any]) -> None:
        execution_id = _required_uuid(message, "execution_id")
        after_seq = _seq(message, "after_seq", required=False)
        group = execution_group(execution_id)
        new = execution_id not in self.executions
        # Join the group before reading the row: a line committed after the read is then
        # published to us, and one committed before it is replayed (duplicates dropped). The
        # handlers drop messages of runs not subscribed here, so joining before the visibility
        # check, which the same read makes, shows nothing.
        await self.channel_layer.group_add(group, self.channel_name)
        snapshot: selectors.ExecutionSnapshot | None = None
        try:
            snapshot = await database_sync_to_async(selectors.execution_snapshot_for_user)(
                user=self.current.user, execution_id=execution_id
            )
        finally:
            if snapshot is None and new:  # not visible, or the read failed: leave the group
                await self.channel_layer.group_discard(group, self.channel_name)
        if snapshot is None:
            await self._error("not_found", "Execution not found.")
            return
        previous = self.executions.pop(execution_id, None)
        if previous is not None:
            self._cancel_stall_timer(previous)
        elif len(self.executions) + len(self.workflows) >= self.max_subscriptions:
            await self.channel_layer.group_discard(group, self.channel_name)
            raise BadMessage(f"At most {self.max_subscriptions} subscriptions per socket.")
        subscription = ExecutionSubscription(
            execution_id=execution_id,
            sent_seq=after_seq,
            acked_seq=after_seq,
            known_seq=snapshot.last_seq,
            final=snapshot if snapshot.is_terminal else None,
        )
        self.executions[execution_id] = subscription
        await self._send(
            {"type": "subscribed", "execution_id": execution_id, "last_seq": snapshot.last_seq}
        )
        await self._deliver(subscription)

    async def _on_unsubscribe_execution(self, message: dict[str, Any]) -> None:
        execution_id = _required_uuid(message, "execution_id")
        subscription = self.executions.pop(execution_id, None)
        if subscription is not None:
            self._cancel_stall_timer(subscription)
            await self.channel_layer.group_discard(execution_group(execution_id), self.channel_name)

    async def _on_ack(self, message: dict[str, Any]) -> None:
        execution_id = _required_uuid(message, "execution_id")
        seq = _seq(message, "seq", required=True)
        subscription = self.executions.get(execution_id)
        if subscription is None:
            raise BadMessage("Not subscribed to this execution.")
        # Acknowledging lines never sent must not open the window wider than the client holds.
        acked = min(seq, subscription.sent_seq)
        if acked > subscription.acked_seq:
            subscription.acked_seq = acked
            await self._deliver(subscription)

    async def _on_subscribe_workflow(self, message: dict[str, Any]) -> None:
        workflow_id = _required_uuid(message, "workflow_id")
        api_key = self.current.api_key
        if api_key is not None and not api_key.has_scope(ApiScope.WORKFLOWS_READ):
            await self._error("scope_missing", "The API key needs the workflows:read scope.")
            return
        user = self.current.user
        workflow = await database_sync_to_async(selectors.workflow_visible_to)(
            user=user, workflow_id=workflow_id
        )
        if workflow is None:
            await self._error("not_found", "Workflow not found.")
            return
        if workflow_id not in self.workflows and (
            len(self.executions) + len(self.workflows) >= self.max_subscriptions
        ):
            raise BadMessage(f"At most {self.max_subscriptions} subscriptions per socket.")
        self.workflows[workflow_id] = WorkflowSubscription(
            workflow_id=workflow_id,
            always_visible=user.is_staff or workflow.owner_id == user.pk,
        )
        await self.channel_layer.group_add(workflow_group(workflow_id), self.channel_name)
        await self._send({"type": "subscribed", "workflow_id": workflow_id})

    async def _on_unsubscribe_workflow(self, message: dict[str, Any]) -> None:
        workflow_id = _required_uuid(message, "workflow_id")
        if self.workflows.pop(workflow_id, None) is not None:
            await self.channel_layer.group_discard(workflow_group(workflow_id), self.channel_name)

    # --- delivery --------------------------------------------------------------------------

    async def _deliver(self, subscription: ExecutionSubscription) -> None:
        """Send what the window allows, from the database, then `complete` once all is sent."""
        while not self.closing:
            limit = min(subscription.known_seq, subscription.acked_seq + self.window_lines)
            if subscription.sent_seq >= limit:
                break
            lines = await database_sync_to_async(selectors.execution_log_lines)(
                execution_id=subscription.execution_id,
                after_seq=subscription.sent_seq,
                up_to_seq=limit,
                limit=self.batch_lines,
            )
            if not lines or lines[0]["seq"] != subscription.sent_seq + 1:
                break
            await self._send_lines(subscription, lines)
        self._check_stall(subscription)
        await self._maybe_complete(subscription)

    async def _send_lines(
        self, subscription: ExecutionSubscription, lines: list[dict[str, Any]]
    ) -> None:
        # Bounded frames: many clients refuse a message over 1 MiB by default.
        chunk: list[dict[str, Any]] = []
        size = 0
        for line in lines:
            line_size = len(json.dumps(line, default=str))
            if chunk and (len(chunk) >= self.batch_lines or size + line_size > self.batch_bytes):
                await self._send_chunk(subscription, chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += line_size
        if chunk:
            await self._send_chunk(subscription, chunk)

    async def _send_chunk(
        self, subscription: ExecutionSubscription, lines: list[dict[str, Any]]
    ) -> None:
        await self._send(
            {"type": "execution:logs", "execution_id": subscription.execution_id, "lines": lines}
        )
        subscription.sent_seq = int(lines[-1]["seq"])
        subscription.known_seq = max(subscription.known_seq, subscription.sent_seq)

    async def _maybe_complete(self, subscription: ExecutionSubscription) -> None:
        final = subscription.final
        if final is None or subscription.complete_sent or self.closing:
            return
        if subscription.sent_seq < final.last_seq:
            return
        subscription.complete_sent = True
        await self._send(
            {
                "type": "execution:complete",
                "execution_id": subscription.execution_id,
                "status": final.status,
                "duration_ms": final.duration_ms,
                "output": final.output,
            }
        )

    def _check_stall(self, subscription: ExecutionSubscription) -> None:
        window_full = subscription.sent_seq >= subscription.acked_seq + self.window_lines
        stalled = window_full and subscription.known_seq > subscription.sent_seq
        if not stalled:
            self._cancel_stall_timer(subscription)
        elif subscription.stall_timer is None:
            subscription.stall_timer = asyncio.create_task(
                self._close_if_still_stalled(subscription, subscription.acked_seq)
            )

    def _cancel_stall_timer(self, subscription: ExecutionSubscription) -> None:
        if subscription.stall_timer is not None:
            subscription.stall_timer.cancel()
            subscription.stall_timer = None

    async def _close_if_still_stalled(
        self, subscription: ExecutionSubscription, acked_at_start: int
    ) -> None:
        await asyncio.sleep(self.stall_grace_seconds)
        async with self.lock:
            subscription.stall_timer = None
            if self.executions.get(subscription.execution_id) is not subscription:
                return
            if subscription.acked_seq == acked_at_start:
                await self._close(CLOSE_TOO_FAR_BEHIND)
            else:
                self._check_stall(subscription)

    async def _refresh_from_database(self, subscription: ExecutionSubscription) -> None:
        snapshot = await snapshot_batched(subscription.execution_id)
        if snapshot is None:
            return
        subscription.known_seq = max(subscription.known_seq, snapshot.last_seq)
        if snapshot.is_terminal:
            subscription.final = snapshot
        await self._deliver(subscription)

    # --- channel-layer events --------------------------------------------------------------

    async def event_batch(self, event: dict[str, Any]) -> None:
        """Several events published together: each handled in order, as if sent alone."""
        handlers = {
            "execution.logs": self.execution_logs,
            "execution.status": self.execution_status,
            "execution.complete": self.execution_complete,
            "notification": self.notification,
        }
        for message in unbatched(event):
            handler = handlers.get(message.get("type", ""))
            if handler is not None:
                await handler(message)

    async def execution_logs(self, event: dict[str, Any]) -> None:
        async with self.lock:
            subscription = self.executions.get(str(event.get("execution_id")))
            lines = sorted(event.get("lines") or [], key=lambda line: int(line["seq"]))
            if subscription is None or not lines:
                return
            subscription.last_activity = time.monotonic()
            subscription.known_seq = max(subscription.known_seq, int(lines[-1]["seq"]))
            fresh = [line for line in lines if int(line["seq"]) > subscription.sent_seq]
            contiguous = bool(fresh) and all(
                int(line["seq"]) == subscription.sent_seq + 1 + index
                for index, line in enumerate(fresh)
            )
            fits = bool(fresh) and (
                int(fresh[-1]["seq"]) <= subscription.acked_seq + self.window_lines
            )
            if contiguous and fits:
                await self._send_lines(subscription, [_line_shape(line) for line in fresh])
                await self._maybe_complete(subscription)
            else:
                # A skipped seq (a dropped message) or a full window: the database has it all.
                await self._deliver(subscription)

    async def execution_status(self, event: dict[str, Any]) -> None:
        async with self.lock:
            execution_id = str(event.get("execution_id"))
            subscription = self.executions.get(execution_id)
            if subscription is None:
                return
            subscription.last_activity = time.monotonic()
            message: dict[str, Any] = {
                "type": "execution:status",
                "execution_id": execution_id,
                "status": event.get("status"),
            }
            for name in ("node_id", "node_status"):
                if event.get(name) is not None:
                    message[name] = event[name]
            await self._send(message)

    async def execution_complete(self, event: dict[str, Any]) -> None:
        async with self.lock:
            subscription = self.executions.get(str(event.get("execution_id")))
            if subscription is None or subscription.complete_sent:
                return
            # The final line count comes from the database: lines published just before the
            # end may have been dropped by the channel layer, and must precede `complete`.
            await self._refresh_from_database(subscription)

    async def workflow_update(self, event: dict[str, Any]) -> None:
        async with self.lock:
            workflow_id = str(event.get("workflow_id"))
            subscription = self.workflows.get(workflow_id)
            if subscription is None or self.auth is None:
                return
            if not subscription.always_visible and event.get("event") != "deleted":
                visible = await database_sync_to_async(selectors.workflow_visible_to)(
                    user=self.auth.user, workflow_id=workflow_id
                )
                if visible is None:
                    # Made private: the watcher loses it without learning anything more.
                    self.workflows.pop(workflow_id, None)
                    await self.channel_layer.group_discard(
                        workflow_group(workflow_id), self.channel_name
                    )
                    return
            await self._send(
                {
                    "type": "workflow:update",
                    "workflow_id": workflow_id,
                    "event": event.get("event"),
                    "version": event.get("version"),
                }
            )

    async def notification(self, event: dict[str, Any]) -> None:
        message: dict[str, Any] = {
            "type": "notification",
            "level": event.get("level", "info"),
            "title": event.get("title", ""),
            "message": event.get("message", ""),
        }
        for name in ("execution_id", "workflow_id"):
            if event.get(name) is not None:
                message[name] = str(event[name])
        await self._send(message)

    # --- timers ----------------------------------------------------------------------------

    def _schedule_expiry(self) -> None:
        if self.expiry_task is not None:
            self.expiry_task.cancel()
            self.expiry_task = None
        if self.auth is not None and self.auth.expires_at is not None:
            delay = max(0.0, self.auth.expires_at - time.time())
            self.expiry_task = asyncio.create_task(self._expire_after(delay))

    async def _expire_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._error("token_expired", "The access token expired; send a fresh one as auth.")
        await asyncio.sleep(self.token_grace_seconds)
        await self._close(CLOSE_UNAUTHENTICATED)

    async def _poll_forever(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.poll_interval_seconds)
            now = time.monotonic()
            for subscription in list(self.executions.values()):
                quiet = now - subscription.last_activity >= self.poll_interval_seconds
                if subscription.complete_sent or not quiet:
                    continue
                try:
                    async with self.lock:
                        if self.executions.get(subscription.execution_id) is subscription:
                            await self._refresh_from_database(subscription)
                except DatabaseError:
                    # The database will be back; the next round tries again.
                    logger.warning("live poll failed", exc_info=True)
                subscription.last_activity = now


def _line_shape(line: dict[str, Any]) -> dict[str, Any]:
    """A published line reduced to SPEC.md's fields."""
    return {
        "seq": int(line["seq"]),
        "ts": line.get("ts"),
        "level": line.get("level"),
        "node_id": line.get("node_id"),
        "message": line.get("message"),
        "data": line.get("data"),
    }
