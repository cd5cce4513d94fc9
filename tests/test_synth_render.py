"""The renderer's fast paths equal the plain computations they replace."""

from __future__ import annotations

import cv2
import numpy as np
from facelab.synth import _canvas
from facelab.synth import _render as R
from facelab.synth._capture import gate_scene
from facelab.synth._identity import P, sample_identity
from hypothesis import given, settings
from hypothesis import strategies as st


def _make(index: int, seed: int, difficulty: float) -> tuple[_canvas.Canvas, int]:
    ident = sample_identity(1, index)
    scene = gate_scene(np.random.default_rng(seed), difficulty)
    return _canvas.Canvas(112, ident.params, scene), ident.texture_seed


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 2**31), st.sampled_from([0.5, 1.0, 2.0, 3.0]))
def test_texture_patch_is_the_full_warp_inside_its_box_and_one_outside(index, seed, d) -> None:
    c, tseed = _make(index, seed, d)
    got = np.ones((112, 112), np.float32)
    out = R._texture(c, tseed, 112)
    if out is not None:
        patch, x0, y0 = out
        got[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch
    # the plain warp of the whole image, as the renderer did before the bounding box
    n = 24
    tex = R._texture_field(tseed, round(c.p[P["skin_texture"]], 3), round(c.p[P["freckles"]], 3))
    r00, r01, r02, r10, r11, r12 = c.r
    zc = 0.7 * c.C
    m = np.array(
        [
            [r00 * 2.2 / n, r01 * 2.2 * c.B / n, c.cx - 1.1 * r00 - 1.1 * c.B * r01 + zc * r02],
            [r10 * 2.2 / n, r11 * 2.2 * c.B / n, c.cy - 1.1 * r10 - 1.1 * c.B * r11 + zc * r12],
        ]
    )
    want = cv2.warpAffine(
        tex, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0
    )
    # sub-pixel positions are fixed point (1/32 px) in both: they may round apart
    assert np.abs(got - want).max() < 0.05


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 2**31))
def test_fixed_point_projection_matches_the_float_projection(index, seed) -> None:
    c, _ = _make(index, seed, 2.0)
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1, 1, 9), rng.uniform(-1, 1.3, 9)
    z = c.surface_z(x, y) + 0.03
    fx = c.on_surface(x, y, 0.03)
    px = c.project(np.column_stack([x, y, z]))
    assert np.abs(fx / 16.0 - px).max() <= 1 / 16 + 1e-9
    # the two paths multiply the same numbers; a last-bit difference may move a rounding
    assert np.abs(c.fixed(np.column_stack([x, y, z])) - fx).max() <= 1


def test_fill_equals_numpy_broadcast() -> None:
    a = np.empty((37, 53, 3), np.uint8)
    _canvas.fill(a, (3, 200, 17))
    b = np.empty_like(a)
    b[:] = (3, 200, 17)
    assert (a == b).all()


def test_noise_table_is_centred_unit_normal_in_sixteenths() -> None:
    t = R._noise_table().astype(np.float64)
    z = (t - 128.0) / R._NOISE_STEPS
    assert abs(z.mean()) < 0.01
    assert abs(z.std() - 1.0) < 0.01


def test_head_outside_the_image_has_no_texture_patch_and_still_renders() -> None:
    ident = sample_identity(1, 3)
    scene = R.Scene(dx=3.0)  # the head three image widths to the right
    c = _canvas.Canvas(112, ident.params, scene)
    assert R._texture(c, ident.texture_seed, 112) is None
    img, _ = R.render(ident.params, ident.texture_seed, scene, 112)
    assert img.shape == (112, 112, 3)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 2**31 - 1))
def test_deformed_landmarks_are_where_the_deformation_puts_the_undeformed_ones(index, seed):
    """A landmark q of the deformed image shows the undeformed image's landmark p:
    q + d(q) = p, with d sampled by OpenCV's remap (not the renderer's own sampler)."""
    ident = sample_identity(seed, index)
    scene = gate_scene(np.random.default_rng(seed), 1.0)
    params = ident.params.copy()
    _, moved = R.render(params, ident.texture_seed, scene, 112)
    params[P["deformation"]] = 0.0
    _, still = R.render(params, ident.texture_seed, scene, 112)
    d = R._deformation(_canvas.Canvas(112, ident.params, scene), ident.texture_seed, 112)
    assert d is not None
    dx, dy, x0, y0 = d
    mx = (moved[:, 0] - x0).reshape(1, -1).astype(np.float32)
    my = (moved[:, 1] - y0).reshape(1, -1).astype(np.float32)
    sx = cv2.remap(dx, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    sy = cv2.remap(dy, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    back = moved + np.stack([sx[0], sy[0]], 1)
    # remap samples on a 1/32 px grid: up to |grad d| / 32 of error; a wrong inverse
    # (q = p - d(p), or the sign flipped) misses by about |d|, pixels
    assert np.abs(back - still).max() < 0.05
    assert np.abs(moved - still).max() > 0.05  # the deformation does move features
