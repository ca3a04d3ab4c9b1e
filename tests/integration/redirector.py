"""
A stand-in for sipXconfig's REST redirector (RestRedirectorResource), for tests.

It does what sipXconfig does with ``/sipxconfig/rest/my/redirect/callcontroller/...``:
authenticates the portal user itself (HTTP Basic against its own table), then forwards
GET or POST — the part of the URL after ``/callcontroller``, query included — to
``http://<internal address>:<port>/callcontroller/...`` with ``sipx-user: <portal user>``
and no credentials, and copies the status, Content-Type and body back.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import threading

PREFIX = "/sipxconfig/rest/my/redirect/callcontroller"


class Redirector:
    """The stand-in on 127.0.0.1, a thread of its own; C{forwarded} records what it sent."""

    def __init__(self, target_host: str, target_port: int, portal_users: dict[str, str]):
        self.target = (target_host, target_port)
        self.portal_users = dict(portal_users)
        self.forwarded: list[tuple[str, str, str]] = []  # (method, path, sipx-user)
        redirector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                redirector._forward(self)

            def do_POST(self):
                redirector._forward(self)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{PREFIX}"

    def __enter__(self) -> Redirector:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _portal_user(self, handler) -> str | None:
        scheme, _, token = (handler.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
        except ValueError:
            return None
        return user if self.portal_users.get(user) == password else None

    def _forward(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        if not handler.path.startswith(PREFIX + "/"):
            self._reply(handler, 404, "text/plain", b"not a redirect URL\n")
            return
        user = self._portal_user(handler)
        if user is None:
            self._reply(handler, 401, "text/plain", b"portal login required\n",
                        [("WWW-Authenticate", 'Basic realm="sipXconfig"')])
            return
        path = "/callcontroller" + handler.path[len(PREFIX):]
        self.forwarded.append((handler.command, path, user))
        connection = http.client.HTTPConnection(*self.target, timeout=10)
        try:
            connection.request(handler.command, path,
                               body=b"" if handler.command == "POST" else None,
                               headers={"sipx-user": user})
            response = connection.getresponse()
            body = response.read()
            self._reply(handler, response.status,
                        response.getheader("Content-Type") or "application/octet-stream",
                        body)
        finally:
            connection.close()

    @staticmethod
    def _reply(handler, code: int, content_type: str, body: bytes, headers=()) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
