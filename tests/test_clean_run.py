"""Issue 17 item 8 (and 7): a test run leaves the clone clean; the demo installs little.

The Locust load test writes its results into a git-ignored folder, so ``tasks.py test``
changes no tracked file and adds no untracked one; the demo task installs the package
without the dev tools.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_module(path: Path, name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def test_load_results_go_to_a_folder_git_ignores() -> None:
    """bench/results/runs/ holds run outputs, and git ignores it (tracked results stay put)."""
    load = _load_module(ROOT / "tests" / "load" / "test_load.py", "_load_for_clean_run")
    runs = load.RUNS  # type: ignore[attr-defined]
    assert runs == ROOT / "bench" / "results" / "runs"
    ignore = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "/bench/results/runs/" in ignore
    git = shutil.which("git")
    if git is not None and (ROOT / ".git").exists():
        for name in ("locust-20990101T000000Z.json", "locust-latest.md"):
            done = subprocess.run(
                [git, "check-ignore", "-q", str(runs.relative_to(ROOT) / name)], cwd=ROOT
            )
            assert done.returncode == 0, f"git does not ignore {name} in {runs}"


def test_demo_installs_the_package_alone_and_tests_the_dev_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """tasks.py: `demo` asks pip for `.` only, every other task for `.[dev]`."""
    tasks = _load_module(ROOT / "tasks.py", "_tasks_for_clean_run")
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(tasks, "_run", lambda *args: calls.append(args))
    monkeypatch.setattr(tasks, "STAMP", tmp_path / "stamp")
    monkeypatch.setattr(tasks, "BIN", tmp_path / "bin")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")  # the venv exists
    tasks.ensure_venv("")  # type: ignore[attr-defined]
    assert calls[-1][-2:] == ("-e", ".")
    calls.clear()
    tasks.ensure_venv("")  # type: ignore[attr-defined]
    assert calls == []  # installed already
    tasks.ensure_venv("dev")  # type: ignore[attr-defined]
    assert calls[-1][-2:] == ("-e", ".[dev]")
    calls.clear()
    tasks.ensure_venv("")  # type: ignore[attr-defined]
    assert calls == []  # the dev install serves the demo too
