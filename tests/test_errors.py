"""Tests of the exception tree and the LMDB error table (``projcache.errors``)."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import lmdb
import pytest

from projcache import errors
from projcache.errors import (
    ArtifactNotFound,
    CacheBusyError,
    CacheCorruptError,
    CacheFullError,
    CachePermissionError,
    ConfigError,
    DiskFullError,
    InvalidArgumentError,
    InvalidRecordError,
    KeyTooLongError,
    NotFoundError,
    ProjcacheError,
    ProjectNotFound,
    ReadOnlyCacheError,
    StorageError,
    translate_lmdb_error,
)

EXCEPTIONS: list[type[ProjcacheError]] = [
    obj
    for obj in (getattr(errors, name) for name in errors.__all__)
    if isinstance(obj, type) and issubclass(obj, BaseException)
]
STORAGE_CLASSES = [cls for cls in EXCEPTIONS if issubclass(cls, StorageError)]


def lmdb_error(cls: type[lmdb.Error], code: int = 0, what: str = "mdb_put") -> lmdb.Error:
    """Build an lmdb exception as py-lmdb raises it, with ``what`` and ``code`` attributes."""
    exc = cls(f"{what}: simulated")
    exc.what = what  # type: ignore[misc]
    exc.code = code  # type: ignore[misc]
    return exc


def tree_entries() -> list[tuple[int, str, int]]:
    """Parse the module docstring's tree into ``(column, class name, exit code)`` rows."""
    rows = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.search(r"([A-Z][A-Za-z]+)\b.*?\bexit (\d+)", line)
        if match:
            rows.append((match.start(1), match.group(1), int(match.group(2))))
    return rows


class TestTree:
    """The class hierarchy, exit codes and the docstring that draws them."""

    def test_all_is_sorted(self) -> None:
        """errors.__all__ is sorted and names only existing objects."""
        assert list(errors.__all__) == sorted(errors.__all__)
        assert all(hasattr(errors, name) for name in errors.__all__)

    def test_every_exported_error_is_listed(self) -> None:
        """Every ProjcacheError subclass defined in the module is exported."""
        defined = {
            name
            for name, obj in vars(errors).items()
            if isinstance(obj, type) and issubclass(obj, ProjcacheError)
        }
        assert defined == {cls.__name__ for cls in EXCEPTIONS}

    @pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
    def test_derives_from_root(self, cls: type[ProjcacheError]) -> None:
        """Every exported exception derives from ProjcacheError."""
        assert issubclass(cls, ProjcacheError)

    @pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
    def test_exit_code(self, cls: type[ProjcacheError]) -> None:
        """exit_code is an int >= 2, and 2 exactly for the InvalidRecordError family."""
        assert type(cls.exit_code) is int
        assert cls.exit_code >= 2
        assert (cls.exit_code == 2) == issubclass(cls, InvalidRecordError)

    @pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
    def test_docstring_names_class(self, cls: type[ProjcacheError]) -> None:
        """The module docstring's tree mentions every class."""
        assert re.search(rf"\b{cls.__name__}\b", errors.__doc__ or "")

    @pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
    def test_has_docstring(self, cls: type[ProjcacheError]) -> None:
        """Every exception class has a docstring."""
        assert cls.__doc__ and cls.__doc__.strip()

    def test_docstring_tree_matches_classes(self) -> None:
        """The drawn tree has each class once, under its real parent, with its real exit code."""
        rows = tree_entries()
        assert sorted(name for _, name, _ in rows) == sorted(c.__name__ for c in EXCEPTIONS)
        stack: list[tuple[int, str]] = []
        for column, name, code in rows:
            cls = getattr(errors, name)
            assert cls.exit_code == code, f"{name}: tree says exit {code}"
            while stack and stack[-1][0] >= column:
                stack.pop()
            if stack:
                parent = getattr(errors, stack[-1][1])
                assert parent in cls.__bases__, f"{name} is drawn under {parent.__name__}"
            else:
                assert cls is ProjcacheError
            stack.append((column, name))

    @pytest.mark.parametrize(
        ("cls", "builtin"),
        [
            (ConfigError, ValueError),
            (InvalidRecordError, ValueError),
            (InvalidArgumentError, ValueError),
            (NotFoundError, KeyError),
            (ArtifactNotFound, KeyError),
            (ProjectNotFound, KeyError),
            (CachePermissionError, PermissionError),
        ],
    )
    def test_builtin_bases(self, cls: type[ProjcacheError], builtin: type[Exception]) -> None:
        """Classes whose meaning matches a builtin also subclass it."""
        assert issubclass(cls, builtin)


class TestHttpStatus:
    """``http_status`` lives beside ``exit_code`` on every class; the server only reads it."""

    @pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
    def test_every_class_states_both(self, cls: type[ProjcacheError]) -> None:
        """Each class says its own exit code and HTTP status (not left to a table elsewhere)."""
        assert "exit_code" in vars(cls), cls
        assert "http_status" in vars(cls), cls
        assert type(cls.http_status) is int and 400 <= cls.http_status <= 599

    @pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
    def test_api_reference_gives_the_true_status(self, cls: type[ProjcacheError]) -> None:
        """The error table of api-reference.md shows each class's exit code and HTTP status."""
        text = (Path(__file__).parent.parent / "docs/cache/api-reference.md").read_text()
        row = re.search(rf"^\| `{cls.__name__}` \|[^|]*\| (\d+) \| (\d+) \|", text, re.M)
        assert row is not None, cls
        assert (int(row.group(1)), int(row.group(2))) == (cls.exit_code, cls.http_status)

    def test_the_server_answers_with_the_class_status(self) -> None:
        """``error_status`` is the class attribute: a subclass without its own entry inherits."""
        pytest.importorskip("fastapi")
        from projcache.server.app import error_status

        class Custom(CacheBusyError):
            """A caller's own subclass."""

        for cls in EXCEPTIONS:
            assert error_status(cls("x")) == cls.http_status
        assert error_status(Custom("x")) == 503
        import projcache.server.app as app

        assert not hasattr(app, "_STATUS")


class TestInvalidArgument:
    """Bad arguments and bad records are told apart."""

    def test_it_has_its_own_exit_code(self) -> None:
        """No other class shares exit 14."""
        assert InvalidArgumentError.exit_code == 14
        assert [c for c in EXCEPTIONS if c.exit_code == 14] == [InvalidArgumentError]

    def test_it_is_no_invalid_record_error(self) -> None:
        """An argument error is not caught as a record error, nor the other way round."""
        assert not issubclass(InvalidArgumentError, InvalidRecordError)
        assert not issubclass(InvalidRecordError, InvalidArgumentError)

    def test_as_argument_error_turns_a_record_check_into_an_argument_error(self) -> None:
        """The codec's checks raise InvalidRecordError; on an argument it becomes one."""
        from projcache import codec

        wanted = "artifact key must look like"
        with pytest.raises(InvalidArgumentError, match=wanted), errors.as_argument_error():
            codec.parse_artifact_key("nope")
        with pytest.raises(KeyTooLongError), errors.as_argument_error():
            codec.encode_key("x" * 600)

    def test_cache_disabled_error_lives_in_errors(self) -> None:
        """``CacheDisabledError`` is defined in projcache.errors, importable from projcache."""
        import projcache

        assert errors.CacheDisabledError.__module__ == "projcache.errors"
        assert projcache.CacheDisabledError is errors.CacheDisabledError


class TestMessagesAndHints:
    """str(), message and hint."""

    def test_str_is_message(self) -> None:
        """str() of an error is its message, unchanged."""
        exc = StorageError("something broke")
        assert str(exc) == exc.message == "something broke"

    def test_default_and_explicit_hint(self) -> None:
        """hint defaults to the class hint; an explicit hint (even empty) replaces it."""
        assert CacheFullError("full").hint == CacheFullError.default_hint
        assert CacheFullError("full", hint="do this").hint == "do this"
        assert CacheFullError("full", hint="").hint == ""

    @pytest.mark.parametrize("cls", STORAGE_CLASSES, ids=lambda c: c.__name__)
    def test_storage_classes_have_hints(self, cls: type[ProjcacheError]) -> None:
        """Every storage error class tells the user what to do."""
        assert cls("x").hint.strip()

    def test_artifact_not_found_is_a_key_error(self) -> None:
        """ArtifactNotFound is caught by ``except KeyError`` and str() is the plain message."""
        message = "no artifact 'default/skill/pdf'"
        with pytest.raises(KeyError) as info:
            raise ArtifactNotFound(message)
        assert isinstance(info.value, ArtifactNotFound)
        assert str(info.value) == message  # KeyError would give a repr with extra quotes
        assert info.value.exit_code == 4
        assert "projcache list artifacts" in info.value.hint

    def test_project_not_found_str(self) -> None:
        """ProjectNotFound's str() is the plain message too."""
        assert str(ProjectNotFound("no project 'web'")) == "no project 'web'"


class TestTranslateLmdbError:
    """translate_lmdb_error and its table."""

    @pytest.mark.parametrize(
        ("lmdb_cls", "expected"),
        [
            (lmdb.MapFullError, CacheFullError),
            (lmdb.DiskError, DiskFullError),
            (lmdb.ReadersFullError, CacheBusyError),
            (lmdb.TlsFullError, CacheBusyError),
            (lmdb.LockError, CacheBusyError),
            (lmdb.ReadonlyError, ReadOnlyCacheError),
            (lmdb.CorruptedError, CacheCorruptError),
            (lmdb.PageNotFoundError, CacheCorruptError),
            (lmdb.PanicError, CacheCorruptError),
            (lmdb.InvalidError, CacheCorruptError),
            (lmdb.VersionMismatchError, CacheCorruptError),
            (lmdb.BadChecksumError, CacheCorruptError),
            (lmdb.BadValsizeError, KeyTooLongError),
        ],
    )
    def test_table(self, lmdb_cls: type[lmdb.Error], expected: type[ProjcacheError]) -> None:
        """Each tabled lmdb class (without an errno code) becomes exactly its projcache class."""
        result = translate_lmdb_error(lmdb_error(lmdb_cls))
        assert type(result) is expected

    def test_map_full(self) -> None:
        """lmdb.MapFullError becomes CacheFullError, with the hint to raise the maximum."""
        result = translate_lmdb_error(lmdb_error(lmdb.MapFullError, -30792))
        assert type(result) is CacheFullError
        assert "PROJCACHE_MAX_MAP_SIZE" in result.hint

    def test_disk_error_enospc(self) -> None:
        """lmdb.DiskError with errno ENOSPC becomes DiskFullError."""
        result = translate_lmdb_error(lmdb_error(lmdb.DiskError, errno.ENOSPC), path="/c")
        assert type(result) is DiskFullError
        assert str(result) == "no space left on the device holding the cache (/c)"
        assert result.exit_code == 6

    def test_any_enospc(self) -> None:
        """Any lmdb error carrying ENOSPC becomes DiskFullError, whatever its class."""
        result = translate_lmdb_error(lmdb_error(lmdb.Error, errno.ENOSPC))
        assert type(result) is DiskFullError

    def test_readers_full(self) -> None:
        """lmdb.ReadersFullError becomes CacheBusyError (exit 11)."""
        result = translate_lmdb_error(lmdb_error(lmdb.ReadersFullError, -30790))
        assert type(result) is CacheBusyError
        assert result.exit_code == 11

    def test_corrupted(self) -> None:
        """lmdb.CorruptedError becomes CacheCorruptError, with the hint to run verify --repair."""
        result = translate_lmdb_error(lmdb_error(lmdb.CorruptedError, -30796))
        assert type(result) is CacheCorruptError
        assert "verify --repair" in result.hint

    @pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
    def test_permission_codes(self, code: int) -> None:
        """An lmdb error carrying EACCES, EPERM or EROFS becomes CachePermissionError."""
        result = translate_lmdb_error(lmdb_error(lmdb.Error, code, what="mdb_env_open"), path="/c")
        assert type(result) is CachePermissionError
        assert isinstance(result, PermissionError)
        assert str(result).startswith("permission denied on the cache (/c): ")
        assert result.exit_code == 8

    @pytest.mark.parametrize(
        "lmdb_cls", [lmdb.Error, lmdb.KeyExistsError, lmdb.TxnFullError, lmdb.BadTxnError]
    )
    def test_unknown_becomes_storage_error(self, lmdb_cls: type[lmdb.Error]) -> None:
        """An lmdb error outside the table becomes a plain StorageError carrying LMDB's text."""
        result = translate_lmdb_error(lmdb_error(lmdb_cls, errno.EIO), path="/c")
        assert type(result) is StorageError
        assert str(result) == "LMDB error (/c): mdb_put: simulated"
        assert result.exit_code == 5

    def test_subclass_of_tabled_class(self) -> None:
        """A subclass of a tabled lmdb class is translated through its base (MRO lookup)."""

        class CustomMapFull(lmdb.MapFullError):
            pass

        assert type(translate_lmdb_error(lmdb_error(CustomMapFull))) is CacheFullError

    def test_message_names_path_and_lmdb_text(self) -> None:
        """The translated message carries the table text, the path and LMDB's own text."""
        result = translate_lmdb_error(lmdb_error(lmdb.PanicError), path="/var/cache/p")
        assert str(result) == "LMDB reported a fatal error (/var/cache/p): mdb_put: simulated"

    def test_no_path(self) -> None:
        """Without a path no empty parentheses appear."""
        assert "()" not in str(translate_lmdb_error(lmdb_error(lmdb.MapFullError)))

    def test_real_map_full_error(self, tmp_path: Path) -> None:
        """A MapFullError raised by a real LMDB environment becomes CacheFullError."""
        env = lmdb.open(str(tmp_path / "env"), map_size=64 * 1024)
        try:
            with pytest.raises(lmdb.MapFullError) as info, env.begin(write=True) as txn:
                for i in range(10_000):
                    txn.put(str(i).encode(), b"x" * 100)
        finally:
            env.close()
        result = translate_lmdb_error(info.value, path=str(tmp_path))
        assert type(result) is CacheFullError
        assert str(tmp_path) in str(result)

    @pytest.mark.parametrize(
        "lmdb_cls",
        [
            lmdb.MapFullError,
            lmdb.DiskError,
            lmdb.ReadersFullError,
            lmdb.CorruptedError,
            lmdb.BadValsizeError,
            lmdb.KeyExistsError,
        ],
    )
    def test_translated_errors_carry_a_hint(self, lmdb_cls: type[lmdb.Error]) -> None:
        """Every error translate_lmdb_error returns tells the user what to do (a non-empty hint)."""
        assert translate_lmdb_error(lmdb_error(lmdb_cls)).hint.strip()
