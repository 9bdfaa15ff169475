"""`/api/hooks/{token}`: a plain async Django view, so a call that waits holds no thread.

The synchronous work (lookup, rate limit, signature, parse, start) happens in one hop to the
request's long-lived thread (`autoflow.request_threads`), which keeps its database connection
between requests. With `respond: "on_complete"` the view then waits for the execution's
`execution.complete` message (`executions.completions`: one Redis pub/sub connection per web
process, or the embedded worker's own publisher), re-checking the database every half second
(live delivery is best-effort), bounded by `WEBHOOK_RESPOND_TIMEOUT_SECONDS`; a message that
says the run succeeded carries its output, so that answer needs no second hop. Each call's
record is queued for `triggers.call_log`'s batched writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from autoflow.bounded import BoundedCache
from autoflow.exceptions import (
    AppError,
    ExecutionFailed,
    NotFound,
    SignatureInvalid,
    ValidationFailed,
    error_json_response,
    translate_exception,
)
from autoflow.ratelimit import check_rate
from autoflow.statements import get_one
from autoflow.storable import refuse_constant
from executions import completions
from executions.models import TERMINAL_STATUSES, Execution, ExecutionStatus, ExecutionTrigger
from executions.services import WorkflowChanged, execution_start
from nodes.builtin.trigger import TriggerParams
from triggers.call_log import call_log
from triggers.config import trigger_params
from workflows.models import Workflow

SIGNATURE_HEADER = "X-AutoFlow-Signature"
SIGNATURE_PREFIX = "sha256="
IDEMPOTENCY_KEY_MAX_LENGTH = 255
RECHECK_SECONDS = 0.5
# Request headers never passed into the execution input (stored, shown, streamed).
HIDDEN_HEADERS = frozenset({"cookie"})
LIVE_HOOKS_MAX = 4096


class WebhookMethodNotAllowed(AppError):
    status_code = 405
    code = "method_not_allowed"
    default_message = "This webhook does not accept this method."


@dataclass
class Waiter:
    """How this call hears of its execution's end: a future from `executions.completions`."""

    execution_id: uuid.UUID  # the planned one: a replay's own run is re-checked in the database
    future: asyncio.Future[Any]
    channel: str  # where the worker announces the end (`Execution.notify_channel`)


@dataclass
class Accepted:
    """What the synchronous part decided: the execution started and how to answer."""

    workflow_id: uuid.UUID
    execution_id: uuid.UUID
    status: str
    wait: bool


def _verify_signature(secret: str, body: bytes, header: str | None) -> None:
    if not header or not header.startswith(SIGNATURE_PREFIX):
        raise SignatureInvalid("Send X-AutoFlow-Signature: sha256=<hex HMAC-SHA256 of the body>.")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header[len(SIGNATURE_PREFIX) :].strip().lower(), expected):
        raise SignatureInvalid()


def _flat(read: Callable[[], QueryDict]) -> dict[str, Any]:
    """The query or form `read` gives (Django parses it then), one value per key, a list when
    the key repeats. One Django refuses (malformed, too many fields or files) is a 400."""
    try:
        query = read()
    except (MultiPartParserError, TooManyFieldsSent, TooManyFilesSent) as error:
        raise ValidationFailed(f"Malformed query or form: {error}") from None
    return {key: values[0] if len(values) == 1 else values for key, values in query.lists()}


def _parse_body(request: HttpRequest) -> Any:
    """The body by its real content type: JSON, form, else text (None when empty)."""
    body = request.body
    content_type = request.content_type or ""
    if content_type == "application/json" or content_type.endswith("+json"):
        if not body.strip():
            return None
        try:
            return json.loads(body, parse_constant=refuse_constant)
        except (ValueError, UnicodeDecodeError) as error:
            raise ValidationFailed(f"Malformed JSON body: {error}") from None
        except RecursionError:
            raise ValidationFailed("Malformed JSON body: nested too deeply.") from None
    if content_type == "application/x-www-form-urlencoded":
        return _flat(lambda: QueryDict(body, encoding=request.encoding or "utf-8"))
    if content_type == "multipart/form-data":
        return _flat(lambda: request.POST)
    if not body:
        return None
    return body.decode(request.encoding or "utf-8", errors="replace")


def _input_for(request: HttpRequest, body: Any) -> dict[str, Any]:
    return {
        "method": request.method,
        "body": body,
        "query": _flat(lambda: request.GET),
        "headers": {
            name.lower(): value
            for name, value in request.headers.items()
            if name.lower() not in HIDDEN_HEADERS
        },
    }


@dataclass(frozen=True)
class Hook:
    """A webhook's workflow as a call needs it: what it checks, and what it starts.

    `params` is None when the webhook is not live (the workflow inactive, or its trigger not a
    webhook). A hook from `_live_hooks` holds no workflow row (`workflow` is None): a start
    from it expects the row to still hold what was read (`only_if`).
    """

    workflow_id: uuid.UUID
    version: int
    params: TriggerParams | None
    workflow: Workflow | None = None

    @classmethod
    def read(cls, token: str) -> Hook:
        workflow = get_one(Workflow, "webhook_token", token)  # unique; compiled once
        if workflow is None:
            raise NotFound("No webhook has this URL.")
        params = trigger_params(workflow.graph)
        live = workflow.active and params is not None and params.mode == "webhook"
        return cls(workflow.pk, workflow.version, params if live else None, workflow)

    def cached(self) -> Hook:
        return Hook(self.workflow_id, self.version, self.params)

    def start_args(self, token: str) -> dict[str, Any]:
        """`execution_start`'s workflow, and for a cached hook what its row must still hold."""
        if self.workflow is not None:
            return {"workflow": self.workflow}
        expected = {
            "id": self.workflow_id,
            "version": self.version,
            "active": True,
            "webhook_token": token,
        }
        return {"workflow": Workflow.known(expected), "only_if": expected}


# token -> its live webhook, as this process last read it: a call to a known webhook reads no
# row (~0.2 ms of a W1 execution's 6). Its start is guarded by what was read, and any refusal
# is decided again on the row: a workflow changed, deactivated or deleted since, or a token
# rotated, is read again, and no answer comes from a stale copy.
_live_hooks: BoundedCache[str, Hook] = BoundedCache(LIVE_HOOKS_MAX)


class _Stale(Exception):
    """A cached hook did not start this call: read the workflow and decide again."""


@dataclass
class _Steps:
    """The steps of a call's checks that run once however many times the call is decided: its
    rate-limit hit is counted once, and its body parsed once (Django parses a multipart body
    once: after a failure it reads as empty)."""

    outcomes: dict[str, tuple[Any, AppError | None]] = field(default_factory=dict)

    def once(self, step: str, run: Callable[[], Any]) -> Any:
        """`run()`'s value, or its refusal raised again, as the first time."""
        if step not in self.outcomes:
            try:
                self.outcomes[step] = (run(), None)
            except AppError as error:
                self.outcomes[step] = (None, error)
        value, refusal = self.outcomes[step]
        if refusal is not None:
            raise refusal
        return value


def _accept(request: HttpRequest, token: str, planned_id: uuid.UUID, channel: str) -> Accepted:
    """Run every check in SPEC order, start the execution, record the call (one thread hop).

    A waiting call starts it with `channel` as its `notify_channel`.
    """
    # A replay (Idempotency-Key) answers from its record: only a read says whether the webhook
    # is still live to answer it.
    hook = None if request.headers.get("Idempotency-Key") else _live_hooks.get(token)
    steps = _Steps()
    if hook is not None:
        try:
            return _accept_for(hook, request, token, planned_id, channel, steps)
        except _Stale:
            _live_hooks.discard(token)
    return _accept_for(Hook.read(token), request, token, planned_id, channel, steps)


def _accept_for(
    hook: Hook,
    request: HttpRequest,
    token: str,
    planned_id: uuid.UUID,
    channel: str,
    steps: _Steps,
) -> Accepted:
    """`_accept`'s checks and start on `hook`; a cached one that does not start the call
    raises `_Stale` instead of refusing it."""
    method = request.method or "GET"
    status = 500
    record = True
    execution_id: uuid.UUID | None = None
    try:
        params = hook.params
        if params is None:
            raise NotFound("No live webhook has this URL.")
        if method not in params.methods:
            raise WebhookMethodNotAllowed(
                f"This webhook accepts {', '.join(params.methods)}.",
                details={"allowed": params.methods},
            )
        steps.once(
            "rate",
            lambda: check_rate(
                request, group="webhook", key=token, rate=settings.RATE_LIMIT_WEBHOOK
            ),
        )
        if params.secret:
            _verify_signature(params.secret, request.body, request.headers.get(SIGNATURE_HEADER))
        payload = steps.once("input", lambda: _input_for(request, _parse_body(request)))
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
            raise ValidationFailed(
                "Idempotency-Key is too long.",
                details={"Idempotency-Key": [f"At most {IDEMPOTENCY_KEY_MAX_LENGTH} characters."]},
            )
        wait = params.respond == "on_complete"
        execution, created = execution_start(
            **hook.start_args(token),
            trigger=ExecutionTrigger.WEBHOOK,
            input=payload,
            user=None,
            idempotency_key=key,
            idempotency_scope=f"webhook:{token}",
            execution_id=planned_id,
            notify_channel=channel if wait else "",
        )
        if hook.workflow is not None:
            _live_hooks.put(token, hook.cached())
        execution_id = execution.pk
        # A replay answers what the first call answered: the execution, queued.
        current: str = ExecutionStatus.QUEUED
        if wait and not created:
            execution.refresh_from_db(fields=["status"])
            current = execution.status
        status = 202
        # A waiting call is recorded once it knows what it answered.
        record = not wait
        return Accepted(
            workflow_id=hook.workflow_id,
            execution_id=execution.pk,
            status=current,
            wait=wait,
        )
    except (AppError, WorkflowChanged) as error:
        if hook.workflow is None:
            record = False
            raise _Stale() from error
        if isinstance(error, AppError):
            status = error.status_code
        raise
    finally:
        # Rate-limited calls are not recorded: a flood must not become a flood of rows.
        if record and status != 429:
            call_log.add(
                workflow_id=hook.workflow_id,
                method=method,
                status=status,
                execution_id=execution_id,
            )


def _stored_outcome(execution_id: uuid.UUID) -> dict[str, Any] | None:
    found = Execution.objects.filter(pk=execution_id).values("status", "output", "error").first()
    return dict(found) if found is not None else None


async def _outcome(accepted: Accepted, completion: dict[str, Any] | None) -> dict[str, Any] | None:
    """How the run ended: from its completion message when that carries it, else its row."""
    if completion is not None and completion.get("status") == ExecutionStatus.SUCCEEDED:
        # The message carries the stored output: no need to read the row back.
        return {"status": completion["status"], "output": completion["output"]}
    outcome: dict[str, Any] | None = await sync_to_async(_stored_outcome)(accepted.execution_id)
    return outcome


def _answer(accepted: Accepted, row: dict[str, Any] | None) -> HttpResponse:
    """The waiting call's answer: the output, the failure, or still 202."""
    status = row["status"] if row else accepted.status
    if status == ExecutionStatus.SUCCEEDED and row is not None:
        return JsonResponse(_leaf_output(row["output"]), status=200, safe=False)
    if status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED) and row is not None:
        return error_json_response(
            ExecutionFailed.code,
            f"The execution {status}.",
            ExecutionFailed.status_code,
            {"execution_id": str(accepted.execution_id), "status": status, "error": row["error"]},
        )
    return JsonResponse({"execution_id": str(accepted.execution_id), "status": status}, status=202)


def _leaf_output(output: Any) -> Any:
    """The single leaf's output when exactly one leaf ran, else the map by leaf id."""
    if isinstance(output, dict) and len(output) == 1:
        return next(iter(output.values()))
    return output


def _status_of(execution_id: uuid.UUID) -> str | None:
    return Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()


async def _wait_for_completion(accepted: Accepted, waiter: Waiter) -> dict[str, Any] | None:
    """Return the completion message, or None once the row is terminal or the bound passes."""
    if accepted.status in TERMINAL_STATUSES:
        return None
    deadline = time.monotonic() + settings.WEBHOOK_RESPOND_TIMEOUT_SECONDS
    while (remaining := deadline - time.monotonic()) > 0:
        timeout = min(RECHECK_SECONDS, remaining)
        done, _ = await asyncio.wait({waiter.future}, timeout=timeout)
        if done:
            return dict(waiter.future.result())
        # A lost message or a down Redis must not hold the answer until the bound.
        status = await sync_to_async(_status_of)(accepted.execution_id)
        if status is None or status in TERMINAL_STATUSES:
            return None
    return None


def _unsubscribe(waiter: Waiter) -> None:
    completions.unsubscribe(waiter.execution_id, waiter.future)


def _error_response(error: Exception) -> HttpResponse:
    code, message, status, details, headers = translate_exception(error)
    response = error_json_response(code, message, status, details)
    for name, value in headers.items():
        response[name] = value
    if isinstance(error, WebhookMethodNotAllowed):
        response["Allow"] = ", ".join(error.details.get("allowed", []))
    return response


@csrf_exempt
async def webhook_receive(request: HttpRequest, token: str) -> HttpResponse:
    """Start an execution from a webhook call; answer 202, or its outcome when asked to wait."""
    planned_id = uuid.uuid4()
    # Subscribed before the run exists, which names this process's channel when it waits (a
    # replay follows the first call's run, whose end goes to the first caller's process: the
    # database re-check hears it here). Without a wait, the future is simply given back.
    waiter = Waiter(planned_id, *await completions.subscribe(planned_id))
    try:
        accepted = await sync_to_async(_accept)(request, token, planned_id, waiter.channel)
    except Exception as error:  # translate_exception re-raises what is not ours to answer
        _unsubscribe(waiter)
        return _error_response(error)
    if not accepted.wait:
        _unsubscribe(waiter)
        return JsonResponse(
            {"execution_id": str(accepted.execution_id), "status": accepted.status}, status=202
        )
    try:
        completion = await _wait_for_completion(accepted, waiter)
    finally:
        _unsubscribe(waiter)
    try:
        response = _answer(accepted, await _outcome(accepted, completion))
    except Exception as error:
        return _error_response(error)
    call_log.add(
        workflow_id=accepted.workflow_id,
        method=request.method or "GET",
        status=response.status_code,
        execution_id=accepted.execution_id,
    )
    return response
