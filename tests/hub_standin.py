"""A local stand-in for the Hugging Face Hub's HTTP API: it records what the upload code sends and serves
repositories to the download code.

The Hub cannot be reached from the test machines; this answers the endpoints that ``HfApi.whoami``,
``create_repo``, ``add_space_variable`` and ``create_commit`` use, and keeps every request (headers, body) and
every committed file so that tests can assert on them. It also serves the files it holds as the Hub does to
``hf_hub_download``, ``HfApi.repo_info``, ``HfFileSystem`` and so ``datasets.load_dataset`` and timm's pretrained
weights: repository info, file trees, path info and ``resolve`` URLs, at the repository's one commit (or ``main``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HubStandIn:
    """Requests received, files committed per repository (``{"model:owner/name": {path: bytes}}``), variables."""

    user: str = "flowers-tester"
    requests: list[Request] = field(default_factory=list)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    created: list[dict] = field(default_factory=list)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)  # "kind:owner/name" -> the commit it serves
    url: str = ""

    def add_repo(self, kind: str, repo: str, files: dict[str, bytes], commit: str | None = None) -> str:
        """Serve ``files`` as repository ``repo`` (``kind``: model or dataset) at ``commit``; returns the commit."""
        key = f"{kind}:{repo}"
        self.files[key] = dict(files)
        self.commits[key] = commit or hashlib.sha1(key.encode()).hexdigest()
        return self.commits[key]

    def answer(self, request: Request) -> tuple[int, dict | list | bytes, dict[str, str]]:
        self.requests.append(request)
        path = urllib.parse.unquote(request.path.split("?")[0])
        try:
            if request.method in ("GET", "HEAD") and (served := self._serve(request, path)) is not None:
                return served
            status, payload = self._upload_api(request, path)
        except _NotFound as missing:
            return 404, {"error": str(missing)}, {"X-Error-Code": missing.code}
        return status, payload, {}

    def _upload_api(self, request: Request, path: str) -> tuple[int, dict]:
        if path == "/api/whoami-v2":
            return 200, {"type": "user", "name": self.user, "auth": {"accessToken": {"role": "write"}}}
        if path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        if path == "/api/repos/create":
            payload = json.loads(request.body)
            self.created.append(payload)
            kind = payload.get("type", "model")
            return 200, {
                "url": f"{self.url}/{'spaces/' if kind == 'space' else ''}{payload['organization']}/{payload['name']}"
            }
        if match := re.fullmatch(r"/api/(models|spaces)/(.+)/preupload/(.+)", path):
            files = json.loads(request.body)["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
        if match := re.fullmatch(r"/api/(models|spaces)/(.+)/commit/(.+)", path):
            kind, repo = match.group(1)[:-1], match.group(2)
            committed = self.files.setdefault(f"{kind}:{repo}", {})
            self.commits.setdefault(f"{kind}:{repo}", "0" * 40)  # committed files are served back at this commit
            for line in request.body.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    committed[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
            prefix = "spaces/" if kind == "space" else ""
            return 200, {"commitUrl": f"{self.url}/{prefix}{repo}/commit/{'0' * 40}", "commitOid": "0" * 40}
        if match := re.fullmatch(r"/api/spaces/(.+)/variables", path):
            payload = json.loads(request.body)
            self.variables.setdefault(match.group(1), {})[payload["key"]] = payload["value"]
            return 200, {}
        if match := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/paths-info/([^/]+)", path):
            return self._paths_info(match.group(1)[:-1], match.group(2), match.group(3), request.body)
        return 404, {"error": f"the stand-in does not serve {request.method} {path}"}

    # ---- downloads

    def _serve(self, request: Request, path: str) -> tuple[int, dict | list | bytes, dict[str, str]] | None:
        if match := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            return self._info(match.group(1)[:-1], match.group(2), match.group(3) or "main")
        if match := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._tree(match.group(1)[:-1], match.group(2), match.group(3), match.group(4) or "", recursive)
        if match := re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            kind = "dataset" if match.group(1) else "model"
            return self._resolve(kind, match.group(2), match.group(3), match.group(4), request)
        return None

    def _repo(self, kind: str, repo: str, revision: str) -> tuple[dict[str, bytes], str]:
        """The repository's files and commit; a missing repository or revision answers 404 as the Hub does."""
        key = f"{kind}:{repo}"
        if key not in self.commits:
            raise _NotFound(f"{key} not found", "RepoNotFound")
        if revision not in ("main", self.commits[key]):
            raise _NotFound(f"{key}: no revision {revision}", "RevisionNotFound")
        return self.files[key], self.commits[key]

    def _info(self, kind: str, repo: str, revision: str):
        files, commit = self._repo(kind, repo, revision)
        siblings = [{"rfilename": name, "size": len(data)} for name, data in sorted(files.items())]
        info = {"id": repo, "sha": commit, "private": False, "disabled": False, "gated": False, "siblings": siblings,
                "lastModified": "2026-01-01T00:00:00.000Z", "tags": [], "downloads": 0, "likes": 0}  # fmt: skip
        return 200, info, {}

    def _entries(self, files: dict[str, bytes], folder: str, recursive: bool) -> list[dict]:
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        entries, folders = [], set()
        for name, data in sorted(files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append({"type": "file", "path": name, "size": len(data), "oid": _oid(data)})
        return [{"type": "directory", "path": f, "oid": _oid(f.encode())} for f in sorted(folders)] + entries

    def _tree(self, kind: str, repo: str, revision: str, folder: str, recursive: bool):
        files, _ = self._repo(kind, repo, revision)
        return 200, self._entries(files, folder, recursive), {}

    def _paths_info(self, kind: str, repo: str, revision: str, body: bytes) -> tuple[int, list | dict]:
        files, _ = self._repo(kind, repo, revision)
        form = urllib.parse.parse_qs(body.decode()) if not body.startswith(b"{") else json.loads(body)
        asked = form.get("paths", [])
        asked = [asked] if isinstance(asked, str) else asked
        everything = self._entries(files, "", recursive=True)
        return 200, [entry for entry in everything if entry["path"] in {p.strip("/") for p in asked}]

    def _resolve(self, kind: str, repo: str, revision: str, name: str, request: Request):
        files, commit = self._repo(kind, repo, revision)
        if name not in files:
            raise _NotFound(f"{name} not in {repo}", "EntryNotFound")
        data = files[name]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{_oid(data)}"'}
        if match := re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", "")):
            start = int(match.group(1))
            end = int(match.group(2)) + 1 if match.group(2) else len(data)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            return 206, data[start:end], headers
        return 200, data, headers


class _NotFound(Exception):
    """A 404 of the Hub, with the ``X-Error-Code`` that tells huggingface_hub which kind."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _oid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serve(hub: HubStandIn) -> ThreadingHTTPServer:
    """Start the stand-in on a free loopback port in a daemon thread; ``hub.url`` tells where."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, payload, extra = hub.answer(Request(self.command, self.path, headers, body))
            binary = isinstance(payload, bytes)
            data = payload if binary else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if binary else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_HEAD = _handle

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
