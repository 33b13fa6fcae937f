"""Text from sources printed by the CLI is inert (issue 12, item 4).

Names and descriptions can hold ESC sequences, BEL, CR, newlines, U+202E or rich
markup: ``list``, ``search``, ``show``, ``get`` and the error lines print them as
visible escapes, one row per record, and ``--json`` keeps the exact strings.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from clirun import runner
from projcache import ProjectCache
from projcache.config import Settings
from projcache_cli import app
from projcache_cli.output import InertFormatter, inert

# Clears the screen, rings the bell, returns to column 0, starts a new line,
# reverses what follows, and asks rich for bold text.
HOSTILE_NAME = "zz\x1b[2J\x07evil\r\nfake-row\u202etxt.exe[bold]x"
HOSTILE_DESCRIPTION = "quokka \x1b]0;pwned\x07 title\x9b31m\u2066hidden\u2069 \x00end\rover"
# What a terminal could act on: C0 (but the plain newline ending a line), DEL, C1, bidi.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def hostile(cache_settings: Settings, make_artifact: Callable[..., dict[str, Any]]) -> Path:
    """A closed cache holding one ordinary artifact and one with hostile name and text."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts(
            [
                make_artifact("plain", description="A quokka helper"),
                make_artifact(
                    HOSTILE_NAME,
                    description=HOSTILE_DESCRIPTION,
                    title="T\x1b[31mred",
                    tags=["t\x1bag"],
                ),
            ]
        )
    return cache_settings.cache_dir


def run(cache_dir: Path, *args: str) -> Any:
    """Invoke the CLI on ``cache_dir`` (250 columns: tables cut descriptions to the width)."""
    return runner.invoke(app, ["--cache-dir", str(cache_dir), *args], env={"COLUMNS": "250"})


def assert_inert(text: str) -> None:
    """No control, C1 or bidi character reaches the terminal; escapes show instead."""
    assert RAW_CONTROL.search(text) is None, repr(text)


class TestInert:
    """The escaping helper itself."""

    @pytest.mark.parametrize(
        ("raw", "shown"),
        [
            ("plain text", "plain text"),
            ("a\x1b[2Jb", "a\\x1b[2Jb"),
            ("bell\x07", "bell\\x07"),
            ("cr\rlf\ntab\t", "cr\\rlf\\ntab\\t"),
            ("rlo\u202ecba", "rlo\\u202ecba"),
            ("c1\x9bx", "c1\\x9bx"),
            ("zw\u200bj", "zw\\u200bj"),
            ("tag\U000e0041", "tag\\U000e0041"),
            ("caf\u00e9 \U0001f600 [bold]", "caf\u00e9 \U0001f600 [bold]"),
        ],
    )
    def test_escapes(self, raw: str, shown: str) -> None:
        """Controls and invisible format characters become escapes; other text is kept."""
        assert inert(raw) == shown

    def test_log_lines_are_inert(self) -> None:
        """The CLI's log formatter escapes the message (source errors are logged with --debug)."""
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "bad %s", ("\x1b[2J",), None)
        assert InertFormatter("%(message)s").format(record) == "bad \\x1b[2J"


class TestCommands:
    """Each command that prints source text, against a cache holding hostile records."""

    @pytest.mark.parametrize(
        ("args", "escaped"),
        [
            # list: escapes visible, ``[bold]`` printed as written
            (["list", "artifacts"], "\\x1b[2J\\x07evil\\r\\nfake-row\\u202etxt.exe[bold]x"),
            # search: the description shown escaped
            (["search", "quokka"], "\\x1b]0;pwned"),
        ],
        ids=["list-artifacts", "search"],
    )
    def test_one_row_per_record(self, hostile: Path, args: list[str], escaped: str) -> None:
        """A table prints one row per record, with the hostile text escaped."""
        result = run(hostile, *args)
        assert result.exit_code == 0, result.output
        assert_inert(result.stdout)
        rows = [line for line in result.stdout.splitlines() if "default/skill/" in line]
        assert len(rows) == 2
        assert escaped in result.stdout

    def test_get(self, hostile: Path) -> None:
        """``get`` prints every field escaped."""
        result = run(hostile, "get", f"default/skill/{HOSTILE_NAME}")
        assert result.exit_code == 0, result.output
        assert_inert(result.stdout)
        assert "T\\x1b[31mred" in result.stdout
        assert "\\u2066hidden\\u2069" in result.stdout
        assert "t\\x1bag" in result.stdout

    @pytest.mark.parametrize(
        "args",
        [
            ("list", "artifacts", "--json"),
            ("search", "quokka", "--json"),
            ("get", f"default/skill/{HOSTILE_NAME}", "--json"),
        ],
    )
    def test_json_keeps_the_exact_strings(self, hostile: Path, args: tuple[str, ...]) -> None:
        """``--json`` output decodes to the very strings stored (JSON escapes controls itself)."""
        result = run(hostile, *args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        text = json.dumps(json.loads(result.stdout), ensure_ascii=False)
        assert json.dumps(HOSTILE_NAME, ensure_ascii=False)[1:-1] in text

    def test_show_and_refresh_errors(self, cache_settings: Settings, tmp_path: Path) -> None:
        """A source error quoting a hostile file name prints escaped in ``refresh`` and ``show``."""
        collection = tmp_path / "col"
        command = collection / "commands" / "evil\x1b[2J\u202e.md"
        command.parent.mkdir(parents=True)
        command.write_text("---\nname: [unclosed\n---\n", encoding="utf-8")
        result = run(cache_settings.cache_dir, "refresh", "--collection", str(collection))
        assert result.exit_code == 1, result.output
        assert_inert(result.stdout + result.stderr)
        assert "evil\\x1b[2J\\u202e.md" in result.stderr
        result = run(cache_settings.cache_dir, "show")
        assert result.exit_code == 0, result.output
        assert_inert(result.stdout)
        assert "evil\\x1b[2J\\u202e.md" in result.stdout
