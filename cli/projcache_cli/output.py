"""Output helpers: JSON for machines, rich tables for people (rich imported only when used).

Text that comes from sources (names, descriptions, paths, error messages) is
printed through :func:`inert`: a name holding ``ESC [ 2 J``, a BEL, a carriage
return, a newline or U+202E (right-to-left override) must show as visible
escapes, not clear the screen, hide text, forge a table row or reverse what
follows.  Tables build their cells as rich ``Text``, so ``[bold]`` in a name is
printed as written, not read as markup.  ``--json`` output is not escaped: it
keeps the exact strings (JSON escapes the C0 controls itself).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Optional

import orjson

__all__ = [
    "CliLogFormatter",
    "CliLogHandler",
    "InertFormatter",
    "ago",
    "configure_logging",
    "emit_json",
    "emit_json_bytes",
    "emit_table",
    "human_bytes",
    "inert",
    "is_terminal",
    "output_width",
]

# Every character a terminal may act on or that changes how others are shown:
# Unicode categories Cc (C0, DEL, C1), Cf (bidi overrides and isolates,
# zero-width characters, soft hyphen, BOM...), Zl and Zp (line and paragraph
# separators) and Cs (lone surrogates, from undecodable file names).  The class
# is spelled out (computed from unicodedata) so that importing this module
# does not scan the Unicode table.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    r"\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    r"\U000e0001\U000e0020-\U000e007f]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def inert(text: object) -> str:
    """``text`` with every control, bidi and invisible format character shown as an escape.

    ``"evil\x1b[2J"`` becomes ``"evil\\x1b[2J"``, a newline ``"\\n"``, U+202E
    ``"\\u202e"``.  Plain text (the usual case) is returned as it is, after one
    regex search.  Use it for every piece of text from sources printed for people.
    """
    value = text if isinstance(text, str) else str(text)
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(_escape, value)


class CliLogFormatter(logging.Formatter):
    """Library log records as the CLI's own lines: ``warning: …``, ``error: …``.

    With ``--debug`` the logger name and level stay visible instead.
    """

    def __init__(self, debug: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s" if debug else None)
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as ``<level>: <message>`` unless debugging."""
        if self.debug:
            return InertFormatter(self._fmt).format(record)
        # Log lines quote source text (a bad file's name, a YAML error): made inert.
        return f"{record.levelname.lower()}: {inert(record.getMessage())}"


class CliLogHandler(logging.Handler):
    """Write log records to the stderr current at the time (a test runner may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Print the formatted record on stderr."""
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # logging must never break the command
            self.handleError(record)


# Loggers whose records the commands print themselves (each bad source, each finding):
# without --debug the warning would say the same thing a second time.
_QUIET = ("sources.tracker", "verify", "direct", "recovery", "refresh")


def configure_logging(debug: bool) -> None:
    """Send library log records to stderr in the CLI's ``warning: …`` style (one style)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, CliLogHandler)), None)
    if handler is None:
        handler = CliLogHandler()
        root.addHandler(handler)
    handler.setFormatter(CliLogFormatter(debug))
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in _QUIET:
        logging.getLogger(f"projcache.{name}").setLevel(logging.NOTSET if debug else logging.ERROR)


def is_terminal(stream: Any = None) -> bool:
    """True when ``stream`` (default stdout) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class InertFormatter(logging.Formatter):
    """A log formatter that prints each message :func:`inert` (log lines quote source text)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Format ``record`` with its message escaped (a traceback after it is left as is)."""
        record.message = inert(record.message)
        return super().formatMessage(record)


def _write(data: bytes) -> None:
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:  # a text-only stream (e.g. a test runner's capture)
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()


def emit_json(data: Any) -> None:
    """Print ``data`` as one line of JSON."""
    _write(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS) + b"\n")


def emit_json_bytes(payloads: Iterable[bytes], *, array: bool) -> None:
    """Print stored JSON documents as they are: one document, or an array of them."""
    if array:
        _write(b"[" + b",".join(payloads) + b"]\n")
    else:
        for payload in payloads:
            _write(payload + b"\n")


def output_width() -> int:
    """Columns available: ``$COLUMNS``, else the terminal's, else 250 when piped.

    Piped output is not wrapped at 80 columns: each row stays on one line for grep.
    """
    import os
    import shutil

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if is_terminal():
        return shutil.get_terminal_size().columns
    return 250


def emit_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: Optional[str] = None,
    optional: Sequence[str] = (),
    flexible: Optional[str] = None,
) -> None:
    """Print a table that shows what the data holds and what the width allows.

    Columns named in ``optional`` are left out when no row has a value in them.
    The ``flexible`` column (e.g. a description) is shown only when at least
    20 characters of it fit next to the others, and is cut with "…" to the width.

    Cells are made :func:`inert` and added as plain ``Text`` (never read as rich
    markup), so each record stays one row whatever its text holds.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    keep = [
        i for i, name in enumerate(columns) if name not in optional or any(row[i] for row in cells)
    ]
    width = output_width()
    room = width
    if flexible is not None and flexible in columns:
        index = columns.index(flexible)
        others = sum(
            max([len(columns[i]), *(len(row[i]) for row in cells)]) + 3 for i in keep if i != index
        )
        if index in keep and (width - others < 20 or not any(row[index] for row in cells)):
            keep.remove(index)
        room = width - others
    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
    for i in keep:
        if columns[i] == flexible:
            table.add_column(columns[i], overflow="ellipsis", no_wrap=True, max_width=room)
        elif i == keep[0]:
            # The first column names the row (a key, a project): never wrapped, so it can be
            # copied and grepped; the other columns give way on a narrow terminal.
            table.add_column(columns[i], no_wrap=True)
        else:
            table.add_column(columns[i], overflow="fold")
    for row in cells:
        table.add_row(*(Text(inert(row[i])) for i in keep))
    Console(width=width).print(table)


def ago(when: Optional[datetime | str], now: Optional[datetime] = None) -> str:
    """``"42s ago"``, ``"5m ago"``, ``"3h ago"``, ``"2d ago"`` or ``"never"``.

    ``when`` may be an ISO 8601 string, as the JSON views carry it.
    """
    if when is None:
        return "never"
    if isinstance(when, str):  # fromisoformat reads "Z" only from Python 3.11
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def human_bytes(count: int) -> str:
    """``"12.0 KiB"`` style sizes."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - loop always returns
