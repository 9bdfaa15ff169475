"""The ASGI handler renders a sync view's response in the view's own hop."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.template.response import SimpleTemplateResponse
from django.test import RequestFactory
from rest_framework.response import Response
from rest_framework.views import APIView

from autoflow.handlers import ASGIHandler, rendered


class _Answer(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []

    def get(self, request: Any) -> Response:
        return Response({"answer": 42})


def _handler(template_response_middleware: list[Any]) -> ASGIHandler:
    handler = ASGIHandler()
    vars(handler)["_template_response_middleware"] = template_response_middleware
    return handler


def test_a_sync_views_response_comes_back_rendered_with_nothing_left_to_render():
    view = _handler([]).make_view_atomic(_Answer.as_view())

    response = view(RequestFactory().get("/answer"))

    assert response.is_rendered
    assert response.content == b'{"answer":42}'
    assert iscoroutinefunction(response.render)
    assert async_to_sync(response.render)() is response
    assert type(response).render is Response.render  # other responses render as before


def test_with_template_response_middleware_the_handler_renders_as_django_does():
    def view(request: HttpRequest) -> Response:
        return Response({"answer": 42})

    wrapped = _handler([lambda request, response: response]).make_view_atomic(view)

    response = wrapped(RequestFactory().get("/answer"))

    assert not response.is_rendered  # the middleware must see it first


def test_async_views_and_plain_responses_pass_through():
    async def async_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("x")

    assert _handler([]).make_view_atomic(async_view) is async_view
    plain = HttpResponse("plain")
    assert rendered(plain) is plain
    assert "render" not in vars(plain)


def test_a_post_render_callback_s_response_is_the_one_handed_back():
    replacement = HttpResponse("replaced")
    first = SimpleTemplateResponse(engines["django"].from_string("first"))
    first.add_post_render_callback(lambda response: replacement)

    result = rendered(first)
    render: Any = result.render

    assert result is replacement
    assert first.content == b"first"
    assert async_to_sync(render)() is replacement
