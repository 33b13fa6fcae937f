"""``projcache serve``: the HTTP API and web page (needs the ``server`` extra)."""

from __future__ import annotations

import logging
from typing import Optional

import typer

from projcache.errors import ServerError

from .errors import cli_errors
from .state import open_cache, state_of

__all__ = ["register"]


def serve(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; other than loopback needs an API key."
    ),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free one)."),
    watch: bool = typer.Option(
        False, "--watch", help="Also refresh on file changes in the cached folders."
    ),
    refresh_interval: float = typer.Option(
        60.0,
        "--refresh-interval",
        min=0.0,
        help="Seconds between background refreshes of stale sources (0: none).",
    ),
    api_key: Optional[str] = typer.Option(
        None,
        "--api-key",
        envvar="PROJCACHE_API_KEY",
        help="Require this key in the X-API-Key header.",
        show_default=False,
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback address without an API key."
    ),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
    allowed_host: Optional[list[str]] = typer.Option(
        None,
        "--allowed-host",
        help="Also answer requests for this Host name (or name:port); repeatable. "
        "Other names get 421.",
        show_default=False,
    ),
) -> None:
    """Serve the cache over HTTP: JSON API under /api/v1/cache/ and a web page at /."""
    state = state_of(ctx)
    with cli_errors(state):
        try:
            from projcache.server import ServerOptions, check_bind, serve
        except ImportError as exc:
            raise ServerError(
                f"the server is not installed ({exc.name} is missing)",
                hint="Install it with: pip install 'projcache[server]'",
            ) from None
        options = ServerOptions(
            api_key=api_key or None,
            refresh_interval=refresh_interval or None,
            watch=watch,
            allowed_hosts=tuple(allowed_host or ()),
        )
        check_bind(host, options.api_key, insecure)  # before the cache is opened
        # uvicorn reports through logging; the root logger is set to WARNING by default.
        logging.getLogger("uvicorn.error").setLevel(logging.INFO)
        with open_cache(state) as cache:
            serve(
                cache,
                host,
                port,
                options,
                insecure=insecure,
                access_log=access_log,
                on_ready=lambda url: typer.echo(f"serving {cache.path} on {url}", err=True),
            )


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)
