"""A request body read within the size limit, parsed as JSON and validated against its schema."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from minigpt.serving.errors import APIError, validation_error

Schema = TypeVar("Schema", bound=BaseModel)


def too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than this server takes ({limit} bytes, --max_body_bytes)")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (whatever Content-Length says)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


async def parse_request(request: Request, schema: type[Schema], limit: int) -> Schema:
    """The body as `schema`, or a 4xx APIError that says what is wrong with it."""
    body = await read_body(request, limit)
    if not body.strip():
        raise APIError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise APIError(400, f"the request body is not valid JSON ({error})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise validation_error(error.errors()) from None
