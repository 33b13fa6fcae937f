"""The documentation cannot drift from the code: everything here is derived from the code.

Settings come from ``projcache.config``, commands and options from the Typer app, public names
from ``projcache.__all__`` and error classes from ``projcache.errors``; links are resolved, and
the Python and ``projcache`` examples of the README and ``docs/cache/`` are run.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, Optional

import pytest

import projcache
from projcache import config, errors, storage

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CACHE_DOCS = DOCS / "cache"
README = ROOT / "README.md"
EXAMPLES = ROOT / "lib" / "projcache" / "examples"

NO_RUN = "<!-- no-run -->"


# -- Markdown helpers ---------------------------------------------------------------------------


class Block(NamedTuple):
    """A fenced code block: its language, its first line number (1-based) and its text."""

    lang: str
    line: int
    text: str
    run: bool


class Section(NamedTuple):
    """A heading and the text under it, up to the next heading of the same or a higher level."""

    level: int
    title: str
    body: str


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_blocks(text: str) -> list[Block]:
    """Every fenced block, marked not to run when the line before it is ``<!-- no-run -->``."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^(`{3,})(\S*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        fence, lang = match.groups()
        previous = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            i += 1
        blocks.append(Block(lang, start + 1, "\n".join(lines[start:i]) + "\n", previous != NO_RUN))
        i += 1
    return blocks


def without_code(text: str) -> str:
    """``text`` with fenced blocks blanked out (line numbers kept)."""
    out, fence = [], None
    for line in text.splitlines():
        match = re.match(r"^(`{3,})", line)
        if fence is None and match:
            fence = match.group(1)
            out.append("")
        elif fence is not None:
            if line.strip() == fence:
                fence = None
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def sections(text: str) -> list[Section]:
    """Every heading of ``text`` (outside code blocks) with the text it governs."""
    lines = without_code(text).splitlines()
    raw = text.splitlines()
    heads = [
        (i, len(m.group(1)), m.group(2).strip())
        for i, line in enumerate(lines)
        if (m := re.match(r"^(#{1,6})\s+(.*)$", line))
    ]
    found = []
    for n, (i, level, title) in enumerate(heads):
        end = next((j for j, lvl, _ in heads[n + 1 :] if lvl <= level), len(raw))
        found.append(Section(level, title, "\n".join(raw[i + 1 : end])))
    return found


def slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", title.lower().replace("`", ""))
    return text.replace(" ", "-")


def doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- settings -----------------------------------------------------------------------------------


def _setting_sections() -> dict[str, str]:
    guide = read(CACHE_DOCS / "configuration-guide.md")
    found = {}
    for section in sections(guide):
        match = re.fullmatch(r"`([a-z_]+)`", section.title)
        if match:
            found[match.group(1)] = section.body
    return found


def _row(body: str, label: str) -> Optional[str]:
    """The first backticked value in the table row labelled ``label``."""
    match = re.search(rf"^\|\s*{re.escape(label)}\s*\|\s*`([^`]*)`", body, re.M)
    return match.group(1) if match else None


def _toml_value(text: str) -> Any:
    """A documented value as TOML would read it (``4``, ``true``, ``[]``), else the text."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def skillmeat_home(home: Path) -> Path:
    """Make ``home`` a SkillMeat user's home, for the README's "Use it on your SkillMeat
    collection": the example collection where SkillMeat keeps collections, the projects
    under ~/code.  Returns ``home``."""
    home.mkdir()
    shutil.copytree(
        EXAMPLES / "collections" / "default",
        home / ".skillmeat" / "collections" / "default",
        symlinks=True,
    )
    shutil.copytree(EXAMPLES / "projects", home / "code", symlinks=True)
    return home


@pytest.fixture
def plain_env(tmp_path: Path) -> dict[str, str]:
    """An environment with a home folder and nothing else: only built-in defaults apply."""
    home = skillmeat_home(tmp_path / "home")
    return {"HOME": str(home)}


class TestConfigurationGuide:
    """configuration-guide.md documents every setting of config.py, truthfully."""

    def test_every_settings_field_has_a_key(self) -> None:
        """Settings has exactly one field per configurable key (a new field needs a key)."""
        fields = [f.name for f in dataclasses.fields(config.Settings)]
        assert len(fields) == len(config.ENV_VARS), (fields, list(config.ENV_VARS))

    @pytest.mark.parametrize("key", list(config.ENV_VARS))
    def test_setting_is_documented(self, key: str, plain_env: dict[str, str]) -> None:
        """A section per key names its variable and attribute, with a true default and example."""
        documented = _setting_sections()
        assert key in documented, f"configuration-guide.md has no '### `{key}`' section"
        body = documented[key]
        assert _row(body, "environment variable") == config.ENV_VARS[key]
        attribute = _row(body, "`Settings` attribute")
        field_names = {f.name for f in dataclasses.fields(config.Settings)}
        assert attribute in field_names, f"{key}: attribute {attribute!r} is not a Settings field"
        default = _row(body, "default")
        assert default is not None, f"{key}: no default row"
        defaults = config.load_settings(env=plain_env)
        given = config.load_settings(env=plain_env, **{key: _toml_value(default)})
        assert given == defaults, f"{key}: the documented default {default!r} is not the default"
        example = _row(body, "example")
        assert example is not None and example.startswith(config.ENV_VARS[key] + "="), example
        value = example.split("=", 1)[1]
        changed = config.load_settings(env={**plain_env, config.ENV_VARS[key]: value})
        differing = [
            f.name
            for f in dataclasses.fields(config.Settings)
            if getattr(changed, f.name) != getattr(defaults, f.name)
        ]
        assert differing == [attribute], f"{key}: example {example!r} changed {differing}"

    def test_every_settings_field_is_documented(self) -> None:
        """Every Settings attribute is named as some key's attribute."""
        attributes = {_row(body, "`Settings` attribute") for body in _setting_sections().values()}
        missing = {f.name for f in dataclasses.fields(config.Settings)} - attributes
        assert not missing

    def test_every_environment_variable_read_is_documented(self) -> None:
        """Every variable config.py reads (PROJCACHE_*, SKILLMEAT_*, XDG_*) is in the guide."""
        guide = read(CACHE_DOCS / "configuration-guide.md")
        source = Path(inspect.getfile(config)).read_text(encoding="utf-8")
        names = set(re.findall(r"\b((?:PROJCACHE|SKILLMEAT|XDG)_[A-Z_]+)\b", source))
        assert names
        assert not {name for name in names if f"`{name}`" not in guide}

    def test_summary_table_lists_every_key(self) -> None:
        """The summary table has one row per key with its variable."""
        guide = read(CACHE_DOCS / "configuration-guide.md")
        for key, var in config.ENV_VARS.items():
            assert re.search(rf"^\| `{key}` \| `{var}` \|", guide, re.M), key

    def test_durability_modes_are_documented(self) -> None:
        """Each durability mode is named in the guide and in performance.md."""
        for page in ("configuration-guide.md", "performance.md"):
            text = read(CACHE_DOCS / page)
            for mode in config.DURABILITY_MODES:
                assert f"`{mode}`" in text, (page, mode)

    def test_no_invented_environment_variables(self) -> None:
        """Every PROJCACHE_* variable the docs mention is one the code reads."""
        code = "\n".join(
            p.read_text(encoding="utf-8")
            for folder in (ROOT / "lib", ROOT / "cli")
            for p in folder.rglob("*.py")
        )
        real = set(re.findall(r"\bPROJCACHE_[A-Z_]+\b", code))
        for page in doc_pages():
            mentioned = set(re.findall(r"\bPROJCACHE_[A-Z_]*[A-Z]\b", read(page)))
            assert not mentioned - real, (rel(page), sorted(mentioned - real))


# -- the command line ---------------------------------------------------------------------------


class Command(NamedTuple):
    path: str  # "" for the root, "list artifacts", ...
    command: Any


def cli_commands() -> list[Command]:
    """Every command of the Typer app, walked recursively (click's or Typer's own groups)."""
    import typer

    from projcache_cli import app

    root = typer.main.get_command(app)
    found = []

    def walk(command: Any, ctx: Any, path: tuple[str, ...]) -> None:
        found.append(Command(" ".join(path), command))
        if hasattr(command, "list_commands"):  # a group, whatever click it comes from
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not getattr(sub, "hidden", False):
                    walk(sub, type(ctx)(sub, parent=ctx, info_name=name), (*path, name))

    walk(root, typer.Context(root, info_name="projcache"), ())
    return found


COMMANDS = cli_commands()
SUBCOMMANDS = [c for c in COMMANDS if c.path]


def _cli_sections() -> dict[str, str]:
    """cli.md's sections by command path: headings naming `projcache <path>`."""
    text = read(CACHE_DOCS / "cli.md")
    found: dict[str, str] = {}
    for section in sections(text):
        if section.title.lower() == "global options":
            found[""] = section.body
        for name in re.findall(r"`projcache ([a-z][a-z -]*?)`", section.title):
            found[name] = section.body
    return found


def _params(command: Any) -> list[Any]:
    return [p for p in command.params if not getattr(p, "hidden", False)]


class TestCliReference:
    """cli.md documents every command and option of the app, and each has help."""

    def test_the_walk_finds_the_commands(self) -> None:
        """The walk itself works (a broken walk would make the other tests vacuous)."""
        paths = {c.path for c in COMMANDS}
        assert {"", "refresh", "list", "list artifacts", "verify"} <= paths

    @pytest.mark.parametrize("command", SUBCOMMANDS, ids=lambda c: c.path)
    def test_command_has_help(self, command: Command) -> None:
        """Every command has help text."""
        assert (command.command.help or "").strip(), f"`projcache {command.path}` has no help"

    @pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.path or "(global)")
    def test_every_parameter_has_help(self, command: Command) -> None:
        """Every option and argument has help text."""
        for param in _params(command.command):
            assert (getattr(param, "help", None) or "").strip(), (command.path, param.name)

    @pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.path or "(global)")
    def test_command_and_options_are_documented(self, command: Command) -> None:
        """cli.md has a section for the command naming each of its options and arguments."""
        documented = _cli_sections()
        label = f"`projcache {command.path}`" if command.path else "'Global options'"
        assert command.path in documented, f"cli.md has no heading with {label}"
        body = documented[command.path]
        for param in _params(command.command):
            if param.param_type_name == "argument":
                names = [(param.metavar or param.name).upper()]
            else:
                names = [*param.opts, *param.secondary_opts]
            for name in names:
                assert re.search(rf"`{re.escape(name)}[` ]", body), (
                    f"cli.md, section {label}: {name} is not documented"
                )

    def test_no_invented_commands(self) -> None:
        """Every `projcache <word>` in the docs names a real command or a global option."""
        top = {c.path.split()[0] for c in SUBCOMMANDS}
        globals_ = {o for p in _params(COMMANDS[0].command) for o in p.opts}
        for page in doc_pages():
            for word in re.findall(r"`projcache ([^\s`<\[]+)", read(page)):
                assert word in top or word in globals_, (rel(page), word)

    def test_exit_codes_are_documented(self) -> None:
        """Every exit code in use (CLI constants, every error class) has a row in cli.md."""
        from projcache_cli import errors as cli_errors

        text = read(CACHE_DOCS / "cli.md")
        codes = {cli_errors.EXIT_OK, cli_errors.EXIT_FINDINGS, cli_errors.EXIT_USAGE}
        codes.add(cli_errors.EXIT_DEGRADED)
        codes |= {cls.exit_code for cls in error_classes()}
        for code in sorted(codes):
            assert re.search(rf"^\| {code} \|", text, re.M), f"exit code {code} not in cli.md"


# -- the Python API -----------------------------------------------------------------------------


def _api_text() -> str:
    return read(CACHE_DOCS / "api-reference.md")


def _api_sections() -> list[Section]:
    return sections(_api_text())


def _entry_for(name: str) -> Optional[str]:
    """The section (by heading) or table row documenting ``name``."""
    for section in _api_sections():
        if re.search(rf"`(?:projcache\.)?{re.escape(name)}[`(.]", section.title):
            return section.body
    row = re.search(rf"^\| `{re.escape(name)}` \|.*$", _api_text(), re.M)
    return row.group(0) if row else None


def _public_members(cls: type) -> list[str]:
    return sorted(n for n in dir(cls) if not n.startswith("_"))


class TestApiReference:
    """api-reference.md documents every public name, member, parameter and field."""

    @pytest.mark.parametrize("name", projcache.__all__)
    def test_exported_name_is_documented(self, name: str) -> None:
        """Every name of projcache.__all__ has a heading or a table entry."""
        assert _entry_for(name) is not None, f"api-reference.md does not document {name}"

    @pytest.mark.parametrize("member", _public_members(projcache.ProjectCache))
    def test_project_cache_member_is_documented(self, member: str) -> None:
        """Every public ProjectCache member has a heading giving its true signature."""
        heads = [s.title for s in _api_sections() if re.search(rf"\.{member}[`(]", s.title)]
        assert heads, f"api-reference.md has no heading for ProjectCache.{member}"
        attr = getattr(projcache.ProjectCache, member)
        if isinstance(inspect.getattr_static(projcache.ProjectCache, member), property):
            return
        signature = inspect.signature(attr)
        head = heads[0]
        for param in signature.parameters.values():
            if param.name == "self":
                continue
            if param.kind is param.VAR_KEYWORD:
                expected = f"**{param.name}"
            elif param.default is param.empty:
                expected = param.name
            else:
                expected = f"{param.name}={param.default!r}"
            assert re.search(rf"[(, ]{re.escape(expected)}[,)]", head), (member, expected, head)

    def test_no_documented_method_is_gone(self) -> None:
        """Every `cache.<name>` heading names a member that exists."""
        for section in _api_sections():
            for name in re.findall(r"`(?:cache|ProjectCache)\.(\w+)", section.title):
                assert hasattr(projcache.ProjectCache, name) or name == "settings", name

    @pytest.mark.parametrize(
        "name",
        [n for n in projcache.__all__ if hasattr(getattr(projcache, n), "model_fields")],
    )
    def test_model_fields_are_documented(self, name: str) -> None:
        """Each record's section names every field and every public property or method."""
        model = getattr(projcache, name)
        body = _entry_for(name)
        assert body is not None
        names = set(model.model_fields)
        for klass in model.__mro__:
            if klass.__module__ == model.__module__:
                names |= {n for n in vars(klass) if not n.startswith("_") and n != "model_config"}
        missing = sorted(n for n in names if f"`{n}`" not in body and f"`{n}(" not in body)
        assert not missing, f"{name}: {missing}"

    def test_settings_fields_are_documented(self) -> None:
        """The Settings entry names every field."""
        body = _entry_for("Settings") or ""
        for field in dataclasses.fields(config.Settings):
            assert f"`{field.name}`" in body, field.name


# -- errors -------------------------------------------------------------------------------------


def error_classes() -> list[type[errors.ProjcacheError]]:
    """Every error class of projcache.errors, plus those exported from elsewhere."""
    found = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.ProjcacheError)
    }
    for name in projcache.__all__:
        obj = getattr(projcache, name)
        if isinstance(obj, type) and issubclass(obj, errors.ProjcacheError):
            found.add(obj)
    return sorted(found, key=lambda cls: cls.__name__)


class TestTroubleshooting:
    """troubleshooting.md explains every error class, with its exit code."""

    @pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
    def test_error_class_is_documented(self, cls: type[errors.ProjcacheError]) -> None:
        """A heading names the class and its exit code."""
        text = read(CACHE_DOCS / "troubleshooting.md")
        heads = [s.title for s in sections(text) if f"`{cls.__name__}`" in s.title]
        assert heads, f"troubleshooting.md has no heading naming {cls.__name__}"
        assert any(f"(exit {cls.exit_code})" in head for head in heads), (cls, heads)

    @pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
    def test_error_class_is_in_the_api_reference(self, cls: type[errors.ProjcacheError]) -> None:
        """The API reference's error table gives the class's true exit code."""
        text = _api_text()
        row = re.search(rf"^\| `{cls.__name__}` \|[^|]*\| (\d+) \|", text, re.M)
        if row is None:  # not in the table: at least mentioned with its exit code
            assert f"`{cls.__name__}`" in text and f"exit {cls.exit_code}" in text, cls
        else:
            assert int(row.group(1)) == cls.exit_code, cls


# -- storage format -----------------------------------------------------------------------------


class TestStorageFormat:
    """storage-format.md names every sub-database and the current schema and frame versions."""

    @pytest.mark.parametrize("name", list(storage.DATABASES))
    def test_sub_database_is_documented(self, name: str) -> None:
        """Each sub-database has a row in the table, marked dupsort when it is."""
        text = read(CACHE_DOCS / "storage-format.md")
        row = re.search(rf"^\| `{re.escape(name)}` \|.*$", text, re.M)
        assert row, f"storage-format.md has no row for {name}"
        assert ("dupsort" in row.group(0)) == storage.DATABASES[name], row.group(0)

    def test_versions_are_current(self) -> None:
        """The documented schema version and frame format byte are the code's."""
        from projcache import codec, migrate

        text = read(CACHE_DOCS / "storage-format.md")
        assert f"current schema version is {migrate.SCHEMA_VERSION}" in text
        assert f"`{codec.FORMAT_VERSION:#04x}`" in text


# -- links --------------------------------------------------------------------------------------


def _links(path: Path) -> Iterator[tuple[int, str]]:
    text = without_code(read(path))
    text = re.sub(r"`[^`\n]*`", "", text)  # links in inline code are not links
    for number, line in enumerate(text.splitlines(), 1):
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
            yield number, target
        for target in re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", line):
            yield number, target


def _anchors(path: Path) -> set[str]:
    return {slug(s.title) for s in sections(read(path))}


@pytest.mark.parametrize("page", doc_pages(), ids=rel)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link (and #anchor into a Markdown page) points at something that exists."""
    broken = []
    for number, target in _links(page):
        if re.match(r"^[a-z][a-z+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        if not resolved.exists():
            broken.append(f"{rel(page)}:{number}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{rel(page)}:{number}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_index_links_every_page() -> None:
    """docs/cache/index.md links every page of docs/cache/."""
    targets = {t.partition("#")[0] for _n, t in _links(CACHE_DOCS / "index.md")}
    pages = {p.name for p in CACHE_DOCS.glob("*.md") if p.name != "index.md"}
    assert not pages - targets, sorted(pages - targets)


def test_task_commands_exist() -> None:
    """Every `python3 tasks.py <task>` the docs mention is a task of tasks.py."""
    match = re.search(r"tasks = \(([^)]*)\)", read(ROOT / "tasks.py"))
    assert match, "tasks.py no longer lists its tasks as `tasks = (...)`"
    tasks = set(re.findall(r'"(\w+)"', match.group(1)))
    for page in doc_pages():
        for task in re.findall(r"python3? tasks\.py (\w+)", read(page)):
            assert task in tasks, (rel(page), task)


def test_readme_quick_start_is_the_two_commands() -> None:
    """The README's Quick start block is exactly the demo and test commands."""
    quick = next(s for s in sections(read(README)) if s.title == "Quick start")
    blocks = code_blocks(quick.body)
    assert blocks
    commands = [line.strip() for line in blocks[0].text.splitlines() if line.strip()]
    assert commands == ["python3 tasks.py demo", "python3 tasks.py test"]


# -- executed examples --------------------------------------------------------------------------

_RUNNER = r"""
import json, sys, traceback
blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for block in blocks:
    try:
        exec(compile(block["text"], block["where"], "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print("FAILED: " + block["where"], file=sys.stderr)
        sys.exit(1)
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working folder holding a copy of the examples, and an environment with nothing set."""
    work = tmp_path / "work"
    shutil.copytree(EXAMPLES, work / "lib" / "projcache" / "examples", symlinks=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROJCACHE_", "SKILLMEAT_", "XDG_"))
    }
    home = skillmeat_home(tmp_path / "home")
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        PROJCACHE_DIR=str(tmp_path / "default-cache"),
        COLUMNS="250",
    )
    yield work, env


def _python_pages() -> list[Path]:
    return [p for p in doc_pages() if any(b.lang == "python" for b in code_blocks(read(p)))]


@pytest.mark.parametrize("page", _python_pages(), ids=rel)
def test_python_examples_run(page: Path, sandbox: tuple[Path, dict[str, str]]) -> None:
    """A page's Python blocks run, in order, in one namespace, from a copy of the repo root."""
    work, env = sandbox
    blocks = [
        {"where": f"{rel(page)}:{b.line}", "text": b.text}
        for b in code_blocks(read(page))
        if b.lang == "python" and b.run
    ]
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps(blocks),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_readme_and_quickstart_have_python_examples() -> None:
    """The pages whose examples must be executed do have some."""
    for page in (README, CACHE_DOCS / "quickstart.md", CACHE_DOCS / "api-reference.md"):
        assert page in _python_pages(), rel(page)


class Transcript(NamedTuple):
    where: str
    argv: list[str]
    expected: list[str]


def transcripts(path: Path) -> list[Transcript]:
    """``$ projcache ...`` commands of console blocks, with the output shown after each."""
    found: list[Transcript] = []
    for block in code_blocks(read(path)):
        if block.lang != "console" or not block.run:
            continue
        lines = block.text.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            start = i
            command = lines[i][2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            i += 1
            expected = []
            while i < len(lines) and not lines[i].startswith("$ "):
                expected.append(lines[i])
                i += 1
            argv = shlex.split(command, comments=True)
            if argv and argv[0] == "projcache":
                found.append(Transcript(f"{rel(path)}:{block.line + start}", argv, expected))
    return found


_VOLATILE = [
    (re.compile(r"\b\d+(?:\.\d+)?s\b"), "<seconds>"),  # durations and "0s ago"
    (re.compile(r"\b\d+[mhd] ago\b"), "<age>"),
    (re.compile(r"\b\d+(?:\.\d+)? (?:B|KiB|MiB|GiB)\b"), "<size>"),
]


def _normalise(line: str) -> str:
    line = " ".join(line.split())
    for pattern, replacement in _VOLATILE:
        line = pattern.sub(replacement, line)
    return line


def _matches(expected: str, actual: list[str]) -> bool:
    """``expected`` equals some actual line, ``…`` standing for any text."""
    parts = [re.escape(part) for part in _normalise(expected).split("…")]
    pattern = re.compile("^" + ".*".join(parts) + "$")
    return any(pattern.match(line) for line in actual)


def _transcript_pages() -> list[Path]:
    return [p for p in doc_pages() if transcripts(p)]


@pytest.mark.parametrize("page", _transcript_pages(), ids=rel)
def test_cli_transcripts_match(page: Path, sandbox: tuple[Path, dict[str, str]]) -> None:
    """Each `$ projcache ...` of a page runs, in order, and prints every line shown after it."""
    work, env = sandbox
    for transcript in transcripts(page):
        argv = [sys.executable, "-m", "projcache_cli", *transcript.argv[1:]]
        result = subprocess.run(
            argv, cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode in (0, 1), (transcript.where, result.stderr)
        actual = [_normalise(line) for line in (result.stdout + result.stderr).splitlines()]
        missing = [line for line in transcript.expected if line.strip()]
        missing = [line for line in missing if not _matches(line, actual)]
        assert not missing, f"{transcript.where}: not printed: {missing}\n---\n{result.stdout}"


def test_readme_transcript_is_there() -> None:
    """The README shows a CLI transcript (and this test runs it)."""
    assert len(transcripts(README)) >= 3


def test_the_release_is_documented() -> None:
    """The version in pyproject.toml has a dated CHANGELOG section and release notes."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"$', text, re.M)
    assert match, "pyproject.toml has no version"
    version = match.group(1)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    if ".dev" not in version:
        heading = rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$"
        assert re.search(heading, changelog, re.M), f"no CHANGELOG section for {version}"
        notes = ROOT / "docs" / "release-notes" / f"{version}.md"
        assert notes.is_file(), f"{notes} is missing"
        assert version in notes.read_text(encoding="utf-8").splitlines()[0]
