"""Job files: what to render, as frozen dataclasses read from TOML; errors name the key and the expected form.

A job file (paths are relative to the job file)::

    name = "town"                      # the default work folder is work/<name>
    seed = 0
    out = "work/town"                  # optional
    fps = 8

    [scene]
    path = "town.glb"
    up = "y"                           # the file's up axis: "y" (glTF) or "z" (Blender, CAD)
    unit_scale = 1.0

    [trajectory]
    path = "camera.json"               # ours, a .glb/.gltf with an animated camera, transforms.json, COLMAP dir
    camera = "Camera"                  # camera node or camera name inside a glTF (optional)
    frames = 136                       # resample to this many frames (optional; default: the path's own)
    timing = "auto"                    # auto | keys | constant-speed
    # or a generator instead of path:
    # generator = "orbit"; center = [0, 0, 0]; radius = 20; height = 6; degrees = 90; start = 0
    #             target = [0, 1, 0]; fov_y = 50 (or fov_x); up = [0, 1, 0]
    # generator = "flythrough"; waypoints = [[0, 2, 20], [5, 2, 0], [0, 2, -20]]
    #             targets = [[0, 1, 0], ...] (one per waypoint, or one point; none: look along the path)
    # Frame count: see job_cameras (snapped to K * frames_per_arc + 1 with a note).

    [size]
    width = 720
    height = 480

    [arcs]
    frames_per_arc = 45                # paper 3.3: 46 frames per arc, shared ends

    [[style]]
    image = "style.png"
    identifier = "a photo of sks town"

    [anchor_prompts]                   # post-prompting (paper Fig. 8), anchor index -> extra words
    2 = "in winter, snow"

    [anchor_styles]                    # several styles in one video (paper 3.2): anchor index -> style index
    3 = 1                              # (one LoRA holds every identifier; unlisted anchors: [anchors] style)

    [models]                           # ids or local folders; see `videofrom3d doctor`
    flux = "black-forest-labs/FLUX.1-dev"

    [anchors]                          # per-stage options, checked by the stage's config dataclass
    steps = 25
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videofrom3d.errors import VideoFrom3DError

# The job file's own keys and tables: the one list a new top-level key or table joins (its keys: _table_keys).
# Stage tables ([prepare], [anchors], ...) and their keys come from the config classes the engines parse
# (videofrom3d.engines.stage_tables), so a new config field is a job key at once.
JOB_KEYS = ("name", "seed", "out", "fps")
JOB_TABLES = ("scene", "trajectory", "size", "arcs", "style", "anchor_prompts", "anchor_styles", "models")
TRAJECTORY_KEYS = ("path", "generator", "camera", "frames", "timing")
MIN_FRAMES = 2  # every frame count (a job's, a flag's, an export's): a path needs a start and an end


class JobError(VideoFrom3DError, ValueError):
    """A job file or flag that cannot be used; the message names the key and the expected form."""


@dataclass(frozen=True)
class SceneSpec:
    path: Path
    up: str = "y"
    unit_scale: float = 1.0


@dataclass(frozen=True)
class TrajectorySpec:
    """A trajectory file or a generator with its parameters; ``frames`` resamples, ``timing`` as in
    :mod:`videofrom3d.scene.trajectory`."""

    path: Path | None = None
    generator: str | None = None
    params: tuple[tuple[str, Any], ...] = ()
    camera: str | None = None
    frames: int | None = None
    timing: str = "auto"

    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class StyleRef:
    image: Path
    identifier_prompt: str


@dataclass(frozen=True)
class Job:
    name: str
    scene: SceneSpec
    trajectory: TrajectorySpec
    styles: tuple[StyleRef, ...] = ()
    anchor_prompts: tuple[tuple[int, str], ...] = ()
    anchor_styles: tuple[tuple[int, int], ...] = ()
    width: int = 720  # paper 4.1: 720x480
    height: int = 480
    frames_per_arc: int = 45  # paper 3.3: 46-frame arcs with shared ends
    fps: float = 8.0  # CogVideoX-5B's native rate
    seed: int = 0
    out: Path | None = None
    models: tuple[tuple[str, str], ...] = ()
    stage_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    source: Path | None = field(default=None, compare=False)

    @property
    def work_dir(self) -> Path:
        return self.out if self.out is not None else Path("work") / self.name

    def options(self, stage: str) -> dict[str, Any]:
        """The job's ``[stage]`` table as a dict (empty when absent)."""
        return dict(dict(self.stage_options).get(stage, ()))

    def model(self, key: str) -> str | None:
        return dict(self.models).get(key)

    def post_prompt(self, k: int) -> str:
        """The extra words ``[anchor_prompts]`` gives anchor ``k`` (post-prompting, paper Fig. 8), or ""."""
        return dict(self.anchor_prompts).get(k, "")

    def anchor_style(self, k: int) -> int | None:
        """The style index ``[anchor_styles]`` gives anchor ``k``, or None (then ``[anchors] style``)."""
        return dict(self.anchor_styles).get(k)

    def to_dict(self) -> dict:
        """A JSON-able view, used to hash what each stage reads."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def read_toml(path: str | os.PathLike, error: type[Exception] = None, what: str = "job file") -> dict:
    """A TOML file as a dict; a missing or malformed file is one ``error`` (default :class:`JobError`) line."""
    error = error or JobError
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML ({e})") from None


def load_job(path: str | os.PathLike) -> Job:
    """Read and validate a TOML job file."""
    path = Path(path)
    return job_from_dict(read_toml(path), base=path.parent, source=path)


def job_from_dict(doc: dict, base: Path = Path("."), source: Path | None = None) -> Job:
    """A checked :class:`Job` from a parsed job file: every table and key known (:func:`job_schema`), every
    value of the right type and range; the first problem is a :class:`JobError` naming the file and the key."""
    err = _key_error(source)
    where = f"{source}: " if source else ""
    check_keys(doc, where)

    def resolve(p: str) -> Path:
        q = Path(os.path.expanduser(p))
        return q if q.is_absolute() else (base / q)

    name = doc.get("name", source.stem if source else "job")
    if not isinstance(name, str) or not name or "/" in name:
        raise err("name", "a non-empty string without '/'", name)

    scene = doc.get("scene")
    if isinstance(scene, str):
        scene = {"path": scene}
    if not isinstance(scene, dict) or "path" not in scene:
        raise err("scene", 'a table with path = "scene.glb"', scene)
    if scene.get("up", "y") not in ("y", "z"):
        raise err("scene.up", '"y" or "z"', scene.get("up"))
    scene_spec = SceneSpec(
        path=resolve(str(scene["path"])),
        up=scene.get("up", "y"),
        unit_scale=_number(scene.get("unit_scale", 1.0), "scene.unit_scale", err, positive=True),
    )

    traj = doc.get("trajectory")
    if isinstance(traj, str):
        traj = {"path": traj}
    if not isinstance(traj, dict) or (("path" in traj) == ("generator" in traj)):
        raise err("trajectory", 'a table with either path = "camera.json" or generator = "orbit"|"flythrough"', traj)
    reserved = set(TRAJECTORY_KEYS)
    timing = traj.get("timing", "auto")
    if timing not in ("auto", "keys", "constant-speed"):
        raise err("trajectory.timing", '"auto", "keys" or "constant-speed"', timing)
    frames = traj.get("frames")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < MIN_FRAMES):
        raise err("trajectory.frames", f"an integer >= {MIN_FRAMES}", frames)
    if "generator" in traj and traj["generator"] not in ("orbit", "flythrough"):
        raise err("trajectory.generator", '"orbit" or "flythrough"', traj["generator"])
    traj_spec = TrajectorySpec(
        path=resolve(str(traj["path"])) if "path" in traj else None,
        generator=traj.get("generator"),
        params=tuple(sorted((k, _freeze(v)) for k, v in traj.items() if k not in reserved)),
        camera=traj.get("camera"),
        frames=frames,
        timing=timing,
    )

    styles_raw = doc.get("style", [])
    if isinstance(styles_raw, dict):
        styles_raw = [styles_raw]
    styles = []
    for i, s in enumerate(styles_raw):
        if not isinstance(s, dict) or "image" not in s:
            raise err(f"style[{i}]", 'a table with image = "style.png" and identifier = "..."', s)
        ident = s.get("identifier", "")
        if not isinstance(ident, str):
            raise err(f"style[{i}].identifier", "a string", ident)
        styles.append(StyleRef(resolve(str(s["image"])), ident))

    prompts = doc.get("anchor_prompts", {})
    if not isinstance(prompts, dict):
        raise err("anchor_prompts", 'a table like { 2 = "in winter" }', prompts)
    anchor_prompts = []
    for k, v in prompts.items():
        try:
            ki = int(k)
        except ValueError:
            raise err(f"anchor_prompts.{k}", "keyed by an anchor index (integer)", k) from None
        if ki < 0 or not isinstance(v, str):
            raise err(f"anchor_prompts.{k}", "a string for a non-negative anchor index", v)
        anchor_prompts.append((ki, v))

    anchor_styles = []
    table = doc.get("anchor_styles", {})
    if not isinstance(table, dict):
        raise err("anchor_styles", "a table like { 3 = 1 } (anchor index = style index)", table)
    for k, v in table.items():
        try:
            ki = int(k)
        except ValueError:
            raise err(f"anchor_styles.{k}", "keyed by an anchor index (integer)", k) from None
        if ki < 0 or not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < len(styles):
            raise err(f"anchor_styles.{k}", f"a style index 0..{len(styles) - 1} ([[style]] in file order)", v)
        anchor_styles.append((ki, v))

    size = doc.get("size", {})
    if isinstance(size, str):
        size = dict(zip(("width", "height"), parse_size(size, err), strict=True))
    width, height = _frame_size(size.get("width", 720), size.get("height", 480), err)
    arcs = doc.get("arcs", {})
    frames_per_arc = _integer(arcs.get("frames_per_arc", 45), "arcs.frames_per_arc", err, minimum=1)

    models = doc.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
        raise err("models", 'a table of strings, e.g. flux = "/models/FLUX.1-dev"', models)

    stage_options = []
    for stage, cls in stage_tables().items():
        if stage in doc:
            if not isinstance(doc[stage], dict):
                raise err(stage, "a table of options", doc[stage])
            try:  # types and ranges now; the plan parses the table again with the job's defaults
                config_from_options(cls, doc[stage], stage)
            except JobError as e:
                raise JobError(f"{where}{e}") from None
            except ValueError as e:
                if isinstance(e, VideoFrom3DError):  # a stage's own error type (e.g. InbetweenError) stays
                    raise
                raise JobError(f"{where}{e}") from None
            stage_options.append((stage, tuple(sorted((k, _freeze(v)) for k, v in doc[stage].items()))))

    out = doc.get("out")
    return Job(
        name=name,
        scene=scene_spec,
        trajectory=traj_spec,
        styles=tuple(styles),
        anchor_prompts=tuple(sorted(anchor_prompts)),
        anchor_styles=tuple(sorted(anchor_styles)),
        width=width,
        height=height,
        frames_per_arc=frames_per_arc,
        fps=_number(doc.get("fps", 8.0), "fps", err, positive=True),
        seed=_integer(doc.get("seed", 0), "seed", err, minimum=0),
        out=resolve(out) if isinstance(out, str) else None,
        models=tuple(sorted(models.items())),
        stage_options=tuple(stage_options),
        source=source,
    )


def stage_tables() -> dict[str, type]:
    """Stage table name -> the frozen config class that parses it (from the engines)."""
    from videofrom3d.engines import stage_tables as tables

    return tables()


def _table_keys(table: str, value: Any) -> tuple[str, ...] | None:
    """The keys the job's own ``table`` knows (None: keyed by anchor index, checked with the values)."""
    if table == "scene":
        return tuple(f.name for f in dataclasses.fields(SceneSpec))
    if table == "trajectory":
        from videofrom3d.scene.trajectory import GENERATORS

        gen = GENERATORS.get(value.get("generator")) if isinstance(value, dict) else None
        import inspect

        extra = tuple(p for p in inspect.signature(gen).parameters if p not in ("size", "frames")) if gen else ()
        return TRAJECTORY_KEYS + extra
    if table == "size":
        return ("width", "height")
    if table == "arcs":
        return ("frames_per_arc",)
    if table == "style":
        return ("image", "identifier")
    if table == "models":
        from videofrom3d.models import MODELS

        return tuple(MODELS)
    return None


def job_schema() -> dict[str, tuple[str, ...] | None]:
    """Every table of a job file -> its known keys ("" = the top level; None = keyed by anchor index). The
    trajectory's generator keys depend on the generator: here those of every generator."""
    from videofrom3d.scene.trajectory import GENERATORS

    schema: dict[str, tuple[str, ...] | None] = {"": JOB_KEYS + JOB_TABLES + tuple(stage_tables())}
    for table in JOB_TABLES:
        schema[table] = _table_keys(table, {})
    schema["trajectory"] = tuple(dict.fromkeys(k for g in GENERATORS for k in _table_keys("trajectory", {"generator": g})))
    for table, cls in stage_tables().items():
        schema[table] = tuple(f.name for f in dataclasses.fields(cls))
    return schema


def unknown_key(where: str, table: str, key: str, known) -> JobError:
    """``job.toml: [size] widht: unknown key; did you mean 'width'?`` (else the known keys)."""
    known = sorted(known)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6) or \
        [k for k in known if k.startswith(str(key)) or str(key).startswith(k)][:1]
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    place = f"{table} {key}" if table else str(key)
    return JobError(f"{where}{place}: unknown {'key' if table else 'key or table'}; {hint}")


def check_keys(doc: dict, where: str = "") -> None:
    """Every top-level key and every key of the job's tables and stage tables known, else a one-line
    :class:`JobError` with a "did you mean" (values are checked by :func:`job_from_dict`)."""
    stages = stage_tables()
    top = JOB_KEYS + JOB_TABLES + tuple(stages)
    for key in doc:
        if key not in top:
            raise unknown_key(where, "", key, top)
    for table, value in doc.items():
        if table == "style":
            items = value if isinstance(value, list) else [value]
            labels = ["[[style]]"] if len(items) == 1 else [f"[[style]] #{i + 1}" for i in range(len(items))]
            tables = list(zip(labels, items, strict=True))
        else:
            tables = [(f"[{table}]", value)]
        for label, t in tables:
            if not isinstance(t, dict):
                continue  # shorthand (scene = "town.glb") or a wrong type: the value checks say which
            known = tuple(f.name for f in dataclasses.fields(stages[table])) if table in stages \
                else _table_keys(table, t)
            if known is None:
                continue
            for key in t:
                if key not in known:
                    raise unknown_key(where, label, key, known)


def override_job(job: Job, **changes: Any) -> Job:
    """``dataclasses.replace`` for command-line flags that override a job file, with the checks
    :func:`job_from_dict` makes on the size and the seed (a flag must not bypass them)."""
    new = dataclasses.replace(job, **changes)
    err = _key_error(None)
    _frame_size(new.width, new.height, err)
    _integer(new.seed, "seed", err, minimum=0)
    if new.trajectory.frames is not None:
        _integer(new.trajectory.frames, "trajectory.frames", err, minimum=MIN_FRAMES)
    return new


def _key_error(source: Path | None):
    """``err(key, expected, got)`` -> a :class:`JobError` naming the file and the ``[key]``."""
    where = f"{source}: " if source else ""

    def err(key: str, expected: str, got: Any = None) -> JobError:
        got_s = "" if got is None else f", got {got!r}"
        return JobError(f"{where}[{key}] must be {expected}{got_s}")

    return err


def _frame_size(width: Any, height: Any, err) -> tuple[int, int]:
    width = _integer(width, "size.width", err, minimum=16)
    height = _integer(height, "size.height", err, minimum=16)
    if width % 16 or height % 16:
        raise err("size", "width and height divisible by 16 (the diffusion models' latent patches)", (width, height))
    return width, height


# ------------------------------------------------------------------------------------------- camera path

GENERATED_ARCS = 3  # arcs of a generated path (orbit, flythrough) when [trajectory] frames is not given


def job_trajectory(job: Job, bounds=None):
    """The job's camera path as a :class:`~videofrom3d.scene.trajectory.Trajectory` at the job's size: the
    file of ``[trajectory] path``, or the generator of ``[trajectory] generator`` with its keys. ``bounds``:
    the scene's (min, max) corners when the caller already loaded it (else read from the scene file)."""
    import inspect

    from videofrom3d.scene import trajectory as tr
    from videofrom3d.scene.trajectory_formats import load_trajectory

    spec = job.trajectory
    size = (job.width, job.height)
    if spec.generator is None:
        extra = spec.param_dict()
        if extra:  # a Job made in code skips job_from_dict's key check
            raise unknown_key(_where(job), "[trajectory]", sorted(extra)[0], TRAJECTORY_KEYS)
        return checked_length(load_trajectory(spec.path, camera=spec.camera, size=size))
    fn = tr.GENERATORS[spec.generator]
    params = {k: _thaw(v) for k, v in spec.param_dict().items()}
    if Path(job.scene.path).is_file():  # keys left out come from the scene's bounds (else the generator's own)
        bounds = _scene_bounds(job) if bounds is None else bounds
        derived = {k: v for k, v in tr.generator_defaults(spec.generator, bounds).items()
                   if k not in params}
        if derived:
            shown = ", ".join(f"{k} = {_short(v)}" for k, v in derived.items())
            tr.note(f"{spec.generator} from the scene's bounds: {shown} (scene units; set them in [trajectory])")
        params = {**derived, **params}
    accepted = set(inspect.signature(fn).parameters) - {"size", "frames"}
    unknown = set(params) - accepted
    if unknown:
        raise unknown_key(_where(job), "[trajectory]", sorted(unknown)[0], (*TRAJECTORY_KEYS, *accepted))
    hints = typing.get_type_hints(fn)
    for key, value in params.items():  # typed keys get the same checks (and messages) as stage options
        if key in hints:
            params[key] = _coerce(value, hints[key], f"{_where(job)}[trajectory].{key}")
    frames = spec.frames if spec.frames is not None else GENERATED_ARCS * job.frames_per_arc + 1
    try:
        return fn(**params, frames=frames, size=size)
    except TypeError as e:
        raise JobError(f"{_where(job)}[trajectory] {spec.generator}: {e}") from e


def _scene_bounds(job: Job):
    p = Path(job.scene.path)
    return _bounds_of(str(p.resolve()), p.stat().st_mtime_ns, job.scene.up, job.scene.unit_scale)


@functools.lru_cache(maxsize=4)
def _bounds_of(path: str, mtime_ns: int, up: str, unit_scale: float):
    from videofrom3d.scene.mesh import load_scene

    return load_scene(path, up=up, unit_scale=unit_scale).bounds


def _short(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def arc_frame_count(count: int, frames_per_arc: int) -> int:
    """The frame count nearest to ``count`` that splits into arcs of ``frames_per_arc`` + 1 frames with
    shared ends: ``K * N + 1`` with K >= 1 (halfway rounds up)."""
    k = max(1, int((count - 1) / frames_per_arc + 0.5))
    return k * frames_per_arc + 1


def job_cameras(job: Job, bounds=None) -> list:
    """The cameras the pipeline renders: one :class:`~videofrom3d.scene.camera.Camera` per frame at the
    job's size.

    Frame count: ``[trajectory] frames`` if given, else the path's own (a per-frame list's length, a timed
    path's ``duration * fps + 1``, a keyframe file's ``frames``, else one arc per key interval; generators
    make 3 arcs). Arcs need ``K * N + 1`` frames (N = ``frames_per_arc``, consecutive arcs share their end
    frame); any other count is resampled to the nearest such count (at least one arc), with a note.
    A per-frame list (transforms.json, COLMAP, a trajectory export) whose length already fits is used frame
    by frame; otherwise the path is resampled with ``[trajectory] timing``.
    """
    from videofrom3d.scene.trajectory import note

    spec = job.trajectory
    n = job.frames_per_arc
    traj = job_trajectory(job, bounds)
    count = spec.frames if spec.frames is not None else traj.natural_frames(fps=job.fps, frames_per_arc=n)
    valid = arc_frame_count(count, n)
    if valid != count:
        origin = "[trajectory] frames" if spec.frames is not None else f"the camera path {traj.source}"
        note(
            f"{origin} gives {count} frames, but arcs of {n}+1 frames with shared ends need K*{n}+1; "
            f"resampled to {valid} frames ({plural((valid - 1) // n, 'arc')}). Set [trajectory] frames = {valid} "
            "(or another K*N+1) to choose."
        )
        count = valid
    elif spec.frames is not None:
        _note_resampled(traj, count, "[trajectory] frames")
    if traj.per_frame and count == len(traj) and spec.timing in ("auto", "keys"):
        return traj.cameras(job.width, job.height)
    return traj.resample(count, spec.timing).cameras(job.width, job.height)


def _where(job: Job) -> str:
    return f"{job.source}: " if job.source else ""


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def parse_size(text: str, err=None) -> tuple[int, int]:
    """"720x480" -> (720, 480)."""
    try:
        w, h = (int(x) for x in str(text).lower().split("x"))
        return w, h
    except ValueError:
        if err is not None:
            raise err("size", 'a string "WIDTHxHEIGHT" like "720x480"', text) from None
        raise JobError(f'size must look like "720x480", got {text!r}') from None


def config_from_options(cls: type, options: dict[str, Any], section: str):
    """Build the frozen config dataclass ``cls`` from a job's ``[section]`` table, checking names and types.

    Unknown keys and wrong types raise :class:`JobError` naming ``[section].key``; tuples accept lists."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in options:
        if key not in fields:
            raise unknown_key("", f"[{section}]", key, fields)
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in options.items():
        values[key] = _coerce(value, hints[key], f"[{section}].{key}")
    return cls(**values)


def stage_config(cls: type, job: Job, section: str, defaults: dict[str, Any] | None = None):
    """The stage's frozen config ``cls`` from the job's ``[section]`` table over ``defaults``; any invalid value
    is a :class:`JobError` naming the key."""
    try:
        return config_from_options(cls, {**(defaults or {}), **job.options(section)}, section)
    except ValueError as e:
        if isinstance(e, VideoFrom3DError):
            raise
        raise JobError(str(e)) from e


def anchor_prompt(job: Job, k: int, style: int | None = None) -> str:
    """Anchor k's prompt, for every engine: the identifier prompt of style ``style`` (default: the one
    ``[anchor_styles]`` gives anchor k, else ``[anchors] style``, else 0) followed by the post-prompt words for
    anchor k (paper Fig. 8)."""
    if style is None:
        style = job.anchor_style(k)
    if style is None:
        style = job.options("anchors").get("style", 0)
        if not isinstance(style, int) or isinstance(style, bool):
            raise JobError(f"[anchors].style must be an integer style index, got {style!r}")
    if job.styles and not 0 <= style < len(job.styles):  # before indexing: -1 would pick the last style
        raise JobError(f"[anchors].style = {style} but the job has {len(job.styles)} style(s)")
    ident = job.styles[style].identifier_prompt if job.styles else ""
    parts = [p.strip() for p in (ident, job.post_prompt(k)) if p and p.strip()]
    return ", ".join(parts)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        last = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except JobError as e:
                last = e
        raise last or JobError(f"{where} has the wrong type")
    if origin is typing.Literal:
        if value not in args:
            raise JobError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise JobError(f"{where} must be a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise JobError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise JobError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise JobError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise JobError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def _number(v: Any, key: str, err, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or (positive and v <= 0):
        raise err(key, "a positive number" if positive else "a number", v)
    return float(v)


def _integer(v: Any, key: str, err, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
        raise err(key, f"an integer >= {minimum}" if minimum is not None else "an integer", v)
    return v


def export_trajectory(
    source: str | os.PathLike, output: str | os.PathLike, frames: int | None = None, size: str | None = None,
    camera: str | None = None,
) -> Path:
    """Write per-frame cameras ``{"width", "height", "frames": [{"K", "world_to_cam"}]}`` (OpenCV) for a job
    file (the cameras the pipeline uses) or any supported trajectory file (per-frame formats frame by frame,
    keyframes at their natural count); ``frames`` (>= 2) resamples to exactly that many, ``size`` is "WxH",
    ``camera`` picks one camera of a file that holds several (it overrides the job's)."""
    from videofrom3d.scene.camera import save_cameras
    from videofrom3d.scene.trajectory import TrajectoryError
    from videofrom3d.scene.trajectory_formats import load_trajectory

    source = Path(source)
    wh = parse_size(size) if size else None
    if frames is not None and frames < MIN_FRAMES:
        raise TrajectoryError(f"--frames must be at least {MIN_FRAMES} (a start and an end), got {frames}")
    if source.suffix.lower() == ".toml":
        job = load_job(source)
        if wh is not None:
            job = override_job(job, width=wh[0], height=wh[1])
        if camera is not None:
            job = dataclasses.replace(job, trajectory=dataclasses.replace(job.trajectory, camera=camera))
        if frames is None:
            cams = job_cameras(job)
        else:
            traj = job_trajectory(job)
            _note_resampled(traj, frames, "--frames")
            cams = traj.resample(frames, job.trajectory.timing).cameras(job.width, job.height)
    else:
        traj = checked_length(load_trajectory(source, camera=camera, size=wh))
        w, h = wh or (traj.width, traj.height)
        if frames is not None:
            _note_resampled(traj, frames, "--frames")
            cams = traj.resample(frames).cameras(w, h)
        elif traj.per_frame:
            cams = traj.cameras(w, h)
        else:
            cams = traj.resample(traj.natural_frames()).cameras(w, h)
    return save_cameras(output, cams)


def checked_length(traj):
    """``traj`` when it holds at least :data:`MIN_FRAMES` cameras, else a one-line TrajectoryError."""
    from videofrom3d.scene.trajectory import TrajectoryError

    if len(traj) < MIN_FRAMES:
        raise TrajectoryError(f"{traj.source or 'the camera path'}: {plural(len(traj), 'camera')}; a camera path "
                              f"needs at least {MIN_FRAMES} (a start and an end)")
    return traj


def _note_resampled(traj, frames: int, why: str) -> None:
    """The note every resampling of a per-frame list prints: both counts and what asked for it."""
    from videofrom3d.scene.trajectory import note

    if traj.per_frame and frames != len(traj):
        note(f"{traj.source or 'the camera path'}: {plural(len(traj), 'frame')} resampled to {frames} ({why})")


def plural(n: int, word: str) -> str:
    """``plural(1, "arc")`` -> "1 arc", ``plural(3, "arc")`` -> "3 arcs"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
