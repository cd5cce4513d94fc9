"""Tenant workspaces and the isolated job runner (the zero client)."""

from lab.errors import JobRefused
from lab.jobs.runner import JobResult, run_job

__all__ = ["JobRefused", "JobResult", "run_job"]
