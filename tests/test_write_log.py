"""The search index's write log (format v3, ``search-pending``): layout and invariants.

A write appends one log entry and touches no main bitmap; readers apply the log (kept per
log version, so a reader sees another handle's writes); random sequences of writes,
replacements and deletes, merged at random thresholds, leave every id in exactly the
bitmaps its record implies, ``verify`` clean, and searches equal to the brute-force oracle.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from damage import raw_rows, tamper
from factories import examples
from projcache import CorruptRecordError, ProjectCache
from projcache import postings as postings_module
from projcache.config import Settings
from projcache.models import Artifact
from projcache.mutations import index_names
from projcache.postings import BitmapIndex
from test_search import check_search, key_of, numbered, open_cache, queries, records

MakeArtifact = Callable[..., dict[str, Any]]


@pytest.fixture(autouse=True)
def _small_terms_up_to_64(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests put a term in blocks with ~70 artifacts: keep the inline limit they were
    written for (SMALL_POSTINGS is 448 since the sixth session)."""
    monkeypatch.setattr(postings_module, "SMALL_POSTINGS", 64)


def expected_names(cache: ProjectCache) -> dict[bytes, set[int]]:
    """``{bitmap name: ids}`` as the records imply (computed from the records, not the index)."""
    ids = cache._read(lambda txn: dict(cache._repos.ids.items(txn)))
    artifacts = cache._repos.artifacts
    # The whole records, bodies included (reads leave the body out).
    whole = cache._read(lambda txn: [artifacts.get(txn, a.key) for a in cache.list_artifacts()])
    wanted: dict[bytes, set[int]] = {}
    for artifact in whole:
        assert artifact is not None
        for name in index_names(artifact):
            wanted.setdefault(name, set()).add(ids[artifact.key])
    return wanted


def stored_names(cache: ProjectCache, index: BitmapIndex) -> dict[bytes, set[int]]:
    """``{bitmap name: ids}`` as ``index`` reads them (main bitmaps with the log applied)."""
    found = cache._read(lambda txn: list(index.names_of(txn)))
    return {name: set(ids) for name, ids in found if ids}


def fresh_index(cache: ProjectCache) -> BitmapIndex:
    """A reader that has applied no log yet (as in another process)."""
    return BitmapIndex(cache._repos.index.main, cache._repos.index.pending)


def log_rows(cache_dir: Path) -> list[tuple[bytes, bytes]]:
    """The write-log entries of a closed cache."""
    return [(k, v) for k, v in raw_rows(cache_dir, "search-pending") if k[:1] == b"\xfe"]


def test_a_single_write_appends_one_log_entry_and_no_bitmap(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """Writing, updating and deleting one artifact each append exactly one entry to the log
    (whatever its number of terms) and leave every main bitmap (``search-tokens``) as it was."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts(
            [make_artifact(f"a{i}", description="many words here") for i in range(5)]
        )
        cache._write(lambda txn: cache._repos.index.merge(txn))
    main = raw_rows(cache_settings.cache_dir, "search-tokens")
    body = " ".join(f"word{i}" for i in range(300))
    steps = [
        lambda c: c.put_artifacts([make_artifact("big", description="pdf tools", body=body)]),
        lambda c: c.put_artifacts([make_artifact("big", description="docx tools", body=body)]),
        lambda c: c.delete_artifact("default/skill/big"),
    ]
    for count, step in enumerate(steps, start=1):
        with ProjectCache.open(settings=cache_settings) as cache:
            step(cache)
        assert len(log_rows(cache_settings.cache_dir)) == count
        assert raw_rows(cache_settings.cache_dir, "search-tokens") == main
    op, added, removed = (lambda v: (v[:1], *v[5:].split(b"\xfe")))(
        log_rows(cache_settings.cache_dir)[1][1]
    )
    assert (op, added, removed) == (b"u", b"docx\x00d", b"pdf\x00d")


def test_the_log_is_merged_past_merge_at(
    cache_settings: Settings, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MERGE_AT entries the write's own transaction folds the log into the main bitmaps
    and frees the deleted ids (the smallest is reused first)."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 3)
    with ProjectCache.open(settings=cache_settings) as cache:
        for name in ("a", "b", "c"):
            cache.put_artifacts([make_artifact(name)])
        cache.delete_artifact("default/skill/a")
        control = cache._read(lambda txn: cache._repos.index.control(txn))
        assert control["log"] == 0 and list(control["free"]) == [0]
        cache.put_artifacts([make_artifact("d")])
        ids = cache._read(lambda txn: dict(cache._repos.ids.items(txn)))
        assert ids["default/skill/d"] == 0
        assert sorted(h.key for h in cache.search("artifact")) == [
            "default/skill/b",
            "default/skill/c",
            "default/skill/d",
        ]
    assert len(log_rows(cache_settings.cache_dir)) == 1


def test_a_reader_sees_another_handles_writes(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """A handle that has read (and kept) the applied log sees writes made through another
    handle afterwards: a new id, a replaced word and a delete."""
    with ProjectCache.open(settings=cache_settings) as reader:
        reader.put_artifacts([make_artifact("pdf", description="reads invoices")])
        assert [h.key for h in reader.search("invoices")] == ["default/skill/pdf"]
        with ProjectCache.open(settings=cache_settings) as writer:
            writer.put_artifacts([make_artifact("docx", description="reads invoices")])
            assert len(reader.search("invoices")) == 2
            writer.put_artifacts([make_artifact("pdf", description="reads receipts")])
            assert [h.key for h in reader.search("invoices")] == ["default/skill/docx"]
            assert [h.key for h in reader.search("receipts")] == ["default/skill/pdf"]
            writer.delete_artifact("default/skill/pdf")
            assert reader.search("receipts") == []


def test_a_damaged_log_entry_is_a_corrupt_record(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """A log value that is no entry makes searches raise CorruptRecordError, not guess."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact("pdf")])
    [(key, _value)] = log_rows(cache_settings.cache_dir)

    def damage(txn: Any, dbs: dict[str, Any]) -> None:
        txn.put(key, b"zzz", db=dbs["search-pending"])
        version = bytearray(txn.get(b"\xff\x06version", db=dbs["search-pending"]))
        version[-1] ^= 1  # a new log version: readers apply the log again
        txn.put(b"\xff\x06version", bytes(version), db=dbs["search-pending"])

    tamper(cache_settings.cache_dir, damage)
    with (
        ProjectCache.open(settings=cache_settings) as cache,
        pytest.raises(CorruptRecordError, match="write-log entry"),
    ):
        cache.search("pdf")


def test_a_write_merge_carries_changes_too_dear_to_fold(
    cache_settings: Settings, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge that writes trigger leaves in the log the changes whose stored values would be
    rewritten for more than CARRY_RATIO bytes per changed id (here: any stored value) and
    folds the rest (a new term); a deleted id is freed only once its last change is folded.
    Searches answer the same throughout; an explicit merge folds everything."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts(
            [make_artifact(f"a{i:02d}", description="pdf tools") for i in range(70)]
        )
        cache._write(lambda txn: cache._repos.index.merge(txn))

    def rows(term: bytes) -> list[tuple[bytes, bytes]]:
        found = raw_rows(cache_settings.cache_dir, "search-tokens")
        return [(k, v) for k, v in found if k.startswith(term + b"\x00")]

    before = rows(b"pdf")
    assert len(before) > 1  # in blocks
    monkeypatch.setattr(postings_module, "MERGE_AT", 2)
    monkeypatch.setattr(postings_module, "_OWN_PAGES", 0)
    monkeypatch.setattr(postings_module, "CARRY_RATIO", 0)
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.delete_artifact("default/skill/a00")
        cache.put_artifacts([make_artifact("new1", description="pdf zebra")])
        cache.put_artifacts([make_artifact("new2", description="pdf zebra")])  # merges
        control = cache._read(lambda txn: cache._repos.index.control(txn))
        assert control["log"] == control["counted"] == 3  # one per id with carried changes
        assert list(control["deleted"]) == [0] and not control["free"]
        hits = {h.key for h in cache.search("pdf", limit=100)}
        assert len(hits) == 71 and "default/skill/a00" not in hits
        assert {h.key for h in cache.search("zebra")} == {
            "default/skill/new1",
            "default/skill/new2",
        }
        cache.put_artifacts([make_artifact("new3", description="pdf")])  # carried: no merge
        assert cache._read(lambda txn: cache._repos.index.control(txn))["log"] == 4
        assert cache.verify(deep=True).ok
    assert rows(b"pdf") == before
    assert rows(b"zebra")  # folded
    with ProjectCache.open(settings=cache_settings) as cache:
        cache._write(lambda txn: cache._repos.index.merge(txn))
        control = cache._read(lambda txn: cache._repos.index.control(txn))
        assert control["log"] == 0 and list(control["free"]) == [0]
        assert len(cache.search("pdf", limit=100)) == 72
        assert cache.verify(deep=True).ok
    assert rows(b"pdf") != before


class WriteLogMachine(RuleBasedStateMachine):
    """Random writes, replacements, deletes and merges at a random threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.stack = contextlib.ExitStack()
        directory = self.stack.enter_context(tempfile.TemporaryDirectory())
        self.cache = self.stack.enter_context(open_cache(directory))
        self.model: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.saved = (
            postings_module.MERGE_AT,
            postings_module.SMALL_POSTINGS,
            postings_module._FOLD_AT,
            postings_module._OWN_PAGES,
            postings_module.CARRY_RATIO,
            postings_module.CARRY_PAIRS,
        )
        postings_module.CARRY_PAIRS = 64  # (the log bound below counts on at most 64)

    @rule(merge_at=st.sampled_from([1, 3, 10, 256]))
    def threshold(self, merge_at: int) -> None:
        """Change how many log entries trigger a merge."""
        postings_module.MERGE_AT = merge_at

    @rule(fold_at=st.sampled_from([2, 4096]))
    def fold(self, fold_at: int) -> None:
        """Change after how many entries a transaction folds them into bitmaps per name."""
        postings_module._FOLD_AT = fold_at

    @rule(small=st.sampled_from([0, 2, 8, 64]))
    def small_terms(self, small: int) -> None:
        """Change up to how many postings a term is stored inline (grown terms move to blocks)."""
        postings_module.SMALL_POSTINGS = small

    @rule(
        own=st.sampled_from([0, 2000]),
        ratio=st.sampled_from([0, 128, 10**6]),
        pairs=st.sampled_from([0, 4, 64]),
    )
    def carrying(self, own: int, ratio: int, pairs: int) -> None:
        """Change which log changes a merge carries (own=0: every stored value counts as
        rewritten whole, so small data carries too)."""
        postings_module._OWN_PAGES = own
        postings_module.CARRY_RATIO = ratio
        postings_module.CARRY_PAIRS = pairs

    @rule(batch=st.lists(records, min_size=1, max_size=4))
    def put(self, batch: list[dict[str, Any]]) -> None:
        """Insert or replace a batch (a key twice in one batch: the last one wins)."""
        self.cache.put_artifacts(batch)
        for record in batch:
            self.model[key_of(record)] = record
        self.history.extend(batch)

    @rule(base=records, count=st.integers(5, 15))
    def put_many(self, base: dict[str, Any], count: int) -> None:
        """A batch larger than small thresholds: merged straight from memory."""
        self.put(numbered(base, count))

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), new=records)
    def replace(self, data: st.DataObject, new: dict[str, Any]) -> None:
        """Replace a stored artifact with another record under the same key (same id)."""
        old = self.model[data.draw(st.sampled_from(sorted(self.model)))]
        self.put([{**new, **{f: old[f] for f in ("name", "type", "collection")}}])

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        """Delete a stored artifact (its id is freed by the next merge)."""
        key = data.draw(st.sampled_from(sorted(self.model)))
        self.cache.delete_artifact(key)
        del self.model[key]

    @rule()
    def merge(self) -> None:
        """Fold the log into the main bitmaps now."""
        self.cache._write(lambda txn: self.cache._repos.index.merge(txn))

    @rule(data=st.data())
    def query(self, data: st.DataObject) -> None:
        """A random query returns the brute-force page, scores and total."""
        if self.history:
            check_search(self.cache, self.model.values(), data.draw(queries(self.history)))

    @invariant()
    def every_id_in_exactly_its_bitmaps(self) -> None:
        """The kept reader, a fresh reader and the records agree on every bitmap; the log is
        no longer than the threshold allows; ids are unique and the free ones unused."""
        wanted = expected_names(self.cache)
        assert stored_names(self.cache, self.cache._repos.index) == wanted
        assert stored_names(self.cache, fresh_index(self.cache)) == wanted
        control = self.cache._read(lambda txn: self.cache._repos.index.control(txn))
        # The largest threshold drawn, plus what a merge carries: an entry per id it carries
        # (a new id that also lost names: two), at most CARRY_PAIRS (name, id) changes.
        assert control["log"] <= 256 + 2 * 64
        ids = self.cache._read(lambda txn: dict(self.cache._repos.ids.items(txn)))
        assert sorted(ids) == sorted(self.model)
        assert len(set(ids.values())) == len(ids)
        # Point reads see the mappings that wait in search-pending as verify's view does.
        repos = self.cache._repos
        gone = {key_of(r) for r in self.history} - set(ids)
        assert self.cache._read(lambda txn: {k: repos.ids.id_of(txn, k) for k in ids}) == ids
        assert self.cache._read(lambda txn: [repos.ids.id_of(txn, k) for k in gone]) == [
            None
        ] * len(gone)
        keys = {doc: key.encode() for key, doc in ids.items()}
        assert self.cache._read(lambda txn: repos.ids.keys_of(txn, sorted(keys))) == [
            keys[doc] for doc in sorted(keys)
        ]
        assert not set(control["free"]) & set(ids.values())
        assert not set(control["deleted"]) & set(ids.values())
        main = self.cache._read(
            lambda txn: [bytes(k) for k, _ in txn.cursor(self.cache._repos.index.main)]
        )
        inline = {k for k in main if k[:1] != b"\x01" and k.find(b"\x00") == len(k) - 1}
        assert not {k[: k.find(b"\x00") + 1] for k in main if k not in inline} & inline
        index = self.cache._repos.index
        assert self.cache._read(lambda txn: index.any_field_problems(txn)) == []

    def teardown(self) -> None:
        """Check verify once at the end, close and remove the cache."""
        try:
            assert self.cache.verify(deep=True).ok
            assert self.cache.verify().ok  # quick: the id maps' counts with waiting mappings
        finally:
            (
                postings_module.MERGE_AT,
                postings_module.SMALL_POSTINGS,
                postings_module._FOLD_AT,
                postings_module._OWN_PAGES,
                postings_module.CARRY_RATIO,
                postings_module.CARRY_PAIRS,
            ) = self.saved
            self.stack.close()


TestWriteLogMachine = WriteLogMachine.TestCase
TestWriteLogMachine.settings = settings(max_examples=examples(60), stateful_step_count=25)
TestWriteLogMachine.pytestmark = [pytest.mark.generated]


def test_index_names_of_an_artifact_model_are_what_verify_expects(
    make_artifact: MakeArtifact,
) -> None:
    """The test's expectation uses the same names as the write path (a sanity check)."""
    artifact = Artifact.model_validate(make_artifact("pdf", description="Reads PDFs"))
    names = index_names(artifact)
    assert b"pdf\x00n" in names and b"pdf\x00d" in names


def test_verify_finds_a_lost_log_entry_and_repair_rebuilds(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """A log entry lost outside the library: verify reports the count the version value
    records against the entries it finds, and the ids left out; repair rebuilds the index."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact("pdf")])
        cache.put_artifacts([make_artifact("docx")])
    [_first, (key, _value)] = log_rows(cache_settings.cache_dir)
    tamper(cache_settings.cache_dir, lambda txn, dbs: txn.delete(key, db=dbs["search-pending"]))
    with ProjectCache.open(settings=cache_settings) as cache:
        findings = {(f.db, f.key, f.message) for f in cache.verify(deep=True).findings}
        assert ("search-pending", "version", "counts 2 log entries, the log has 1") in findings
        assert ("search-tokens", "docx (field n)", "missing id 1") in findings
        assert cache.verify(repair=True).repaired
        assert cache.verify(deep=True).ok
        assert [h.key for h in cache.search("docx")] == ["default/skill/docx"]


def test_verify_finds_a_term_stored_both_inline_and_in_blocks(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """A small term that also has a block value (never written so) is a finding; repair
    rebuilds it one way."""
    from pyroaring import BitMap

    from projcache.postings import encode_bitmap

    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact("pdf")])
        cache._write(lambda txn: cache._repos.index.merge(txn))
        pdf = cache._read(lambda txn: cache._repos.ids.id_of(txn, "default/skill/pdf"))
    block = encode_bitmap(BitMap([pdf]))
    tamper(
        cache_settings.cache_dir,
        lambda txn, dbs: txn.put(b"pdf\x00n\x00\x00", block, db=dbs["search-tokens"]),
    )
    with ProjectCache.open(settings=cache_settings) as cache:
        findings = [(f.db, f.key, f.message) for f in cache.verify(deep=True).findings]
        assert findings == [
            ("search-tokens", "pdf", "stored both inline and in blocks"),
            ("search-tokens", "pdf", "block 0 has no all-fields bitmap"),  # (a block alone)
        ]
        assert cache.verify(repair=True).repaired
        assert cache.verify(deep=True).ok


def _blocked_term_cache(cache: ProjectCache, make_artifact: MakeArtifact, count: int) -> None:
    """``count`` artifacts sharing the description word ``pdf`` (in blocks past 64), merged."""
    cache.put_artifacts(
        [make_artifact(f"a{i}", description="pdf tools", tags=["x"]) for i in range(count)]
    )
    cache.put_artifacts([make_artifact("pdf-reader", description="reads files")])
    cache._write(lambda txn: cache._repos.index.merge(txn))


def test_a_term_in_blocks_has_an_all_fields_bitmap_per_block(
    cache_settings: Settings, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A term past SMALL_POSTINGS is stored per field and block, plus per block one
    all-fields value (``term NUL * block``) holding the union of its fields there: what a
    query's exact total reads.  Writes through the log and a merge keep it so."""
    from projcache.postings import decode_bitmap

    monkeypatch.setattr(postings_module, "CHUNK_BITS", 4)  # 16 ids per block: several blocks
    with ProjectCache.open(settings=cache_settings) as cache:
        _blocked_term_cache(cache, make_artifact, 70)
        cache.put_artifacts([make_artifact("a3", description="docx only")])  # pdf leaves a3
        cache._write(lambda txn: cache._repos.index.merge(txn))
        ids = cache._read(lambda txn: dict(cache._repos.ids.items(txn)))
    rows = dict(raw_rows(cache_settings.cache_dir, "search-tokens"))
    stars = {k[-2:]: set(decode_bitmap(v)) for k, v in rows.items() if k[:-2] == b"pdf\x00*"}
    fields: dict[bytes, set[int]] = {}
    for key, value in rows.items():
        if key[:4] == b"pdf\x00" and len(key) == 7 and key[4:5] != b"*":
            fields.setdefault(key[-2:], set()).update(decode_bitmap(value))
    assert len(stars) >= 5 and stars == fields
    holding = {ids[f"default/skill/a{i}"] for i in range(70) if i != 3}
    holding.add(ids["default/skill/pdf-reader"])
    assert set().union(*stars.values()) == holding


def test_verify_finds_a_wrong_all_fields_bitmap_and_repair_rebuilds(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """An all-fields value that is not the union of its term's fields (or is missing) is an
    index finding of quick and deep verify; repair writes it again."""
    from pyroaring import BitMap

    from projcache.postings import encode_bitmap

    with ProjectCache.open(settings=cache_settings) as cache:
        _blocked_term_cache(cache, make_artifact, 70)
    wrong = encode_bitmap(BitMap([1]))
    tamper(
        cache_settings.cache_dir,
        lambda txn, dbs: txn.put(b"pdf\x00*\x00\x00", wrong, db=dbs["search-tokens"]),
    )
    with ProjectCache.open(settings=cache_settings) as cache:
        findings = [(f.db, f.key, f.message) for f in cache.verify(deep=True).findings]
        assert findings == [
            ("search-tokens", "pdf", "block 0: all-fields bitmap is not its fields' union")
        ]
    tamper(
        cache_settings.cache_dir,
        lambda txn, dbs: txn.delete(b"pdf\x00*\x00\x00", db=dbs["search-tokens"]),
    )
    with ProjectCache.open(settings=cache_settings) as cache:
        for deep in (False, True):
            findings = [(f.db, f.key, f.message) for f in cache.verify(deep=deep).findings]
            assert findings == [("search-tokens", "pdf", "block 0 has no all-fields bitmap")]
        assert cache.verify(repair=True).repaired
        assert cache.verify(deep=True).ok


def test_searches_without_all_fields_values_read_the_fields(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """A cache whose blocks lack their all-fields values (written by an earlier 0.2.0-dev)
    answers as before: the query counts those blocks' fields instead."""
    with ProjectCache.open(settings=cache_settings) as cache:
        _blocked_term_cache(cache, make_artifact, 70)
        before = [(h.key, h.score) for h in cache.search("pdf", limit=100)]
        total = cache.search_json("pdf tools")[1]

    def drop_stars(txn: Any, dbs: dict[str, Any]) -> None:
        for key in [bytes(k) for k, _ in txn.cursor(dbs["search-tokens"])]:
            if key[-3:-2] == b"*" and key[-4:-3] == b"\x00":
                txn.delete(key, db=dbs["search-tokens"])
        assert txn.delete(b"\xff\x07layout", db=dbs["search-pending"])  # (none then)

    tamper(cache_settings.cache_dir, drop_stars)
    with ProjectCache.open(settings=cache_settings) as cache:
        assert [(h.key, h.score) for h in cache.search("pdf", limit=100)] == before
        assert cache.search_json("pdf tools")[1] == total == 70


def test_tie_break_and_type_facets_are_stored_in_wide_chunks(
    cache_settings: Settings, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``type``, ``managed`` and the name lengths (what a query reads whole) are stored in
    chunks of 2**WIDE_BITS blocks; terms keep one value per block (a merge rewrites one)."""
    monkeypatch.setattr(postings_module, "CHUNK_BITS", 2)  # 4 ids per block, 16 per chunk
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact(f"a{i:02d}", description="pdf") for i in range(70)])
        cache._write(lambda txn: cache._repos.index.merge(txn))
    rows = dict(raw_rows(cache_settings.cache_dir, "search-tokens"))

    def chunks(name: bytes) -> list[int]:
        found = [k for k in rows if k[:-2] == name]
        return sorted(int.from_bytes(k[-2:], "big") for k in found)

    assert chunks(b"\x01type\x00skill") == [0, 1, 2, 3, 4]  # ids 0 .. 69
    assert chunks(b"\x01managed\x001") == [0, 1, 2, 3, 4]
    assert chunks(b"\x01len\x0003") == [0, 1, 2, 3, 4]
    assert chunks(b"pdf\x00d") == list(range(18))


def test_a_facet_stored_in_blocks_is_rechunked_by_the_next_merge(
    cache_settings: Settings, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A facet in one value per block (a cache of an earlier 0.2.0-dev) reads right and is
    rewritten in wide chunks by the next merge that touches it."""
    from pyroaring import BitMap

    from projcache.postings import decode_bitmap, encode_bitmap

    monkeypatch.setattr(postings_module, "CHUNK_BITS", 2)
    name = b"\x01type\x00skill"
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact(f"a{i:02d}", description="pdf") for i in range(40)])
        cache._write(lambda txn: cache._repos.index.merge(txn))

    def to_blocks(txn: Any, dbs: dict[str, Any]) -> None:
        db = dbs["search-tokens"]
        every = BitMap()
        for key in [bytes(k) for k, _ in txn.cursor(db) if bytes(k)[:-2] == name]:
            every |= decode_bitmap(txn.get(key, db=db))
            txn.delete(key, db=db)
        for block in sorted({doc >> 2 for doc in every}):
            ids = BitMap(doc for doc in every if doc >> 2 == block)
            txn.put(name + block.to_bytes(2, "big"), encode_bitmap(ids), db=db)

    tamper(cache_settings.cache_dir, to_blocks)
    with ProjectCache.open(settings=cache_settings) as cache:
        assert cache.search_json("pdf", type="skill", limit=50)[1] == 40
        cache.put_artifacts([make_artifact("late", description="pdf")])
        cache._write(lambda txn: cache._repos.index.merge(txn))
        assert cache.search_json("pdf", type="skill", limit=50)[1] == 41
        assert cache.verify(deep=True).ok
    keys = [k for k, _ in raw_rows(cache_settings.cache_dir, "search-tokens") if k[:-2] == name]
    assert sorted(int.from_bytes(k[-2:], "big") for k in keys) == [0, 1, 2]


def test_a_merge_decodes_each_value_once(
    cache_settings: Settings, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's merge decodes no more stored bitmaps than it changes: a term's all-fields
    value is its stored value plus what the fields gained (they lost nothing), or the union
    of the field values just written, not the fields read back.  The values stay right."""
    from pyroaring import BitMap

    decoded: list[bytes] = []

    class Counted(BitMap):  # type: ignore[misc]
        @classmethod
        def deserialize(cls, raw: Any) -> Any:
            decoded.append(bytes(raw))
            return BitMap.deserialize(raw)

    with ProjectCache.open(settings=cache_settings) as cache:
        _blocked_term_cache(cache, make_artifact, 70)
        monkeypatch.setattr(postings_module, "_bitmap_type", Counted)
        monkeypatch.setattr(postings_module, "MERGE_AT", 4)  # each batch below merges
        batches = [
            [  # gains only, in three fields
                make_artifact(f"pdf-b{i}", title="pdf tools", description="pdf tools")
                for i in range(20)
            ],
            [make_artifact(f"a{i}", description="docx only") for i in range(0, 70, 3)],  # loses
        ]
        main = cache._repos.index.main

        def rows() -> dict[bytes, bytes]:
            return cache._read(lambda txn: {bytes(k): bytes(v) for k, v in txn.cursor(main)})

        for batch in batches:
            before = rows()
            decoded.clear()
            cache.put_artifacts(batch)
            after = rows()
            # Each decoded value is a stored one the merge changes (a new block needs none).
            rewritten = [key for key, value in before.items() if after.get(key) != value]
            assert decoded and len(decoded) <= len(rewritten)
        index = cache._repos.index
        assert cache._read(lambda txn: index.any_field_problems(txn)) == []
        assert cache.verify(deep=True).ok


@settings(max_examples=examples(200))
@given(
    start=st.integers(0, (1 << 32) - 200_000),
    offsets=st.lists(st.integers(0, 199_999), min_size=1, max_size=300),
    run=st.integers(0, 70_000),
    optimize=st.booleans(),
)
def test_first_high_reads_the_smallest_ids_container_from_the_header(
    start: int, offsets: list[int], run: int, optimize: bool
) -> None:
    """:func:`~projcache.postings.first_high` (how a merge tells a wide facet's chunk
    without decoding it) is the high 16 bits of the smallest id, for array, bitset and run
    containers; an empty or foreign value gives None."""
    from pyroaring import BitMap

    from projcache.postings import encode_bitmap, first_high

    ids = BitMap(start + offset for offset in offsets)
    ids.add_range(start + 100_000, start + 100_000 + run)
    if optimize:
        ids.run_optimize()
    assert first_high(encode_bitmap(ids)) == ids.min() >> 16
    assert first_high(encode_bitmap(BitMap())) is None
    assert first_high(b"\x05" + encode_bitmap(ids)[1:]) is None


def test_a_batch_past_merge_at_lists_each_stem_of_its_tokens(
    cache_settings: Settings, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch past ``MERGE_AT`` gathers its new ids per token and lists each token's stem
    from them: a stem that is also a token, several tokens of one stem in one artifact or
    in several, in one field or in several; an update in the batch lists its terms too.
    The index is what the records imply; and a later batch reuses a freed (lower) id under
    small terms that already list higher ones."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 4)
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact("kept", description="old words")])
        texts = [
            ("connect", "connecting connected connection"),
            ("connects", "connect and run"),
            ("running", "runs ran runner"),
            ("plain", "nothing shared here"),
            ("kept", "connecting runs"),
            ("twice", "running twice"),
        ]
        cache.put_artifacts([make_artifact(name, description=text) for name, text in texts])
        index = cache._repos.index
        wanted = expected_names(cache)
        assert stored_names(cache, index) == wanted
        assert stored_names(cache, fresh_index(cache)) == wanted
        found = {hit.key.rsplit("/", 1)[1] for hit in cache.search("connect", fill=False)}
        assert found == {"connect", "connects", "kept"}
        cache.delete_artifact("default/skill/plain")
        cache._write(index.merge)  # the id of "plain" is free again
        cache.put_artifacts(
            [make_artifact(f"later{i}", description=f"connecting shared {i}") for i in range(6)]
        )
        wanted = expected_names(cache)
        assert stored_names(cache, index) == wanted
        assert stored_names(cache, fresh_index(cache)) == wanted


def test_a_batch_past_merge_at_lists_its_new_ids_per_name(
    cache_settings: Settings, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that merges anyway lists its new artifacts' ids per name in one call
    (``add_many``), not one log entry each; an update in the same batch, and a key given
    twice (a new id, then its update), still come after.  The index is what the records
    imply, for this handle and a fresh reader."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 4)
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact("kept", description="old words")])
        index = cache._repos.index
        calls: list[str] = []
        add, add_many = BitmapIndex.add, BitmapIndex.add_many
        monkeypatch.setattr(BitmapIndex, "add", lambda *a, **k: calls.append("add") or add(*a, **k))
        monkeypatch.setattr(
            BitmapIndex,
            "add_many",
            lambda *a, **k: calls.append("add_many") or add_many(*a, **k),
        )
        batch = [make_artifact(f"n{i}", description=f"pdf tools word{i}") for i in range(8)]
        batch += [
            make_artifact("kept", description="new words"),
            make_artifact("twice", description="first text"),
            make_artifact("twice", description="second text wins"),
        ]
        cache.put_artifacts(batch)
        assert calls == ["add_many"]
        wanted = expected_names(cache)
        assert stored_names(cache, index) == wanted
        assert stored_names(cache, fresh_index(cache)) == wanted
        assert [hit.key for hit in cache.search("wins", fill=False)] == ["default/skill/twice"]
        assert cache.search("first", fill=False) == []
        assert cache.search("old", fill=False) == []
        assert cache.verify(deep=True).ok


def test_a_single_write_leaves_the_id_maps_to_the_next_merge(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """In layout 3 a single write, update or delete dirties neither ``artifact-ids`` nor
    ``artifact-keys`` (two B-trees fewer per commit): its mappings wait in ``search-pending``
    and every read sees them; the next merge moves them, and verify (deep and quick) agrees
    at each step."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact(f"a{i}", tags=["pdf"]) for i in range(5)])
        cache._write(lambda txn: cache._repos.index.merge(txn))
    stored = {
        db: raw_rows(cache_settings.cache_dir, db) for db in ("artifact-ids", "artifact-keys")
    }
    assert len(stored["artifact-ids"]) == 5
    steps = [
        lambda c: c.put_artifacts([make_artifact("new", tags=["pdf"])]),
        lambda c: c.put_artifacts([make_artifact("new", tags=["pdf"], description="docx")]),
        lambda c: c.delete_artifact("default/skill/a1"),
        lambda c: c.put_artifacts([make_artifact("a1", tags=["pdf"], description="back")]),
        lambda c: c.delete_artifact("default/skill/new"),
        lambda c: c.put_artifacts([make_artifact("new", tags=["pdf"], description="again")]),
    ]
    live = {f"default/skill/a{i}" for i in range(5)}
    for step, (add, drop) in zip(
        steps,
        [("new", None), (None, None), (None, "a1"), ("a1", None), (None, "new"), ("new", None)],
    ):
        with ProjectCache.open(settings=cache_settings) as cache:
            step(cache)
            live |= {f"default/skill/{add}"} if add else set()
            live -= {f"default/skill/{drop}"} if drop else set()
            assert {a.key for a in cache.list_artifacts(tag="pdf")} == live
            assert {h.key for h in cache.search("pdf", limit=50)} == live
            assert cache.verify(deep=True).ok and cache.verify().ok
        for db, rows in stored.items():
            assert raw_rows(cache_settings.cache_dir, db) == rows
    with ProjectCache.open(settings=cache_settings) as cache:
        cache._write(lambda txn: cache._repos.index.merge(txn))
        ids = cache._read(lambda txn: dict(cache._repos.ids.items(txn)))
        assert sorted(ids) == sorted(live)
        assert cache.verify(deep=True).ok and cache.verify().ok
    rows = raw_rows(cache_settings.cache_dir, "artifact-ids")
    assert sorted(k.decode() for k, _ in rows) == sorted(live)
    assert {k: int.from_bytes(v, "big") for k, v in rows} == {k.encode(): d for k, d in ids.items()}
    pending = raw_rows(cache_settings.cache_dir, "search-pending")
    assert not [k for k, _ in pending if k[:1] in (b"\xfc", b"\xfd")]


def test_an_index_of_layout_2_keeps_writing_its_id_maps_at_once(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """A cache whose index was built in layout 2 (an earlier 0.2.0-dev library) opens, and a
    write there puts its mappings straight into ``artifact-ids`` / ``artifact-keys``, as
    that library reads them (a rebuild by ``verify --repair`` brings it to layout 3)."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact(f"a{i}") for i in range(3)])
        cache._write(lambda txn: cache._repos.index.merge(txn))
    tamper(
        cache_settings.cache_dir,
        lambda txn, dbs: txn.put(b"\xff\x07layout", b"\x02", db=dbs["search-pending"]),
    )
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact("new")])
        cache.delete_artifact("default/skill/a0")
        assert cache.verify(deep=True).ok and cache.verify().ok
    keys = sorted(k for k, _ in raw_rows(cache_settings.cache_dir, "artifact-ids"))
    assert keys == [b"default/skill/a1", b"default/skill/a2", b"default/skill/new"]
    with ProjectCache.open(settings=cache_settings) as cache:
        found = {h.key for h in cache.search("artifact", limit=50)}
        assert found == {k.decode() for k in keys}


def test_quick_verify_counts_the_waiting_mappings(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """Quick verify corrects the stored id maps' counts by the mappings that wait in
    ``search-pending``: a clean cache passes, and a lost waiting mapping is a count finding."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact(f"a{i}") for i in range(5)])
        cache._write(lambda txn: cache._repos.index.merge(txn))
        cache.put_artifacts([make_artifact("new")])
        cache.delete_artifact("default/skill/a0")
        assert cache.verify().ok
    waiting = b"\xfd" + b"default/skill/new"
    assert waiting in dict(raw_rows(cache_settings.cache_dir, "search-pending"))
    tamper(cache_settings.cache_dir, lambda txn, dbs: txn.delete(waiting, db=dbs["search-pending"]))
    with ProjectCache.open(settings=cache_settings) as cache:
        found = {(f.kind, f.db) for f in cache.verify().findings}
        assert ("index", "artifact-ids") in found
        report = cache.verify(deep=True, repair=True)
        assert not report.ok or report.repaired
        assert cache.verify(deep=True).ok and cache.verify().ok
        ids = cache._read(lambda txn: dict(cache._repos.ids.items(txn)))
        assert sorted(ids) == [f"default/skill/a{i}" for i in range(1, 5)] + ["default/skill/new"]
    layout = dict(raw_rows(cache_settings.cache_dir, "search-pending"))[b"\xff\x07layout"]
    assert layout == b"\x03"  # the repair rebuilt the index in layout 3


def test_search_pages_name_artifacts_whose_id_maps_wait_in_the_log(
    cache_settings: Settings, make_artifact: MakeArtifact
) -> None:
    """The search's key lookups (``IdRepository.key_map``: one hit, a page, a tie group)
    read the mappings a single write left in ``search-pending`` (layout 3): an artifact
    written since the last merge is named on the page by every path that reaches it."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts(
            [make_artifact(f"a{i}", description="common words here") for i in range(8)]
        )
        cache._write(lambda txn: cache._repos.index.merge(txn))
        cache.put_artifacts([make_artifact("zebra", description="common words zanzibar")])
        cache.put_artifacts([make_artifact("yak", description="common words zanzibar")])
        repos = cache._repos
        new = cache._read(lambda txn: repos.ids.id_of(txn, "default/skill/zebra"))
        old = cache._read(lambda txn: repos.ids.id_of(txn, "default/skill/a0"))
        assert new is not None and old is not None
        assert cache._read(lambda txn: repos.ids.key_map(txn, [new])) == {
            new: "default/skill/zebra"
        }
        assert cache._read(lambda txn: repos.ids.key_map(txn, [old, new])) == {
            old: "default/skill/a0",
            new: "default/skill/zebra",
        }
        assert [h.key for h in cache.search("zebra")] == ["default/skill/zebra"]
        assert sorted(h.key for h in cache.search("zanzibar")) == [
            "default/skill/yak",
            "default/skill/zebra",
        ]
        both = cache.search("common zanzibar")  # (then the partial matches, ranked below)
        assert both.total == 2
        assert sorted(h.key for h in list(both)[:2]) == ["default/skill/yak", "default/skill/zebra"]
        assert len(cache.search("common words", limit=50)) == 10


def test_a_batch_past_merge_at_maps_its_new_ids_straight(
    cache_settings: Settings, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that merges maps its new ids straight into ``artifact-ids`` /
    ``artifact-keys``, after moving the mappings that waited (a deleted key put again in
    the batch, a new key of a single write, an update's id); it leaves none waiting, and
    the maps, search and verify agree with the records."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 4)
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts([make_artifact(f"a{i}", tags=["pdf"]) for i in range(5)])
        cache._write(lambda txn: cache._repos.index.merge(txn))
        cache.put_artifacts([make_artifact("single", tags=["pdf"])])  # waits
        cache.delete_artifact("default/skill/a1")  # waits: the key's id is deleted
        batch = [make_artifact(f"b{i}", tags=["pdf"]) for i in range(6)]
        batch += [
            make_artifact("a1", tags=["pdf"], description="back again"),
            make_artifact("a2", tags=["pdf"], description="updated"),
            make_artifact("b0", tags=["pdf"], description="twice"),
        ]
        calls: list[str] = []
        put = postings_module.IdRepository.put
        monkeypatch.setattr(
            postings_module.IdRepository,
            "put",
            lambda *a, **k: calls.append("put") or put(*a, **k),
        )
        cache.put_artifacts(batch)
        assert calls == []  # (every new id mapped straight)
        live = {f"default/skill/{n}" for n in ("a0", "a1", "a2", "a3", "a4", "single")}
        live |= {f"default/skill/b{i}" for i in range(6)}
        ids = cache._read(lambda txn: dict(cache._repos.ids.items(txn)))
        assert sorted(ids) == sorted(live)
        assert len(set(ids.values())) == len(ids)
        assert {h.key for h in cache.search("pdf", limit=50)} == live
        assert [h.key for h in cache.search("twice", fill=False)] == ["default/skill/b0"]
        assert stored_names(cache, cache._repos.index) == expected_names(cache)
        assert cache.verify(deep=True).ok and cache.verify().ok
    pending = raw_rows(cache_settings.cache_dir, "search-pending")
    assert not [k for k, _ in pending if k[:1] in (b"\xfc", b"\xfd")]
    rows = raw_rows(cache_settings.cache_dir, "artifact-ids")
    assert {k.decode(): int.from_bytes(v, "big") for k, v in rows} == ids


def test_index_fields_of_tokens_and_of_terms_are_not_mixed() -> None:
    """_inverted refuses entries of two index_fields_many calls of different kinds (a
    batch's tokens with a stem table beside one artifact's stemmed terms) with the
    project's own error, not a wrong inversion."""
    from projcache.errors import InvalidArgumentError
    from projcache.mutations import _inverted

    tokens = ({b"n": {b"running"}}, [], {b"running": b"run"})
    terms = ({b"n": {b"run"}}, [], None)
    with pytest.raises(InvalidArgumentError, match="mixed"):
        _inverted([(1, tokens), (2, terms)])
