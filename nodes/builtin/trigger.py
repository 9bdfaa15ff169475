"""The `trigger` node: how an execution starts (manual, webhook or schedule)."""

from __future__ import annotations

import zoneinfo
from typing import Any, Literal

import pydantic
from croniter import croniter

from nodes.base import Node, NodeContext, NodeParams, NodeResult
from nodes.expressions import to_plain
from nodes.registry import register

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


def _default_methods() -> list[Method]:
    return ["POST"]


class TriggerParams(NodeParams):
    mode: Literal["manual", "webhook", "schedule"] = "manual"
    methods: list[Method] = pydantic.Field(default_factory=_default_methods, min_length=1)
    respond: Literal["immediately", "on_complete"] = "immediately"
    secret: str | None = pydantic.Field(default=None, min_length=8, max_length=256)
    cron: str | None = None
    timezone: str = "UTC"

    @pydantic.field_validator("methods", mode="before")
    @classmethod
    def _upper_methods(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [item.upper() if isinstance(item, str) else item for item in value]
        return value

    @pydantic.field_validator("methods")
    @classmethod
    def _unique_methods(cls, value: list[Method]) -> list[Method]:
        return list(dict.fromkeys(value))

    @pydantic.field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if len(value.split(" ")) != 5:
            raise ValueError(
                "A cron expression has exactly 5 fields (minute hour day month weekday)."
            )
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression.")
        return value

    @pydantic.field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone (e.g. 'Europe/Paris').") from None
        return value

    @pydantic.model_validator(mode="after")
    def _schedule_needs_cron(self) -> TriggerParams:
        if self.mode == "schedule" and self.cron is None:
            raise ValueError("A schedule trigger needs `cron`.")
        return self


@register
class TriggerNode(Node):
    """Start the execution; its output is the execution input."""

    type = "trigger"
    Params = TriggerParams
    allows_templates = False

    def run(self, ctx: NodeContext, params: TriggerParams) -> NodeResult:
        return NodeResult(output=to_plain(ctx.input))
