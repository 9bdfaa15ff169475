"""`/ws` messages: subscriptions, every server message type, authorization, bad input."""

from __future__ import annotations

import json
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from accounts.models import User
from autoflow.channel_layer import RedisChannelLayer
from executions.events import batch_message
from executions.models import Execution
from live.publish import WorkflowEvent, execution_group, user_group, workflow_update_publish
from tests.live.conftest import (
    access_token,
    add_lines,
    collect_lines,
    communicator,
    connect_ok,
    make_api_key,
    make_execution,
    make_workflow,
    open_socket,
    publish,
    receive,
    subscribe,
)
from workflows.models import Workflow

pytestmark = pytest.mark.django_db(transaction=True)


async def _in_group(group: str) -> bool:
    """Whether any socket is in the group, on the Redis layer or the in-memory one."""
    layer = get_channel_layer()
    if isinstance(layer, RedisChannelLayer):
        return await layer.group_has_members(group)
    return bool(getattr(layer, "groups", {}).get(group))


async def assert_silent(comm, seconds: float = 0.3) -> None:
    assert await comm.receive_nothing(timeout=seconds), "the server sent something unexpected"


def test_ping_gets_pong(owner: User) -> None:
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await comm.send_json_to({"type": "ping"})
            assert await receive(comm) == {"type": "pong"}

    async_to_sync(scenario)()


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "dance"}',
        '{"type": "subscribe:execution"}',
        '{"type": "subscribe:execution", "execution_id": "not-a-uuid"}',
        json.dumps(
            {"type": "subscribe:execution", "execution_id": str(uuid.uuid4()), "after_seq": -1}
        ),
        '{"type": "subscribe:workflow", "workflow_id": 12}',
        json.dumps({"type": "ack", "execution_id": str(uuid.uuid4()), "seq": 3}),
        '{"type": "auth"}',
    ],
)
def test_malformed_input_gets_bad_message_and_the_socket_stays_open(owner: User, raw: str) -> None:
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await comm.send_to(text_data=raw)
            error = await receive(comm)
            assert error["type"] == "error"
            assert error["code"] == "bad_message"
            assert error["message"]
            await comm.send_json_to({"type": "ping"})
            assert await receive(comm) == {"type": "pong"}

    async_to_sync(scenario)()


def test_binary_frame_is_a_bad_message(owner: User) -> None:
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await comm.send_to(bytes_data=b"\x00\x01")
            assert (await receive(comm))["code"] == "bad_message"

    async_to_sync(scenario)()


def test_subscribe_execution_replays_then_streams_status_lines_and_complete(owner: User) -> None:
    # given: a running execution with 3 stored lines
    execution = make_execution(make_workflow(owner))
    stored = add_lines(execution, 1, 3)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            # when
            await subscribe(comm, execution.pk)
            # then
            assert await receive(comm) == {
                "type": "subscribed",
                "execution_id": str(execution.pk),
                "last_seq": 3,
            }
            replay = await receive(comm)
            assert replay["type"] == "execution:logs"
            assert [line["seq"] for line in replay["lines"]] == [1, 2, 3]
            assert set(replay["lines"][0]) == {"seq", "ts", "level", "node_id", "message", "data"}
            assert replay["lines"][0]["message"] == "line 1"
            assert replay["lines"] == stored  # every field as stored, `ts` in ISO form

            live = await sync_to_async(add_lines)(execution, 4, 2)
            await publish(execution.pk, {"type": "execution.logs", "lines": live})
            streamed = await receive(comm)
            assert [line["seq"] for line in streamed["lines"]] == [4, 5]

            await publish(
                execution.pk,
                {
                    "type": "execution.status",
                    "status": "running",
                    "node_id": "a",
                    "node_status": "succeeded",
                },
            )
            assert await receive(comm) == {
                "type": "execution:status",
                "execution_id": str(execution.pk),
                "status": "running",
                "node_id": "a",
                "node_status": "succeeded",
            }

            await sync_to_async(Execution.objects.filter(pk=execution.pk).update)(
                status="succeeded", duration_ms=42, output={"join": {"ok": True}}
            )
            await publish(execution.pk, {"type": "execution.status", "status": "succeeded"})
            status = await receive(comm)
            assert status == {
                "type": "execution:status",
                "execution_id": str(execution.pk),
                "status": "succeeded",
            }
            await publish(
                execution.pk,
                {
                    "type": "execution.complete",
                    "status": "succeeded",
                    "duration_ms": 42,
                    "output": {"join": {"ok": True}},
                },
            )
            assert await receive(comm) == {
                "type": "execution:complete",
                "execution_id": str(execution.pk),
                "status": "succeeded",
                "duration_ms": 42,
                "output": {"join": {"ok": True}},
            }
            await assert_silent(comm)

    async_to_sync(scenario)()


def test_a_batch_of_events_is_delivered_as_its_messages_in_order(owner: User) -> None:
    execution = make_execution(make_workflow(owner))
    add_lines(execution, 1, 1)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk)
            assert (await receive(comm))["type"] == "subscribed"
            assert (await receive(comm))["type"] == "execution:logs"
            live = await sync_to_async(add_lines)(execution, 2, 2)
            event_id = str(execution.pk)

            await publish(
                execution.pk,
                batch_message(
                    [
                        {"type": "execution.status", "execution_id": event_id, "status": "running"},
                        {"type": "execution.logs", "execution_id": event_id, "lines": live},
                        {"type": "websocket.disconnect", "code": 1000},  # not an event: ignored
                        {
                            "type": "execution.status",
                            "execution_id": event_id,
                            "status": "running",
                            "node_id": "a",
                            "node_status": "succeeded",
                        },
                    ]
                ),
            )

            assert await receive(comm) == {
                "type": "execution:status",
                "execution_id": event_id,
                "status": "running",
            }
            streamed = await receive(comm)
            assert streamed["type"] == "execution:logs"
            assert [line["seq"] for line in streamed["lines"]] == [2, 3]
            assert (await receive(comm))["node_status"] == "succeeded"
            await assert_silent(comm)

    async_to_sync(scenario)()


def test_subscribe_with_after_seq_replays_only_later_lines(owner: User) -> None:
    execution = make_execution(make_workflow(owner))
    add_lines(execution, 1, 10)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk, after_seq=7)
            assert (await receive(comm))["last_seq"] == 10
            assert await collect_lines(comm, execution.pk, until_seq=10) == [8, 9, 10]
            await assert_silent(comm)

    async_to_sync(scenario)()


def test_finished_execution_replays_then_completes_at_once(owner: User) -> None:
    execution = make_execution(
        make_workflow(owner), status="failed", duration_ms=1500, output={"a": 1}
    )
    add_lines(execution, 1, 2500)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk)
            assert (await receive(comm))["last_seq"] == 2500
            seqs = await collect_lines(comm, execution.pk, until_seq=2500)
            assert seqs == list(range(1, 2501))
            assert await receive(comm) == {
                "type": "execution:complete",
                "execution_id": str(execution.pk),
                "status": "failed",
                "duration_ms": 1500,
                "output": {"a": 1},
            }

    async_to_sync(scenario)()


def test_live_duplicates_are_dropped(owner: User) -> None:
    execution = make_execution(make_workflow(owner))
    stored = add_lines(execution, 1, 5)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk)
            await receive(comm)
            assert await collect_lines(comm, execution.pk, until_seq=5) == [1, 2, 3, 4, 5]
            # a late publish of lines the replay already sent
            await publish(execution.pk, {"type": "execution.logs", "lines": stored[2:]})
            await assert_silent(comm)

    async_to_sync(scenario)()


def test_a_skipped_live_batch_is_filled_from_the_database(owner: User) -> None:
    execution = make_execution(make_workflow(owner))
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk)
            assert (await receive(comm))["last_seq"] == 0
            # lines 1-3 are stored but their message is lost; 4-5 arrive
            await sync_to_async(add_lines)(execution, 1, 3)
            later = await sync_to_async(add_lines)(execution, 4, 2)
            await publish(execution.pk, {"type": "execution.logs", "lines": later})
            assert await collect_lines(comm, execution.pk, until_seq=5) == [1, 2, 3, 4, 5]

    async_to_sync(scenario)()


def test_lost_complete_is_found_by_the_poll(owner: User) -> None:
    from live.consumers import LiveConsumer

    class FastPoll(LiveConsumer):
        poll_interval_seconds = 0.3

    execution = make_execution(make_workflow(owner))
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token, consumer=FastPoll) as comm:
            await subscribe(comm, execution.pk)
            await receive(comm)
            # the run logs and finishes, and every message about it is dropped
            await sync_to_async(add_lines)(execution, 1, 2)
            await sync_to_async(Execution.objects.filter(pk=execution.pk).update)(
                status="cancelled", duration_ms=7
            )
            assert await collect_lines(comm, execution.pk, until_seq=2, timeout=3) == [1, 2]
            complete = await receive(comm, timeout=3)
            assert complete["type"] == "execution:complete"
            assert complete["status"] == "cancelled"

    async_to_sync(scenario)()


def test_another_users_execution_is_not_found_and_nothing_leaks(
    owner: User, outsider: User
) -> None:
    execution = make_execution(make_workflow(owner, is_public=True))
    add_lines(execution, 1, 3)
    token = access_token(outsider)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk)
            error = await receive(comm)
            assert error["type"] == "error"
            assert error["code"] == "not_found"
            assert str(execution.pk) not in error["message"]
            # the socket joined the run's group for the read and has left it
            assert not await _in_group(execution_group(execution.pk))
            # events about it never reach this socket
            await publish(execution.pk, {"type": "execution.status", "status": "failed"})
            await assert_silent(comm)
            # the same answer as for an id that does not exist
            await comm.send_json_to(
                {"type": "subscribe:execution", "execution_id": str(uuid.uuid4())}
            )
            assert (await receive(comm))["code"] == "not_found"

    async_to_sync(scenario)()


def test_admin_may_watch_any_execution(owner: User, admin_user: User) -> None:
    execution = make_execution(make_workflow(owner))
    add_lines(execution, 1, 1)
    token = access_token(admin_user)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk)
            assert (await receive(comm))["type"] == "subscribed"
            assert await collect_lines(comm, execution.pk, until_seq=1) == [1]

    async_to_sync(scenario)()


def test_unsubscribe_execution_stops_delivery(owner: User) -> None:
    execution = make_execution(make_workflow(owner))
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk)
            await receive(comm)
            await comm.send_json_to(
                {"type": "unsubscribe:execution", "execution_id": str(execution.pk)}
            )
            await comm.send_json_to({"type": "ping"})
            assert await receive(comm) == {"type": "pong"}
            lines = await sync_to_async(add_lines)(execution, 1, 2)
            await publish(execution.pk, {"type": "execution.logs", "lines": lines})
            await assert_silent(comm)

    async_to_sync(scenario)()


def test_workflow_updates_reach_the_owner(owner: User) -> None:
    workflow = make_workflow(owner)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await comm.send_json_to({"type": "subscribe:workflow", "workflow_id": str(workflow.pk)})
            assert await receive(comm) == {"type": "subscribed", "workflow_id": str(workflow.pk)}
            events: list[tuple[WorkflowEvent, int]] = [
                ("updated", 2),
                ("activated", 3),
                ("deactivated", 4),
            ]
            for event, version in events:
                await sync_to_async(workflow_update_publish)(
                    workflow_id=workflow.pk, event=event, version=version
                )
                assert await receive(comm) == {
                    "type": "workflow:update",
                    "workflow_id": str(workflow.pk),
                    "event": event,
                    "version": version,
                }
            await comm.send_json_to(
                {"type": "unsubscribe:workflow", "workflow_id": str(workflow.pk)}
            )
            await comm.send_json_to({"type": "ping"})
            assert await receive(comm) == {"type": "pong"}
            await sync_to_async(workflow_update_publish)(
                workflow_id=workflow.pk, event="deleted", version=4
            )
            await assert_silent(comm)

    async_to_sync(scenario)()


def test_public_workflow_is_watchable_until_it_turns_private(owner: User, reader: User) -> None:
    workflow = make_workflow(owner, is_public=True)
    token = access_token(reader)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await comm.send_json_to({"type": "subscribe:workflow", "workflow_id": str(workflow.pk)})
            assert (await receive(comm))["type"] == "subscribed"
            await sync_to_async(workflow_update_publish)(
                workflow_id=workflow.pk, event="updated", version=2
            )
            assert (await receive(comm))["version"] == 2
            # when the owner makes it private, the reader hears nothing more about it
            await sync_to_async(Workflow.objects.filter(pk=workflow.pk).update)(is_public=False)
            await sync_to_async(workflow_update_publish)(
                workflow_id=workflow.pk, event="updated", version=3
            )
            await assert_silent(comm)
            await sync_to_async(Workflow.objects.filter(pk=workflow.pk).update)(is_public=True)
            await sync_to_async(workflow_update_publish)(
                workflow_id=workflow.pk, event="updated", version=4
            )
            await assert_silent(comm)

    async_to_sync(scenario)()


def test_private_workflow_of_another_user_is_not_found(owner: User, outsider: User) -> None:
    workflow = make_workflow(owner)
    token = access_token(outsider)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await comm.send_json_to({"type": "subscribe:workflow", "workflow_id": str(workflow.pk)})
            assert (await receive(comm))["code"] == "not_found"
            await sync_to_async(workflow_update_publish)(
                workflow_id=workflow.pk, event="updated", version=2
            )
            await assert_silent(comm)

    async_to_sync(scenario)()


def test_workflow_subscription_needs_workflows_read_for_api_keys(owner: User) -> None:
    workflow = make_workflow(owner)
    without = make_api_key(owner, ["executions:read"])
    with_scope = make_api_key(owner, ["executions:read", "workflows:read"])

    async def scenario() -> None:
        comm = communicator(token=without)
        await connect_ok(comm)
        await comm.send_json_to({"type": "subscribe:workflow", "workflow_id": str(workflow.pk)})
        assert (await receive(comm))["code"] == "scope_missing"
        await comm.disconnect()

        async with open_socket(token=with_scope) as comm:
            await comm.send_json_to({"type": "subscribe:workflow", "workflow_id": str(workflow.pk)})
            assert (await receive(comm))["type"] == "subscribed"

    async_to_sync(scenario)()


def test_workflow_update_is_published_only_after_commit(owner: User) -> None:
    workflow = make_workflow(owner)
    token = access_token(owner)

    def rolled_back_update() -> None:
        with transaction.atomic():
            workflow_update_publish(workflow_id=workflow.pk, event="updated", version=9)
            transaction.set_rollback(True)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await comm.send_json_to({"type": "subscribe:workflow", "workflow_id": str(workflow.pk)})
            await receive(comm)
            await sync_to_async(rolled_back_update)()
            await assert_silent(comm)

    async_to_sync(scenario)()


def test_notifications_reach_only_their_user(owner: User, outsider: User) -> None:
    owner_token = access_token(owner)
    outsider_token = access_token(outsider)
    execution_id = str(uuid.uuid4())

    async def scenario() -> None:
        mine = communicator(token=owner_token)
        theirs = communicator(token=outsider_token)
        await connect_ok(mine)
        await connect_ok(theirs)
        layer = get_channel_layer()
        await layer.group_send(
            user_group(owner.pk),
            {
                "type": "notification",
                "level": "error",
                "title": "Execution failed",
                "message": "boom",
                "execution_id": execution_id,
            },
        )
        assert await receive(mine) == {
            "type": "notification",
            "level": "error",
            "title": "Execution failed",
            "message": "boom",
            "execution_id": execution_id,
        }
        await assert_silent(theirs)
        await mine.disconnect()
        await theirs.disconnect()

    async_to_sync(scenario)()


def test_two_executions_on_one_socket_stay_apart(owner: User) -> None:
    workflow = make_workflow(owner)
    first = make_execution(workflow)
    second = make_execution(workflow)
    add_lines(first, 1, 2)
    add_lines(second, 1, 4)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            for execution in (first, second):
                await subscribe(comm, execution.pk)
            seen: dict[str, list[int]] = {str(first.pk): [], str(second.pk): []}
            subscribed: list[str] = []
            for _ in range(4):
                message = await receive(comm)
                if message["type"] == "subscribed":
                    subscribed.append(message["execution_id"])
                else:
                    assert message["type"] == "execution:logs"
                    seen[message["execution_id"]].extend(line["seq"] for line in message["lines"])
            assert subscribed == [str(first.pk), str(second.pk)]
            assert seen == {str(first.pk): [1, 2], str(second.pk): [1, 2, 3, 4]}
            await assert_silent(comm)

    async_to_sync(scenario)()
