"""One module per import check; each exposes ``NAME`` and ``run(ctx) -> CheckResult``."""
