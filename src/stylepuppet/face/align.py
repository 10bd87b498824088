"""FFHQ alignment: the oriented square ("quad") from eye and mouth landmarks, the crop, and the way back.

The quad follows the FFHQ dataset script (``recreate_aligned_images`` in NVlabs' ffhq-dataset)
exactly: the same vectors and constants. The crop follows its steps (crop with a border, shrink,
reflect-pad, blur and blend where the quad leaves the frame, bilinear warp, antialiased reduction)
with differences in how the pixels are computed, not in what the crop shows; on the sample media
the crops match the script's procedure at 41-59 dB PSNR, 33 dB when a face is shrunk over 4x
(tests/face/test_align.py):

- coordinates are exact in the pixel-index convention (the script divides corner coordinates by
  the shrink factor, which is off by half a pixel);
- the script shrinks (Lanczos, integer factor) only from 4x the output size and always warps to
  4096² before resizing down; here the shrink starts at 2x, and the warp is bilinear at the output
  size, or at 2x with 2x2 averaging when the quad is over 1.25x the output, so a 256² crop of a
  512² frame takes a few ms;
- the padding blur is computed on a reduced copy and only where its weights are non-zero, and the
  fill colour is the median before the blur (details in :func:`_pad_and_soften`).

Corner order (FFHQ's): top-left, bottom-left, bottom-right, top-right of the face, in source pixels.
A quad's transform is a 3x3 matrix mapping source pixel coordinates to crop pixel coordinates; the
top-left corner of the quad is the outer corner of crop pixel (0, 0), i.e. crop coordinate (-0.5, -0.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.ndimage import distance_transform_edt, gaussian_filter
from scipy.spatial import ConvexHull

from stylepuppet.landmarks.scheme import eye_centres

#: Supersampling of the warp (the quad is first shrunk to < 2x the output side).
MAX_SUPERSAMPLE = 2


# ---------------------------------------------------------------------------------------------- the quad


def ffhq_quad(points: np.ndarray) -> np.ndarray:
    """FFHQ's alignment quad [..., 4, 2] from 68-point landmarks [..., 68, 2] (vectorised over frames)."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-2:] != (68, 2):
        raise ValueError(f"points must be [..., 68, 2], got {p.shape}")
    eye_right, eye_left = eye_centres(p)  # the subject's right eye is on the image left: FFHQ's "eye_left"
    eye_avg = (eye_right + eye_left) * 0.5
    eye_to_eye = eye_left - eye_right
    mouth_avg = (p[..., 48, :] + p[..., 54, :]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - eye_to_mouth[..., ::-1] * np.array([-1.0, 1.0])
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    half = np.maximum(np.linalg.norm(eye_to_eye, axis=-1) * 2.0, np.linalg.norm(eye_to_mouth, axis=-1) * 1.8)
    x = x * half[..., None]
    y = x[..., ::-1] * np.array([-1.0, 1.0])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y], axis=-2)


def quad_side(quad: np.ndarray) -> np.ndarray:
    """Length of the top edge (top-left to top-right) of quads [..., 4, 2]."""
    quad = np.asarray(quad, dtype=np.float64)
    return np.linalg.norm(quad[..., 3, :] - quad[..., 0, :], axis=-1)


def check_quad(quad: np.ndarray) -> np.ndarray:
    quad = np.asarray(quad, dtype=np.float64)
    if quad.shape[-2:] != (4, 2) or not np.isfinite(quad).all():
        raise ValueError(f"quad must be finite [..., 4, 2], got shape {quad.shape}")
    return quad


# ---------------------------------------------------------------------------------------------- transforms


def quad_transform(quad: np.ndarray, size: int) -> np.ndarray:
    """3x3 matrices [..., 3, 3] mapping source pixel coordinates to ``size``² crop pixel coordinates.

    crop = size · A⁻¹ (p − top_left) − 0.5, with A's columns the quad's top and left edges.
    """
    quad = check_quad(quad)
    tl = quad[..., 0, :]
    edges = np.stack([quad[..., 3, :] - tl, quad[..., 1, :] - tl], axis=-1)  # columns: x edge, y edge
    lin = size * np.linalg.inv(edges)
    out = np.zeros(quad.shape[:-2] + (3, 3))
    out[..., :2, :2] = lin
    out[..., :2, 2] = -np.einsum("...ij,...j->...i", lin, tl) - 0.5
    out[..., 2, 2] = 1.0
    return out


def apply_transform(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Map points [..., P, 2] with 3x3 affine matrices [..., 3, 3] (broadcast over leading dims)."""
    points = np.asarray(points, dtype=np.float64)
    transform = np.asarray(transform, dtype=np.float64)
    return np.einsum("...ij,...pj->...pi", transform[..., :2, :2], points) + transform[..., None, :2, 2]


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Inverse of 3x3 affine matrices [..., 3, 3]."""
    return np.linalg.inv(np.asarray(transform, dtype=np.float64))


def to_aligned(points: np.ndarray, quads: np.ndarray, size: int) -> np.ndarray:
    """Landmarks [..., 68, 2] in source pixels -> crop pixels of the matching quads [..., 4, 2]."""
    return apply_transform(points, quad_transform(quads, size))


def from_aligned(points: np.ndarray, quads: np.ndarray, size: int) -> np.ndarray:
    """Crop-pixel landmarks [..., P, 2] -> source pixels (inverse of :func:`to_aligned`)."""
    return apply_transform(points, invert_transform(quad_transform(quads, size)))


# ---------------------------------------------------------------------------------------------- the crop


@dataclass(frozen=True)
class AlignedCrop:
    """An aligned face: ``image`` uint8 [size, size, 3] and ``transform`` (source pixels -> crop pixels)."""

    image: np.ndarray
    transform: np.ndarray
    quad: np.ndarray

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def _shift(quad: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return quad + np.array([dx, dy])


def _interior(length: int, before: int, after: int) -> tuple[int, int]:
    """Index range [a, b) along one axis of the padded image where FFHQ's blur weight is 0.

    The weight clip(3·mask + 1) vanishes where the distance to both padded ends exceeds 4/3 of the padding.
    """
    return int(np.ceil(4 / 3 * before)), int(np.floor(length - 1 - 4 / 3 * after)) + 1


def _pad_and_soften(pixels: np.ndarray, pad: tuple[int, int, int, int], qsize: float,
                    window: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """FFHQ's fill for the area outside the frame: reflect, blur towards the edge, fade to the median.

    ``pad`` is (left, top, right, bottom). The blur (σ = 0.02·qsize) weighs 1 on the padding and
    fades to 0 a third of the padding inside the frame; the blend towards the median colour grows
    from 0 at the frame's edge to 1 at the padding's outer edge. Returns the part ``window``
    (x0, y0, x1, y1, padded coordinates, clipped) that the warp reads, and its origin.

    Three shortcuts keep this a few milliseconds on 512² video without changing the result visibly:
    only the bands where a weight is non-zero are blended; the Gaussian runs on a copy reduced by
    ~σ/2 (a σ ≥ 2 blur has nothing left at that sampling rate) and is upsampled bilinearly; the
    median is taken over a regular subsample of the padded image before the blur (FFHQ takes it
    after, which would need the whole padded image blurred; the colour differs by a level or two).
    """
    left, top, right, bottom = pad
    img = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = img.shape[:2]
    x0, y0 = max(window[0], 0), max(window[1], 0)
    x1, y1 = min(window[2], w), min(window[3], h)
    out = img[y0:y1, x0:x1].copy()
    median = np.median(img[::4, ::4].reshape(-1, 3), axis=0).astype(np.float32)

    sigma = qsize * 0.02
    k = max(1, int(sigma // 2))
    margin = int(np.ceil(4 * sigma)) + 2 * k
    bx0, by0 = max(x0 - margin, 0), max(y0 - margin, 0)
    bx1, by1 = min(x1 + margin, w), min(y1 + margin, h)
    low = Image.fromarray(img[by0:by1, bx0:bx1])
    if k > 1:
        low = low.reduce(k)  # a k-box already blurs by variance (k² - 1) / 12 in source pixels
    low_sigma = float(np.sqrt(max(sigma**2 - (k * k - 1) / 12.0, 0.0)) / k)
    low = low.filter(ImageFilter.GaussianBlur(low_sigma))

    ix0, ix1 = _interior(w, left, right)
    iy0, iy1 = _interior(h, top, bottom)
    iy0, iy1 = min(max(iy0, y0), y1), max(min(iy1, y1), y0)
    ix0, ix1 = min(max(ix0, x0), x1), max(min(ix1, x1), x0)
    if iy1 <= iy0 or ix1 <= ix0:
        iy0 = iy1 = y0
        ix0 = ix1 = x0
    blocks = [(x0, y0, x1, iy0), (x0, iy1, x1, y1), (x0, iy0, ix0, iy1), (ix1, iy0, x1, iy1)]
    for X0, Y0, X1, Y1 in blocks:
        if X1 <= X0 or Y1 <= Y0:
            continue
        box = ((X0 - bx0) / k, (Y0 - by0) / k, (X1 - bx0) / k, (Y1 - by0) / k)
        blurred = np.asarray(low.resize((X1 - X0, Y1 - Y0), Image.BILINEAR, box=box), dtype=np.float32)
        x = np.arange(X0, X1, dtype=np.float32)
        y = np.arange(Y0, Y1, dtype=np.float32)
        mx = 1.0 - np.minimum(x / np.float32(left), (w - 1 - x) / np.float32(right))
        my = 1.0 - np.minimum(y / np.float32(top), (h - 1 - y) / np.float32(bottom))
        mask = np.maximum(mx[None, :], my[:, None])[..., None]
        part = out[Y0 - y0:Y1 - y0, X0 - x0:X1 - x0].astype(np.float32)
        part += (blurred - part) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        part += (median - part) * np.clip(mask, 0.0, 1.0)
        out[Y0 - y0:Y1 - y0, X0 - x0:X1 - x0] = np.clip(np.rint(part), 0, 255).astype(np.uint8)
    return out, (x0, y0)


def _bounds(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)


def align_crop(image: np.ndarray, quad: np.ndarray, size: int) -> AlignedCrop:
    """Cut the quad out of ``image`` (uint8 RGB) as an upright ``size``² crop, FFHQ style.

    Steps (FFHQ's, see the module doc): crop around the quad with a border of 0.1·side; shrink by an
    integer factor (Lanczos) when the quad is at least twice the output; reflect-pad, blur and blend
    where the quad leaves the frame; warp bilinearly at 1x or 2x the output size (then average 2x2).
    Parts of the quad outside the frame are filled by the padding.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    quad = check_quad(quad)
    if quad.shape != (4, 2):
        raise ValueError(f"quad must be [4, 2], got {quad.shape}")
    transform = quad_transform(quad, size)
    height, width = image.shape[:2]
    q = quad.copy()
    qsize = float(quad_side(q))

    # Crop to the quad plus FFHQ's border (at least one pixel of the frame survives, to reflect).
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = _bounds(q)
    cx0 = int(np.clip(lo[0] - border, 0, width - 1))
    cy0 = int(np.clip(lo[1] - border, 0, height - 1))
    cx1 = int(np.clip(hi[0] + border, cx0 + 1, width))
    cy1 = int(np.clip(hi[1] + border, cy0 + 1, height))
    img = Image.fromarray(image[cy0:cy1, cx0:cx1])
    q = _shift(q, -cx0, -cy0)

    shrink = int(np.floor(qsize / size))
    if shrink >= 2 and min(img.size) >= 2 * shrink:
        # Lanczos like FFHQ's shrink; PIL maps the whole extent, so continuous coordinates scale per axis.
        reduced = (-(-img.size[0] // shrink), -(-img.size[1] // shrink))
        scale = np.array([reduced[0] / img.size[0], reduced[1] / img.size[1]])
        img = img.resize(reduced, Image.LANCZOS)
        q = (q + 0.5) * scale - 0.5
        qsize *= float(scale.mean())

    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = _bounds(q)
    pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0),
           max(hi[0] - img.size[0] + border, 0), max(hi[1] - img.size[1] + border, 0))
    if max(pad) > border - 4:
        least = max(int(np.rint(qsize * 0.3)), 1)
        pad = tuple(max(p, least) for p in pad)
        q = _shift(q, pad[0], pad[1])
        lo, hi = _bounds(q)
        pixels, origin = _pad_and_soften(np.asarray(img), pad, qsize, (lo[0] - 1, lo[1] - 1, hi[0] + 2, hi[1] + 2))
        img = Image.fromarray(pixels)
        q = _shift(q, -origin[0], -origin[1])

    # Up to 1.25x larger than the output a plain bilinear warp does not alias visibly (and is closer to
    # FFHQ's 4096² detour than supersampling); beyond that, warp at 2x and average 2x2 blocks.
    supersample = 1 if qsize <= 1.25 * size else MAX_SUPERSAMPLE
    out_side = size * supersample
    tl = q[0]
    ex = (q[3] - tl) / out_side
    ey = (q[1] - tl) / out_side
    # PIL maps output continuous coordinates (pixel centres at i + 0.5) to input continuous ones.
    data = (ex[0], ey[0], tl[0] + 0.5, ex[1], ey[1], tl[1] + 0.5)
    warped = img.transform((out_side, out_side), Image.AFFINE, data, Image.BILINEAR)
    if supersample > 1:
        warped = warped.reduce(supersample)
    return AlignedCrop(np.asarray(warped, dtype=np.uint8), transform, quad)


# ---------------------------------------------------------------------------------------------- paste back

#: How far the face outline reaches above the brows, as a fraction of the eye-to-mouth distance (the
#: 68 points stop at the brows; the forehead below the hairline is skin the pasted face should bring).
FOREHEAD = 0.5
#: Width of the pasted face's soft edge, as a fraction of the face's size (the square root of its area).
FACE_FEATHER = 0.12
#: Width (σ) of the colour correction's smoothing, as a fraction of the face's size.
COLOUR_SIGMA = 0.2


def feather_mask(size: int, feather: float) -> np.ndarray:
    """Float mask [size, size] in [0, 1]: 1 inside, ramping linearly to 0 over ``feather``·size at the edges."""
    width = max(feather * size, 1.0)
    ramp = np.clip((np.minimum(np.arange(size), size - 1 - np.arange(size)) + 0.5) / width, 0.0, 1.0)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def face_outline(points: np.ndarray, groups: Mapping[str, Any]) -> np.ndarray:
    """The face's outline points [..., K, 2] from landmarks [..., P, 2] with named ``groups``: the jaw, the
    brows, and the brows moved up by :data:`FOREHEAD` of the eye-to-mouth distance (the lower forehead).
    Their convex hull is the region :func:`paste_back` replaces."""
    points = np.asarray(points, dtype=np.float64)
    jaw = points[..., np.asarray(groups["jaw"]), :]
    brows = points[..., np.concatenate([np.asarray(groups["right_eyebrow"]), np.asarray(groups["left_eyebrow"])]), :]
    right, left = eye_centres(points, groups)
    mouth = points[..., np.asarray(groups["outer_lip"]), :].mean(axis=-2)
    up = (right + left) * 0.5 - mouth  # from the mouth to the eyes: the face's upward direction, eye-to-mouth long
    return np.concatenate([jaw, brows, brows + FOREHEAD * up[..., None, :]], axis=-2)


def polygon_ramp(shape: tuple[int, int], polygon: np.ndarray, width: float) -> np.ndarray:
    """Float mask [H, W]: 0 outside the convex hull of ``polygon`` [K, 2] (pixel coordinates), rising
    smoothly (smoothstep of the distance to the hull's edge) to 1 at ``width`` pixels inside it."""
    hull = polygon[ConvexHull(polygon).vertices] if len(polygon) >= 3 else polygon
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in hull], fill=1)
    inside = np.asarray(canvas, dtype=bool)
    t = np.clip(distance_transform_edt(inside) / max(width, 1.0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def colour_correction(original: np.ndarray, pasted: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """A smooth field [H, W, 3] that, added to ``pasted``, makes it match ``original`` where ``weights`` [H, W]
    are high (the pasted face's edge) and carries that correction smoothly inwards.

    The difference original − pasted is averaged with the weights by a Gaussian of ``sigma`` pixels
    (normalised convolution), so the face takes the colour and light of the skin round it without a
    step at the seam; it is computed on a copy reduced to about σ/4 per pixel and upsampled.
    """
    h, w = weights.shape
    k = max(1, int(sigma // 4))
    hk, wk = -(-h // k), -(-w // k)

    def reduce(a: np.ndarray) -> np.ndarray:
        a = np.pad(a, ((0, hk * k - h), (0, wk * k - w)) + ((0, 0),) * (a.ndim - 2))
        return a.reshape(hk, k, wk, k, *a.shape[2:]).mean(axis=(1, 3))

    wt = reduce(weights.astype(np.float64))
    diff = reduce((original.astype(np.float64) - pasted.astype(np.float64)) * weights[..., None])
    total = max(float(wt.sum()), 1e-12)
    mean = diff.sum(axis=(0, 1)) / total  # far from every weight the correction falls back to the mean
    s = sigma / k
    num = gaussian_filter(diff, (s, s, 0), mode="nearest")
    den = gaussian_filter(wt, s, mode="nearest")[..., None]
    eps = 1e-3 * den.max()
    low = (num + eps * mean) / (den + eps)
    full = np.stack([np.asarray(Image.fromarray(low[..., c].astype(np.float32), mode="F").resize(
        (wk * k, hk * k), Image.BILINEAR)) for c in range(3)], axis=-1)
    return full[:h, :w]


def _warp(image: Image.Image, window: tuple[int, int], data: tuple[float, ...], resample: int) -> np.ndarray:
    return np.asarray(image.transform(window, Image.AFFINE, data, resample), dtype=np.float32)


def paste_back(frame: np.ndarray, crop: np.ndarray, transform: np.ndarray, *, outline: np.ndarray | None = None,
               feather: float = 0.08, match_colour: bool = False) -> np.ndarray:
    """Composite an aligned ``crop`` [S, S, 3] back into ``frame`` through the inverse of ``transform``.

    Without ``outline`` the whole crop is pasted, its edges fading out over ``feather``·S pixels. With
    ``outline`` (face outline points [K, 2] in crop pixels, :func:`face_outline`) only the face is: the
    convex hull of the outline, its edge fading in over :data:`FACE_FEATHER` of the face's size. With
    ``match_colour`` the pasted pixels get :func:`colour_correction` towards the frame's, weighted on
    that soft edge. Pixels outside the pasted region keep the frame's values exactly, as do those the
    crop does not cover (a face near the frame's border). Returns a new uint8 frame.
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or crop.dtype != np.uint8 or crop.ndim != 3:
        raise ValueError("frame and crop must be uint8 RGB images")
    size = crop.shape[0]
    if crop.shape[:2] != (size, size):
        raise ValueError(f"crop must be square, got {crop.shape}")
    transform = np.asarray(transform, dtype=np.float64)
    inv = invert_transform(transform)
    h, w = frame.shape[:2]
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    src = apply_transform(corners if outline is None else np.asarray(outline, dtype=np.float64), inv)
    x0 = int(np.clip(np.floor(src[:, 0].min()), 0, w))
    y0 = int(np.clip(np.floor(src[:, 1].min()), 0, h))
    x1 = int(np.clip(np.ceil(src[:, 0].max()) + 1, 0, w))
    y1 = int(np.clip(np.ceil(src[:, 1].max()) + 1, 0, h))
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    # Output pixel (i, j) of the window is frame pixel (x0 + i, y0 + j); PIL wants continuous coordinates.
    lin = transform[:2, :2]
    offset = lin @ np.array([x0 - 0.5, y0 - 0.5]) + transform[:2, 2] + 0.5
    data = (lin[0, 0], lin[0, 1], offset[0], lin[1, 0], lin[1, 1], offset[1])
    window = (x1 - x0, y1 - y0)
    colour = _warp(Image.fromarray(crop), window, data, Image.BICUBIC)
    # Where the crop does not reach, the warp reads black: the coverage mask keeps the frame there.
    edge = feather if outline is None else 1.0 / size
    mask = _warp(Image.fromarray(feather_mask(size, edge), mode="F"), window, data, Image.BILINEAR)
    region = out[y0:y1, x0:x1].astype(np.float32)
    if outline is not None:
        face = src - np.array([x0, y0])
        face_size = float(np.sqrt(max(ConvexHull(face).volume, 1.0))) if len(face) >= 3 else 1.0
        mask = mask * polygon_ramp((y1 - y0, x1 - x0), face, FACE_FEATHER * face_size)
        if match_colour:
            band = mask * (1.0 - mask) * 4.0  # the soft edge, where the pasted face meets the frame
            colour = colour + colour_correction(region, colour, band, COLOUR_SIGMA * face_size)
    blend = region + (np.clip(colour, 0, 255) - region) * mask[..., None]
    out[y0:y1, x0:x1] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out
