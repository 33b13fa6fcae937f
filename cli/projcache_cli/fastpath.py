"""A cold-start fast path for the hot read commands, and the table their options come from.

``projcache get KEY --json`` spends most of a cold call importing typer and
click.  :func:`dispatch` parses the argv of the hot commands (``get``,
``search``, ``list artifacts|deployments`` and ``show``/``stats``, each with
``--json``) itself when the arguments are simple, and answers without
importing typer, click or rich.  Anything else (help, ``--version``,
``--debug``, an unknown or repeated option, a value click would refuse, a
table instead of JSON) and any error while answering returns ``None``: the
caller then runs the full Typer app, which parses again and prints the same
output or the same error with the same exit code.  Commands are read-only, so
running one again after a failed fast attempt changes nothing.

There is one command table, :data:`COMMANDS`: the Typer commands take their
option names and defaults from it (:func:`flags`, :func:`default`), so the two
parsers cannot drift apart, and the JSON each command prints is built by the
functions below for both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import orjson

from .output import emit_json_bytes

if TYPE_CHECKING:
    from projcache import ProjectCache

__all__ = [
    "COMMANDS",
    "Command",
    "Option",
    "artifact_payloads",
    "default",
    "deployment_records",
    "dispatch",
    "flags",
    "main",
    "search_document",
    "show_document",
    "source_errors",
    "stream_artifacts",
    "write_stdout",
]

FLAG, TEXT, COUNT = "flag", "text", "count"


class Option:
    """One option of a hot command: its flags, its default and the kind of value it takes.

    ``kind`` is ``"flag"`` (no value), ``"text"`` (a string) or ``"count"`` (an
    integer >= 0, as ``typer.Option(min=0)`` checks it).
    """

    __slots__ = ("default", "flags", "kind")

    def __init__(self, flags: tuple[str, ...], default: Any, kind: str):
        self.flags = flags
        self.default = default
        self.kind = kind


class Command:
    """A hot command: its positional arguments (all required) and its options by name."""

    __slots__ = ("arguments", "options")

    def __init__(self, arguments: tuple[str, ...], options: dict[str, Option]):
        self.arguments = arguments
        self.options = options


_JSON = Option(("--json",), False, FLAG)
_TYPE = Option(("--type", "-t"), None, TEXT)
_COLLECTION = Option(("--collection", "-c"), None, TEXT)
_TAG = Option(("--tag",), None, TEXT)
_STATE = Option(("--state",), None, TEXT)
_OUTDATED = Option(("--outdated",), False, FLAG)

#: The hot commands, by their words on the command line.
COMMANDS: dict[tuple[str, ...], Command] = {
    ("get",): Command(("key",), {"as_json": _JSON}),
    ("search",): Command(
        ("query",),
        {
            "type_": _TYPE,
            "project": Option(("--project", "-p"), None, TEXT),
            "collection": _COLLECTION,
            "tag": _TAG,
            "limit": Option(("--limit", "-n"), 20, COUNT),
            "offset": Option(("--offset",), 0, COUNT),
            "as_json": _JSON,
        },
    ),
    ("list", "artifacts"): Command(
        (),
        {
            "type_": _TYPE,
            "collection": _COLLECTION,
            "tag": _TAG,
            "project": Option(("--project", "-p"), None, TEXT),
            "state_": _STATE,
            "outdated": _OUTDATED,
            "as_json": _JSON,
        },
    ),
    ("list", "deployments"): Command(
        (),
        {
            "project": Option(("--project", "-p"), None, TEXT),
            "state_": _STATE,
            "outdated": _OUTDATED,
            "type_": _TYPE,
            "profile": Option(("--profile",), None, TEXT),
            "as_json": _JSON,
        },
    ),
    ("show",): Command((), {"as_json": _JSON}),
    ("stats",): Command((), {"as_json": _JSON}),
}

_GLOBAL_CACHE_DIR = "--cache-dir"
_CHUNK = 256  # records per write of a streamed listing


def flags(command: str, name: str) -> tuple[str, ...]:
    """The flags of option ``name`` of ``command`` (its words joined by spaces)."""
    return COMMANDS[tuple(command.split())].options[name].flags


def default(command: str, name: str) -> Any:
    """The default of option ``name`` of ``command``."""
    return COMMANDS[tuple(command.split())].options[name].default


# -- the JSON documents (shared with the Typer commands) ------------------------------------


def search_document(
    query: str, total: int, offset: int, page: list[tuple[str, float, bytes]], partial: int = 0
) -> dict[str, Any]:
    """What ``search --json`` prints: the query, the totals, the offset and the hits.

    ``total`` counts the exact matches; the last ``partial`` hits match only some words.
    """
    hits = [{**orjson.loads(payload), "key": key, "score": score} for key, score, payload in page]
    return {"query": query, "total": total, "partial": partial, "offset": offset, "hits": hits}


def artifact_payloads(
    cache: ProjectCache,
    type_: Optional[str],
    collection: Optional[str],
    tag: Optional[str],
    project: Optional[str],
    state: Optional[str],
) -> list[bytes]:
    """The stored JSON of the artifacts ``list artifacts`` shows, in key order."""
    return list(
        cache.iter_artifacts_json(
            type_,
            collection,
            tag,
            project=project,
            state=state,  # type: ignore[arg-type]
        )
    )


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

    The same bytes as ``[`` + :func:`artifact_payloads` joined by ``,`` + ``]``, in
    memory bounded by one chunk plus the deployment filter's keys, so a listing
    of a million records streams.  Filters are checked before the first byte is
    written (``iter_artifacts_json`` checks them at the call); a record failing
    its check midway ends the output early (the error goes to stderr, as for any
    command).
    """
    records = cache.iter_artifacts_json(
        type_,
        collection,
        tag,
        project=project,
        state=state,  # type: ignore[arg-type]
    )
    write(b"[")
    separator = b""
    chunk: list[bytes] = []
    for payload in records:
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


def deployment_records(
    cache: ProjectCache,
    project: Optional[str],
    state: Optional[str],
    type_: Optional[str],
    profile: Optional[str] = None,
) -> list[dict[str, Any]]:
    """The deployments ``list deployments`` shows (as :func:`projcache.streams.deployment_view`)."""
    from projcache.reads import check_type
    from projcache.streams import deployment_view

    check_type(type_)
    payloads = cache.list_deployments_json(project, state, profile=profile)  # type: ignore[arg-type]
    records = [deployment_view(p) for p in payloads]
    if type_ is not None:
        records = [r for r in records if r["type"] == type_]
    return records


def source_errors(collections: Iterable[Any], projects: Iterable[Any]) -> list[dict[str, Any]]:
    """The errors recorded on collections, then projects, as ``show`` lists them."""
    return [
        {"kind": "collection", "name": c.name, "path": e.path, "message": e.message}
        for c in collections
        for e in c.errors
    ] + [
        {"kind": "project", "name": p.name, "path": e.path, "message": e.message}
        for p in projects
        for e in p.errors
    ]


def show_document(cache: ProjectCache) -> dict[str, Any]:
    """What ``show --json`` prints: stats, TTL, stale collections and recorded errors."""
    stats = cache.stats()
    ttl = cache.settings.ttl_seconds
    collections = cache.list_collections()
    projects = cache.list_projects()
    errors = source_errors(collections, projects)
    data = stats.model_dump(mode="json")
    data["hit_rate"] = stats.hit_rate
    data["ttl_seconds"] = ttl
    data["stale_collections"] = sum(1 for c in collections if c.is_stale(ttl))
    data["errors"] = errors
    return data


# -- parsing ---------------------------------------------------------------------------------


class _Fallback(Exception):
    """Not simple enough for the fast path: let the Typer app handle it."""


def _parse(
    argv: list[str],
) -> tuple[tuple[str, ...], dict[str, Any], Optional[str]]:
    """Split ``argv`` into (command words, values by name, ``--cache-dir``), or raise _Fallback."""
    cache_dir: Optional[str] = None
    position = 0
    while position < len(argv) and argv[position].startswith("-"):
        word = argv[position]
        if word == _GLOBAL_CACHE_DIR and position + 1 < len(argv) and cache_dir is None:
            cache_dir = argv[position + 1]
            position += 2
        elif word.startswith(_GLOBAL_CACHE_DIR + "=") and cache_dir is None:
            cache_dir = word[len(_GLOBAL_CACHE_DIR) + 1 :]
            position += 1
        else:
            raise _Fallback
    rest = argv[position:]
    words = next(
        (key for key in COMMANDS if tuple(rest[: len(key)]) == key),
        None,
    )
    if words is None:
        raise _Fallback
    command = COMMANDS[words]
    by_flag = {flag: name for name, option in command.options.items() for flag in option.flags}
    values: dict[str, Any] = {}
    positional: list[str] = []
    items = rest[len(words) :]
    index = 0
    while index < len(items):
        word = items[index]
        index += 1
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        flag, eq, inline = word.partition("=")
        name = by_flag.get(flag)
        if name is None or name in values or (eq and not flag.startswith("--")):
            raise _Fallback  # unknown, repeated (click keeps the last), --, -h, -n5 ...
        option = command.options[name]
        if option.kind == FLAG:
            if eq:
                raise _Fallback
            values[name] = True
            continue
        if eq:
            value = inline
        elif index < len(items) and not items[index].startswith("-"):
            value = items[index]
            index += 1
        else:
            raise _Fallback  # a missing value, or one click might read as an option
        if option.kind == COUNT:
            try:
                number = int(value)
            except ValueError:
                raise _Fallback from None
            if number < 0:
                raise _Fallback
            values[name] = number
        else:
            values[name] = value
    if len(positional) != len(command.arguments):
        raise _Fallback
    if not values.get("as_json"):
        raise _Fallback  # tables need rich (and the Typer app prints them)
    for name, option in command.options.items():
        values.setdefault(name, option.default)
    values.update(zip(command.arguments, positional))
    return words, values, cache_dir


# -- running ---------------------------------------------------------------------------------


def _configure_logging() -> None:
    # What the Typer app's root callback does without --debug: one `warning: …` style.
    from .output import configure_logging

    configure_logging(False)


def _answer(words: tuple[str, ...], values: dict[str, Any], cache: ProjectCache) -> bytes:
    """The bytes the command prints on stdout, or raise (the Typer app then reports it)."""
    if words == ("get",):
        payload = cache.get_artifact_json(values["key"])
        if payload is None:
            raise _Fallback  # the Typer app prints the not-found error and its exit code
        return payload + b"\n"
    if words == ("search",):
        query = values["query"]
        if not query.strip():
            raise _Fallback
        result = cache.search_page_json(
            query,
            values["type_"],
            values["project"],
            values["limit"],
            values["offset"],
            collection=values["collection"],
            tag=values["tag"],
        )
        document = search_document(
            query, result.total, values["offset"], result.hits, result.partial
        )
        return _dumps(document)
    if words == ("list", "deployments"):
        state = "outdated" if values["outdated"] else values["state_"]
        return _dumps(
            deployment_records(cache, values["project"], state, values["type_"], values["profile"])
        )
    return _dumps(show_document(cache))


def _stream_list(values: dict[str, Any], cache: ProjectCache) -> Optional[int]:
    """``list artifacts --json``, streamed; an error before the first byte falls back."""
    from projcache.errors import ProjcacheError

    started = False

    def write(data: bytes) -> None:
        nonlocal started
        started = True
        write_stdout(data)

    state = "outdated" if values["outdated"] else values["state_"]
    try:
        stream_artifacts(
            cache,
            values["type_"],
            values["collection"],
            values["tag"],
            values["project"],
            state,
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
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS) + b"\n"


def dispatch(argv: list[str]) -> Optional[int]:
    """Answer ``argv`` on the fast path and return the exit code, or ``None`` to fall back.

    Nothing is printed unless the whole answer is ready, so a fallback never
    repeats output.
    """
    try:
        words, values, cache_dir = _parse(argv)
    except _Fallback:
        return None
    if cache_dir is None:
        cache_dir = os.environ.get("PROJCACHE_DIR") or None  # click ignores an empty envvar
    _configure_logging()
    from projcache import ProjectCache

    try:
        cache = ProjectCache.open(
            Path(cache_dir) if cache_dir is not None else None, readonly=True, fallback=True
        )
    except Exception:
        return None
    try:
        if cache.is_direct:
            return None  # the Typer app prints the source-direct warning
        if words == ("list", "artifacts"):
            return _stream_list(values, cache)
        data = _answer(words, values, cache)
    except Exception:
        return None
    finally:
        cache.close()
    emit_json_bytes([data[:-1]], array=False)
    return 0


def main() -> None:
    """Console-script entry point: the fast path, else the full Typer app."""
    code = dispatch(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from .root import main as typer_main

    typer_main()
