"""A local stand-in for the Hugging Face Hub's HTTP API that records what the upload code sends.

The Hub cannot be reached from the test machines; this answers the few endpoints that ``HfApi.whoami``,
``create_repo``, ``add_space_variable`` and ``create_commit`` use, and keeps every request (headers, body) and
every committed file so that tests can assert on them.
"""

from __future__ import annotations

import base64
import json
import re
import threading
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
    url: str = ""

    def answer(self, request: Request) -> tuple[int, dict]:
        self.requests.append(request)
        path = request.path.split("?")[0]
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
        return 404, {"error": f"the stand-in does not serve {request.method} {path}"}


def serve(hub: HubStandIn) -> ThreadingHTTPServer:
    """Start the stand-in on a free loopback port in a daemon thread; ``hub.url`` tells where."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, payload = hub.answer(Request(self.command, self.path, headers, body))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_HEAD = _handle

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
