"""The `delay` node: wait for a number of seconds or until a time, holding no worker."""

from __future__ import annotations

import datetime as dt

import pydantic

from nodes.base import Node, NodeContext, NodeError, NodeParams, NodeResult
from nodes.registry import register

MAX_DELAY = dt.timedelta(days=30)


class DelayParams(NodeParams):
    seconds: float | None = pydantic.Field(
        default=None, ge=0, le=MAX_DELAY.total_seconds(), allow_inf_nan=False
    )
    until: dt.datetime | None = None

    @pydantic.field_validator("until")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("`until` needs a time zone (e.g. 2030-01-01T09:00:00Z).")
        return value

    @pydantic.model_validator(mode="after")
    def _one_of(self) -> DelayParams:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("Give exactly one of `seconds` or `until`.")
        return self


@register
class DelayNode(Node):
    """Ask the engine to park the run until the wait is over; output `{resumed_at}`."""

    type = "delay"
    Params = DelayParams

    def run(self, ctx: NodeContext, params: DelayParams) -> NodeResult:
        now = dt.datetime.now(dt.UTC)
        if params.seconds is not None:
            wait_until = now + dt.timedelta(seconds=params.seconds)
        else:
            assert params.until is not None  # noqa: S101 - guaranteed by the params validator
            wait_until = params.until.astimezone(dt.UTC)
            if wait_until - now > MAX_DELAY:
                raise NodeError(f"`until` is more than {MAX_DELAY.days} days away.")
        if wait_until <= now:
            return NodeResult(output={"resumed_at": now.isoformat()})
        return NodeResult(wait_until=wait_until)
