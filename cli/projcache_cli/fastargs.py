"""The hot commands' options, in one table, and the argv parser of the fast path.

:data:`COMMANDS` is the one list of the hot commands (``get``, ``search``,
``list artifacts|deployments``, ``show``/``stats``) and their options: the
Typer commands take their option names and defaults from it (:func:`flags`,
:func:`default`), and :func:`parse` reads an argv with it for
:mod:`projcache_cli.fastpath`, so the two parsers cannot drift apart.  Only
the simple spellings are parsed here; anything else raises :class:`Fallback`
and the Typer app parses it (and prints the same error click would).
"""

from __future__ import annotations

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = ["COMMANDS", "Command", "Fallback", "Option", "default", "flags", "parse"]

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


def flags(command: str, name: str) -> tuple[str, ...]:
    """The flags of option ``name`` of ``command`` (its words joined by spaces)."""
    return COMMANDS[tuple(command.split())].options[name].flags


def default(command: str, name: str) -> Any:
    """The default of option ``name`` of ``command``."""
    return COMMANDS[tuple(command.split())].options[name].default


class Fallback(Exception):
    """Not simple enough for the fast path: let the Typer app handle it."""


def parse(
    argv: list[str],
) -> tuple[tuple[str, ...], dict[str, Any], Optional[str]]:
    """Split ``argv`` into (command words, values by name, ``--cache-dir``), or raise Fallback."""
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
            raise Fallback
    rest = argv[position:]
    words = next(
        (key for key in COMMANDS if tuple(rest[: len(key)]) == key),
        None,
    )
    if words is None:
        raise Fallback
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
            raise Fallback  # unknown, repeated (click keeps the last), --, -h, -n5 ...
        option = command.options[name]
        if option.kind == FLAG:
            if eq:
                raise Fallback
            values[name] = True
            continue
        if eq:
            value = inline
        elif index < len(items) and not items[index].startswith("-"):
            value = items[index]
            index += 1
        else:
            raise Fallback  # a missing value, or one click might read as an option
        if option.kind == COUNT:
            try:
                number = int(value)
            except ValueError:
                raise Fallback from None
            if number < 0:
                raise Fallback
            values[name] = number
        else:
            values[name] = value
    if len(positional) != len(command.arguments):
        raise Fallback
    if not values.get("as_json"):
        raise Fallback  # tables need rich (and the Typer app prints them)
    for name, option in command.options.items():
        values.setdefault(name, option.default)
    values.update(zip(command.arguments, positional))
    return words, values, cache_dir
