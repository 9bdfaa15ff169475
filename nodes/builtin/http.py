"""The `http` node: one HTTP request, safe by default against server-side request forgery.

Every connection goes through `requests-hardened`'s IP-filtering adapter, extended here: the
host is resolved once, every address it resolves to is checked, and the connection is pinned to
the checked address (no DNS-rebinding window). `HTTP_NODE_ALLOWED_HOSTS` (host names or CIDRs)
opens named targets only. Redirects are followed by hand so each hop is checked again, its body
is never read, and credential headers never follow the request to another origin.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import ipaddress
import json
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import pydantic
import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES
from requests_hardened.ip_filter_adapter import IPFilterAdapter

from autoflow.storable import finite_float, refuse_constant
from nodes.base import Node, NodeContext, NodeError, NodeParams, NodeResult
from nodes.expressions import is_template
from nodes.params import is_saving, scalar_as_text
from nodes.registry import register

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 5
MAX_TIMEOUT_SECONDS = 300.0
CONNECT_TIMEOUT_SECONDS = 10.0
CHUNK_BYTES = 64 * 1024
REDACTED = "***"
USER_AGENT = "AutoFlow-HTTP-Node/1"


class UrlBlocked(requests.RequestException):
    """The URL points somewhere the node may not go."""


# --- address policy -------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _allowlist(entries: tuple[str, ...]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return frozenset(names), tuple(networks)


def _allowed() -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    return _allowlist(tuple(getattr(settings, "HTTP_NODE_ALLOWED_HOSTS", ()) or ()))


def blocked_reason(address: IPAddress) -> str | None:
    """Name why an address may not be reached, or None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        inner = blocked_reason(address.ipv4_mapped)
        return f"an IPv4-mapped {inner}" if inner else None
    checks = (
        (address.is_unspecified, "unspecified address"),
        (address.is_loopback, "loopback address"),
        (address.is_link_local, "link-local address (this includes cloud metadata)"),
        (address.is_multicast, "multicast address"),
        (address.is_private, "private address"),
        (address.is_reserved, "reserved address"),
        (
            any(address in network for network in EXTRA_BLOCKED_NET_RANGES),
            "special-purpose address",
        ),
        (not address.is_global, "non-public address"),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return None


def _literal_address(host: str) -> IPAddress | None:
    """Read an IP literal, including the decimal, octal and hex IPv4 spellings."""
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host)
    try:
        # inet_aton accepts 2130706433, 0x7f.1, 017700000001 ... as the C resolver does.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def resolve_checked(host: str, port: int) -> str:
    """Resolve `host`, refuse it if any address is blocked, and return the address to pin."""
    names, networks = _allowed()
    name = host.lower().rstrip(".")
    literal = _literal_address(name)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise requests.ConnectionError(f"Could not resolve {host!r}: {exc.strerror}") from None
        addresses = []
        for family, _type, _proto, _canon, sockaddr in found:
            if family in (socket.AF_INET, socket.AF_INET6):
                addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
        if not addresses:
            raise requests.ConnectionError(f"Could not resolve {host!r}.")
    if name not in names:
        for address in addresses:
            if any(address in network for network in networks):
                continue
            reason = blocked_reason(address)
            if reason is not None:
                shown = host if literal is not None else f"{host} resolves to {address}, which"
                raise UrlBlocked(f"URL blocked: {shown} is {_article(reason)}{reason}.")
    chosen = addresses[0]
    return str(chosen) if chosen.version == 4 else f"[{chosen}]"


def _article(reason: str) -> str:
    return "" if reason.startswith("an ") else ("an " if reason[0] in "aeiou" else "a ")


class GuardedAdapter(IPFilterAdapter):
    """requests-hardened's adapter with a per-host and per-CIDR allowlist and full checks."""

    def build_connection_pool_key_attributes(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        typed_host_params, typed_pool_kwargs = HTTPAdapter.build_connection_pool_key_attributes(
            self, request, verify, cert
        )
        host_params: dict[str, Any] = dict(typed_host_params)
        pool_kwargs: dict[str, Any] = dict(typed_pool_kwargs)
        request.headers = CaseInsensitiveDict(request.headers or {})
        original = host_params["host"]
        host_header = f"[{original}]" if ":" in original else original
        port = host_params["port"]
        if port is not None:
            host_header += f":{port}"
        request.headers["Host"] = host_header
        if self._is_https_proto:
            # Certificates and SNI are checked against the name, not the pinned address.
            pool_kwargs["assert_hostname"] = original
            pool_kwargs["server_hostname"] = original
        default_port = 443 if self._is_https_proto else 80
        host_params["host"] = resolve_checked(original, port or default_port).strip("[]")
        return host_params, pool_kwargs


_sessions: dict[int, requests.Session] = {}
_sessions_lock = threading.Lock()


def session() -> requests.Session:
    """Return this process's pooled session (a forked worker builds its own)."""
    pid = os.getpid()
    current = _sessions.get(pid)
    if current is not None:
        return current
    with _sessions_lock:
        current = _sessions.get(pid)
        if current is None:
            current = requests.Session()
            # Proxies from the environment would bypass the address checks.
            current.trust_env = False
            current.headers["User-Agent"] = USER_AGENT
            current.mount("http://", GuardedAdapter(is_https_proto=False))
            current.mount("https://", GuardedAdapter(is_https_proto=True))
            _sessions.clear()
            _sessions[pid] = current
    return current


# --- params ---------------------------------------------------------------------------------


def _no_line_breaks(value: str, what: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} may not contain line breaks.")


class HttpParams(NodeParams):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: str = pydantic.Field(min_length=1, max_length=8192)
    query: dict[str, Any] = pydantic.Field(default_factory=dict)
    headers: dict[str, str] = pydantic.Field(default_factory=dict)
    json_body: Any = pydantic.Field(default=None, alias="json")
    body: str | None = None
    credential: str | None = None
    timeout_seconds: float = pydantic.Field(
        default=30.0, gt=0, le=MAX_TIMEOUT_SECONDS, allow_inf_nan=False
    )
    fail_on_status: bool = True
    retry_on_status: list[int] = pydantic.Field(default_factory=list)

    @pydantic.field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @pydantic.field_validator("url")
    @classmethod
    def _http_url(cls, value: str, info: pydantic.ValidationInfo) -> str:
        if is_saving(info) and is_template(value):
            return value
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https"):
            raise ValueError("The URL must start with http:// or https://.")
        if not parts.hostname:
            raise ValueError("The URL has no host.")
        return value.strip()

    @pydantic.field_validator("headers", mode="before")
    @classmethod
    def _header_text(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: scalar_as_text(item) for key, item in value.items()}
        return value

    @pydantic.field_validator("body", mode="before")
    @classmethod
    def _body_text(cls, value: Any) -> Any:
        return scalar_as_text(value)

    @pydantic.field_validator("headers")
    @classmethod
    def _clean_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header_value in value.items():
            _no_line_breaks(name, "A header name")
            _no_line_breaks(header_value, f"Header {name!r}")
        return value

    @pydantic.field_validator("retry_on_status")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        for status in value:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status.")
        return value

    @pydantic.model_validator(mode="after")
    def _one_body(self) -> HttpParams:
        if self.json_body is not None and self.body is not None:
            raise ValueError("Give `json` or `body`, not both.")
        return self


# --- the node -------------------------------------------------------------------------------


def credential_headers(credential: Mapping[str, Any] | None) -> dict[str, str]:
    """Turn an `http_header`, `http_basic` or `http_bearer` credential into request headers."""
    if not credential:
        return {}
    kind = credential.get("type")
    if kind == "http_header" or (kind is None and "name" in credential and "value" in credential):
        name, value = str(credential["name"]), str(credential["value"])
        if any(ch in name + value for ch in "\r\n"):
            raise NodeError("The credential's header contains a line break.")
        return {name: value}
    if kind == "http_bearer" or (kind is None and "token" in credential):
        return {"Authorization": f"Bearer {credential['token']}"}
    if kind == "http_basic" or (kind is None and "username" in credential):
        pair = f"{credential.get('username', '')}:{credential.get('password', '')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}
    raise NodeError("The credential is not an HTTP credential (header, basic or bearer).")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _read_bounded(response: requests.Response, limit: int, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise NodeError(
            f"The response body is {declared} bytes; the limit is {limit}.",
            code="response_too_large",
        )
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_content(CHUNK_BYTES):
        total += len(chunk)
        if total > limit:
            raise NodeError(
                f"The response body is larger than the limit of {limit} bytes.",
                code="response_too_large",
            )
        if time.monotonic() > deadline:
            raise NodeError(
                "The response took longer than the node's timeout.",
                code="node_timeout",
                retryable=True,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_body(response: requests.Response, raw: bytes) -> Any:
    content_type = response.headers.get("Content-Type", "").lower()
    text = raw.decode(response.encoding or "utf-8", errors="replace")
    if "json" in content_type.split(";")[0]:
        try:
            # NaN and Infinity are not JSON (nor storable), nor is 1e400 a float: such a body
            # is text.
            return json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
        except ValueError:
            return text
    return text


def _redacted(headers: Mapping[str, str], secret_names: Iterable[str]) -> dict[str, str]:
    secret = {name.lower() for name in secret_names}
    return {
        name: (REDACTED if name.lower() in secret else value) for name, value in headers.items()
    }


@register
class HttpNode(Node):
    """Send one HTTP request; output `{status, headers, body, duration_ms}`."""

    type = "http"
    Params = HttpParams
    credential_types = ("http_header", "http_basic", "http_bearer")
    has_side_effects = True

    def run(self, ctx: NodeContext, params: HttpParams) -> NodeResult:
        if params.credential is not None and ctx.credential is None:
            raise NodeError("The node's credential could not be loaded.")
        secret_headers = credential_headers(ctx.credential)
        headers = {**params.headers, **secret_headers}
        query = {
            key: value if isinstance(value, (str, list)) else json.dumps(value)
            for key, value in params.query.items()
        }
        data = params.body.encode() if params.body is not None else None
        if params.json_body is not None:
            data = json.dumps(params.json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        ctx.log(
            "info",
            f"{params.method} {_without_userinfo(params.url)}",
            {"headers": _redacted(headers, secret_headers)},
        )
        started = time.monotonic()
        timeout = min(params.timeout_seconds, ctx.timeout_seconds or params.timeout_seconds)
        deadline = started + timeout
        response = self._send(params, query, headers, data, set(secret_headers), deadline)
        try:
            status = response.status_code
            if status >= 400 and (params.fail_on_status or status in params.retry_on_status):
                retryable = status >= 500 or status == 429 or status in params.retry_on_status
                raise NodeError(
                    f"{params.method} {params.url} answered HTTP {status}.",
                    code="http_status",
                    retryable=retryable,
                    retry_after_seconds=_retry_after(response.headers.get("Retry-After")),
                )
            raw = _read_bounded(response, settings.NODE_OUTPUT_MAX_BYTES, deadline)
            return NodeResult(
                output={
                    "status": status,
                    "headers": dict(response.headers),
                    "body": _decode_body(response, raw) if params.method != "HEAD" else None,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                }
            )
        except requests.RequestException as exc:
            raise _request_error(exc) from None
        finally:
            response.close()

    def _send(
        self,
        params: HttpParams,
        query: Mapping[str, Any],
        headers: dict[str, str],
        data: bytes | None,
        secret_headers: set[str],
        deadline: float,
    ) -> requests.Response:
        method, url = params.method, params.url
        first_origin = _origin(url)
        for _hop in range(MAX_REDIRECTS + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeError(
                    "The request took longer than the node's timeout.",
                    code="node_timeout",
                    retryable=True,
                )
            try:
                request = requests.Request(method, url, headers=headers, data=data, params=query)
                prepared = session().prepare_request(request)
                response = session().send(
                    prepared,
                    stream=True,
                    allow_redirects=False,
                    timeout=(min(CONNECT_TIMEOUT_SECONDS, remaining), remaining),
                )
            except requests.RequestException as exc:
                raise _request_error(exc) from None
            except ValueError as exc:  # a header or URL requests refuses to send
                raise NodeError(f"The request is not valid: {exc}") from None
            if not response.is_redirect:
                return response
            location = response.headers.get("Location", "")
            response.close()
            url = urljoin(response.url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise NodeError(
                    f"URL blocked: a redirect leads to {url!r}, which is not http(s).",
                    code="url_blocked",
                )
            query = {}
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method = "GET" if method != "HEAD" else method
                data = None
                headers = {
                    k: v
                    for k, v in headers.items()
                    if k.lower() not in ("content-type", "content-length")
                }
            if _origin(url) != first_origin:
                # Credentials go to the origin they were meant for, never on to another.
                lowered = {name.lower() for name in secret_headers} | {"authorization", "cookie"}
                headers = {k: v for k, v in headers.items() if k.lower() not in lowered}
        raise NodeError(f"More than {MAX_REDIRECTS} redirects.", code="http_status")


def _request_error(exc: requests.RequestException) -> NodeError:
    if isinstance(exc, UrlBlocked):
        return NodeError(str(exc), code="url_blocked")
    if isinstance(exc, requests.Timeout):
        return NodeError("The request timed out.", code="node_timeout", retryable=True)
    if isinstance(exc, requests.ConnectionError):
        cause = exc.__context__ or exc.__cause__
        while cause is not None:
            if isinstance(cause, UrlBlocked):
                return NodeError(str(cause), code="url_blocked")
            cause = cause.__context__ or cause.__cause__
        return NodeError(
            f"Could not connect: {_short(exc)}", code="connection_error", retryable=True
        )
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ),
    ):
        return NodeError(f"The URL is not valid: {_short(exc)}")
    return NodeError(f"The request failed: {_short(exc)}", code="connection_error", retryable=True)


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:{REDACTED}@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
