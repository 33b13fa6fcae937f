"""Issue 17: the CLI as a new user meets it, through the real ``projcache`` console script.

Exit codes, stderr hints, ``projcache init``, adaptive tables, names instead of hashes,
consistency of every command's help, and shell completion.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import pytest
import typer

import projcache
from projcache import DEPLOYMENT_STATES, codec
from projcache_cli import app
from projcache_cli.errors import EXIT_DEGRADED, CliLogFormatter, CliLogHandler
from projcache_cli.root import hoist_global_options
from served import isolated_env, projcache_command

EXAMPLES = Path(projcache.__file__).parent / "examples"


class Run:
    """One finished ``projcache`` process: exit code, stdout and stderr apart."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.code = result.returncode
        self.out = result.stdout
        self.err = result.stderr

    def json(self) -> Any:
        """stdout parsed as JSON (one line)."""
        assert self.out.count("\n") == 1, self.out
        return json.loads(self.out)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A SkillMeat user's home: the example collection and the example projects under ~/code."""
    home = tmp_path / "home"
    shutil.copytree(
        EXAMPLES / "collections" / "default", home / ".skillmeat" / "collections" / "default"
    )
    shutil.copytree(EXAMPLES / "projects", home / "code")
    old = time.time() - 3600  # outside the racy window: a second refresh re-reads nothing
    for path in [home, *home.rglob("*")]:
        os.utime(path, (old, old), follow_symlinks=False)
    return home


@pytest.fixture
def env(home: Path, tmp_path: Path) -> dict[str, str]:
    """No PROJCACHE_* of the user; HOME is ``home``; the default cache lies in tmp_path."""
    return isolated_env(
        home, {"PROJCACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "250", "NO_COLOR": "1"}
    )


def run(env: Mapping[str, str], *args: str, cwd: Optional[Path] = None) -> Run:
    """``projcache ARGS`` as a user types it."""
    return Run(
        subprocess.run(
            [*projcache_command(), *args],
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
    )


@pytest.fixture
def refreshed(home: Path, env: dict[str, str]) -> dict[str, str]:
    """The examples refreshed into the default cache; returns the environment."""
    collection = home / ".skillmeat" / "collections" / "default"
    args = ["refresh", "-c", str(collection)]
    for project in ("webapp", "api-service", "notes"):
        args += ["-p", str(home / "code" / project)]
    assert run(env, *args).code == 1  # the examples hold one malformed file on purpose
    return env


# -- 1. degraded answers ------------------------------------------------------------------------


class TestDegradedAnswers:
    def test_cache_dir_that_is_a_file_answers_degraded(
        self, refreshed: dict[str, str], tmp_path: Path, home: Path
    ) -> None:
        """Exit 20 (not 0, not 1), `degraded` in JSON, a warning and a hint that names the file."""
        afile = tmp_path / "afile"
        afile.write_text("x")
        env = {**refreshed, "PROJCACHE_COLLECTIONS": str(home / ".skillmeat" / "collections")}
        show = run(env, "--cache-dir", str(afile), "show", "--json")
        assert show.code == EXIT_DEGRADED == 20
        data = show.json()
        assert data["degraded"] is True
        assert str(afile) in data["degraded_reason"]
        assert data["counts"]["artifacts"] > 0  # answered from the configured sources
        assert show.err.startswith("warning: ")
        assert f"hint: {afile} is a file, not a folder" in show.err
        found = run(env, "--cache-dir", str(afile), "search", "pdf", "--json")
        assert found.code == 20
        assert found.json()["degraded"] is True
        assert found.json()["total"] == 1
        listed = run(env, "--cache-dir", str(afile), "list", "deployments")
        assert listed.code == 20

    def test_damaged_cache_answers_from_the_folders_it_remembers(
        self, refreshed: dict[str, str], tmp_path: Path
    ) -> None:
        """Projects given by name (no project_roots configured) are still in the answer."""
        data = tmp_path / "cache" / "data.mdb"
        data.write_bytes(b"\x00garbage" * 4096)
        listed = run(refreshed, "list", "deployments", "--json")
        assert listed.code == 20, listed.err
        deployments = json.loads(listed.out)
        assert len(deployments) == 13  # every deployment of the three remembered projects
        assert "damaged" in listed.err

    def test_healthy_cache_has_no_degraded_key(self, refreshed: dict[str, str]) -> None:
        """A normal answer: exit 0 and the JSON shape unchanged."""
        show = run(refreshed, "show", "--json")
        assert show.code == 0
        assert "degraded" not in show.json()
        assert "degraded" not in run(refreshed, "search", "pdf", "--json").json()

    def test_cache_switched_off_is_not_degraded(self, refreshed: dict[str, str]) -> None:
        """PROJCACHE_ENABLED=false is the configured way of working: exit 0."""
        env = {**refreshed, "PROJCACHE_ENABLED": "false"}
        show = run(env, "show", "--json")
        assert show.code == 0, show.err
        assert "degraded" not in show.json()


# -- 2. hints that lead to the fix --------------------------------------------------------------


class TestHints:
    def test_refresh_and_verify_on_a_file_say_it_is_a_file(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """Not "run projcache verify" (which then says the same): point --cache-dir elsewhere."""
        afile = tmp_path / "afile"
        afile.write_text("x")
        for command in (["refresh", "-c", str(EXAMPLES / "collections" / "default")], ["verify"]):
            result = run(env, "--cache-dir", str(afile), *command)
            assert result.code == 5
            hints = [line for line in result.err.splitlines() if line.startswith("hint: ")]
            assert hints == [
                f"hint: {afile} is a file, not a folder: point --cache-dir (or PROJCACHE_DIR) "
                "at a folder, which is created if missing."
            ]

    def test_cache_dir_under_a_file_names_the_file(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """`--cache-dir afile/cache`: the hint names the file in the way, not `verify`."""
        afile = tmp_path / "afile"
        afile.write_text("x")
        collection = str(EXAMPLES / "collections" / "default")
        result = run(env, "--cache-dir", str(afile / "cache"), "refresh", "-c", collection)
        assert result.code == 5, result.err
        assert f"hint: {afile} is a file, so {afile / 'cache'} cannot be created" in result.err

    def test_missing_collection_folder_says_folder(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """A missing --collection folder: the hint speaks of a folder, not of a file to fix."""
        result = run(env, "refresh", "-c", str(tmp_path / "nope"))
        assert result.code == 12
        assert "hint: Check the folder's path: it does not exist" in result.err
        assert "file" not in result.err.split("hint:")[1]

    @pytest.mark.parametrize(
        ("args", "near"), [(["lst"], "list"), (["list", "artefacts"], "artifacts")]
    )
    def test_unknown_command_suggests_once(
        self, env: dict[str, str], args: list[str], near: str
    ) -> None:
        """ "Did you mean 'list'?" appears exactly once."""
        result = run(env, *args)
        assert result.code == 2
        assert result.err.count("Did you mean") == 1
        assert f"'{near}'" in result.err

    def test_global_options_after_the_command(
        self, refreshed: dict[str, str], tmp_path: Path
    ) -> None:
        """`projcache show --cache-dir X` is `projcache --cache-dir X show`."""
        cache = tmp_path / "cache"
        env = {**refreshed, "PROJCACHE_DIR": str(tmp_path / "elsewhere")}
        after = run(env, "show", "--json", "--cache-dir", str(cache))
        assert after.code == 0, after.err
        assert after.json()["cache_dir"] == str(cache)
        before = run(env, "--cache-dir", str(cache), "show", "--json")
        assert before.json()["cache_dir"] == after.json()["cache_dir"]
        assert run(env, "list", "projects", "--debug", "--cache-dir", str(cache)).code == 0

    def test_hoisting_leaves_other_words_alone(self) -> None:
        """Only global options move; values, `--` and options before the command stay."""
        assert hoist_global_options(["show", "--cache-dir", "X", "--json"]) == [
            "--cache-dir",
            "X",
            "show",
            "--json",
        ]
        assert hoist_global_options(["--debug", "get", "--cache-dir=Y", "pdf"]) == [
            "--debug",
            "--cache-dir=Y",
            "get",
            "pdf",
        ]
        assert hoist_global_options(["search", "--", "--debug"]) == ["search", "--", "--debug"]
        assert hoist_global_options(["--cache-dir", "X", "show"]) == ["--cache-dir", "X", "show"]

    def test_config_key_typo_suggests_the_near_key(self, env: dict[str, str], home: Path) -> None:
        """`colections` in config.toml: the hint names `collections`."""
        config = home / ".config" / "projcache" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text('colections = ["~/x"]\n')
        result = run(env, "show")
        assert result.code == 10
        assert "hint: Did you mean: colections -> collections?" in result.err

    def test_backup_refuses_a_non_empty_folder(
        self, refreshed: dict[str, str], tmp_path: Path
    ) -> None:
        """backup's help says empty: a folder holding anything is refused, and left alone."""
        dest = tmp_path / "dest"
        dest.mkdir()
        (dest / "keep.txt").write_text("mine")
        result = run(refreshed, "backup", str(dest))
        assert result.code == 14
        assert "is not empty" in result.err
        assert "hint: Name an empty or new folder" in result.err
        assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]

    def test_collection_name_collision_is_said_once(
        self, env: dict[str, str], home: Path, tmp_path: Path
    ) -> None:
        """Two folders naming the same collection: one sentence, not a warning plus an error."""
        twin = tmp_path / "elsewhere" / "default"
        shutil.copytree(home / ".skillmeat" / "collections" / "default", twin)
        result = run(env, "refresh", "-c", str(home / ".skillmeat" / "collections" / "default"))
        result = run(env, "refresh", "-c", str(twin))
        assert result.code == 1
        assert result.err.count("is already used by") == 1

    def test_ambiguous_name_lists_the_candidates(
        self, refreshed: dict[str, str], tmp_path: Path
    ) -> None:
        """`get pdf` when two collections have a pdf: exit 14 naming both keys."""
        second = tmp_path / "second"
        (second / "skills" / "pdf").mkdir(parents=True)
        (second / "skills" / "pdf" / "SKILL.md").write_text(
            "---\nname: pdf\ndescription: Another pdf skill.\n---\nBody.\n"
        )
        assert run(refreshed, "refresh", "-c", str(second)).code == 0
        result = run(refreshed, "get", "pdf")
        assert result.code == 14
        assert "'pdf' names 2 artifacts: default/skill/pdf, second/skill/pdf" in result.err
        assert "hint: Give the full key" in result.err


# -- 3. projcache init ----------------------------------------------------------------------------


class TestInit:
    def test_finds_collections_and_skillmeat_projects_and_writes_the_config(
        self, env: dict[str, str], home: Path, tmp_path: Path
    ) -> None:
        """Any profile root counts; node_modules, symlinks and depth bound the search."""
        code = home / "code"
        # A project deployed only to the codex profile root (.agents/).
        codex = code / "tools" / "codex-only"
        (codex / ".agents").mkdir(parents=True)
        (codex / ".agents" / ".skillmeat-deployed.toml").write_text("")
        # Not searched: inside node_modules, behind a symlink, deeper than --depth.
        hidden = code / "node_modules" / "pkg"
        (hidden / ".claude").mkdir(parents=True)
        (hidden / ".claude" / ".skillmeat-deployed.toml").write_text("")
        outside = tmp_path / "outside" / "proj"
        (outside / ".claude").mkdir(parents=True)
        (outside / ".claude" / ".skillmeat-deployed.toml").write_text("")
        (code / "link").symlink_to(outside.parent)
        deep = code / "a" / "b" / "c" / "d" / "e" / "proj"
        (deep / ".claude").mkdir(parents=True)
        (deep / ".claude" / ".skillmeat-deployed.toml").write_text("")
        config = tmp_path / "config.toml"
        env = {**env, "PROJCACHE_CONFIG": str(config)}

        result = run(env, "init", "--search", "~/code", "--json")
        assert result.code == 0, result.err
        found = result.json()
        assert found["written"] is True
        assert found["config"] == str(config)
        assert found["collections"] == [str(home / ".skillmeat" / "collections" / "default")]
        assert found["projects"] == [
            str(code / "api-service"),
            str(code / "webapp"),
            str(codex),
        ]
        text = config.read_text()
        assert 'collections = ["~/.skillmeat/collections"]' in text
        assert 'project_roots = ["~/code"]' in text

        refreshed = run(env, "refresh")
        assert refreshed.code == 1  # the malformed example file
        assert "artifacts 14 added" in refreshed.out

    def test_refuses_to_overwrite_without_force_and_keeps_other_keys(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """An existing config: exit 2 with the diff; --force replaces, keeping other keys."""
        config = tmp_path / "config.toml"
        config.write_text('ttl = "1h"\ncollections = ["/somewhere"]\n')
        env = {**env, "PROJCACHE_CONFIG": str(config)}
        result = run(env, "init", "--search", "~/code")
        assert result.code == 2
        assert '-collections = ["/somewhere"]' in result.out
        assert "--force" in result.err
        assert config.read_text() == 'ttl = "1h"\ncollections = ["/somewhere"]\n'
        forced = run(env, "init", "--search", "~/code", "--force")
        assert forced.code == 0, forced.err
        text = config.read_text()
        assert 'ttl = "1h"' in text
        assert 'collections = ["~/.skillmeat/collections"]' in text
        assert run(env, "show").code == 5  # the config loads; there is just no cache yet

    def test_dry_run_writes_nothing(self, env: dict[str, str], tmp_path: Path) -> None:
        """--dry-run prints the file it would write."""
        config = tmp_path / "config.toml"
        result = run({**env, "PROJCACHE_CONFIG": str(config)}, "init", "--dry-run")
        assert result.code == 0
        assert "collections = " in result.out
        assert not config.exists()

    def test_missing_search_folder(self, env: dict[str, str], tmp_path: Path) -> None:
        """A --search folder that does not exist: exit 12 with a hint, nothing written."""
        config = tmp_path / "config.toml"
        result = run(
            {**env, "PROJCACHE_CONFIG": str(config)}, "init", "--search", str(tmp_path / "no")
        )
        assert result.code == 12
        assert "hint: Give --search a folder" in result.err
        assert not config.exists()


# -- 4. output that shows what matters ----------------------------------------------------------


class TestOutput:
    def test_description_column_when_it_fits(self, refreshed: dict[str, str]) -> None:
        """Wide: a description column; narrow: none, and no row wraps its key."""
        wide = run(refreshed, "list", "artifacts")
        header = wide.out.splitlines()[0]
        assert "description" in header
        assert "Extract text and tables from PDF files" in wide.out
        narrow = run({**refreshed, "COLUMNS": "70"}, "list", "artifacts")
        assert "description" not in narrow.out.splitlines()[0]
        assert any(
            line.startswith("default/skill/frontend-design ") for line in narrow.out.splitlines()
        )

    def test_empty_columns_are_dropped(self, refreshed: dict[str, str]) -> None:
        """No command of the examples has a version: no version column for --type command."""
        result = run(refreshed, "list", "artifacts", "--type", "command")
        assert result.code == 0
        header = result.out.splitlines()[0]
        assert "version" not in header
        assert "tags" in header

    def test_get_by_bare_name_shows_where_it_is_deployed(self, refreshed: dict[str, str]) -> None:
        """`get code-review`: the artifact and its deployment with state and path."""
        result = run(refreshed, "get", "code-review")
        assert result.code == 0, result.err
        lines = result.out.splitlines()
        assert lines[0] == "key:              default/skill/code-review"
        assert "deployed:         webapp (outdated) skills/code-review" in lines
        assert run(refreshed, "get", "skill/code-review").out == result.out
        assert run(refreshed, "get", "nothing-like-it").code == 4

    def test_show_after_a_collection_only_refresh(self, env: dict[str, str]) -> None:
        """Not "refreshed: newest never" once a collection was read."""
        run(env, "refresh", "-c", str(EXAMPLES / "collections" / "default"))
        result = run(env, "show")
        line = next(x for x in result.out.splitlines() if x.startswith("refreshed:"))
        assert "never" not in line

    def test_refresh_summary_says_added_updated_removed(
        self, refreshed: dict[str, str], home: Path
    ) -> None:
        """An edited skill is *updated*, a deleted command *removed*, nothing *added*."""
        skill = home / ".skillmeat" / "collections" / "default" / "skills" / "pdf" / "SKILL.md"
        skill.write_text(skill.read_text().replace("Extract text", "Pull text"))
        (home / ".skillmeat" / "collections" / "default" / "commands" / "scratch.md").unlink()
        result = run(refreshed, "refresh", "--json")
        data = json.loads(result.out)
        assert (data["artifacts_added"], data["artifacts_updated"]) == (0, 1)
        assert data["artifacts_removed"] == 1
        human = run(refreshed, "refresh")
        assert "artifacts 0 added, 0 updated, 0 removed" in human.out

    def test_progress_names_the_folder_before_reading_it(self, tmp_path: Path) -> None:
        """The first report comes before the collection is read, with a real total."""
        calls: list[tuple[int, int, str]] = []
        collection = str(EXAMPLES / "collections" / "default")
        project = str(EXAMPLES / "projects" / "webapp")
        with projcache.ProjectCache.open(tmp_path / "c") as cache:
            cache.refresh(
                collections=[collection],
                projects=[project],
                progress=lambda d, t, label: calls.append((d, t, label)),
            )
        assert calls[0] == (0, 2, os.path.realpath(collection))
        assert calls[-1][:2] == (2, 2)


# -- 5. consistency ---------------------------------------------------------------------------


def _commands() -> list[tuple[str, Any]]:
    root = typer.main.get_command(app)
    found: list[tuple[str, Any]] = []

    def walk(command: Any, ctx: Any, path: str) -> None:
        found.append((path, command))
        for name in getattr(command, "list_commands", lambda _c: [])(ctx):
            sub = command.get_command(ctx, name)
            walk(sub, type(ctx)(sub, parent=ctx, info_name=name), f"{path} {name}".strip())

    walk(root, typer.Context(root, info_name="projcache"), "")
    return found


COMMANDS = _commands()


class TestConsistency:
    @pytest.mark.parametrize(
        ("path", "command"), COMMANDS, ids=[p or "(root)" for p, _ in COMMANDS]
    )
    def test_help_follows_the_rules(self, path: str, command: Any) -> None:
        """-c wherever --collection is; --type and --state name every choice; env vars once."""
        for param in command.params:
            opts = set(param.opts)
            help_text = getattr(param, "help", "") or ""
            if "--collection" in opts:
                assert "-c" in opts, (path, "--collection without -c")
            if "--type" in opts:
                for type_ in codec.ARTIFACT_TYPES:
                    assert type_ in help_text, (path, type_)
            if "--state" in opts:
                for state in DEPLOYMENT_STATES:
                    assert state in help_text, (path, state)
            envvar = getattr(param, "envvar", None)
            if envvar:
                assert envvar not in help_text, (path, f"{envvar} named twice in the help")

    def test_root_help_names_every_artifact_kind(self) -> None:
        """Hooks and MCP servers too."""
        text = typer.main.get_command(app).help or ""
        for word in ("skills", "commands", "agents", "hooks", "MCP"):
            assert word in text

    def test_serve_help_names_the_api_key_variable_once(self, env: dict[str, str]) -> None:
        """As printed: the variable appears once."""
        result = run({**env, "COLUMNS": "200"}, "serve", "--help")
        assert result.out.count("PROJCACHE_API_KEY") == 1

    def test_every_json_is_one_line(self, refreshed: dict[str, str]) -> None:
        """verify --json too."""
        result = run(refreshed, "verify", "--json")
        assert result.code == 0, result.err
        assert result.json()["ok"] is True

    def test_library_warnings_take_the_cli_style(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`warning: …`, not `WARNING projcache.storage: …`."""
        logger = logging.getLogger("projcache.storage")
        handler = CliLogHandler()
        handler.setFormatter(CliLogFormatter(debug=False))
        logger.addHandler(handler)
        try:
            logger.warning("cannot write the lock file of %s", "/x")
        finally:
            logger.removeHandler(handler)
        assert "warning: cannot write the lock file of /x\n" in capsys.readouterr().err


# -- 6. shell completion ------------------------------------------------------------------------


class TestCompletion:
    def _complete(self, env: Mapping[str, str], words: str) -> list[str]:
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)
        result = run(
            {
                **env,
                "_PROJCACHE_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": str(cword),
            }
        )
        assert result.code == 0, result.err
        assert result.err == ""
        return result.out.split()

    def test_completes_keys_projects_and_collections(self, refreshed: dict[str, str]) -> None:
        """From the cache: artifact names and keys, project names, collection names."""
        assert self._complete(refreshed, "projcache get code") == ["code-review"]
        assert "default/skill/pdf" in self._complete(refreshed, "projcache get default/skill/")
        assert self._complete(refreshed, "projcache list deployments -p we") == ["webapp"]
        assert self._complete(refreshed, "projcache search x -c de") == ["default"]

    def test_no_cache_no_completions_no_noise(self, env: dict[str, str], tmp_path: Path) -> None:
        """Nothing cached: no words, nothing on stderr, no cache created."""
        assert self._complete(env, "projcache get co") == []
        assert not (tmp_path / "cache").exists()

    def test_show_completion_prints_a_script(self, env: dict[str, str]) -> None:
        """Typer's --show-completion prints the script of the shell it runs in."""
        # Typer detects the shell from the process's parents, so run it from a bash as a
        # user does (`; exit $?` keeps bash from exec-ing it, which would hide the parent).
        line = shlex.join([*projcache_command(), "--show-completion"]) + "; exit $?"
        done = subprocess.run(
            ["bash", "-c", line], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "_PROJCACHE_COMPLETE" in done.stdout
