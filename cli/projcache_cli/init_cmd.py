"""``projcache init``: find SkillMeat collections and projects, write the config file."""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from .errors import EXIT_USAGE, cli_errors, warn
from .output import emit_json
from .state import state_of

__all__ = ["config_path", "find_skillmeat_projects", "register", "render_config"]

# SkillMeat writes one of these into every profile root it deploys to (.claude/, .agents/, …).
DEPLOYED_FILE = ".skillmeat-deployed.toml"
DEFAULT_COLLECTIONS = "~/.skillmeat/collections"
DEFAULT_DEPTH = 4
# A search that has looked at this many folders stops, with a warning: a bound on the time
# `init` may take in a huge tree (a home folder with a million folders, a network mount).
MAX_FOLDERS = 200_000
# Folders never searched: version control, dependency and build trees that hold no projects.
_SKIP = frozenset(
    {"node_modules", "site-packages", "__pycache__", "venv", "env", "target", "dist", "build"}
)


def config_path(env: Optional[dict[str, str]] = None) -> Path:
    """The config file ``projcache`` reads: ``$PROJCACHE_CONFIG``, else the XDG location."""
    env = dict(os.environ) if env is None else env
    explicit = env.get("PROJCACHE_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "projcache" / "config.toml"


def _is_skillmeat_project(folder: str) -> bool:
    """A folder with ``.<profile>/.skillmeat-deployed.toml`` (any SkillMeat profile root)."""
    try:
        with os.scandir(folder) as entries:
            hidden = [
                e.path
                for e in entries
                if e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
    except OSError:
        return False
    return any(os.path.isfile(os.path.join(path, DEPLOYED_FILE)) for path in hidden)


def find_skillmeat_projects(roots: Iterable[Path], max_depth: int) -> Iterator[tuple[str, int]]:
    """Yield ``(folder, depth)`` of each SkillMeat project under ``roots``.

    Breadth first, at most ``max_depth`` levels below each root; symbolic links
    are never followed (a link cannot lead the search out of the folders
    chosen), hidden folders and dependency trees (``node_modules``, virtualenvs…)
    are not entered, and at most ``MAX_FOLDERS`` folders are looked at.
    """
    home = os.path.realpath(os.path.expanduser("~"))
    seen: set[str] = set()
    queue: deque[tuple[str, int]] = deque((os.path.realpath(root), 0) for root in roots)
    looked = 0
    while queue:
        folder, depth = queue.popleft()
        if folder in seen:
            continue
        seen.add(folder)
        looked += 1
        if looked > MAX_FOLDERS:
            warn(f"stopped after {MAX_FOLDERS} folders; name narrower --search folders")
            return
        # The home folder's .claude/ holds the user's own settings, not a project.
        if folder != home and _is_skillmeat_project(folder):
            yield folder, depth
        if depth >= max_depth:
            continue
        try:
            with os.scandir(folder) as entries:
                children = sorted(
                    e.path
                    for e in entries
                    if not e.name.startswith(".")
                    and e.name not in _SKIP
                    and e.is_dir(follow_symlinks=False)
                    and not os.path.isfile(os.path.join(e.path, "pyvenv.cfg"))
                )
        except OSError:
            continue
        queue.extend((child, depth + 1) for child in children)


def _toml_value(value: Any) -> str:
    """A TOML literal for the simple values a config holds (strings, numbers, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (same escapes, \\uXXXX included).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} to the config file")


def render_config(settings: dict[str, Any], notes: dict[str, list[str]]) -> str:
    """The config file's text: each key, preceded by comments saying what was found."""
    lines = ["# Written by `projcache init`; every key: docs/cache/configuration-guide.md", ""]
    for key, value in settings.items():
        lines.extend(f"# {note}" for note in notes.get(key, []))
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _existing(path: Path) -> dict[str, Any]:
    """The keys of an existing config file (top level and ``[cache]`` merged), else ``{}``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11 only
        import tomli as tomllib

    from projcache.errors import ConfigError

    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc}",
            hint="Fix the file, or move it away and run `projcache init` again.",
        ) from exc
    table = data.pop("cache", {})
    return {**data, **(table if isinstance(table, dict) else {})}


def init(
    ctx: typer.Context,
    search: Optional[list[Path]] = typer.Option(
        None,
        "--search",
        "-s",
        help="Look for SkillMeat projects under this folder (repeatable; default: none).",
    ),
    collections: Optional[list[Path]] = typer.Option(
        None,
        "--collections",
        help=f"A SkillMeat collections folder (repeatable; default: {DEFAULT_COLLECTIONS}).",
    ),
    depth: int = typer.Option(
        DEFAULT_DEPTH, "--depth", min=0, max=32, help="How many folder levels to search down."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing config file."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the config file instead of writing it."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what was found as JSON."),
) -> None:
    """Find SkillMeat collections and projects, write the config file and show it.

    Collections: each folder of ~/.skillmeat/collections (or --collections).
    Projects: folders under each --search folder holding a SkillMeat deployment
    (.claude/.skillmeat-deployed.toml, or that of another profile root such as
    .agents/). An existing config file is kept unless --force is given; its
    other keys are carried over.
    """
    from projcache import find_collections

    state = state_of(ctx)
    with cli_errors(state):
        from projcache.errors import SourceFileError

        roots = [Path(os.path.expanduser(os.fspath(p))) for p in (search or [])]
        for root in roots:
            if not root.is_dir():
                raise SourceFileError(
                    f"{root}: no such folder to search",
                    path=str(root),
                    hint="Give --search a folder that holds your projects, e.g. ~/code.",
                )
        given = [os.fspath(p) for p in collections or []]
        collection_roots = given or [DEFAULT_COLLECTIONS]
        found_collections = find_collections(collection_roots)
        found_projects = list(find_skillmeat_projects(roots, depth))
        target = config_path()
        old = _existing(target)
    settings: dict[str, Any] = {
        k: v for k, v in old.items() if k not in {"collections", "project_roots"}
    }
    notes: dict[str, list[str]] = {}
    settings["collections"] = collection_roots
    notes["collections"] = [f"collection: {path}" for path in found_collections] or [
        "no collection found there yet"
    ]
    if roots:
        settings["project_roots"] = [os.fspath(p) for p in (search or [])]
        notes["project_roots"] = [f"project: {path}" for path, _ in found_projects] or [
            "no SkillMeat project found there yet"
        ]
        deepest = max((d for _, d in found_projects), default=0)
        if deepest > int(old.get("scan_depth", DEFAULT_DEPTH)):
            settings["scan_depth"] = deepest
    elif "project_roots" in old:
        settings["project_roots"] = old["project_roots"]
    text = render_config(settings, notes)
    old_text = target.read_text(encoding="utf-8") if target.is_file() else None
    result = {
        "config": str(target),
        "collections": found_collections,
        "projects": [path for path, _ in found_projects],
        "written": False,
    }
    if old_text is not None and old_text != text and not (force or dry_run):
        _print_diff(old_text, text, target)
        typer.echo(
            f"error: {target} exists; run `projcache init` again with --force to replace it "
            "(its other keys are kept)",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    if not dry_run and old_text != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        with cli_errors(state):
            _check(tmp)
        os.replace(tmp, target)
        result["written"] = True
    if as_json:
        emit_json(result)
        return
    if old_text is not None and old_text != text:
        _print_diff(old_text, text, target)
    else:
        typer.echo(text, nl=False)
    verb = "would write" if dry_run else ("wrote" if result["written"] else "unchanged:")
    typer.echo(
        f"{verb} {target}: {len(found_collections)} collection(s), "
        f"{len(found_projects)} SkillMeat project(s)"
    )
    if not dry_run:
        typer.echo("next: `projcache refresh` reads them into the cache")


def _check(path: Path) -> None:
    """Load ``path`` as projcache would; on any error remove it (the old file stays)."""
    from projcache import load_settings

    try:
        load_settings(env={**os.environ, "PROJCACHE_CONFIG": str(path)})
    except BaseException:
        path.unlink()
        raise


def _print_diff(old: str, new: str, target: Path) -> None:
    diff = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{target} (now)",
        tofile=f"{target} (new)",
    )
    typer.echo("".join(diff), nl=False)


def register(app: typer.Typer) -> None:
    """Add ``init`` to ``app``."""
    app.command("init")(init)
