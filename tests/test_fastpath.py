"""The CLI fast path answers like the Typer app, byte for byte (issue 15, item 2).

Every hot command (``get``, ``search``, ``list artifacts``, ``list deployments``,
``show``/``stats``, with ``--json``) is run twice in this process: through
:func:`projcache_cli.fastpath.main` (the console script: fast path, else the
Typer app) and through the Typer app alone; stdout, stderr and the exit code
must be identical.  Arguments the fast path leaves to Typer (help, errors,
tables, odd spellings) are in the same list, so the fallback is covered too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from projcache import ProjectCache
from projcache.config import Settings
from projcache_cli import fastargs, fastpath


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache with artifacts, two projects and deployments in two states."""
    root = tmp_path_factory.mktemp("fastpath")
    path = root / "cache"
    with ProjectCache.open(settings=Settings(cache_dir=path)) as cache:
        cache.put_artifacts(
            [
                {
                    "name": f"tool-{i}",
                    "type": ("skill", "command", "agent")[i % 3],
                    "collection": "default" if i % 2 else "team",
                    "description": f"Merge pdf files number {i}" if i % 4 else "Review code",
                    "tags": ["pdf", "docs"] if i % 2 else ["review"],
                    "content_hash": f"{i:064x}",
                    "updated_at": "2026-01-02T03:04:05Z",
                }
                for i in range(12)
            ]
        )
        cache.put_projects(
            [
                {"name": "webapp", "path": str(root / "webapp")},
                {"name": "api", "path": str(root / "api")},
            ]
        )
        [web, api] = sorted(cache.list_projects(), key=lambda p: p.name, reverse=True)
        cache.put_deployments(
            [
                {
                    "project_id": web.id,
                    "artifact_key": "default/command/tool-1",
                    "content_hash": f"{1:064x}",
                    "local_hash": f"{1:064x}",
                },
                {
                    "project_id": web.id,
                    "artifact_key": "team/skill/tool-0",
                    "content_hash": "0" * 64,
                    "local_hash": "f" * 64,
                },
                {
                    "project_id": api.id,
                    "artifact_key": "default/agent/tool-5",
                    "content_hash": "e" * 64,
                },
            ]
        )
    return path


def _cases(cache_dir: Path) -> list[list[str]]:
    d = ["--cache-dir", str(cache_dir)]
    return [
        [*d, "get", "--json", "default/command/tool-1"],
        [*d, "get", "team/skill/tool-0", "--json"],
        [f"--cache-dir={cache_dir}", "get", "--json", "team/agent/tool-2"],
        [*d, "get", "--json", "default/skill/missing"],  # not cached: exit 4
        [*d, "get", "--json", "not-a-key"],  # malformed
        [*d, "get", "default/command/tool-1"],  # a table: Typer
        [*d, "get", "--json"],  # missing argument: usage error
        [*d, "search", "--json", "pdf"],
        [*d, "search", "merge", "pdf", "--json"],  # two positionals: Typer's error
        [*d, "search", "--json", "merge pdf", "--limit", "2", "--offset=1"],
        [*d, "search", "--json", "pdf", "-n", "3", "-t", "command"],
        [*d, "search", "--json", "pdf", "--collection", "team", "--tag", "pdf"],
        [*d, "search", "--json", "pdf", "--project", "webapp"],
        [*d, "search", "--json", "pdf", "--project", "nowhere"],  # not found
        [*d, "search", "--json", "pdf", "--type", "Bogus!"],  # bad type (no type name)
        [*d, "search", "--json", "pdf", "--limit", "-1"],  # below min
        [*d, "search", "--json", "pdf", "--limit", "x"],  # not a number
        [*d, "search", "--json", "   "],  # empty query
        [*d, "search", "--json", "pdf", "--limit", "1", "--limit", "2"],  # repeated
        [*d, "search", "--json", "pdf", "--bogus"],  # unknown option
        [*d, "list", "artifacts", "--json"],
        [*d, "list", "artifacts", "--json", "--type", "skill", "--collection", "team"],
        [*d, "list", "artifacts", "--json", "--tag", "pdf"],
        [*d, "list", "artifacts", "--json", "--project", "webapp", "--state", "modified"],
        [*d, "list", "artifacts", "--json", "--outdated"],
        [*d, "list", "deployments", "--json"],
        [*d, "list", "deployments", "--json", "-p", "api"],
        [*d, "list", "deployments", "--json", "--state", "modified", "--type", "skill"],
        [*d, "list", "deployments", "--json", "--type", "Nope!"],
        [*d, "list", "deployments", "--json", "--profile", "claude_code"],
        [*d, "list", "deployments", "--json", "--state", "nope"],
        [*d, "show", "--json"],
        [*d, "stats", "--json"],
        [*d, "show", "--json", "--help"],
        [*d, "--version"],
        [*d, "--debug", "get", "--json", "default/command/tool-1"],
        ["--cache-dir", str(cache_dir.parent / "absent"), "get", "--json", "a/skill/b"],
    ]


def _run(capsysbinary: Any, monkeypatch: pytest.MonkeyPatch, argv: list[str], fast: bool) -> Any:
    monkeypatch.setattr(sys, "argv", ["projcache", *argv])
    code: Any = 0
    try:
        if fast:
            fastpath.main()
        else:
            from projcache_cli.root import main  # the Typer app alone

            main()
    except SystemExit as exc:
        code = exc.code
    out = capsysbinary.readouterr()
    return (0 if code is None else code), out.out, out.err


def test_fast_path_output_identical(
    cache_dir: Path, capsysbinary: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same stdout bytes, stderr and exit code with and without the fast path, every case."""
    monkeypatch.delenv("PROJCACHE_DIR", raising=False)
    answered = 0
    for argv in _cases(cache_dir):
        answered += fastpath.dispatch(argv) == 0
        capsysbinary.readouterr()
        fast = _run(capsysbinary, monkeypatch, argv, fast=True)
        slow = _run(capsysbinary, monkeypatch, argv, fast=False)
        assert fast == slow, argv
    assert answered == 19  # the simple cases really took the fast path


def test_fast_path_honours_cache_dir_envvar(
    cache_dir: Path, capsysbinary: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PROJCACHE_DIR`` names the cache as it does for the Typer app's ``--cache-dir``."""
    monkeypatch.setenv("PROJCACHE_DIR", str(cache_dir))
    argv = ["get", "--json", "default/command/tool-1"]
    assert fastpath.dispatch(argv) == 0
    capsysbinary.readouterr()
    assert _run(capsysbinary, monkeypatch, argv, True) == _run(
        capsysbinary, monkeypatch, argv, False
    )


def test_table_matches_typer_options() -> None:
    """The Typer commands' option names and defaults are the command table's."""
    import typer.main

    from projcache_cli.root import app

    group = typer.main.get_command(app)
    for words, command in fastargs.COMMANDS.items():
        node: Any = group
        for word in words:
            node = node.commands[word]  # type: ignore[union-attr]
        params = {p.name: p for p in node.params}
        for name, option in command.options.items():
            assert tuple(params[name].opts) == option.flags, (words, name)
            assert params[name].default == option.default, (words, name)
        for name in command.arguments:
            assert params[name].required


def _last_report(cache_dir: Path, code: str, argv: list[str]) -> str:
    """Run ``code`` in a fresh interpreter with the CLI's ``argv``; its last stderr line."""
    done = subprocess.run(
        [sys.executable, "-c", code, "--cache-dir", str(cache_dir), *argv],
        capture_output=True,
        check=True,
    )
    return done.stderr.decode().strip().splitlines()[-1]


def test_hot_commands_import_no_cli_framework(cache_dir: Path) -> None:
    """A fast ``get --json`` never imports typer, click, rich or pydantic."""
    code = (
        "import sys; from projcache_cli import fastpath\n"
        "rc = fastpath.dispatch(sys.argv[1:])\n"
        "heavy = sorted(m for m in ('typer', 'click', 'rich', 'pydantic') if m in sys.modules)\n"
        "print(rc, heavy, file=sys.stderr)\n"
    )
    for argv in (
        ["get", "--json", "default/command/tool-1"],
        ["search", "--json", "pdf"],
        ["list", "artifacts", "--json", "--tag", "pdf"],
    ):
        assert _last_report(cache_dir, code, argv) == "0 []", argv


def test_list_artifacts_json_is_streamed_in_chunks(tmp_path: Path) -> None:
    """The listing is written a chunk at a time, and the chunks make the same JSON array."""
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "c")) as cache:
        cache.put_artifacts(
            [{"name": f"n{i:04}", "type": "skill", "collection": "c"} for i in range(700)]
        )
        writes: list[bytes] = []
        fastpath.stream_artifacts(cache, None, None, None, None, None, writes.append)
        expected = b"[" + b",".join(cache.iter_artifacts_json()) + b"]\n"
    assert len(writes) >= 4  # "[", three chunks of at most 256 records, "]"
    assert max(len(w) for w in writes) < len(expected) / 2
    assert b"".join(writes) == expected


def test_quiet_hot_commands_import_no_logging_or_hashlib(cache_dir: Path) -> None:
    """A fast ``get``/``search --json`` that logs nothing loads neither logging nor OpenSSL."""
    _assert_hot_reads_leave_unloaded(cache_dir, ("logging", "hashlib", "traceback"))


def _assert_hot_reads_leave_unloaded(cache_dir: Path, modules: tuple[str, ...]) -> None:
    """A fast ``get``/``search --json`` answers (0) and loads none of ``modules`` beyond
    what ``import lmdb, orjson`` loads (orjson 3.11 on Python 3.9 imports ``uuid``, and
    through ``platform`` and ``subprocess``, ``threading``: not the CLI's doing)."""
    code = (
        "import sys, lmdb, orjson\n"
        "before = set(sys.modules)\n"
        "from projcache_cli import fastpath\n"
        "rc = fastpath.dispatch(sys.argv[1:])\n"
        f"loaded = sorted(m for m in {modules!r} if m in sys.modules and m not in before)\n"
        "print(rc, loaded, file=sys.stderr)\n"
    )
    for argv in (["get", "--json", "default/command/tool-1"], ["search", "--json", "pdf"]):
        assert _last_report(cache_dir, code, argv) == "0 []", argv


def test_hot_commands_import_no_typing(cache_dir: Path) -> None:
    """The hot commands import :mod:`typing` only if ``import lmdb, orjson`` already did.

    The budget's baseline (``python -c "import lmdb, orjson"``) does not import it on the
    newer Pythons (orjson for 3.9 does), and it is ~2.4 ms of a cold call.  Annotations
    are strings and the names they use are imported for the type checker only; this
    keeps a run-time use of one from creeping back into the fast path.
    """
    code = (
        "import sys, lmdb, orjson\n"
        "baseline = 'typing' in sys.modules\n"
        "from projcache_cli import fastpath\n"
        "rc = fastpath.dispatch(sys.argv[1:])\n"
        "print(rc, 'typing' in sys.modules and not baseline, file=sys.stderr)\n"
    )
    for argv in (
        ["get", "--json", "default/command/tool-1"],
        ["search", "--json", "pdf"],
        ["search", "--json", "--type", "skill", "pd"],
        ["list", "artifacts", "--json", "--tag", "pdf"],
        ["list", "deployments", "--json"],
    ):
        assert _last_report(cache_dir, code, argv) == "0 False", argv


def test_library_warning_on_fast_path_is_in_cli_style(cache_dir: Path) -> None:
    """A record the library logs during a fast answer is printed as ``warning: …``."""
    code = (
        "import sys; from projcache_cli import fastpath\n"
        "import projcache.cache as cache_module\n"
        "original = cache_module.ProjectCache.get_artifact_json\n"
        "def noisy(self, key):\n"
        "    cache_module.logger.warning('noisy %s', key)\n"
        "    return original(self, key)\n"
        "cache_module.ProjectCache.get_artifact_json = noisy\n"
        "sys.exit(fastpath.dispatch(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--cache-dir",
            str(cache_dir),
            "get",
            "--json",
            "team/skill/tool-0",
        ],
        capture_output=True,
        check=True,
    )
    assert done.stderr.decode() == "warning: noisy team/skill/tool-0\n"
    assert done.stdout.startswith(b'{"key":"team/skill/tool-0"')


def test_list_deployments_json_is_streamed_in_chunks(tmp_path: Path) -> None:
    """``list deployments --json`` is written a chunk at a time: the bytes of the whole list."""
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "c")) as cache:
        cache.put_projects([{"name": "p", "path": str(tmp_path / "p")}])
        [project] = cache.list_projects()
        cache.put_deployments(
            [
                {
                    "project_id": project.id,
                    "artifact_key": f"c/skill/n{i:04}",
                    "content_hash": f"{i:064x}",
                }
                for i in range(700)
            ]
        )
        writes: list[bytes] = []
        values = {"project": "p", "state_": None, "outdated": False, "type_": None}
        fastpath.stream_deployments(cache, {**values, "profile": None}, writes.append)
        expected = orjson.dumps(cache.deployment_rows("p")) + b"\n"
    assert len(writes) >= 4  # "[", three chunks of at most 256 rows, "]"
    assert max(len(w) for w in writes) < len(expected) / 2
    assert b"".join(writes) == expected


def test_hot_reads_leave_write_side_modules_unloaded(cache_dir: Path) -> None:
    """A fast ``get``/``search --json`` loads neither ``threading`` nor ``fcntl``.

    Both serve writers only (a map resize waits on a condition, a growing writer takes
    ``grow.lock``) and cost a cold call ~1 ms between them; the storage's locks come from
    ``_thread``.
    """
    _assert_hot_reads_leave_unloaded(cache_dir, ("threading", "fcntl"))


_LOUD_MAIN = (
    "import sys\n"
    "from projcache_cli import fastpath\n"
    "class Loud:\n"
    "    def __del__(self):\n"
    "        sys.stderr.write('torn down\\n')\n"
    "keep = Loud()\n"
    "{extra}"
    "sys.argv[0] = 'projcache'\n"
    "fastpath.main()\n"
)


def _orjson_loads_threading() -> bool:
    """Whether ``import lmdb, orjson`` alone loads ``threading`` in this interpreter."""
    code = "import sys, lmdb, orjson; print('threading' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    return done.stdout.strip() == b"True"


def test_fast_answer_exits_without_teardown(cache_dir: Path) -> None:
    """The console script ends after a fast answer without tearing the interpreter down:
    same output and exit code, no module cleared (an object's ``__del__`` never runs).

    Where ``threading`` is loaded anyway (orjson 3.11 on Python 3.9 imports it), a thread
    might be running: the usual exit, teardown included, with the same output.
    """
    argv = ["--cache-dir", str(cache_dir), "search", "--json", "pdf"]
    done = subprocess.run(
        [sys.executable, "-c", _LOUD_MAIN.format(extra=""), *argv],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == (b"torn down\n" if _orjson_loads_threading() else b"")
    assert orjson.loads(done.stdout)["total"] > 0
    assert done.stdout.endswith(b"}\n")


def test_fast_answer_keeps_exit_handlers(cache_dir: Path) -> None:
    """With an exit handler registered (a coverage run, a host program) the process exits
    as usual: the handler runs, then the teardown."""
    argv = ["--cache-dir", str(cache_dir), "get", "--json", "default/command/tool-1"]
    extra = "import atexit\natexit.register(lambda: sys.stderr.write('handler\\n'))\n"
    done = subprocess.run(
        [sys.executable, "-c", _LOUD_MAIN.format(extra=extra), *argv],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"handler\ntorn down\n"
    assert orjson.loads(done.stdout)["key"] == "default/command/tool-1"


def test_cold_get_compiles_no_regular_expression(cache_dir: Path) -> None:
    """A fast ``get --json`` compiles no regular expression of projcache's own.

    The key patterns of :mod:`projcache.codec` (a new type, a profile) are compiled on
    their first use, which a read never makes.  Only calls from projcache's modules
    count: which standard-library modules (``urllib.parse`` through ``pathlib``, say)
    are already loaded when the CLI starts depends on the install (an editable one's
    path hook loads them at start-up, a wheel's does not).
    """
    code = (
        "import re, sys, lmdb, orjson\n"
        "seen = []\n"
        "compile = re.compile\n"
        "def spy(pattern, flags=0):\n"
        "    if sys._getframe(1).f_globals.get('__name__', '').startswith('projcache'):\n"
        "        seen.append(pattern)\n"
        "    return compile(pattern, flags)\n"
        "re.compile = spy\n"
        "from projcache_cli import fastpath\n"
        "rc = fastpath.dispatch(sys.argv[1:])\n"
        "print(rc, seen, file=sys.stderr)\n"
    )
    argv = ["get", "--json", "default/command/tool-1"]
    assert _last_report(cache_dir, code, argv) == "0 []"


def test_type_and_profile_patterns_compile_on_first_use() -> None:
    """The key-part checks behave the same with their patterns compiled on first use."""
    from projcache import codec
    from projcache.errors import InvalidRecordError

    assert codec.check_type_name("skill") == "skill"
    assert codec.check_type_name("workflow_v2") == "workflow_v2"
    assert codec.check_profile("claude_code") == "claude_code"
    assert codec.check_profile("codex.v1") == "codex.v1"
    for bad in ("Skill", "1x", "a/b", "", "a" * 65, 3):
        with pytest.raises(InvalidRecordError):
            codec.check_type_name(bad)
    for bad in ("", ".x", "a b", "a" * 65, None):
        with pytest.raises(InvalidRecordError):
            codec.check_profile(bad)


def _into_closed_pipe(code: str, argv: list[str]) -> tuple[int, bytes]:
    """Run ``code`` with the CLI's ``argv``, stdout a pipe nobody reads: (exit code, stderr)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # (the reader is gone before the first byte: `| head -c0`)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    "argv",
    [["search", "--json", "pdf"], ["get", "--json", "default/command/tool-1"]],
    ids=["search", "get"],
)
def test_a_reader_gone_ends_a_fast_answer_as_the_typer_app_does(
    cache_dir: Path, argv: list[str]
) -> None:
    """A fast answer into a pipe whose reader left exits 1 with nothing on stderr (no
    traceback), as the Typer app's answer to the same command does."""
    full = ["--cache-dir", str(cache_dir), *argv]
    fast = _into_closed_pipe(
        "import sys\nfrom projcache_cli import fastpath\nsys.argv[0] = 'projcache'\n"
        "fastpath.main()\n",
        full,
    )
    typer = _into_closed_pipe(
        "import sys\nfrom projcache_cli.root import main\nsys.argv[0] = 'projcache'\nmain()\n",
        full,
    )
    assert typer == (1, b"")
    assert fast == typer
