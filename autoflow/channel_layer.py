"""channels_redis's layer, with a group send that finds an empty group in one round trip.

`RedisChannelLayer.group_send` trims the group's expired members and then reads the rest: two
round trips before it knows there is nobody to send to, and nobody is the usual case for a
run's events (nobody watches most runs live). This layer reads whether any unexpired member
exists first, in one; a group with members is sent to as channels_redis does it.

A caller outside an event loop (the engine's publisher, `executions.events`) can ask the same
question with a blocking client, in a pipeline of its own (`members_query`, `blocking_client`).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from channels_redis import core

# A blocking caller waits at most this long for Redis before giving the work to the loop.
BLOCKING_TIMEOUT_SECONDS = 2.0


class RedisChannelLayer(core.RedisChannelLayer):
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if await self.group_has_members(group):
            await self.send_to_members(group, message)

    async def send_to_members(self, group: str, message: dict[str, Any]) -> None:
        """channels_redis's own group send, for a group found to have members."""
        await super().group_send(group, message)

    async def group_has_members(self, group: str) -> bool:
        """Whether the group has a member that joined (or re-joined) within `group_expiry`."""
        connection = self.connection(self.consistent_hash(group))
        key, oldest = self.members_query(group)
        return bool(await connection.zrangebyscore(key, oldest, "+inf", start=0, num=1))

    def members_query(self, group: str) -> tuple[str, str]:
        """The sorted set of the group's members and the score a live member is above.

        channels_redis drops members scored at or below now - group_expiry: the rest count.
        `ZRANGEBYSCORE key oldest +inf LIMIT 0 1` is empty when the group has none.
        """
        self.require_valid_group_name(group)  # raises TypeError for a malformed name
        return self._group_key(group), f"({int(time.time()) - self.group_expiry}"

    def blocking_client(self) -> redis.Redis | None:
        """A blocking client on the layer's server, or None when the layer shards groups
        across several or is not configured by address (sentinels)."""
        if self.ring_size != 1 or "address" not in self.hosts[0]:
            return None
        options = {name: value for name, value in self.hosts[0].items() if name != "address"}
        options["socket_timeout"] = BLOCKING_TIMEOUT_SECONDS
        connect = options.get("socket_connect_timeout") or BLOCKING_TIMEOUT_SECONDS
        options["socket_connect_timeout"] = min(connect, BLOCKING_TIMEOUT_SECONDS)
        return redis.Redis.from_url(self.hosts[0]["address"], **options)
