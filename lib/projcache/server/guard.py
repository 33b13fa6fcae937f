"""The server's trust boundary: one ASGI middleware in front of every request.

The server is meant for one user on their own machine (see ``SECURITY.md`` and
ADR 0009).  A web page that user opens may still try to talk to it: by DNS
rebinding (a name the attacker controls, resolved to 127.0.0.1, so the browser
calls the page same-origin) or by cross-site "simple" requests (a form or a
``text/plain`` fetch that the browser sends without asking the server first).
This middleware refuses both, bounds what a request may send, and sets the
headers that keep the page from being framed or sniffed:

1. ``Host`` must name this server: ``localhost``, ``127.0.0.1`` or ``[::1]``
   (or the IP address the connection arrived on) with the bound port, or an
   entry of :attr:`ServerOptions.allowed_hosts <projcache.server.ServerOptions>`;
   anything else is ``421 HostNotAllowed``.
2. A request that would reach an endpoint with a method other than GET/HEAD/OPTIONS
   must be ``Content-Type: application/json`` (``415 UnsupportedMediaType``), and its
   ``Origin`` / ``Sec-Fetch-Site`` must not name another site (``403 CrossSiteRequest``).
3. A request body larger than the limit is ``413 BodyTooLarge``: refused from its
   ``Content-Length`` before a byte is read, else counted while it streams in;
   it is read (at most the limit) before the application (JSON parsing, the
   API-key check) sees the request.
4. Every answer carries ``Content-Security-Policy`` (only this server's own scripts,
   styles and API; no inline script; no framing), ``X-Frame-Options: DENY``,
   ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Iterable, MutableMapping, Sequence
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import orjson
from starlette.routing import BaseRoute, Match

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "SECURITY_HEADERS",
    "Refusal",
    "TrustBoundary",
    "parse_host",
]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The API's bodies are a few hundred bytes (two names and a flag); 64 KiB leaves room
# for any of them and keeps what one unauthenticated request can make us hold small.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of a request this server's own page (or a typed URL, a tool) makes.
_OWN_SITES = frozenset({"same-origin", "none"})

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class Refusal(Exception):
    """A request the server refuses at its trust boundary (or a full job queue).

    Answered as an :class:`~projcache.server.bodies.ErrorBody` with ``status``.
    """

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        hint: str,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.hint = hint
        self.headers = headers or {}

    def body(self) -> bytes:
        """The JSON error body."""
        return orjson.dumps({"error": self.error, "message": self.message, "hint": self.hint})


def parse_host(value: str) -> Optional[tuple[str, Optional[int]]]:
    """Split a ``Host`` value (``name``, ``name:port``, ``[v6]:port``) into name and port.

    The name is lower-cased, an IPv6 address without its brackets.  ``None``
    when the value is not a host (empty, a bad port, an unbracketed IPv6 address).
    """
    value = value.strip().lower()
    port_text: Optional[str] = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        name, sep, port_text_or_empty = value.partition(":")
        if sep:
            port_text = port_text_or_empty
        if ":" in port_text_or_empty:
            return None
    if not name:
        return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers, lower-cased names; a repeated header keeps its first value."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


class TrustBoundary:
    """ASGI middleware: Host allow-list, cross-site write refusal, body limit, security headers.

    Args:
        app: the application it guards.
        routes: the application's routes, to tell a request that reaches an
            endpoint from one that will be 404/405 anyway.
        allowed_hosts: more ``Host`` values to accept (``name`` any port, or ``name:port``).
        max_body_bytes: the largest request body accepted.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        allowed_hosts: Iterable[str] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.routes = routes
        self.max_body_bytes = max_body_bytes
        self.allowed: list[tuple[str, Optional[int]]] = []
        for entry in allowed_hosts:
            parsed = parse_host(entry)
            if parsed is None:
                raise ValueError(f"not a host name or host:port: {entry!r}")
            self.allowed.append(parsed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then hand it on with its body already read (at most the limit)."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        headers = _headers(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {bytes(k).lower() for k, _v in message.get("headers", ())}
                extra = [(k, v) for k, v in _RAW_HEADERS if k not in present]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            self._check_host(scope, headers)
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)  # no such routes: the app closes it
                return
            if scope["method"] not in _SAFE_METHODS and self._reaches_endpoint(scope):
                self._check_same_site(headers)
            messages = await self._read_body(headers, receive)
        except Refusal as refusal:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            logger.info(
                "refused %s %s: %s", scope.get("method"), scope.get("path"), refusal.message
            )
            await self._refuse(refusal, send_with_headers)
            return
        if messages is None:  # the client went away while sending
            return

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send_with_headers)

    # -- the checks --------------------------------------------------------------------------

    def _check_host(self, scope: Scope, headers: dict[str, str]) -> None:
        sent = headers.get("host", "")
        parsed = parse_host(sent)
        if parsed is not None and self._host_allowed(scope, *parsed):
            return
        raise Refusal(
            421,
            "HostNotAllowed",
            f"this server does not answer for Host {sent[:200]!r}",
            "Use http://127.0.0.1:<port>/ or http://localhost:<port>/; to reach it under "
            "another name start it with `projcache serve --allowed-host NAME`.",
        )

    def _host_allowed(self, scope: Scope, name: str, port: Optional[int]) -> bool:
        for allowed_name, allowed_port in self.allowed:
            if name == allowed_name and (allowed_port is None or allowed_port == port):
                return True
        server = scope.get("server")
        if server is None:  # not over a socket (e.g. a unix socket): no port to compare
            return name in LOOPBACK_NAMES
        local_host, local_port = str(server[0]).lower().strip("[]"), int(server[1])
        # The address the connection arrived on is safe as a literal: rebinding needs a name.
        if name not in LOOPBACK_NAMES and not (name == local_host and _is_ip(name)):
            return False
        default = 443 if scope.get("scheme") == "https" else 80
        return (port if port is not None else default) == local_port

    def _reaches_endpoint(self, scope: Scope) -> bool:
        # Only requests that would run an endpoint are checked: a wrong method or an
        # unknown path keeps its own 405/404.
        return any(route.matches(scope)[0] is Match.FULL for route in self.routes)

    def _check_same_site(self, headers: dict[str, str]) -> None:
        site = headers.get("sec-fetch-site")
        if site is not None and site.strip().lower() not in _OWN_SITES:
            raise Refusal(
                403,
                "CrossSiteRequest",
                f"refused a request sent by another site (Sec-Fetch-Site: {site[:50]})",
                "Only this server's own page, or a client that is not a browser, may change "
                "the cache.",
            )
        origin = headers.get("origin")
        if origin is not None and not self._same_origin(origin, headers.get("host", "")):
            raise Refusal(
                403,
                "CrossSiteRequest",
                f"refused a request from another origin ({origin[:200]})",
                "Only this server's own page, or a client that is not a browser, may change "
                "the cache.",
            )
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise Refusal(
                415,
                "UnsupportedMediaType",
                "a request that changes the cache must be sent as Content-Type: "
                f"application/json (got {media_type[:100] or 'none'!r})",
                "Send the header 'Content-Type: application/json' (with curl: "
                "-H 'Content-Type: application/json'); the body may be empty.",
            )

    @staticmethod
    def _same_origin(origin: str, host: str) -> bool:
        try:
            parts = urlsplit(origin.strip().lower())
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (a sandboxed frame, a file: page) and the like
        default = {"http": ":80", "https": ":443"}[parts.scheme]
        netloc = parts.netloc
        if netloc.endswith(default):
            netloc = parts.netloc[: -len(default)]
        host = host.strip().lower()
        if host.endswith(default):
            host = host[: -len(default)]
        return netloc == host

    async def _read_body(
        self, headers: dict[str, str], receive: Receive
    ) -> Optional[list[Message]]:
        """The request's body messages, read here so their size is known before the app runs.

        ``None`` when the client disconnected.

        Raises:
            Refusal: 413 when the body is (or claims to be) larger than the limit.
        """
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise Refusal(
                    400,
                    "BadRequest",
                    "the Content-Length header is not a number",
                    "Send a valid Content-Length, or none.",
                )
            if int(length) > self.max_body_bytes:
                raise self._too_large(f"{int(length)} bytes")
        messages: list[Message] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            total += len(message.get("body", b""))
            if total > self.max_body_bytes:
                raise self._too_large(f"more than {self.max_body_bytes} bytes")
            messages.append(message)
            if not message.get("more_body", False):
                return messages

    def _too_large(self, size: str) -> Refusal:
        return Refusal(
            413,
            "BodyTooLarge",
            f"the request body is too large ({size}; the limit is {self.max_body_bytes} bytes)",
            "Request bodies of this API are small JSON objects; send only the fields "
            "the endpoint takes.",
        )

    async def _refuse(self, refusal: Refusal, send: Send) -> None:
        extra = {"Connection": "close", **refusal.headers}
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(refusal.body())).encode()),
            # A body the request may still be sending is not read: the connection is not
            # reused, so the server does not read (and discard) it either.
            *((k.lower().encode(), v.encode()) for k, v in extra.items()),
        ]
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": refusal.body()})
