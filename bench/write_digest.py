"""Do two projcache libraries store the same bytes?  Digest every sub-database after one
sequence of single writes, updates and deletes.

    python bench/write_digest.py STORE --old-lib OLD/lib [--new-lib lib] [--ops 600]

``STORE`` is a built projcache cache directory (its ``data.mdb`` is copied, never
written).  Each library runs in a process of its own (``PYTHONHASHSEED=0``: the write
log lists a record's names in the order of Python sets, which hash bytes with the seed)
with ``os.urandom`` made a counter (the write log's version carries 8 random bytes),
on its own copy of the store, durability ``none``: ``--ops`` new records written one by
one, each then updated (a longer description; every third also a new tag, every fifth
a new body), then every other one deleted (with a project deploying every seventh record
and an artifact of a collection that comes and goes: the writes restate deployments);
enough operations to merge the write log a
few times (every ``MERGE_AT`` entries).  Then every sub-database is read in key order
and digested (SHA-256 of each key and value, lengths included); the two libraries'
digests are printed side by side and the exit status is 1 when any differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _child(lib: Path, store: Path, work: Path, ops: int) -> dict[str, str]:
    """Run the sequence with the projcache in ``lib``; return ``{sub-db: digest}``."""
    counter = iter(range(1 << 62))
    os.urandom = lambda n: next(counter).to_bytes(n, "big")  # deterministic version tags
    sys.path.insert(0, str(HERE))
    import lmdb
    import search_bench as sb  # type: ignore[import-not-found]

    sys.path.insert(0, str(lib))  # (after search_bench: it puts this checkout's lib first)
    import projcache
    from projcache.config import Settings

    assert Path(projcache.__file__).resolve().is_relative_to(lib.resolve()), projcache.__file__
    shutil.copy(store / "data.mdb", work / "data.mdb")
    records: list[dict[str, Any]] = sb.new_records(100_000, ops, "digest")
    settings = Settings(cache_dir=work, durability="none", map_size=1 << 34)
    far = {**records[0], "collection": "far", "name": "far-away"}
    with projcache.ProjectCache.open(settings=settings) as cache:
        # Deployments of some of the records and of an artifact of a collection the cache
        # does not hold yet: the writes and deletes restate them.
        cache.put_projects([{"name": "shop", "path": "/nonexistent/write-digest/shop"}])
        project = cache.find_project("shop").id
        cache.put_deployments(
            [
                {"project_id": project, "artifact_key": key, "content_hash": "h"}
                for key in [sb.artifact_key(r) for r in records[::7]] + ["far/skill/gone"]
            ]
        )
        cache.put_artifacts([far])
        for record in records:
            cache.put_artifacts([record])
        for i, record in enumerate(records):
            changed = {**record, "description": record["description"] + " changed"}
            if i % 3 == 0:
                changed["tags"] = [*record["tags"], f"tag{i % 7}"]
            if i % 5 == 0:
                changed["body"] = record["body"] + f"\n\nMore text {i}."
            cache.put_artifacts([changed])
        for record in records[::2]:
            cache.delete_artifact(sb.artifact_key(record))
        cache.delete_artifact(sb.artifact_key(far))
    env = lmdb.open(str(work), readonly=True, lock=False, max_dbs=64, subdir=True)
    digests: dict[str, str] = {}
    with env.begin() as txn:
        names = [key for key, _value in txn.cursor()]
        for name in names:
            whole = hashlib.sha256()
            try:
                db = env.open_db(name, txn=txn, create=False)
            except lmdb.Error:  # a plain key of the main database, not a sub-database
                continue
            for key, value in txn.cursor(db):
                for part in (key, value):
                    whole.update(len(part).to_bytes(8, "big"))
                    whole.update(part)
            digests[name.decode()] = whole.hexdigest()
    env.close()
    return digests


def main(argv: list[str]) -> int:
    """Run both libraries, print their digests; 1 when any sub-database differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="a built projcache cache directory")
    parser.add_argument("--old-lib", type=Path, required=True)
    parser.add_argument("--new-lib", type=Path, default=HERE.parent / "lib")
    parser.add_argument("--ops", type=int, default=600)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(args.child, args.store, args.work, args.ops)))
        return 0
    root = Path(tempfile.mkdtemp(prefix="write-digest-"))
    results: dict[str, dict[str, str]] = {}
    try:
        for name, lib in (("old", args.old_lib), ("new", args.new_lib)):
            work = root / name
            work.mkdir()
            out = subprocess.run(
                [sys.executable, __file__, str(args.store), "--old-lib", str(args.old_lib),
                 "--ops", str(args.ops), "--child", str(lib.resolve()), "--work", str(work)],
                env={**os.environ, "PYTHONHASHSEED": "0"},
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            results[name] = json.loads(out.stdout.splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    differ = 0
    for db in sorted(results["old"].keys() | results["new"].keys()):
        old, new = results["old"].get(db, "-"), results["new"].get(db, "-")
        same = "same" if old == new else "DIFFERENT"
        differ += old != new
        print(f"{db:22s} {old[:16]} {new[:16]} {same}")
    print("identical" if not differ else f"{differ} sub-database(s) differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
