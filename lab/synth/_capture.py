"""Capture conditions: the passport studio and the live gate camera.

A passport photo is frontal, neutral, evenly lit, on a plain background (ICAO 9303
style). A gate capture varies pose, light, expression, accessories and camera quality;
``difficulty`` scales every one of those ranges (1.0 is the default, 0 is a second
passport-like photo, 2.0 is a hard gate).
"""

from __future__ import annotations

import math

import numpy as np

from lab.synth._identity import HI, LO, Identity, P, params_at
from lab.synth._render import Scene

_PASSPORT_BACKGROUNDS = ((226, 227, 229), (206, 222, 236), (240, 240, 236), (214, 214, 210))


def passport_scene(identity: Identity, rng: np.random.Generator) -> Scene:
    """A studio photo: frontal, neutral, even light, plain background, light compression."""
    bg = _PASSPORT_BACKGROUNDS[int(rng.integers(len(_PASSPORT_BACKGROUNDS)))]
    return Scene(
        yaw=float(rng.normal(0, 1.0)),
        pitch=float(rng.normal(0, 1.0)),
        roll=float(rng.normal(0, 0.8)),
        dx=float(rng.normal(0, 0.006)),
        dy=float(rng.normal(0, 0.006)),
        scale=float(rng.normal(1.0, 0.015)),
        light_azimuth=float(rng.uniform(0, 2 * math.pi)),
        light_elevation=float(rng.uniform(0.0, 0.15)),
        ambient=0.72,
        diffuse=0.35,
        gain=float(rng.normal(1.0, 0.03)),
        background=bg,
        clothing=tuple(int(v) for v in rng.integers(20, 160, 3)),
        expression=0.0,
        noise_sigma=float(rng.uniform(0.5, 1.5)),
        jpeg_quality=int(rng.integers(88, 96)),
        noise_seed=int(rng.integers(2**31)),
    )


def gate_scene(rng: np.random.Generator, difficulty: float) -> Scene:
    """A live capture at an automated border gate, variation scaled by ``difficulty``."""
    d = max(0.0, difficulty)
    clip = np.clip
    blur = float(rng.uniform(0.0, 0.9 * d)) if rng.random() < 0.6 else 0.0
    motion = float(rng.uniform(1.5, 1.5 + 3.0 * d)) if rng.random() < 0.2 * d else 0.0
    bg1 = tuple(int(v) for v in rng.integers(40, 220, 3))
    bg2 = tuple(int(v) for v in rng.integers(40, 220, 3))
    return Scene(
        yaw=float(clip(rng.normal(0, 9.0 * d), -35, 35)),
        pitch=float(clip(rng.normal(0, 6.0 * d), -25, 25)),
        roll=float(clip(rng.normal(0, 4.0 * d), -20, 20)),
        dx=float(rng.normal(0, 0.025 * d)),
        dy=float(rng.normal(0, 0.02 * d)),
        scale=float(clip(rng.normal(1.0, 0.06 * d), 0.8, 1.2)),
        light_azimuth=float(rng.uniform(0, 2 * math.pi)),
        light_elevation=float(clip(rng.uniform(0.1, 0.9) * d, 0.0, 1.3)),
        ambient=float(rng.uniform(0.4, 0.7)),
        diffuse=float(rng.uniform(0.3, 0.7)),
        gain=float(clip(rng.normal(1.0, 0.13 * d), 0.55, 1.45)),
        background=bg1,
        background2=bg2,
        clutter_seed=int(rng.integers(2**31)),
        clothing=tuple(int(v) for v in rng.integers(20, 200, 3)),
        expression=float(clip(rng.exponential(0.2 * d), 0.0, 1.0)),
        glasses=bool(rng.random() < 0.12 * d),
        mask=bool(rng.random() < 0.05 * d),
        blur_sigma=blur,
        motion_length=motion,
        motion_angle=float(rng.uniform(0, 180)),
        noise_sigma=float(rng.uniform(1.0, 1.0 + 5.0 * d)),
        jpeg_quality=int(clip(rng.integers(95 - int(45 * d), 96), 30, 95)),
        noise_seed=int(rng.integers(2**31)),
    )


def capture_params(identity: Identity, kind: str, difficulty: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Face parameters at capture time.

    ``passport``: the face in the passport's issue year (younger, before the identity's
    ageing drift). ``gate``: the face now, with day-to-day changes (hair styling,
    shaving) scaled by ``difficulty``.
    """
    d = max(difficulty, 0.0)
    if kind == "passport":
        return params_at(identity, identity.issue_year, d)
    p = identity.params.copy()
    p[P["hair_volume"]] += rng.normal(0.0, 0.02 * d)
    p[P["fringe"]] += rng.normal(0.0, 0.08 * d)
    p[P["beard"]] *= rng.uniform(1.0 - 0.5 * min(d, 1.0), 1.0)
    return np.clip(p, LO, HI)
