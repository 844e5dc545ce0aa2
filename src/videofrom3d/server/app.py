"""The ``/v1`` HTTP API (FastAPI) over a :class:`JobStore` and a :class:`Dispatcher` (README "Job server").

Every request passes, in order: the Host check (only the names this server listens as: DNS rebinding), the
Origin check (a browser page of another origin: CSRF; no CORS), the token (``Authorization: Bearer``,
compared in constant time; ``GET /v1/health`` is exempt and says nothing private; a browser opening the report
viewer gives ``?token=`` once and gets it back as an HttpOnly, SameSite=Strict cookie) and, for a submission,
the size limit read from ``Content-Length`` before any byte of the body (nothing is written).
Errors are ``{"error": "one line"}`` with 400/401/403/404/409/411/413/422. (Imported only with the
``[server]`` extra installed.)
"""

from __future__ import annotations

import asyncio
import hmac
import json
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse

from videofrom3d.events import FINAL_STATES, read_events
from videofrom3d.server.store import JobStore, SubmitError

HEARTBEAT_S = 15.0
ENGINES = ("auto", "preview", "diffusion")


def create_app(store: JobStore, dispatcher, token: str, hosts: set[str], max_upload: int, default_engine: str = "auto"):
    from videofrom3d import __version__

    app = FastAPI(title="videofrom3d", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    cookie = f"videofrom3d_{min(hosts).rsplit(':', 1)[1]}"  # cookies are per host, not per port

    def same(given: str) -> bool:
        return hmac.compare_digest(given.encode(), token.encode())

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = request.headers.get("host", "")
        if host.lower() not in hosts:
            return error(403, f"Host {host!r} is not this server's (DNS rebinding guard)")
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() not in hosts:
            return error(403, "cross-origin requests are refused")
        if request.url.path != "/v1/health":
            given = request.query_params.get("token")
            if request.method == "GET" and given is not None and same(given):
                # a browser link (the report viewer): trade the token for a cookie, then drop it from the URL
                back = RedirectResponse(str(request.url.remove_query_params("token")), status_code=303)
                back.set_cookie(cookie, token, httponly=True, samesite="strict", path="/v1/")
                return back
            got = request.headers.get("authorization", "")
            if not (same(got.removeprefix("Bearer ")) and got.startswith("Bearer ")) \
                    and not same(request.cookies.get(cookie, "")):
                return error(401, "missing or wrong token (Authorization: Bearer TOKEN, from server.json)")
        if request.method == "POST" and request.url.path == "/v1/jobs":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return error(411, "a submission needs a Content-Length")
            if int(length) > max_upload:
                return error(413, f"upload of {int(length)} bytes is over the server's limit of {max_upload}")
        return await call_next(request)

    @app.get("/v1/health")
    async def health():
        return {"ok": True, "version": __version__, "queue": dispatcher.queue_length()}

    @app.post("/v1/jobs", status_code=201)
    async def submit(request: Request):
        try:
            form = await request.form(max_files=256, max_fields=16)
        except Exception as e:  # noqa: BLE001 - a malformed body is the client's error
            return error(400, f"cannot read the multipart body: {e}")
        job = form.get("job")
        if job is None:
            return error(422, "the multipart field 'job' (the job file's TOML text) is missing")
        job_text = (await job.read()).decode("utf-8", "replace") if hasattr(job, "read") else str(job)
        engine = str(form.get("engine") or default_engine)
        if engine not in ENGINES:
            return error(422, f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        uploads = []
        for f in form.getlist("files"):
            if not hasattr(f, "read"):
                return error(422, "'files' fields must be file uploads")
            uploads.append((f.filename, await f.read()))
        try:
            job_id = await asyncio.to_thread(store.create, job_text, uploads, engine)
        except SubmitError as e:
            return error(422, str(e))
        dispatcher.submit(job_id)
        return {"id": job_id, "state": "queued"}

    def known(job_id: str):
        try:
            store.folder(job_id)
        except KeyError:
            return error(404, f"no job {job_id!r}")
        return None

    @app.get("/v1/jobs/{job_id}")
    async def status(job_id: str):
        if (missing := known(job_id)) is not None:
            return missing
        st = store.state(job_id)
        progress = [e for _, e in read_events(store.events(job_id)) if e.get("type") == "progress"]
        st["fraction"] = 1.0 if st["state"] == "done" else progress[-1].get("fraction", 0.0) if progress else 0.0
        st["stage"] = progress[-1].get("stage") if progress else None
        st["outputs"] = store.outputs(job_id)
        return st

    @app.get("/v1/jobs/{job_id}/events")
    async def events(job_id: str, request: Request):
        if (missing := known(job_id)) is not None:
            return missing
        last = request.headers.get("last-event-id", "0")
        after = int(last) if last.isdigit() else 0
        path = store.events(job_id)

        async def stream():
            nonlocal after
            quiet = 0.0
            while True:
                batch = read_events(path, after)
                for seq, ev in batch:
                    after = seq
                    yield f"id: {seq}\ndata: {json.dumps(ev)}\n\n"
                    if ev.get("type") == "state" and ev.get("state") in FINAL_STATES:
                        return
                if batch:
                    quiet = 0.0
                elif quiet >= HEARTBEAT_S:
                    quiet = 0.0
                    yield ": heartbeat\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.2)
                quiet += 0.2

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/v1/jobs/{job_id}/files/{name:path}")
    async def download(job_id: str, name: str):
        if (missing := known(job_id)) is not None:
            return missing
        try:
            path = store.output_path(job_id, name)
        except KeyError:
            return error(404, f"job {job_id} has no file {name!r}")
        return FileResponse(path)

    @app.post("/v1/jobs/{job_id}/cancel")
    async def cancel(job_id: str):
        if (missing := known(job_id)) is not None:
            return missing
        if store.state(job_id)["state"] in FINAL_STATES:
            return error(409, f"job {job_id} is already {store.state(job_id)['state']}")
        st = await asyncio.to_thread(dispatcher.cancel, job_id)
        return {"id": job_id, "state": st["state"]}

    return app
