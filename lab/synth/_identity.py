"""Synthetic identities: demographic group, metadata and a vector of face parameters.

An identity is drawn from a per-identity random stream (``SeedSequence([seed, 0, index])``),
so identity ``i`` is the same whatever the number of identities or worker processes.

The face is described by ``len(PARAM_NAMES)`` continuous parameters in renderer units.
Each is drawn as mean + (group shift + t) * sd, with t a Student-t (5 dof) variate times
the parameter's calibrated spread, then clipped to its calibrated bounds. Spreads and
bounds are data (``identity_calibration.json``), fitted at build time by
``models/synth_identity/build.py`` against dlib's ResNet recogniser so that identities
are as distinct as that recogniser can be made to see them while the Haar detector still
finds the faces; the generator never needs dlib. Their distributions depend on the
demographic group: nationality shifts skin, hair, eye
and feature means; sex shifts jaw, brows, beard and hair length; age (from the birth
year) greys the hair, roughens the skin and widens the face. Group differences are
therefore real and measurable by the benchmark later.

Nationalities are fictional and use ISO 3166-1 user-assigned alpha-3 codes (XAA-XAH),
which no real country holds. Names come from a per-nationality syllable model, never
from a list of real people.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

#: The year the gate captures are taken in; birth and passport years are relative to it.
CAPTURE_YEAR = 2026

#: (name, mean, sd, lo, hi) of every face parameter, in renderer units. sd is the unit of
#: group shifts, ageing drift and the calibrated spread; lo and hi are the hand-set
#: plausibility bounds the calibration starts from (and may widen, up to physical limits).
#: Lengths are in units of the face half-width A unless said otherwise.
_PARAM_SPEC: tuple[tuple[str, float, float, float, float], ...] = (
    ("face_width", 1.00, 0.07, 0.80, 1.20),  # scale of the head
    ("face_length", 1.32, 0.07, 1.12, 1.55),  # half-height / half-width
    ("jaw_width", 0.50, 0.13, 0.15, 0.90),  # how little the jaw narrows towards the chin
    ("chin_shape", 2.00, 0.50, 0.80, 3.50),  # exponent of the narrowing: low = pointed
    ("chin_length", 1.00, 0.05, 0.88, 1.12),  # stretch of the lower face
    ("forehead_width", 0.95, 0.04, 0.85, 1.05),
    ("eye_size", 1.00, 0.12, 0.70, 1.35),
    ("eye_spacing", 0.40, 0.03, 0.32, 0.48),  # half the distance between eye centres
    ("eye_tilt", 3.00, 4.00, -8.0, 14.0),  # degrees, outer corner up
    ("eye_height", 0.00, 0.05, -0.12, 0.12),
    ("eye_openness", 0.45, 0.07, 0.28, 0.62),  # eye height / eye width
    ("iris_darkness", 0.70, 0.12, 0.10, 0.95),
    ("brow_thickness", 1.00, 0.25, 0.45, 1.80),
    ("brow_arch", 0.08, 0.05, -0.04, 0.20),
    ("brow_gap", 0.22, 0.04, 0.12, 0.32),  # brow height above the eye
    ("nose_length", 0.48, 0.05, 0.36, 0.60),  # nose tip below the eye line
    ("nose_width", 0.18, 0.03, 0.11, 0.27),
    ("nose_protrusion", 0.35, 0.06, 0.20, 0.50),
    ("mouth_width", 0.30, 0.04, 0.20, 0.42),  # half width
    ("lip_thickness", 1.00, 0.20, 0.55, 1.60),
    ("mouth_height", 0.86, 0.05, 0.74, 0.98),
    ("ear_size", 1.00, 0.12, 0.70, 1.35),
    ("ear_height", 0.10, 0.05, -0.02, 0.22),
    ("skin_lightness", 0.60, 0.06, 0.15, 0.95),
    ("skin_warmth", 0.50, 0.06, 0.20, 0.80),
    ("hair_length", 0.50, 0.25, 0.00, 1.00),  # 0 bald, 0.5 short, 1 long
    ("hair_volume", 0.08, 0.04, 0.00, 0.22),
    ("hair_lightness", 0.25, 0.10, 0.02, 0.90),
    ("hair_warmth", 0.40, 0.12, 0.05, 0.90),
    ("hairline", -0.78, 0.08, -1.05, -0.55),
    ("fringe", 0.20, 0.25, 0.00, 1.00),
    ("beard", 0.00, 0.00, 0.00, 1.00),
    ("skin_texture", 0.06, 0.025, 0.01, 0.16),
    ("freckles", 0.10, 0.12, 0.00, 0.70),
    ("lip_redness", 0.50, 0.15, 0.10, 0.95),
    ("asymmetry", 0.00, 0.03, -0.08, 0.08),
    ("cheek_fullness", 0.50, 0.15, 0.10, 0.90),
    ("wrinkles", 0.00, 0.05, 0.00, 1.00),
    # relief: per-identity 3-D shape shown as shading (multipliers of the mean relief)
    ("socket_depth", 1.00, 0.20, 0.50, 1.70),  # eye-socket shadow
    ("under_eye", 1.00, 0.40, 0.00, 2.40),  # shadow under the eyes
    ("cheekbone", 1.00, 0.40, 0.00, 2.40),  # cheekbone highlight
    ("cheekbone_height", 0.32, 0.05, 0.18, 0.46),  # below the eye line
    ("brow_ridge", 0.50, 0.40, 0.00, 1.80),  # highlight above the brows
    ("nasolabial", 0.40, 0.35, 0.00, 1.60),  # fold from the nose wing to the mouth corner
    ("nose_bridge", 1.00, 0.30, 0.30, 1.90),  # ridge highlight and side shadows
    # amplitude of the identity's smooth deformation of the face (see _render._deformation)
    ("deformation", 0.075, 0.015, 0.03, 0.12),
)

PARAM_NAMES: tuple[str, ...] = tuple(s[0] for s in _PARAM_SPEC)
P = {name: i for i, name in enumerate(PARAM_NAMES)}
_MEAN = np.array([s[1] for s in _PARAM_SPEC])
_SD = np.array([s[2] for s in _PARAM_SPEC])
#: The hand-set plausibility bounds, before calibration (the calibration widens them).
BASE_LO = np.array([s[3] for s in _PARAM_SPEC])
BASE_HI = np.array([s[4] for s in _PARAM_SPEC])

#: The calibrated identity distribution, fitted with dlib's recogniser at build time by
#: ``models/synth_identity/build.py`` and read here (the generator never needs dlib).
CALIBRATION_FILE = Path(__file__).with_name("identity_calibration.json")


def load_calibration(path: Path = CALIBRATION_FILE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The between-identity spread and the bounds of every parameter, from ``path``.

    Returns
    -------
    spread : ndarray of shape (len(PARAM_NAMES),)
        Scale of the Student-t (5 dof) draw of each parameter, in units of its sd.
    lo, hi : ndarray of shape (len(PARAM_NAMES),)
        Bounds every parameter is clipped to, in renderer units.

    Raises ``ValueError`` when the file does not name exactly ``PARAM_NAMES`` or a
    value is not finite or the bounds are not ordered around the mean.
    """
    doc = json.loads(path.read_text(encoding="utf-8"))
    params = doc["params"]
    if sorted(params) != sorted(PARAM_NAMES):
        missing = sorted(set(PARAM_NAMES) - set(params))
        extra = sorted(set(params) - set(PARAM_NAMES))
        raise ValueError(f"{path}: parameters missing {missing}, unknown {extra}")
    spread = np.array([float(params[n]["spread"]) for n in PARAM_NAMES])
    lo = np.array([float(params[n]["lo"]) for n in PARAM_NAMES])
    hi = np.array([float(params[n]["hi"]) for n in PARAM_NAMES])
    if not (
        np.all(np.isfinite(spread))
        and np.all(spread >= 0)
        and np.all(lo <= _MEAN)
        and np.all(hi >= _MEAN)
    ):
        raise ValueError(f"{path}: spreads must be finite and >= 0, bounds around the mean")
    return spread, lo, hi


#: Between-identity spread of each parameter, in units of its sd; drift and group
#: shifts stay in plain sd units. LO and HI: the bounds every parameter is clipped to.
SPREAD, LO, HI = load_calibration()


@dataclass(frozen=True)
class Nationality:
    """A fictional nationality: its code, syllable model and parameter shifts."""

    code: str
    onsets: tuple[str, ...]
    nuclei: tuple[str, ...]
    codas: tuple[str, ...]
    passport_format: str  # L = letter, D = digit
    shifts: dict[str, float]  # parameter -> shift of the mean, in that parameter's sd


def _syl(s: str) -> tuple[str, ...]:
    return tuple(s.split())


NATIONALITIES: tuple[Nationality, ...] = (
    Nationality(
        "XAA",
        _syl("b d k l m n r s t v"),
        _syl("a e i o"),
        _syl("_ _ n r s"),
        "LLDDDDDDD",
        {
            "skin_lightness": 3.5,
            "hair_lightness": 2.5,
            "hair_warmth": 1.0,
            "iris_darkness": -3.0,
            "nose_protrusion": 1.0,
            "freckles": 1.5,
        },
    ),
    Nationality(
        "XAB",
        _syl("g h k m n p t w y"),
        _syl("a i o u"),
        _syl("_ _ _ n"),
        "LDDDDDDDD",
        {
            "skin_lightness": 1.0,
            "eye_openness": -2.0,
            "nose_protrusion": -1.5,
            "face_width": 1.0,
            "hair_lightness": -1.0,
            "skin_warmth": 1.0,
        },
    ),
    Nationality(
        "XAC",
        _syl("b d f j k m n s z"),
        _syl("a e o u"),
        _syl("_ _ m n"),
        "LLDDDDDDD",
        {
            "skin_lightness": -4.5,
            "nose_width": 2.0,
            "lip_thickness": 1.8,
            "hair_lightness": -1.5,
            "hair_volume": 2.0,
            "iris_darkness": 1.5,
        },
    ),
    Nationality(
        "XAD",
        _syl("dh h k l m r s sh t"),
        _syl("a aa i u"),
        _syl("_ d l m n r"),
        "LDDDDDDD",
        {
            "skin_lightness": -1.0,
            "skin_warmth": 1.5,
            "nose_length": 1.2,
            "brow_thickness": 1.0,
            "hair_lightness": -1.5,
        },
    ),
    Nationality(
        "XAE",
        _syl("b ch d k l p r t"),
        _syl("a e i o u"),
        _syl("_ l n s"),
        "LLDDDDDDD",
        {
            "skin_lightness": 0.0,
            "skin_warmth": 2.0,
            "face_length": -1.0,
            "cheek_fullness": 1.5,
            "hair_lightness": -1.0,
        },
    ),
    Nationality(
        "XAF",
        _syl("f g l m n r s v"),
        _syl("a e ei i o"),
        _syl("_ _ l n"),
        "DDDDDDDDD",
        {
            "skin_lightness": 2.5,
            "hair_lightness": 0.5,
            "face_length": 1.0,
            "eye_spacing": -0.8,
            "iris_darkness": -1.5,
        },
    ),
    Nationality(
        "XAG",
        _syl("b d g k n ng p t"),
        _syl("a i o u"),
        _syl("_ _ k ng t"),
        "LLDDDDDD",
        {
            "skin_lightness": -2.5,
            "skin_warmth": -0.5,
            "nose_width": 1.0,
            "eye_openness": -1.0,
            "hair_lightness": -1.5,
        },
    ),
    Nationality(
        "XAH",
        _syl("h k m n r s t y"),
        _syl("a e i o u"),
        _syl("_ _ _ n"),
        "LDDDDDDDD",
        {
            "skin_lightness": 1.5,
            "eye_openness": -2.5,
            "face_width": 0.8,
            "nose_protrusion": -1.0,
            "hair_lightness": -1.5,
            "hair_warmth": -1.0,
        },
    ),
)
NATIONALITY_CODES: tuple[str, ...] = tuple(n.code for n in NATIONALITIES)

_SEX_SHIFTS: dict[str, dict[str, float]] = {
    "M": {
        "jaw_width": 0.8,
        "chin_shape": 0.6,
        "brow_thickness": 0.8,
        "brow_gap": -0.6,
        "hair_length": -0.8,
        "face_width": 0.6,
        "nose_width": 0.5,
        "lip_thickness": -0.4,
        "eye_size": -0.4,
        "brow_arch": -0.6,
    },
    "F": {
        "jaw_width": -0.8,
        "chin_shape": -0.6,
        "brow_thickness": -0.8,
        "brow_gap": 0.6,
        "hair_length": 0.9,
        "face_width": -0.6,
        "nose_width": -0.5,
        "lip_thickness": 0.5,
        "eye_size": 0.4,
        "lip_redness": 1.0,
        "brow_arch": 0.6,
    },
}


@dataclass(frozen=True)
class Identity:
    """One synthetic person: metadata and face parameters (in renderer units)."""

    index: int
    subject_id: str
    name: str
    passport_no: str
    nationality: str
    sex: str
    birth_year: int
    issue_year: int  # the year the passport photo was taken
    birth_date: str  # ISO 8601, in birth_year
    params: np.ndarray  # shape (len(PARAM_NAMES),), at CAPTURE_YEAR
    drift: np.ndarray  # per-parameter ageing drift per decade, in sd units
    texture_seed: int  # seeds the identity's skin marks and texture

    @property
    def age(self) -> int:
        return CAPTURE_YEAR - self.birth_year


def _name(rng: np.random.Generator, nat: Nationality, sex: str) -> str:
    def word(n_syl: int) -> str:
        parts = []
        for _ in range(n_syl):
            coda = nat.codas[rng.integers(len(nat.codas))]
            parts.append(
                nat.onsets[rng.integers(len(nat.onsets))]
                + nat.nuclei[rng.integers(len(nat.nuclei))]
                + ("" if coda == "_" else coda)
            )
        return "".join(parts)

    given = word(int(rng.integers(2, 4)))
    given += ("a", "e", "i")[rng.integers(3)] if sex == "F" else ("", "o", "n")[rng.integers(3)]
    family = word(int(rng.integers(1, 4)))
    return f"{given.capitalize()} {family.capitalize()}"


def _passport_no(rng: np.random.Generator, fmt: str) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    return "".join(
        letters[rng.integers(len(letters))] if c == "L" else str(rng.integers(10)) for c in fmt
    )


def age_params(params: np.ndarray, age: float) -> np.ndarray:
    """Apply the effects of age (greying, skin texture, wrinkles, a wider face) to params."""
    out = params.copy()
    over = max(0.0, age - 30.0)
    grey = min(1.0, max(0.0, (age - 38.0) / 35.0))
    out[P["hair_lightness"]] += grey * (0.85 - out[P["hair_lightness"]])
    out[P["hair_warmth"]] -= grey * (out[P["hair_warmth"]] - 0.1)
    out[P["skin_texture"]] += 0.0012 * over
    out[P["wrinkles"]] = min(1.0, out[P["wrinkles"]] + 0.02 * over)
    out[P["face_width"]] += 0.0015 * over
    out[P["jaw_width"]] += 0.003 * over
    out[P["hair_volume"]] -= 0.0012 * over
    out[P["lip_thickness"]] -= 0.004 * over
    return np.minimum(np.maximum(out, LO), HI)  # np.clip, without its errstate overhead


def sample_identity(seed: int, index: int) -> Identity:
    """Draw identity ``index`` of the dataset seeded with ``seed`` (pure, deterministic)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, index]))
    nat = NATIONALITIES[int(rng.integers(len(NATIONALITIES)))]
    sex = "F" if rng.random() < 0.5 else "M"
    birth_year = int(CAPTURE_YEAR - rng.integers(18, 80))
    years_since_issue = int(rng.integers(0, 11))
    issue_year = max(CAPTURE_YEAR - years_since_issue, birth_year + 16)

    shift = np.zeros(len(PARAM_NAMES))
    for name, v in nat.shifts.items():
        shift[P[name]] += v
    for name, v in _SEX_SHIFTS[sex].items():
        shift[P[name]] += v
    # Heavy-ish tails (Student t, 5 dof) spread identities apart as real faces are.
    z = rng.standard_t(5, size=len(PARAM_NAMES)) * SPREAD
    params = _MEAN + (shift + z) * _SD
    if sex == "M":
        params[P["beard"]] = max(0.0, rng.normal(0.15, 0.35))
        if rng.random() < 0.25:
            params[P["hair_length"]] = rng.uniform(0.0, 0.15)  # receding or shaven
    params = age_params(np.minimum(np.maximum(params, LO), HI), CAPTURE_YEAR - birth_year)
    drift = rng.normal(0.0, 1.0, size=len(PARAM_NAMES))

    return Identity(
        index=index,
        subject_id=f"S{index:06d}",
        name=_name(rng, nat, sex),
        passport_no=_passport_no(rng, nat.passport_format),
        nationality=nat.code,
        sex=sex,
        birth_year=birth_year,
        issue_year=issue_year,
        params=params,
        drift=drift,
        texture_seed=int(rng.integers(2**31)),
        birth_date=_birth_date(seed, index, birth_year),
    )


def _birth_date(seed: int, index: int, year: int) -> str:
    """A day in ``year`` from its own random stream, so the images do not depend on it."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, index]))
    first = date(year, 1, 1)
    days = (date(year + 1, 1, 1) - first).days
    return (first + timedelta(days=int(rng.integers(days)))).isoformat()


def params_at(identity: Identity, year: int, drift_scale: float) -> np.ndarray:
    """The identity's parameters in ``year``: undo ageing back to then, plus random drift.

    ``drift_scale`` (the difficulty) scales the identity's own drift per decade, which
    stands for weight change, a new haircut and everything else that moves between
    the passport photo and the gate.
    """
    years = CAPTURE_YEAR - year
    if years <= 0:
        return identity.params
    # Re-derive the younger face from the un-aged base by ageing it to the younger age.
    base = identity.params.copy()
    older = age_params(base, identity.age)
    younger = age_params(base, identity.age - years)
    out = identity.params - (older - younger)
    out = out - identity.drift * _SD * 0.35 * drift_scale * (years / 10.0)
    return np.minimum(np.maximum(out, LO), HI)  # np.clip, without its errstate overhead
