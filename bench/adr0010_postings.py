"""ADR 0010's measurements: one posting list, four representations.

    python bench/adr0010_postings.py


Two sorted id lists like a common term's at 100,000 and 1,000,000 artifacts (14% and 20% of the
ids) and a rare one (30 ids); for each representation: bytes stored, and the time to read both
lists from LMDB and count + take the first 20 of their intersection.

* pyroaring: one value per list (``BitMap.serialize``), deserialize, ``&``, ``len``, slice;
* LMDB integer dupfixed postings: ``dupsort|dupfixed|integerdup`` sub-database, 4-byte ids,
  read with ``Cursor.getmulti``-free ``iternext_dup`` into Python sets;
* numpy: one value of raw uint32 per list, ``np.frombuffer`` + ``np.intersect1d``;
* (a search engine next to LMDB: Tantivy's numbers come from bench/search_bench.py.)
"""

# ruff: noqa: B023  (the closures run inside the loop iteration that defines them)
from __future__ import annotations

import random
import statistics
import struct
import sys
import tempfile
import time
from typing import Any, Callable

import lmdb


def timed(fn: Callable[[], Any], rounds: int = 50) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> int:
    import numpy as np
    from pyroaring import BitMap

    rng = random.Random(1)
    for n, share in ((100_000, 0.14), (1_000_000, 0.2)):
        a = sorted(rng.sample(range(n), int(n * share)))
        b = sorted(rng.sample(range(n), int(n * share)))
        rare = sorted(rng.sample(range(n), 30))
        with tempfile.TemporaryDirectory() as tmp:
            env = lmdb.open(tmp, map_size=1 << 32, max_dbs=4)
            blobs = env.open_db(b"blobs")
            dups = env.open_db(b"dups", dupsort=True, dupfixed=True, integerdup=True)
            with env.begin(write=True) as txn:
                for name, ids in ((b"a", a), (b"b", b), (b"r", rare)):
                    txn.put(b"roar" + name, BitMap(ids).serialize(), db=blobs)
                    txn.put(b"np" + name, np.asarray(ids, dtype=np.uint32).tobytes(), db=blobs)
                    cur = txn.cursor(dups)
                    cur.putmulti([(name, struct.pack("=I", i)) for i in ids], dupdata=True)
            sizes = {
                "pyroaring": len(BitMap(a).serialize()),
                "numpy uint32": len(a) * 4,
                "lmdb dupfixed": len(a) * 4,  # plus page headers
            }

            def roaring(x: bytes, y: bytes) -> None:
                with env.begin() as txn:
                    both = BitMap.deserialize(txn.get(b"roar" + x, db=blobs)) & BitMap.deserialize(
                        txn.get(b"roar" + y, db=blobs)
                    )
                    len(both), list(both[:20])

            def numpy(x: bytes, y: bytes) -> None:
                with env.begin() as txn:
                    xa = np.frombuffer(txn.get(b"np" + x, db=blobs), dtype=np.uint32)
                    ya = np.frombuffer(txn.get(b"np" + y, db=blobs), dtype=np.uint32)
                    both = np.intersect1d(xa, ya, assume_unique=True)
                    len(both), both[:20].tolist()

            def dupfixed(x: bytes, y: bytes) -> None:
                with env.begin() as txn:
                    cur = txn.cursor(dups)
                    sets = []
                    for key in (x, y):
                        cur.set_key(key)
                        sets.append(set(cur.iternext_dup()))
                    both = sets[0] & sets[1]
                    len(both), sorted(both)[:20]

            print(f"N={n:,}: common list {len(a):,} ids; bytes: {sizes}")
            for label, fn in (
                ("pyroaring", roaring),
                ("numpy", numpy),
                ("lmdb dupfixed", dupfixed),
            ):
                cc = timed(lambda f=fn: f(b"a", b"b"), 20)
                cr = timed(lambda f=fn: f(b"a", b"r"), 20)
                print(f"  {label:<14} common&common {cc:9.0f} us   common&rare {cr:9.0f} us")
            env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
