"""Tenant workspaces and the isolated job runner (the zero client)."""

from facelab.errors import JobRefused
from facelab.jobs.runner import JobResult, run_job

__all__ = ["JobRefused", "JobResult", "run_job"]
