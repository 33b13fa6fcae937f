"""Output helpers: JSON for machines, rich tables for people (rich imported only when used)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Optional

import orjson

__all__ = ["ago", "emit_json", "emit_json_bytes", "emit_table", "human_bytes", "is_terminal"]


def is_terminal(stream: Any = None) -> bool:
    """True when ``stream`` (default stdout) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


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


def emit_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: Optional[str] = None
) -> None:
    """Print a table (rows not wrapped when not on a terminal, so it pipes well)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    # Piped output is not wrapped at 80 columns: each row stays on one line for grep.
    Console(width=None if is_terminal() else 250).print(table)


def ago(when: Optional[datetime], now: Optional[datetime] = None) -> str:
    """``"42s ago"``, ``"5m ago"``, ``"3h ago"``, ``"2d ago"`` or ``"never"``."""
    if when is None:
        return "never"
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
