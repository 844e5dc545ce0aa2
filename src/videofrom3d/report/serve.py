"""``videofrom3d view``: serve a report folder on 127.0.0.1 with the standard library (read-only, that folder
only), print the URL, optionally open a browser. The report also opens from disk; serving helps browsers
that refuse local video or when the folder sits on another machine behind an SSH tunnel."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def make_server(folder: str | os.PathLike, port: int = 0, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A server for ``folder`` (not started); ``port`` 0 picks a free one. Its URL: :func:`server_url`."""
    handler = functools.partial(_QuietHandler, directory=str(Path(folder).resolve()))
    return http.server.ThreadingHTTPServer((host, port), handler)


def server_url(server: http.server.ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/index.html"


def serve_forever(folder: str | os.PathLike, port: int = 0, open_browser: bool = False, on_ready=print) -> None:
    """Serve until Ctrl-C; ``on_ready(url)`` is called once the socket listens."""
    server = make_server(folder, port)
    url = server_url(server)
    on_ready(url)
    if open_browser:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
