"""The http node against a real local server, and its SSRF refusals with no packet sent out.

The local server listens on 127.0.0.1 and is allowlisted per test with `HTTP_NODE_ALLOWED_HOSTS`.
Refusal tests stub name resolution for `*.test` names and make any connection to a
non-loopback address fail the test, so each refusal provably happens before connecting.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from nodes.base import NodeError
from nodes.builtin.http import resolve_checked
from tests.nodes.helpers import LogCollector, run_node

ALLOW_LOCAL = override_settings(HTTP_NODE_ALLOWED_HOSTS=["127.0.0.1"])

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_create_connection = socket.create_connection


def _is_loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Fail the test on any attempt to connect anywhere but loopback."""
    attempts: list[Any] = []

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            attempts.append(address)
            pytest.fail(f"connection attempted to non-loopback address {address!r}")
        return _real_connect(sock, address)

    def guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(address) and address[0] != "localhost":
            attempts.append(address)
            pytest.fail(f"connection attempted to non-loopback address {address!r}")
        return _real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    yield attempts
    assert attempts == []


class FakeDns:
    """Addresses `*.test` names resolve to, and the lookups made."""

    def __init__(self) -> None:
        self.addresses: dict[str, list[str]] = {}
        self.lookups: list[str] = []

    def __setitem__(self, name: str, addresses: list[str]) -> None:
        self.addresses[name] = addresses

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if not (isinstance(host, str) and host.endswith(".test")):
            return _real_getaddrinfo(host, port, *args, **kwargs)
        self.lookups.append(host)
        results: list[tuple[Any, ...]] = []
        for address in self.addresses.get(host, []):
            if ":" in address:
                results.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                results.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return results


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    """Resolve `*.test` names to the addresses a test sets; everything else as usual."""
    dns = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    return dns


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[HTTPServer, HTTPServer]]:
    # Started once: stopping a server waits out its 0.5 s poll interval.
    with (
        HTTPServer(host="127.0.0.1", port=0, threaded=True) as first,
        HTTPServer(host="127.0.0.1", port=0, threaded=True) as second,
    ):
        yield first, second


@pytest.fixture
def server(_servers: tuple[HTTPServer, HTTPServer]) -> Iterator[HTTPServer]:
    _servers[0].clear()
    yield _servers[0]
    _servers[0].clear()


@pytest.fixture
def other_server(_servers: tuple[HTTPServer, HTTPServer]) -> Iterator[HTTPServer]:
    _servers[1].clear()
    yield _servers[1]
    _servers[1].clear()


def http(params: dict[str, Any], **kwargs: Any) -> Any:
    return run_node("http", params, **kwargs).output


def http_error(params: dict[str, Any], **kwargs: Any) -> NodeError:
    with pytest.raises(NodeError) as caught:
        run_node("http", params, **kwargs)
    return caught.value


# --- requests and responses ------------------------------------------------------------------


@ALLOW_LOCAL
def test_get_json_with_query_and_headers(server: HTTPServer):
    server.expect_request(
        "/items/7",
        method="GET",
        query_string={"page": "2", "tag": "x"},
        headers={"X-Trace": "abc", "X-Count": "3"},
    ).respond_with_json({"id": 7, "ok": True}, headers={"X-Reply": "yes"})
    output = http(
        {
            "method": "get",
            "url": server.url_for("/items/{{ input.id }}"),
            "query": {"page": "{{ input.page }}", "tag": "x"},
            "headers": {"X-Trace": "abc", "X-Count": "{{ input.page + 1 }}"},
        },
        input={"id": 7, "page": 2},
    )
    assert output["status"] == 200
    assert output["body"] == {"id": 7, "ok": True}
    assert output["headers"]["X-Reply"] == "yes"
    assert output["duration_ms"] >= 0
    server.check_assertions()


@ALLOW_LOCAL
def test_a_json_answer_with_a_number_json_or_a_float_has_not_is_text(server: HTTPServer):
    # Python's json reads NaN and Infinity, which JSON has not and PostgreSQL's jsonb refuses:
    # as data they would have failed the run's write.
    for answer in ('{"a": NaN, "b": [Infinity, -Infinity]}', '{"big": 1e400}'):
        server.clear()
        server.expect_request("/odd").respond_with_data(answer, content_type="application/json")
        output = http({"method": "GET", "url": server.url_for("/odd")})
        assert output["body"] == answer


@ALLOW_LOCAL
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_json_body_for_each_method(server: HTTPServer, method: str):
    server.expect_request("/w", method=method, json={"a": [1, 2]}).respond_with_data(
        "done", status=201
    )
    output = http(
        {"method": method, "url": server.url_for("/w"), "json": {"a": "{{ input.a }}"}},
        input={"a": [1, 2]},
    )
    assert output["status"] == 201
    assert output["body"] == "done"
    server.check_assertions()


@ALLOW_LOCAL
def test_raw_body_with_its_content_type(server: HTTPServer):
    server.expect_request(
        "/form",
        method="POST",
        data="a=1&b=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ).respond_with_data("ok")
    output = http(
        {
            "method": "POST",
            "url": server.url_for("/form"),
            "body": "a=1&b=2",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        }
    )
    assert output["body"] == "ok"
    server.check_assertions()


@ALLOW_LOCAL
@pytest.mark.parametrize(
    ("credential", "header", "expected"),
    [
        ({"token": "s3cr3t-token"}, "Authorization", "Bearer s3cr3t-token"),
        (
            {"username": "ada", "password": "s3cr3t-pass"},
            "Authorization",
            "Basic YWRhOnMzY3IzdC1wYXNz",
        ),
        ({"name": "X-Api-Key", "value": "s3cr3t-key"}, "X-Api-Key", "s3cr3t-key"),
    ],
)
def test_credentials_are_sent_but_never_output_or_logged(server, credential, header, expected):
    server.expect_request("/secure", headers={header: expected}).respond_with_json({"fine": True})
    log = LogCollector()
    output = http(
        {"url": server.url_for("/secure"), "credential": "cred-1"}, credential=credential, log=log
    )
    assert output["body"] == {"fine": True}
    server.check_assertions()
    everything = json.dumps([output, log.lines])
    assert "s3cr3t" not in everything
    assert log.lines[0][2]["headers"][header] == "***"


@ALLOW_LOCAL
def test_password_in_the_url_is_not_logged(server: HTTPServer):
    server.expect_request("/u").respond_with_data("ok")
    log = LogCollector()
    url = server.url_for("/u").replace("http://", "http://ada:hunter2@")
    http({"url": url}, log=log)
    assert "hunter2" not in json.dumps(log.lines)
    assert "ada:***@" in log.lines[0][1]


@ALLOW_LOCAL
def test_node_timeout_bounds_the_request(server: HTTPServer):
    def slow(request: Request) -> Response:
        time.sleep(1.5)
        return Response("late")

    server.expect_request("/slower").respond_with_handler(slow)
    started = time.monotonic()
    error = http_error(
        {"url": server.url_for("/slower"), "timeout_seconds": 60}, timeout_seconds=0.3
    )
    assert error.code == "node_timeout"
    assert time.monotonic() - started < 1.4


def test_missing_credential_fails_cleanly():
    error = http_error({"url": "https://example.org", "credential": "cred-1"})
    assert error.code == "node_error"


# --- status handling ------------------------------------------------------------------------


@ALLOW_LOCAL
def test_4xx_fails_with_http_status_and_is_not_retryable(server: HTTPServer):
    server.expect_request("/missing").respond_with_data("nope", status=404)
    error = http_error({"url": server.url_for("/missing")})
    assert error.code == "http_status"
    assert "404" in error.message
    assert error.retryable is False


@ALLOW_LOCAL
def test_4xx_in_retry_on_status_is_retryable(server: HTTPServer):
    server.expect_request("/conflict").respond_with_data("busy", status=409)
    error = http_error({"url": server.url_for("/conflict"), "retry_on_status": [409]})
    assert error.retryable is True


@ALLOW_LOCAL
def test_5xx_is_retryable(server: HTTPServer):
    server.expect_request("/broken").respond_with_data("oops", status=503)
    error = http_error({"url": server.url_for("/broken")})
    assert error.code == "http_status"
    assert error.retryable is True


@ALLOW_LOCAL
def test_429_carries_retry_after(server: HTTPServer):
    server.expect_request("/slow").respond_with_data(
        "later", status=429, headers={"Retry-After": "7"}
    )
    error = http_error({"url": server.url_for("/slow")})
    assert error.retryable is True
    assert error.retry_after_seconds == 7


@ALLOW_LOCAL
def test_status_returned_as_data_without_fail_on_status(server: HTTPServer):
    server.expect_request("/missing").respond_with_json({"error": "gone"}, status=404)
    output = http({"url": server.url_for("/missing"), "fail_on_status": False})
    assert output["status"] == 404
    assert output["body"] == {"error": "gone"}


# --- timeouts and size ----------------------------------------------------------------------


@ALLOW_LOCAL
def test_timeout_is_retryable(server: HTTPServer):
    def slow(request: Request) -> Response:
        time.sleep(1.5)
        return Response("late")

    server.expect_request("/slow").respond_with_handler(slow)
    started = time.monotonic()
    error = http_error({"url": server.url_for("/slow"), "timeout_seconds": 0.3})
    assert time.monotonic() - started < 1.4
    assert error.code == "node_timeout"
    assert error.retryable is True


@ALLOW_LOCAL
def test_connection_refused_is_retryable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = http_error({"url": f"http://127.0.0.1:{port}/"})
    assert error.code == "connection_error"
    assert error.retryable is True


@override_settings(HTTP_NODE_ALLOWED_HOSTS=["127.0.0.1"], NODE_OUTPUT_MAX_BYTES=1000)
def test_declared_large_body_is_refused(server: HTTPServer):
    server.expect_request("/big").respond_with_data("x" * 5000)
    error = http_error({"url": server.url_for("/big")})
    assert error.code == "response_too_large"


@override_settings(HTTP_NODE_ALLOWED_HOSTS=["127.0.0.1"], NODE_OUTPUT_MAX_BYTES=100_000)
def test_endless_stream_is_cut_off(server: HTTPServer):
    def endless(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(100_000):  # bounded, but far beyond the limit
                yield b"y" * 4096

        return Response(chunks(), content_type="text/plain")

    server.expect_request("/stream").respond_with_handler(endless)
    error = http_error({"url": server.url_for("/stream")})
    assert error.code == "response_too_large"


@override_settings(HTTP_NODE_ALLOWED_HOSTS=["127.0.0.1"], NODE_OUTPUT_MAX_BYTES=1000)
def test_body_within_limit_is_read(server: HTTPServer):
    server.expect_request("/small").respond_with_data("z" * 1000)
    assert http({"url": server.url_for("/small")})["body"] == "z" * 1000


# --- redirects ------------------------------------------------------------------------------


@ALLOW_LOCAL
def test_redirect_within_allowed_hosts_is_followed(server: HTTPServer):
    server.expect_request("/old").respond_with_data("", status=302, headers={"Location": "/new"})
    server.expect_request("/new").respond_with_json({"moved": True})
    assert http({"url": server.url_for("/old")})["body"] == {"moved": True}


@ALLOW_LOCAL
@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://167772161/",
    ],
)
def test_redirect_to_a_blocked_address_is_refused(server: HTTPServer, target: str):
    server.expect_request("/hop").respond_with_data("", status=302, headers={"Location": target})
    error = http_error({"url": server.url_for("/hop")})
    assert error.code == "url_blocked"


@ALLOW_LOCAL
def test_credentials_do_not_follow_a_redirect_to_another_origin(server, other_server):
    other_server.expect_request("/landing").respond_with_json({"landed": True})
    server.expect_request("/hop").respond_with_data(
        "", status=307, headers={"Location": other_server.url_for("/landing")}
    )
    output = http(
        {"url": server.url_for("/hop"), "credential": "c"}, credential={"token": "s3cr3t"}
    )
    assert output["body"] == {"landed": True}
    request, _response = other_server.log[0]
    assert "Authorization" not in request.headers


@ALLOW_LOCAL
def test_redirect_loop_is_bounded(server: HTTPServer):
    server.expect_request("/loop").respond_with_data("", status=302, headers={"Location": "/loop"})
    error = http_error({"url": server.url_for("/loop")})
    assert "redirects" in error.message


# --- SSRF refusals --------------------------------------------------------------------------

BLOCKED_URLS = [
    ("http://127.0.0.1/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://0x7f.0.0.1/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("http://[::ffff:a00:1]/", "IPv4-mapped"),
    ("http://10.0.0.5/", "private"),
    ("http://172.16.3.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://100.64.0.1/", ""),
    ("https://10.0.0.5:8443/x", "private"),
]


@override_settings(HTTP_NODE_ALLOWED_HOSTS=[])
@pytest.mark.parametrize(("url", "reason"), BLOCKED_URLS)
def test_every_blocked_address_class_is_refused(url: str, reason: str):
    error = http_error({"url": url})
    assert error.code == "url_blocked"
    assert reason in error.message


@override_settings(HTTP_NODE_ALLOWED_HOSTS=[])
@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["10.1.2.3"], "private"),
        (["169.254.169.254"], "link-local"),
        (["127.0.0.1"], "loopback"),
        (["fd00::1"], "private"),
        (["93.184.216.34", "192.168.0.10"], "private"),
    ],
)
def test_names_resolving_to_blocked_addresses_are_refused(fake_dns, addresses, reason):
    fake_dns["internal.test"] = addresses
    error = http_error({"url": "http://internal.test/admin"})
    assert error.code == "url_blocked"
    assert reason in error.message
    assert "internal.test" in error.message


@override_settings(HTTP_NODE_ALLOWED_HOSTS=[])
def test_public_address_passes_the_check_and_is_pinned(fake_dns):
    fake_dns["public.test"] = ["93.184.216.34"]
    assert resolve_checked("public.test", 80) == "93.184.216.34"


@override_settings(HTTP_NODE_ALLOWED_HOSTS=["pin.test"])
def test_connection_goes_to_the_checked_address_with_the_original_host(fake_dns, server):
    fake_dns["pin.test"] = ["127.0.0.1"]
    server.expect_request("/p").respond_with_json({"pinned": True})
    output = http({"url": f"http://pin.test:{server.port}/p"})
    assert output["body"] == {"pinned": True}
    request, _response = server.log[0]
    assert request.headers["Host"] == f"pin.test:{server.port}"
    assert fake_dns.lookups == ["pin.test"]  # resolved once, then pinned


@override_settings(HTTP_NODE_ALLOWED_HOSTS=["localhost"])
def test_allowlisted_name_does_not_open_its_address_under_another_name(server):
    error = http_error({"url": server.url_for("/x")})  # 127.0.0.1, not the name "localhost"
    assert error.code == "url_blocked"


@override_settings(HTTP_NODE_ALLOWED_HOSTS=["127.0.0.0/8"])
def test_allowlisted_cidr_opens_only_that_range(server):
    server.expect_request("/x").respond_with_data("in range")
    assert http({"url": server.url_for("/x")})["body"] == "in range"
    assert http_error({"url": "http://10.0.0.1/"}).code == "url_blocked"


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"url": "ftp://example.org/"}, "http"),
        ({"url": "file:///etc/passwd"}, "http"),
        ({"url": "http:///nohost"}, "host"),
        ({"url": "https://example.org", "headers": {"X": "a\r\nInjected: 1"}}, "line break"),
        ({"url": "https://example.org", "json": {}, "body": "x"}, "not both"),
        ({"url": "https://example.org", "method": "BREW"}, "method"),
    ],
)
def test_invalid_params_fail_before_any_request(params, words):
    error = http_error(params)
    assert error.code == "node_error"
    assert words in error.message
