"""Request body parsers."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from autoflow.exceptions import ValidationFailed
from autoflow.storable import unstorable


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering 400 for nesting deeper than the decoder can follow and for
    strings holding a NUL character, which the database cannot store (`autoflow.storable`;
    NaN and Infinity DRF's strict parsing refuses already)."""

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
        # A NUL reaches a JSON body as the escape `\u0000`, or as NUL bytes in a UTF-16 or
        # UTF-32 one: a body with neither needs no walk.
        if b"\\u0000" in body or b"\x00" in body:
            found = unstorable(data)
            if found:
                raise ValidationFailed(f"The body holds {found}, which cannot be stored.")
        return data
