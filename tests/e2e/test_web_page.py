"""The web page at ``/`` in headless Chromium, against a real ``projcache serve`` process.

The browser is Debian's ``chromium`` (``$PROJCACHE_CHROMIUM``, else ``chromium``
on ``PATH``, else ``/usr/bin/chromium``), driven by Playwright; Playwright never
downloads a browser of its own.  The data is a copy of the packaged examples
(current, outdated, modified and missing deployments, a malformed agent in the
collection) plus a malformed agent in the ``notes`` project, so every badge has
something to show.  What the page shows is checked against what the API
answers for the same cache.  Tests that only read share one server per module
(``served_examples``); tests that change files or need other server options
start their own (``make_site``).  Every assertion auto-waits (``expect``);
nothing sleeps for a fixed time.

``make_screenshot.py`` shoots the page the same way for
``docs/screenshots/web-page.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import os
import re
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote

import httpx
import pytest

from factories import CollectionBuilder, ProjectBuilder

if not os.environ.get("CI"):  # CI installs the e2e extra: a missing driver must fail there
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (e2e extra)")

from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    Response,
    ViewportSize,
    expect,
    sync_playwright,
)

API = "api/v1/cache"
CHROMIUM = os.environ.get("PROJCACHE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless, as root, in a closed network: no sandbox, no GPU, no background connections;
# shared memory in /tmp, since containers often give /dev/shm only 64 MB (Debian's
# launcher means to add that flag itself, but its /dev/shm check can misfire).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
STATES = ("outdated", "modified", "missing")
BROKEN = "---\nname: [unclosed\n---\nA malformed agent.\n"  # as in conftest

expect.set_options(timeout=10_000)


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for this module's tests (each test gets its own context).

    Module scope, not session: between its calls Playwright's sync API leaves
    its event loop marked as running in the main thread, so ``asyncio.run`` in
    any later test of the same process would fail while the browser is open.
    pytest tears a module fixture down before a test of another module runs.
    """
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    playwright: Playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (own context: no shared cache or session storage); fails on JS errors."""
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))

    def console(message: Any) -> None:
        # The browser logs every non-2xx answer ("Failed to load resource ..."); a test that
        # expects them (401) checks them itself.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(f"console: {message.text}")

    opened.on("console", console)
    yield opened
    context.close()
    assert not problems, problems


@dataclasses.dataclass
class Site:
    """A served cache over a private copy of the examples."""

    url: str
    root: Path
    served: Any  # conftest.ServedCache
    api_key: Optional[str] = None

    @property
    def collection(self) -> Path:
        """The ``default`` collection folder."""
        return self.root / "collections" / "default"

    def project(self, name: str) -> Path:
        """A project folder (``webapp``, ``api-service``, ``notes``)."""
        return self.root / "projects" / name

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/cache/<path>`` straight from the server (not the page); the JSON."""
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        answer = httpx.get(f"{self.url}{API}/{path}", params=params, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def artifact_keys(self, **params: Any) -> list[str]:
        """The keys ``GET artifacts`` lists, in its order."""
        return [a["key"] for a in self.api("artifacts", limit=1000, **params)["items"]]

    def names(self) -> dict[str, str]:
        """Project id -> project name."""
        return {p["id"]: p["name"] for p in self.api("projects", limit=1000)["items"]}

    def shown(self, **params: Any) -> list[str]:
        """The keys ``GET artifacts`` lists as the page shows them: a project-only artifact
        (``@<project id>/agent/researcher``) as ``<project name> \u203a agent/researcher``."""
        names = self.names()
        return [display(key, names) for key in self.artifact_keys(**params)]


def display(key: str, names: dict[str, str]) -> str:
    """``key`` as the page (and the CLI) shows it."""
    if key.startswith("@"):
        collection, _, rest = key.partition("/")
        return f"{names[collection[1:]]} \u203a {rest}"
    return key


@pytest.fixture
def make_site(
    examples_tree: Path,
    tmp_path: Path,
    refresh_cache: Callable[..., Any],
    served_cache: Callable[..., Any],
) -> Iterator[Callable[..., Site]]:
    """Factory of a private site a test may change: ``make_site(*serve_args, api_key=None,
    project_error=True)``; no server may log a traceback."""
    made: list[Site] = []

    def make(*serve_args: str, api_key: Optional[str] = None, project_error: bool = True) -> Site:
        if project_error:
            (examples_tree / "projects" / "notes" / ".claude" / "agents" / "broken.md").write_text(
                BROKEN, encoding="utf-8"
            )
        cache_dir = tmp_path / "cache"
        projects = sorted((examples_tree / "projects").iterdir())
        refresh_cache(cache_dir, [examples_tree / "collections" / "default"], projects)
        env = {"PROJCACHE_API_KEY": api_key} if api_key else None
        # No TTL refresher: what changes on the page changes because the test clicked Refresh.
        served = served_cache(cache_dir, "--refresh-interval", "0", *serve_args, env=env)
        made.append(Site(url=str(served), root=examples_tree, served=served, api_key=api_key))
        return made[-1]

    yield make
    for site in made:
        assert "Traceback" not in site.served.log_text()


@pytest.fixture
def site(served_examples: Any) -> Site:
    """The examples (plus a project error) served for read-only tests (one server per module)."""
    return Site(url=str(served_examples.url), root=served_examples.root, served=served_examples.url)


def loaded(page: Page, site: Site) -> Page:
    """Open ``/`` and wait until every artifact the API lists is on the page."""
    page.goto(site.url)
    expect(page.get_by_test_id("artifacts").locator("li .key")).to_have_text(site.shown())
    return page


def shown_keys(page: Page) -> Any:
    """A locator of the shown artifacts' keys, as shown (``Site.shown``), for ``to_have_text``."""
    return page.get_by_test_id("artifacts").locator("li .key")


# -- loading -----------------------------------------------------------------------------


class TestLoad:
    def test_summary_counts_match_the_status(self, page: Page, site: Site) -> None:
        """The summary line shows the counts, outdated deployments and source errors."""
        status = site.api("status")
        counts = status["counts"]
        outdated = len(site.api("deployments", state="outdated", limit=1000)["items"])
        assert (counts["artifacts"], counts["projects"], outdated) == (14, 3, 1)
        assert len(status["errors"]) == 2  # the collection's broken agent and the project's
        loaded(page, site)
        expect(page.get_by_test_id("summary")).to_contain_text(
            f"{counts['artifacts']} artifacts · {counts['projects']} projects · "
            f"{counts['deployments']} deployments ({outdated} outdated)"
        )
        expect(page.get_by_test_id("summary")).to_contain_text("2 source error(s)")
        expect(page.get_by_test_id("artifact-count")).to_have_text("14 artifact(s)")

    def test_projects_have_freshness_error_and_state_badges(self, page: Page, site: Site) -> None:
        """Each project is listed fresh; errors and non-current deployments are badges."""
        projects = site.api("projects")["items"]
        loaded(page, site)
        items = page.get_by_test_id("projects").locator("li")
        expect(items.locator(".name")).to_have_text([p["name"] for p in projects])
        for project in projects:
            item = page.locator(f'[data-project="{project["id"]}"]')
            expect(item.locator("[data-badge=fresh]")).to_have_text("fresh")
            expect(item.locator("[data-badge=stale]")).to_have_count(0)
            errors = item.locator("[data-badge=errors]")
            if project["errors"]:
                expect(errors).to_have_text(f"{len(project['errors'])} error(s)")
                expect(errors).to_have_attribute("title", re.compile("invalid YAML"))
            else:
                expect(errors).to_have_count(0)
            shown = [f"{project['states'][s]} {s}" for s in STATES if project["states"].get(s)]
            expect(item.locator(".badge:not(.fresh):not(.errors)")).to_have_text(shown)
        by_name = {p["name"]: p for p in projects}
        assert by_name["notes"]["errors"]
        assert by_name["webapp"]["states"] == {"current": 3, "outdated": 1, "modified": 1}
        assert by_name["api-service"]["states"] == {"current": 3, "missing": 2}

    def test_artifact_badges_match_the_deployments(self, page: Page, site: Site) -> None:
        """An artifact carries one badge per non-current deployment state, as the API has it."""
        expected: dict[str, list[str]] = {key: [] for key in site.artifact_keys()}
        for deployment in site.api("deployments", limit=1000)["items"]:
            if deployment["state"] != "current" and deployment["artifact"] in expected:
                expected[deployment["artifact"]].append(deployment["state"])
        assert {k: v for k, v in expected.items() if v} == {
            "default/skill/code-review": ["outdated"],
            "default/command/review-pr": ["modified"],
            "default/command/test-plan": ["missing"],
        }
        loaded(page, site)
        shown = (
            page.get_by_test_id("artifacts")
            .locator("li")
            .evaluate_all(
                """items => Object.fromEntries(items.map(li => [li.dataset.key,
                 [...li.querySelectorAll('.badge:not(.type)')].map(b => b.dataset.badge)]))"""
            )
        )
        assert {k: sorted(v) for k, v in shown.items()} == {
            k: sorted(v) for k, v in expected.items()
        }


# -- search and filters ------------------------------------------------------------------


class TestSearchAndFilters:
    def test_results_narrow_as_you_type(self, page: Page, site: Site) -> None:
        """Typing (no Enter) shows the search hits and their count; clearing brings all back."""
        loaded(page, site)
        hits = site.api("search", q="review")
        assert hits["total"] == 3
        page.get_by_test_id("search").press_sequentially("review", delay=40)
        expect(shown_keys(page)).to_have_text([h["key"] for h in hits["items"]])
        expect(page.get_by_test_id("artifact-count")).to_have_text("3 artifact(s)")
        page.get_by_test_id("search").press_sequentially(" security", delay=40)
        narrower = site.api("search", q="review security")
        assert 0 < narrower["total"] < hits["total"]
        expect(shown_keys(page)).to_have_text([h["key"] for h in narrower["items"]])
        expect(page.get_by_test_id("artifact-count")).to_have_text(
            f"{narrower['total']} artifact(s)"
        )
        page.get_by_test_id("search").fill("")
        expect(shown_keys(page)).to_have_text(site.shown())
        expect(page.get_by_test_id("artifact-count")).to_have_text("14 artifact(s)")

    def test_no_hits(self, page: Page, site: Site) -> None:
        """A word nothing contains empties the list and says 0."""
        loaded(page, site)
        page.get_by_test_id("search").press_sequentially("zyzzyva", delay=20)
        expect(page.get_by_test_id("artifact-count")).to_have_text("0 artifact(s)")
        expect(shown_keys(page)).to_have_count(0)

    def test_type_filter(self, page: Page, site: Site) -> None:
        """The type select shows only that type, with search too."""
        loaded(page, site)
        page.get_by_test_id("filter-type").select_option("command")
        commands = site.shown(type="command")
        expect(shown_keys(page)).to_have_text(commands)
        expect(page.get_by_test_id("artifact-count")).to_have_text(f"{len(commands)} artifact(s)")
        page.get_by_test_id("search").press_sequentially("review", delay=20)
        expect(shown_keys(page)).to_have_text(["default/command/review-pr"])
        page.get_by_test_id("filter-type").select_option("")
        expect(shown_keys(page)).to_have_count(3)

    def test_project_select_and_click(self, page: Page, site: Site) -> None:
        """The project select, or a click on a project, shows what is deployed there."""
        loaded(page, site)
        projects = {p["name"]: p["id"] for p in site.api("projects")["items"]}
        page.get_by_test_id("filter-project").select_option(label="webapp")
        expect(shown_keys(page)).to_have_text(site.shown(project=projects["webapp"]))
        page.locator(f'[data-project="{projects["api-service"]}"]').click()
        expect(page.get_by_test_id("filter-project")).to_have_value(projects["api-service"])
        expected = site.shown(project=projects["api-service"])
        assert "default/command/test-plan" in expected
        expect(shown_keys(page)).to_have_text(expected)
        # Its missing deployments are this project's, so the state filter keeps them.
        page.get_by_test_id("filter-state").select_option("missing")
        expect(shown_keys(page)).to_have_text(["default/command/test-plan"])
        page.get_by_test_id("filter-project").select_option("")
        page.get_by_test_id("filter-state").select_option("")
        expect(shown_keys(page)).to_have_text(site.shown())

    def test_state_filter(self, page: Page, site: Site) -> None:
        """The state select shows only artifacts with a deployment in that state."""
        loaded(page, site)
        for state, key in [
            ("outdated", "default/skill/code-review"),
            ("modified", "default/command/review-pr"),
            ("missing", "default/command/test-plan"),
        ]:
            assert site.artifact_keys(state=state) == [key]
            page.get_by_test_id("filter-state").select_option(state)
            expect(shown_keys(page)).to_have_text([key])
            expect(page.get_by_test_id("artifact-count")).to_have_text("1 artifact(s)")
            item = page.locator(f'#artifacts li[data-key="{key}"]')
            expect(item.locator(f"[data-badge={state}]")).to_have_text(state)
        page.get_by_test_id("filter-type").select_option("agent")
        expect(shown_keys(page)).to_have_count(0)


# -- refresh -----------------------------------------------------------------------------


NEW_COMMAND = """\
---
description: Draft release notes from the merged pull requests.
tags: [release]
---
Collect the merged pull requests since the last tag and draft the notes.
"""


def test_refresh_shows_new_state_without_reload(page: Page, make_site: Callable[..., Site]) -> None:
    """After files change, Refresh shows progress, then the new artifact and badge in place."""
    site = make_site()
    loaded(page, site)
    page.evaluate("window.notReloaded = true")
    (site.collection / "commands" / "release-notes.md").write_text(NEW_COMMAND, encoding="utf-8")
    deployed = site.project("webapp") / ".claude" / "skills" / "pdf" / "SKILL.md"
    deployed.write_text(deployed.read_text(encoding="utf-8") + "\nA local edit.\n", "utf-8")

    held: list[Any] = []  # hold the POST so the "in progress" state can be seen for sure
    page.route(f"**/{API}/refresh", lambda route: held.append(route))
    page.get_by_test_id("refresh").click()
    expect(page.get_by_test_id("refresh-state")).to_have_text("refreshing…")
    expect(page.get_by_test_id("refresh")).to_be_disabled()
    expect(page.locator("#refresh-progress")).to_be_visible()
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)  # lets Playwright dispatch the route event
    assert held, "the page sent no POST refresh"
    held[0].continue_()
    page.unroute(f"**/{API}/refresh")

    expect(page.get_by_test_id("refresh-state")).to_have_text(
        re.compile(r"^refreshed: \d+ sources checked, [1-9]\d* re-read")
    )
    expect(page.get_by_test_id("refresh")).to_be_enabled()
    expect(page.locator("#refresh-progress")).to_be_hidden()
    expect(shown_keys(page)).to_have_text(site.shown())
    assert "default/command/release-notes" in site.artifact_keys()
    expect(page.get_by_test_id("artifact-count")).to_have_text("15 artifact(s)")
    expect(page.get_by_test_id("summary")).to_contain_text("15 artifacts")
    pdf = page.locator('#artifacts li[data-key="default/skill/pdf"]')
    expect(pdf.locator("[data-badge=modified]")).to_have_text("modified")
    webapp = page.get_by_test_id("projects").locator("li", has_text="webapp")
    expect(webapp.locator("[data-badge=modified]")).to_have_text("2 modified")
    assert page.evaluate("window.notReloaded") is True


def test_invalidated_project_turns_stale_then_fresh(
    page: Page, make_site: Callable[..., Site]
) -> None:
    """An invalidated project shows a stale badge; Refresh makes it fresh again."""
    site = make_site()
    webapp = next(p for p in site.api("projects")["items"] if p["name"] == "webapp")
    answer = httpx.post(f"{site.url}{API}/invalidate", json={"project": webapp["id"]})
    assert answer.json() == {"invalidated": 1}
    loaded(page, site)
    item = page.locator(f'[data-project="{webapp["id"]}"]')
    expect(item.locator("[data-badge=stale]")).to_have_text("stale")
    expect(page.get_by_test_id("projects").locator("[data-badge=fresh]")).to_have_count(2)
    page.get_by_test_id("refresh").click()
    expect(page.get_by_test_id("refresh-state")).to_have_text(re.compile(r"^refreshed: "))
    expect(item.locator("[data-badge=fresh]")).to_have_text("fresh")
    expect(page.get_by_test_id("projects").locator("[data-badge=stale]")).to_have_count(0)


def test_state_filter_beyond_the_first_page(
    page: Page,
    tmp_path: Path,
    refresh_cache: Callable[..., Any],
    served_cache: Callable[..., Any],
) -> None:
    """The state filter is the server's: it finds an outdated artifact past the first 200."""
    collection = CollectionBuilder(tmp_path / "collections")
    for number in range(250):
        collection.skill(f"s{number:03d}")
    collection.write()
    project = ProjectBuilder(tmp_path / "projects", "big")
    for name in ("s010", "s240"):
        project.deploy(collection, "skill", name)
        collection.skill(name, body="A newer version.\n")  # the collection moves on
    project.write()
    collection.write()
    refresh_cache(tmp_path / "cache", [collection.path], [project.path])
    url = served_cache(tmp_path / "cache", "--refresh-interval", "0")
    site = Site(url=str(url), root=tmp_path, served=url)
    outdated = site.artifact_keys(state="outdated")
    assert outdated == ["default/skill/s010", "default/skill/s240"]
    page.goto(site.url)
    expect(page.get_by_test_id("artifact-count")).to_have_text("250 artifact(s) (showing 200)")
    page.get_by_test_id("filter-state").select_option("outdated")
    expect(shown_keys(page)).to_have_text(outdated)
    expect(page.get_by_test_id("artifact-count")).to_have_text("2 artifact(s)")


# -- API key -------------------------------------------------------------------------------


def test_api_key_form_unlocks_the_page(page: Page, make_site: Callable[..., Site]) -> None:
    """With PROJCACHE_API_KEY set the page asks for the key; the right one loads the data."""
    site = make_site(api_key="open-sesame")
    assert httpx.get(f"{site.url}{API}/status").status_code == 401
    page.goto(site.url)
    form = page.locator("#api-key-form")
    expect(form).to_be_visible()
    expect(page.locator("#error")).to_have_text("error: this server needs an API key")
    expect(shown_keys(page)).to_have_count(0)

    page.get_by_label("API key").fill("wrong")
    page.get_by_role("button", name="Use").click()
    expect(form).to_be_visible()
    expect(page.locator("#error")).to_have_text("error: this server needs an API key")

    page.get_by_label("API key").fill("open-sesame")
    page.get_by_role("button", name="Use").click()
    expect(shown_keys(page)).to_have_text(site.shown())
    expect(page.get_by_test_id("summary")).to_contain_text("14 artifacts")
    expect(form).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()

    page.reload()  # the key is kept for the tab's session
    expect(shown_keys(page)).to_have_text(site.shown())
    expect(form).to_be_hidden()


# -- ETag ------------------------------------------------------------------------------------


LISTS = ("projects?limit=1000&offset=0", "deployments?limit=1000&offset=0", "artifacts?limit=200")


def list_responses(page: Page, site: Site, action: Callable[[], Any]) -> dict[str, Response]:
    """The first response to each of ``LISTS`` while ``action`` loads the page."""
    with contextlib.ExitStack() as stack:
        waiting = {
            path: stack.enter_context(page.expect_response(f"{site.url}{API}/{path}"))
            for path in LISTS
        }
        action()
    return {path: info.value for path, info in waiting.items()}


def test_reload_revalidates_lists_with_304(page: Page, site: Site) -> None:
    """A second load sends each list's ETag back and the server answers 304."""
    first = list_responses(page, site, lambda: loaded(page, site))
    etags = {path: response.header_value("etag") for path, response in first.items()}
    assert all(etags.values()), etags

    def reload() -> None:
        page.reload()
        expect(shown_keys(page)).to_have_text(site.shown())

    seen = len(site.served.log_text())  # the shared server's access log, before the reload
    second = list_responses(page, site, reload)
    sent = {path: got.request.header_value("if-none-match") for path, got in second.items()}
    assert sent == etags

    # The browser shows a revalidated answer as 200 from its cache: the server's log says 304.
    wanted = {f'"GET /{API}/{path} HTTP/1.1" 304' for path in LISTS}
    deadline = time.monotonic() + 10
    while True:
        log = site.served.log_text()[seen:]
        missing = {line for line in wanted if line not in log}
        if not missing or time.monotonic() > deadline:
            break
        page.wait_for_timeout(50)
    assert not missing, log

    # A fetch with the tag gets 304 itself; a stale tag gets the data.
    status = page.evaluate(
        """async ([url, tag]) => (await fetch(url, {headers: {"If-None-Match": tag}})).status""",
        [f"/{API}/{LISTS[2]}", etags[LISTS[2]]],
    )
    assert status == 304
    status = page.evaluate(
        """async (url) => (await fetch(url, {headers: {"If-None-Match": '"0"'}})).status""",
        f"/{API}/{LISTS[2]}",
    )
    assert status == 200


# -- names and the detail view of one artifact (issue 17 item 9) ----------------------------


def csp_violations(page: Page) -> list[str]:
    """Collect what the page's Content-Security-Policy (the server's) refuses."""
    violations: list[str] = []
    page.expose_function("reportViolation", lambda text: violations.append(str(text)))
    page.add_init_script(
        """document.addEventListener("securitypolicyviolation",
           (e) => window.reportViolation(`${e.violatedDirective} ${e.blockedURI}`));"""
    )
    return violations


def detail_url(site: Site, key: str) -> str:
    """The bookmarkable address of one artifact."""
    return f"{site.url}#/artifact/{quote(key, safe='')}"


class TestNamesAndDetail:
    def test_project_only_artifacts_show_the_project_name(self, page: Page, site: Site) -> None:
        """`notes \u203a skill/meeting-notes`, not `@<hash>/skill/...`; the key on hover."""
        names = site.names()
        notes = next(pid for pid, name in names.items() if name == "notes")
        key = f"@{notes}/skill/meeting-notes"
        assert key in site.artifact_keys()
        loaded(page, site)
        item = page.locator(f'#artifacts li[data-key="{key}"]')
        expect(item.locator(".key")).to_have_text("notes \u203a skill/meeting-notes")
        expect(item.locator(".key")).to_have_attribute("title", key)
        expect(page.get_by_test_id("artifacts")).not_to_contain_text(f"@{notes}")

    def test_bookmarked_detail_view_shows_fields_and_deployments(
        self, page: Page, site: Site
    ) -> None:
        """#/artifact/<key> opened directly: its fields, each deployment's state and path."""
        violations = csp_violations(page)
        record = site.api("artifacts/default/skill/code-review")
        projects = {p["name"]: p for p in site.api("projects")["items"]}
        answer = page.goto(detail_url(site, "default/skill/code-review"))
        assert answer is not None
        assert "style-src 'self'" in answer.headers["content-security-policy"]
        detail = page.get_by_test_id("detail")
        expect(detail).to_be_visible()
        expect(page.get_by_test_id("artifacts")).to_be_hidden()
        expect(page.get_by_test_id("detail-title")).to_have_text("default/skill/code-review")
        fields = page.get_by_test_id("detail-fields")
        expect(fields.locator("[data-field=description]")).to_have_text(record["description"])
        expect(fields.locator("[data-field=version]")).to_have_text(record["version"])
        expect(fields.locator("[data-field=path]")).to_have_text(record["path"])
        rows = page.get_by_test_id("detail-deployments").locator("tbody tr")
        assert [d["project"] for d in record["deployments"]] == [projects["webapp"]["id"]]
        expect(rows).to_have_count(1)
        row = rows.first
        expect(row.locator("td").first).to_have_text("webapp")
        expect(row.locator("[data-badge=outdated]")).to_have_text("outdated")
        expect(row.locator("td.key")).to_have_text(
            f"{projects['webapp']['path']}/.claude/skills/code-review"
        )
        expect(page).to_have_title(re.compile("^default/skill/code-review"))
        # Back to the lists, and into the detail view again by a click.
        page.get_by_test_id("back").click()
        expect(page.get_by_test_id("artifacts")).to_be_visible()
        expect(detail).to_be_hidden()
        page.locator('#artifacts li[data-key="default/skill/pdf"] a.name').click()
        expect(page).to_have_url(detail_url(site, "default/skill/pdf"))
        expect(page.get_by_test_id("detail-title")).to_have_text("default/skill/pdf")
        page.go_back()
        expect(page.get_by_test_id("artifacts")).to_be_visible()
        assert violations == []

    def test_detail_of_a_project_only_artifact(self, page: Page, site: Site) -> None:
        """The detail view of a local artifact names its project, not the hash."""
        notes = next(pid for pid, name in site.names().items() if name == "notes")
        page.goto(detail_url(site, f"@{notes}/skill/meeting-notes"))
        expect(page.get_by_test_id("detail-title")).to_have_text("notes \u203a skill/meeting-notes")
        fields = page.get_by_test_id("detail-fields")
        expect(fields.locator("[data-field=collection]")).to_have_text("notes (project-only)")
        expect(fields.locator("[data-field=key]")).to_have_text(f"@{notes}/skill/meeting-notes")
        row = page.get_by_test_id("detail-deployments").locator("tbody tr")
        expect(row.locator("td").first).to_have_text("notes")

    def test_unknown_artifact_says_so(self, page: Page, site: Site) -> None:
        """A bookmark whose artifact is gone: the API's message, no deployments."""
        page.goto(detail_url(site, "default/skill/gone"))
        expect(page.locator("#error")).to_have_text(
            "error: no artifact 'default/skill/gone' in the cache"
        )
        expect(page.get_by_test_id("detail-deployments")).to_be_hidden()


# -- screenshot ------------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_screenshot(page: Page, make_site: Callable[..., Site], tmp_path: Path) -> None:
    """The shipped examples render at 1280x800 (``make_screenshot.py`` shoots them for docs/)."""
    site = make_site(project_error=False)
    loaded(page, site)
    expect(page.get_by_test_id("summary")).to_contain_text("1 source error(s)")
    shot = tmp_path / "web-page.png"
    page.screenshot(path=str(shot))
    assert _png_size(shot) == (1280, 800)


# -- the trust boundary (issue 12 items 11-14, issue 17 item 10) ----------------------------


def test_page_loads_only_its_own_files_under_its_csp(browser: Browser, site: Site) -> None:
    """The page works under its Content-Security-Policy, which the browser enforces.

    Every request goes to the server itself; an injected inline script is refused.
    """
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    requested: list[str] = []
    refused: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    try:
        answer = page.goto(site.url)
        assert answer is not None
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY"
        expect(shown_keys(page)).to_have_text(site.shown())
        assert refused == []  # the page itself breaks no rule
        assert all(url.startswith(site.url) or url.startswith("data:") for url in requested)
        injected = page.evaluate(
            """() => { const s = document.createElement("script");
                       s.textContent = "window.injected = 1"; document.head.append(s);
                       return window.injected === 1; }"""
        )
        assert injected is False
        assert any("inline script" in text for text in refused), refused
    finally:
        context.close()


def test_docs_pages_are_gone_and_the_schema_stays(page: Page, site: Site) -> None:
    """No Swagger UI that would load a CDN (blank offline): /docs is a JSON 404, the schema 200."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in ("docs", "redoc"):
        answer = page.goto(f"{site.url}{path}")
        assert answer is not None and answer.status == 404
        assert answer.json()["error"] == "NotFound"
    schema = page.goto(f"{site.url}openapi.json")
    assert schema is not None and schema.status == 200
    assert f"/{API}/refresh" in schema.json()["paths"]
    assert all(url.startswith(site.url) for url in requested), requested


@contextlib.contextmanager
def other_site() -> Iterator[str]:
    """A plain HTML page served on another port of 127.0.0.1 (another origin); its URL."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><p>another site</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_another_origin_cannot_invalidate_or_refresh(
    browser: Browser, make_site: Callable[..., Site]
) -> None:
    """A page of another origin sends the simple POSTs a browser allows without asking.

    The page (an attacker's, served by another local HTTP server, so no private-network
    rule of the browser steps in) posts ``text/plain``; the server refuses them and
    nothing changes.
    """
    site = make_site("--access-log")
    generation = site.api("status")["generation"]
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        with other_site() as attacker:
            page.goto(attacker)
        for endpoint, body in (("invalidate", ""), ("refresh", "{}")):
            # Opaque either way; the answer's status is in the server's access log.
            page.evaluate(
                """([url, body]) => fetch(url, {method: "POST", mode: "no-cors", body})
                                      .then(() => "sent", () => "failed")""",
                [f"{site.url}{API}/{endpoint}", body],
            )
    finally:
        context.close()
    log = site.served.log_text()
    for endpoint in ("invalidate", "refresh"):
        assert re.search(rf'"POST /{API}/{endpoint} HTTP/1.1" 403', log), log[-2000:]
    assert site.api("status")["generation"] == generation
    assert site.api("status")["refresher"]["job"] is None


def test_a_rebound_name_gets_421(browser: Browser, site: Site) -> None:
    """DNS rebinding: a name that resolves to 127.0.0.1 does not get the page or the data."""
    port = site.url.rstrip("/").rsplit(":", 1)[1]
    rebinding = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1"],
    )
    try:
        page = rebinding.new_page()
        for path in ("", f"{API}/artifacts"):
            answer = page.goto(f"http://rebind.test:{port}/{path}")
            assert answer is not None and answer.status == 421, path
            assert answer.json()["error"] == "HostNotAllowed"
    finally:
        rebinding.close()
