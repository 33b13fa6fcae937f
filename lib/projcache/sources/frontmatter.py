"""YAML front matter of ``SKILL.md``, command and agent files (PyYAML's safe loader).

The front matter is the block between a first line ``---`` and the next
``---`` line.  Aliases of lists and mappings are refused: an "alias bomb" (a few lines that expand
to billions of nodes) is harmless to PyYAML, which shares the nodes, but not
to anything that later walks or serialises the result.  Aliases of scalars
are allowed (they are common and cheap) but the *decoded* front matter is
bounded: at most :data:`MAX_FRONT_MATTER_SIZE` characters of text once every
alias is expanded (one 64 KiB string aliased 1,600 times is refused, not
stored as a 105 MB record).  Values are made JSON-able here, since they are
stored as JSON.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import SourceFileError, SourceTooLargeError

__all__ = [
    "MAX_FRONT_MATTER_SIZE",
    "MarkdownDoc",
    "first_paragraph",
    "parse_markdown",
    "to_jsonable",
]

_FENCE = re.compile(r"^---[ \t]*$")
_MAX_DEPTH = 32

#: Most characters of text (keys and values, aliases expanded) one decoded
#: front matter may hold.  Real ones are well under 4 KiB.
MAX_FRONT_MATTER_SIZE = 256 * 1024
# What a number, boolean, null or empty container counts for against that limit.
_SCALAR_COST = 8


class _Budget:
    """What is left of a size limit while a value is converted."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise _OverBudget(self.limit)


class _OverBudget(ValueError):
    """The decoded value is larger than its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"expands to more than {limit} characters once aliases are expanded")


# libyaml's parser when PyYAML has it (10x faster); the pure-Python one otherwise.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class MarkdownDoc:
    """A Markdown file split into its front matter (a mapping) and its body."""

    front_matter: dict[str, Any] = field(default_factory=dict)
    body: str = ""


def to_jsonable(
    value: Any, depth: int = 0, seen: set[int] | None = None, *, limit: int | None = None
) -> Any:
    """Turn parsed YAML/TOML into what JSON holds (dates become ISO text, keys text).

    PyYAML builds an aliased node once and shares it, so a container met twice
    means an alias: refused, because expanding it is how an alias bomb explodes.
    With ``limit``, the result may hold at most that many characters of text
    (every occurrence of an aliased string counts).

    Raises:
        ValueError: aliases, nesting deeper than 32 levels, or more than ``limit``.
    """
    return _convert(value, depth, seen, None if limit is None else _Budget(limit))


def _convert(value: Any, depth: int, seen: set[int] | None, budget: _Budget | None) -> Any:
    if type(value) is str:  # the usual value: one identity test, not a chain of isinstance
        if budget is not None:
            budget.spend(len(value))
        if depth > _MAX_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
        return value
    if budget is not None:
        budget.spend(len(value) if isinstance(value, (str, bytes)) else _SCALAR_COST)
    if depth > _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, (dict, list, tuple, set)):
        seen = set() if seen is None else seen
        if id(value) in seen:
            raise ValueError("aliases (*name) are not allowed")
        seen.add(id(value))
        # A text child is taken as it is here, without a call: what _convert would do
        # with it (spend its length; no depth error, since depth + 1 <= _MAX_DEPTH).
        # A front matter is mostly text: this halved the conversion of a typical one.
        inline = depth < _MAX_DEPTH
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = k if type(k) is str else str(k)
                if budget is not None:
                    budget.spend(len(key))
                if inline and type(v) is str:
                    if budget is not None:
                        budget.spend(len(v))
                    out[key] = v
                else:
                    out[key] = _convert(v, depth + 1, seen, budget)
            return out
        items = sorted(value, key=repr) if isinstance(value, set) else value
        found: list[Any] = []
        for v in items:
            if inline and type(v) is str:
                if budget is not None:
                    budget.spend(len(v))
                found.append(v)
            else:
                found.append(_convert(v, depth + 1, seen, budget))
        return found
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        # orjson holds 64-bit integers only; larger ones are kept as text.
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def parse_markdown(text: str, path: str) -> MarkdownDoc:
    """Split ``text`` into front matter and body.

    A file without a front-matter block is all body.  An unclosed block, bad
    YAML, aliases, or a block that is not a mapping raise.

    Raises:
        SourceFileError: naming ``path``, the line and what is wrong.
    """
    text = text.lstrip("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or not _FENCE.match(lines[0].rstrip("\r\n")):
        return MarkdownDoc({}, text)
    for end in range(1, len(lines)):
        if _FENCE.match(lines[end].rstrip("\r\n")):
            break
    else:
        raise SourceFileError(f"{path}: front matter starts with '---' but never ends", path=path)
    block = "".join(lines[1:end])
    try:
        data = yaml.load(block, Loader=_LOADER)  # a safe loader: no arbitrary objects
        data = to_jsonable(data, limit=MAX_FRONT_MATTER_SIZE)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SourceFileError(
            f"{path}: invalid YAML front matter{where}: {problem}", path=path
        ) from exc
    except RecursionError as exc:
        raise SourceFileError(f"{path}: front matter is nested too deeply", path=path) from exc
    except _OverBudget as exc:
        raise SourceTooLargeError(
            f"{path}: front matter {exc}; not stored",
            path=path,
            hint="Rewrite the front matter without aliases that repeat large text; "
            "it describes the artifact and should be a few KiB.",
        ) from exc
    except ValueError as exc:
        raise SourceFileError(f"{path}: front matter: {exc}", path=path) from exc
    except Exception as exc:
        # PyYAML's constructors raise plain KeyError/AttributeError/IndexError on
        # some bad explicit tags (``!!bool maybe``, an empty ``!!int``).
        raise SourceFileError(
            f"{path}: invalid YAML front matter: {type(exc).__name__}: {exc}", path=path
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SourceFileError(
            f"{path}: front matter must be a mapping of keys to values, not {type(data).__name__}",
            path=path,
        )
    return MarkdownDoc(data, "".join(lines[end + 1 :]))


def first_paragraph(body: str, limit: int = 500) -> str:
    """Return the first paragraph of prose in a Markdown body (headings and fences skipped)."""
    paragraph: list[str] = []
    in_fence = False
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            in_fence = not in_fence
            if paragraph:
                break
            continue
        if in_fence:
            continue
        if not line:
            if paragraph:
                break
            continue
        if line.startswith("#") or line.startswith(("<!--", "---", "===")):
            if paragraph:
                break
            continue
        paragraph.append(line)
    text = " ".join(paragraph)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
