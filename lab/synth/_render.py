"""Render a face from its parameters and a capture scene (pure: arrays in, arrays out).

The model is 2.5-D. The head is an ellipsoid with half-axes (A, B*A, C*A) in a head frame
(x right, y down, z towards the camera, unit A = the face half-width). Every feature
(eyes, brows, nose, mouth, ears, hairline, moles) is a 3-D point on or near that surface;
a pose (yaw, pitch, roll) rotates the points and an orthographic camera projects them.
The flat colours (albedo) are drawn with OpenCV's anti-aliased primitives, then three
single-channel maps multiply them: Lambertian shading of the ellipsoid under the scene's
light, an occlusion/relief map (eye sockets, nose sides, cheekbones, creases) and the
identity's own skin texture (blotches, freckles). The camera then adds defocus or motion
blur, sensor noise and JPEG compression.

The five landmarks (eye centres, nose tip, mouth corners) come from the same projected
points, so they are exact ground truth for alignment.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from lab.synth._identity import P

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
_NEUTRAL = 200.0  # occlusion-map value that leaves the albedo unchanged


@dataclass(frozen=True)
class Scene:
    """Everything about one capture that is not the person."""

    yaw: float = 0.0  # degrees, + turns the face to the image's right
    pitch: float = 0.0  # degrees, + looks up
    roll: float = 0.0  # degrees, + clockwise in the image
    dx: float = 0.0  # head offset, fraction of the image size
    dy: float = 0.0
    scale: float = 1.0
    light_azimuth: float = 0.0  # radians in the image plane, 0 = from the right
    light_elevation: float = 0.0  # radians from the camera axis, 0 = frontal
    ambient: float = 0.72
    diffuse: float = 0.35
    gain: float = 1.0
    background: tuple[int, int, int] = (225, 226, 228)
    background2: tuple[int, int, int] | None = None  # a second colour: a cluttered scene
    clutter_seed: int = 0
    clothing: tuple[int, int, int] = (60, 62, 70)
    expression: float = 0.0  # 0 neutral, 1 broad smile, mouth open
    glasses: bool = False
    mask: bool = False
    blur_sigma: float = 0.0  # Gaussian defocus, in output pixels
    motion_length: float = 0.0  # motion blur, in output pixels
    motion_angle: float = 0.0  # degrees
    noise_sigma: float = 0.0  # sensor noise, in grey levels
    jpeg_quality: int = 0  # 0: no JPEG round trip
    noise_seed: int = 0


def _rot(yaw: float, pitch: float, roll: float) -> list[list[float]]:
    """Rz(roll) @ Rx(pitch) @ Ry(yaw), in closed form (plain floats: 3x3 NumPy products
    cost more than the arithmetic)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = (
        math.cos(y),
        math.sin(y),
        math.cos(p),
        math.sin(p),
        math.cos(r),
        math.sin(r),
    )
    # Rx @ Ry
    m = [[cy, 0.0, sy], [sp * sy, cp, -sp * cy], [-cp * sy, sp, cp * cy]]
    return [
        [cr * m[0][j] - sr * m[1][j] for j in range(3)],
        [sr * m[0][j] + cr * m[1][j] for j in range(3)],
        m[2],
    ]


def _clip255(c: list[float]) -> list[float]:
    return [0.0 if v < 0.0 else 255.0 if v > 255.0 else v for v in c]


def skin_rgb(lightness: float, warmth: float) -> list[float]:
    """Skin albedo (RGB floats) from a lightness in [0, 1] and a warmth (red-yellow
    undertone). Plain floats throughout: NumPy on three values costs microseconds."""
    w = warmth - 0.5
    return _clip255(
        [
            58.0 + 188.0 * lightness**0.85 + 34.0 * w,
            36.0 + 176.0 * lightness + 6.0 * w,
            26.0 + 164.0 * lightness**1.1 - 40.0 * w,
        ]
    )


def hair_rgb(lightness: float, warmth: float) -> list[float]:
    k = (warmth - 0.4) * (0.3 + lightness)
    return _clip255(
        [
            22.0 + 210.0 * lightness + 70.0 * k,
            18.0 + 190.0 * lightness + 10.0 * k,
            16.0 + 144.0 * lightness - 45.0 * k,
        ]
    )


def _iris_rgb(darkness: float) -> list[float]:
    return [95.0 - 43.0 * darkness, 140.0 - 106.0 * darkness, 175.0 - 153.0 * darkness]


def _fill(dst: np.ndarray, colour) -> None:
    """``dst[:] = colour`` for an (h, w, 3) uint8 image, ten times faster: NumPy
    broadcasts a 3-vector pixel by pixel, a tiled row copies as whole rows."""
    h, w = dst.shape[:2]
    dst.reshape(h, -1)[:] = np.tile(np.asarray(colour, np.uint8), w)


def _times(colour: list[float], k: float) -> list[float]:
    """A colour scaled by k (plain floats: three values do not need NumPy)."""
    return [v * k for v in colour]


class _Canvas:
    """Albedo (RGB uint8), occlusion (uint8, neutral 200) and the projection of one image."""

    def __init__(self, size: int, p: np.ndarray, scene: Scene):
        self.size = size
        # Python floats: scalar arithmetic on NumPy scalars costs several times more
        self.p: list[float] = p.tolist()
        self.albedo = np.empty((size, size, 3), np.uint8)
        self.occ = np.zeros((size, size), np.uint8)
        self.a_px = float(0.235 * size * p[P["face_width"]] * scene.scale)
        self.cx = size * (0.5 + scene.dx)
        self.cy = size * (0.47 + scene.dy)
        rot = _rot(scene.yaw, scene.pitch, scene.roll)
        # the two projecting rows of R, pre-scaled, as Python floats for single points
        a = self.a_px
        self._r = tuple(v * a for v in (*rot[0], *rot[1]))
        self._proj = np.array(self._r).reshape(2, 3).T  # (3, 2): head frame -> pixels
        self._origin = np.array([self.cx, self.cy])
        # the same in OpenCV's fixed point, rounding included: one product per polygon
        self._proj_fx = self._proj * _ONE
        self._origin_fx = self._origin * _ONE + 0.5
        self.B = float(p[P["face_length"]])
        self._by2 = 1.0 / (self.B * 1.05) ** 2
        self.C = 0.95
        self.yaw = math.radians(scene.yaw)
        self.pitch = math.radians(scene.pitch)
        self.roll = scene.roll
        self._iby = 1.0 / (self.B * 1.05)
        self._cy, self._sy = math.cos(self.yaw), math.sin(self.yaw)
        self._cp, self._sp = math.cos(self.pitch), math.sin(self.pitch)
        self._k = self.a_px * _ONE

    def surface_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = 1.0 - x * x - y * y * self._by2
        return self.C * np.sqrt(np.maximum(r, 0.04))

    def project(self, pts: np.ndarray) -> np.ndarray:
        """Head-frame points of shape (n, 3) to image pixels of shape (n, 2)."""
        return pts @ self._proj + self._origin

    def fixed(self, pts: np.ndarray) -> np.ndarray:
        """Head-frame points of shape (n, 3) to pixels in OpenCV's fixed point (int32)."""
        return (pts @ self._proj_fx + self._origin_fx).astype(np.int32)

    def on_surface(self, x: np.ndarray, y: np.ndarray, dz: float = 0.0) -> np.ndarray:
        """Fixed-point pixels of the surface points above (x, y), raised by dz."""
        z = self.surface_z(x, y)
        if dz:
            z += dz
        return (np.array((x, y, z)).T @ self._proj_fx + self._origin_fx).astype(np.int32)

    def on_face(self, x: float, y: float, dz: float = 0.0) -> tuple[float, float]:
        """Image position of the surface point above (x, y), raised by dz (scalar fast path)."""
        z = self.C * math.sqrt(max(1.0 - x * x - y * y * self._by2, 0.04)) + dz
        r00, r01, r02, r10, r11, r12 = self._r
        return (self.cx + r00 * x + r01 * y + r02 * z, self.cy + r10 * x + r11 * y + r12 * z)

    def foreshorten(self, x: float, y: float) -> tuple[float, float]:
        """Apparent width and height factors of a small patch at (x, y) on the surface.

        A patch whose normal leans by angle a (sin a = x) turned by the yaw appears
        cos(a + yaw) / cos(a) as wide: cos(yaw) - x sin(yaw) / cos(a), floored at 0.25.
        """
        x = -0.95 if x < -0.95 else 0.95 if x > 0.95 else x
        yb = y * self._iby
        yb = -0.95 if yb < -0.95 else 0.95 if yb > 0.95 else yb
        ca = math.sqrt(1.0 - x * x)
        cb = math.sqrt(1.0 - yb * yb)
        fx = max(0.25, ca * self._cy - x * self._sy) / ca
        fy = max(0.25, cb * self._cp + yb * self._sp) / cb
        return fx, fy

    def ellipse(
        self,
        img: np.ndarray,
        center,
        axes: tuple[float, float],
        angle: float,
        color,
        thickness: int = -1,
        arc: tuple[int, int] = (0, 360),
    ):
        k = self._k
        a0, a1 = int(axes[0] * k + 0.5), int(axes[1] * k + 0.5)
        cv2.ellipse(
            img,
            (int(center[0] * _ONE + 0.5), int(center[1] * _ONE + 0.5)),
            (a0 if a0 > 1 else 1, a1 if a1 > 1 else 1),
            angle + self.roll,
            arc[0],
            arc[1],
            color,
            thickness,
            _AA,
            _SHIFT,
        )

    def feature(
        self,
        img: np.ndarray,
        x: float,
        y: float,
        axes: tuple[float, float],
        color,
        angle: float = 0.0,
        dz: float = 0.0,
        thickness: int = -1,
        arc: tuple[int, int] = (0, 360),
    ):
        """An ellipse on the face surface at (x, y), foreshortened by the pose (hot path).

        ``foreshorten`` inlined: this runs some 40 times an image.
        """
        xc = -0.95 if x < -0.95 else 0.95 if x > 0.95 else x
        yb = y * self._iby
        yb = -0.95 if yb < -0.95 else 0.95 if yb > 0.95 else yb
        ca = math.sqrt(1.0 - xc * xc)
        cb = math.sqrt(1.0 - yb * yb)
        fx = ca * self._cy - xc * self._sy
        fy = cb * self._cp + yb * self._sp
        k = self._k
        a0 = int(axes[0] * ((fx if fx > 0.25 else 0.25) / ca) * k + 0.5)
        a1 = int(axes[1] * ((fy if fy > 0.25 else 0.25) / cb) * k + 0.5)
        r = 1.0 - x * x - y * y * self._by2
        z = self.C * math.sqrt(r if r > 0.04 else 0.04) + dz
        r00, r01, r02, r10, r11, r12 = self._r
        cv2.ellipse(
            img,
            (
                int((self.cx + r00 * x + r01 * y + r02 * z) * _ONE + 0.5),
                int((self.cy + r10 * x + r11 * y + r12 * z) * _ONE + 0.5),
            ),
            (a0 if a0 > 1 else 1, a1 if a1 > 1 else 1),
            angle + self.roll,
            arc[0],
            arc[1],
            color,
            thickness,
            _AA,
            _SHIFT,
        )

    @staticmethod
    def poly(img: np.ndarray, fixed: np.ndarray, color) -> None:
        """Fill the polygon of fixed-point vertices ``fixed`` (see ``fixed``)."""
        cv2.fillPoly(img, [fixed], color, _AA, _SHIFT)

    @staticmethod
    def line(img: np.ndarray, fixed: np.ndarray, color, thickness: int) -> None:
        cv2.polylines(img, [fixed], False, color, thickness, _AA, _SHIFT)


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
_RAMP = np.linspace(0.0, 1.0, 24, dtype=np.float32)


def _face_outline(c: _Canvas) -> np.ndarray:
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


def _hair_colour(p: list[float]) -> list[float]:
    return hair_rgb(p[P["hair_lightness"]], p[P["hair_warmth"]])


def _draw_body(c: _Canvas, skin: list[float], scene: Scene) -> None:
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
    fx = (pts * _ONE + 0.5).astype(np.int32)
    neck, body = fx[:4], fx[4:]
    c.poly(c.albedo, neck, _times(skin, 0.93))
    c.poly(c.occ, neck, _NEUTRAL - 25)
    c.poly(c.albedo, body, scene.clothing)
    c.poly(c.occ, body, _NEUTRAL)


def _draw_back_hair(c: _Canvas, hair: list[float]) -> None:
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
    c.poly(c.occ, fx, _NEUTRAL - 30)


def _draw_ears(c: _Canvas, skin: list[float]) -> None:
    p = c.p
    size, y = p[P["ear_size"]], p[P["ear_height"]]
    colour = _times(skin, 0.9)
    r00, r01, r02, r10, r11, r12 = c._r
    for side in (-1.0, 1.0):
        x = side * 0.97
        ctr = (c.cx + r00 * x + r01 * y - r02 * 0.05, c.cy + r10 * x + r11 * y - r12 * 0.05)
        c.ellipse(c.albedo, ctr, (0.15 * size, 0.29 * size), side * 8, colour)
        c.ellipse(c.occ, ctr, (0.15 * size, 0.29 * size), side * 8, _NEUTRAL - 15)
        c.ellipse(c.occ, ctr, (0.07 * size, 0.17 * size), side * 8, _NEUTRAL - 55)


def _draw_top_hair(c: _Canvas, hair: list[float]) -> None:
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
    c.poly(c.occ, fx, _NEUTRAL - 10)


def _draw_eyes(
    c: _Canvas, skin: list[float], hair: list[float], scene: Scene
) -> list[tuple[float, float]]:
    p = c.p
    ey = p[P["eye_height"]]
    w = 0.125 * p[P["eye_size"]]
    h = w * p[P["eye_openness"]]
    iris = _iris_rgb(p[P["iris_darkness"]])
    brow = [v * 0.55 + t for v, t in zip(hair, (10.0, 8.0, 6.0), strict=True)]
    bt = max(1, round(0.075 * c.a_px * p[P["brow_thickness"]] / 1.6))
    lid = _times(skin, 0.3)
    lid_t = max(1, round(c.a_px / 28))
    gaze = 0.25 * w * math.sin(c.yaw)
    gap, arch = p[P["brow_gap"]], p[P["brow_arch"]]
    centres = []
    for side in (-1.0, 1.0):
        ex = side * (p[P["eye_spacing"]] + side * p[P["asymmetry"]] * 0.3)
        tilt = -side * p[P["eye_tilt"]]
        # socket shadow: the dark band Haar-like detectors key on
        c.feature(c.occ, ex, ey - 0.03, (w * 1.75, w * 1.15), _NEUTRAL - 70, tilt)
        c.feature(c.occ, ex * 1.05, ey + 0.13, (w * 1.2, w * 0.35), _NEUTRAL - 25, tilt)
        c.feature(c.albedo, ex, ey, (w, h), (222, 214, 208), tilt)
        c.feature(c.albedo, ex + gaze, ey + 0.05 * h, (h * 0.92, h * 0.92), iris, 0, 0.01)
        c.feature(c.albedo, ex + gaze, ey + 0.05 * h, (h * 0.42, h * 0.42), (12, 10, 10), 0, 0.012)
        c.feature(c.albedo, ex, ey, (w * 1.05, h * 1.15), lid, tilt, 0.01, lid_t, (180, 360))
        centres.append(c.on_face(ex, ey))
        # brow: a thick arched stroke above the eye
        t = _BROW_T
        bx = ex + (side * w * 1.35) * t
        by = (ey - gap - arch) + arch * _BROW_T_SQ + (side * 0.02) * t
        stroke = c.on_surface(bx, by, 0.03)
        c.line(c.albedo, stroke, brow, bt)
        c.line(c.occ, stroke, _NEUTRAL - 30, bt)
    if scene.glasses:
        frame = (30, 28, 30)
        th = max(1, round(c.a_px / 22))
        for cx in centres:
            c.ellipse(c.albedo, cx, (w * 2.0 * math.cos(c.yaw) ** 0.5, w * 1.5), 0, frame, th)
        bridge = np.array(centres) + np.array([[0.17, 0.0], [-0.17, 0.0]]) * c.a_px * w * 12
        c.line(c.albedo, (bridge * _ONE + 0.5).astype(np.int32), frame, th)
    return centres


def _draw_nose(c: _Canvas, skin: list[float], scene: Scene) -> tuple[float, float]:
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
    ridge[2] = c.C * np.sqrt(np.maximum(1.0 - ridge[1] * ridge[1] * c._by2, 0.04))
    ridge[2] += pro * (0.2 + 0.7 * _RIDGE_T)
    c.line(c.occ, c.fixed(ridge.T), _NEUTRAL + 40, max(1, round(c.a_px * 0.09)))
    ridge[2] -= 0.08
    spread = 0.09 + (nw * 0.9 - 0.09) * _RIDGE_T
    side_t = max(1, round(c.a_px * 0.07))
    nostril = _times(skin, 0.35)
    for side in (-1.0, 1.0):
        dark = 35 + 35 * max(0.0, -side * lx)
        ridge[0] = side * spread
        c.line(c.occ, c.fixed(ridge.T), _NEUTRAL - dark, side_t)
        c.feature(
            c.albedo, side * nw * 0.5, ty + 0.05, (0.05, 0.028), nostril, side * 20, pro * 0.5
        )
        c.feature(c.occ, side * nw * 0.85, ty, (0.06, 0.08), _NEUTRAL - 35, 0, pro * 0.4)
    c.feature(c.occ, 0.0, ty + 0.11, (nw * 0.9, 0.06), _NEUTRAL - 55, 0, pro * 0.3)
    c.feature(c.occ, 0.0, ty - 0.02, (nw * 0.45, 0.06), _NEUTRAL + 35, 0, pro)
    return c.on_face(0.0, ty, pro)


def _draw_mouth(c: _Canvas, skin: list[float], scene: Scene) -> list[tuple[float, float]]:
    p = c.p
    my = p[P["mouth_height"]]
    mw = p[P["mouth_width"]] * (1 + 0.12 * scene.expression)
    lt = p[P["lip_thickness"]]
    redness = p[P["lip_redness"]]
    k = 0.78 * (1 - redness * 0.5)
    lip = [v * k + r * redness * 0.35 for v, r in zip(skin, (190.0, 60.0, 70.0), strict=True)]
    c.feature(c.albedo, 0.0, my - 0.03 * lt, (mw * 0.92, 0.045 * lt), lip, 0, 0.02)
    c.feature(c.albedo, 0.0, my + 0.04 * lt, (mw * 0.82, 0.06 * lt), _times(lip, 1.06), 0, 0.02)
    c.feature(c.occ, 0.0, my + 0.16 * lt, (mw * 0.7, 0.06), _NEUTRAL - 40)
    smile = 0.05 * scene.expression
    xs = mw * _MOUTH_T
    ys = (my + smile * 0.5) - smile * _MOUTH_T_SQ
    line = c.on_surface(xs, ys, 0.03)
    if scene.expression > 0.55:
        c.feature(
            c.albedo, 0.0, my + 0.01, (mw * 0.75, 0.05 * scene.expression), (40, 20, 22), 0, 0.03
        )
    c.line(c.albedo, line, _times(skin, 0.3), max(1, round(c.a_px / 30)))
    corner_y = my - smile + smile * 0.5
    return [c.on_face(-mw, corner_y, 0.03), c.on_face(mw, corner_y, 0.03)]


def _draw_relief(c: _Canvas) -> None:
    """Cheekbones, chin, forehead highlights; cheek hollows; wrinkles with age."""
    p = c.p
    full = p[P["cheek_fullness"]]
    for side in (-1.0, 1.0):
        c.feature(c.occ, side * 0.55, 0.32, (0.22, 0.14), _NEUTRAL + 25)
        c.feature(c.occ, side * 0.62, 0.72, (0.16, 0.25), _NEUTRAL - 45 * (1 - full), side * 15)
    c.feature(c.occ, 0.0, 1.08 * c.B * p[P["chin_length"]] - 0.25, (0.18, 0.1), _NEUTRAL + 25)
    c.feature(c.occ, 0.0, -0.55, (0.45, 0.18), _NEUTRAL + 20)
    wr = p[P["wrinkles"]]
    if wr > 0.15:
        v = int(_NEUTRAL - 45 * wr)
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


def _draw_marks(c: _Canvas, skin: list[float], seed: int) -> None:
    """Moles and birthmarks: identity-specific positions on the face surface."""
    moles, birthmark = _marks(seed)
    for x, y, r, dark in moles:
        c.feature(c.albedo, x, y, (r, r), _times(skin, dark))
    if birthmark is not None:
        x, y, a, b, angle = birthmark
        c.feature(c.occ, x, y, (a, b), _NEUTRAL - 30, angle)


def _draw_beard(c: _Canvas, hair: list[float], outline: np.ndarray) -> None:
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
    lo, hi = fx.min(0) >> _SHIFT, (fx.max(0) + _ONE - 1) >> _SHIFT
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
    _fill(beard, [int(v * 0.6) for v in hair])
    w = m.astype(np.float32) * np.float32(0.85 / 255)
    c.albedo[y0:y1, x0:x1] = cv2.blendLinear(beard, c.albedo[y0:y1, x0:x1], w, 1.0 - w)


def _draw_mask(c: _Canvas, outline: np.ndarray, seed: int) -> None:
    p = c.p
    top = p[P["eye_height"]] + p[P["nose_length"]] * 0.55
    low = outline[outline[:, 1] > top]
    low = low[np.argsort(np.arctan2(low[:, 1], low[:, 0]))][::-1]
    edge = np.array([[-0.98, top, 0.2], [0.0, top - 0.05, 0.9], [0.98, top, 0.2]])
    fx = c.fixed(np.concatenate([low, edge]))
    colour = [(200, 215, 235), (235, 235, 235), (35, 35, 40)][seed % 3]
    c.poly(c.albedo, fx, colour)
    c.poly(c.occ, fx, _NEUTRAL)


@functools.lru_cache(maxsize=256)
def _texture_field(seed: int, amplitude: float, freckles: float) -> np.ndarray:
    """The identity's skin texture on a 24x24 grid over the face: blotches and freckles."""
    rng = np.random.default_rng(seed)
    n = 24
    low = rng.normal(0.0, amplitude, (6, 6)).astype(np.float32)
    tex = np.exp(cv2.resize(low, (n, n), interpolation=cv2.INTER_CUBIC))
    fr = rng.random((n, n)) < freckles * 0.35
    tex *= np.where(fr, np.float32(0.8), np.float32(1.0))
    tex.setflags(write=False)
    return tex


def _texture(c: _Canvas, seed: int, out: int) -> tuple[np.ndarray, int, int] | None:
    """The identity's skin texture warped onto the image through the pose.

    Returns the warped patch and its top-left corner (x, y) in an (out, out) image: the
    bounding box of the texture square, outside which the texture is exactly 1 (the
    border value), so the warp and the multiply cover a third of the image. None when the
    square falls outside the image.
    """
    p = c.p
    n = 24
    tex = _texture_field(seed, round(p[P["skin_texture"]], 3), round(p[P["freckles"]], 3))
    # texture square [-1.1, 1.1] x [-1.1B, 1.1B] of the head frame -> image, via the pose
    k = out / c.size
    sx = 2.2 / n * k
    sy = 2.2 * c.B / n * k
    r00, r01, r02, r10, r11, r12 = c._r  # already scaled by a_px
    zc = 0.7 * c.C
    t = 0.5 * k - 0.5
    m00, m01, m10, m11 = r00 * sx, r01 * sy, r10 * sx, r11 * sy
    m02 = (c.cx - 1.1 * r00 - 1.1 * c.B * r01 + zc * r02) * k + t
    m12 = (c.cy - 1.1 * r10 - 1.1 * c.B * r11 + zc * r12) * k + t
    # texels -1 and n are the border (value 1) that bilinear sampling blends in
    xs = [m00 * i + m01 * j + m02 for i in (-1.0, n) for j in (-1.0, n)]
    ys = [m10 * i + m11 * j + m12 for i in (-1.0, n) for j in (-1.0, n)]
    x0, y0 = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
    x1, y1 = min(out, math.ceil(max(xs)) + 1), min(out, math.ceil(max(ys)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    m = np.array([[m00, m01, m02 - x0], [m10, m11, m12 - y0]])
    patch = cv2.warpAffine(
        tex,
        m,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=1.0,
    )
    return patch, x0, y0


def _background(dst: np.ndarray, scene: Scene) -> None:
    """Paint ``dst`` with a plain studio backdrop, or a defocused cluttered scene drawn
    small and upscaled."""
    if scene.background2 is None:
        _fill(dst, scene.background)
        return
    n = 24
    rng = np.random.default_rng(scene.clutter_seed)
    u = rng.random(1 + 1 + 5 * 4).tolist()
    colours = rng.integers(30, 230, (5, 3)).tolist()
    g = _RAMP[None, :, None] if u[0] < 0.5 else _RAMP[:, None, None]
    a = np.asarray(scene.background, np.float32)
    b = np.asarray(scene.background2, np.float32)
    small = np.ascontiguousarray(np.broadcast_to(a + (b - a) * g, (n, n, 3)).astype(np.uint8))
    m = n / 2.5
    for i in range(2 + int(u[1] * 4)):
        x0, y0, w, h = (
            int(u[2 + 4 * i] * n),
            int(u[3 + 4 * i] * n),
            int(u[4 + 4 * i] * m),
            int(u[5 + 4 * i] * m),
        )
        cv2.rectangle(small, (x0, y0), (x0 + w + 2, y0 + h + 2), colours[i], -1)
    cv2.resize(small, dst.shape[1::-1], dst=dst, interpolation=cv2.INTER_LINEAR)


@functools.lru_cache(maxsize=8)
def _pixel_grid(out: int) -> np.ndarray:
    return np.arange(out, dtype=np.float32)


def _shading(c: _Canvas, scene: Scene, out: int, scale: float) -> np.ndarray:
    """Lambertian shading of the head ellipsoid under the scene's light, times ``scale``,
    shape (out, out).

    Below the cheeks the normals are flattened (v scaled by 0.6) so that the neck and
    shoulders are lit like the lower face rather than like the rim of a sphere. The light
    direction and every constant factor are folded into the 1-D axes, so the 2-D work is
    six passes: u^2 + v^2, clip, 1 - r^2, sqrt, + the linear terms, floor at the ambient.
    """
    k = out / c.size
    grid = _pixel_grid(out)
    u = (grid - np.float32((c.cx + 0.5) * k - 0.5)) * np.float32(1.0 / (c.a_px * 1.05 * k))
    v = (grid - np.float32((c.cy + 0.5) * k - 0.5)) * np.float32(1.0 / (c.a_px * c.B * 1.05 * k))
    v = np.where(v > 0.3, v * np.float32(0.6), np.maximum(v, np.float32(-1.0)))
    le = scene.light_elevation
    g = scene.gain / (scene.ambient + scene.diffuse) * scale
    d = scene.diffuse * g  # diffuse weight
    lx = math.cos(scene.light_azimuth) * math.sin(le) * d
    ly = -math.sin(scene.light_azimuth) * math.sin(le) * d
    lz2 = np.float32((math.cos(le) * d) ** 2)
    # d * lz * sqrt(1 - min(u^2 + v^2, 0.97)) = sqrt(lz2 - min(lz2 u^2 + lz2 v^2, 0.97 lz2))
    lam = np.add.outer(v * v * lz2, u * u * lz2)
    np.minimum(lam, np.float32(0.97) * lz2, out=lam)
    np.subtract(lz2, lam, out=lam)
    np.sqrt(lam, out=lam)
    lam += np.add.outer(v * np.float32(ly), u * np.float32(lx) + np.float32(scene.ambient * g))
    # max(diffuse, 0) + ambient = max(diffuse + ambient, ambient)
    np.maximum(lam, np.float32(scene.ambient * g), out=lam)
    return lam


_NOISE_STEPS = 16  # noise table units per standard deviation


@functools.cache
def _noise_table() -> np.ndarray:
    """A fixed table of N(0, 1) samples as uint8 (128 + 16 z); an image's noise is a window
    at a seeded offset.

    Drawing fresh normals costs more than the rest of the camera model; a window into a
    2^21-sample table is as white and as deterministic, and costs a slice. Bytes, not
    floats: one saturating uint8 pass (``cv2.addWeighted``) adds them, and a window is a
    quarter of the memory traffic. Steps of 1/16 sigma are far below a grey level.
    """
    z = np.random.default_rng(0x5EED).standard_normal(1 << 21, dtype=np.float32)
    return np.clip(np.rint(128.0 + z * _NOISE_STEPS), 0, 255).astype(np.uint8)


def render(
    params: np.ndarray, texture_seed: int, scene: Scene, size: int, supersample: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Render one image.

    Parameters
    ----------
    params : ndarray of shape (n_params,)
        Face parameters (see ``lab.synth.PARAM_NAMES``).
    texture_seed : int
        Seeds the identity's marks and skin texture, the same in every capture.
    scene : Scene
        Pose, light, background, accessories and camera degradations.
    size : int
        Output width and height in pixels.
    supersample : int
        Draw at ``size * supersample`` and downscale, for smooth edges.

    Returns
    -------
    image : ndarray of shape (size, size, 3), uint8, RGB
    landmarks : ndarray of shape (5, 2), float32
        Left eye, right eye, nose tip, left and right mouth corner, in output pixels.
    """
    big = size * supersample
    c = _Canvas(big, params, scene)
    p = c.p
    skin = skin_rgb(p[P["skin_lightness"]], p[P["skin_warmth"]])
    hair = _hair_colour(p)
    _background(c.albedo, scene)

    _draw_body(c, skin, scene)
    _draw_back_hair(c, hair)
    _draw_ears(c, skin)
    outline = _face_outline(c)
    face = c.fixed(outline)
    c.poly(c.albedo, face, skin)
    c.poly(c.occ, face, _NEUTRAL)
    # chin shadow on the neck
    c.feature(c.occ, 0.0, c.B * p[P["chin_length"]] + 0.12, (0.45, 0.12), _NEUTRAL - 60, 0, -0.4)
    tex = _texture(c, texture_seed, size)
    _draw_relief(c)
    _draw_marks(c, skin, texture_seed + 1)
    eyes = _draw_eyes(c, skin, hair, scene)
    nose = _draw_nose(c, skin, scene)
    mouth = _draw_mouth(c, skin, scene)
    _draw_beard(c, hair, outline)
    _draw_top_hair(c, hair)
    if scene.mask:
        _draw_mask(c, outline, scene.noise_seed)

    # light the image at the output size: the drawing was supersampled, the light is smooth
    if supersample > 1:
        albedo = cv2.resize(c.albedo, (size, size), interpolation=cv2.INTER_AREA)
        occ8 = cv2.resize(c.occ, (size, size), interpolation=cv2.INTER_AREA)
    else:
        albedo, occ8 = c.albedo, c.occ
    occ = cv2.GaussianBlur(occ8, (3, 3), 0)
    light = _shading(c, scene, size, 1.0 / _NEUTRAL)
    light = cv2.multiply(light, occ, dtype=cv2.CV_32F)
    if tex is not None:
        patch, x0, y0 = tex
        light[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] *= patch
    background = np.float32(scene.gain if scene.background2 else 1.0)
    light[occ8 == 0] = background
    img = cv2.multiply(albedo, cv2.cvtColor(light, cv2.COLOR_GRAY2RGB), dtype=cv2.CV_8U)

    if scene.blur_sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), scene.blur_sigma)
    if scene.motion_length >= 1.5:
        n = math.ceil(scene.motion_length) | 1
        kern = np.zeros((n, n), np.float32)
        kern[n // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), scene.motion_angle, 1.0)
        kern = cv2.warpAffine(kern, rot, (n, n))
        img = cv2.filter2D(img, -1, kern / kern.sum())
    if scene.noise_sigma > 0:
        table = _noise_table()
        n = img.size
        start = scene.noise_seed % (table.size - n)
        k = scene.noise_sigma / _NOISE_STEPS
        noise = table[start : start + n].reshape(img.shape)
        img = cv2.addWeighted(img, 1.0, noise, k, -128.0 * k)  # saturating
    if scene.jpeg_quality > 0:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        _, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, scene.jpeg_quality])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)

    lms = np.array([eyes[0], eyes[1], nose, mouth[0], mouth[1]], np.float32)
    lms = (lms + 0.5) / supersample - 0.5
    return img, lms
