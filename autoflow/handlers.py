"""Django's ASGI handler, with a sync view's response rendered on the view's own thread.

For a response whose `render()` is sync (DRF's `Response`, `TemplateResponse`), Django's async
handler calls the view in one hop to the request's thread and then renders the response in a
second one (`sync_to_async(response.render)`): every API response paid for two hand-offs
between the event loop and its thread, on the answer's path. Here the view's own hop renders
it too, and the handler then awaits a `render()` that has nothing left to do. Rendering still
happens after the view returns and outside its transaction, as Django does it; with a
`process_template_response` middleware installed (which must see the response before it is
rendered), nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.http import HttpRequest
from django.http.response import HttpResponseBase

View = Callable[..., Any]


class ASGIHandler(DjangoASGIHandler):
    def make_view_atomic(self, view: View) -> View:
        atomic_view: View = super().make_view_atomic(view)
        # Django's handler reads these once it has the response: they must see it unrendered.
        template_response_middleware: list[Any] = getattr(  # noqa: B009 - not in the stubs
            self, "_template_response_middleware"
        )
        if iscoroutinefunction(atomic_view) or template_response_middleware:
            return atomic_view

        def view_then_render(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return rendered(atomic_view(request, *args, **kwargs))

        return view_then_render


def rendered(response: Any) -> Any:
    """Render a response with a sync `render()` now; its `render()` then only hands it back."""
    render = getattr(response, "render", None)
    if not callable(render) or iscoroutinefunction(render):
        return response
    result: HttpResponseBase = render()

    async def already_rendered() -> HttpResponseBase:
        return result

    # Django's async handler awaits a coroutine function's `render()` on the event loop.
    vars(result)["render"] = already_rendered  # shadows the method, on this instance only
    return result
