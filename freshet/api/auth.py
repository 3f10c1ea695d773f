"""Bearer-token check for the read API."""

from __future__ import annotations

import hmac


def bearer_ok(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``.

    The comparison takes the same time wherever the first wrong byte is, so response
    times do not reveal how much of a guess was right.
    """
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))
