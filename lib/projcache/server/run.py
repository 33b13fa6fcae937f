"""Run the application with uvicorn on a socket bound here, so failures are ours to report.

Binding first turns "address in use" into :class:`~projcache.errors.ServerError`
(uvicorn would log it and exit the process), and lets port 0 pick a free port.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable, Optional

import uvicorn

from ..errors import ServerError
from .app import ServerOptions, create_app

if TYPE_CHECKING:
    from ..cache import ProjectCache

__all__ = ["check_bind", "is_loopback", "serve"]

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere


def check_bind(host: str, api_key: Optional[str], insecure: bool) -> None:
    """Refuse to serve a non-loopback address without an API key (unless ``insecure``).

    Raises:
        ServerError: the address is reachable from other machines and no key is set.
    """
    if is_loopback(host) or api_key or insecure:
        return
    raise ServerError(
        f"refusing to serve {host} without an API key: anyone who can reach it could "
        "read the cache and start refreshes",
        hint="Set PROJCACHE_API_KEY, bind 127.0.0.1, or pass --insecure.",
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServerError(f"cannot serve on {host}:{port}: the address is in use") from exc
        raise ServerError(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}",
            hint="Check the --host address and --port.",
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal after a graceful shutdown.

    uvicorn re-sends SIGTERM/SIGINT to itself once it has shut down, which kills
    the process before the caller can close the cache (and save its counters).
    Here a signal only asks the server to stop; ``serve`` then returns normally.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(
    cache: ProjectCache,
    host: str = "127.0.0.1",
    port: int = 8765,
    options: Optional[ServerOptions] = None,
    *,
    insecure: bool = False,
    access_log: bool = False,
    on_ready: Optional[Callable[[str], None]] = None,
) -> None:
    """Serve the cache until interrupted (SIGINT/SIGTERM stop it gracefully).

    ``on_ready(url)`` is called once the socket is bound, before requests are served.

    Raises:
        ServerError: the address is in use, cannot be bound, or needs an API key.
    """
    options = options or ServerOptions()
    check_bind(host, options.api_key, insecure)
    sock = _bind(host, port)
    try:
        bound_port = sock.getsockname()[1]
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        config = uvicorn.Config(
            create_app(cache, options),
            log_level="info",
            access_log=access_log,
            # uvicorn's own logging setup would replace the host program's: keep ours.
            log_config=None,
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        if on_ready is not None:
            on_ready(f"http://{shown}:{bound_port}/")
        server.run(sockets=[sock])
    finally:
        sock.close()
