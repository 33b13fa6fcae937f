"""The refresh floor: raw py-lmdb plus ``os.scandir`` doing the least work a refresh can.

A refresh by stat fingerprints must at least stat every source file and compare
with what it stored; when files changed it must read them, hash the artifact
(SkillMeat's content hash), parse the front matter and write the record, its
postings and the new fingerprints in one durable transaction.  A rebuild reads
everything: manifests (TOML), every artifact, every deployed copy.  This class
does exactly that and nothing more (no validation, no stale-posting removal,
no error handling), so it is a lower bound, not a competitor.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from pathlib import Path
from typing import Any

import lmdb
import orjson
import yaml
from bench_data import FOLDERS, SourceTree
from bench_engines import simple_terms

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_FP = struct.Struct("<qqq")
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TYPES = {folder: type_ for type_, folder in FOLDERS.items()}


def tree_hash(path: Path) -> str:
    """SkillMeat's content hash: a file's bytes, or a folder's sorted relative paths and bytes."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    for item in sorted(path.rglob("*")):
        if item.is_file():
            digest.update(str(item.relative_to(path)).encode())
            digest.update(item.read_bytes())
    return digest.hexdigest()


def _front_matter(text: str) -> dict[str, Any]:
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 4)
    data = yaml.load(text[4:end], Loader=_LOADER)
    return data if isinstance(data, dict) else {}


class RefreshFloor:
    """A fingerprint store in raw LMDB over one :class:`SourceTree`."""

    def __init__(self, path: Path, tree: SourceTree):
        path.mkdir(parents=True, exist_ok=True)
        self.tree = tree
        self.env = lmdb.open(str(path), map_size=1 << 34, max_dbs=4, sync=True, metasync=True)
        self.records = self.env.open_db(b"records")
        self.postings = self.env.open_db(b"postings", dupsort=True)
        self.sources = self.env.open_db(b"sources")

    def close(self) -> None:
        self.env.close()

    def scan(self) -> dict[str, dict[bytes, bytes]]:
        """Stat every file of each collection and project: root -> {path: (mtime, size, inode)}."""
        found: dict[str, dict[bytes, bytes]] = {}
        for root in (*self.tree.collections, *self.tree.projects):
            files: dict[bytes, bytes] = {}
            stack = [os.fspath(root)]
            while stack:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            files[os.fsencode(entry.path)] = _FP.pack(
                                st.st_mtime_ns, st.st_size, st.st_ino
                            )
            found[os.fspath(root)] = files
        return found

    def _artifact(self, collection: Path, type_: str, name: str) -> dict[str, Any]:
        folder = collection / FOLDERS[type_]
        target = folder / name if type_ == "skill" else folder / f"{name}.md"
        main = target / "SKILL.md" if type_ == "skill" else target
        front = _front_matter(main.read_text(encoding="utf-8"))
        return {
            "name": name,
            "type": type_,
            "collection": collection.name,
            "path": str(target),
            "title": front.get("title"),
            "description": front.get("description") or "",
            "tags": front.get("tags") or [],
            "version": front.get("version"),
            "content_hash": tree_hash(target),
        }

    def _put(self, txn: Any, record: dict[str, Any]) -> None:
        key = f"{record['collection']}/{record['type']}/{record['name']}".encode()
        txn.put(key, orjson.dumps(record), db=self.records)
        for token, mask in simple_terms(record).items():
            txn.put(token, key + b"\x00" + bytes((mask,)), dupdata=True, db=self.postings)

    def refresh(self) -> int:
        """Stat everything, re-read changed artifacts; return how many files changed."""
        with self.env.begin(db=self.sources) as txn:
            stored = dict(txn.cursor())
        now = {path: fp for files in self.scan().values() for path, fp in files.items()}
        changed = [path for path, fp in now.items() if stored.get(path) != fp]
        if not changed:
            return 0
        artifacts = set()
        for raw in changed:
            path = Path(os.fsdecode(raw))
            for parent in path.parents:
                if parent.name in _TYPES and parent.parent in self.tree.collections:
                    relative = path.relative_to(parent)
                    name = relative.parts[0]
                    name = name[:-3] if name.endswith(".md") else name
                    artifacts.add((parent.parent, _TYPES[parent.name], name))
                    break
        with self.env.begin(write=True) as txn:
            for collection, type_, name in sorted(artifacts):
                self._put(txn, self._artifact(collection, type_, name))
            for raw_path in changed:
                txn.put(raw_path, now[raw_path], db=self.sources)
        return len(changed)

    def rebuild(self) -> int:
        """Read every manifest, artifact and deployed copy into empty stores; return artifacts."""
        with self.env.begin(write=True) as txn:
            for db in (self.records, self.postings, self.sources):
                txn.drop(db, delete=False)
        now = self.scan()
        count = 0
        for collection in self.tree.collections:
            manifest = tomllib.loads((collection / "collection.toml").read_text("utf-8"))
            tomllib.loads((collection / "collection.lock").read_text("utf-8"))
            with self.env.begin(write=True) as txn:
                for entry in manifest.get("artifacts", []):
                    record = self._artifact(collection, entry["type"], entry["name"])
                    record.update(
                        upstream=entry.get("upstream"), resolved_sha=entry.get("resolved_sha")
                    )
                    self._put(txn, record)
                    count += 1
                for path, fp in now[os.fspath(collection)].items():
                    txn.put(path, fp, db=self.sources)
        for project in self.tree.projects:
            claude = project / ".claude"
            tomllib.loads((claude / ".skillmeat-project.toml").read_text("utf-8"))
            deployed = tomllib.loads((claude / ".skillmeat-deployed.toml").read_text("utf-8"))
            with self.env.begin(write=True) as txn:
                for entry in deployed.get("deployed", []):
                    record = {**entry, "local_hash": tree_hash(claude / entry["artifact_path"])}
                    key = f"{project}\x00{entry['from_collection']}/{entry['artifact_name']}"
                    txn.put(key.encode(), orjson.dumps(record, default=str), db=self.records)
                for path, fp in now[os.fspath(project)].items():
                    txn.put(path, fp, db=self.sources)
        return count
