"""Batch renders: ``jobs.jsonl`` (:mod:`~videofrom3d.batch.jobs`), the local worker pool
(:mod:`~videofrom3d.batch.pool`, also the server's), Ray actors (:mod:`~videofrom3d.batch.ray_pool`) and the
driver that orders and records them (:mod:`~videofrom3d.batch.run`)."""

from videofrom3d.batch.jobs import BatchError, JobSpec, build_job, plan_jobs, read_jobs
from videofrom3d.batch.run import read_results, results_path, run_batch

__all__ = ["BatchError", "JobSpec", "build_job", "plan_jobs", "read_jobs", "read_results", "results_path", "run_batch"]
