"""The quick integrity check: every stored value's frame and CRC32, plus structural checks.

``ProjectCache.verify()`` runs this by default; ``verify(deep=True)`` (and
``repair``/``sources``, which need it) runs :func:`projcache.verify.run_verify`,
the full semantic rebuild: it validates every record and recomputes every
index, which costs about 20 times a plain scan.  The quick check costs one
pass over the values, in one read transaction:

* **frame**: the format byte and CRC32 of every value of every framed
  sub-database (records, ``meta``; the search bitmaps carry no CRC and are
  recomputed by the deep check);
* **structure**: record keys have the shape of their sub-database (an
  artifact key has three parts, a deployment key holds the separator), the
  schema version is recorded, and the derived indexes hold as many entries as
  the records imply where that is a count (one id each way per artifact, one
  entry per deployment in each deployment index), and every block of a search term kept
  in blocks has its all-fields value (a scan of the keys).

What it does not check (the deep check does): that records validate against
their models, that index entries match the records field by field, deployment
states, and the LMDB page structure (``lmdb.verify`` on a copy of the file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from . import codec
from .errors import CorruptRecordError
from .vocabulary import META_DB, RECORD_DBS

if TYPE_CHECKING:
    from .models import Finding, VerifyReport
    from .storage import Storage, Txn

__all__ = ["FRAMED", "quick_verify"]

#: Sub-databases whose values are frames (format byte + CRC32 + JSON): meta and the records.
FRAMED = (META_DB, *RECORD_DBS)
_STEP = 4096  # values between two progress calls

Progress = Callable[[int, int], None]


def _shape_ok(db: str, key: bytes) -> bool:
    if db == "artifacts":
        return key.count(b"/") == 2
    if db == "deployments":
        return codec.SEPARATOR in key
    return True


def quick_verify(storage: Storage, progress: Optional[Progress] = None) -> VerifyReport:
    """Check every framed value's CRC and the cache's structure; return the report.

    ``progress(done, total)`` is called every few thousand values (``total``:
    the values to check).  Nothing is repaired: ``verify(repair=True)`` runs
    the deep check, which repairs.
    """
    from .models import Finding, VerifyReport

    findings: list[Finding] = []
    checked: dict[str, int] = {}

    def add(kind: str, db: str, key: Optional[bytes], message: str) -> None:
        text = None if key is None else key.decode("utf-8", "backslashreplace")
        findings.append(Finding(kind=kind, db=db, key=text, message=message))  # type: ignore[arg-type]

    def body(txn: Txn) -> None:
        findings.clear()
        checked.clear()
        dbs: dict[str, Any] = storage.dbs
        present = [name for name in FRAMED if name in dbs]
        entries = {name: int(txn.stat(db)["entries"]) for name, db in dbs.items()}
        total = sum(entries[name] for name in present)
        done = 0
        intact = codec.frame_intact
        for name in present:
            count = 0
            for key, value in txn.cursor(dbs[name]).iternext():
                count += 1
                if not intact(value):
                    try:
                        codec.unframe(value, what=f"{name}[{key.decode('utf-8', 'replace')!r}]")
                    except CorruptRecordError as exc:
                        add("frame", name, key, str(exc))
                elif not _shape_ok(name, key):
                    add("model", name, key, f"malformed {name} key")
                if progress is not None and count % _STEP == 0:
                    progress(done + count, total)
            done += count
            checked[name] = count
        if txn.get(b"schema_version", db=dbs["meta"]) is None:
            add("model", "meta", b"schema_version", "no schema version recorded")
        if "artifact-ids" in dbs and "search-pending" in dbs:
            from .postings import IdRepository

            # A single write's mappings wait in search-pending until the next merge.
            ids = IdRepository(dbs["artifact-ids"], dbs["artifact-keys"], dbs["search-pending"])
            entries["artifact-ids"], entries["artifact-keys"] = ids.counts(txn)
        _counts(entries, add)
        if "search-tokens" in dbs:
            from .postings import BitmapIndex

            index = BitmapIndex(dbs["search-tokens"], dbs["search-pending"])
            for term, block in index.any_field_missing(txn):
                message = f"block {block} has no all-fields bitmap"
                add("index", "search-tokens", term.encode(), message)
        if progress is not None:
            progress(done, total)

    storage.read(body)
    return VerifyReport(checked=checked, findings=findings)


def _counts(entries: dict[str, int], add: Callable[[str, str, Optional[bytes], str], None]) -> None:
    """Derived indexes whose size the records fix: compare the counts (O(1) each)."""
    pairs = [
        ("artifact-ids", "artifacts", "ids"),
        ("artifact-keys", "artifacts", "ids"),
        ("deployments-by-state", "deployments", "entries"),
        ("deployments-by-artifact", "deployments", "entries"),
    ]
    for index, records, what in pairs:
        if index in entries and records in entries and entries[index] != entries[records]:
            add(
                "index",
                index,
                None,
                f"{entries[index]} {what} for {entries[records]} {records} "
                "(run `projcache verify --repair` to rebuild the indexes)",
            )
