"""A cold-start fast path for the hot read commands.

``projcache get KEY --json`` spends most of a cold call importing typer and
click.  :func:`dispatch` parses the argv of the hot commands (``get``,
``search``, ``list artifacts|deployments`` and ``show``/``stats``, each with
``--json``) itself when the arguments are simple (:mod:`projcache_cli.fastargs`),
and answers without importing typer, click or rich.  Anything else (help,
``--version``, ``--debug``, an unknown or repeated option, a value click would
refuse, a table instead of JSON) and any error while answering returns
``None``: the caller then runs the full Typer app, which parses again and
prints the same output or the same error with the same exit code.  Commands
are read-only, so running one again after a failed fast attempt changes
nothing.

The JSON each command prints is the facade's (:mod:`projcache.views`: the
same the HTTP API sends), asked for by the functions below for both paths.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson

from .fastargs import Fallback, parse

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from projcache import ProjectCache

__all__ = [
    "deployment_rows",
    "dispatch",
    "main",
    "search_json",
    "stream_artifacts",
    "stream_deployments",
    "write_stdout",
]

_CHUNK = 256  # records per write of a streamed listing


def search_json(cache: ProjectCache, values: dict[str, Any]) -> bytes:
    """What ``search --json`` prints (:meth:`ProjectCache.search_view_json`), from its options."""
    return cache.search_view_json(
        values["query"],
        values["type_"],
        values["project"],
        values["limit"],
        values["offset"],
        collection=values["collection"],
        tag=values["tag"],
    )


def deployment_rows(cache: ProjectCache, values: dict[str, Any]) -> list[dict[str, Any]]:
    """What ``list deployments`` shows (:meth:`ProjectCache.deployment_rows`), from its options."""
    state: Any = "outdated" if values["outdated"] else values["state_"]
    return cache.deployment_rows(
        values["project"],
        state,  # checked by the facade (a bad one is InvalidRecordError)
        type=values["type_"],
        profile=values["profile"],
    )


def stream_deployments(
    cache: ProjectCache, values: dict[str, Any], write: Callable[[bytes], None]
) -> None:
    """Write what ``list deployments --json`` prints, a chunk of rows at a time.

    The JSON array of :meth:`ProjectCache.deployment_rows` (the same bytes as
    dumping the whole list), from :meth:`ProjectCache.iter_deployment_rows_json`:
    memory is a chunk, whatever the number of rows.  Filters are checked
    before the first byte.
    """
    state: Any = "outdated" if values["outdated"] else values["state_"]
    rows = cache.iter_deployment_rows_json(
        values["project"], state, type=values["type_"], profile=values["profile"]
    )
    _write_array(rows, write)


def stream_artifacts(
    cache: ProjectCache,
    type_: Optional[str],
    collection: Optional[str],
    tag: Optional[str],
    project: Optional[str],
    state: Optional[str],
    write: Callable[[bytes], None],
) -> None:
    """Write what ``list artifacts --json`` prints, a chunk of records at a time.

    A JSON array of the stored records (``iter_artifacts_json``), in memory
    bounded by one chunk plus the deployment filter's keys, so a listing of a
    million records streams.  Filters are checked before the first byte is
    written (``iter_artifacts_json`` checks them at the call); a record failing
    its check midway ends the output early (the error goes to stderr, as for
    any command).
    """
    records = cache.iter_artifacts_json(
        type_,
        collection,
        tag,
        project=project,
        state=state,  # type: ignore[arg-type]
    )
    _write_array(records, write)


def _write_array(items: Iterator[bytes], write: Callable[[bytes], None]) -> None:
    """Write ``items`` (JSON documents) as one JSON array and a newline, a chunk at a time."""
    write(b"[")
    separator = b""
    chunk: list[bytes] = []
    for payload in items:
        chunk.append(payload)
        if len(chunk) >= _CHUNK:
            write(separator + b",".join(chunk))
            separator, chunk = b",", []
    if chunk:
        write(separator + b",".join(chunk))
    write(b"]\n")


def write_stdout(data: bytes) -> None:
    """Write bytes to stdout as they are (a text-only stream gets them decoded)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        buffer.write(data)
    else:  # a test runner's capture
        sys.stdout.write(data.decode("utf-8"))


def _configure_logging() -> None:
    # What the Typer app's root callback does without --debug: one `warning: …` style.  Run
    # only when the library first logs (projcache.logs): a quiet call never imports logging.
    from .output import configure_logging

    configure_logging(False)


def _answer(words: tuple[str, ...], values: dict[str, Any], cache: ProjectCache) -> bytes:
    """The bytes the command prints on stdout, or raise (the Typer app then reports it)."""
    if words == ("get",):
        payload = cache.get_artifact_json(values["key"])
        if payload is None:
            raise Fallback  # the Typer app prints the not-found error and its exit code
        return payload
    if words == ("search",):
        if not values["query"].strip():
            raise Fallback
        return search_json(cache, values)
    return _dumps(cache.status_view())


def _stream_list(
    words: tuple[str, ...], values: dict[str, Any], cache: ProjectCache
) -> Optional[int]:
    """``list artifacts|deployments --json``, streamed; an error before the first byte falls
    back."""
    from projcache.errors import ProjcacheError

    started = False

    def write(data: bytes) -> None:
        nonlocal started
        started = True
        write_stdout(data)

    try:
        if words == ("list", "deployments"):
            stream_deployments(cache, values, write)
        else:
            stream_artifacts(
                cache,
                values["type_"],
                values["collection"],
                values["tag"],
                values["project"],
                "outdated" if values["outdated"] else values["state_"],
                write,
            )
    except ProjcacheError as exc:
        if not started:
            return None  # the Typer app reports it, identically
        sys.stdout.flush()
        # What the Typer app's error handler prints (cli/projcache_cli/errors.py).
        sys.stderr.write(f"error: {exc}\n" + (f"hint: {exc.hint}\n" if exc.hint else ""))
        return int(exc.exit_code)
    sys.stdout.flush()
    return 0


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


def dispatch(argv: list[str]) -> Optional[int]:
    """Answer ``argv`` on the fast path and return the exit code, or ``None`` to fall back.

    Nothing is printed unless the whole answer is ready, so a fallback never
    repeats output.
    """
    try:
        words, values, cache_dir = parse(argv)
    except Fallback:
        return None
    if cache_dir is None:
        cache_dir = os.environ.get("PROJCACHE_DIR") or None  # click ignores an empty envvar
    from projcache.logs import on_first_use

    cancel = on_first_use(_configure_logging)
    try:
        return _run(words, values, cache_dir)
    finally:
        # Answered, or left to the Typer app, which configures logging itself (maybe with
        # --debug): a hook left behind would undo that in a process that runs both.
        cancel()


def _run(words: tuple[str, ...], values: dict[str, Any], cache_dir: Optional[str]) -> Optional[int]:
    """Open the cache and answer; ``None`` to fall back (nothing printed then)."""
    from projcache import ProjectCache

    try:
        # No source-direct fallback here: a cache that cannot be used (or is disabled) raises,
        # and the Typer app answers from the sources with its warning and exit code.
        cache = ProjectCache.open(Path(cache_dir) if cache_dir is not None else None, readonly=True)
    except Exception:
        return None
    try:
        if cache.is_direct:
            return None  # the Typer app prints the source-direct warning
        if words[0] == "list":
            return _stream_list(words, values, cache)
        data = _answer(words, values, cache)
    except Exception:
        return None
    finally:
        cache.close()
    write_stdout(data + b"\n")
    sys.stdout.flush()
    return 0


def _exit(code: int) -> None:
    """End the process with ``code``, without the interpreter's teardown when nothing needs it.

    Tearing the interpreter down (every module cleared, a last garbage collection, each
    object freed) costs a cold call ~23M instructions (~5 ms), more than its answer.  When
    the answer is written and flushed (the cache is closed by then), no thread can be
    running (``threading`` never imported) and no exit handler is registered (``atexit``:
    a coverage run, ``logging`` once imported, a host program), nothing is lost without it:
    ``os._exit``.  Otherwise, or where ``atexit`` cannot tell, the usual ``sys.exit``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    import atexit

    handlers = getattr(atexit, "_ncallbacks", None)  # CPython's count of exit handlers
    if handlers is not None and handlers() == 0 and "threading" not in sys.modules:
        os._exit(code)
    sys.exit(code)


def main() -> None:
    """Console-script entry point: the fast path, else the full Typer app.

    A fast answer ends the process at once (:func:`_exit`): its output and exit code are
    the Typer app's, without the interpreter's teardown where nothing needs it.
    """
    try:
        code = dispatch(sys.argv[1:])
        if code is not None:
            _exit(code)
    except BrokenPipeError:
        # The reader went away (`| head -c1`): quietly exit 1, as the Typer app (click)
        # does.  stdout now points at /dev/null, so the interpreter's last flush of what
        # is still buffered has nowhere to fail and prints no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    from .root import main as typer_main

    typer_main()
