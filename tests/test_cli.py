"""The projcache command line: exit codes first, then stdout and stderr apart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import lmdb
import pytest
import typer

import projcache
from clirun import runner
from projcache import ProjectCache
from projcache.config import Settings
from projcache_cli import app

Factory = Callable[..., dict[str, Any]]


@pytest.fixture
def seeded(cache_settings: Settings, make_artifact: Factory) -> Path:
    """A closed cache with two artifacts; returns its directory."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact("pdf"), make_artifact("docx")])
    return cache_settings.cache_dir


def _break_index(cache_dir: Path) -> None:
    from pyroaring import BitMap

    env = lmdb.open(str(cache_dir), max_dbs=32)
    db = env.open_db(b"search-tokens")
    with env.begin(write=True) as txn:
        txn.put(b"ghost\x00d\x00\x00", b"\x02" + BitMap([7]).serialize(), db=db)
        txn.put(b"ghost\x00*\x00\x00", b"\x02" + BitMap([7]).serialize(), db=db)  # all-fields
    env.close()


def test_version_prints_the_installed_version() -> None:
    """--version prints the package version and exits 0."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"projcache {projcache.__version__}"


def test_help_lists_every_command_with_help_text() -> None:
    """Every registered command has help text shown in --help."""
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in app.registered_commands:
        assert command.callback is not None and command.callback.__doc__
        assert (command.name or command.callback.__name__) in result.stdout


def test_verify_clean_cache_exits_zero(seeded: Path) -> None:
    """verify on a healthy cache prints what it checked and 'ok', exit 0."""
    result = runner.invoke(app, ["--cache-dir", str(seeded), "verify"])
    assert result.exit_code == 0, result.output
    assert "artifacts 2" in result.stdout
    assert result.stdout.strip().endswith("ok")
    assert result.stderr == ""


def test_verify_with_findings_exits_one_and_repair_fixes(seeded: Path) -> None:
    """A damaged index gives exit 1 with the finding; --repair fixes it and exits 0."""
    _break_index(seeded)
    result = runner.invoke(app, ["--cache-dir", str(seeded), "verify", "--deep", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["findings"] == [
        {
            "kind": "index",
            "db": "search-tokens",
            "key": "ghost (field d)",
            "message": "dangling id 7",
            "repairable": True,
        }
    ]
    repaired = runner.invoke(app, ["--cache-dir", str(seeded), "verify", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "repaired 1 finding(s)" in repaired.stdout
    again = runner.invoke(app, ["--cache-dir", str(seeded), "verify"])
    assert again.exit_code == 0


def test_missing_cache_is_a_one_line_error_with_hint(tmp_path: Path) -> None:
    """An error prints 'error: ...' and a hint on stderr, no traceback, and its exit code."""
    result = runner.invoke(app, ["--cache-dir", str(tmp_path / "none"), "verify"])
    assert result.exit_code == 5
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"error: no cache in {tmp_path / 'none'}"
    assert lines[1].startswith("hint: Run `projcache refresh`")
    assert "Traceback" not in result.stderr


def test_unknown_option_is_a_usage_error() -> None:
    """Bad usage exits 2."""
    result = runner.invoke(app, ["verify", "--frobnicate"])
    assert result.exit_code == 2


def test_app_mounts_in_a_host_cli(seeded: Path) -> None:
    """A host CLI that adds the app as 'cache' gets 'cache verify' with the same behaviour."""
    host = typer.Typer()

    @host.command()
    def hello() -> None:
        """A command of the host itself."""

    host.add_typer(app, name="cache")
    result = runner.invoke(host, ["cache", "--cache-dir", str(seeded), "verify"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("ok")


def test_installed_script_runs_in_a_subprocess(seeded: Path) -> None:
    """The console script `projcache` is installed and answers like the app."""
    script = Path(sys.executable).parent / "projcache"
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert version.returncode == 0
    assert version.stdout.strip() == f"projcache {projcache.__version__}"
    verify = subprocess.run(
        [str(script), "--cache-dir", str(seeded), "verify", "--json"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["ok"] is True
