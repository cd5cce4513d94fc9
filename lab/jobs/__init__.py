"""Tenant workspaces and the isolated job runner (the zero client)."""

from lab.jobs.runner import JobRefused, JobResult, run_job

__all__ = ["JobRefused", "JobResult", "run_job"]
