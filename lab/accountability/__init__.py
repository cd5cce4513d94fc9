"""Answerable to outsiders: offline verification, the evidence pack, the subject access
report and the register's accountability columns (issue 18)."""
