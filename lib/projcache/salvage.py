"""Read whatever records still read and validate from a damaged cache (run in a subprocess).

``python -m projcache.salvage DIR`` prints one JSON line per good record,
``{"db": ..., "key": <hex>, "value": <hex of the framed value>}``, then one
line ``{"done": true, "seen": {db: n}, "bad": {db: n}, "entries": {db: n}}``.
It runs in its own process because reading a damaged LMDB file can crash the
reader outright (a wild page pointer is a segmentation fault, not an
exception); the parent keeps every line printed before such a crash.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from .vocabulary import RECORD_DBS

__all__ = ["RECORD_DBS", "main", "salvage"]

# Records only (RECORD_DBS, from vocabulary.py): derived indexes are rebuilt, never salvaged.


def _emit(data: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(data) + b"\n")
    sys.stdout.buffer.flush()


def salvage(path: str) -> dict[str, Any]:
    """Print every readable, valid record of the environment in ``path``; return the tally."""
    import lmdb

    from . import codec, models

    seen: dict[str, int] = {}
    bad: dict[str, int] = {}
    entries: dict[str, int] = {}
    env = lmdb.open(path, readonly=True, lock=False, max_dbs=32, subdir=True)
    try:
        for db_name, model_name in RECORD_DBS.items():
            model = getattr(models, model_name)
            seen[db_name] = bad[db_name] = 0
            try:
                db = env.open_db(db_name.encode(), create=False)
                with env.begin(buffers=False) as txn:
                    entries[db_name] = int(txn.stat(db)["entries"])
                    for key, raw in txn.cursor(db).iternext():
                        seen[db_name] += 1
                        try:
                            model.model_validate_json(codec.unframe(raw))
                        except Exception:  # any failure means "not salvageable"
                            bad[db_name] += 1
                            continue
                        _emit({"db": db_name, "key": bytes(key).hex(), "value": bytes(raw).hex()})
            except lmdb.Error as exc:
                _emit({"db": db_name, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        env.close()
    tally = {"done": True, "seen": seen, "bad": bad, "entries": entries}
    _emit(tally)
    return tally


def main(argv: list[str]) -> int:
    """Entry point: ``python -m projcache.salvage DIR``."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m projcache.salvage DIR\n")
        return 2
    try:
        salvage(argv[0])
    except Exception as exc:  # the parent reads the message
        _emit({"fatal": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
