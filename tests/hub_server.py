"""A loopback HTTP server that speaks the Hugging Face Hub's ``/resolve/`` protocol.

Enough of the protocol for ``huggingface_hub.hf_hub_download``: ``HEAD`` and ``GET`` on
``/{org}/{name}/resolve/{revision}/{path}`` with ``X-Repo-Commit``, ``ETag`` and
``Content-Length``; ``404`` with ``X-Error-Code`` ``RepoNotFound``, ``RevisionNotFound``
or ``EntryNotFound``. Every request is recorded in :attr:`FakeHub.requests`.
"""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class FakeHub:
    """Repositories held in memory: ``repos[repo_id][commit] = {path: bytes}``, ``refs[repo_id]['main'] = commit``."""

    def __init__(self):
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.refs: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, user agent)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def upload_folder(self, repo_id: str, folder: Path, branch: str = "main") -> str:
        """Add every file of ``folder`` as a new commit on ``branch``; returns the commit hash."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
                 if p.is_file()}
        digest = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()
                              + repo_id.encode() + str(len(self.repos.get(repo_id, {}))).encode())
        commit = digest.hexdigest()
        self.repos.setdefault(repo_id, {})[commit] = files
        self.refs.setdefault(repo_id, {})[branch] = commit
        return commit

    def _lookup(self, path: str):
        """``(status, headers, body)`` for a resolve URL path."""
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return 404, {}, b""
        repo_id, revision, filename = "/".join(parts[:2]), unquote(parts[3]), "/".join(parts[4:])
        if repo_id not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, b""
        commit = self.refs[repo_id].get(revision, revision)
        if commit not in self.repos[repo_id]:
            return 404, {"X-Error-Code": "RevisionNotFound"}, b""
        files = self.repos[repo_id][commit]
        if filename not in files:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, b""
        body = files[filename]
        return 200, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(body).hexdigest()}"'}, body

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _respond(self, with_body: bool):
                path = urlsplit(self.path).path
                hub.requests.append((self.command, path, self.headers.get("User-Agent", "")))
                status, headers, body = hub._lookup(path)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                self._respond(with_body=False)

            def do_GET(self):  # noqa: N802
                self._respond(with_body=True)

            def log_message(self, *args):
                pass

        return Handler
