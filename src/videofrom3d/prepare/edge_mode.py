"""Which edge maps a run makes, decided once before any work (paper 3.1; research/geometry.md section 0).

The authors' edge map h_i is HED (``controlnet_aux.HEDdetector``) run on a normal-matcap shaded render with
white Line Art strokes on top; the HED ControlNet and GGI were trained on HED output. ``[prepare] edges``:

- ``"hed"``: that recipe; the HED weights (``[models].hed``, lllyasviel/Annotators ``ControlNetHED.pth``) must
  be found, except with ``--models tiny-random`` (a tiny random HED runs the code path).
- ``"lines"``: the drawn lines alone (no weights; the look of the official maps, not HED's).
- ``"auto"`` (default): ``"hed"`` when the weights are found (or tiny-random models run); else the lines with
  a one-line notice, except for a diffusion run with real models, which stops with :class:`MissingHEDError`
  (its models would see inputs unlike their training data) naming the weight and the override.

The alignment's control images follow the same rule (:func:`align_edge_detector`): HED, or the Sobel
stand-in only for tiny-random models or when asked for (``[align] edge_detector = "classical"``).
No torch here: the CPU path calls this too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from videofrom3d.errors import VideoFrom3DError

EDGE_MODES = ("auto", "hed", "lines")
HED_WEIGHT = "hed (lllyasviel/Annotators ControlNetHED.pth)"


class MissingHEDError(VideoFrom3DError):
    """HED edge maps are needed and the HED weights are not on this machine."""


@dataclass(frozen=True)
class EdgeChoice:
    """``mode`` ``"hed"`` or ``"lines"``; ``hed`` where the HED network comes from (``"weights"``,
    ``"tiny-random"``, or None for lines); ``weights`` the file used; ``notice`` one line for the user ("" when
    the run does what was asked)."""

    mode: str
    hed: str | None = None
    weights: str | None = None
    notice: str = ""

    def record(self) -> dict:
        """What the manifest and the prepare cache key hold."""
        return {"mode": self.mode, "hed": self.hed, "weights": self.weights}

    def describe(self) -> str:
        if self.mode == "lines":
            return "drawn lines"
        return f"HED of the normal-shaded render ({'tiny random HED' if self.hed == 'tiny-random' else self.weights})"


def _missing(why: str) -> MissingHEDError:
    return MissingHEDError(
        f"{why}, but the HED weights {HED_WEIGHT} are not on this machine; put them in place "
        "(`videofrom3d doctor` shows where they are looked for; [models].hed = FOLDER) or set "
        '[prepare] edges = "lines" to use drawn lines instead'
    )


def choose_edge_mode(requested: str, engine: str, models: str, hed_weights: str | Path | None) -> EdgeChoice:
    """The edge maps a run makes: ``requested`` the job's ``[prepare] edges``; ``engine`` ``"preview"`` or
    ``"diffusion"``; ``models`` ``"real"`` or ``"tiny-random"``; ``hed_weights`` the found weight file or None.
    Raises :class:`MissingHEDError` where HED is required and missing (see the module docstring)."""
    if requested not in EDGE_MODES:
        raise ValueError(f"[prepare].edges must be one of {list(EDGE_MODES)}, got {requested!r}")
    if requested == "lines":
        return EdgeChoice("lines")
    if hed_weights is not None:
        return EdgeChoice("hed", "weights", str(hed_weights))
    if models == "tiny-random":
        return EdgeChoice("hed", "tiny-random", notice="edge maps: tiny random HED (--models tiny-random)")
    if requested == "hed":
        raise _missing('[prepare] edges = "hed" asks for HED edge maps')
    if engine == "diffusion":
        raise _missing("the diffusion engine's models were trained on HED edge maps of the shaded geometry")
    return EdgeChoice("lines", notice=f"note: HED weights {HED_WEIGHT} not found; edge maps are drawn lines "
                                      '(set [prepare] edges = "lines" to silence this)')


def align_edge_detector(requested: str, models: str, hed_weights: str | Path | None) -> str:
    """The alignment's control-image detector for ``make_edge_detector``: ``"network"``, ``"classical"`` or
    ``"tiny-random"``. ``requested`` is ``[align] edge_detector`` (``"auto"``, ``"network"``,
    ``"classical"``); ``models`` ``"real"``, ``"tiny-random"`` or ``"custom"`` (ready components, tests).
    Real models with no HED weights raise :class:`MissingHEDError` unless ``"classical"`` was asked for."""
    if requested not in ("auto", "network", "classical"):
        raise ValueError(f'[align].edge_detector must be "auto", "network" or "classical", got {requested!r}')
    if requested == "classical":
        return "classical"
    if hed_weights is not None:
        return "network"
    if models == "real" or requested == "network":
        raise MissingHEDError(
            f"the alignment's control images are HED edges of the style crops (as the ControlNet was trained), "
            f"but the HED weights {HED_WEIGHT} are not on this machine; put them in place ([models].hed = FOLDER) "
            '(or set [align] edge_detector = "classical" for the Sobel stand-in)'
        )
    return "classical"


def find_hed(override: str | Path | None = None) -> Path | None:
    """The HED weight file (:func:`videofrom3d.annotators.hed.find_hed_weights`) or None."""
    from videofrom3d.annotators.hed import find_hed_weights
    from videofrom3d.models import MissingModelError

    try:
        return find_hed_weights(override)
    except MissingModelError:
        return None


def edges_for_job(job, engine: str, models: str) -> EdgeChoice:
    """:func:`choose_edge_mode` for ``job``'s ``[prepare] edges`` and ``[models].hed`` (the plan step calls
    this before any work)."""
    requested = job.options("prepare").get("edges", "auto")
    return choose_edge_mode(requested, engine, models, find_hed(job.model("hed")))
