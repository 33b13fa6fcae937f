"""Shell completion of artifact keys, project names and collection names from the cache.

Typer's ``--install-completion``/``--show-completion`` set the shell up; the
shell then calls ``projcache`` for the words, which land here.  Each
completion opens the cache read-only (no lock is held beyond the read, nothing
is created) and gives up silently on any problem: a completion must never
print an error into the user's command line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import click

if TYPE_CHECKING:
    from projcache import ProjectCache

__all__ = ["complete_artifact", "complete_collection", "complete_project"]

# More would scroll the shell's list away; the user types a few more letters instead.
LIMIT = 200


def _cache_dir(ctx: click.Context) -> Optional[Path]:
    # The root callback does not run while completing: read the option off the root context.
    value = ctx.find_root().params.get("cache_dir")
    return Path(value) if value else None


@contextmanager
def _reading(ctx: click.Context) -> Iterator[Optional[ProjectCache]]:
    from projcache import ProjectCache

    logging.disable(logging.CRITICAL)  # nothing may reach the terminal while completing
    try:
        cache = ProjectCache.open(_cache_dir(ctx), readonly=True)
    except Exception:  # any problem: no completions rather than noise in the shell
        yield None
        return
    finally:
        logging.disable(logging.NOTSET)
    try:
        yield cache
    finally:
        cache.close()


def _complete(
    ctx: click.Context, words: Callable[[ProjectCache], Iterator[str]], incomplete: str
) -> list[str]:
    with _reading(ctx) as cache:
        if cache is None:
            return []
        try:
            found = sorted({w for w in words(cache) if w.startswith(incomplete)})
        except Exception:  # a damaged record must not break the shell's completion
            return []
    return found[:LIMIT]


def complete_artifact(ctx: click.Context, incomplete: str) -> list[str]:
    """Artifact keys (and unique-enough bare names) starting with ``incomplete``."""
    import orjson

    def words(cache: ProjectCache) -> Iterator[str]:
        for payload in cache.iter_artifacts_json():
            record = orjson.loads(payload)
            yield record["key"]
            yield record["name"]

    return _complete(ctx, words, incomplete)


def complete_project(ctx: click.Context, incomplete: str) -> list[str]:
    """Project names starting with ``incomplete``."""
    return _complete(ctx, lambda cache: (p.name for p in cache.list_projects()), incomplete)


def complete_collection(ctx: click.Context, incomplete: str) -> list[str]:
    """Collection names starting with ``incomplete``."""
    return _complete(ctx, lambda cache: (c.name for c in cache.list_collections()), incomplete)
