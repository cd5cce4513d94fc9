"""The canvas of one capture: the scene, the head frame's projection, flat colours.

The head is an ellipsoid with half-axes (A, B*A, C*A) in a head frame (x right, y down,
z towards the camera, unit A = the face half-width). A pose (yaw, pitch, roll) rotates
head-frame points and an orthographic camera projects them. OpenCV draws in fixed point
with ``SHIFT`` fractional bits, so projections for drawing come out as int32 pixels
times ``ONE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from facelab.synth._identity import P

SHIFT = 4  # sub-pixel bits for OpenCV drawing
ONE = 1 << SHIFT
AA = cv2.LINE_AA
NEUTRAL = 200.0  # occlusion-map value that leaves the albedo unchanged


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


def iris_rgb(darkness: float) -> list[float]:
    return [95.0 - 43.0 * darkness, 140.0 - 106.0 * darkness, 175.0 - 153.0 * darkness]


def hair_colour(p: list[float]) -> list[float]:
    return hair_rgb(p[P["hair_lightness"]], p[P["hair_warmth"]])


def fill(dst: np.ndarray, colour) -> None:
    """``dst[:] = colour`` for an (h, w, 3) uint8 image, ten times faster: NumPy
    broadcasts a 3-vector pixel by pixel, a tiled row copies as whole rows."""
    h, w = dst.shape[:2]
    dst.reshape(h, -1)[:] = np.tile(np.asarray(colour, np.uint8), w)


def times(colour: list[float], k: float) -> list[float]:
    """A colour scaled by k (plain floats: three values do not need NumPy)."""
    return [v * k for v in colour]


class Canvas:
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
        self.r = tuple(v * a for v in (*rot[0], *rot[1]))
        self.proj = np.array(self.r).reshape(2, 3).T  # (3, 2): head frame -> pixels
        self.origin = np.array([self.cx, self.cy])
        # the same in OpenCV's fixed point, rounding included: one product per polygon
        self.proj_fx = self.proj * ONE
        self.origin_fx = self.origin * ONE + 0.5
        self.B = float(p[P["face_length"]])
        self.by2 = 1.0 / (self.B * 1.05) ** 2
        self.C = 0.95
        self.yaw = math.radians(scene.yaw)
        self.pitch = math.radians(scene.pitch)
        self.roll = scene.roll
        self.iby = 1.0 / (self.B * 1.05)
        self.cos_yaw, self.sin_yaw = math.cos(self.yaw), math.sin(self.yaw)
        self.cos_pitch, self.sin_pitch = math.cos(self.pitch), math.sin(self.pitch)
        self.k_fx = self.a_px * ONE

    def surface_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = 1.0 - x * x - y * y * self.by2
        return self.C * np.sqrt(np.maximum(r, 0.04))

    def project(self, pts: np.ndarray) -> np.ndarray:
        """Head-frame points of shape (n, 3) to image pixels of shape (n, 2)."""
        return pts @ self.proj + self.origin

    def fixed(self, pts: np.ndarray) -> np.ndarray:
        """Head-frame points of shape (n, 3) to pixels in OpenCV's fixed point (int32)."""
        return (pts @ self.proj_fx + self.origin_fx).astype(np.int32)

    def on_surface(self, x: np.ndarray, y: np.ndarray, dz: float = 0.0) -> np.ndarray:
        """Fixed-point pixels of the surface points above (x, y), raised by dz."""
        z = self.surface_z(x, y)
        if dz:
            z += dz
        return (np.array((x, y, z)).T @ self.proj_fx + self.origin_fx).astype(np.int32)

    def on_face(self, x: float, y: float, dz: float = 0.0) -> tuple[float, float]:
        """Image position of the surface point above (x, y), raised by dz (scalar fast path)."""
        z = self.C * math.sqrt(max(1.0 - x * x - y * y * self.by2, 0.04)) + dz
        r00, r01, r02, r10, r11, r12 = self.r
        return (self.cx + r00 * x + r01 * y + r02 * z, self.cy + r10 * x + r11 * y + r12 * z)

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
        """An ellipse around the pixel ``center``, axes in face half-widths, not
        foreshortened (ears, glasses)."""
        k = self.k_fx
        self._ellipse(
            img,
            (int(center[0] * ONE + 0.5), int(center[1] * ONE + 0.5)),
            int(axes[0] * k + 0.5),
            int(axes[1] * k + 0.5),
            angle,
            color,
            thickness,
            arc,
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

        Foreshortening: a patch whose normal leans by angle a (sin a = x) turned by the
        yaw appears cos(a + yaw) / cos(a) as wide, that is cos(yaw) - x sin(yaw) / cos(a),
        floored at 0.25; the same in y with the pitch. Scalar code on purpose: some 40
        calls an image, each cheaper in plain floats than as NumPy.
        """
        xc = -0.95 if x < -0.95 else 0.95 if x > 0.95 else x
        yb = y * self.iby
        yb = -0.95 if yb < -0.95 else 0.95 if yb > 0.95 else yb
        ca = math.sqrt(1.0 - xc * xc)
        cb = math.sqrt(1.0 - yb * yb)
        fx = ca * self.cos_yaw - xc * self.sin_yaw
        fy = cb * self.cos_pitch + yb * self.sin_pitch
        k = self.k_fx
        a0 = int(axes[0] * ((fx if fx > 0.25 else 0.25) / ca) * k + 0.5)
        a1 = int(axes[1] * ((fy if fy > 0.25 else 0.25) / cb) * k + 0.5)
        r = 1.0 - x * x - y * y * self.by2
        z = self.C * math.sqrt(r if r > 0.04 else 0.04) + dz
        r00, r01, r02, r10, r11, r12 = self.r
        centre = (
            int((self.cx + r00 * x + r01 * y + r02 * z) * ONE + 0.5),
            int((self.cy + r10 * x + r11 * y + r12 * z) * ONE + 0.5),
        )
        self._ellipse(img, centre, a0, a1, angle, color, thickness, arc)

    def _ellipse(
        self,
        img: np.ndarray,
        centre: tuple[int, int],
        a0: int,
        a1: int,
        angle: float,
        color,
        thickness: int,
        arc: tuple[int, int],
    ) -> None:
        """cv2.ellipse in fixed point, axes at least 1/16 px, angle turned by the roll."""
        cv2.ellipse(
            img,
            centre,
            (a0 if a0 > 1 else 1, a1 if a1 > 1 else 1),
            angle + self.roll,
            arc[0],
            arc[1],
            color,
            thickness,
            AA,
            SHIFT,
        )

    @staticmethod
    def poly(img: np.ndarray, fixed: np.ndarray, color) -> None:
        """Fill the polygon of fixed-point vertices ``fixed`` (see ``fixed``)."""
        cv2.fillPoly(img, [fixed], color, AA, SHIFT)

    @staticmethod
    def line(img: np.ndarray, fixed: np.ndarray, color, thickness: int) -> None:
        cv2.polylines(img, [fixed], False, color, thickness, AA, SHIFT)
