"""Request body parsers."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from autoflow.exceptions import ValidationFailed
from autoflow.storable import may_hold_unstorable, unstorable


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering 400 for nesting deeper than the decoder can follow and for
    strings holding a NUL or a lone surrogate, which the database cannot store
    (`autoflow.storable`; NaN and Infinity DRF's strict parsing refuses already)."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        body = stream.read()
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            # json.loads recurses per level: `[[[[...` in a small body would otherwise be a 500.
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        if may_hold_unstorable(body):
            found = unstorable(data)
            if found:
                raise ValidationFailed(f"The body holds {found}, which cannot be stored.")
        return data
