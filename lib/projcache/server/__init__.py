"""The optional HTTP server (``projcache serve``; install ``projcache[server]``).

A FastAPI application over one :class:`~projcache.ProjectCache` handle: JSON
endpoints under ``/api/v1/cache/``, a static web page at ``/``, refresh jobs
and a background refresher.  Importing this package imports FastAPI, so
``import projcache`` never does.
"""

from __future__ import annotations

from .app import ServerOptions, create_app
from .run import check_bind, serve

__all__ = ["ServerOptions", "check_bind", "create_app", "serve"]
