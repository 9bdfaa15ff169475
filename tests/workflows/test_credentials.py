"""Credentials: typed fields, secrets encrypted at rest and never returned, key rotation."""

from __future__ import annotations

import base64
import os
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.models import ApiScope
from accounts.services import api_key_create
from autoflow.config import encryption_key_id
from tests.conftest import client_for
from workflows.credentials import (
    credential_create,
    credential_data_for_run,
    credential_secret_values,
)
from workflows.crypto import DecryptionError, decrypt_json, encrypt_json
from workflows.models import Credential

pytestmark = pytest.mark.django_db

SMTP = {
    "host": "smtp.example.org",
    "port": 2525,
    "username": "mailer",
    "password": "s3cr3t-smtp-pa55",
    "security": "tls",
}


def _new_key() -> tuple[str, bytes]:
    key = os.urandom(32)
    return encryption_key_id(key), key


def _raw_row(credential_id: object) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, type, data, secret_ciphertext, key_id "
            "FROM workflows_credential WHERE id = %s",
            [Credential._meta.pk.get_db_prep_value(uuid.UUID(str(credential_id)), connection)],
        )
        row = cursor.fetchone()
    assert row is not None
    return " ".join(str(column) for column in row)


def test_create_returns_masked_secrets_and_stores_no_plaintext(owner_client):
    # when
    response = owner_client.post(
        "/api/credentials", {"name": "Mail", "type": "smtp", "data": SMTP}, format="json"
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "name", "type", "data", "created_at", "updated_at"}
    assert body["data"] == {**SMTP, "password": "***"}
    assert "s3cr3t-smtp-pa55" not in response.content.decode()
    raw = _raw_row(body["id"])
    assert "s3cr3t-smtp-pa55" not in raw
    assert "smtp.example.org" in raw  # non-secret fields stay readable
    credential = Credential.objects.get(pk=body["id"])
    assert credential.key_id
    assert credential.secret_ciphertext


@pytest.mark.parametrize(
    ("credential_type", "data", "secret_field"),
    [
        ("http_header", {"name": "X-Token", "value": "header-secret-1"}, "value"),
        ("http_basic", {"username": "bob", "password": "basic-secret-2"}, "password"),
        ("http_bearer", {"token": "bearer-secret-3"}, "token"),
    ],
)
def test_each_type_masks_its_secret(owner_client, credential_type, data, secret_field):
    # when
    response = owner_client.post(
        "/api/credentials", {"name": "c", "type": credential_type, "data": data}, format="json"
    )
    # then
    assert response.status_code == 201, response.content
    assert response.json()["data"][secret_field] == "***"
    assert data[secret_field] not in _raw_row(response.json()["id"])
    detail = owner_client.get(f"/api/credentials/{response.json()['id']}")
    assert detail.json()["data"][secret_field] == "***"
    assert data[secret_field] not in detail.content.decode()


def test_put_omitting_or_masking_secret_keeps_it(owner):
    # given
    credential = credential_create(owner=owner, name="Mail", type="smtp", data=SMTP)
    client = client_for(owner)
    # when: the secret is omitted
    omitted = {key: value for key, value in SMTP.items() if key != "password"}
    response = client.put(
        f"/api/credentials/{credential.id}",
        {"name": "Mail 2", "type": "smtp", "data": {**omitted, "host": "smtp2.example.org"}},
        format="json",
    )
    # then
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Mail 2"
    assert response.json()["data"]["password"] == "***"
    data = credential_data_for_run(owner_id=owner.id, credential_id=credential.id)
    assert data == {**SMTP, "host": "smtp2.example.org"}
    # when: the secret is sent back as "***"
    response = client.put(
        f"/api/credentials/{credential.id}",
        {"name": "Mail 3", "type": "smtp", "data": {**SMTP, "password": "***"}},
        format="json",
    )
    assert response.status_code == 200
    assert credential_data_for_run(owner_id=owner.id, credential_id=credential.id) == SMTP
    # when: a new secret is sent
    response = client.put(
        f"/api/credentials/{credential.id}",
        {"name": "Mail 3", "type": "smtp", "data": {**SMTP, "password": "brand-new"}},
        format="json",
    )
    run_data = credential_data_for_run(owner_id=owner.id, credential_id=credential.id)
    assert run_data is not None
    assert run_data["password"] == "brand-new"


def test_put_changing_type_requires_the_new_secret(owner):
    # given
    credential = credential_create(owner=owner, name="b", type="http_bearer", data={"token": "tok"})
    # when
    response = client_for(owner).put(
        f"/api/credentials/{credential.id}",
        {"name": "b", "type": "http_basic", "data": {"username": "u"}},
        format="json",
    )
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "password" in response.json()["error"]["details"]["data"]
    assert credential_data_for_run(owner_id=owner.id, credential_id=credential.id) == {
        "token": "tok"
    }


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "type": "ftp", "data": {}},
        {"name": "x", "type": "http_bearer", "data": {}},
        {"name": "x", "type": "http_bearer", "data": "token"},
        {"name": "x", "type": "http_bearer", "data": {"token": "t", "extra": 1}},
        {"name": "x", "type": "smtp", "data": {**SMTP, "port": "not a port"}},
        {"name": "x", "type": "smtp", "data": {**SMTP, "security": "ssl3"}},
        {"type": "http_bearer", "data": {"token": "t"}},
        {"name": "x", "type": "http_bearer", "data": {"token": "t"}, "owner": "someone"},
    ],
)
def test_bad_input_is_validation_error_and_stores_nothing(owner_client, body):
    # when
    response = owner_client.post("/api/credentials", body, format="json")
    # then
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert Credential.objects.count() == 0


def test_malformed_json_is_validation_error(owner_client):
    response = owner_client.post(
        "/api/credentials", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_other_users_credentials_are_not_found(owner, outsider):
    # given
    credential = credential_create(owner=owner, name="b", type="http_bearer", data={"token": "t"})
    client = client_for(outsider)
    url = f"/api/credentials/{credential.id}"
    # then
    assert client.get("/api/credentials").json()["count"] == 0
    assert client.get(url).status_code == 404
    put = client.put(url, {"name": "x", "type": "http_bearer", "data": {}}, format="json")
    assert put.status_code == 404
    assert client.delete(url).status_code == 404
    assert Credential.objects.filter(pk=credential.id).exists()
    assert credential_data_for_run(owner_id=outsider.id, credential_id=credential.id) is None


def test_list_and_delete(owner):
    # given
    for index in range(3):
        credential_create(owner=owner, name=f"c{index}", type="http_bearer", data={"token": "t"})
    client = client_for(owner)
    # when
    listed = client.get("/api/credentials?page_size=2").json()
    # then
    assert listed["count"] == 3
    assert len(listed["results"]) == 2
    assert listed["next"] is not None
    assert all(item["data"] == {"token": "***"} for item in listed["results"])
    deleted = client.delete(f"/api/credentials/{listed['results'][0]['id']}")
    assert deleted.status_code == 204
    assert Credential.objects.count() == 2


def test_api_key_is_refused_on_credentials(owner):
    # given
    _, raw_key = api_key_create(
        user=owner, name="k", scopes=[scope.value for scope in ApiScope], expires_at=None
    )
    client = client_for(None)
    client.credentials(HTTP_X_API_KEY=raw_key)
    # when
    response = client.get("/api/credentials")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_credential_data_for_run_and_secret_values(owner):
    credential = credential_create(owner=owner, name="m", type="smtp", data=SMTP)
    data = credential_data_for_run(owner_id=owner.id, credential_id=str(credential.id))
    assert data == SMTP
    assert credential_secret_values(data) == ["s3cr3t-smtp-pa55"]
    assert credential_data_for_run(owner_id=owner.id, credential_id="not-a-uuid") is None


def test_ciphertext_is_bound_to_its_row(owner):
    # given: two credentials; one's ciphertext copied onto the other
    first = credential_create(owner=owner, name="a", type="http_bearer", data={"token": "aaa"})
    second = credential_create(owner=owner, name="b", type="http_bearer", data={"token": "bbb"})
    Credential.objects.filter(pk=second.pk).update(secret_ciphertext=first.secret_ciphertext)
    # then
    with pytest.raises(DecryptionError):
        credential_data_for_run(owner_id=owner.id, credential_id=second.id)


def test_rotate_encryption_key_reencrypts_everything(owner, settings):
    # given: credentials written under the old key
    old = settings.AUTOFLOW_ENCRYPTION_KEYS[0]
    credential = credential_create(owner=owner, name="m", type="smtp", data=SMTP)
    assert credential.key_id == old[0]
    new = _new_key()
    # when: the new key is deployed beside the old one; old ciphertexts still decrypt
    settings.AUTOFLOW_ENCRYPTION_KEYS = [new, old]
    assert credential_data_for_run(owner_id=owner.id, credential_id=credential.id) == SMTP
    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)
    # then
    assert "Re-encrypted 1 credential" in out.getvalue()
    credential.refresh_from_db()
    assert credential.key_id == new[0]
    settings.AUTOFLOW_ENCRYPTION_KEYS = [new]
    assert credential_data_for_run(owner_id=owner.id, credential_id=credential.id) == SMTP
    assert "s3cr3t-smtp-pa55" not in _raw_row(credential.id)


def test_encrypt_uses_a_fresh_nonce_and_detects_tampering(settings):
    key_id, token = encrypt_json({"a": 1}, associated_data=b"x")
    _, token_again = encrypt_json({"a": 1}, associated_data=b"x")
    assert token != token_again
    assert decrypt_json(token, key_id=key_id, associated_data=b"x") == {"a": 1}
    raw = bytearray(base64.b64decode(token))
    raw[-1] ^= 1
    with pytest.raises(DecryptionError):
        decrypt_json(base64.b64encode(bytes(raw)).decode(), key_id=key_id, associated_data=b"x")
    with pytest.raises(DecryptionError):
        decrypt_json(token, key_id="unknown", associated_data=b"x")
