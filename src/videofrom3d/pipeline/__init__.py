"""``render()`` and its stages: plan -> prepare -> align -> anchors -> inbetween -> video.

- :mod:`~videofrom3d.pipeline.render`: :func:`render` (reads top to bottom like the paper) and the results;
- :mod:`~videofrom3d.pipeline.plan`: the engine choice and every input checked before any work;
- :mod:`~videofrom3d.pipeline.edits`: anchor edits (``--anchor``, ``--reseed-anchor``, ``--reset-edits``);
- :mod:`~videofrom3d.pipeline.stages`: one function per stage over the run's context;
- :mod:`~videofrom3d.pipeline.context`: the state the stages share.
"""

from videofrom3d.engines import STAGES
from videofrom3d.pipeline.context import StageResult, derive_seed
from videofrom3d.pipeline.edits import PipelineError
from videofrom3d.pipeline.plan import ENGINES, MODEL_MODES, choose_engine, cuda_status
from videofrom3d.pipeline.render import RenderResult, align, generate_anchors, inbetween, prepare, render

__all__ = [
    "ENGINES",
    "MODEL_MODES",
    "STAGES",
    "PipelineError",
    "RenderResult",
    "StageResult",
    "align",
    "choose_engine",
    "cuda_status",
    "derive_seed",
    "generate_anchors",
    "inbetween",
    "prepare",
    "render",
]
