"""The live execution page (Django session login, like the admin's)."""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.models import User
from autoflow.exceptions import NotFound
from executions.models import Execution
from executions.selectors import execution_get_for_user
from live.selectors import execution_live_state


def _visible_execution(request: HttpRequest, execution_id: uuid.UUID) -> Execution:
    user = request.user
    if not isinstance(user, User):
        raise Http404
    try:
        return execution_get_for_user(user=user, execution_id=execution_id)
    except NotFound:
        raise Http404 from None


@require_GET
@never_cache
@login_required
def execution_live_page(request: HttpRequest, execution_id: uuid.UUID) -> HttpResponse:
    """Render the live page of an execution the user may see (404 otherwise)."""
    execution = _visible_execution(request, execution_id)
    return render(
        request,
        "live/execution.html",
        {"execution": execution, "state": execution_live_state(execution=execution)},
    )


@require_GET
@never_cache
@login_required
def execution_live_state_view(request: HttpRequest, execution_id: uuid.UUID) -> JsonResponse:
    """Return the page's state as JSON; the page refetches it when a node changes."""
    execution = _visible_execution(request, execution_id)
    return JsonResponse(execution_live_state(execution=execution))
