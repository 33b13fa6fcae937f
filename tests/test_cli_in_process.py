"""`init` and shell completion run in-process (their process-level tests are in test_cli_ux.py).

The console-script tests pin exit codes and stderr; these twins drive the same commands
through Typer's runner, so the branches behind them are measured too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import click
import pytest
from typer.testing import CliRunner

from projcache import ProjectCache
from projcache_cli import app
from projcache_cli.completion import complete_artifact, complete_collection, complete_project

EXAMPLES = Path(__file__).resolve().parents[1] / "lib" / "projcache" / "examples"
runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SkillMeat user's home (the example collection, projects under ~/code), as $HOME."""
    home = tmp_path / "home"
    shutil.copytree(
        EXAMPLES / "collections" / "default", home / ".skillmeat" / "collections" / "default"
    )
    shutil.copytree(EXAMPLES / "projects", home / "code")
    for name in list(os.environ):
        if name.startswith("PROJCACHE_") or name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PROJCACHE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("COLUMNS", "250")
    return home


def invoke(*args: str) -> Any:
    """Run ``projcache ARGS`` in this process."""
    return runner.invoke(app, list(args))


class TestInit:
    def test_finds_and_writes(self, home: Path, tmp_path: Path) -> None:
        """--json names the collections and projects found and the file written."""
        codex = home / "code" / "codex-only"
        (codex / ".agents").mkdir(parents=True)
        (codex / ".agents" / ".skillmeat-deployed.toml").write_text("")
        (home / "code" / "node_modules" / "p" / ".claude").mkdir(parents=True)
        result = invoke("init", "--search", str(home / "code"), "--json")
        assert result.exit_code == 0, result.output
        found = json.loads(result.stdout)
        assert found["written"] is True
        assert found["collections"] == [str(home / ".skillmeat" / "collections" / "default")]
        assert str(codex) in found["projects"]
        assert str(home / "code" / "webapp") in found["projects"]
        assert not any("node_modules" in p for p in found["projects"])
        assert "project_roots" in (tmp_path / "config.toml").read_text()

    def test_plain_output_then_refusal_then_force(self, home: Path, tmp_path: Path) -> None:
        """Plain output shows the file; a second run refuses (exit 2); --force replaces."""
        config = tmp_path / "config.toml"
        first = invoke("init", "--search", str(home / "code"))
        assert first.exit_code == 0, first.output
        assert "project_roots" in first.stdout
        config.write_text('ttl = "1h"\ncollections = ["/elsewhere"]\n')
        refused = invoke("init", "--search", str(home / "code"))
        assert refused.exit_code == 2
        assert config.read_text() == 'ttl = "1h"\ncollections = ["/elsewhere"]\n'
        forced = invoke("init", "--search", str(home / "code"), "--force")
        assert forced.exit_code == 0, forced.output
        text = config.read_text()
        assert 'ttl = "1h"' in text and "/elsewhere" not in text

    def test_dry_run_and_missing_folder(self, home: Path, tmp_path: Path) -> None:
        """--dry-run writes nothing; a --search folder that is not there is an error."""
        dry = invoke("init", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "collections = " in dry.stdout
        assert not (tmp_path / "config.toml").exists()
        missing = invoke("init", "--search", str(tmp_path / "nowhere"))
        assert missing.exit_code not in (0, 1)
        assert not (tmp_path / "config.toml").exists()


class TestCompletion:
    def test_words_from_the_cache(self, home: Path, tmp_path: Path) -> None:
        """Keys, names, projects and collections complete from the cache; errors say nothing."""
        (tmp_path / "config.toml").write_text("")  # PROJCACHE_CONFIG must name a file
        cache_dir = tmp_path / "cache"
        with ProjectCache.open(cache_dir) as cache:
            cache.refresh(
                collections=[home / ".skillmeat" / "collections" / "default"],
                projects=[home / "code" / "webapp"],
            )
        ctx = click.Context(click.Command("projcache"), info_name="projcache")
        ctx.params["cache_dir"] = cache_dir
        assert "default/skill/pdf" in complete_artifact(ctx, "default/skill/p")
        assert "pdf" in complete_artifact(ctx, "pd")
        assert complete_project(ctx, "web") == ["webapp"]
        assert complete_collection(ctx, "") == ["default"]
        nothing = click.Context(click.Command("projcache"), info_name="projcache")
        nothing.params["cache_dir"] = tmp_path / "no-cache-here"
        assert complete_artifact(nothing, "") == []
