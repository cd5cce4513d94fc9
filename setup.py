"""Packaging: facelab's source folder ``lab/`` is installed under the import name
``facelab`` (setuptools' package mapping), so that a folder named ``lab`` in a user's
working directory never shadows it. Metadata is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    package_dir={"facelab": "lab", "enclave_policy": "enclave_policy"},
    packages=[
        "facelab",
        *(f"facelab.{p}" for p in find_packages("lab")),
        *find_packages(include=["enclave_policy", "enclave_policy.*"]),
    ],
)
