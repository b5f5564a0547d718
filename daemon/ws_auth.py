"""``server.auth`` and ``server.sign``: the user id of a WebSocket session, asked of
the exchange's own HTTP service (ViaBTC's ``auth_url`` and ``sign_url``;
shared/reference/viabtc-api.md §6.2).

Each is one HTTP ``GET`` with the headers ``Authorization: <token>``,
``Accept-Language: en_US`` and ``Content-Type: application/json``, answered by the
JSON ``{"code": 0, "message": ..., "data": {"user_id": N}}``. As ViaBTC: a ``code``
other than 0 is error 11 with the service's message; a reply that is not that object,
or a ``user_id`` that is not in 1..2**32-1, is error 2; no answer within
``timeout_s`` is error 5. The HTTP status is not looked at. matchd adds: a service
that cannot be reached is error 2 saying so, a reply over 64 KiB is refused, and an
empty URL answers error 3 (not configured).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import aiohttp
import msgspec

from core.errors import MatchdError
from core.schema import MAX_USER_ID
from daemon.viabtc_methods import (
    CODE_INTERNAL_ERROR,
    CODE_SERVICE_TIMEOUT,
    CODE_SERVICE_UNAVAILABLE,
)

logger = logging.getLogger("matchd.ws")

CODE_REFUSED: Final = 11
MAX_REPLY_BYTES: Final = 64 * 1024

_decode = msgspec.json.Decoder()


class AuthError(MatchdError):
    """The session could not be authenticated: ViaBTC's ``code`` and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AuthService:
    """The client of ``auth_url`` and ``sign_url`` (see the module docstring).

    Parameters
    ----------
    auth_url, sign_url
        The service's URLs; empty: that method is not configured.
    timeout_s
        How long one request may take.
    """

    def __init__(self, auth_url: str, sign_url: str, timeout_s: float) -> None:
        self.auth_url = auth_url
        self.sign_url = sign_url
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def auth(self, token: str) -> int:
        """The user id the service gives ``token`` (``server.auth``)."""
        if not self.auth_url:
            raise AuthError(
                CODE_SERVICE_UNAVAILABLE,
                "service unavailable: server.auth is not configured ([ws] auth_url)",
            )
        return await self._ask("server.auth", self.auth_url, token, None)

    async def sign(self, access_id: str, authorisation: str, tonce: int) -> int:
        """The user id the service gives a signed request (``server.sign``)."""
        if not self.sign_url:
            raise AuthError(
                CODE_SERVICE_UNAVAILABLE,
                "service unavailable: server.sign is not configured ([ws] sign_url)",
            )
        query = {"access_id": access_id, "tonce": str(tonce)}
        return await self._ask("server.sign", self.sign_url, authorisation, query)

    async def _ask(
        self, method: str, url: str, authorization: str, query: dict[str, str] | None
    ) -> int:
        session = self._client()
        headers = {
            "Authorization": authorization,
            "Accept-Language": "en_US",
            "Content-Type": "application/json",
        }
        try:
            async with session.get(url, params=query, headers=headers) as response:
                body = await response.content.read(MAX_REPLY_BYTES + 1)
        except TimeoutError:
            raise AuthError(CODE_SERVICE_TIMEOUT, "service timeout") from None
        except (aiohttp.ClientError, ValueError) as exc:
            logger.warning("%s: %s failed: %s", method, url, exc)
            raise AuthError(
                CODE_INTERNAL_ERROR, f"internal error: the {method} service cannot be reached"
            ) from None
        if len(body) > MAX_REPLY_BYTES:
            raise AuthError(
                CODE_INTERNAL_ERROR, f"internal error: the {method} service's reply exceeds 64 KiB"
            )
        return _user_id(method, body)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        return self._session

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _user_id(method: str, body: bytes) -> int:
    """The user id of the service's reply ``body`` (see the module docstring)."""
    try:
        reply: Any = _decode.decode(body)
    except (msgspec.DecodeError, RecursionError):
        reply = None
    malformed = AuthError(
        CODE_INTERNAL_ERROR, f"internal error: the {method} service's reply is not "
        '{"code": 0, "data": {"user_id": N}}',
    )  # fmt: skip
    if not isinstance(reply, dict):
        raise malformed
    code = reply.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise malformed
    if code != 0:
        message = reply.get("message")
        raise AuthError(CODE_REFUSED, message if isinstance(message, str) and message else
                        f"{method} refused (code {code})")  # fmt: skip
    data = reply.get("data")
    user = data.get("user_id") if isinstance(data, dict) else None
    if isinstance(user, bool) or not isinstance(user, int) or not 1 <= user <= MAX_USER_ID:
        raise malformed
    return user
