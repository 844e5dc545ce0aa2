"""The Blender extension: its bpy test suite (tests/blender) run in the bpy environment, and its bpy-free
client (local CLI runner, job-server client) tested here against a fake CLI and a fake server."""

import importlib.util
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bpy_env import BPY_PYTHON, ROOT, bpy_env, require_bpy


def _load_client():
    spec = importlib.util.spec_from_file_location("vf3d_blender_client", ROOT / "blender/videofrom3d/client.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


client = _load_client()


def test_bpy_suite_passes_in_the_bpy_environment():
    """Registration, export, a local-mode render onto the timeline, manifest validation (tests/blender)."""
    require_bpy()
    r = subprocess.run([str(BPY_PYTHON), "-m", "pytest", "-q", "-rs", "tests/blender"], cwd=ROOT, env=bpy_env(),
                       capture_output=True, text=True, timeout=600)
    summary = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"bpy suite: {summary}")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "skipped" not in summary and "passed" in summary, summary


def test_extension_never_imports_the_main_package():
    for py in (ROOT / "blender" / "videofrom3d").glob("*.py"):
        text = py.read_text()
        assert "import videofrom3d" not in text and "from videofrom3d" not in text, py
    assert "import bpy" not in (ROOT / "blender/videofrom3d/client.py").read_text()


def test_parse_sse_keeps_ids_and_skips_heartbeats():
    raw = [b": heartbeat\n", b"id: 4\n", b'data: {"type": "progress",\n', b'data:  "fraction": 0.5}\n', b"\n",
           b'data: {"seq": 9, "type": "state", "state": "done"}\r\n', b"\r\n"]
    assert list(client.parse_sse(raw)) == [
        {"type": "progress", "fraction": 0.5, "seq": 4}, {"seq": 9, "type": "state", "state": "done"}]


FAKE_CLI = """
import sys, time, pathlib
args = sys.argv[1:]
work = pathlib.Path(args[args.index("--out") + 1])
if "--slow" in open(args[1]).read():
    time.sleep(60)
for d in ("prepare/arc000", "prepare/arc001", "align/x", "anchors", "inbetween/arc000", "inbetween/arc001"):
    (work / d).mkdir(parents=True, exist_ok=True)
    time.sleep(0.15)
(work / "video.mp4").write_bytes(b"mp4")
"""


def _fake_cli(tmp_path, job_text=""):
    (tmp_path / "cli.py").write_text(FAKE_CLI)
    (tmp_path / "job.toml").write_text(job_text)
    return [sys.executable, str(tmp_path / "cli.py")]


def test_local_runner_reports_progress_then_done(tmp_path):
    runner = client.LocalRunner(_fake_cli(tmp_path), tmp_path / "job.toml", tmp_path / "w", arcs=2, poll_s=0.05)
    assert runner.command()[2:4] == ["render", str(tmp_path / "job.toml")] and "--quiet" in runner.command()
    events = list(runner.events())
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0] == {"seq": 1, "type": "state", "state": "running"} and events[-1]["state"] == "done"
    fractions = [e["fraction"] for e in events if e["type"] == "progress"]
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0


EVENTS_CLI = """
import json, sys, time
if "--help" in sys.argv:
    print("usage: render [--events FILE]")
    raise SystemExit(0)
path = sys.argv[sys.argv.index("--events") + 1]
with open(path, "w") as f:
    for step in (1, 2, 3):
        f.write(json.dumps({"seq": 99, "type": "progress", "stage": "anchors", "step": step, "steps": 3,
                            "fraction": step / 4}) + "\\n")
        f.flush()
        time.sleep(0.1)
    f.write(json.dumps({"type": "state", "state": "done"}) + "\\n")
"""


def test_local_runner_forwards_the_clis_events(tmp_path):
    (tmp_path / "cli.py").write_text(EVENTS_CLI)
    runner = client.LocalRunner([sys.executable, str(tmp_path / "cli.py")], tmp_path / "j.toml", tmp_path / "w",
                                poll_s=0.05)
    events = list(runner.events())
    assert runner.command()[-2:] == ["--events", str(tmp_path / "w/blender_events.jsonl")]
    steps = [e["step"] for e in events if e.get("stage") == "anchors"]
    assert steps == [1, 2, 3] and [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e.get("state") for e in events if e["type"] == "state"] == ["running", "done"]


def test_local_runner_cancel_stops_the_process_group(tmp_path):
    runner = client.LocalRunner(_fake_cli(tmp_path, "--slow"), tmp_path / "job.toml", tmp_path / "w", poll_s=0.05)
    events = []
    t = threading.Thread(target=lambda: events.extend(runner.events()))
    t.start()
    while runner.proc is None:
        time.sleep(0.01)
    t0 = time.perf_counter()
    runner.cancel()
    t.join(5)
    assert not t.is_alive() and time.perf_counter() - t0 < 5
    assert runner.proc.returncode is not None and events[-1]["state"] == "cancelled"


def test_local_runner_failure_is_the_clis_error_line(tmp_path):
    (tmp_path / "bad.py").write_text("print('progress...'); print('videofrom3d: error: scene.glb: no triangles'); raise SystemExit(2)")
    runner = client.LocalRunner([sys.executable, str(tmp_path / "bad.py")], tmp_path / "j.toml", tmp_path / "w")
    events = list(runner.events())
    assert events[-2] == {"seq": events[-2]["seq"], "type": "error", "code": "cli",
                          "message": "videofrom3d: error: scene.glb: no triangles"}
    assert events[-1]["state"] == "failed"


class FakeServer(BaseHTTPRequestHandler):
    """The documented /v1 interface of `videofrom3d serve` (issue 16), just enough for the client."""

    token = "s3cret"
    received: dict = {}

    def log_message(self, *a):
        pass

    def _send(self, code, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self):
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self._send(401, {"detail": "token required"})
            return False
        return True

    def do_GET(self):
        if self.path == "/v1/health":
            return self._send(200, {"ok": True})
        if not self._authorised():
            return
        if self.path == "/v1/jobs/j1":
            return self._send(200, {"state": "done", "outputs": ["video.mp4", "prepare/arc000/edges/0000.png"]})
        if self.path == "/v1/jobs/j1/events":
            self.received["last_event_id"] = self.headers.get("Last-Event-ID")
            body = b"".join(f"id: {i}\ndata: {json.dumps(e)}\n\n".encode() for i, e in enumerate([
                {"type": "state", "state": "running"},
                {"type": "progress", "stage": "anchors", "arc": 0, "arcs": 2, "step": 3, "steps": 25, "fraction": 0.3},
                {"type": "state", "state": "done"}], start=1))
            return self._send(200, b": hb\n\n" + body, "text/event-stream")
        if self.path == "/v1/jobs/j1/files/video.mp4":
            return self._send(200, b"MP4DATA", "video/mp4")
        if self.path == "/v1/jobs/j1/files/prepare/arc000/edges/0000.png":
            return self._send(200, b"PNG", "image/png")
        self._send(404, {"detail": "no such route"})

    def do_POST(self):
        if not self._authorised():
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/jobs":
            self.received["body"], self.received["ctype"] = body, self.headers["Content-Type"]
            return self._send(201, {"id": "j1", "state": "queued"})
        if self.path == "/v1/jobs/j1/cancel":
            self.received["cancel"] = True
            return self._send(200, {"state": "cancelled"})
        self._send(404, {})


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_server_runner_submits_follows_events_and_downloads(server, tmp_path):
    (tmp_path / "scene.glb").write_bytes(b"glTF....")
    c = client.JobClient(server, FakeServer.token)
    assert c.health() == {"ok": True}
    runner = client.ServerRunner(c, 'name = "x"\n', [tmp_path / "scene.glb"], tmp_path / "w", engine="preview")
    events = list(runner.events())
    assert [e.get("state") or e["type"] for e in events] == ["queued", "running", "progress", "done"]
    assert events[2]["fraction"] == 0.3 and events[2]["seq"] == 2
    assert (tmp_path / "w/video.mp4").read_bytes() == b"MP4DATA"
    assert (tmp_path / "w/prepare/arc000/edges/0000.png").read_bytes() == b"PNG"
    body = FakeServer.received["body"]
    assert b'name="job"; filename="job.toml"' in body and b'name = "x"' in body
    assert b'name="files"; filename="scene.glb"' in body and b"glTF...." in body and b'name="engine"' in body
    assert FakeServer.received["ctype"].startswith("multipart/form-data; boundary=")
    runner.cancel()
    assert FakeServer.received["cancel"]


def test_client_errors_are_one_line(server):
    with pytest.raises(client.ClientError, match="401"):
        client.JobClient(server, "wrong").status("j1")
    with pytest.raises(client.ClientError, match="unreachable"):
        client.JobClient("http://127.0.0.1:9", "t").health(timeout=0.5)


def test_server_json_gives_url_and_token(tmp_path):
    (tmp_path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:8765", "port": 8765, "token": "abc"}))
    assert client.read_server_json(tmp_path / "server.json") == ("http://127.0.0.1:8765", "abc")
