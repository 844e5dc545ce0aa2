"""The job server (issue 16 item 2) over real HTTP on 127.0.0.1: submit -> progress -> done -> download, the
request guards (token, Host, Origin, upload names and size, paths outside the job), cancel leaving a
resumable folder, and a killed server resuming its job to the same bytes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_pipeline_jobs import make_job, tree_digests
from videofrom3d.job import load_job
from videofrom3d.pipeline import render

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the [server] extra is not installed")

SKIP = ("manifest.json", "render.log", "events.jsonl")


class Server:
    def __init__(self, data: Path):
        self.data = data
        path = data / "server.json"
        before = path.stat().st_mtime_ns if path.is_file() else None  # a restart rewrites it
        self.proc = subprocess.Popen([sys.executable, "-m", "videofrom3d", "serve", "--port", "0", "--data", str(data),
                                      "--engine", "preview", "--max-upload-mb", "1"], stdin=subprocess.DEVNULL)
        t0 = time.time()
        while not path.is_file() or path.stat().st_mtime_ns == before:
            assert self.proc.poll() is None, "the server exited"
            assert time.time() - t0 < 60, "the server did not start"
            time.sleep(0.05)
        doc = json.loads((data / "server.json").read_text())
        self.url, self.token = doc["url"], doc["token"]
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def submit(self, folder: Path, names=("scene.glb", "cams.json", "style.png"), job_text: str | None = None):
        text = job_text if job_text is not None else (folder / "job.toml").read_text().replace('out = "work"\n', "")
        files = [("files", (n, (folder / n).read_bytes())) for n in names]
        return self.http.post("/v1/jobs", data={"job": text}, files=files)

    def wait(self, job_id: str, states=("done", "failed", "cancelled"), timeout: float = 120) -> dict:
        t0 = time.time()
        while time.time() - t0 < timeout:
            st = self.http.get(f"/v1/jobs/{job_id}").json()
            if st["state"] in states:
                return st
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} stuck in {st['state']}")

    def work(self, job_id: str) -> Path:
        return self.data / "jobs" / job_id / "work"

    def stop(self, sig=signal.SIGTERM) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data")
    yield s
    s.stop()


def _rendered(work: Path) -> dict:
    """{file: hash} of a work folder's render outputs (not the report viewer the server adds)."""
    return {k: v for k, v in tree_digests(work, skip=SKIP).items() if not k.startswith("report/")}


def _serial(folder: Path, out: Path) -> dict:
    job = dataclasses.replace(load_job(folder / "job.toml"), out=out)
    render(job, engine="preview", progress=False, log=lambda s: None)
    return _rendered(out)


def _when_started(work: Path, timeout: float = 60) -> None:
    """Once the job's first arc is prepared and recorded (its progress event comes after the record)."""
    events = work.parent / "events.jsonl"
    t0 = time.time()
    while '"stage":"prepare","step":1' not in (events.read_text() if events.is_file() else ""):
        assert time.time() - t0 < timeout, "the job never started"
        time.sleep(0.005)


def test_submit_progress_done_download(server, tmp_path):
    folder = tmp_path / "job"
    make_job(folder, width=64, height=48, frames_per_arc=4, arcs=2)
    assert stat.S_IMODE(os.stat(server.data / "server.json").st_mode) == 0o600
    r = server.submit(folder)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    events = []
    with server.http.stream("GET", f"/v1/jobs/{job_id}/events") as s:
        data = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
        events = [json.loads(d) for d in data]
    assert events[0]["state"] == "queued" and events[-1] == {**events[-1], "type": "state", "state": "done"}
    fractions = [e["fraction"] for e in events if e["type"] == "progress"]
    assert len(fractions) > 10 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {e["stage"] for e in events if e["type"] == "progress"} == {"prepare", "align", "anchors", "inbetween", "video"}
    st = server.http.get(f"/v1/jobs/{job_id}").json()
    assert st["state"] == "done" and "video.mp4" in st["outputs"] and "prepare/arc000/edges/0000.png" in st["outputs"]
    video = server.http.get(f"/v1/jobs/{job_id}/files/video.mp4")
    serial = _serial(folder, tmp_path / "serial")
    assert video.status_code == 200 and video.content == (tmp_path / "serial" / "video.mp4").read_bytes()
    assert _rendered(server.work(job_id)) == serial
    # the report viewer of the job: with the token, or from a browser link that trades ?token= for a cookie
    page = server.http.get(f"/v1/jobs/{job_id}/files/report/index.html")
    assert page.status_code == 200 and "<html" in page.text.lower()
    browser = httpx.Client(base_url=server.url, timeout=10, follow_redirects=True)
    assert browser.get(f"/v1/jobs/{job_id}/files/report/index.html").status_code == 401
    first = browser.get(f"/v1/jobs/{job_id}/files/report/index.html", params={"token": server.token})
    assert first.status_code == 200 and first.url.query == b"" and first.history[0].status_code == 303
    assert browser.get(f"/v1/jobs/{job_id}/files/report/data.js").status_code == 200  # the cookie now
    stranger = httpx.Client(base_url=server.url, timeout=10, follow_redirects=True)
    assert stranger.get(f"/v1/jobs/{job_id}/files/report/index.html", params={"token": "wrong"}).status_code == 401
    # a second connection replays from Last-Event-ID
    with server.http.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(len(events) - 1)}) as s:
        rest = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    assert rest == events[-1:]


def test_guards_token_host_origin_names_size_paths(server, tmp_path):
    folder = tmp_path / "job"
    make_job(folder, width=64, height=48, frames_per_arc=4, arcs=2)
    anon = httpx.Client(base_url=server.url, timeout=10)
    assert anon.get("/v1/health").status_code == 200 and "token" not in anon.get("/v1/health").text
    assert anon.get("/v1/jobs/x").status_code == 401
    assert anon.get("/v1/jobs/x", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert anon.post("/v1/jobs", headers={"Authorization": "Bearer " + server.token[:-1]}).status_code == 401
    port = server.url.rsplit(":", 1)[1]
    evil = server.http.get("/v1/health", headers={"Host": f"evil.example:{port}"})
    assert evil.status_code == 403 and "Host" in evil.json()["error"]
    assert server.http.get("/v1/jobs/x", headers={"Origin": "http://evil.example"}).status_code == 403
    assert server.http.get("/v1/jobs/x").status_code == 404  # the token and Host are fine: no such job

    # an upload named ../../x lands inside the job folder under the server's name
    text = (folder / "job.toml").read_text().replace('out = "work"\n', "")
    files = [("files", (n, (folder / n).read_bytes())) for n in ("scene.glb", "cams.json", "style.png")]
    r = server.http.post("/v1/jobs", data={"job": text}, files=[*files, ("files", ("../../x", b"evil"))])
    assert r.status_code == 201, r.text
    inputs = server.data / "jobs" / r.json()["id"] / "inputs"
    assert (inputs / "x").read_bytes() == b"evil"
    assert not (server.data / "x").exists() and not (server.data / "jobs" / "x").exists()
    assert not (server.data.parent / "x").exists()
    server.wait(r.json()["id"])

    # oversized: refused before the body is read, nothing written
    before = sorted(os.listdir(server.data / "jobs"))
    big = server.http.post("/v1/jobs", data={"job": text}, files=[*files, ("files", ("big.bin", b"0" * (2 << 20)))])
    assert big.status_code == 413 and sorted(os.listdir(server.data / "jobs")) == before

    # a job naming a file outside its folder, or one not uploaded, is refused with nothing written
    outside = text.replace('path = "scene.glb"', 'path = "../../../scene.glb"')
    r = server.http.post("/v1/jobs", data={"job": outside}, files=files)
    assert r.status_code == 422 and "scene.path" in r.json()["error"]
    r = server.http.post("/v1/jobs", data={"job": text.replace("style.png", "other.png")}, files=files)
    assert r.status_code == 422 and "style[0].image" in r.json()["error"]
    assert sorted(os.listdir(server.data / "jobs")) == before
    job_id = before[-1]
    assert server.http.get(f"/v1/jobs/{job_id}/files/../../server.json").status_code == 404
    assert server.http.get(f"/v1/jobs/{job_id}/files/..%2F..%2Fserver.json").status_code == 404


def test_cancel_stops_a_running_job_and_leaves_its_folder_resumable(server, tmp_path):
    folder = tmp_path / "job"
    make_job(folder, width=128, height=96, frames_per_arc=8, arcs=8)
    job_id = server.submit(folder).json()["id"]
    queued = server.submit(folder).json()["id"]  # behind it on the one CPU worker
    work = server.work(job_id)
    _when_started(work)
    assert server.http.post(f"/v1/jobs/{queued}/cancel").json()["state"] == "cancelled"
    assert not server.work(queued).exists()  # never started
    r = server.http.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert not (work / "video.mp4").exists()
    size = (server.data / "jobs" / job_id / "events.jsonl").stat().st_size
    time.sleep(1.0)
    assert not (work / "video.mp4").exists()  # the worker is stopped: nothing more is written
    assert (server.data / "jobs" / job_id / "events.jsonl").stat().st_size == size
    assert server.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    job = dataclasses.replace(load_job(folder / "job.toml"), out=work)  # resume the folder here
    res = render(job, engine="preview", progress=False, log=lambda s: None)
    assert res.stage("prepare").reused  # it went on from what the cancelled run wrote
    assert _rendered(work) == _serial(folder, tmp_path / "serial")


def test_a_killed_server_restarted_resumes_the_job_to_the_same_bytes(tmp_path):
    folder = tmp_path / "job"
    make_job(folder, width=128, height=96, frames_per_arc=8, arcs=8)
    server = Server(tmp_path / "data")
    try:
        job_id = server.submit(folder).json()["id"]
        _when_started(server.work(job_id))
        server.stop(signal.SIGKILL)
        assert not (server.work(job_id) / "video.mp4").exists()
        token = server.token
        server = Server(tmp_path / "data")
        assert server.token == token  # clients keep working across restarts
        st = server.wait(job_id)
        assert st["state"] == "done", st
        assert _rendered(server.work(job_id)) == _serial(folder, tmp_path / "serial")
    finally:
        server.stop()


def test_serve_refuses_a_public_address_without_allow_remote(tmp_path, capsys):
    from videofrom3d.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--data", str(tmp_path / "d")]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert not (tmp_path / "d" / "server.json").exists()
