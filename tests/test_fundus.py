"""Field-of-view detection, crop, mask and normalisation on arrays of known geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sightx.image import circlefit, fov, fundus
from sightx.image.fundus import Circle

RETINA = (200, 95, 40)


def synthetic_fundus(
    w: int = 900,
    h: int = 600,
    circle: Circle | None = None,
    *,
    bg: float = 6.0,
    noise: float = 2.0,
    gain: float = 1.0,
    vignette: bool = False,
    notch: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, Circle]:
    """Textured orange-red disk on a noisy dark background; returns image and true circle."""
    c = circle or Circle(w / 2, h / 2, 0.45 * min(w, h))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot(xx - c.cx, yy - c.cy) / c.r
    texture = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3) * 40
    retina = np.float32(RETINA) + texture[..., None] * np.float32([1.0, 0.5, 0.3])
    surround = np.full((h, w), bg, np.float32)
    if vignette:  # darker periphery, background brighter near the field
        retina *= (1 - 0.45 * np.clip(d, 0, 1) ** 2)[..., None]
        surround = bg * (1.5 - 0.8 * np.clip(d / 2, 0, 1))
    img = np.where((d <= 1)[..., None], retina * gain, surround[..., None])
    if notch:
        s = round(0.04 * c.r)
        x, y = round(c.cx + c.r), round(c.cy)
        cv2.rectangle(img, (x - s, y - s), (x + s, y + s), RETINA, -1)
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), c


def assert_close(found: Circle | None, true: Circle, tol: float = 0.02) -> None:
    assert found is not None
    assert abs(found.r - true.r) <= tol * true.r, (found, true)
    assert np.hypot(found.cx - true.cx, found.cy - true.cy) <= tol * true.r, (found, true)


def cut_rows(img: np.ndarray, c: Circle, keep: int) -> tuple[np.ndarray, Circle]:
    """Keep `keep` central rows, as cameras that crop the circle at top and bottom do."""
    top = (img.shape[0] - keep) // 2
    return img[top : top + keep], Circle(c.cx, c.cy - top, c.r)


# --- find_fov --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="clean"),
        pytest.param({"bg": 20, "noise": 6}, id="noisy-background"),
        pytest.param({"gain": 35 / 200, "bg": 4, "noise": 3}, id="dark"),
        pytest.param({"gain": 0.25, "bg": 10, "noise": 4, "vignette": True}, id="dark-vignetted"),
        pytest.param({"gain": 1.8, "bg": 15}, id="overexposed"),
        pytest.param({"notch": True}, id="notch"),
        pytest.param({"circle": Circle(380, 330, 230)}, id="off-centre"),
    ],
)
def test_find_fov_recovers_circle(kwargs: dict) -> None:
    img, true = synthetic_fundus(**kwargs)
    assert_close(fov.find_fov(img), true)


def test_find_fov_ignores_notch_in_the_fit() -> None:
    # A bounding box would grow by the notch; the fit must not.
    img, true = synthetic_fundus(notch=True, noise=0.5)
    found = fov.find_fov(img)
    assert found is not None
    assert abs(found.cx - true.cx) < 0.005 * true.r and abs(found.r - true.r) < 0.005 * true.r


def test_find_fov_cut_off_top_and_bottom() -> None:
    img, true = synthetic_fundus(1500, 1000, Circle(750, 500, 500))
    img, true = cut_rows(img, true, 800)  # height = 0.8 * diameter
    assert_close(fov.find_fov(img), true)


def test_find_fov_cut_off_hard() -> None:
    # Height = 0.6 D: the frame edges carry as many blob-edge points as the rim does.
    img, true = synthetic_fundus(1500, 1000, Circle(750, 500, 500))
    img, true = cut_rows(img, true, 600)
    assert_close(fov.find_fov(img), true)


def test_find_fov_cut_off_on_all_four_sides() -> None:
    # Frame 0.8 D square: most blob-edge points lie on the frame, and only the
    # four short arcs between them are rim.
    img, true = synthetic_fundus(1000, 1000, Circle(500, 500, 500))
    img, true = img[100:900, 100:900], Circle(400, 400, 500)
    assert_close(fov.find_fov(img), true)


def test_find_fov_flat_chords_inside_the_frame() -> None:
    # Some cameras blacken the top and bottom of the field inside the frame: the flat
    # chords are blob edges but not rim, and only a robust fit ignores them.
    img, true = synthetic_fundus(1500, 1000, Circle(750, 500, 450))
    band = np.random.default_rng(3).normal(6, 2, (140, 1500, 3)).clip(0, 255).astype(np.uint8)
    img[:140], img[-140:] = band, band
    assert_close(fov.find_fov(img), true)


def test_find_fov_cut_off_at_one_side() -> None:
    img, true = synthetic_fundus(1500, 1000, Circle(470, 500, 470))
    img, true = img[:, 80:], Circle(true.cx - 80, true.cy, true.r)
    assert_close(fov.find_fov(img), true)


def test_find_fov_on_large_image_returns_input_coordinates() -> None:
    img, true = synthetic_fundus(1944, 1296, Circle(990, 640, 600))
    assert_close(fov.find_fov(img), true, tol=0.01)


@pytest.mark.parametrize(
    "img",
    [
        pytest.param(np.zeros((600, 900, 3), np.uint8), id="black"),
        pytest.param(np.full((600, 900, 3), 128, np.uint8), id="uniform"),
        pytest.param(np.random.default_rng(1).integers(0, 256, (600, 900, 3), dtype=np.uint8), id="noise"),
        pytest.param(np.clip(np.random.default_rng(2).normal(20, 6, (600, 900, 3)), 0, 255).astype(np.uint8), id="dark-noise"),
        pytest.param(np.full((600, 900, 3), 252, np.uint8), id="white-out"),
        pytest.param(
            np.repeat(
                cv2.GaussianBlur(np.random.default_rng(3).normal(120, 40, (600, 900)), (0, 0), 8).clip(0, 255).astype(np.uint8)[..., None],
                3,
                axis=2,
            ),
            id="grey-texture",  # fills the frame, but no retina's colour
        ),
        pytest.param(np.full((600, 900, 3), RETINA, np.uint8), id="flat-retina-colour"),  # the colour, but no structure
    ],
)
def test_find_fov_none_without_a_field(img: np.ndarray) -> None:
    assert fov.find_fov(img) is None


def test_find_fov_field_a_few_levels_above_black() -> None:
    # Real under-exposed shots: the circle plainly visible, the retina 5-10 grey levels above a clipped-black surround.
    img, true = synthetic_fundus(gain=0.04, bg=0, noise=0.5)
    assert img[img.shape[0] // 2, img.shape[1] // 2].max() < 12
    assert_close(fov.find_fov(img), true)


@pytest.mark.parametrize("fill", [0.0, 0.3])
def test_find_fov_dark_retina_reaching_the_rim(fill: float) -> None:
    # A dark macula, haemorrhage or vignetted side as dark as (or near) the surround over a third
    # of the rim: the rest of the rim still places the circle.
    img, true = synthetic_fundus(notch=True)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    dark = (yy > true.cy + 0.4 * true.r) & (np.hypot(xx - true.cx, yy - true.cy) <= true.r)
    img[dark] = (img[dark] * fill).astype(np.uint8)
    assert_close(fov.find_fov(img), true)


def test_find_fov_glare_crescent_at_the_rim() -> None:
    img, true = synthetic_fundus(bg=3)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    d = np.hypot(xx - true.cx, yy - true.cy)
    crescent = (d <= true.r) & (d > 0.75 * true.r) & (xx < true.cx)
    img[crescent] = 250
    assert_close(fov.find_fov(img), true)


def test_find_fov_frame_filled_by_the_field_gets_the_circle_through_the_corners() -> None:
    # No dark edge anywhere: the field reaches at least the corners.
    img, _ = synthetic_fundus(900, 600, Circle(450, 300, 600), vignette=True)
    assert_close(fov.find_fov(img), Circle(449.5, 299.5, float(np.hypot(900, 600) / 2)), tol=0.001)


def test_find_fov_none_for_a_smooth_glow() -> None:
    # Iso-contours of a radial glow are circles, but there is no rim.
    yy, xx = np.mgrid[0:600, 0:900]
    glow = 200 - 180 * np.hypot(xx - 450, yy - 300) / 540
    img = np.repeat(glow.astype(np.uint8)[..., None], 3, axis=2)
    assert fov.find_fov(img) is None


def test_find_fov_is_deterministic() -> None:
    img, _ = synthetic_fundus(bg=20, noise=6, notch=True)
    assert fov.find_fov(img) == fov.find_fov(img.copy())


# --- geometry --------------------------------------------------------------------------


def test_kasa_closed_form_is_the_least_squares_circle() -> None:
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 2 * np.pi, 300)
    pts = np.column_stack([40 + 25 * np.cos(t), -7 + 25 * np.sin(t)]) + rng.normal(0, 0.8, (300, 2))
    a = np.column_stack([pts[:, 0], pts[:, 1], np.ones(len(pts))])
    (p, q, c), *_ = np.linalg.lstsq(a, (pts**2).sum(axis=1), rcond=None)
    expected = (p / 2, q / 2, np.sqrt(c + p**2 / 4 + q**2 / 4))
    assert circlefit.kasa(pts) == pytest.approx(expected, rel=1e-9)
    assert circlefit.kasa(np.column_stack([np.arange(50.0), 2 * np.arange(50.0)])) is None  # collinear


def test_robust_circle_searches_when_many_points_are_off_the_rim() -> None:
    # 40% clutter: a fit to all points holds too few of them, so RANSAC must find the rim.
    rng = np.random.default_rng(2)
    t = rng.uniform(0, 2 * np.pi, 300)
    rim = np.column_stack([120 + 80 * np.cos(t), 90 + 80 * np.sin(t)]) + rng.normal(0, 0.3, (300, 2))
    clutter = rng.uniform([60, 40], [180, 140], (200, 2))
    fit = circlefit.robust_circle(np.concatenate([rim, clutter]))
    assert fit is not None
    c, share = fit
    assert_close(Circle(*c), Circle(120, 90, 80), tol=0.01)
    assert 0.55 <= share <= 0.7


def test_crop_resize_shrinking_over_2x_keeps_the_geometry() -> None:
    # A 1101 px field to 256 px: a whole-number box shrink (4x on a 1104 px square), then bilinear.
    img, true = synthetic_fundus(1400, 1200, Circle(700.3, 610.8, 550.5), noise=0)
    out, c, box = fundus.crop_resize(img, true, 256)
    assert out.shape == (256, 256, 3)
    assert c.cx == pytest.approx(127.5, abs=0.3) and c.cy == pytest.approx(127.5, abs=0.3)
    assert c.r == pytest.approx(128 * 1101 / 1104, abs=0.05)
    assert box[0] < 0 and box[2] > 256  # the photo's frame extends past the square sideways
    assert fov.find_fov(out) is not None and abs(fov.find_fov(out).r - c.r) < 0.02 * c.r


def test_circle_scaled() -> None:
    assert Circle(10, 20, 5).scaled(0.5) == Circle(4.75, 9.75, 2.5)  # pixel centres: (x + 0.5) * s - 0.5
    assert Circle(10, 20, 5).scaled(4).scaled(0.25) == Circle(10, 20, 5)


def test_square_crop_centres_full_circle() -> None:
    img, true = synthetic_fundus(900, 600, Circle(400.3, 310.6, 250.2))
    crop, c = fundus.square_crop(img, true)
    assert crop.shape == (500, 500, 3)
    assert abs(c.cx - 249.5) <= 0.5 and abs(c.cy - 249.5) <= 0.5 and c.r == true.r
    # The crop is the image content, not a resampled copy.
    assert np.array_equal(crop[100:110, 100:110], img[161:171, 251:261])


def test_square_crop_pads_cut_off_circle() -> None:
    img, true = synthetic_fundus(1500, 1000, Circle(750, 500, 500))
    img, true = cut_rows(img, true, 800)
    crop, c = fundus.square_crop(img, true)
    assert crop.shape == (1000, 1000, 3)
    assert abs(c.cx - 499.5) <= 0.5 and abs(c.cy - 499.5) <= 0.5
    assert not crop[:100].any() and not crop[-100:].any()  # padding
    assert crop[100:900, 500, 0].min() > 120  # the retina column (red), unshifted


def test_circle_mask_and_apply_mask() -> None:
    c = Circle(49.5, 49.5, 40)
    mask = fundus.circle_mask((100, 100), c)
    assert mask.dtype == bool
    assert abs(mask.sum() - np.pi * 40**2) < 0.01 * np.pi * 40**2
    assert mask[50, 50] and not mask[0, 0] and not mask[50, 95]
    half = fundus.circle_mask((100, 100), c, scale=0.5)
    assert half.sum() < mask.sum() / 3.5
    img = np.full((100, 100, 3), 200, np.uint8)
    out = fundus.apply_mask(img, c, 0.5)
    assert (out[~half] == 0).all() and (out[half] == 200).all()


def test_apply_mask_blanks_outside_the_frame_less_a_margin() -> None:
    # A field cut off at the top: the photo's frame starts at y = 20 in the output's pixels.
    c = Circle(49.5, 49.5, 48)
    img = np.full((100, 100, 3), 200, np.uint8)
    out = fundus.apply_mask(img, c, 1.0, frame=(-5.0, 20.0, 105.0, 105.0), margin=3.0)
    assert (out[:23] == 0).all()  # above the frame and within the margin below its edge
    inside = fundus.circle_mask((100, 100), c)
    assert (out[23:][inside[23:]] == 200).all() and (out[~inside] == 0).all()
    assert np.array_equal(fundus.apply_mask(img, c, 1.0, frame=(-5.0, -5.0, 105.0, 105.0), margin=3.0), fundus.apply_mask(img, c))


@pytest.mark.parametrize("side", [300, 1000])
def test_resize_is_square(side: int) -> None:
    img = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = fundus.resize(img, 512)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("size", [300, 256, 200])  # area averaging; exact 4x box; 5x box then bilinear
def test_resize_antialiases_when_shrinking(size: int) -> None:
    # A one-pixel checkerboard must average to grey, not alias into stripes.
    board = ((np.indices((1024, 1024)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out = fundus.resize(np.repeat(board[..., None], 3, axis=2), size)
    assert out.shape == (size, size, 3)
    assert abs(float(out.mean()) - 127.5) < 2 and out.std() < 10


def test_visible_fraction() -> None:
    assert fov.visible_fraction((1000, 1000), Circle(499.5, 499.5, 400)) == pytest.approx(1.0, abs=1e-3)
    # Exactly half the circle lies left of the frame.
    assert fov.visible_fraction((1000, 1000), Circle(-0.5, 499.5, 300)) == pytest.approx(0.5, abs=1e-3)
    # Height 0.8 D: segment areas cut at distance 0.8 r from the centre, top and bottom.
    seg = np.arccos(0.8) - 0.8 * np.sqrt(1 - 0.8**2)
    expected = 1 - 2 * seg / np.pi
    assert fov.visible_fraction((800, 1500), Circle(749.5, 399.5, 500)) == pytest.approx(expected, abs=2e-3)


# --- normalisation ---------------------------------------------------------------------


def _square_fundus(size: int = 512, **kwargs) -> tuple[np.ndarray, Circle]:
    img, true = synthetic_fundus(size, size, Circle((size - 1) / 2, (size - 1) / 2, size / 2), **kwargs)
    return img, true


def test_graham_centres_the_field_on_grey() -> None:
    img, c = _square_fundus(vignette=True)
    out = fundus.graham(img, c.r)
    inner = fundus.circle_mask(out.shape[:2], c, 0.85)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out[inner].mean(axis=0) - 128).max() < 8  # every channel ~128
    assert out[inner].std() > 6  # texture is kept, even amplified


def test_graham_flat_field_becomes_flat_grey() -> None:
    img = np.zeros((512, 512, 3), np.uint8)
    img[:] = (180, 70, 30)
    out = fundus.graham(img, 256)
    assert np.abs(out.astype(int) - 128).max() <= 1


@pytest.mark.parametrize("size", [512, 511, 1023])
def test_graham_blur_matches_full_resolution_blur(size: int) -> None:
    # The reduced-resolution blur must stand in for a real sigma = r/30 blur, odd sizes included.
    img, c = _square_fundus(size, vignette=True)
    ref = cv2.addWeighted(img, 4, cv2.GaussianBlur(img, (0, 0), c.r / 30), -4, 128)
    inner = fundus.circle_mask(img.shape[:2], c, 0.85)
    diff = np.abs(fundus.graham(img, c.r).astype(int) - ref.astype(int))[inner]
    assert diff.mean() < 1.5 and diff.max() <= 8


def test_clahe_raises_local_contrast() -> None:
    img, c = _square_fundus()
    flat = cv2.addWeighted(img, 0.15, img, 0, 100)  # washed out: low contrast
    out = fundus.clahe(flat)
    inner = fundus.circle_mask(img.shape[:2], c, 0.8)
    gray_in = cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY)[inner]
    gray_out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[inner]
    assert out.shape == flat.shape and out.dtype == np.uint8
    assert gray_out.std() > 1.5 * gray_in.std()


def test_normalize_dispatch() -> None:
    img, c = _square_fundus()
    assert np.array_equal(fundus.normalize(img, "graham", c.r), fundus.graham(img, c.r))
    assert np.array_equal(fundus.normalize(img, "clahe", c.r), fundus.clahe(img))
    assert np.array_equal(fundus.normalize(img, "none", c.r), img)
    assert set(fundus.NORMALIZERS) == {"graham", "clahe", "none"}
    with pytest.raises(ValueError):
        fundus.normalize(img, "sharpen", c.r)


# --- quality ---------------------------------------------------------------------------


def test_field_measures() -> None:
    img, c = _square_fundus()
    q = fundus.field_measures(img, c)
    assert set(q) == {"brightness", "contrast", "sharpness"}
    assert all(type(v) is float for v in q.values())
    expected = cv2.cvtColor(np.uint8([[RETINA]]), cv2.COLOR_RGB2GRAY)[0, 0]
    assert abs(q["brightness"] - expected) < 5  # measured inside the field only
    dark = fundus.field_measures((img * 0.3).astype(np.uint8), c)
    assert dark["brightness"] < 0.4 * q["brightness"] and dark["contrast"] < q["contrast"]


def test_quality_sharpness_drops_when_blurred() -> None:
    img, c = _square_fundus()
    sharp = fundus.field_measures(img, c)["sharpness"]
    blurred = fundus.field_measures(cv2.GaussianBlur(img, (0, 0), 3), c)["sharpness"]
    assert blurred < 0.2 * sharp


@pytest.mark.parametrize("size", [(800, 800), (800, 533)])
def test_find_fov_frames_the_generators_real_camera_quirks(size: tuple[int, int]) -> None:
    # Very dark, strongly vignetted and frame-filling fields, as rendered by the synthetic generator.
    import simplejpeg

    from sightx.synth.render import ImageSpec, render

    seen = set()
    for i in range(9):
        shot = render(ImageSpec((77, i), i % 5, bool(i % 2), size, 90, 0.0, 1.0))
        s = shot.shot
        half_diagonal = float(np.hypot(s.width, s.height) / 2)
        true = Circle(s.cx, s.cy, s.radius) if s.radius < half_diagonal else Circle((s.width - 1) / 2, (s.height - 1) / 2, half_diagonal)
        assert_close(fov.find_fov(simplejpeg.decode_jpeg(shot.jpeg)), true, tol=0.01)
        seen.add(s.quirk)
    assert seen == {"very-dark", "vignetted", "fills-frame"}
