"""Evaluation (paper 4.2 metrics and weight-free consistency metrics) of rendered work folders.

Weight-free metrics (numpy/OpenCV) always run; the paper's model-based metrics (LPIPS, PSNR-D, CLIP-A,
CLIP-I, subject/background consistency) run when their local weights are found, and are otherwise reported
as missing with the reason. ``videofrom3d eval WORK [WORK2 ...]`` is the command-line front end.
"""

from videofrom3d.eval.evaluate import METRICS, evaluate_run, evaluate_runs
from videofrom3d.eval.workfolder import EvalInputError, RunFolder

__all__ = ["METRICS", "EvalInputError", "RunFolder", "evaluate_run", "evaluate_runs"]
