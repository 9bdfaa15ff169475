"""`/ws` authentication: every way in, every failure as 4401/4403 before any data."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from live.consumers import LiveConsumer
from tests.live.conftest import (
    access_token,
    communicator,
    connect_ok,
    expect_close,
    make_api_key,
    open_socket,
    receive,
    session_cookie,
    short_lived_token,
)

pytestmark = pytest.mark.django_db(transaction=True)


class QuickExpiryConsumer(LiveConsumer):
    token_grace_seconds = 1.0


def test_jwt_as_subprotocol_connects_and_never_echoes_the_token(owner: User) -> None:
    token = access_token(owner)

    async def scenario() -> None:
        comm = communicator(token=token)
        connected, subprotocol = await comm.connect()
        assert connected
        assert subprotocol == "autoflow.v1"
        assert await receive(comm) == {"type": "connected", "user_id": str(owner.pk)}
        await comm.disconnect()

    async_to_sync(scenario)()


def test_jwt_as_query_parameter_connects(owner: User) -> None:
    token = access_token(owner)

    async def scenario() -> None:
        comm = communicator(query_token=token)
        message = await connect_ok(comm)
        assert message["user_id"] == str(owner.pk)
        await comm.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize(
    "kind", ["missing", "garbage", "expired", "refresh_as_access", "inactive_user"]
)
def test_bad_credentials_are_accepted_then_closed_4401(owner: User, kind: str) -> None:
    # given
    token: str | None
    if kind == "missing":
        token = None
    elif kind == "garbage":
        token = "not-a-token"
    elif kind == "expired":
        token = short_lived_token(owner, -5)
    elif kind == "refresh_as_access":
        token = str(RefreshToken.for_user(owner))
    else:
        token = access_token(owner)
        User.objects.filter(pk=owner.pk).update(is_active=False)

    async def scenario() -> None:
        comm = communicator(token=token)
        connected, _ = await comm.connect()
        # then: accepted (a browser can read the code), and the very first output is the close
        assert connected
        await expect_close(comm, 4401)

    async_to_sync(scenario)()


def test_api_key_with_executions_read_connects(owner: User) -> None:
    key = make_api_key(owner, ["executions:read"])

    async def scenario() -> None:
        comm = communicator(token=key)
        message = await connect_ok(comm)
        assert message["user_id"] == str(owner.pk)
        await comm.disconnect()

    async_to_sync(scenario)()


def test_api_key_without_executions_read_is_closed_4403(owner: User) -> None:
    key = make_api_key(owner, ["workflows:read", "executions:write"])

    async def scenario() -> None:
        comm = communicator(query_token=key)
        connected, _ = await comm.connect()
        assert connected
        await expect_close(comm, 4403)

    async_to_sync(scenario)()


@pytest.mark.parametrize("state", ["revoked", "expired", "wrong_secret"])
def test_unusable_api_key_is_closed_4401(owner: User, state: str) -> None:
    if state == "revoked":
        key = make_api_key(owner, ["executions:read"], revoked_at=timezone.now())
    elif state == "expired":
        key = make_api_key(
            owner, ["executions:read"], expires_at=timezone.now() - timedelta(minutes=1)
        )
    else:
        key = make_api_key(owner, ["executions:read"]) + "tampered"

    async def scenario() -> None:
        comm = communicator(token=key)
        await comm.connect()
        await expect_close(comm, 4401)

    async_to_sync(scenario)()


def test_foreign_origin_is_closed_4403_even_with_a_valid_token(owner: User) -> None:
    token = access_token(owner)

    async def scenario() -> None:
        comm = communicator(token=token, origin="https://evil.example")
        connected, _ = await comm.connect()
        assert connected
        await expect_close(comm, 4403)

    async_to_sync(scenario)()


@pytest.mark.parametrize("origin", ["http://localhost:5173", "http://testserver"])
def test_cors_and_same_site_origins_are_allowed(owner: User, origin: str) -> None:
    token = access_token(owner)

    async def scenario() -> None:
        comm = communicator(token=token, origin=origin)
        message = await connect_ok(comm)
        assert message == {"type": "connected", "user_id": str(owner.pk)}
        await comm.disconnect()

    async_to_sync(scenario)()


def test_session_cookie_with_same_site_origin_connects(owner: User) -> None:
    cookie = session_cookie(owner)

    async def scenario() -> None:
        comm = communicator(cookie=cookie, origin="http://testserver")
        message = await connect_ok(comm)
        assert message["user_id"] == str(owner.pk)
        await comm.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("origin", [None, "https://evil.example"])
def test_session_socket_needs_an_allowed_origin(owner: User, origin: str | None) -> None:
    cookie = session_cookie(owner)

    async def scenario() -> None:
        comm = communicator(cookie=cookie, origin=origin)
        await comm.connect()
        await expect_close(comm, 4403)

    async_to_sync(scenario)()


def test_stale_session_cookie_is_closed_4401(owner: User) -> None:
    async def scenario() -> None:
        comm = communicator(cookie="sessionid=doesnotexist", origin="http://testserver")
        await comm.connect()
        await expect_close(comm, 4401)

    async_to_sync(scenario)()


def test_expiring_token_gets_token_expired_then_4401(owner: User) -> None:
    token = short_lived_token(owner, 1)

    async def scenario() -> None:
        comm = communicator(token=token, consumer=QuickExpiryConsumer)
        await connect_ok(comm)
        error = await receive(comm, timeout=4)
        assert error["type"] == "error"
        assert error["code"] == "token_expired"
        await expect_close(comm, 4401, timeout=3)

    async_to_sync(scenario)()


def test_auth_message_with_fresh_token_keeps_the_socket_open(owner: User) -> None:
    token = short_lived_token(owner, 1)
    fresh = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token, consumer=QuickExpiryConsumer) as comm:
            error = await receive(comm, timeout=4)
            assert error["code"] == "token_expired"
            # when: renewed inside the grace period
            await comm.send_json_to({"type": "auth", "token": fresh})
            await asyncio.sleep(1.5)  # longer than the grace period
            # then: still open and answering
            await comm.send_json_to({"type": "ping"})
            assert await receive(comm) == {"type": "pong"}

    async_to_sync(scenario)()


def test_auth_message_for_another_user_closes_4401(owner: User, outsider: User) -> None:
    token = access_token(owner)
    other = access_token(outsider)

    async def scenario() -> None:
        comm = communicator(token=token)
        await connect_ok(comm)
        await comm.send_json_to({"type": "auth", "token": other})
        await expect_close(comm, 4401)

    async_to_sync(scenario)()


def test_deactivated_key_user_cannot_connect(owner: User) -> None:
    key = make_api_key(owner, ["executions:read"])

    async def scenario() -> None:
        await database_sync_to_async(User.objects.filter(pk=owner.pk).update)(is_active=False)
        comm = communicator(token=key)
        await comm.connect()
        await expect_close(comm, 4401)

    async_to_sync(scenario)()
