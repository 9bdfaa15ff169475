"""The email node against a real SMTP server (aiosmtpd) running in the test."""

from __future__ import annotations

import email
from email.message import Message
from typing import Any

import pytest

from nodes.base import NodeError
from nodes.registry import get_node_class
from tests.mail import PASSWORD, free_port
from tests.nodes.helpers import run_node


def credential(port: int, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "robot@autoflow.test",
        "password": PASSWORD,
        "security": "none",
    }
    data.update(overrides)
    return data


def send(port: int, params: dict[str, Any], **kwargs: Any) -> Any:
    return run_node(
        "email",
        {"credential": "c1", **params},
        credential=kwargs.pop("credential", credential(port)),
        **kwargs,
    ).output


def send_error(port: int, params: dict[str, Any], **kwargs: Any) -> NodeError:
    with pytest.raises(NodeError) as caught:
        send(port, params, **kwargs)
    return caught.value


BASE = {"to": ["ada@example.org"], "subject": "Hello", "text": "plain"}


def test_message_arrives_with_headers_bodies_and_bcc_only_in_the_envelope(smtp):
    recorder, port = smtp
    output = send(
        port,
        {
            "to": ["{{ input.to }}"],
            "cc": ["cc@example.org"],
            "bcc": ["hidden@example.org"],
            "subject": "Order {{ input.n }}",
            "text": "Plain {{ input.n }}",
            "html": "<p>Html {{ input.n }}</p>",
        },
        input={"to": "ada@example.org", "n": 42},
    )
    assert output["accepted"] == ["ada@example.org", "cc@example.org", "hidden@example.org"]
    [envelope] = recorder.envelopes
    assert envelope.mail_from == "robot@autoflow.test"
    assert envelope.rcpt_tos == output["accepted"]
    message: Message = email.message_from_bytes(envelope.original_content or b"")
    assert message["Subject"] == "Order 42"
    assert message["To"] == "ada@example.org"
    assert message["Cc"] == "cc@example.org"
    assert message["Bcc"] is None
    assert message["Message-ID"] == output["message_id"]
    parts = {part.get_content_type(): part.get_payload(decode=True) for part in message.walk()}
    assert b"Plain 42" in parts["text/plain"]
    assert b"<p>Html 42</p>" in parts["text/html"]


def test_numbers_fill_text_fields(smtp):
    recorder, port = smtp
    send(port, {**BASE, "subject": "{{ input.n }}", "text": "{{ input.n * 2 }}"}, input={"n": 21})
    message = email.message_from_bytes(recorder.envelopes[0].original_content or b"")
    assert message["Subject"] == "21"


def test_single_templated_address_is_a_list_of_one(smtp):
    recorder, port = smtp
    output = send(port, {**BASE, "to": "{{ input.to }}"}, input={"to": "bob@example.org"})
    assert output["accepted"] == ["bob@example.org"]
    assert len(recorder.envelopes) == 1


def test_auth_failure_is_a_retryable_smtp_error_and_sends_nothing(smtp):
    recorder, port = smtp
    error = send_error(port, BASE, credential=credential(port, password="wrong"))
    assert error.code == "smtp_error"
    assert error.retryable is True
    assert "authentication" in error.message
    assert "wrong" not in error.message
    assert recorder.envelopes == []


def test_refused_recipient_is_a_retryable_smtp_error_and_sends_nothing(smtp):
    recorder, port = smtp
    recorder.refused.add("ghost@example.org")
    error = send_error(port, {**BASE, "cc": ["ghost@example.org"]})
    assert error.code == "smtp_error"
    assert error.retryable is True
    assert "ghost@example.org" in error.message
    assert recorder.envelopes == []


def test_connection_refused_is_a_retryable_smtp_error():
    port = free_port()
    error = send_error(port, BASE)
    assert error.code == "smtp_error"
    assert error.retryable is True


def test_starttls_unsupported_is_a_smtp_error(smtp):
    recorder, port = smtp
    error = send_error(port, BASE, credential=credential(port, security="starttls"))
    assert error.code == "smtp_error"
    assert recorder.envelopes == []


def test_timeout_after_data_is_delivery_unknown_and_not_retryable(smtp):
    recorder, port = smtp
    recorder.data_delay = 3
    error = send_error(port, BASE, timeout_seconds=1)
    assert error.code == "delivery_unknown"
    assert error.retryable is False


def test_rejection_after_data_is_never_retried(smtp):
    recorder, port = smtp
    recorder.data_reply = "554 5.7.1 Rejected as spam"
    error = send_error(port, BASE)
    assert error.code == "delivery_unknown"
    assert error.retryable is False
    assert "554" in error.message


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({**BASE, "subject": "{{ input.evil }}"}, "line breaks"),
        ({**BASE, "to": ["{{ input.evil_address }}"]}, "line breaks"),
        ({**BASE, "to": []}, "to"),
        ({**BASE, "to": ["not-an-address"]}, "not an e-mail address"),
        ({"to": ["ada@example.org"], "subject": "x"}, "text"),
    ],
)
def test_bad_params_and_header_injection_are_refused_before_connecting(params, words):
    error = send_error(
        free_port(),
        params,
        input={
            "evil": "Hi\r\nBcc: victim@example.org",
            "evil_address": "a@example.org\nBcc: v@example.org",
        },
    )
    assert error.code == "node_error"
    assert words in error.message


def test_no_credential_chosen_fails_with_node_error():
    with pytest.raises(NodeError) as caught:
        run_node("email", {**BASE, "credential": None})
    assert caught.value.code == "node_error"


def test_email_is_at_most_once_with_side_effects():
    node_class = get_node_class("email")
    assert node_class is not None
    assert node_class.at_most_once is True
    assert node_class.has_side_effects is True
    assert node_class.credential_types == ("smtp",)
