"""A loopback HTTP server that speaks enough of the Hugging Face Hub protocol for downloads and uploads.

Downloads (``huggingface_hub.hf_hub_download``): ``HEAD`` and ``GET`` on
``/{org}/{name}/resolve/{revision}/{path}`` with ``X-Repo-Commit``, ``ETag`` and
``Content-Length``; ``404`` with ``X-Error-Code`` ``RepoNotFound``, ``RevisionNotFound``
or ``EntryNotFound``.

Uploads (``HfApi.create_repo`` and ``upload_folder``, hence ``push_to_hub``), each write
needing ``Authorization: Bearer {FakeHub.token}`` (``401`` otherwise):

* ``POST /api/repos/create``: a new repository with an empty first commit on ``main``
  (``409`` if it exists, which ``exist_ok=True`` accepts);
* ``POST /api/validate-yaml``: every model card is accepted;
* ``POST /api/models/{repo}/preupload/{revision}``: every file is ``regular``, so its bytes
  come inline in the commit (no LFS, no Xet);
* ``POST /api/models/{repo}/commit/{revision}``: an NDJSON header line, then ``file``
  (base64), ``deletedFile`` and ``deletedFolder`` lines; the new commit holds the parent's
  files with these changes, and is served by ``/resolve/`` at once.

Every request is recorded in :attr:`FakeHub.requests`, every commit in :attr:`FakeHub.commits`.
"""

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


class FakeHub:
    """Repositories held in memory: ``repos[repo_id][commit] = {path: bytes}``, ``refs[repo_id]['main'] = commit``."""

    token = "hf_fake_write_token"

    def __init__(self):
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.refs: dict[str, dict[str, str]] = {}
        # commits[repo_id]: one dict per commit, oldest first: oid, parent, summary, added and deleted paths
        self.commits: dict[str, list[dict]] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, user agent)
        self._lock = threading.RLock()  # one write at a time
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
        """Make every file of ``folder`` (and nothing else) a new commit on ``branch``; returns the commit hash."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
                 if p.is_file()}
        parent = self.refs.get(repo_id, {}).get(branch)
        deleted = set(self.repos[repo_id][parent]) - set(files) if parent else set()
        return self._commit(repo_id, branch, files, sorted(files), sorted(deleted), "upload_folder")

    def _commit(self, repo_id: str, branch: str, files: dict[str, bytes], added: list[str], deleted: list[str],
                summary: str) -> str:
        """Store ``files`` (the whole tree) as a new commit on ``branch``; returns its 40-hex hash."""
        with self._lock:
            parent = self.refs.get(repo_id, {}).get(branch)
            history = self.commits.setdefault(repo_id, [])
            tree = sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())
            commit = hashlib.sha1(repr((repo_id, parent, summary, tree, len(history))).encode()).hexdigest()
            self.repos.setdefault(repo_id, {})[commit] = files
            self.refs.setdefault(repo_id, {})[branch] = commit
            history.append({"oid": commit, "parent": parent, "summary": summary, "added": added, "deleted": deleted})
            return commit

    # ---- downloads ---------------------------------------------------------------------
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

    # ---- uploads -----------------------------------------------------------------------
    def _write(self, path: str, query: dict, authorization: str | None, body: bytes):
        """``(status, headers, json_body)`` for a POST."""
        if path == "/api/validate-yaml":
            return 200, {}, {"errors": [], "warnings": []}
        if authorization is None:
            return 401, {}, {"error": "You must be authenticated to write: no Authorization header"}
        if authorization != f"Bearer {self.token}":
            return 401, {"X-Error-Message": "Invalid credentials in Authorization header"}, {
                "error": "Invalid credentials in Authorization header"}
        if path == "/api/repos/create":
            request = json.loads(body)
            repo_id = "/".join(filter(None, (request.get("organization"), request["name"])))
            if request.get("type", "model") != "model":
                return 400, {}, {"error": "FakeHub only hosts model repositories"}
            if repo_id in self.repos:
                return 409, {}, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            self._commit(repo_id, "main", {}, [], [], "initial commit")
            return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id}

        parts = path.strip("/").split("/")  # api, models, org, name, preupload|commit, revision
        if len(parts) != 6 or parts[:2] != ["api", "models"] or parts[4] not in ("preupload", "commit"):
            return 404, {}, {"error": f"FakeHub does not serve POST {path}"}
        repo_id, action, branch = "/".join(parts[2:4]), parts[4], unquote(parts[5])
        if repo_id not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        if branch not in self.refs[repo_id]:
            return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": f"Invalid rev id: {branch}"}
        if query.get("create_pr"):
            return 400, {}, {"error": "FakeHub does not support pull requests"}
        if action == "preupload":
            files = json.loads(body)["files"]
            return 200, {}, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                       for f in files]}
        return self._apply_commit(repo_id, branch, [json.loads(line) for line in body.splitlines() if line.strip()])

    def _apply_commit(self, repo_id: str, branch: str, lines: list[dict]):
        header, operations = lines[0], lines[1:]
        if header.get("key") != "header":
            return 400, {}, {"error": "the first NDJSON line must be the commit header"}
        parent = self.refs[repo_id][branch]
        expected = header["value"].get("parentCommit")
        if expected is not None and expected != parent:
            return 412, {}, {"error": f"parent commit {expected} is not the head of {branch} ({parent})"}
        files = dict(self.repos[repo_id][parent])
        added, deleted = [], []
        for operation in operations:
            key, value = operation["key"], operation["value"]
            if key == "file" and value.get("encoding") == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
                deleted.append(value["path"])
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                deleted += [p for p in files if p.startswith(prefix)]
                files = {p: v for p, v in files.items() if not p.startswith(prefix)}
            else:  # lfsFile: never asked for, since preupload answers "regular"
                return 400, {}, {"error": f"FakeHub does not support {key!r} operations"}
        commit = self._commit(repo_id, branch, files, added, deleted, header["value"]["summary"])
        return 200, {}, {"commitUrl": f"{self.url}/{repo_id}/commit/{commit}", "commitOid": commit,
                         "pullRequestUrl": None}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, headers: dict, body: bytes, with_body: bool = True):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def _respond(self, with_body: bool):
                path = urlsplit(self.path).path
                hub.requests.append((self.command, path, self.headers.get("User-Agent", "")))
                status, headers, body = hub._lookup(path)
                self._send(status, headers, body, with_body)

            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                self._respond(with_body=False)

            def do_GET(self):  # noqa: N802
                self._respond(with_body=True)

            def do_POST(self):  # noqa: N802
                url = urlsplit(self.path)
                hub.requests.append((self.command, url.path, self.headers.get("User-Agent", "")))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hub._lock:
                    status, headers, answer = hub._write(url.path, parse_qs(url.query),
                                                         self.headers.get("Authorization"), body)
                self._send(status, {"Content-Type": "application/json", **headers}, json.dumps(answer).encode())

            def log_message(self, *args):
                pass

        return Handler
