"""Daphne's HTTP requests, without Twisted parsing form bodies that Django parses anyway.

Twisted's `Request` reads every POST body sent as a form (urlencoded or multipart) into
`request.args` before daphne sees the request. Daphne never reads `args`: it hands the raw body
to the ASGI application, where Django parses it once, when a view asks. So each such body was
parsed twice, each POST with a body paid for Twisted's Content-Type parsing (an
`email.message` built per request: ~3 % of the web process's CPU under W1, py-spy `--gil`),
and a body that claims to be multipart but is not was answered by Twisted itself: a bare 400
with no JSON error and no request id, where the API answers in SPEC.md's error shape (an
unknown webhook URL, a 404, was no exception). Twisted's `parsePOSTFormSubmission=False` turns
the parsing off; daphne builds its requests without it, so its protocol factory is given a
request class that passes it.
"""

from __future__ import annotations

from typing import Any

from daphne import http_protocol


class WebRequest(http_protocol.WebRequest):
    """daphne's request, leaving the body to the application."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)


def install() -> None:
    """Make daphne's HTTP factory build `WebRequest`s (it reads its module's name on each
    connection); harmless where daphne is not serving."""
    http_protocol.WebRequest = WebRequest
