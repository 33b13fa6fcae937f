"""Probe the HTTP server's trust boundary from outside (issue 12 items 11-14, issue 17 item 10).

Runs ``python -m projcache_cli serve --port 0`` over a cache of the packaged examples and
prints, for the code on ``sys.path``: the status codes of foreign-Host requests and of simple
(cross-site-able) POSTs, the security headers of ``/``, whether ``/docs`` exists, how many
refresh jobs 200 identical POSTs create and how long until they are all done, and the
server's peak RSS (``VmHWM``) after a large body sent without the API key — chunked, with a
true ``Content-Length`` and with a lying one.  Linux only (reads ``/proc``).

    python bench/server_probe.py /tmp/probe-after [BODY_MIB]
    PYTHONPATH=<old>/lib:<old>/cli python bench/server_probe.py /tmp/probe-before  # 0.1.0
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import projcache

PROJECTS = ("webapp", "api-service", "notes")


def build(work: Path) -> tuple[list[str], dict[str, str]]:
    """A cache of the examples under ``work``; the CLI command line and environment."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(Path(projcache.__file__).parent / "examples", work / "ex", symlinks=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJCACHE_")}
    env.update(HOME=str(work / "home"), XDG_CONFIG_HOME=str(work / "home" / ".config"))
    cli = [sys.executable, "-m", "projcache_cli", "--cache-dir", str(work / "cache")]
    sources = ["--collection", str(work / "ex" / "collections" / "default")]
    for name in PROJECTS:
        sources += ["--project", str(work / "ex" / "projects" / name)]
    # Exit 1 is expected: the examples hold one malformed agent.
    subprocess.run([*cli, "refresh", *sources], env=env, capture_output=True, check=False)
    return cli, env


def start(
    cli: list[str], env: dict[str, str], key: Optional[str] = None
) -> tuple[subprocess.Popen[str], int]:
    """``serve --port 0`` without the TTL pass; the process and its port."""
    extra = {"PROJCACHE_API_KEY": key} if key else {}
    process = subprocess.Popen(
        [*cli, "serve", "--port", "0", "--refresh-interval", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**env, **extra},
    )
    assert process.stderr is not None
    match = re.search(r":(\d+)/", process.stderr.readline())
    assert match, "the server did not start"
    stream = process.stderr
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
    return process, int(match.group(1))


def memory(pid: int) -> str:
    """Current and peak RSS of ``pid``."""
    text = Path(f"/proc/{pid}/status").read_text()
    sizes = {k: int(v) // 1024 for k, v in re.findall(r"(VmRSS|VmHWM):\s+(\d+) kB", text)}
    return f"RSS {sizes['VmRSS']} MiB, peak {sizes['VmHWM']} MiB"


def status(url: str, method: str = "GET", headers: Optional[dict[str, str]] = None) -> int:
    """The status code of one request (``Host`` may be overridden in ``headers``)."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    if method == "POST":
        request.data = b""
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def send_body(port: int, head: str, mib: int, chunked: bool) -> str:
    """POST refresh with ``mib`` MiB of body; the status line the server answered."""
    sock = socket.create_connection(("127.0.0.1", port))
    block = b"x" * 2**20
    sent = 0
    try:
        sock.sendall(
            f"POST /api/v1/cache/refresh HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\n{head}\r\n\r\n".encode()
        )
        for _ in range(mib):
            sock.sendall(b"100000\r\n" + block + b"\r\n" if chunked else block)
            sent += 1
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        note = "whole body sent"
    except OSError as error:
        note = f"closed by the server after {sent} MiB ({type(error).__name__})"
    try:
        sock.settimeout(60)
        line = sock.recv(200).split(b"\r\n", 1)[0].decode()
    except OSError:
        line = "no answer"
    finally:
        sock.close()
    return f"{line!r}, {note}"


def main() -> None:
    """Run every probe and print one line per measurement."""
    work = Path(sys.argv[1])
    body_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    cli, env = build(work)
    print("code:", Path(projcache.__file__).parent)

    process, port = start(cli, env)
    root = f"http://127.0.0.1:{port}"
    api = f"{root}/api/v1/cache"
    json_type = {"Content-Type": "application/json"}
    plain = {"Content-Type": "text/plain"}
    evil = {**json_type, "Origin": "http://evil.example"}
    cross = {**json_type, "Sec-Fetch-Site": "cross-site"}
    rows = [
        ("11 GET status, Host evil.example", f"{api}/status", "GET", {"Host": "evil.example"}),
        ("11 GET /, Host evil.example:PORT", f"{root}/", "GET", {"Host": f"evil.example:{port}"}),
        ("11 GET status, own Host", f"{api}/status", "GET", {}),
        ("12 POST refresh, text/plain", f"{api}/refresh", "POST", plain),
        ("12 POST invalidate, text/plain", f"{api}/invalidate", "POST", plain),
        ("12 POST invalidate, no type", f"{api}/invalidate", "POST", {}),
        ("12 POST refresh, JSON, Origin evil", f"{api}/refresh", "POST", evil),
        ("12 POST invalidate, JSON, cross-site", f"{api}/invalidate", "POST", cross),
        ("12 POST invalidate, JSON, no Origin", f"{api}/invalidate", "POST", json_type),
        ("17.10 GET /docs", f"{root}/docs", "GET", {}),
        ("17.10 GET /openapi.json", f"{root}/openapi.json", "GET", {}),
    ]  # fmt: skip
    for label, url, method, headers in rows:
        print(f"{label}: {status(url, method, headers)}")
    with urllib.request.urlopen(f"{root}/", timeout=30) as answer:
        for name in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"):
            print(f"14 {name} on /: {answer.headers.get(name)!r}")
        print(f"14 Referrer-Policy on /: {answer.headers.get('Referrer-Policy')!r}")

    ids: list[str] = []
    started = time.monotonic()
    for _ in range(200):
        request = urllib.request.Request(
            f"{api}/refresh", data=b'{"full": true}', headers=json_type, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                ids.append(json.load(answer)["id"])
        except urllib.error.HTTPError as error:
            ids.append(f"HTTP {error.code}")
    posting = time.monotonic() - started
    jobs = [i for i in ids if not i.startswith("HTTP")]
    print(
        f"13 200 POST refresh {{full}} in {posting:.2f}s: {len(jobs)} answered 202, "
        f"{len(ids) - len(jobs)} refused; {len(set(jobs))} distinct jobs"
    )
    while True:
        with urllib.request.urlopen(f"{api}/refresh/{jobs[-1]}", timeout=30) as answer:
            if json.load(answer)["state"] in ("done", "failed"):
                break
        time.sleep(0.05)
    print(f"13 every job done {time.monotonic() - started:.2f}s after the first POST")
    process.terminate()
    process.wait()

    size = body_mib * 2**20
    for label, head, chunked in (
        ("chunked", "Transfer-Encoding: chunked", True),
        ("true Content-Length", f"Content-Length: {size}", False),
        ("lying Content-Length: 100", "Content-Length: 100", False),
    ):
        process, port = start(cli, env, key="k")
        time.sleep(0.5)
        before = memory(process.pid)
        answer = send_body(port, head, body_mib, chunked)
        time.sleep(0.5)
        print(
            f"13 {body_mib} MiB body, {label}, no API key: {answer}; "
            f"server before: {before}, after: {memory(process.pid)}"
        )
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
