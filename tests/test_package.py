"""The package surface: exported names, version, import weight."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import projcache

EXPECTED_ALL = [
    "ARTIFACT_TYPES",
    "Artifact",
    "ArtifactNotFound",
    "CacheAlreadyOpenError",
    "CacheBusyError",
    "CacheClosedError",
    "CacheCorruptError",
    "CacheDisabledError",
    "CacheFullError",
    "CacheNotFoundError",
    "CachePermissionError",
    "CacheStats",
    "ConfigError",
    "CorruptRecordError",
    "DEPLOYMENT_STATES",
    "Deployment",
    "DiskFullError",
    "Finding",
    "Fingerprint",
    "InvalidArgumentError",
    "InvalidRecordError",
    "KeyTooLongError",
    "NotFoundError",
    "ProjcacheError",
    "Project",
    "ProjectCache",
    "ProjectNotFound",
    "ReadOnlyCacheError",
    "RecordTooLargeError",
    "RefreshReport",
    "SchemaVersionError",
    "SearchHit",
    "SearchResults",
    "ServerError",
    "Settings",
    "SourceError",
    "SourceFileError",
    "SourceOutsideRootError",
    "SourceTooLargeError",
    "StorageError",
    "UnsafeCacheDirError",
    "VerifyReport",
    "__version__",
    "load_settings",
]


def test_all_is_pinned_and_sorted() -> None:
    """__all__ is exactly the documented public surface, in sorted order."""
    assert projcache.__all__ == EXPECTED_ALL
    assert projcache.__all__ == sorted(projcache.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_exported_name_resolves(name: str) -> None:
    """Each name in __all__ is importable from the package and has a docstring."""
    value = getattr(projcache, name)
    if name != "__version__":
        assert value.__doc__, f"{name} has no docstring"


def test_unknown_attribute_raises_attribute_error() -> None:
    """A name that is not exported is an AttributeError, as for any module."""
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        projcache.nope  # noqa: B018


def test_version_matches_installed_metadata() -> None:
    """__version__ is read from the installed distribution's metadata."""
    assert projcache.__version__ == version("projcache")


def _modules_after(code: str) -> list[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    modules: list[str] = json.loads(out)
    return modules


def test_import_projcache_imports_no_cli_or_yaml_library() -> None:
    """`import projcache` loads neither typer, rich, click, yaml nor pydantic."""
    loaded = _modules_after("import projcache")
    for heavy in ("typer", "rich", "click", "yaml", "pydantic", "lmdb"):
        assert heavy not in loaded, f"import projcache imported {heavy}"


def test_raw_read_path_does_not_build_models() -> None:
    """Opening a cache and reading raw JSON does not import pydantic (lazy models)."""
    code = (
        "import tempfile\n"
        "from projcache import ProjectCache\n"
        "d = tempfile.mkdtemp()\n"
        "with ProjectCache.open(d) as c:\n"
        "    c.get_artifact_json('default/skill/none')\n"
    )
    loaded = _modules_after(code)
    assert "lmdb" in loaded
    assert "pydantic" not in loaded
    assert "typer" not in loaded


def test_the_examples_hold_no_python_files() -> None:
    """pip compiles every .py it installs, adding __pycache__ to an example artifact's folder.

    That changes the artifact's content hash, so an installed copy of the examples
    would show its deployments as "modified".
    """
    examples = Path(projcache.__file__).parent / "examples"
    assert examples.is_dir()
    assert sorted(examples.rglob("*.py")) == []
    assert sorted(examples.rglob("__pycache__")) == []
