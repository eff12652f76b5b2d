"""Drawing one image of the synthetic "shapes" dataset (``shapes.py``): coloured shapes
(circle, square, triangle, star) on a textured background (colour gradient, low-frequency
blotches, random lines, pixel noise), several per image with varied size, colour, rotation
and limited partial overlap, and their boxes. Deterministic for a given generator.

Only numpy and Pillow are required.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: Class names, index == YOLO class id.
CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star")

DEFAULT_IMGSZ: int = 320

#: (width, height) as fractions of ``imgsz``; rounded to multiples of 32 pixels.
_ASPECTS: tuple[tuple[float, float], ...] = (
    (1.0, 1.0),
    (1.0, 1.0),
    (1.0, 0.8),
    (0.9, 1.0),
    (1.0, 0.9),
    (0.8, 1.0),
)


@dataclass(frozen=True)
class Box:
    """An axis-aligned object box in pixels plus its class id."""

    cls: int
    x0: float
    y0: float
    x1: float
    y1: float

    def to_yolo(self, width: int, height: int) -> str:
        """Format as a YOLO label line ``cls cx cy w h`` (normalised)."""
        cx = (self.x0 + self.x1) / 2 / width
        cy = (self.y0 + self.y1) / 2 / height
        bw = (self.x1 - self.x0) / width
        bh = (self.y1 - self.y0) / height
        return f"{self.cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"


def _image_size(rng: np.random.Generator, imgsz: int) -> tuple[int, int]:
    """Pick a (width, height) for one image, rounded to multiples of 32."""
    fw, fh = _ASPECTS[int(rng.integers(len(_ASPECTS)))]

    def snap(f: float) -> int:
        return max(32, round(imgsz * f / 32) * 32)

    return snap(fw), snap(fh)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Render a textured float32 HxWx3 background in [0, 255]."""
    import numpy as np

    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    angle = rng.uniform(0, 2 * math.pi)
    t = xs * math.cos(angle) + ys * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c0 = rng.uniform(30, 225, size=3).astype(np.float32)
    c1 = np.clip(c0 + rng.uniform(-90, 90, size=3), 0, 255).astype(np.float32)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]

    # Low-frequency blotches: coarse noise upsampled with bilinear interpolation.
    from PIL import Image

    gh, gw = int(rng.integers(3, 8)), int(rng.integers(3, 8))
    coarse = rng.normal(0, 1, size=(gh, gw, 3)).astype(np.float32)
    coarse_img = Image.fromarray(((coarse * 40 + 128).clip(0, 255)).astype(np.uint8))
    blotch = (
        np.asarray(coarse_img.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
        - 128
    )
    img += blotch * rng.uniform(0.3, 0.9)
    out: np.ndarray = img
    return out


def _regular_polygon(
    cx: float, cy: float, radius: float, n: int, rotation: float, inner: float | None = None
) -> list[tuple[float, float]]:
    """Vertices of a regular polygon (or a star if ``inner`` is given)."""
    pts: list[tuple[float, float]] = []
    if inner is None:
        for k in range(n):
            a = rotation + 2 * math.pi * k / n
            pts.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    else:
        for k in range(2 * n):
            r = radius if k % 2 == 0 else radius * inner
            a = rotation + math.pi * k / n
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def _shape_outline(
    rng: np.random.Generator, cls: int, cx: float, cy: float, size: float
) -> list[tuple[float, float]] | None:
    """Polygon vertices for ``cls`` (``None`` for a circle), ``size`` = diameter."""
    r = size / 2
    if cls == 0:
        return None
    if cls == 1:  # square, rotated up to +-25 degrees
        rot = math.pi / 4 + rng.uniform(-0.44, 0.44)
        return _regular_polygon(cx, cy, r * math.sqrt(2) * 0.75, 4, rot)
    if cls == 2:  # triangle, arbitrary rotation
        return _regular_polygon(cx, cy, r, 3, rng.uniform(0, 2 * math.pi))
    return _regular_polygon(cx, cy, r, 5, rng.uniform(0, 2 * math.pi), inner=rng.uniform(0.4, 0.5))


def _overlap_ok(box: tuple[float, float, float, float], others: list[Box]) -> bool:
    """Allow only mild partial overlap: each object must stay >= 70% visible."""
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    for o in others:
        iw = min(x1, o.x1) - max(x0, o.x0)
        ih = min(y1, o.y1) - max(y0, o.y0)
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        o_area = (o.x1 - o.x0) * (o.y1 - o.y0)
        if inter > 0.3 * min(area, o_area):
            return False
    return True


def _object_colour(rng: np.random.Generator, bg_mean: np.ndarray) -> tuple[int, int, int]:
    """A random colour that contrasts with the local background mean."""
    import numpy as np

    best = None
    best_d = -1.0
    for _ in range(12):
        c = rng.uniform(0, 255, size=3)
        d = float(np.linalg.norm(c - bg_mean))
        if d > best_d:
            best, best_d = c, d
        if d > 120:
            break
    assert best is not None
    return (int(best[0]), int(best[1]), int(best[2]))


def render_image(
    rng: np.random.Generator, imgsz: int = DEFAULT_IMGSZ
) -> tuple[np.ndarray, list[Box]]:
    """Render one synthetic image.

    Args:
        rng: Source of randomness (fully determines the output).
        imgsz: Nominal image size; actual sides are ``0.8..1.0 * imgsz``.

    Returns:
        ``(image, boxes)`` with ``image`` a uint8 HxWx3 RGB array.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    width, height = _image_size(rng, imgsz)
    bg = _background(rng, width, height)
    canvas = Image.fromarray(bg.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)

    # Distractor lines (drawn under the objects).
    for _ in range(int(rng.integers(4, 14))):
        p = rng.uniform(0, 1, size=4) * [width, height, width, height]
        col = tuple(int(v) for v in rng.uniform(0, 255, size=3))
        draw.line([(p[0], p[1]), (p[2], p[3])], fill=col, width=int(rng.integers(1, 4)))

    boxes: list[Box] = []
    n_obj = int(rng.integers(2, 7))
    min_side = min(width, height)
    for _ in range(n_obj):
        for _attempt in range(20):
            cls = int(rng.integers(len(CLASS_NAMES)))
            size = float(rng.uniform(0.10, 0.34)) * min_side
            cx = float(rng.uniform(size / 2 + 1, width - size / 2 - 1))
            cy = float(rng.uniform(size / 2 + 1, height - size / 2 - 1))
            pts = _shape_outline(rng, cls, cx, cy, size)
            if pts is None:
                r = size / 2
                bbox = (cx - r, cy - r, cx + r, cy + r)
            else:
                xs = [p[0] for p in pts]
                ys = [p[1] for p in pts]
                bbox = (min(xs), min(ys), max(xs), max(ys))
            bbox = (
                max(0.0, bbox[0]),
                max(0.0, bbox[1]),
                min(float(width), bbox[2]),
                min(float(height), bbox[3]),
            )
            if bbox[2] - bbox[0] < 6 or bbox[3] - bbox[1] < 6:
                continue
            if not _overlap_ok(bbox, boxes):
                continue
            ix0, iy0 = int(bbox[0]), int(bbox[1])
            ix1, iy1 = max(ix0 + 1, int(bbox[2])), max(iy0 + 1, int(bbox[3]))
            local = (
                np.asarray(canvas.crop((ix0, iy0, ix1, iy1)), dtype=np.float32)
                .reshape(-1, 3)
                .mean(axis=0)
            )
            fill = _object_colour(rng, local)
            outline = None
            if rng.uniform() < 0.4:
                outline = tuple(int(v * 0.5) for v in fill)
            if pts is None:
                draw.ellipse(bbox, fill=fill, outline=outline, width=2)
            else:
                draw.polygon(pts, fill=fill, outline=outline)
            boxes.append(Box(cls, *bbox))
            break

    # Pixel noise over everything (objects included), then a mild global tint.
    img = np.asarray(canvas, dtype=np.float32)
    sigma = float(rng.uniform(2.0, 7.0))
    img = img + rng.normal(0, sigma, size=img.shape).astype(np.float32)
    img = img * rng.uniform(0.85, 1.1, size=3).astype(np.float32)
    return img.clip(0, 255).astype(np.uint8), boxes
