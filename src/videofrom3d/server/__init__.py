"""``videofrom3d serve``: a local job server (``[server]`` extra: FastAPI + uvicorn) on the batch worker pool.

- :mod:`~videofrom3d.server.store`: jobs on disk (uploads, state, events, work folder);
- :mod:`~videofrom3d.server.dispatch`: those jobs on the worker pool, states from its results;
- :mod:`~videofrom3d.server.app`: the ``/v1`` routes and the request guards.

``DATA/server.json`` (mode 0600) = ``{"url", "port", "token"}``, written once the socket listens; the token is
made on the first start and kept across restarts.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
from pathlib import Path

from videofrom3d.errors import VideoFrom3DError

DEFAULT_PORT = 8765
MAX_UPLOAD_MB = 2048


class ServeError(VideoFrom3DError, ValueError):
    """A serve option that cannot be used (one line)."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "videofrom3d" / "server"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(data: Path) -> str:
    """The token of an earlier start (clients keep theirs), else a new one."""
    try:
        return str(json.loads((data / "server.json").read_text())["token"])
    except (OSError, ValueError, KeyError):
        return secrets.token_urlsafe(32)


def write_server_json(data: Path, url: str, port: int, token: str) -> Path:
    path = data / "server.json"
    tmp = data / ".server.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "port": port, "token": token}, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, data: str | os.PathLike | None = None,
          gpus: list[str] | None = None, engine: str = "auto", models: str = "real",
          max_upload_mb: float = MAX_UPLOAD_MB, allow_remote: bool = False, on_ready=None) -> None:
    """Serve until interrupted. ``on_ready(url)`` is called once the socket listens and server.json is written."""
    try:
        import uvicorn
    except ImportError:
        raise ServeError("serve needs the server extra: pip install 'videofrom3d[server]'") from None
    from videofrom3d.server.app import create_app
    from videofrom3d.server.dispatch import Dispatcher
    from videofrom3d.server.store import JobStore

    if not _is_loopback(host) and not allow_remote:
        raise ServeError(f"--host {host} is not a loopback address; add --allow-remote to serve other machines "
                         "(every request still needs the token)")
    data = Path(data) if data is not None else default_data_dir()
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    port = sock.getsockname()[1]
    names = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if not _is_loopback(host):
        names.add(f"{host}:{port}".lower())
    shown = "127.0.0.1" if host in ("0.0.0.0", "localhost") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"
    token = _token(data)
    store = JobStore(data / "jobs")
    dispatcher = Dispatcher(data, store, list(gpus or []), models=models).start()
    app = create_app(store, dispatcher, token, names, int(max_upload_mb * 2**20), default_engine=engine)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    started = server.startup

    async def startup(sockets=None):  # server.json once the socket accepts
        await started(sockets=sockets)
        write_server_json(data, url, port, token)
        if on_ready is not None:
            on_ready(url)

    server.startup = startup
    try:
        server.run(sockets=[sock])
    finally:
        dispatcher.close()
