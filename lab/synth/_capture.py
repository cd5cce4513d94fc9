"""Capture conditions: the passport studio and the live gate camera.

A passport photo is frontal, neutral, evenly lit, on a plain background (ICAO 9303
style). A gate capture varies pose, light, expression, accessories and camera quality;
``difficulty`` scales every one of those ranges (1.0 is the default, 0 is a second
passport-like photo, 2.0 is a hard gate).
"""

from __future__ import annotations

import math

import numpy as np
from facelab.synth._identity import HI, LO, Identity, P, params_at
from facelab.synth._render import Scene

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


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def gate_scene(rng: np.random.Generator, difficulty: float) -> Scene:
    """A live capture at an automated border gate, variation scaled by ``difficulty``.

    All the randomness of one scene comes from two vectorised draws (uniforms and
    normals): a Generator call costs microseconds, and a scene needs thirty numbers.
    """
    d = max(0.0, difficulty)
    u = rng.random(24).tolist()
    n = rng.standard_normal(7).tolist()
    bg = rng.integers(40, 220, 6).tolist()
    clothing = rng.integers(20, 200, 3).tolist()
    seeds = rng.integers(0, 2**31, 2).tolist()
    blur = u[1] * 0.9 * d if u[0] < 0.6 else 0.0
    motion = 1.5 + u[3] * 3.0 * d if u[2] < 0.2 * d else 0.0
    return Scene(
        yaw=_clip(n[0] * 9.0 * d, -35, 35),
        pitch=_clip(n[1] * 6.0 * d, -25, 25),
        roll=_clip(n[2] * 4.0 * d, -20, 20),
        dx=n[3] * 0.025 * d,
        dy=n[4] * 0.02 * d,
        scale=_clip(1.0 + n[5] * 0.06 * d, 0.8, 1.2),
        light_azimuth=u[4] * 2 * math.pi,
        light_elevation=_clip((0.1 + 0.8 * u[5]) * d, 0.0, 1.3),
        ambient=0.4 + 0.3 * u[6],
        diffuse=0.3 + 0.4 * u[7],
        gain=_clip(1.0 + n[6] * 0.13 * d, 0.55, 1.45),
        background=tuple(bg[:3]),
        background2=tuple(bg[3:]),
        clutter_seed=seeds[0],
        clothing=tuple(clothing),
        expression=_clip(-math.log1p(-u[8]) * 0.2 * d, 0.0, 1.0),  # exponential, mean 0.2d
        glasses=u[9] < 0.12 * d,
        mask=u[10] < 0.05 * d,
        blur_sigma=blur,
        motion_length=motion,
        motion_angle=u[11] * 180.0,
        noise_sigma=1.0 + u[12] * 5.0 * d,
        jpeg_quality=int(_clip(95 - int(45 * d) + int(u[13] * (1 + int(45 * d))), 30, 95)),
        noise_seed=seeds[1],
    )


def capture_params(
    identity: Identity, kind: str, difficulty: float, rng: np.random.Generator
) -> np.ndarray:
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
    return np.minimum(np.maximum(p, LO), HI)  # np.clip, without its errstate overhead
