"""Seeded synthetic identities and face images (passport photos and gate captures).

Public API::

    from facelab.synth import SynthConfig, write_dataset
    summary = write_dataset(SynthConfig(identities=200, captures=3, seed=1), "data/")
"""

from facelab.synth._capture import capture_params, gate_scene, passport_scene
from facelab.synth._contact import contact_sheet
from facelab.synth._dataset import (
    GENERATOR_VERSION,
    MANIFEST_COLUMNS,
    SynthConfig,
    SynthSummary,
    dataset_digest,
    encode_png,
    render_identity,
    write_dataset,
)
from facelab.synth._identity import (
    CAPTURE_YEAR,
    NATIONALITY_CODES,
    PARAM_NAMES,
    Identity,
    sample_identity,
)
from facelab.synth._render import Scene, render

__all__ = [
    "CAPTURE_YEAR",
    "GENERATOR_VERSION",
    "MANIFEST_COLUMNS",
    "NATIONALITY_CODES",
    "PARAM_NAMES",
    "Identity",
    "Scene",
    "SynthConfig",
    "SynthSummary",
    "capture_params",
    "contact_sheet",
    "dataset_digest",
    "encode_png",
    "gate_scene",
    "passport_scene",
    "render",
    "render_identity",
    "sample_identity",
    "write_dataset",
]
