"""Roles and Django admin: admin ⇔ staff, createsuperuser makes an admin, users manageable."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from accounts.models import User
from accounts.tokens import tokens_issue
from tests.conftest import client_for
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db


def test_role_follows_staff(owner, admin_user):
    assert owner.role == "user"
    assert admin_user.role == "admin"
    assert client_for(admin_user).get("/api/auth/me").json()["role"] == "admin"


def test_createsuperuser_makes_an_admin(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", DEFAULT_PASSWORD)
    call_command(
        "createsuperuser", interactive=False, email="root@example.com", name="Root", verbosity=0
    )
    user = User.objects.get(email="root@example.com")
    assert user.is_staff
    assert user.is_superuser
    assert user.role == "admin"
    assert user.check_password(DEFAULT_PASSWORD)


def test_admin_lists_and_edits_users(admin_user, owner):
    browser = Client()
    browser.force_login(admin_user)
    listing = browser.get("/admin/accounts/user/")
    assert listing.status_code == 200
    assert owner.email in listing.content.decode()
    change = browser.get(f"/admin/accounts/user/{owner.pk}/change/")
    assert change.status_code == 200


def test_admin_deactivate_action_stops_tokens(admin_user, owner):
    tokens = tokens_issue(user=owner)
    browser = Client()
    browser.force_login(admin_user)
    # when
    response = browser.post(
        "/admin/accounts/user/",
        {"action": "deactivate_users", "_selected_action": [str(owner.pk)]},
    )
    # then
    assert response.status_code == 302
    owner.refresh_from_db()
    assert not owner.is_active
    refreshed = client_for(None).post(
        "/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json"
    )
    assert refreshed.status_code == 401


def test_admin_is_refused_to_non_staff(owner):
    browser = Client()
    browser.force_login(owner)
    response = browser.get("/admin/accounts/user/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@override_settings(RATE_LIMIT_AUTH="2/15m")
def test_password_change_is_limited_per_user(owner):
    client = client_for(owner)
    body = {"current_password": "wrong", "new_password": "another sturdy phrase 7"}
    statuses = [
        client.post("/api/auth/password", body, format="json").status_code for _ in range(3)
    ]
    assert statuses == [400, 400, 429]
