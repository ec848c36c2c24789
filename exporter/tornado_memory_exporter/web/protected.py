"""The base of our endpoints: optional credentials, plain-text errors, never a traceback."""

from __future__ import annotations

from typing import Any

import tornado.web

from .credentials import Credentials


class ProtectedHandler(tornado.web.RequestHandler):
    """Answers 401 (with ``WWW-Authenticate``) unless ``credentials`` are satisfied; errors are
    one plain-text line."""

    credentials: Credentials = Credentials()

    def prepare(self) -> None:
        if not self.credentials.authorize(self.request.headers.get("Authorization")):
            self.set_status(401)
            for challenge in self.credentials.challenges():
                self.add_header("WWW-Authenticate", challenge)
            self._plain_error()  # send_error() would clear the challenge headers

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:  # RFC 9110 15.5.6: a 405 must say what is allowed
            self.set_header("Allow", ", ".join(self.SUPPORTED_METHODS))
        self._plain_error()

    def _plain_error(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{self.get_status()} {self._reason}\n")

    def compute_etag(self) -> None:
        return None  # metrics change on every scrape; hashing them is wasted work
