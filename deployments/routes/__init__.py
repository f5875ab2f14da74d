"""The API's routers, one module per resource; ``ROUTERS`` is what the app mounts."""

from __future__ import annotations

from deployments.schemas import ErrorOut

_ERROR_MEANINGS = {
    400: "A request the server cannot act on",
    401: "Missing or wrong bearer token",
    404: "No such id",
    409: "The request conflicts with the current state",
    422: "Invalid body or parameters",
    503: "The Ray cluster cannot be reached",
}


def errors(*codes: int) -> dict[int | str, dict]:
    """OpenAPI entries for the error responses a route may give (all ErrorOut bodies)."""
    return {code: {"model": ErrorOut, "description": _ERROR_MEANINGS[code]} for code in codes}
