"""Write docs/screenshots/web-page.png: the web page over the packaged examples, 1280x800.

A real ``projcache serve`` over a fresh copy of the examples (in a short
temporary folder, so the project paths on the page stay readable), shot by
headless Chromium exactly as ``test_web_page.py`` drives it::

    .venv/bin/python tests/e2e/make_screenshot.py [OUTPUT.png]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(HERE.parent)]  # as pytest puts them (rootdir-relative imports)

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from test_web_page import CHROMIUM, CHROMIUM_ARGS, VIEWPORT  # noqa: E402

from conftest import Servers, copy_examples, run_refresh  # noqa: E402


def main(argv: list[str]) -> int:
    """Serve the examples, load the page, save the screenshot; return the exit status."""
    target = Path(argv[0]).resolve() if argv else ROOT / "docs" / "screenshots" / "web-page.png"
    with tempfile.TemporaryDirectory(prefix="sm-") as tmp:
        base = Path(tmp)
        root = copy_examples(base / "src")
        projects = sorted((root / "projects").iterdir())
        run_refresh(base / "home", base / "cache", [root / "collections" / "default"], projects)
        servers = Servers(base / "served", base / "home")
        try:
            url = servers.start(base / "cache", "--refresh-interval", "0")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(url)
                expect(page.get_by_test_id("artifact-count")).to_have_text("14 artifact(s)")
                expect(page.get_by_test_id("summary")).to_contain_text("source error")
                target.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(target))
                browser.close()
        finally:
            servers.stop_all()
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
