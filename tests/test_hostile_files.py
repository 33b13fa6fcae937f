"""Hostile source files (issue scenario 8): a refresh never raises, keeps the last good data.

Malformed TOML and YAML, binary files, non-UTF-8 names, oversized files, symlink
loops and links out of the root, unreadable files, and generated (hypothesis)
mutations of every file SkillMeat reads.  The hostile-file counts are printed;
run with ``-rP`` (or ``-s``) to see them.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damage import assert_clean
from factories import CollectionBuilder, ProjectBuilder, age, examples, toml_document
from projcache import ProjectCache
from projcache.config import Settings
from projcache.models import RefreshReport, SourceError
from projcache.sources import content_hash

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11 only
    import tomli as tomllib


def _without(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    """``record`` minus ``fields``."""
    return {k: v for k, v in record.items() if k not in fields}


def snapshot(cache: ProjectCache) -> dict[str, Any]:
    """Every record a refresh writes, minus refresh bookkeeping (time, staleness, errors)."""
    return {
        "collections": {
            c.name: _without(c.model_dump(), "refreshed_at", "stale", "errors")
            for c in cache.list_collections()
        },
        "projects": {
            p.id: _without(p.model_dump(), "refreshed_at", "stale", "errors")
            for p in cache.list_projects()
        },
        "artifacts": {a.key: a.model_dump() for a in cache.list_artifacts()},
        "deployments": {
            (d.project_id, d.artifact_key): d.model_dump() for d in cache.list_deployments()
        },
    }


def shown(path: Any) -> str:
    """How a path appears in messages: undecodable bytes become U+FFFD."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "replace")


def snapshot_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Readable differences between two snapshots (record by record)."""
    problems = []
    for section, old in before.items():
        new = after[section]
        for key in sorted(set(old) | set(new), key=repr):
            if old.get(key) == new.get(key):
                continue
            if key not in new:
                problems.append(f"{section}[{key!r}] is gone")
            elif key not in old:
                problems.append(f"{section}[{key!r}] appeared: {new[key]}")
            else:
                fields = sorted(f for f in old[key] if old[key][f] != new[key].get(f))
                changes = ", ".join(f"{f}: {old[key][f]!r} -> {new[key][f]!r}" for f in fields)
                problems.append(f"{section}[{key!r}] changed: {changes}")
    return problems


def safe_refresh(cache: ProjectCache) -> RefreshReport:
    """Refresh; an exception fails the test with an ASCII-only message.

    Exceptions about undecodable names carry lone surrogates, which pytest-xdist
    cannot send from a worker (the whole run would stop with an INTERNALERROR).
    """
    try:
        return cache.refresh()
    except Exception as exc:
        failure = f"refresh raised {type(exc).__name__}: {str(exc)!a}"
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if f"{os.sep}projcache{os.sep}" in f.filename]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(ours[-3:]))
    # Outside ``except``, so the original (maybe undecodable) exception is not chained.
    raise AssertionError(f"{failure} (in projcache at {where})")


def errors_naming(report: RefreshReport, needle: str) -> list[SourceError]:
    """The errors of ``report`` whose message contains ``needle``."""
    return [e for e in report.errors if needle in e.message]


# == hostile source files (issue scenario 8) ============================================
#
# A good tree is refreshed first; then one file is made hostile and the tree is
# refreshed again (twice: the second time the kept fingerprint's stat differs,
# so the file is retried).  A refresh never raises, every record stays as it
# was (the last good data), the bad file is named in ``report.errors`` and in
# its collection's or project's ``errors``, and verify stays clean.

HOSTILE_CAP = 4096  # max_file_size in these tests: a few KiB is "very large"
HOSTILE_ARTIFACT_CAP = 4 * HOSTILE_CAP  # max_artifact_size: what one artifact's files may hold
SECRET = "root:x:0:0:quokka-secret-outside-the-tree"  # content that must never enter the cache


@pytest.fixture
def hostile_settings(tree_settings: Settings) -> Settings:
    """Tree settings with a 4 KiB cap on source files and manifests, 16 KiB on one artifact."""
    return dataclasses.replace(
        tree_settings,
        max_file_size=HOSTILE_CAP,
        max_manifest_size=HOSTILE_CAP,
        max_artifact_size=HOSTILE_ARTIFACT_CAP,
    )


@pytest.fixture
def hostile_cache(hostile_settings: Settings) -> Iterator[ProjectCache]:
    """A fresh read-write cache on the hostile-file settings, closed after the test."""
    with ProjectCache.open(settings=hostile_settings) as opened:
        yield opened


@dataclass
class HostileWorld:
    """A collection ``default``, a SkillMeat project ``webapp`` and a plain project ``plain``."""

    root: Path
    collection: CollectionBuilder
    webapp: ProjectBuilder
    plain: ProjectBuilder

    def target(self, name: str) -> Path:
        """The file a hostile case works on, by its short name (a key below)."""
        claude = self.webapp.claude
        paths = {
            "skill": self.collection.main_file("skill", "pdf"),
            "unmanaged-skill": self.collection.main_file("skill", "notes"),
            "command": self.collection.main_file("command", "lint"),
            "local-skill": self.plain.claude / "skills" / "meeting-notes" / "SKILL.md",
            "collection.toml": self.collection.path / "collection.toml",
            "collection.lock": self.collection.path / "collection.lock",
            "deployed.toml": claude / ".skillmeat-deployed.toml",
            "project.toml": claude / ".skillmeat-project.toml",
            # folders: a skill in the collection, a deployed copy, a project's own skill
            "skill-folder": self.collection.path / "skills" / "pdf",
            "deployed-folder": claude / "skills" / "pdf",
            "local-skill-folder": self.plain.claude / "skills" / "meeting-notes",
        }
        return paths[name]

    def owner(self, cache: ProjectCache, name: str) -> list[SourceError]:
        """The ``errors`` of the collection or project whose unit holds target ``name``."""
        if name in (
            "skill",
            "unmanaged-skill",
            "command",
            "collection.toml",
            "collection.lock",
            "skill-folder",
        ):
            record: Any = cache.get_collection("default")
        elif name in ("local-skill", "local-skill-folder"):
            record = cache.get_project(self.plain.id)
        else:
            record = cache.get_project(self.webapp.id)
        assert record is not None, f"the record owning {name} is gone"
        return list(record.errors)


def build_hostile_world(root: Path) -> HostileWorld:
    """A small tree with every kind of source: skills, a command, an agent, TOML, local ones."""
    collection = CollectionBuilder(root / "collections", "default", description="Team skills")
    collection.skill(
        "pdf",
        front_matter={"name": "pdf", "description": "Extract quokka text.", "tags": ["docs"]},
        files={"reference.md": "# Reference\n"},
        tags=["pdf"],
        resolved_version="v1.0.0",
    )
    collection.skill("notes", managed=False, front_matter={"description": "Loose notes."})
    collection.command("lint", front_matter={"description": "Lint the code."}, tags=["quality"])
    collection.agent("auditor", front_matter={"description": "Audits the code."})
    collection.write()
    webapp = ProjectBuilder(root / "projects", "webapp", description="Web shop")
    webapp.deploy(collection, "skill", "pdf", version="1.0.0")
    webapp.deploy(collection, "command", "lint")
    webapp.local("command", "release", front_matter={"description": "Ship a release."})
    webapp.write()
    plain = ProjectBuilder(root / "projects", "plain", managed=False)
    plain.local(
        "skill",
        "meeting-notes",
        front_matter={"description": "Turn meetings into notes."},
        files={"template.md": "# Template\n"},
    )
    age(root)
    return HostileWorld(root, collection, webapp, plain)


@pytest.fixture
def hostile_world(tree: Path, hostile_cache: ProjectCache) -> HostileWorld:
    """The small tree, refreshed once into ``hostile_cache`` without errors."""
    world = build_hostile_world(tree)
    report = hostile_cache.refresh()
    assert report.errors == []
    assert_clean(hostile_cache)
    return world


def refresh_keeps_last_good(
    cache: ProjectCache, world: HostileWorld, target: str, needle: str
) -> RefreshReport:
    """Refresh twice; assert nothing changed, ``needle`` is reported on report and owner."""
    before = snapshot(cache)
    for attempt in ("first", "second"):
        report = safe_refresh(cache)
        assert_clean(cache)
        diff = snapshot_diff(before, snapshot(cache))
        assert diff == [], f"{attempt} refresh lost the last good data:\n" + "\n".join(diff)
        naming = errors_naming(report, needle)
        assert naming, f"{attempt} refresh did not report {needle}; errors: {report.errors}"
        owner = world.owner(cache, target)
        assert all(e in owner for e in naming), f"not on the {target} owner's errors: {owner}"
    return report


# -- the hostile contents ------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(
    ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
)
DEEP_BLOCK = "".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "leaf\n"


def front(block: str, body: str = "Body.\n") -> bytes:
    """A Markdown file with ``block`` as its front matter."""
    return f"---\n{block}\n---\n{body}".encode()


YAML_CONTENTS: dict[str, bytes] = {
    "binary-garbage": bytes(range(256)) * 8,
    "utf16": "---\nname: pdf\n---\nBody\n".encode("utf-16"),
    "latin1-body": b"---\nname: pdf\n---\ncaf\xe9\n",
    "nul-in-yaml": front("name: pdf\ndescription: a\x00b"),
    "billion-laughs": front(BILLION_LAUGHS),
    "deep-flow": front("x: " + "[" * 1900 + "]" * 1900),
    "deep-block": front(DEEP_BLOCK),
    "tabs": front("name: pdf\n\tdescription: tabbed"),
    "python-object": front("description: !!python/object/apply:os.mkdir ['{pwned}']"),
    "python-name": front("description: !!python/name:os.system"),
    "unknown-tag": front("description: !vault |\n  abc"),
    "bad-timestamp-tag": front("created: !!timestamp yesterday"),
    "bad-bool-tag": front("draft: !!bool maybe"),
    "empty-int-tag": front("version: !!int"),
    "empty-float-tag": front("score: !!float"),
    "unclosed": b"---\nname: pdf\ndescription: never closed\n",
    "list-front-matter": front("- a\n- b"),
    "scalar-front-matter": front("just text"),
    "unhashable-key": front("? [a, b]\n: c"),
    "duplicate-anchor-bomb": front("a: &a [*a]"),
    # A 2 KiB string aliased 200 times: under 4 KiB on disk, 400 KiB decoded.
    "scalar-alias-bomb": front(f"big: &s {'q' * 2048}\nbomb: [{', '.join(['*s'] * 200)}]"),
    "over-cap": front("name: pdf", "x" * (HOSTILE_CAP + 100)),
}
TOML_CONTENTS: dict[str, bytes] = {
    "invalid-syntax": b"[collection\nname = ",
    "binary-garbage": bytes(range(256)) * 8,
    "utf16": '[project]\nname = "x"\n'.encode("utf-16"),
    "nul-byte": b'[collection]\nname = "a\x00b"\n',
    "deep-arrays": b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n",
    "deep-tables": ("[" + ".".join(["t"] * 40) + "]\nleaf = 1\n").encode(),
    "duplicate-key": b'[project]\nname = "a"\nname = "b"\n',
    "bad-date": b"when = 2026-13-45T99:00:00Z\n",
    "over-cap": b"# " + b"x" * (HOSTILE_CAP + 100) + b"\n",
}
# A table where the file wants another shape: valid TOML, wrong structure.
WRONG_SHAPE = {
    "collection.toml": b"collection = 5\n",
    "collection.lock": b'lock = "entries"\n',
    "deployed.toml": b"deployed = { artifact_name = 1 }\n",
    "project.toml": b"project = [1, 2]\n",
}
# Appended to the good file: one bad entry; the good entries stay as they were.
BAD_ENTRIES = {
    "collection.toml": {
        "nameless": '\n[[artifacts]]\nname = 5\ntype = "skill"\n',
        "bogus-type": '\n[[artifacts]]\nname = "ghost"\ntype = "Bogus Type"\n',
        "path-outside": '\n[[artifacts]]\nname = "evil"\ntype = "skill"\npath = "../../etc"\n',
        "nul-in-path": (
            '\n[[artifacts]]\nname = "nul"\ntype = "skill"\npath = "skills/nu\\u0000l"\n'
        ),
        "duplicate": '\n[[artifacts]]\nname = "lint"\ntype = "command"\n',
    },
    "collection.lock": {
        "entry-not-table": '\n[lock.entries]\n"x::skill" = 5\n',
    },
    "deployed.toml": {
        "bogus-type": '\n[[deployed]]\nartifact_name = "x"\nartifact_type = "Bogus Type"\n',
        "bad-date": (
            '\n[[deployed]]\nartifact_name = "auditor"\nartifact_type = "agent"\n'
            'deployed_at = "yesterday"\n'
        ),
        "path-outside": (
            '\n[[deployed]]\nartifact_name = "auditor"\nartifact_type = "agent"\n'
            'artifact_path = "../../../etc/passwd"\n'
        ),
        "nul-in-path": (
            '\n[[deployed]]\nartifact_name = "auditor"\nartifact_type = "agent"\n'
            'artifact_path = "agents/audi\\u0000tor.md"\n'
        ),
        "key-too-long": f'\n[[deployed]]\nartifact_name = "{"z" * 600}"\nartifact_type = "skill"\n',
        "not-a-table": "\n[[deployed]]\n[deployed.nested]\nx = 1\n",
    },
}


def _unlink(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _link_to_system_path(path: Path, target: str) -> None:
    """Replace ``path`` with a symlink to the system's ``target`` (skip where there is none)."""
    if not os.path.exists(target):
        pytest.skip(f"no {target} on this system")
    _unlink(path)
    os.symlink(target, path, target_is_directory=os.path.isdir(target))


def make_fifo(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a FIFO (opening it for reading would block)."""
    _unlink(path)
    os.mkfifo(path)


def make_directory(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a directory of the same name (holding a file)."""
    _unlink(path)
    path.mkdir()
    (path / "inside.md").write_text("---\ndescription: inside\n---\n", encoding="utf-8")


def make_self_symlink(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a symlink to itself (ELOOP)."""
    _unlink(path)
    os.symlink(path.name, path)


def make_proc_mem(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a symlink to ``/proc/self/mem``: a regular file whose read fails."""
    _link_to_system_path(path, "/proc/self/mem")


def make_unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewrite the file (so its stat changes), then ``chmod 000`` it.

    A mode change alone leaves mtime, size and inode as they were, so a refresh
    rightly keeps trusting the cached data; the rewrite makes it read the file.
    As root (who reads anyway) opening it fails with EACCES instead:
    ``fileio.open_source``, the one place source files are opened, is wrapped
    to raise ``PermissionError(EACCES)`` for this path, as the kernel would.
    """
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n")
    if os.geteuid() != 0:
        path.chmod(0)
        return
    from projcache.sources import fileio

    original = fileio.open_source
    denied = os.path.realpath(path)

    def open_source(candidate: str) -> Any:
        if os.path.realpath(candidate) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), candidate)
        return original(candidate)

    monkeypatch.setattr(fileio, "open_source", open_source)


FILE_KINDS: dict[str, Callable[[Path, pytest.MonkeyPatch], None]] = {
    "fifo": make_fifo,
    "directory": make_directory,
    "self-symlink": make_self_symlink,
    "proc-self-mem": make_proc_mem,
    "unreadable": make_unreadable,
}


def _outside(path: Path) -> Path:
    """A folder beside ``collections/`` and ``projects/``: outside every source root."""
    for parent in path.parents:
        if parent.name in ("collections", "projects"):
            outside = parent.parent / "outside"
            outside.mkdir(exist_ok=True)
            return outside
    raise AssertionError(f"{path} is not in the tree")


def link_to_outside_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a symlink to a secret file outside the collection/project."""
    secret = _outside(path) / "passwd"
    secret.write_text(f"---\ndescription: {SECRET}\n---\n{SECRET}\n", encoding="utf-8")
    _unlink(path)
    os.symlink(secret, path)


def link_to_etc_passwd(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a symlink to ``/etc/passwd`` (the issue's case)."""
    _link_to_system_path(path, "/etc/passwd")


def link_to_relative_outside(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a relative ``../..`` symlink climbing out of the tree."""
    secret = _outside(path) / "relative-secret.md"
    secret.write_text(f"---\ndescription: {SECRET}\n---\n", encoding="utf-8")
    _unlink(path)
    os.symlink(os.path.relpath(secret, path.parent), path)


def link_to_outside_folder(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the folder with a symlink to an outside folder holding a secret SKILL.md."""
    secret = _outside(path) / "skill"
    secret.mkdir(exist_ok=True)
    (secret / "SKILL.md").write_text(f"---\ndescription: {SECRET}\n---\n", encoding="utf-8")
    _unlink(path)
    os.symlink(secret, path, target_is_directory=True)


def link_to_usr_share(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the folder with a symlink to ``/usr/share`` (665 MB read by 0.1.0)."""
    _link_to_system_path(path, "/usr/share")


def link_to_filesystem_root(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the folder with a symlink to ``/`` (0.1.0 walked into /proc)."""
    _unlink(path)
    os.symlink("/", path, target_is_directory=True)


def link_inside_to_outside(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Add, inside the folder, a file that is a symlink to a secret outside the tree."""
    secret = _outside(path) / "inner-secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    os.symlink(secret, path / "notes.txt")


def too_many_files(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fill the folder with more entries than one artifact's walk looks at.

    The cap of a walk (``MAX_TREE_ENTRIES``, 10,000) is lowered to 100 here: what is
    tested is what happens past the cap, and 10,001 files took 5-11 s per case to
    create and delete on a loaded disk.  Every ``SourceRoot`` a refresh makes from now
    on takes the lowered default.
    """
    from projcache.sources.fileio import SourceRoot

    cap = 100
    defaults = SourceRoot.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "max_entries", cap)
    spam = path / "spam"
    spam.mkdir()
    for number in range(cap + 1):
        (spam / f"{number}.md").touch()


def too_many_bytes(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put more bytes in the folder than ``max_artifact_size`` (files each under max_file_size)."""
    for number in range(5):
        (path / f"blob{number}.bin").write_bytes(b"\0" * (HOSTILE_CAP - 1))


# Hostile files whose kind is "a link out of the root": each is one more corpus case.
LINK_FILE_KINDS: dict[str, Callable[[Path, pytest.MonkeyPatch], None]] = {
    "outside-file-symlink": link_to_outside_file,
    "etc-passwd-symlink": link_to_etc_passwd,
    "relative-outside-symlink": link_to_relative_outside,
}
FOLDER_KINDS: dict[str, Callable[[Path, pytest.MonkeyPatch], None]] = {
    "outside-folder-symlink": link_to_outside_folder,
    "usr-share-symlink": link_to_usr_share,
    "root-symlink": link_to_filesystem_root,
    "inner-symlink-out": link_inside_to_outside,
    "too-many-files": too_many_files,
    "too-many-bytes": too_many_bytes,
}
FILE_KINDS.update(LINK_FILE_KINDS)
FILE_KINDS.update(FOLDER_KINDS)


@dataclass(frozen=True)
class HostileCase:
    """One hostile file: which target, and how it is made hostile."""

    target: str
    kind: str
    content: Optional[bytes] = None
    append: Optional[str] = None

    @property
    def id(self) -> str:
        """The pytest id: ``<target>-<kind>``."""
        return f"{self.target}-{self.kind}"


YAML_FOR_EVERY_TARGET = (
    "binary-garbage",
    "billion-laughs",
    "scalar-alias-bomb",
    "python-object",
    "over-cap",
)


def _hostile_cases() -> list[HostileCase]:
    cases = [HostileCase("skill", kind, content) for kind, content in YAML_CONTENTS.items()]
    file_kinds = [kind for kind in FILE_KINDS if kind not in FOLDER_KINDS]
    cases += [HostileCase("skill", kind) for kind in file_kinds]
    for target in ("unmanaged-skill", "command", "local-skill"):
        for kind in YAML_FOR_EVERY_TARGET:
            cases.append(HostileCase(target, kind, YAML_CONTENTS[kind]))
        cases += [HostileCase(target, kind) for kind in file_kinds]
    for target in ("skill-folder", "deployed-folder", "local-skill-folder"):
        cases += [HostileCase(target, kind) for kind in FOLDER_KINDS]
    for target in ("collection.toml", "collection.lock", "deployed.toml", "project.toml"):
        cases += [HostileCase(target, kind, content) for kind, content in TOML_CONTENTS.items()]
        cases.append(HostileCase(target, "wrong-shape", WRONG_SHAPE[target]))
        cases += [HostileCase(target, kind) for kind in file_kinds]
        for kind, text in BAD_ENTRIES.get(target, {}).items():
            cases.append(HostileCase(target, f"entry-{kind}", append=text))
    return cases


HOSTILE_CASES = _hostile_cases()


class TestHostileFiles:
    """Hand-made hostile files: never a crash, last good data kept, the file reported."""

    @pytest.mark.parametrize("case", HOSTILE_CASES, ids=lambda case: case.id)
    def test_hostile_file(
        self,
        case: HostileCase,
        hostile_cache: ProjectCache,
        hostile_world: HostileWorld,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A hostile file is reported on report and record; every record keeps its old values.

        Unreadable files: ``chmod 000`` when not root; as root, opening the file
        fails with EACCES (see :func:`make_unreadable`).  FIFO, directory,
        self-symlink (ELOOP) and ``/proc/self/mem`` (EIO on read) are their own cases.
        """
        path = hostile_world.target(case.target)
        pwned = path.parent / "pwned"
        if case.kind in FILE_KINDS:
            FILE_KINDS[case.kind](path, monkeypatch)
        elif case.append is not None:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(case.append)
        else:
            assert case.content is not None
            path.write_bytes(case.content.replace(b"{pwned}", os.fsencode(pwned)))
        report = refresh_keeps_last_good(hostile_cache, hostile_world, case.target, str(path))
        assert not pwned.exists(), "a YAML tag ran code"
        if case.kind in LINK_FILE_KINDS or "symlink" in case.kind:
            assert hostile_cache.search("quokka-secret-outside-the-tree").total == 0
            errors = errors_naming(report, str(path))
            if case.kind not in ("self-symlink", "proc-self-mem"):
                assert any("outside" in e.message for e in errors), errors

    def test_collection_named_like_a_projects_local_collection(
        self, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """``name = "@<project id>"`` in collection.toml must not take over a project's artifacts.

        ``@<id>`` is the pseudo-collection of a project's own artifacts: a
        collection of that name is refused like a name with ``/`` (folder name used).
        """
        toml = hostile_world.target("collection.toml")
        text = toml.read_text(encoding="utf-8")
        taken = f'name = "{hostile_world.plain.local_collection}"'
        toml.write_text(text.replace('name = "default"', taken, 1), encoding="utf-8")
        refresh_keeps_last_good(hostile_cache, hostile_world, "collection.toml", str(toml))


def write_bytes_path(path: bytes, content: bytes) -> None:
    """Create the file at the bytes ``path`` (any name Linux allows) holding ``content``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


# An artifact with an undecodable name: (target whose owner reports it, base, bytes path).
UNDECODABLE_ARTIFACTS = {
    "collection-skill": ("collection.toml", "collection", b"skills/sk\xff\xfeill"),
    "collection-command": ("collection.toml", "collection", b"commands/c\xe9.md"),
    "webapp-local-skill": ("deployed.toml", "webapp", b"skills/lo\x80cal"),
    "plain-local-agent": ("local-skill", "plain", b"agents/ag\xc3\x28ent.md"),
}


class TestHostileNames:
    """File and folder names that are not UTF-8 (bytes names, as Linux allows)."""

    @pytest.fixture(autouse=True)
    def _quiet_logs(self) -> Iterator[None]:
        """Keep projcache's warnings out of the report: they may hold lone surrogates.

        pytest-xdist cannot send such text from a worker, and the whole run would
        stop with an INTERNALERROR instead of failing one test.
        """
        logger = logging.getLogger("projcache")
        level = logger.level
        logger.setLevel(logging.CRITICAL + 1)
        yield
        logger.setLevel(level)

    @pytest.mark.parametrize("where", sorted(UNDECODABLE_ARTIFACTS))
    def test_undecodable_artifact_name_is_reported(
        self, where: str, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """An artifact whose name is not UTF-8 is skipped and reported; the rest is kept."""
        target, base_name, relative = UNDECODABLE_ARTIFACTS[where]
        base = {
            "collection": hostile_world.collection.path,
            "webapp": hostile_world.webapp.claude,
            "plain": hostile_world.plain.claude,
        }[base_name]
        path = os.fsencode(base) + b"/" + relative
        text = b"---\ndescription: undecodable\n---\nBody.\n"
        if relative.startswith(b"skills/"):
            os.makedirs(path, exist_ok=True)
            write_bytes_path(path + b"/SKILL.md", text)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_bytes_path(path, text)
        shown_path = shown(path)
        if shown_path.endswith(".md"):
            shown_path = shown_path[: -len(".md")]  # messages name the artifact, not its file
        refresh_keeps_last_good(hostile_cache, hostile_world, target, shown_path)

    def test_undecodable_file_inside_a_skill_is_hashed(
        self, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """A file with an undecodable name inside a skill is hashed like any other, no error."""
        folder = hostile_world.collection.artifact_path("skill", "pdf")
        before = hostile_cache.get_artifact("default/skill/pdf")
        write_bytes_path(os.fsencode(folder) + b"/data-\xff.bin", b"\x00\x01 binary")
        report = hostile_cache.refresh()
        assert report.errors == []
        assert_clean(hostile_cache)
        after = hostile_cache.get_artifact("default/skill/pdf")
        assert before is not None and after is not None
        assert after.content_hash == content_hash(folder) != before.content_hash
        assert after.model_copy(update={"content_hash": None}) == before.model_copy(
            update={"content_hash": None}
        )

    @pytest.mark.parametrize("kind", ["collection", "project"])
    def test_undecodable_unit_folder(
        self, kind: str, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """A collection or project folder whose name is not UTF-8: no crash, others kept.

        It is either cached or reported (naming the folder); what was cached stays.
        """
        if kind == "collection":
            folder = os.fsencode(hostile_world.root / "collections") + b"/team-\xff"
            os.makedirs(folder + b"/skills/odd")
            write_bytes_path(folder + b"/skills/odd/SKILL.md", b"---\ndescription: Odd.\n---\n")
        else:
            folder = os.fsencode(hostile_world.root / "projects") + b"/shop-\xff"
            os.makedirs(folder + b"/.claude/commands")
            write_bytes_path(folder + b"/.claude/commands/odd.md", b"---\ndescription: Odd.\n---\n")
        before = snapshot(hostile_cache)
        report = safe_refresh(hostile_cache)
        assert_clean(hostile_cache)
        after = snapshot(hostile_cache)
        kept = {s: {k: v for k, v in after[s].items() if k in before[s]} for s in before}
        assert snapshot_diff(before, kept) == []
        added = [k for s in after for k in after[s] if k not in before[s]]
        reported = errors_naming(report, shown(folder))
        assert added or reported, f"{shown(folder)} neither cached nor reported: {report.errors}"


SYMLINK_LOOPS: dict[str, Callable[[HostileWorld], list[tuple[Path, str]]]] = {
    "between-skill-folders": lambda w: [
        (w.collection.artifact_path("skill", "pdf") / "to-notes", "../notes"),
        (w.collection.artifact_path("skill", "notes") / "to-pdf", "../pdf"),
    ],
    "skill-to-its-parent": lambda w: [
        (w.collection.artifact_path("skill", "pdf") / "up", ".."),
    ],
    "skill-to-itself": lambda w: [
        (w.collection.artifact_path("skill", "pdf") / "self", "."),
    ],
    "collections-root-to-itself": lambda w: [
        (w.root / "collections" / "again", "."),
    ],
    "projects-root-to-the-tree": lambda w: [
        (w.root / "projects" / "tree", ".."),
    ],
    "deployed-copy-between-folders": lambda w: [
        (w.webapp.claude / "skills" / "pdf" / "to-claude", "../.."),
    ],
    "claude-skills-to-claude": lambda w: [
        (w.webapp.claude / "skills" / "loop", ".."),
    ],
}


class TestSymlinkLoops:
    """Symlink loops inside and between folders: no hang, no crash, nothing lost."""

    @pytest.mark.parametrize("loop", sorted(SYMLINK_LOOPS))
    def test_symlink_loop(
        self, loop: str, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """Links to folders are never followed into; records stay, any error names the link."""
        links = SYMLINK_LOOPS[loop](hostile_world)
        for link, destination in links:
            os.symlink(destination, link)
        before = snapshot(hostile_cache)
        for _attempt in range(2):
            report = safe_refresh(hostile_cache)
            assert_clean(hostile_cache)
            assert snapshot_diff(before, snapshot(hostile_cache)) == []
            for error in report.errors:
                assert any(str(link) in error.message for link, _ in links), error


# -- generated hostile files (hypothesis) ----------------------------------------------------

GENERATED_EXAMPLES = examples(100)
# The hypothesis settings of every generated-file test: each example refreshes a real cache.
GENERATED = settings(
    max_examples=GENERATED_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TOML_TARGETS = ("collection.toml", "collection.lock", "deployed.toml", "project.toml")
NASTY_TEXT = (
    "",
    " ",
    "pdf",
    "lint",
    "notes",
    "auditor",
    "skill",
    "command",
    "agent",
    "hook",
    "mcp",
    "bogus",
    "default",
    "a/b",
    ".",
    "..",
    "../x",
    "/etc/passwd",
    "skills/pdf",
    "skills/p\x00df",
    "commands/lint.md",
    "x" * 300,
    "@",
    "café",
    "名前",
    "\t",
    "line\nbreak",
    "1.0.0",
    "v1.0.0",
    "2026-01-01T00:00:00Z",
    "not a date",
    "\x7f",
    "\u202e",
    "\ufeff",
)
FIELDS = {
    "collection.toml": {
        "[collection]": ("name", "version", "description", "created", "updated"),
        "[[artifacts]]": (
            "name",
            "type",
            "path",
            "origin",
            "upstream",
            "version_spec",
            "resolved_sha",
            "resolved_version",
            "added",
            "last_updated",
            "tags",
            "metadata",
        ),
    },
    "collection.lock": {
        "[lock]": ("version",),
        "entry": ("content_hash", "upstream", "resolved_sha", "resolved_version", "fetched"),
    },
    "deployed.toml": {
        "[[deployed]]": (
            "artifact_name",
            "artifact_type",
            "from_collection",
            "deployed_at",
            "artifact_path",
            "content_hash",
            "collection_sha",
            "local_modifications",
            "version",
            "resolved_version",
            "version_lineage",
        ),
    },
    "project.toml": {"[project]": ("name", "description", "path", "created")},
}


def toml_values() -> st.SearchStrategy[Any]:
    """TOML values of every kind, with texts that mean something to the readers."""
    scalars = st.one_of(
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=12),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.booleans(),
        st.floats(),
        st.datetimes(timezones=st.none() | st.just(timezone.utc)),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )


def table_fields(
    data: st.DataObject, keys: tuple[str, ...], base: dict[str, Any]
) -> dict[str, Any]:
    """``base`` (maybe emptied) with some of ``keys`` set to drawn values."""
    fields = dict(base) if data.draw(st.booleans(), label="keep base") else {}
    fields.update(
        data.draw(st.dictionaries(st.sampled_from(keys), toml_values(), max_size=4), label="fields")
    )
    return fields


def structured_toml(data: st.DataObject, target: str, world: HostileWorld) -> str:
    """A TOML document shaped like ``target``, with drawn values in its fields."""
    fields = FIELDS[target]
    if target == "collection.toml":
        tables = [("[collection]", table_fields(data, fields["[collection]"], {"name": "default"}))]
        for entry in world.collection.entries.values():
            if data.draw(st.booleans(), label="keep entry"):
                tables.append(("[[artifacts]]", table_fields(data, fields["[[artifacts]]"], entry)))
        return toml_document(tables)
    if target == "collection.lock":
        tables = [("[lock]", table_fields(data, fields["[lock]"], {"version": "1.0.0"}))]
        names = st.sampled_from(["pdf::skill", "lint::command", "x::bogus", "::", "a::b::c"])
        keys = st.lists(names | st.text(max_size=8), max_size=4, unique=True)
        for key in data.draw(keys, label="keys"):
            header = "[lock.entries." + json.dumps(key) + "]"
            tables.append((header, table_fields(data, fields["entry"], {})))
        return toml_document(tables)
    if target == "deployed.toml":
        tables = []
        for entry in world.webapp.deployed.values():
            if data.draw(st.booleans(), label="keep entry"):
                tables.append(("[[deployed]]", table_fields(data, fields["[[deployed]]"], entry)))
        for _ in range(data.draw(st.integers(0, 2), label="extra entries")):
            tables.append(("[[deployed]]", table_fields(data, fields["[[deployed]]"], {})))
        return toml_document(tables)
    base = {"name": "webapp", "description": "Web shop"}
    return toml_document([("[project]", table_fields(data, fields["[project]"], base))])


def mutated(data: st.DataObject, good: bytes) -> bytes:
    """``good`` with a few bytes cut out and others put in."""
    result = good
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        start = data.draw(st.integers(0, len(result)), label="at")
        cut = data.draw(st.integers(0, 8), label="cut")
        put = data.draw(st.binary(max_size=6) | st.text(max_size=6).map(str.encode), label="put")
        result = result[:start] + put + result[start + cut :]
    return result


def _depth(value: Any, level: int = 0) -> int:
    """The deepest level of nested tables and arrays (the document itself is level 0)."""
    if isinstance(value, dict):
        return max([level, *(_depth(v, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, level + 1) for v in value)])
    return level


def toml_unreadable(content: bytes, target: str) -> bool:
    """Whether ``content`` cannot be read as ``target`` at all, by an independent oracle.

    Too large, not UTF-8, not TOML, nested deeper than 32 levels, or its main
    table or array of the wrong type: the reader must then keep the last good data.
    """
    if len(content) > HOSTILE_CAP:
        return True
    try:
        document = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return True
    if _depth(document) > 32:
        return True
    shapes = {
        "collection.toml": (("collection", dict), ("artifacts", list)),
        "collection.lock": (("lock", dict),),
        "deployed.toml": (("deployed", list),),
        "project.toml": (("project", dict),),
    }[target]
    if any(key in document and not isinstance(document[key], kind) for key, kind in shapes):
        return True
    lock = document.get("lock", {})
    return target == "collection.lock" and not isinstance(lock.get("entries", {}), dict)


def restore(cache: ProjectCache, path: Path, good: bytes, baseline: dict[str, Any]) -> None:
    """Put the good file back; after a refresh the cache must be as it was at the start."""
    path.write_bytes(good)
    report = safe_refresh(cache)
    assert report.errors == []
    diff = snapshot_diff(baseline, snapshot(cache))
    assert diff == [], "the good file back, the cache is not as before:\n" + "\n".join(diff)


@pytest.mark.generated
class TestGeneratedHostileFiles:
    """Hypothesis-generated TOML and front matter: never a crash, never a mix of old and new."""

    @pytest.mark.parametrize("target", TOML_TARGETS)
    def test_generated_toml(
        self, target: str, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """Binary, random text, mutated and wrongly typed TOML; unreadable ones keep old data."""
        path = hostile_world.target(target)
        good = path.read_bytes()
        baseline = snapshot(hostile_cache)
        tried: list[bytes] = []

        @GENERATED
        @given(data=st.data())
        def attempt(data: st.DataObject) -> None:
            if path.read_bytes() != good:  # the last example failed before its restore
                restore(hostile_cache, path, good, baseline)
            kind = data.draw(st.sampled_from(["binary", "text", "mutated", "structured", "big"]))
            if kind == "binary":
                content = data.draw(st.binary(max_size=300), label="content")
            elif kind == "text":
                content = data.draw(st.text(max_size=300), label="content").encode()
            elif kind == "mutated":
                content = mutated(data, good)
            elif kind == "structured":
                content = structured_toml(data, target, hostile_world).encode()
            else:
                content = good + b"#" * data.draw(st.integers(0, 2 * HOSTILE_CAP), label="pad")
            tried.append(content)
            path.write_bytes(content)
            report = safe_refresh(hostile_cache)
            assert_clean(hostile_cache)
            for error in report.errors:
                assert str(hostile_world.root) in error.message, error
            if toml_unreadable(content, target):
                diff = snapshot_diff(baseline, snapshot(hostile_cache))
                assert diff == [], "an unreadable file changed records:\n" + "\n".join(diff)
                assert [e for e in report.errors if e.path == str(path)], report.errors
                assert errors_naming(report, str(path)), report.errors
            restore(hostile_cache, path, good, baseline)

        attempt()
        print(f"hostile source files, generated {target}: {len(tried)}")
        assert len(tried) >= GENERATED_EXAMPLES // 2, f"only {len(tried)} generated {target}"

    def test_generated_front_matter(
        self, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """Random YAML front matter in SKILL.md: read afresh, or the old data and an error."""
        path = hostile_world.target("skill")
        folder = path.parent
        good = path.read_bytes()
        baseline = snapshot(hostile_cache)
        tried: list[bytes] = []
        snippets = st.sampled_from(
            [
                "!!binary aGVsbG8=",
                "!!set {a, b}",
                "!!omap [a: 1]",
                "!!timestamp 2001-12-14",
                "created: !!timestamp last week",
                "draft: !!bool perhaps",
                "size: !!int",
                "!!float .nan",
                "!!python/tuple [1, 2]",
                "!!python/object:os.system {}",
                "<<: {a: 1}",
                "&a scalar\nb: *a",
                "? complex\n: key",
                "%YAML 1.1",
                "description: [unclosed",
                "description: {a: 1",
                "'quoted: ",
                "tags: &t [a]\nmore: *t",
                "\t- tabbed",
                "- list",
                "null",
                "...",
            ]
        )
        yaml_data = st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=6), inner, max_size=3)
            ),
            max_leaves=10,
        )

        @GENERATED
        @given(data=st.data())
        def attempt(data: st.DataObject) -> None:
            if path.read_bytes() != good:  # the last example failed before its restore
                restore(hostile_cache, path, good, baseline)
            kind = data.draw(st.sampled_from(["binary", "text", "snippet", "data", "mutated"]))
            if kind == "binary":
                content = data.draw(st.binary(max_size=300), label="content")
            elif kind == "text":
                block = data.draw(st.text(max_size=200), label="block")
                content = f"---\n{block}\n---\nBody.\n".encode()
            elif kind == "snippet":
                lines = data.draw(st.lists(snippets, min_size=1, max_size=3), label="lines")
                content = front("\n".join(lines))
            elif kind == "data":
                value = data.draw(yaml_data, label="value")
                shared = data.draw(st.booleans(), label="alias it")
                document = {"description": value, "again": value} if shared else {"x": value}
                content = front(yaml.dump(document, allow_unicode=True))
            else:
                content = mutated(data, good)
            tried.append(content)
            before = hostile_cache.get_artifact("default/skill/pdf")
            path.write_bytes(content)
            report = safe_refresh(hostile_cache)
            assert_clean(hostile_cache)
            after = hostile_cache.get_artifact("default/skill/pdf")
            assert after is not None, "the skill vanished"
            if errors_naming(report, str(folder)):
                assert after == before, "an unreadable SKILL.md changed the record"
            else:
                assert after.content_hash == content_hash(folder), "new front matter, old hash"
            restore(hostile_cache, path, good, baseline)

        attempt()
        print(f"hostile source files, generated SKILL.md: {len(tried)}")
        assert len(tried) >= GENERATED_EXAMPLES // 2, f"only {len(tried)} generated SKILL.md"


def test_hostile_catalogue_size() -> None:
    """At least 130 hand-made hostile files, plus 500 generated ones (printed by each test)."""
    hand_made = (
        len(HOSTILE_CASES)
        + 1  # a collection named like a project's local collection
        + len(UNDECODABLE_ARTIFACTS)
        + 1  # an undecodable file inside a skill
        + 2  # undecodable collection and project folders
        + len(SYMLINK_LOOPS)
    )
    generated = GENERATED_EXAMPLES * (len(TOML_TARGETS) + 1)
    print(f"hostile source files: {hand_made} hand-made, up to {generated} generated")
    assert hand_made >= 130, f"only {hand_made} hand-made hostile files"
