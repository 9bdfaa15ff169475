"""The `email` node: send one message over SMTP, at most once.

The SMTP conversation is driven step by step so the node knows whether the message data has
been sent: a failure before it (connect, TLS, auth, a refused sender or recipient) is
`smtp_error` and retryable; a failure after it is `delivery_unknown` and never retried,
because the server may already have accepted the message.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import pydantic

from nodes.base import Node, NodeContext, NodeError, NodeParams, NodeResult
from nodes.expressions import is_template
from nodes.params import is_saving, scalar_as_text
from nodes.registry import register

DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_RECIPIENTS = 100
SECURITY_MODES = ("starttls", "tls", "none")
_ADDRESS = re.compile(r"\A[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]{2,}\Z")


def _check_address(value: str, info: pydantic.ValidationInfo) -> str:
    if is_saving(info) and is_template(value):
        return value
    if "\r" in value or "\n" in value:
        raise ValueError("An address may not contain line breaks.")
    value = value.strip()
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an e-mail address.")
    return value


def _as_list(value: Any) -> Any:
    # A template that renders one address yields a string: accept it as a list of one.
    return [value] if isinstance(value, str) else value


class EmailParams(NodeParams):
    credential: str | None = None
    to: list[str] = pydantic.Field(min_length=1, max_length=MAX_RECIPIENTS)
    cc: list[str] = pydantic.Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[str] = pydantic.Field(default_factory=list, max_length=MAX_RECIPIENTS)
    subject: str = pydantic.Field(default="", max_length=998)
    text: str | None = None
    html: str | None = None

    _lists = pydantic.field_validator("to", "cc", "bcc", mode="before")(_as_list)

    @pydantic.field_validator("to", "cc", "bcc")
    @classmethod
    def _addresses(cls, value: list[str], info: pydantic.ValidationInfo) -> list[str]:
        return [_check_address(item, info) for item in value]

    @pydantic.field_validator("subject", "text", "html", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return scalar_as_text(value)

    @pydantic.field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("The subject may not contain line breaks.")
        return value

    @pydantic.model_validator(mode="after")
    def _some_body(self) -> EmailParams:
        if self.text is None and self.html is None:
            raise ValueError("Give `text`, `html` or both.")
        return self


def build_message(params: EmailParams, sender: str, domain: str) -> EmailMessage:
    """Build the message; Bcc recipients get it without a Bcc header."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(params.to)
    if params.cc:
        message["Cc"] = ", ".join(params.cc)
    message["Subject"] = params.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=domain)
    if params.text is not None:
        message.set_content(params.text)
        if params.html is not None:
            message.add_alternative(params.html, subtype="html")
    else:
        message.set_content(params.html or "", subtype="html")
    return message


def _sender(credential: Mapping[str, Any]) -> str:
    for candidate in (credential.get("from"), credential.get("username")):
        if isinstance(candidate, str) and _ADDRESS.match(candidate.strip()):
            return candidate.strip()
    return f"autoflow@{credential.get('host') or 'localhost'}"


def _smtp_error(message: str) -> NodeError:
    return NodeError(message, code="smtp_error", retryable=True)


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:300]


@register
class EmailNode(Node):
    """Send an e-mail through an `smtp` credential; output `{accepted, message_id}`."""

    type = "email"
    Params = EmailParams
    credential_types = ("smtp",)
    has_side_effects = True
    at_most_once = True

    def run(self, ctx: NodeContext, params: EmailParams) -> NodeResult:
        credential = ctx.credential
        if credential is None:
            raise NodeError("The e-mail node has no SMTP credential chosen.")
        host = str(credential.get("host") or "")
        if not host:
            raise NodeError("The SMTP credential has no host.")
        security = credential.get("security") or "starttls"
        if security not in SECURITY_MODES:
            raise NodeError(
                f"The SMTP credential's security must be one of {', '.join(SECURITY_MODES)}."
            )
        port = int(credential.get("port") or (465 if security == "tls" else 587))
        timeout = min(ctx.timeout_seconds or DEFAULT_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECONDS)
        sender = _sender(credential)
        message = build_message(params, sender, domain=sender.rpartition("@")[2] or "localhost")
        recipients = list(dict.fromkeys([*params.to, *params.cc, *params.bcc]))
        connection = self._connect(host, port, security, timeout)
        try:
            self._authenticate(connection, credential, security)
            accepted = self._envelope(connection, sender, recipients)
            self._send_data(connection, message)
        finally:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()
        ctx.log("info", f"E-mail accepted for {len(accepted)} recipient(s)", None)
        return NodeResult(output={"accepted": accepted, "message_id": message["Message-ID"]})

    def _connect(self, host: str, port: int, security: str, timeout: float) -> smtplib.SMTP:
        context = ssl.create_default_context()
        try:
            if security == "tls":
                return smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
            connection = smtplib.SMTP(host, port, timeout=timeout)
            if security == "starttls":
                connection.ehlo()
                connection.starttls(context=context)
                connection.ehlo()
            return connection
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(
                f"Could not connect to the SMTP server {host}:{port}: {_describe(exc)}"
            ) from None

    def _authenticate(
        self, connection: smtplib.SMTP, credential: Mapping[str, Any], security: str
    ) -> None:
        username = credential.get("username")
        if not username:
            return
        try:
            connection.login(str(username), str(credential.get("password") or ""))
        except smtplib.SMTPAuthenticationError as exc:
            raise _smtp_error(
                f"SMTP authentication failed: {exc.smtp_code} {_reply_text(exc.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(f"SMTP login failed: {_describe(exc)}") from None

    def _envelope(self, connection: smtplib.SMTP, sender: str, recipients: list[str]) -> list[str]:
        try:
            code, reply = connection.mail(sender)
            if code != 250:
                raise _smtp_error(
                    f"The SMTP server refused the sender: {code} {_reply_text(reply)}"
                )
            refused: list[str] = []
            for recipient in recipients:
                code, reply = connection.rcpt(recipient)
                if code not in (250, 251):
                    refused.append(f"{recipient} ({code} {_reply_text(reply)})")
            if refused:
                connection.rset()
                raise _smtp_error("The SMTP server refused recipient(s): " + "; ".join(refused))
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(f"SMTP failed before sending the message: {_describe(exc)}") from None
        return recipients

    def _send_data(self, connection: smtplib.SMTP, message: EmailMessage) -> None:
        try:
            code, reply = connection.docmd("DATA")
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(f"SMTP failed before sending the message: {_describe(exc)}") from None
        if code != 354:
            raise _smtp_error(f"The SMTP server refused DATA: {code} {_reply_text(reply)}")
        # From here on the server may have the message: nothing is retried.
        try:
            payload = smtplib.quotedata(
                message.as_string(policy=message.policy.clone(linesep="\r\n"))
            )
            if not payload.endswith("\r\n"):
                payload += "\r\n"
            connection.send(payload.encode("utf-8") + b".\r\n")
            code, reply = connection.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            raise NodeError(
                f"The message was sent but the server's answer was lost ({_describe(exc)}); "
                "it may or may not have been delivered, so it is not sent again.",
                code="delivery_unknown",
            ) from None
        if code != 250:
            raise NodeError(
                "The SMTP server rejected the message after receiving it: "
                f"{code} {_reply_text(reply)}; it is not sent again.",
                code="delivery_unknown",
            )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_reply_text(exc.smtp_error)}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
