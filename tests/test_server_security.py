"""The HTTP server's trust boundary (issue 12, items 11-14; issue 17, item 10).

Each class holds the tests of one rule, and each of them failed on 0.1.0:

- ``TestHost``: a ``Host`` that is not this server (DNS rebinding) gets 421;
- ``TestCrossSiteWrites``: a POST that is not JSON, or that another site sent, changes nothing;
- ``TestBodyLimit``: a body larger than the limit is refused while it streams, before
  JSON parsing and the API-key check, and the server's memory stays flat;
- ``TestJobQueue``: identical waiting refresh jobs are one job; a full queue is 429;
- ``TestHeaders``: the page and the API carry a strict CSP and the anti-framing headers;
- ``TestDocsPages``: no ``/docs`` or ``/redoc`` that would load a CDN; the schema stays.

Most run the application in process (``TestClient``); the memory and Host tests run
``projcache serve`` for real, since what counts there is the process and its socket.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from projcache import ProjectCache
from projcache.config import Settings
from projcache.errors import ServerError
from projcache.models import RefreshReport
from projcache.server import ServerOptions, create_app
from projcache.server.app import API_PREFIX, STATIC
from projcache.server.guard import (
    DEFAULT_MAX_BODY_BYTES,
    SECURITY_HEADERS,
    TrustBoundary,
    parse_host,
)
from projcache.server.jobs import RefreshJobs
from test_server import (
    BASE_URL,
    JSON_BODY,
    ServerProcess,
    TestClient,
    assert_error,
    cli,
    copy_examples,
    make_client,
    refresh_examples,
    wait_for,
)

API = API_PREFIX


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed cache refreshed from a copy of the examples, copied by each test."""
    root = tmp_path_factory.mktemp("security")
    examples = copy_examples(root / "examples")
    with ProjectCache.open(settings=Settings(cache_dir=root / "cache")) as cache:
        refresh_examples(cache, examples)
    return root / "cache"


@pytest.fixture
def cache_dir(tmp_path: Path, template: Path) -> Path:
    """A private copy of the template cache."""
    target = tmp_path / "cache"
    target.mkdir(mode=0o700)
    shutil.copyfile(template / "data.mdb", target / "data.mdb")
    return target


@pytest.fixture
def filled(cache_dir: Path) -> Iterator[ProjectCache]:
    """The copied cache, open read-write."""
    with ProjectCache.open(settings=Settings(cache_dir=cache_dir)) as cache:
        yield cache


@pytest.fixture
def client(filled: ProjectCache) -> Iterator[TestClient]:
    """A client of the application (default options) that sends Host 127.0.0.1:8765."""
    with make_client(create_app(filled)) as test_client:
        yield test_client


@pytest.fixture
def served(filled: ProjectCache, cache_dir: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """``projcache serve`` (API key ``k``) on the copied cache, stopped after the test."""
    filled.close()
    process = ServerProcess(cache_dir, tmp_path / "home", "--api-key", "k")
    try:
        yield process
    finally:
        process.stop()


def no_job_started(client: TestClient) -> bool:
    """Nothing queued or running on the application's refresh worker."""
    jobs: RefreshJobs = client.app.state.jobs  # type: ignore[attr-defined]
    return jobs.waiting() == 0 and jobs.running() is None


# -- item 11: DNS rebinding -------------------------------------------------------------------


class TestHost:
    @pytest.mark.parametrize(
        "host",
        [
            "evil.example:8765",  # a rebinding name, resolved to 127.0.0.1 by its owner
            "evil.example",
            "127.0.0.1:9999",  # the right address, another port
            "localhost:80",
            "localhost.:8765",
            "127.0.0.2:8765",
            "[::2]:8765",
            "",
            "127.0.0.1:8765:1",
            "[::1",
        ],
    )
    @pytest.mark.parametrize("path", [f"{API}/status", f"{API}/artifacts", "/", "/static/app.js"])
    def test_a_foreign_host_gets_421(self, client: TestClient, host: str, path: str) -> None:
        """Any Host but the loopback names with the bound port: 421 HostNotAllowed, no data."""
        response = client.get(path, headers={"Host": host})
        body = assert_error(response, 421, "HostNotAllowed")
        assert "--allowed-host" in body["hint"]
        assert "default/skill" not in response.text
        # A body it may be sending is not read: the connection is closed, not reused.
        assert response.headers["connection"] == "close"

    def test_a_foreign_host_cannot_write(self, client: TestClient, filled: ProjectCache) -> None:
        """The check comes before anything else: a rebound page's POST changes nothing."""
        generation = filled.generation()
        headers = {"Host": "evil.example:8765", **JSON_BODY}
        assert_error(client.post(f"{API}/invalidate", headers=headers), 421, "HostNotAllowed")
        assert_error(client.post(f"{API}/refresh", headers=headers), 421, "HostNotAllowed")
        assert filled.generation() == generation and no_job_started(client)

    @pytest.mark.parametrize(
        "host", ["127.0.0.1:8765", "localhost:8765", "LOCALHOST:8765", "[::1]:8765"]
    )
    def test_the_loopback_names_are_answered(self, client: TestClient, host: str) -> None:
        """localhost, 127.0.0.1 and [::1] with the bound port are this server."""
        assert client.get(f"{API}/status", headers={"Host": host}).status_code == 200

    @pytest.mark.parametrize(
        ("allowed", "host", "status"),
        [
            ("cache.lan", "cache.lan:8765", 200),
            ("cache.lan", "cache.lan", 200),  # behind a proxy on port 80
            ("Cache.LAN", "cache.lan:1234", 200),  # a name without a port: any port
            ("cache.lan:8080", "cache.lan:8080", 200),
            ("cache.lan:8080", "cache.lan:8765", 421),
            ("cache.lan", "other.lan:8765", 421),
            ("[fd00::1]:8765", "[fd00::1]:8765", 200),
        ],
    )
    def test_the_allow_list(
        self, filled: ProjectCache, allowed: str, host: str, status: int
    ) -> None:
        """``allowed_hosts`` adds names; a name without a port matches it on any port."""
        with make_client(create_app(filled, ServerOptions(allowed_hosts=(allowed,)))) as client:
            assert client.get(f"{API}/status", headers={"Host": host}).status_code == status

    @pytest.mark.parametrize("entry", ["", "a:b", "[::1", "host:0", "x:99999", "a:b:c"])
    def test_a_malformed_allow_list_entry_is_refused_at_start(
        self, filled: ProjectCache, entry: str
    ) -> None:
        """A bad ``--allowed-host`` is a ServerError before anything is served."""
        with pytest.raises(ServerError, match="not a host name"):
            create_app(filled, ServerOptions(allowed_hosts=(entry,)))

    @pytest.mark.parametrize(
        ("value", "parsed"),
        [
            ("LocalHost:8765", ("localhost", 8765)),
            ("127.0.0.1", ("127.0.0.1", None)),
            ("[::1]:80", ("::1", 80)),
            ("[::1]", ("::1", None)),
            ("::1", None),
            ("[nothost]:80", None),
            ("a:", None),
            (":80", None),
        ],
    )
    def test_parse_host(self, value: str, parsed: Any) -> None:
        """Host values split into a lower-case name and an optional port."""
        assert parse_host(value) == parsed

    def test_a_real_server_refuses_a_foreign_host(self, served: ServerProcess) -> None:
        """Over a real socket: the URL's own Host is served, a rebinding name is not."""
        url = served.url()
        port = int(url.rsplit(":", 1)[1].strip("/"))
        headers = {"X-API-Key": "k"}
        assert httpx.get(f"{url}api/v1/cache/status", headers=headers).status_code == 200
        own = {**headers, "Host": f"localhost:{port}"}
        assert httpx.get(f"{url}api/v1/cache/status", headers=own).status_code == 200
        foreign = {**headers, "Host": f"attacker.example:{port}"}
        response = httpx.get(f"{url}api/v1/cache/status", headers=foreign)
        assert_error(response, 421, "HostNotAllowed")

    def test_allowed_host_option_reaches_the_server(
        self, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``serve --allowed-host`` is repeatable and becomes ``ServerOptions.allowed_hosts``."""
        import projcache.server as server_package
        from test_server import FakeServe

        fake = FakeServe()
        monkeypatch.setattr(server_package, "serve", fake)
        result = cli(cache_dir, "serve", "--allowed-host", "a.lan", "--allowed-host", "b.lan:8080")
        assert result.exit_code == 0, result.output
        assert fake.calls[0]["options"].allowed_hosts == ("a.lan", "b.lan:8080")

    def test_a_malformed_allowed_host_exits_13(self, cache_dir: Path) -> None:
        """``serve --allowed-host 'a b:c'``: one error line and exit 13, nothing served."""
        result = cli(cache_dir, "serve", "--port", "0", "--allowed-host", "a:b")
        assert result.exit_code == 13, result.output
        assert "not a host name" in result.stderr


# -- item 12: CSRF ----------------------------------------------------------------------------


SIMPLE_POSTS = [
    pytest.param({"Content-Type": "text/plain"}, b"", id="text-plain-empty"),
    pytest.param({"Content-Type": "text/plain"}, b"{}", id="text-plain-json"),
    pytest.param({}, b"", id="no-content-type"),
    pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, b"a=b", id="form"),
    pytest.param({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", id="multipart"),
]


class TestCrossSiteWrites:
    @pytest.mark.parametrize(("headers", "body"), SIMPLE_POSTS)
    def test_a_simple_post_starts_no_refresh(
        self, client: TestClient, headers: dict[str, str], body: bytes
    ) -> None:
        """A POST a page may send without asking (no JSON type): 415, no job queued."""
        response = client.post(f"{API}/refresh", headers=headers, content=body)
        response_body = assert_error(response, 415, "UnsupportedMediaType")
        assert "application/json" in response_body["hint"]
        assert no_job_started(client)

    @pytest.mark.parametrize(("headers", "body"), SIMPLE_POSTS)
    def test_a_simple_post_invalidates_nothing(
        self, client: TestClient, filled: ProjectCache, headers: dict[str, str], body: bytes
    ) -> None:
        """The same for invalidate: 415 and the cache is not written."""
        generation = filled.generation()
        response = client.post(f"{API}/invalidate", headers=headers, content=body)
        assert_error(response, 415, "UnsupportedMediaType")
        assert filled.generation() == generation

    @pytest.mark.parametrize(
        "headers",
        [
            {"Origin": "http://evil.example"},
            {"Origin": "http://127.0.0.1:9999"},  # another local app, same site
            {"Origin": "https://127.0.0.1:8765.evil.example"},
            {"Origin": "null"},  # a sandboxed frame or a file: page
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},
            {"Origin": "http://127.0.0.1:8765", "Sec-Fetch-Site": "cross-site"},
        ],
    )
    @pytest.mark.parametrize("endpoint", ["refresh", "invalidate"])
    def test_a_json_post_from_another_site_is_403(
        self, client: TestClient, filled: ProjectCache, headers: dict[str, str], endpoint: str
    ) -> None:
        """Even with the JSON type (a CORS request): another Origin or site is refused."""
        generation = filled.generation()
        response = client.post(f"{API}/{endpoint}", headers={**JSON_BODY, **headers}, json={})
        assert_error(response, 403, "CrossSiteRequest")
        assert filled.generation() == generation and no_job_started(client)

    @pytest.mark.parametrize(
        "headers",
        [
            {},  # curl, scripts: no Origin
            {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"},  # the page itself
            {"Origin": "http://127.0.0.1:8765", "Sec-Fetch-Site": "none"},
            {"Content-Type": "application/json; charset=utf-8"},
        ],
    )
    def test_the_page_and_tools_still_write(
        self, client: TestClient, headers: dict[str, str]
    ) -> None:
        """A same-origin JSON POST, or one without Origin, is served as before."""
        sent = {**JSON_BODY, **headers}
        assert client.post(f"{API}/invalidate", headers=sent, json={}).json() == {"invalidated": 4}
        job = client.post(f"{API}/refresh", headers=sent, json={"project": "webapp"})
        assert job.status_code == 202, job.text

    def test_an_empty_json_post_refreshes_everything(self, client: TestClient) -> None:
        """``Content-Type: application/json`` with no body is the documented "everything"."""
        response = client.post(f"{API}/refresh", headers=JSON_BODY)
        assert response.status_code == 202, response.text
        assert response.json()["request"] == {"project": None, "collection": None, "full": False}

    def test_wrong_method_and_unknown_route_keep_their_status(self, client: TestClient) -> None:
        """Only requests that reach an endpoint are checked: 405 and 404 stay what they were."""
        assert_error(client.put(f"{API}/refresh", content=b"x"), 405, "MethodNotAllowed")
        assert_error(client.post(f"{API}/nope", content=b"x"), 404, "NotFound")

    def test_the_page_sends_json(self) -> None:
        """The web page's POSTs carry the JSON type (its browser test runs them for real)."""
        scripts = "".join(p.read_text(encoding="utf-8") for p in sorted(STATIC.glob("*.js")))
        posts = re.findall(r'method: "POST"[^}]*}', scripts)
        assert posts and all('"Content-Type": "application/json"' in p for p in posts)


# -- item 13: bounded bodies ------------------------------------------------------------------


class TestBodyLimit:
    def test_a_declared_large_body_is_413_before_it_is_read(
        self, filled: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Content-Length beyond the limit: 413 BodyTooLarge, and the app never runs."""
        app = create_app(filled, ServerOptions(api_key="k"))
        with make_client(app) as client:
            response = client.post(
                f"{API}/refresh",
                headers={**JSON_BODY, "Content-Length": str(10**12)},
                content=b"{}",
            )
            body = assert_error(response, 413, "BodyTooLarge")
            assert str(DEFAULT_MAX_BODY_BYTES) in body["message"]
            assert response.headers["connection"] == "close"
            assert no_job_started(client)

    def test_a_streamed_body_is_counted_and_cut_off(self) -> None:
        """Without Content-Length the middleware stops reading at the limit (ASGI level)."""
        pulled = [0]
        calls = [0]

        async def receive() -> dict[str, Any]:
            pulled[0] += 1
            return {"type": "http.request", "body": b"x" * 1024, "more_body": True}  # endless

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            calls[0] += 1

        guard = TrustBoundary(app, routes=[], max_body_bytes=10 * 1024)
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/x",
            "scheme": "http",
            "server": ("127.0.0.1", 8765),
            "headers": [(b"host", b"127.0.0.1:8765"), (b"transfer-encoding", b"chunked")],
        }
        asyncio.run(guard(scope, receive, send))  # type: ignore[arg-type]
        assert pulled[0] == 11  # 10 KiB fit, the 11th chunk is one too many
        assert calls[0] == 0
        assert sent[0]["status"] == 413
        assert orjson.loads(sent[1]["body"])["error"] == "BodyTooLarge"

    def test_a_body_within_the_limit_reaches_the_endpoint(self, filled: ProjectCache) -> None:
        """A body at the limit is replayed to the app unchanged (here: a 422 for its content)."""
        options = ServerOptions(max_body_bytes=4096)
        with make_client(create_app(filled, options)) as client:
            padded = b'{"project": "webapp"' + b" " * (4096 - 21) + b"}"
            assert len(padded) == 4096
            assert (
                client.post(f"{API}/refresh", headers=JSON_BODY, content=padded).status_code == 202
            )
            over = padded + b" "
            assert_error(
                client.post(f"{API}/refresh", headers=JSON_BODY, content=over), 413, "BodyTooLarge"
            )

    @pytest.mark.parametrize(
        "head",
        [
            pytest.param("Transfer-Encoding: chunked", id="chunked"),
            pytest.param("Content-Length: 100", id="lying-content-length"),
            pytest.param(f"Content-Length: {64 * 2**20}", id="true-content-length"),
        ],
    )
    def test_a_huge_body_does_not_grow_the_server(self, served: ServerProcess, head: str) -> None:
        """64 MiB sent without the key: refused, and the server's peak RSS grows < 16 MiB.

        0.1.0 buffered the whole body (and parsed it) before checking the key: its peak
        grew by twice the body.
        """
        url = served.url()
        port = int(url.rsplit(":", 1)[1].strip("/"))
        before = peak_rss_mib(served.proc.pid)
        answer = send_raw(port, head, mib=64, chunked="chunked" in head)
        assert answer.split(" ")[1] in ("413", "422", "400"), answer
        after = peak_rss_mib(served.proc.pid)
        assert after - before < 16, (before, after)
        # Still serving.
        status = httpx.get(f"{url}api/v1/cache/status", headers={"X-API-Key": "k"})
        assert status.status_code == 200


def peak_rss_mib(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    assert match is not None
    return int(match.group(1)) // 1024


def send_raw(port: int, head: str, mib: int, chunked: bool) -> str:
    """POST refresh with ``head`` and ``mib`` MiB of body; return the answer's status line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    block = b"x" * 2**20
    try:
        request = (
            f"POST {API}/refresh HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\n{head}\r\n\r\n"
        )
        sock.sendall(request.encode())
        try:
            for _ in range(mib):
                sock.sendall(b"100000\r\n" + block + b"\r\n" if chunked else block)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed while the body was still coming
        return sock.recv(200).split(b"\r\n", 1)[0].decode()
    finally:
        sock.close()


# -- item 13: the bounded job queue -----------------------------------------------------------


class TestJobQueue:
    @pytest.fixture
    def blocked(
        self, filled: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[threading.Event]:
        """Refreshes wait for the returned event (set at the end of the test)."""
        gate = threading.Event()
        original = filled.refresh

        def slow(*args: Any, **kwargs: Any) -> RefreshReport:
            assert gate.wait(20)
            return original(*args, **kwargs)

        monkeypatch.setattr(filled, "refresh", slow)
        yield gate
        gate.set()

    def test_identical_posts_share_the_waiting_job(
        self, client: TestClient, blocked: threading.Event
    ) -> None:
        """200 POSTs for the same refresh: one running, one waiting, every answer 202."""
        first = client.post(f"{API}/refresh", headers=JSON_BODY).json()
        jobs: RefreshJobs = client.app.state.jobs  # type: ignore[attr-defined]
        assert wait_for(lambda: jobs.running() is not None)
        answers = [client.post(f"{API}/refresh", headers=JSON_BODY) for _ in range(200)]
        assert {a.status_code for a in answers} == {202}
        waiting_ids = {a.json()["id"] for a in answers}
        assert len(waiting_ids) == 1 and first["id"] not in waiting_ids
        assert jobs.waiting() == 1
        blocked.set()
        (waiting_id,) = waiting_ids
        assert wait_for(lambda: jobs.get(waiting_id).state == "done", 20)

    def test_a_request_for_other_targets_is_its_own_job(
        self, client: TestClient, blocked: threading.Event
    ) -> None:
        """Coalescing compares what is refreshed: a project named two ways is one job."""
        client.post(f"{API}/refresh", headers=JSON_BODY)  # runs, blocked
        by_name = client.post(f"{API}/refresh", json={"project": "webapp"}).json()["id"]
        project = client.get(f"{API}/projects/webapp").json()
        by_path = client.post(f"{API}/refresh", json={"project": project["path"]}).json()["id"]
        full = client.post(f"{API}/refresh", json={"project": "webapp", "full": True}).json()
        assert by_name == by_path != full["id"]

    def test_a_full_queue_is_429_with_retry_after(
        self, filled: ProjectCache, blocked: threading.Event
    ) -> None:
        """``max_queued_jobs`` different waiting jobs: the next one is 429 TooManyJobs."""
        with make_client(create_app(filled, ServerOptions(max_queued_jobs=2))) as client:
            client.post(f"{API}/refresh", headers=JSON_BODY)
            jobs: RefreshJobs = client.app.state.jobs  # type: ignore[attr-defined]
            assert wait_for(lambda: jobs.running() is not None)
            for project in ("webapp", "notes"):
                assert client.post(f"{API}/refresh", json={"project": project}).status_code == 202
            response = client.post(f"{API}/refresh", json={"project": "api-service"})
            assert_error(response, 429, "TooManyJobs")
            assert int(response.headers["retry-after"]) >= 1
            # A request equal to a waiting job still joins it.
            assert client.post(f"{API}/refresh", json={"project": "notes"}).status_code == 202
            assert jobs.waiting() == 2
            blocked.set()
            assert wait_for(lambda: jobs.waiting() == 0 and jobs.running() is None, 20)
            assert client.post(f"{API}/refresh", json={"project": "api-service"}).status_code == 202


# -- item 14: headers -------------------------------------------------------------------------


class TestHeaders:
    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/", 200),
            ("GET", "/static/app.js", 200),
            ("GET", "/static/app.css", 200),
            ("GET", f"{API}/status", 200),
            ("GET", f"{API}/artifacts", 200),
            ("GET", "/openapi.json", 200),
            ("GET", f"{API}/nope", 404),
            ("POST", f"{API}/invalidate", 415),
        ],
    )
    def test_every_answer_carries_the_security_headers(
        self, client: TestClient, method: str, path: str, status: int
    ) -> None:
        """CSP (own scripts only, no framing), X-Frame-Options, nosniff, Referrer-Policy."""
        response = client.request(method, path)
        assert response.status_code == status
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get_list(name) == [value], name
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"

    def test_refusals_and_crashes_carry_them_too(self, filled: ProjectCache) -> None:
        """A 421 and a 500 (answered outside the middleware) have the headers as well."""
        app = create_app(filled)

        @app.get("/boom")
        def boom() -> None:
            raise RuntimeError("x")

        with make_client(app, raise_server_exceptions=False) as client:
            crash = client.get("/boom")
            assert crash.status_code == 500
            assert (
                crash.headers["content-security-policy"]
                == SECURITY_HEADERS["Content-Security-Policy"]
            )
            rebound = client.get("/", headers={"Host": "evil.example"})
            assert rebound.status_code == 421
            assert rebound.headers["x-frame-options"] == "DENY"

    def test_the_page_has_no_inline_script_style_or_handler(self) -> None:
        """What the CSP would block: every script and style is a file the server serves."""
        problems: list[str] = []

        class Check(HTMLParser):
            def __init__(self) -> None:
                super().__init__()
                self.in_script = False

            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                names = {name for name, _ in attrs}
                if tag == "style":
                    problems.append("<style>")
                if tag == "script":
                    self.in_script = True
                    if "src" not in names:
                        problems.append("inline <script>")
                problems.extend(f"{tag} {n}=" for n in names if n == "style" or n.startswith("on"))

            def handle_endtag(self, tag: str) -> None:
                self.in_script = self.in_script and tag != "script"

            def handle_data(self, data: str) -> None:
                if self.in_script and data.strip():
                    problems.append("script body")

        for page in STATIC.glob("*.html"):
            Check().feed(page.read_text(encoding="utf-8"))
        assert problems == []


# -- issue 17 item 10: /docs ------------------------------------------------------------------


class TestDocsPages:
    @pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
    def test_no_cdn_docs_pages(self, client: TestClient, path: str) -> None:
        """Swagger UI and ReDoc (CDN files, inline scripts) are not served: a JSON 404."""
        assert_error(client.get(path), 404, "NotFound")

    def test_the_schema_is_still_served(self, client: TestClient) -> None:
        """``/openapi.json`` stays, for clients and generators."""
        schema = client.get("/openapi.json").json()
        assert f"{API}/refresh" in schema["paths"]
        refresh = schema["paths"][f"{API}/refresh"]["post"]["responses"]
        assert {"403", "413", "415", "429"} <= set(refresh)
