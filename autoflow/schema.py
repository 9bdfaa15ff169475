"""Shared OpenAPI pieces: the error body every endpoint may answer."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.JSONField(),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: "Invalid input (`validation_error`, `graph_invalid`, `version_required`).",
    401: "Not authenticated or the token is invalid.",
    403: "Not allowed (`permission_denied`, `scope_missing`).",
    404: "Not found, or not visible to the caller.",
    409: "Conflict (`version_conflict`, `idempotency_conflict`, `invalid_state`).",
    413: "The body is larger than MAX_REQUEST_BYTES.",
    422: "The execution failed (`execution_failed`).",
    429: "Rate limited; see Retry-After.",
    503: "A dependency is unavailable.",
}


def error_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI responses for the given error statuses, all in the one error shape."""
    return {
        status: OpenApiResponse(response=ErrorSerializer, description=_DESCRIPTIONS[status])
        for status in statuses
    }


def document_page_not_found(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: a paginated list answers 404 for a page past the end (DRF's rule)."""
    for item in result.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            names = {parameter.get("name") for parameter in operation.get("parameters", [])}
            if "page" in names and "404" not in operation.get("responses", {}):
                operation["responses"]["404"] = {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                    "description": "The page is past the end of the list.",
                }
    return result
