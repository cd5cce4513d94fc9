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

Modules: ``_canvas`` (scene, projection, colours), ``_face`` (what is drawn, and the
landmarks: the same projected points, so exact ground truth for alignment) and this one
(background, light, texture, camera).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from facelab.synth._canvas import NEUTRAL, Canvas, Scene, fill
from facelab.synth._face import draw_face
from facelab.synth._identity import P

__all__ = ["Scene", "render"]

_RAMP = np.linspace(0.0, 1.0, 24, dtype=np.float32)


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


def _texture(c: Canvas, seed: int, out: int) -> tuple[np.ndarray, int, int] | None:
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
    r00, r01, r02, r10, r11, r12 = c.r  # already scaled by a_px
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


_DEFORM_GRID = 5  # control points per side of the deformation field


@functools.lru_cache(maxsize=256)
def _deformation_field(seed: int) -> np.ndarray:
    """The identity's smooth 2-D deformation of the face, shape (24, 24, 2), float32.

    Unit-sd normal displacements on a 5x5 control grid over the texture square, cubic
    interpolation, tapered to zero at the square's border (a Hann window) so the face
    outline, hair and background stay in place. Displacements are in face half-widths
    per unit of the identity's ``deformation`` amplitude; the same field in every
    capture, so it is the identity's shape, not noise.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    n = 24
    low = rng.standard_normal((_DEFORM_GRID, _DEFORM_GRID, 2)).astype(np.float32)
    field = cv2.resize(low, (n, n), interpolation=cv2.INTER_CUBIC)
    hann = np.hanning(n + 2)[1:-1].astype(np.float32)
    field *= np.outer(hann, hann)[:, :, None]
    field.setflags(write=False)
    return field


def _deformation(c: Canvas, seed: int, out: int) -> tuple[np.ndarray, np.ndarray, int, int] | None:
    """The identity's deformation in output pixels: (dx, dy, x0, y0) over the bounding
    box of the texture square, outside which it is zero; None when it is (nearly) nil.

    An output pixel ``q`` of the box shows the undeformed image at ``q + d(q)``.
    """
    amp = c.p[P["deformation"]]
    if amp <= 1e-3:
        return None
    n = 24
    field = _deformation_field(seed) * np.float32(amp)
    k = out / c.size
    sx, sy = 2.2 / n * k, 2.2 * c.B / n * k
    r00, r01, r02, r10, r11, r12 = c.r
    zc = 0.7 * c.C
    t = 0.5 * k - 0.5
    m00, m01, m10, m11 = r00 * sx, r01 * sy, r10 * sx, r11 * sy
    m02 = (c.cx - 1.1 * r00 - 1.1 * c.B * r01 + zc * r02) * k + t
    m12 = (c.cy - 1.1 * r10 - 1.1 * c.B * r11 + zc * r12) * k + t
    xs = [m00 * i + m01 * j + m02 for i in (0.0, n - 1.0) for j in (0.0, n - 1.0)]
    ys = [m10 * i + m11 * j + m12 for i in (0.0, n - 1.0) for j in (0.0, n - 1.0)]
    x0, y0 = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
    x1, y1 = min(out, math.ceil(max(xs)) + 1), min(out, math.ceil(max(ys)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    m = np.array([[m00, m01, m02 - x0], [m10, m11, m12 - y0]])
    uv = cv2.warpAffine(field, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
    # head-frame displacement (face half-widths) -> image pixels, through the pose
    du, dv = uv[:, :, 0], uv[:, :, 1]
    dx = du * np.float32(r00 * k) + dv * np.float32(r01 * k)
    dy = du * np.float32(r10 * k) + dv * np.float32(r11 * k)
    # no fold: q -> q + d(q) stays one-to-one, and the landmarks' fixed-point iteration
    # (_deform_points) contracts, when d's Lipschitz constant (infinity norm of its
    # Jacobian, finite differences) is below 1; a strong deformation on a small face
    # reached 1.7 and a landmark landed 2.4 px off (hypothesis, session 12; 13 % of 300
    # sampled identities above 1, a fold): cap it at _MAX_LIPSCHITZ by scaling the field
    # down (17 % of identities are scaled)
    lip = _lipschitz(dx, dy)
    if lip > _MAX_LIPSCHITZ:
        scale = np.float32(_MAX_LIPSCHITZ / lip)
        dx, dy = dx * scale, dy * scale
    return dx, dy, x0, y0


_MAX_LIPSCHITZ = 0.9


def _lipschitz(dx: np.ndarray, dy: np.ndarray) -> float:
    """max over pixels of the Jacobian's infinity norm, by finite differences."""
    if min(dx.shape) < 2:
        return 0.0
    gxx, gxy = np.gradient(dx)[::-1]
    gyx, gyy = np.gradient(dy)[::-1]
    return float(max((np.abs(gxx) + np.abs(gxy)).max(), (np.abs(gyx) + np.abs(gyy)).max()))


def _deform_image(img: np.ndarray, d: tuple[np.ndarray, np.ndarray, int, int]) -> None:
    """Apply a deformation from ``_deformation`` to ``img`` in place."""
    dx, dy, x0, y0 = d
    h, w = dx.shape
    gx = np.arange(x0, x0 + w, dtype=np.float32)
    gy = np.arange(y0, y0 + h, dtype=np.float32)
    mx = dx + gx[None, :]
    my = dy + gy[:, None]
    img[y0 : y0 + h, x0 : x0 + w] = cv2.remap(
        img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _bilinear(a: np.ndarray, x: float, y: float) -> float:
    """``a`` sampled at (x, y) (pixel centres at integers), zero outside."""
    h, w = a.shape
    if not (0.0 <= x <= w - 1 and 0.0 <= y <= h - 1):
        return 0.0
    i, j = min(int(y), h - 2) if h > 1 else 0, min(int(x), w - 2) if w > 1 else 0
    fy, fx = y - i, x - j
    top = a[i, j] * (1 - fx) + a[i, j + 1] * fx if w > 1 else a[i, j]
    if h == 1:
        return float(top)
    bot = a[i + 1, j] * (1 - fx) + a[i + 1, j + 1] * fx if w > 1 else a[i + 1, j]
    return float(top * (1 - fy) + bot * fy)


def _deform_points(
    pts: list[tuple[float, float]], d: tuple[np.ndarray, np.ndarray, int, int]
) -> list[tuple[float, float]]:
    """Where the points of the undeformed image move: q with q + d(q) = p, by fixed-point
    iteration: d's Lipschitz constant is at most _MAX_LIPSCHITZ (0.9, ``_deformation``),
    so it contracts; 96 steps leave 0.9^96 = 4e-5 of the displacement."""
    dx, dy, x0, y0 = d
    out = []
    for px, py in pts:
        qx, qy = px, py
        for _ in range(96):
            qx = px - _bilinear(dx, qx - x0, qy - y0)
            qy = py - _bilinear(dy, qx - x0, qy - y0)
        out.append((qx, qy))
    return out


def fill_background(dst: np.ndarray, scene: Scene) -> None:
    """Paint ``dst`` with a plain studio backdrop, or a defocused cluttered scene drawn
    small and upscaled."""
    if scene.background2 is None:
        fill(dst, scene.background)
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


def _shading(c: Canvas, scene: Scene, out: int, scale: float) -> np.ndarray:
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
        Face parameters (see ``facelab.synth.PARAM_NAMES``).
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
    c = Canvas(big, params, scene)
    fill_background(c.albedo, scene)
    landmarks = draw_face(c, scene, texture_seed)
    tex = _texture(c, texture_seed, size)

    # light the image at the output size: the drawing was supersampled, the light is smooth
    if supersample > 1:
        albedo = cv2.resize(c.albedo, (size, size), interpolation=cv2.INTER_AREA)
        occ8 = cv2.resize(c.occ, (size, size), interpolation=cv2.INTER_AREA)
    else:
        albedo, occ8 = c.albedo, c.occ
    occ = cv2.GaussianBlur(occ8, (3, 3), 0)
    light = _shading(c, scene, size, 1.0 / NEUTRAL)
    light = cv2.multiply(light, occ, dtype=cv2.CV_32F)
    if tex is not None:
        patch, x0, y0 = tex
        light[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] *= patch
    background = np.float32(scene.gain if scene.background2 else 1.0)
    light[occ8 == 0] = background
    img = cv2.multiply(albedo, cv2.cvtColor(light, cv2.COLOR_GRAY2RGB), dtype=cv2.CV_8U)
    lms = np.array(landmarks, np.float32)
    lms = (lms + 0.5) / supersample - 0.5
    deform = _deformation(c, texture_seed, size)
    if deform is not None:  # the identity's own face shape, before the camera's effects
        _deform_image(img, deform)
        lms = np.array(_deform_points(lms.tolist(), deform), np.float32)

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

    return img, lms
