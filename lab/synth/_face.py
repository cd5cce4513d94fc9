"""What is drawn: body, hair, ears, face contour, relief, marks, eyes, nose, mouth,
beard and accessories, as flat albedo colours and an occlusion map on a ``Canvas``.

Every feature is a 3-D point on or near the head ellipsoid, projected by the canvas's
pose; so the landmarks returned by ``draw_face`` are exact ground truth for alignment.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from facelab.synth._canvas import (
    NEUTRAL,
    ONE,
    SHIFT,
    Canvas,
    Scene,
    fill,
    hair_colour,
    iris_rgb,
    skin_rgb,
    times,
)
from facelab.synth._identity import P

_OUTLINE_T = np.linspace(0.0, 2 * np.pi, 44, endpoint=False)
_OUTLINE_SIN, _OUTLINE_COS = np.sin(_OUTLINE_T), np.cos(_OUTLINE_T)
_BACK_T = np.linspace(np.pi, 2 * np.pi, 16)
_BACK_COS, _BACK_SIN = np.cos(_BACK_T), np.sin(_BACK_T)
_TOP_T = np.linspace(np.pi + 0.15, 2 * np.pi - 0.15, 18)
_TOP_COS, _TOP_SIN = np.cos(_TOP_T), np.sin(_TOP_T)
_HAIRLINE_X = np.linspace(0.86, -0.86, 11)
_HAIRLINE_BEND = 1 - (_HAIRLINE_X / 0.9) ** 2
_HAIRLINE_SIDES = 0.06 * (_HAIRLINE_X / 0.9) ** 2
_BROW_T = np.linspace(-1.0, 1.0, 6)
_BROW_T_SQ = _BROW_T**2
_RIDGE_T = np.linspace(0.0, 1.0, 5)
_MOUTH_T = np.linspace(-1.0, 1.0, 9)
_MOUTH_T_SQ = _MOUTH_T**2


def draw_face(c: Canvas, scene: Scene, texture_seed: int) -> list[tuple[float, float]]:
    """Draw the person on ``c`` (albedo and occlusion) in back-to-front order.

    Returns the five landmarks in canvas pixels: left eye, right eye, nose tip, left and
    right mouth corner.
    """
    p = c.p
    skin = skin_rgb(p[P["skin_lightness"]], p[P["skin_warmth"]])
    hair = hair_colour(p)
    _draw_body(c, skin, scene)
    _draw_back_hair(c, hair)
    _draw_ears(c, skin)
    outline = _face_outline(c)
    face = c.fixed(outline)
    c.poly(c.albedo, face, skin)
    c.poly(c.occ, face, NEUTRAL)
    # chin shadow on the neck
    c.feature(c.occ, 0.0, c.B * p[P["chin_length"]] + 0.12, (0.45, 0.12), NEUTRAL - 60, 0, -0.4)
    _draw_relief(c)
    _draw_marks(c, skin, texture_seed + 1)
    eyes = _draw_eyes(c, skin, hair, scene)
    nose = _draw_nose(c, skin, scene)
    mouth = _draw_mouth(c, skin, scene)
    _draw_beard(c, hair, outline)
    _draw_top_hair(c, hair)
    if scene.mask:
        _draw_mask(c, outline, scene.noise_seed)
    return [eyes[0], eyes[1], nose, mouth[0], mouth[1]]


def _face_outline(c: Canvas) -> np.ndarray:
    """The face contour in the head frame, shape (n, 3)."""
    p = c.p
    return _outline(
        c.B,
        c.C,
        p[P["jaw_width"]],
        p[P["chin_shape"]],
        p[P["forehead_width"]],
        p[P["cheek_fullness"]],
        p[P["chin_length"]],
        p[P["asymmetry"]],
    )


_LOWER = _OUTLINE_SIN > 0
_ABS_SIN = np.abs(_OUTLINE_SIN)
_SIN2T_SQ = np.sin(2 * _OUTLINE_T) ** 2
_Z_SHAPE = np.where(_LOWER, 0.62 * _OUTLINE_SIN**3, 0.25 * _OUTLINE_SIN**2)


@functools.lru_cache(maxsize=64)
def _outline(
    b: float,
    c: float,
    jaw: float,
    chin_shape: float,
    forehead: float,
    cheeks: float,
    chin_length: float,
    asymmetry: float,
) -> np.ndarray:
    """``_face_outline`` by value: a person's gate captures share one contour."""
    s, x = _OUTLINE_SIN, _OUTLINE_COS
    narrowing = (1.0 - jaw) * _ABS_SIN**chin_shape
    x = x * np.where(_LOWER, 1.0 - 0.8 * narrowing, forehead)
    x *= 1.0 + 0.08 * (cheeks - 0.5) * _SIN2T_SQ
    y = s * np.where(_LOWER, b * chin_length, b)
    x += asymmetry * np.maximum(y, 0)
    out = np.array((x, y, c * _Z_SHAPE)).T.copy()
    out.setflags(write=False)
    return out


def _draw_body(c: Canvas, skin: list[float], scene: Scene) -> None:
    s, a, cx, cy = c.size, c.a_px, c.cx, c.cy
    neck_top = cy + 0.6 * a
    shoulder_y = cy + 1.75 * a
    pts = np.array(
        [
            # neck
            [cx - 0.52 * a, neck_top],
            [cx + 0.52 * a, neck_top],
            [cx + 0.6 * a, s + 2],
            [cx - 0.6 * a, s + 2],
            # shoulders and chest
            [cx - 2.6 * a, s + 2],
            [cx - 2.3 * a, shoulder_y + 0.45 * a],
            [cx - 1.2 * a, shoulder_y],
            [cx - 0.5 * a, shoulder_y - 0.1 * a],
            [cx, shoulder_y + 0.45 * a],
            [cx + 0.5 * a, shoulder_y - 0.1 * a],
            [cx + 1.2 * a, shoulder_y],
            [cx + 2.3 * a, shoulder_y + 0.45 * a],
            [cx + 2.6 * a, s + 2],
        ]
    )
    fx = (pts * ONE + 0.5).astype(np.int32)
    neck, body = fx[:4], fx[4:]
    c.poly(c.albedo, neck, times(skin, 0.93))
    c.poly(c.occ, neck, NEUTRAL - 25)
    c.poly(c.albedo, body, scene.clothing)
    c.poly(c.occ, body, NEUTRAL)


def _draw_back_hair(c: Canvas, hair: list[float]) -> None:
    p = c.p
    length, vol = p[P["hair_length"]], p[P["hair_volume"]]
    if length < 0.55:
        return
    bottom = 0.2 + 2.2 * (length - 0.55)
    w = 1.1 + vol
    pts = np.empty((20, 3))
    pts[:16, 0] = w * _BACK_COS
    pts[:16, 1] = (c.B + vol) * _BACK_SIN
    pts[16:, :2] = [
        [w + 0.05, bottom],
        [0.6, bottom + 0.15],
        [-0.6, bottom + 0.15],
        [-w - 0.05, bottom],
    ]
    pts[:, 2] = -0.3
    fx = c.fixed(pts)
    c.poly(c.albedo, fx, hair)
    c.poly(c.occ, fx, NEUTRAL - 30)


def _draw_ears(c: Canvas, skin: list[float]) -> None:
    p = c.p
    size, y = p[P["ear_size"]], p[P["ear_height"]]
    colour = times(skin, 0.9)
    r00, r01, r02, r10, r11, r12 = c.r
    for side in (-1.0, 1.0):
        x = side * 0.97
        ctr = (c.cx + r00 * x + r01 * y - r02 * 0.05, c.cy + r10 * x + r11 * y - r12 * 0.05)
        c.ellipse(c.albedo, ctr, (0.15 * size, 0.29 * size), side * 8, colour)
        c.ellipse(c.occ, ctr, (0.15 * size, 0.29 * size), side * 8, NEUTRAL - 15)
        c.ellipse(c.occ, ctr, (0.07 * size, 0.17 * size), side * 8, NEUTRAL - 55)


def _draw_top_hair(c: Canvas, hair: list[float]) -> None:
    p = c.p
    length, vol = p[P["hair_length"]], p[P["hair_volume"]]
    if length < 0.04:
        return
    hl = p[P["hairline"]] - 0.12 * max(0.0, 0.25 - length)  # receding when short
    side_y = -0.15 + 0.5 * min(length, 0.6)
    fringe = p[P["fringe"]] * 0.55
    w = 1.03 + vol
    # outer arc (20 points) then the hairline back across the forehead (15 points)
    pts = np.empty((35, 3))
    pts[0] = (-w, side_y, 0.0)
    pts[1:19, 0] = w * _TOP_COS
    pts[1:19, 1] = (c.B * 0.98 + vol) * _TOP_SIN
    pts[1:19, 2] = 0.0
    pts[19] = (w, side_y, 0.0)
    pts[20] = (0.99, side_y, 0.0)
    pts[21] = (0.93, hl + 0.14, 0.2)
    xs = _HAIRLINE_X
    ys = hl + fringe * _HAIRLINE_BEND + _HAIRLINE_SIDES
    pts[22:33, 0] = xs
    pts[22:33, 1] = ys
    pts[22:33, 2] = c.surface_z(xs, ys) + 0.02
    pts[33] = (-0.93, hl + 0.14, 0.2)
    pts[34] = (-0.99, side_y, 0.0)
    fx = c.fixed(pts)
    c.poly(c.albedo, fx, hair)
    c.poly(c.occ, fx, NEUTRAL - 10)


def _draw_eyes(
    c: Canvas, skin: list[float], hair: list[float], scene: Scene
) -> list[tuple[float, float]]:
    p = c.p
    ey = p[P["eye_height"]]
    w = 0.125 * p[P["eye_size"]]
    h = w * p[P["eye_openness"]]
    iris = iris_rgb(p[P["iris_darkness"]])
    brow = [v * 0.55 + t for v, t in zip(hair, (10.0, 8.0, 6.0), strict=True)]
    bt = max(1, round(0.075 * c.a_px * p[P["brow_thickness"]] / 1.6))
    lid = times(skin, 0.3)
    lid_t = max(1, round(c.a_px / 28))
    gaze = 0.25 * w * math.sin(c.yaw)
    gap, arch = p[P["brow_gap"]], p[P["brow_arch"]]
    sock, under = p[P["socket_depth"]], p[P["under_eye"]]
    ridge = p[P["brow_ridge"]]
    centres = []
    for side in (-1.0, 1.0):
        ex = side * (p[P["eye_spacing"]] + side * p[P["asymmetry"]] * 0.3)
        tilt = -side * p[P["eye_tilt"]]
        # socket shadow: the dark band Haar-like detectors key on
        c.feature(c.occ, ex, ey - 0.03, (w * 1.75, w * 1.15), NEUTRAL - 70 * sock, tilt)
        c.feature(c.occ, ex * 1.05, ey + 0.13, (w * 1.2, w * 0.35), NEUTRAL - 25 * under, tilt)
        c.feature(c.albedo, ex, ey, (w, h), (222, 214, 208), tilt)
        c.feature(c.albedo, ex + gaze, ey + 0.05 * h, (h * 0.92, h * 0.92), iris, 0, 0.01)
        c.feature(c.albedo, ex + gaze, ey + 0.05 * h, (h * 0.42, h * 0.42), (12, 10, 10), 0, 0.012)
        c.feature(c.albedo, ex, ey, (w * 1.05, h * 1.15), lid, tilt, 0.01, lid_t, (180, 360))
        centres.append(c.on_face(ex, ey))
        if ridge > 0.05:  # the brow ridge catches the light above the brow
            c.feature(c.occ, ex, ey - gap - 0.1, (w * 1.6, 0.07), NEUTRAL + 25 * ridge, tilt)
        # brow: a thick arched stroke above the eye
        t = _BROW_T
        bx = ex + (side * w * 1.35) * t
        by = (ey - gap - arch) + arch * _BROW_T_SQ + (side * 0.02) * t
        stroke = c.on_surface(bx, by, 0.03)
        c.line(c.albedo, stroke, brow, bt)
        c.line(c.occ, stroke, NEUTRAL - 30, bt)
    if scene.glasses:
        frame = (30, 28, 30)
        th = max(1, round(c.a_px / 22))
        for cx in centres:
            c.ellipse(c.albedo, cx, (w * 2.0 * math.cos(c.yaw) ** 0.5, w * 1.5), 0, frame, th)
        bridge = np.array(centres) + np.array([[0.17, 0.0], [-0.17, 0.0]]) * c.a_px * w * 12
        c.line(c.albedo, (bridge * ONE + 0.5).astype(np.int32), frame, th)
    return centres


def _draw_nose(c: Canvas, skin: list[float], scene: Scene) -> tuple[float, float]:
    p = c.p
    ey = p[P["eye_height"]]
    ty = ey + p[P["nose_length"]]
    nw = p[P["nose_width"]]
    pro = p[P["nose_protrusion"]]
    # ridge highlight and side shadows; the side away from the light is darker
    lx = math.cos(scene.light_azimuth) * math.sin(scene.light_elevation)
    ridge = np.empty((3, 5))  # rows x, y, z: the ridge, then its sides
    ridge[0] = 0.0
    ridge[1] = ey + 0.05 + _RIDGE_T * (ty - ey - 0.08)
    ridge[2] = c.C * np.sqrt(np.maximum(1.0 - ridge[1] * ridge[1] * c.by2, 0.04))
    ridge[2] += pro * (0.2 + 0.7 * _RIDGE_T)
    bridge = p[P["nose_bridge"]]
    c.line(c.occ, c.fixed(ridge.T), NEUTRAL + 40 * bridge, max(1, round(c.a_px * 0.09)))
    ridge[2] -= 0.08
    spread = 0.09 + (nw * 0.9 - 0.09) * _RIDGE_T
    side_t = max(1, round(c.a_px * 0.07))
    nostril = times(skin, 0.35)
    for side in (-1.0, 1.0):
        dark = (35 + 35 * max(0.0, -side * lx)) * bridge
        ridge[0] = side * spread
        c.line(c.occ, c.fixed(ridge.T), NEUTRAL - dark, side_t)
        c.feature(
            c.albedo, side * nw * 0.5, ty + 0.05, (0.05, 0.028), nostril, side * 20, pro * 0.5
        )
        c.feature(c.occ, side * nw * 0.85, ty, (0.06, 0.08), NEUTRAL - 35, 0, pro * 0.4)
    c.feature(c.occ, 0.0, ty + 0.11, (nw * 0.9, 0.06), NEUTRAL - 55, 0, pro * 0.3)
    c.feature(c.occ, 0.0, ty - 0.02, (nw * 0.45, 0.06), NEUTRAL + 35, 0, pro)
    return c.on_face(0.0, ty, pro)


def _draw_mouth(c: Canvas, skin: list[float], scene: Scene) -> list[tuple[float, float]]:
    p = c.p
    my = p[P["mouth_height"]]
    mw = p[P["mouth_width"]] * (1 + 0.12 * scene.expression)
    lt = p[P["lip_thickness"]]
    redness = p[P["lip_redness"]]
    k = 0.78 * (1 - redness * 0.5)
    lip = [v * k + r * redness * 0.35 for v, r in zip(skin, (190.0, 60.0, 70.0), strict=True)]
    c.feature(c.albedo, 0.0, my - 0.03 * lt, (mw * 0.92, 0.045 * lt), lip, 0, 0.02)
    c.feature(c.albedo, 0.0, my + 0.04 * lt, (mw * 0.82, 0.06 * lt), times(lip, 1.06), 0, 0.02)
    c.feature(c.occ, 0.0, my + 0.16 * lt, (mw * 0.7, 0.06), NEUTRAL - 40)
    smile = 0.05 * scene.expression
    xs = mw * _MOUTH_T
    ys = (my + smile * 0.5) - smile * _MOUTH_T_SQ
    line = c.on_surface(xs, ys, 0.03)
    if scene.expression > 0.55:
        c.feature(
            c.albedo, 0.0, my + 0.01, (mw * 0.75, 0.05 * scene.expression), (40, 20, 22), 0, 0.03
        )
    c.line(c.albedo, line, times(skin, 0.3), max(1, round(c.a_px / 30)))
    corner_y = my - smile + smile * 0.5
    return [c.on_face(-mw, corner_y, 0.03), c.on_face(mw, corner_y, 0.03)]


def _draw_relief(c: Canvas) -> None:
    """Cheekbones, chin, forehead highlights; cheek hollows; wrinkles with age."""
    p = c.p
    full = p[P["cheek_fullness"]]
    cb, cby = p[P["cheekbone"]], p[P["eye_height"]] + p[P["cheekbone_height"]]
    for side in (-1.0, 1.0):
        c.feature(c.occ, side * 0.55, cby, (0.22, 0.14), NEUTRAL + 25 * cb)
        c.feature(c.occ, side * 0.62, 0.72, (0.16, 0.25), NEUTRAL - 45 * (1 - full), side * 15)
    c.feature(c.occ, 0.0, 1.08 * c.B * p[P["chin_length"]] - 0.25, (0.18, 0.1), NEUTRAL + 25)
    c.feature(c.occ, 0.0, -0.55, (0.45, 0.18), NEUTRAL + 20)
    nl = p[P["nasolabial"]]
    if nl > 0.05:  # nasolabial folds: a soft dark line from the nose wing to the mouth
        my, nw = p[P["mouth_height"]], p[P["nose_width"]]
        ty = p[P["eye_height"]] + p[P["nose_length"]]
        xs = np.array([nw * 0.9 + 0.06, nw * 0.9 + 0.13, p[P["mouth_width"]] + 0.08])
        ys = np.array([ty + 0.02, (ty + my) / 2, my + 0.06])
        th = max(1, round(c.a_px / 18))
        for side in (-1.0, 1.0):
            c.line(c.occ, c.on_surface(side * xs, ys), NEUTRAL - 40 * nl, th)
    wr = p[P["wrinkles"]]
    if wr > 0.15:
        v = int(NEUTRAL - 45 * wr)
        th = max(1, round(c.a_px / 35))
        for k in range(int(1 + 3 * wr)):
            y = -0.42 - 0.1 * k
            c.feature(c.occ, 0.0, y, (0.4, 0.05), v, 0, 0.0, th, (200, 340))
        my, nw = p[P["mouth_height"]], p[P["nose_width"]]
        ty = p[P["eye_height"]] + p[P["nose_length"]]
        xs = np.array([nw + 0.04, nw + 0.1, p[P["mouth_width"]] + 0.06])
        ys = np.array([ty, (ty + my) / 2, my + 0.05])
        for side in (-1.0, 1.0):
            c.line(c.occ, c.on_surface(side * xs, ys), v, th)


@functools.lru_cache(maxsize=256)
def _marks(seed: int) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...] | None]:
    """An identity's moles (x, y, radius, darkness) and birthmark (x, y, a, b, angle).

    Drawn once per identity from its own seed: every capture shows the same marks.
    """
    rng = np.random.default_rng(seed)
    moles = []
    for _ in range(int(rng.poisson(2.2))):
        x, y = rng.uniform(-0.75, 0.75), rng.uniform(-0.5, 1.1)
        r = rng.uniform(0.015, 0.04)
        moles.append((float(x), float(y), float(r), float(rng.uniform(0.45, 0.7))))
    birthmark = None
    if rng.random() < 0.12:
        x, y = rng.uniform(-0.6, 0.6), rng.uniform(-0.4, 0.9)
        a, b = rng.uniform(0.08, 0.2), rng.uniform(0.06, 0.15)
        birthmark = (float(x), float(y), float(a), float(b), float(rng.uniform(0, 180)))
    return tuple(moles), birthmark


def _draw_marks(c: Canvas, skin: list[float], seed: int) -> None:
    """Moles and birthmarks: identity-specific positions on the face surface."""
    moles, birthmark = _marks(seed)
    for x, y, r, dark in moles:
        c.feature(c.albedo, x, y, (r, r), times(skin, dark))
    if birthmark is not None:
        x, y, a, b, angle = birthmark
        c.feature(c.occ, x, y, (a, b), NEUTRAL - 30, angle)


def _draw_beard(c: Canvas, hair: list[float], outline: np.ndarray) -> None:
    p = c.p
    b = p[P["beard"]]
    if b < 0.12:
        return
    my, mw = p[P["mouth_height"]], p[P["mouth_width"]]
    ty = p[P["eye_height"]] + p[P["nose_length"]]
    low = outline[outline[:, 1] > ty + 0.05]
    low = low[np.argsort(np.arctan2(low[:, 1], low[:, 0]))][::-1]
    mst = np.array([[0.8, ty + 0.12, 0.6], [-0.8, ty + 0.12, 0.6]])
    region = np.concatenate([low, mst])
    region[:, 2] = np.maximum(region[:, 2], c.surface_z(region[:, 0], region[:, 1]) * 0.9)
    fx = c.fixed(region)
    k = max(3, (c.size // 40) | 1)
    # work on the bounding box only: the blend is the costliest step of a bearded face
    lo, hi = fx.min(0) >> SHIFT, (fx.max(0) + ONE - 1) >> SHIFT
    x0, y0 = max(int(lo[0]) - k, 0), max(int(lo[1]) - k, 0)
    x1, y1 = min(int(hi[0]) + k, c.size), min(int(hi[1]) + k, c.size)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros(c.occ.shape, np.uint8)
    c.poly(mask, fx, int(255 * min(1.0, b)))
    c.feature(mask, 0.0, my + 0.03, (mw * 0.95, 0.08), 0)
    roi = mask[y0:y1, x0:x1]
    m = cv2.GaussianBlur(roi, (k, k), 0)
    beard = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    fill(beard, [int(v * 0.6) for v in hair])
    w = m.astype(np.float32) * np.float32(0.85 / 255)
    c.albedo[y0:y1, x0:x1] = cv2.blendLinear(beard, c.albedo[y0:y1, x0:x1], w, 1.0 - w)


def _draw_mask(c: Canvas, outline: np.ndarray, seed: int) -> None:
    p = c.p
    top = p[P["eye_height"]] + p[P["nose_length"]] * 0.55
    low = outline[outline[:, 1] > top]
    low = low[np.argsort(np.arctan2(low[:, 1], low[:, 0]))][::-1]
    edge = np.array([[-0.98, top, 0.2], [0.0, top - 0.05, 0.9], [0.98, top, 0.2]])
    fx = c.fixed(np.concatenate([low, edge]))
    colour = [(200, 215, 235), (235, 235, 235), (35, 35, 40)][seed % 3]
    c.poly(c.albedo, fx, colour)
    c.poly(c.occ, fx, NEUTRAL)
