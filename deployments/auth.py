"""Bearer-token auth for every route but health.

The token is ``SAERAY_API_TOKEN``. When it is unset, auth is off: that is for local use on
one machine, where the API listens on 127.0.0.1. The app keeps only the token's SHA-256,
and compares digests in constant time (hmac.compare_digest).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(
    auto_error=False,
    description="The value of SAERAY_API_TOKEN (auth is off when the server has none set)",
)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    expected: str | None = request.app.state.api_token_sha256
    if expected is None:
        return
    presented = token_digest(credentials.credentials) if credentials is not None else ""
    if not hmac.compare_digest(presented, expected):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token; send 'Authorization: Bearer <SAERAY_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
