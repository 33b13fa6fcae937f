"""What a refresh lets in from sources pulled from the internet (issue 12, items 1-3).

Links that lead out of a collection or project are not read, walks and hashing
are bounded, and a front matter that expands beyond its limit is refused: each
case is measured by what the cache holds afterwards (records, search hits,
``data.mdb`` size) and by the files the refresh opened.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from factories import CollectionBuilder, ProjectBuilder, age, with_roots
from projcache import ProjectCache, RecordTooLargeError
from projcache import codec as codec_module
from projcache.config import Settings
from projcache.sources import fileio

SECRET = "quokkasecret"


@pytest.fixture
def tree(tree: Path) -> Path:
    """The conftest ``tree``, with an ``outside/`` folder beside the roots."""
    (tree / "outside").mkdir()
    return tree


@pytest.fixture
def cache_settings(cache_settings: Settings, tree: Path) -> Settings:
    """The conftest settings with collection and project roots in ``tree``."""
    return with_roots(cache_settings, tree)


def deployed_pdf(tree: Path) -> ProjectBuilder:
    """A collection ``default`` with skill ``pdf``, deployed in project ``webapp``; written."""
    collection = CollectionBuilder(tree / "collections", "default")
    collection.skill("pdf", front_matter={"description": "PDF."})
    collection.write()
    project = ProjectBuilder(tree / "projects", "webapp")
    project.deploy(collection, "skill", "pdf")
    project.write()
    return project


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every source file a refresh opens, resolved (all reads go through ``open_source``)."""
    paths: list[str] = []
    original = fileio.open_source

    def counting(path: str) -> Any:
        paths.append(os.path.realpath(path))
        return original(path)

    monkeypatch.setattr(fileio, "open_source", counting)
    yield paths


def largest_value(cache_dir: Path) -> int:
    """The size of the largest value stored in any sub-database of the cache."""
    env = lmdb.open(str(cache_dir), max_dbs=64, readonly=True, lock=False)
    try:
        largest = 0
        with env.begin() as txn:
            for name, _ in txn.cursor():
                db = env.open_db(name, txn=txn, create=False)
                for _key, value in txn.cursor(db=db):
                    largest = max(largest, len(value))
        return largest
    finally:
        env.close()


def values_holding(cache_dir: Path, needle: bytes) -> dict[str, int]:
    """How many values of each sub-database contain ``needle`` (deflated frames inflated)."""
    from projcache.codec import checked_payload

    env = lmdb.open(str(cache_dir), max_dbs=64, readonly=True, lock=False)
    try:
        found: dict[str, int] = {}
        with env.begin() as txn:
            for name, _ in txn.cursor():
                db = env.open_db(name, txn=txn, create=False)
                for _key, value in txn.cursor(db=db):
                    if needle in (checked_payload(value) or value):
                        found[name.decode()] = found.get(name.decode(), 0) + 1
        return found
    finally:
        env.close()


class TestLinksOutOfTheRoot:
    """A link out of a collection or project is an error naming it; nothing is read."""

    def test_skill_md_linked_to_a_secret(
        self, cache: ProjectCache, tree: Path, opened: list[str]
    ) -> None:
        """A SKILL.md linked outside: not opened, not searchable, reported with its target."""
        secret = tree / "outside" / "passwd"
        secret.write_text(f"---\ndescription: {SECRET}\n---\n{SECRET}\n", encoding="utf-8")
        collection = CollectionBuilder(tree / "collections", "default")
        collection.skill("good", front_matter={"description": "Fine."})
        collection.skill("evil", front_matter={"description": "placeholder"})
        collection.write()
        main = collection.main_file("skill", "evil")
        main.unlink()
        main.symlink_to(secret)
        report = cache.refresh()
        assert [e.path for e in report.errors] == [str(main)]
        assert f"a link to {secret}" in report.errors[0].message
        assert str(secret) not in opened
        assert cache.search(SECRET).total == 0
        assert cache.get_artifact("default/skill/evil") is None
        assert cache.get_artifact("default/skill/good") is not None

    @pytest.mark.parametrize("target", ["/", "/usr/share", "outside"])
    def test_deployed_copy_linked_out_keeps_last_good_data(
        self, cache: ProjectCache, tree: Path, opened: list[str], target: str
    ) -> None:
        """A deployed folder replaced by a link out: an error, the last hash kept, no walk."""
        project = deployed_pdf(tree)
        age(tree)
        assert cache.refresh().errors == []
        [before] = cache.list_deployments()
        deployed = project.deployed_path("skill", "pdf")
        for child in sorted(deployed.rglob("*"), reverse=True):
            child.unlink() if child.is_file() else child.rmdir()
        deployed.rmdir()
        destination = tree / "outside" if target == "outside" else Path(target)
        (tree / "outside" / "SKILL.md").write_text(SECRET, encoding="utf-8")
        deployed.symlink_to(destination, target_is_directory=True)
        del opened[:]
        report = cache.refresh()
        assert [e.path for e in report.errors] == [str(deployed)]
        assert f"a link to {destination}" in report.errors[0].message
        assert opened == []  # nothing at all was read: the manifests did not change
        [after] = cache.list_deployments()
        assert after.local_hash == before.local_hash
        assert after.state == before.state

    def test_managed_path_through_a_linked_folder(
        self, cache: ProjectCache, tree: Path, opened: list[str]
    ) -> None:
        """A managed ``path`` whose folder on the way is a link out is refused."""
        outside = tree / "outside" / "skills" / "pdf"
        outside.mkdir(parents=True)
        (outside / "SKILL.md").write_text(f"---\ndescription: {SECRET}\n---\n", encoding="utf-8")
        collection = CollectionBuilder(tree / "collections", "default")
        collection.write()
        (collection.path / "vendor").symlink_to(tree / "outside", target_is_directory=True)
        toml = collection.path / "collection.toml"
        with open(toml, "a", encoding="utf-8") as handle:
            handle.write(
                '\n[[artifacts]]\nname = "pdf"\ntype = "skill"\npath = "vendor/skills/pdf"\n'
            )
        report = cache.refresh()
        assert any("vendor: a link to" in e.message for e in report.errors), report.errors
        assert not any(path.startswith(str(tree / "outside")) for path in opened)
        assert cache.search(SECRET).total == 0

    def test_links_inside_the_collection_are_followed(
        self, cache: ProjectCache, tree: Path
    ) -> None:
        """A skill folder linked elsewhere in its collection is read; hashes as SkillMeat's."""
        collection = CollectionBuilder(tree / "collections", "default")
        collection.skill("pdf", front_matter={"description": "Shared pdf."})
        collection.write()
        shared = collection.path / "shared"
        (collection.path / "skills" / "pdf").rename(shared)
        (collection.path / "skills" / "pdf").symlink_to("../shared", target_is_directory=True)
        report = cache.refresh()
        assert report.errors == []
        pdf = cache.get_artifact("default/skill/pdf")
        assert pdf is not None and pdf.description == "Shared pdf."
        from projcache.sources import content_hash

        assert pdf.content_hash == content_hash(shared)


class TestBoundedHashing:
    """A deployed folder larger than ``max_artifact_size`` is an error, not a long walk."""

    def test_oversize_deployed_folder(
        self, cache_settings: Settings, tree: Path, opened: list[str]
    ) -> None:
        """Bytes over the limit are refused before any file of the folder is opened."""
        project = deployed_pdf(tree)
        deployed = project.deployed_path("skill", "pdf")
        (deployed / "model.bin").write_bytes(b"\0" * 300_000)
        settings = dataclasses.replace(cache_settings, max_artifact_size=256 * 1024)
        del opened[:]  # (the factory hashed the copy when deploying it)
        with ProjectCache.open(settings=settings) as cache:
            report = cache.refresh()
        messages = [e.message for e in report.errors]
        assert messages == [
            f"{deployed}: its files hold more than the 262144-byte limit for one artifact; not read"
        ]
        assert not any(path.startswith(str(deployed)) for path in opened)


ISSUE_BOMB = (
    "---\nname: bomb\nbig: &s "
    + "x" * 65536
    + "\nlist: ["
    + ", ".join(["*s"] * 1600)
    + "]\n---\nBody\n"
)


class TestFrontMatterBomb:
    """A small SKILL.md whose YAML expands to 105 MB is refused with a clear error."""

    def test_scalar_alias_bomb_is_refused(
        self, cache: ProjectCache, cache_settings: Settings, tree: Path
    ) -> None:
        """The issue's 70 KB file: an error naming it; data.mdb and every record stay small."""
        collection = CollectionBuilder(tree / "collections", "default")
        collection.skill("good", front_matter={"description": "Fine."})
        collection.write()
        bomb = collection.path / "skills" / "bomb" / "SKILL.md"
        bomb.parent.mkdir()
        bomb.write_text(ISSUE_BOMB, encoding="utf-8")
        assert len(ISSUE_BOMB) < 72_000
        report = cache.refresh()
        assert [e.path for e in report.errors] == [str(bomb)]
        assert "front matter expands to more than 262144 characters" in report.errors[0].message
        assert cache.get_artifact("default/skill/bomb") is None
        cache.close()
        assert largest_value(cache_settings.cache_dir) < 64 * 1024
        assert os.path.getsize(cache_settings.cache_dir / "data.mdb") < 1024 * 1024

    def test_record_limit_in_the_write_path(
        self, cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A record larger than MAX_RECORD_BYTES is refused in the codec; nothing is written."""
        monkeypatch.setattr(codec_module, "MAX_RECORD_BYTES", 64 * 1024)
        huge = {"name": "big", "type": "skill", "collection": "mine", "description": "d" * 70_000}
        with pytest.raises(RecordTooLargeError, match="limit for one stored value"):
            cache.put_artifacts([huge, {"name": "small", "type": "skill", "collection": "mine"}])
        assert cache.get_artifact("mine/skill/big") is None
        assert cache.get_artifact("mine/skill/small") is None
        assert RecordTooLargeError.exit_code == 2


class TestFrontMatterStoredOnce:
    """The front matter lives in the artifact record only, not also in its fingerprint."""

    def test_fingerprint_omits_front_matter_and_rebuilds_keep_it(
        self, cache: ProjectCache, cache_settings: Settings, tree: Path, opened: list[str]
    ) -> None:
        """After a manifest edit the artifact is rebuilt from the record's front matter.

        The skill's own file is not read again (its fingerprint is trusted) and
        the rebuilt record still carries the front matter and what derives from it.
        """
        front = {"title": "PDF toolkit", "description": "Extract text.", "extra": "x" * 1000}
        collection = CollectionBuilder(tree / "collections", "default")
        collection.skill("pdf", front_matter=front, tags=["a"])
        collection.write()
        age(tree)
        assert cache.refresh().errors == []
        before = cache.get_artifact("default/skill/pdf")
        assert before is not None and before.front_matter["extra"] == "x" * 1000

        toml = collection.path / "collection.toml"
        toml.write_text(toml.read_text(encoding="utf-8").replace('"a"', '"b"'), "utf-8")
        del opened[:]
        assert cache.refresh().errors == []
        after = cache.get_artifact("default/skill/pdf")
        assert after is not None
        assert after.tags == ["b"]
        assert (after.front_matter, after.title, after.description) == (
            before.front_matter,
            "PDF toolkit",
            "Extract text.",
        )
        assert str(collection.main_file("skill", "pdf")) not in opened
        cache.close()
        assert values_holding(cache_settings.cache_dir, b"x" * 1000) == {"artifacts": 1}
