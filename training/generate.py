#!/usr/bin/env python3
"""Deterministic synthetic surface-inspection image generator (numpy + Pillow only).

Draws a machined part (plate, bracket, flange, slotted plate) made of brushed
metal or matte/speckled plastic on a workbench/conveyor background, under an
uneven light with vignetting, sensor noise and slight defocus, and paints
surface defects onto the part:

    0 scratch  thin, long, (slightly curved) bright or dark line, tapered ends
    1 dent     round/elliptic depression, directional shading + lip highlight
    2 crack    dark, jagged, branching fracture line
    3 stain    irregular coloured blob (rust, oil, coolant residue, water mark)

Each bounding box is computed from the alpha mask of what was actually drawn,
so boxes are tight.  Output follows the Ultralytics dataset layout:

    DIR/images/000000.jpg   DIR/labels/000000.txt   DIR/data.yaml

Usage:
    python3 training/generate.py --out DIR --count N --seed S [--sizes 640x480,1280x720]
Same arguments -> byte-identical output (every image has its own RNG stream
derived from (seed, index), so --workers does not change the result).

Version 2 (robust) options, off by default; without them the output is byte for
byte the v1 generator's (see training/README.md, "Version 2 (robust)"):
    --camera-shifts    random per-image camera effects (defocus / motion blur,
                       exposure x0.4-1.8 with clipping, sensor noise, greyscale,
                       JPEG quality 40-95), probabilities in P_DEFOCUS.. below
    --hard-negatives   unlabelled blind/tapped/counterbored holes, grooves and
                       milled steps, printed/etched text and stickers on the part
    --multi-part P     a fraction P of the frames shows 2 or 4 parts
    --shift NAME       held-out sets: one fixed shift on every image
                       (none, grey, blur2, under05, over16, parts4)
These draw from their own RNG streams ([seed, index, k]).  Under --shift grey,
blur2, under05 or over16 image i is the default image i with the shift applied:
same part, defects and labels as the `--shift none` set of the same seed.  With
--hard-negatives the defects move (they keep clear of the look-alikes); the
camera effects alone change pixels only, never the labels.
"""
import argparse
import math
import os
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CLASSES = ["scratch", "dent", "crack", "stain"]
JPEG_QUALITY = 90
P_CLEAN = 0.35  # fraction of defect-free images


# ----------------------------------------------------------------------------- helpers
def smooth_noise(rng, h, w, cell):
    """Low-frequency noise, roughly N(0,1), of shape (h, w)."""
    gh = max(2, int(h / cell) + 2)
    gw = max(2, int(w / cell) + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    return np.asarray(Image.fromarray(g, mode="F").resize((w, h), Image.BICUBIC))


def blur_mask(m, radius):
    """Gaussian blur of a [0,1] mask via Pillow (8-bit precision is plenty for masks)."""
    im = Image.fromarray(np.clip(m * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(im.filter(ImageFilter.GaussianBlur(radius)), np.float32) / 255.0


def _box1d(a, r, axis):
    """Box filter of width 2r+1 along axis (edge-replicated), via cumulative sums."""
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
    n = a.shape[axis]
    hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return ((hi - lo) / (2 * r + 1)).astype(np.float32)


def blur_f(a, radius):
    """Approximate Gaussian blur (sigma=radius) of a 2-D float array."""
    a = a.astype(np.float32)
    if radius <= 0:
        return a
    if radius < 1.5:
        x = np.arange(-3, 4, dtype=np.float32)
        k = np.exp(-0.5 * (x / radius) ** 2)
        k /= k.sum()
        for axis in (0, 1):
            p = [(0, 0), (0, 0)]
            p[axis] = (3, 3)
            ap = np.pad(a, p, mode="edge")
            n = a.shape[axis]
            a = sum(k[i] * np.take(ap, np.arange(i, i + n), axis=axis) for i in range(7))
        return a.astype(np.float32)
    r = max(1, int(round((math.sqrt(4 * radius * radius + 1) - 1) / 2)))
    for _ in range(3):
        a = _box1d(a, r, 0)
        a = _box1d(a, r, 1)
    return a


def loguniform(rng, a, b):
    return float(math.exp(rng.uniform(math.log(a), math.log(b))))


# ----------------------------------------------------------------------------- scene
def make_background(rng, H, W, part_level):
    # keep a clear contrast with the part
    for _ in range(20):
        base = rng.uniform(25, 210)
        if abs(base - part_level) > 45:
            break
    tint = rng.uniform(-10, 10, 3)
    img = np.empty((H, W, 3), np.float32)
    img[:] = base + tint
    img += (smooth_noise(rng, H, W, W / 4) * rng.uniform(3, 12))[..., None]
    kind = rng.integers(3)
    if kind == 0:  # rubber conveyor belt: fine stripes
        period = rng.uniform(6, 20) * W / 640
        ang = rng.choice([0.0, math.pi / 2]) + rng.uniform(-0.05, 0.05)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        ph = (xx * math.cos(ang) + yy * math.sin(ang)) * (2 * math.pi / period)
        img += (np.sin(ph) * rng.uniform(2, 6))[..., None]
    elif kind == 1:  # rough table / mat
        n = blur_f(rng.standard_normal((H, W)).astype(np.float32), 0.8 * W / 640)
        img += (n * rng.uniform(4, 10))[..., None]
    return img


def part_mask(rng, pw, ph):
    """Supersampled part silhouette (float mask in [0,1], shape (ph, pw)) with holes."""
    ss = 2
    m = Image.new("L", (pw * ss, ph * ss), 0)
    d = ImageDraw.Draw(m)
    W2, H2 = pw * ss, ph * ss
    shape = rng.integers(4)
    holes = []
    r_c = int(min(W2, H2) * rng.uniform(0.03, 0.12))
    if shape == 0:  # plate
        d.rounded_rectangle([0, 0, W2 - 1, H2 - 1], radius=r_c, fill=255)
        hr = min(W2, H2) * rng.uniform(0.025, 0.05)
        if rng.random() < 0.8:
            mg = min(W2, H2) * 0.1
            for (x, y) in [(mg, mg), (W2 - mg, mg), (mg, H2 - mg), (W2 - mg, H2 - mg)]:
                holes.append((x, y, hr))
    elif shape == 1:  # L bracket
        tw = W2 * rng.uniform(0.35, 0.55)
        th = H2 * rng.uniform(0.35, 0.55)
        d.rounded_rectangle([0, 0, tw, H2 - 1], radius=r_c, fill=255)
        d.rounded_rectangle([0, H2 - th, W2 - 1, H2 - 1], radius=r_c, fill=255)
        hr = min(tw, th) * rng.uniform(0.06, 0.1)
        holes.append((tw / 2, H2 * 0.15, hr))
        holes.append((W2 * 0.85, H2 - th / 2, hr))
    elif shape == 2:  # flange / disc
        r = min(W2, H2) / 2 - 1
        cx, cy = W2 / 2, H2 / 2
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        holes.append((cx, cy, r * rng.uniform(0.12, 0.25)))
        nb = int(rng.integers(3, 7))
        br = r * rng.uniform(0.05, 0.08)
        a0 = rng.uniform(0, 2 * math.pi)
        for k in range(nb):
            a = a0 + 2 * math.pi * k / nb
            holes.append((cx + 0.78 * r * math.cos(a), cy + 0.78 * r * math.sin(a), br))
    else:  # slotted plate
        d.rounded_rectangle([0, 0, W2 - 1, H2 - 1], radius=r_c, fill=255)
        sl = W2 * rng.uniform(0.2, 0.35)
        sh = H2 * rng.uniform(0.06, 0.1)
        sx = W2 * rng.uniform(0.15, 0.5)
        sy = H2 * rng.uniform(0.2, 0.75)
        d.rounded_rectangle([sx, sy, sx + sl, sy + sh], radius=sh / 2, fill=0)
    for (x, y, r) in holes:
        d.ellipse([x - r, y - r, x + r, y + r], fill=0)
    m = m.resize((pw, ph), Image.BOX)
    return np.asarray(m, np.float32) / 255.0


def part_texture(rng, pw, ph, W):
    """Returns (rgb float32 (ph,pw,3), material, mean level)."""
    metal = rng.random() < 0.55
    if metal:
        level = rng.uniform(95, 200)
        col = np.array([level, level, level], np.float32) + rng.uniform(-6, 6, 3)
        if rng.random() < 0.12:  # brass-ish
            col *= np.array([1.05, 0.92, 0.65], np.float32)
        tex = np.empty((ph, pw, 3), np.float32)
        tex[:] = col
        # brushed: streaks along x (part frame), rotated later with the part
        cols = max(2, pw // int(rng.integers(25, 90)))
        streak = rng.standard_normal((ph, cols)).astype(np.float32)
        streak = np.asarray(Image.fromarray(streak, mode="F").resize((pw, ph), Image.BILINEAR))
        tex += (streak * rng.uniform(4, 11))[..., None]
        fine = rng.standard_normal((ph, max(2, pw // 4))).astype(np.float32)
        fine = np.asarray(Image.fromarray(fine, mode="F").resize((pw, ph), Image.BILINEAR))
        tex += (fine * rng.uniform(2, 5))[..., None]
        # broad specular band
        yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        a = rng.uniform(0, math.pi)
        pos = (xx - pw * rng.uniform(0.2, 0.8)) * math.cos(a) + (yy - ph * rng.uniform(0.2, 0.8)) * math.sin(a)
        band = np.exp(-(pos / (max(pw, ph) * rng.uniform(0.08, 0.3))) ** 2)
        tex += (band * rng.uniform(5, 30))[..., None]
    else:
        palette = [(35, 35, 38), (60, 62, 66), (215, 215, 210), (40, 70, 140), (50, 110, 60),
                   (200, 185, 150), (150, 40, 35), (225, 205, 60), (120, 120, 125)]
        base = np.array(palette[int(rng.integers(len(palette)))], np.float32) + rng.uniform(-12, 12, 3)
        tex = np.empty((ph, pw, 3), np.float32)
        tex[:] = base
        tex += (smooth_noise(rng, ph, pw, W / 6) * rng.uniform(2, 6))[..., None]
        speck = blur_f(rng.standard_normal((ph, pw)).astype(np.float32), 0.6)
        tex += (speck * rng.uniform(3, 8))[..., None]
        level = float(base.mean())
    return tex, metal, level


# ----------------------------------------------------------------------------- defects
def _polyline_alpha(pts, widths, x0, y0, w, h, ss=3):
    """Rasterise a polyline with per-segment widths into an antialiased alpha patch."""
    m = Image.new("L", (w * ss, h * ss), 0)
    d = ImageDraw.Draw(m)
    for i in range(len(pts) - 1):
        wd = max(1, int(round(widths[i] * ss)))
        p = [((pts[i][0] - x0) * ss, (pts[i][1] - y0) * ss), ((pts[i + 1][0] - x0) * ss, (pts[i + 1][1] - y0) * ss)]
        d.line(p, fill=255, width=wd)
        r = wd / 2.0
        for q in p:  # round joints
            d.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=255)
    m = m.resize((w, h), Image.BOX)
    return np.asarray(m, np.float32) / 255.0


def _pts_patch(pts, pad, H, W):
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0 = int(math.floor(min(xs) - pad))
    y0 = int(math.floor(min(ys) - pad))
    x1 = int(math.ceil(max(xs) + pad)) + 1
    y1 = int(math.ceil(max(ys) + pad)) + 1
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
        return None
    return x0, y0, x1 - x0, y1 - y0


def draw_scratch(rng, cx, cy, W, H):
    L = loguniform(rng, 0.04, 0.22) * W
    t = rng.uniform(0.003, 0.0055) * W
    a = rng.uniform(0, math.pi)
    bend = rng.uniform(-0.12, 0.12) * L
    n = 24
    pts, widths = [], []
    for i in range(n + 1):
        s = i / n - 0.5
        off = bend * (1 - (2 * s) ** 2)
        x = cx + s * L * math.cos(a) - off * math.sin(a)
        y = cy + s * L * math.sin(a) + off * math.cos(a)
        pts.append((x, y))
    for i in range(n):
        s = (i + 0.5) / n
        widths.append(t * (0.45 + 0.55 * math.sin(math.pi * s) ** 0.5))
    pp = _pts_patch(pts, t + 2, H, W)
    if pp is None:
        return None
    x0, y0, w, h = pp
    return x0, y0, _polyline_alpha(pts, widths, x0, y0, w, h)


def draw_crack(rng, cx, cy, W, H):
    L = loguniform(rng, 0.035, 0.14) * W
    t = rng.uniform(0.003, 0.005) * W
    step = 0.006 * W
    main = rng.uniform(0, 2 * math.pi)

    def walk(x, y, ang, length, jag):
        pts = [(x, y)]
        n = max(3, int(length / step))
        for _ in range(n):
            ang_i = ang + rng.normal(0, jag)
            x += step * math.cos(ang_i)
            y += step * math.sin(ang_i)
            pts.append((x, y))
        return pts

    # main crack grows both ways from the centre
    a_pts = walk(cx, cy, main, L / 2, 0.6)
    b_pts = walk(cx, cy, main + math.pi, L / 2, 0.6)
    trunk = b_pts[::-1] + a_pts[1:]
    n = len(trunk) - 1
    branches = [(trunk, [t * (0.35 + 0.65 * math.sin(math.pi * (i + 0.5) / n) ** 0.6) for i in range(n)])]
    for _ in range(int(rng.integers(0, 3))):
        k = int(rng.integers(n // 4, max(n // 4 + 1, 3 * n // 4)))
        bx, by = trunk[k]
        ba = main + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1) + (math.pi if rng.random() < 0.5 else 0)
        bp = walk(bx, by, ba, L * rng.uniform(0.15, 0.4), 0.6)
        m = len(bp) - 1
        branches.append((bp, [t * 0.6 * (1 - (i + 0.5) / m) + 0.25 * t for i in range(m)]))
    allpts = [p for b in branches for p in b[0]]
    pp = _pts_patch(allpts, t + 2, H, W)
    if pp is None:
        return None
    x0, y0, w, h = pp
    alpha = np.zeros((h, w), np.float32)
    for pts, widths in branches:
        alpha = np.maximum(alpha, _polyline_alpha(pts, widths, x0, y0, w, h))
    return x0, y0, alpha


def draw_dent(rng, cx, cy, W, H):
    r = loguniform(rng, 0.013, 0.045) * W
    asp = rng.uniform(0.7, 1.0)
    rot = rng.uniform(0, math.pi)
    ext = r * 1.08 + 2
    x0, y0 = int(math.floor(cx - ext)), int(math.floor(cy - ext))
    x1, y1 = int(math.ceil(cx + ext)) + 1, int(math.ceil(cy + ext)) + 1
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    u = (dx * math.cos(rot) + dy * math.sin(rot)) / r
    v = (-dx * math.sin(rot) + dy * math.cos(rot)) / (r * asp)
    d = np.sqrt(u * u + v * v)
    return x0, y0, (u, v, d, r, rot, asp)


def draw_stain(rng, cx, cy, W, H):
    R = loguniform(rng, 0.016, 0.06) * W
    asp = rng.uniform(0.55, 1.0)
    rot = rng.uniform(0, math.pi)
    ks = np.arange(2, 7)
    amps = rng.uniform(0, 0.16, len(ks)) / (ks / 2.0)
    phs = rng.uniform(0, 2 * math.pi, len(ks))
    ext = R * (1 + amps.sum()) + 3
    x0, y0 = int(math.floor(cx - ext)), int(math.floor(cy - ext))
    x1, y1 = int(math.ceil(cx + ext)) + 1, int(math.ceil(cy + ext)) + 1
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    u = dx * math.cos(rot) + dy * math.sin(rot)
    v = (-dx * math.sin(rot) + dy * math.cos(rot)) / asp
    d = np.sqrt(u * u + v * v)
    th = np.arctan2(v, u)
    Rt = R * (1 + sum(a * np.cos(k * th + p) for a, k, p in zip(amps, ks, phs)))
    edge = rng.uniform(0.8, 2.0) * W / 640
    alpha = np.clip((Rt - d) / edge + 0.5, 0, 1).astype(np.float32)
    return x0, y0, alpha, d / np.maximum(Rt, 1e-3)


STAIN_COLORS = [(150, 72, 28), (120, 55, 25), (35, 30, 25), (60, 45, 30), (205, 195, 150), (90, 95, 60)]


def apply_defect(rng, img, cls, cx, cy, W, H, valid, boxes, light):
    """Try to draw one defect at (cx, cy). Returns box (x1,y1,x2,y2) or None."""
    if cls == 0:
        res = draw_scratch(rng, cx, cy, W, H)
    elif cls == 2:
        res = draw_crack(rng, cx, cy, W, H)
    elif cls == 1:
        res = draw_dent(rng, cx, cy, W, H)
    else:
        res = draw_stain(rng, cx, cy, W, H)
    if res is None:
        return None
    x0, y0 = res[0], res[1]
    if cls == 1:
        u, v, d, r, rot, asp = res[2]
        h, w = d.shape
        wd = max(1.2 / r, 0.05)  # lip ring half-width in normalised radius units
        cover = np.clip((1.0 + 0.5 * wd - d) * r + 0.5, 0, 1).astype(np.float32)
    elif cls == 3:
        cover = res[2]
        h, w = cover.shape
    else:
        cover = res[2]
        h, w = cover.shape
    vpatch = valid[y0:y0 + h, x0:x0 + w]
    tot = cover.sum()
    if tot < 4 or (cover * vpatch).sum() < 0.995 * tot:
        return None
    ys, xs = np.nonzero(cover > 0.5)
    if len(xs) == 0:
        return None
    box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
    bw, bh = box[2] - box[0], box[3] - box[1]
    if max(bw, bh) < 0.02 * W:
        return None
    mg = 0.01 * W
    for b in boxes:
        if box[0] < b[2] + mg and b[0] < box[2] + mg and box[1] < b[3] + mg and b[1] < box[3] + mg:
            return None

    patch = img[y0:y0 + h, x0:x0 + w]
    local = float(patch.mean())
    if cls == 0:  # scratch: exposed bright material (dark on very bright surfaces)
        if local > 175 or (local > 120 and rng.random() < 0.3):
            delta = -rng.uniform(55, 90)
        else:
            delta = rng.uniform(55, 95)
        col = np.array([1.0, 1.0, 1.0], np.float32) + rng.uniform(-0.05, 0.05, 3)
        patch += (cover * delta)[..., None] * col
    elif cls == 2:  # crack: dark fracture
        k = rng.uniform(0.65, 0.85)
        patch *= (1 - k * cover)[..., None]
        patch += (cover * rng.uniform(3, 12))[..., None]
    elif cls == 1:  # dent: directional shading of a shallow depression + lip
        lx, ly = light
        # light direction expressed in dent-local (u, v) frame
        lu = lx * math.cos(rot) + ly * math.sin(rot)
        lv = (-lx * math.sin(rot) + ly * math.cos(rot)) / asp
        inside = np.clip((1.0 - d) * r + 0.5, 0, 1)
        A = rng.uniform(45, 75)
        shade = -(u * lu + v * lv) * A - rng.uniform(8, 20)
        wd = max(1.2 / r, 0.05)
        ring = np.clip(1 - np.abs(d - 1.0) / wd, 0, 1)
        lip = ring * rng.uniform(15, 30) * np.sign(np.clip(u * lu + v * lv, -1, 1) + 1e-3)
        patch += (shade * inside + lip * (1 - inside * 0.5))[..., None]
    else:  # stain
        alpha, dn = res[2], res[3]
        for _ in range(10):
            col = np.array(STAIN_COLORS[int(rng.integers(len(STAIN_COLORS)))], np.float32) + rng.uniform(-12, 12, 3)
            if np.abs(col - patch.reshape(-1, 3).mean(0)).max() > 55:
                break
        op = rng.uniform(0.55, 0.85)
        if rng.random() < 0.3:  # water-mark: darker rim
            prof = 0.55 + 0.45 * np.clip((dn - 0.6) / 0.4, 0, 1)
        else:
            prof = 0.85 + 0.15 * np.clip(smooth_noise(rng, h, w, max(4, w / 3)), -1, 1)
        a = (alpha * op * prof)[..., None]
        tex = patch / max(local, 1.0)
        patch[:] = patch * (1 - a) + (col * (0.8 + 0.2 * tex)) * a
    return box


# ----------------------------------------------------------------------------- image
def render(seed, index, sizes, key=None, hard=None):
    """One scene.  key: RNG key (default [seed, index]); hard: an RNG for hard
    negatives (None = none drawn, which is the v1 generator, byte for byte)."""
    rng = np.random.default_rng([seed, index] if key is None else key)
    W, H = sizes[int(rng.integers(len(sizes)))]

    # part
    ang = rng.uniform(-30, 30)
    pw = int(W * rng.uniform(0.5, 0.8))
    ph = int(H * rng.uniform(0.55, 0.85))
    if rng.random() < 0.5:
        pw, ph = int(pw * 0.85), int(ph * 0.85)
    tex, metal, level = part_texture(rng, pw, ph, W)
    mask = part_mask(rng, pw, ph)
    # bevel: darker rim / highlight at edges
    soft = blur_mask(mask, 0.012 * W)
    rim = np.clip(mask - soft, 0, 1)
    tex *= (1 - rng.uniform(0.4, 1.2) * rim)[..., None]
    tex_im = Image.fromarray(np.clip(tex, 0, 255).astype(np.uint8))
    m_im = Image.fromarray((mask * 255).astype(np.uint8))
    tex_im = tex_im.rotate(ang, resample=Image.BILINEAR, expand=True)
    m_im = m_im.rotate(ang, resample=Image.BILINEAR, expand=True)
    tw, th = tex_im.size
    ox = int(round((W - tw) / 2 + rng.uniform(-0.08, 0.08) * W))
    oy = int(round((H - th) / 2 + rng.uniform(-0.08, 0.08) * H))
    part = Image.new("RGB", (W, H))
    part.paste(tex_im, (ox, oy))
    pm = Image.new("L", (W, H), 0)
    pm.paste(m_im, (ox, oy))
    pmask = np.asarray(pm, np.float32) / 255.0

    img = make_background(rng, H, W, level)
    # drop shadow
    sh = blur_mask(np.roll(np.roll(pmask, int(0.012 * W), 1), int(0.012 * W), 0), 0.01 * W)
    img *= (1 - rng.uniform(0.25, 0.5) * sh)[..., None]
    img = img * (1 - pmask[..., None]) + np.asarray(part, np.float32) * pmask[..., None]

    # light direction (image frame), shared by gradient and dent shading
    la = rng.uniform(0, 2 * math.pi)
    light = (math.cos(la), math.sin(la))

    # valid region for defects: well inside the part
    er = int(0.012 * W) | 1
    valid_im = Image.fromarray(((pmask > 0.99) * 255).astype(np.uint8)).filter(ImageFilter.BoxBlur(er // 2))
    valid = (np.asarray(valid_im) >= 254).astype(np.float32)
    vy, vx = np.nonzero(valid[::4, ::4] > 0.5)
    if hard is not None:  # unlabelled look-alikes; defects keep clear of them
        valid = add_hard_negatives(hard, img, pmask, valid, W, H, light, ang)
        vy, vx = np.nonzero(valid[::4, ::4] > 0.5)

    labels = []
    boxes = []
    if rng.random() >= P_CLEAN and len(vx) > 0:
        n = int(rng.choice([1, 2, 3, 4, 5], p=[0.45, 0.28, 0.15, 0.08, 0.04]))
        for _ in range(n):
            cls = int(rng.integers(4))
            for _try in range(40):
                k = int(rng.integers(len(vx)))
                cx = vx[k] * 4 + rng.uniform(0, 4)
                cy = vy[k] * 4 + rng.uniform(0, 4)
                box = apply_defect(rng, img, cls, cx, cy, W, H, valid, boxes, light)
                if box is not None:
                    boxes.append(box)
                    labels.append((cls, box))
                    break

    # harmless distractors: dust specks (tiny, not labelled)
    for _ in range(int(rng.integers(0, 6))):
        x, y = int(rng.integers(2, W - 2)), int(rng.integers(2, H - 2))
        img[y - 1:y + 1, x - 1:x + 1] += rng.uniform(-25, 25)

    # lighting: linear gradient + vignetting
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    nx, ny = (xx - W / 2) / (W / 2), (yy - H / 2) / (W / 2)
    g = 1 + rng.uniform(0.05, 0.3) * (nx * light[0] + ny * light[1])
    vig = 1 - rng.uniform(0.1, 0.45) * (nx * nx + ny * ny) / 1.56
    gain = rng.uniform(0.8, 1.15)
    img *= (g * vig * gain)[..., None]
    # slight defocus + sensor noise
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    br = rng.uniform(0.2, 0.9) * W / 640
    pil = pil.filter(ImageFilter.GaussianBlur(br))
    img = np.asarray(pil, np.float32)
    sigma = rng.uniform(1.5, 5.0)
    img = img + rng.standard_normal((H, W, 1), dtype=np.float32) * sigma + rng.standard_normal((H, W, 3), dtype=np.float32) * sigma * 0.4
    out = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    return out, labels, (W, H)


# ----------------------------------------------------------------------------- v2: hard negatives
# Unlabelled things on the part that look like defects.  Only drawn with
# --hard-negatives; each kind is tried independently per image (per part).
P_HN_HOLES = 0.5    # 1-3 blind holes: chamfered, tapped (thread rings) or counterbored
P_HN_MACHINED = 0.35  # one straight groove or milled step across the whole part
P_HN_TEXT = 0.4     # 1-2 markings: etched/inked text on the part, or a sticker label (text, barcode)
_TEXT_FORMATS = ["P/N {d4}-{L}{d1}", "S/N {d6}", "LOT {L}{L}{d3}", "REV {L}", "{d2}/{d2}/{d2}", "QC OK",
                 "{L}{L}-{d3}", "MADE IN {L}{L}", "{d4}{L}", "M{d1} x {d2}", "CE {d4}", "#{d5}"]
_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def _random_text(rng):
    f = _TEXT_FORMATS[int(rng.integers(len(_TEXT_FORMATS)))]
    out = []
    i = 0
    while i < len(f):
        if f[i] == "{":
            j = f.index("}", i)
            t = f[i + 1:j]
            if t == "L":
                out.append(_LETTERS[int(rng.integers(len(_LETTERS)))])
            else:
                out.append("".join(str(int(v)) for v in rng.integers(0, 10, int(t[1:]))))
            i = j + 1
        else:
            out.append(f[i])
            i += 1
    return "".join(out)


def _fits(cover, x0, y0, valid, foot):
    """cover lies (>= 99.5 %) inside valid and does not touch earlier footprints."""
    h, w = cover.shape
    H, W = valid.shape
    if x0 < 0 or y0 < 0 or x0 + w > W or y0 + h > H:
        return False
    tot = cover.sum()
    if tot < 4:
        return False
    return (cover * valid[y0:y0 + h, x0:x0 + w]).sum() >= 0.995 * tot and (cover * foot[y0:y0 + h, x0:x0 + w]).sum() == 0


def _hn_hole(rng, img, cx, cy, W, light, valid, foot):
    r = loguniform(rng, 0.012, 0.045) * W
    ext = r + 2
    x0, y0 = int(math.floor(cx - ext)), int(math.floor(cy - ext))
    n = int(math.ceil(2 * ext)) + 2
    yy, xx = np.mgrid[y0:y0 + n, x0:x0 + n].astype(np.float32)
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    d = np.sqrt(dx * dx + dy * dy) + 1e-3
    cover = np.clip(r - d + 0.5, 0, 1).astype(np.float32)
    if not _fits(cover, x0, y0, valid, foot):
        return False
    kind = int(rng.integers(3))  # 0 chamfered blind hole, 1 tapped, 2 counterbore
    r_in = r * rng.uniform(0.55, 0.8)
    inner = np.clip(r_in - d + 0.5, 0, 1)
    ring = cover - inner
    lit = (dx * light[0] + dy * light[1]) / d  # +1 on the side towards the light
    patch = img[y0:y0 + n, x0:x0 + n]
    if kind == 2:  # counterbore: flat lower annulus, crisp bright rim, dark bore
        ring_val = patch * rng.uniform(0.55, 0.8) + (np.clip(1 - np.abs(d - r) / 1.2, 0, 1) * rng.uniform(20, 45))[..., None]
    else:  # conical chamfer, bright machined finish shaded by the light
        ring_val = patch * 0.6 + (rng.uniform(50, 90) + rng.uniform(20, 45) * -lit)[..., None]
    dark = rng.uniform(0.12, 0.4) * (1 + 0.35 * lit * (d / r_in))
    if kind == 1:  # threads: concentric bright/dark rings
        period = max(2.0, r_in * rng.uniform(0.12, 0.22))
        dark = dark * (1 + 0.45 * np.sin(2 * math.pi * d / period))
    in_val = patch * dark[..., None] + rng.uniform(3, 15)
    patch[:] = patch * (1 - cover)[..., None] + ring_val * ring[..., None] + in_val * inner[..., None]
    foot[y0:y0 + n, x0:x0 + n] = np.maximum(foot[y0:y0 + n, x0:x0 + n], cover)
    return True


def _hn_machined(rng, img, pmask, cx, cy, W, H, light, ang, foot):
    a = -math.radians(ang) + (0 if rng.random() < 0.5 else math.pi / 2)
    if rng.random() < 0.25:
        a = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    nx, ny = -math.sin(a), math.cos(a)  # unit normal of the line
    s = (xx - cx) * nx + (yy - cy) * ny  # signed distance, px
    inside = np.clip((pmask - 0.9) * 10, 0, 1)  # only on the part, fading at its rim
    sgn = 1.0 if (nx * light[0] + ny * light[1]) > 0 else -1.0
    if rng.random() < 0.5:  # groove: dark flat bottom, one lit and one shaded wall
        w = rng.uniform(0.004, 0.014) * W
        core = np.clip(w / 2 - np.abs(s) + 0.5, 0, 1)
        e = max(1.0, 0.0015 * W)
        walls = np.exp(-((s - w / 2) / e) ** 2) - np.exp(-((s + w / 2) / e) ** 2)
        delta = -core * rng.uniform(20, 55) + walls * sgn * rng.uniform(25, 55)
        band = np.abs(s) < w / 2 + 0.01 * W
        img *= (1 + (core * rng.uniform(-0.35, -0.1)) * inside)[..., None]
    else:  # milled step: one side at another level, a bright (or dark) edge line
        e = max(1.0, rng.uniform(0.001, 0.003) * W)
        side = np.clip(s / 1.5 + 0.5, 0, 1)
        img *= (1 + side * rng.uniform(-0.18, 0.15) * inside)[..., None]
        delta = np.exp(-(s / e) ** 2) * rng.choice([-1.0, 1.0]) * rng.uniform(30, 70)
        band = np.abs(s) < e * 2 + 0.01 * W
    img += (delta * inside)[..., None]
    foot[:] = np.maximum(foot, band * (pmask > 0.5))
    return True


def _text_mask(rng, W, ang):
    """Rasterised text (1-2 lines), scaled and rotated: float mask in [0,1]."""
    font = ImageFont.load_default()
    lines = [_random_text(rng) for _ in range(1 if rng.random() < 0.6 else 2)]
    tw = max(int(font.getbbox(t)[2]) for t in lines) + 2
    th = 12 * len(lines) + 1
    m = Image.new("L", (tw, th), 0)
    d = ImageDraw.Draw(m)
    for i, t in enumerate(lines):
        d.text((1, 1 + 12 * i), t, fill=255, font=font)
    scale = rng.uniform(0.012, 0.03) * W / 11.0  # cap height of a line, relative to width
    m = m.resize((max(2, int(tw * scale)), max(2, int(th * scale))), Image.BILINEAR)
    if rng.random() < 0.5:  # a bolder stroke
        m = m.filter(ImageFilter.MaxFilter(3))
    return m


def _hn_text(rng, img, cx, cy, W, ang, valid, foot):
    rot = ang + (0 if rng.random() < 0.7 else rng.choice([90, -90, 180])) + rng.uniform(-4, 4)
    tm = _text_mask(rng, W, ang)
    sticker = rng.random() < 0.45
    if sticker:  # a label: a light rectangle with dark print and maybe a barcode
        tw, th = tm.size
        pad = max(2, int(0.25 * th))
        bh = int(th * rng.uniform(0.8, 1.5)) if rng.random() < 0.5 else 0
        lab = Image.new("L", (tw + 2 * pad, th + 2 * pad + bh + (pad if bh else 0)), 0)
        ink = Image.new("L", lab.size, 0)
        ink.paste(tm, (pad, pad))
        if bh:
            dd = ImageDraw.Draw(ink)
            x = pad
            bw = max(1, int(round(0.004 * W * rng.uniform(0.5, 1.0))))
            while x < lab.size[0] - pad - 3 * bw:
                k = int(rng.integers(1, 4))
                if rng.random() < 0.55:
                    dd.rectangle([x, th + 2 * pad, x + k * bw - 1, th + 2 * pad + bh - 1], fill=255)
                x += k * bw
        ImageDraw.Draw(lab).rounded_rectangle([0, 0, lab.size[0] - 1, lab.size[1] - 1], radius=pad, fill=255)
        lab = lab.rotate(rot, resample=Image.BILINEAR, expand=True)
        ink = ink.rotate(rot, resample=Image.BILINEAR, expand=True)
        cover = np.asarray(lab, np.float32) / 255.0
        inkm = np.asarray(ink, np.float32) / 255.0
    else:
        tm = tm.rotate(rot, resample=Image.BILINEAR, expand=True)
        cover = np.asarray(tm, np.float32) / 255.0
        inkm = cover
    h, w = cover.shape
    x0, y0 = int(cx - w / 2), int(cy - h / 2)
    if not _fits(cover, x0, y0, valid, foot):
        return False
    patch = img[y0:y0 + h, x0:x0 + w]
    if sticker:
        paper = np.array([(235, 235, 228), (240, 215, 60), (200, 202, 205), (250, 250, 250)][int(rng.integers(4))], np.float32)
        paper = paper * rng.uniform(0.85, 1.0)
        patch[:] = patch * (1 - cover)[..., None] + paper * cover[..., None]
        col = np.array([20, 20, 25], np.float32) + rng.uniform(0, 20)
        op = rng.uniform(0.8, 0.95)
    else:  # etched / printed directly on the part: dark or white ink
        local = float(patch.mean())
        if local > 110 or rng.random() < 0.3:
            col = np.full(3, rng.uniform(15, 60), np.float32)
        else:
            col = np.full(3, rng.uniform(195, 240), np.float32)
        op = rng.uniform(0.55, 0.9)
    a = (inkm * op)[..., None]
    patch[:] = patch * (1 - a) + col * a
    foot[y0:y0 + h, x0:x0 + w] = np.maximum(foot[y0:y0 + h, x0:x0 + w], cover)
    return True


def add_hard_negatives(rng, img, pmask, valid, W, H, light, ang):
    """Draw holes, machined grooves/steps and text on the part (in place, unlabelled).
    Returns the defect-valid mask minus their footprints grown by ~1 % of the width."""
    foot = np.zeros((H, W), np.float32)
    vy, vx = np.nonzero(valid[::4, ::4] > 0.5)
    if len(vx) == 0:
        return valid

    def centre():
        k = int(rng.integers(len(vx)))
        return vx[k] * 4 + rng.uniform(0, 4), vy[k] * 4 + rng.uniform(0, 4)

    if rng.random() < P_HN_HOLES:
        for _ in range(int(rng.integers(1, 4))):
            for _try in range(15):
                cx, cy = centre()
                if _hn_hole(rng, img, cx, cy, W, light, valid, foot):
                    break
    if rng.random() < P_HN_TEXT:
        for _ in range(1 if rng.random() < 0.7 else 2):
            for _try in range(15):
                cx, cy = centre()
                if _hn_text(rng, img, cx, cy, W, rng.uniform(-30, 30) if rng.random() < 0.2 else ang, valid, foot):
                    break
    if rng.random() < P_HN_MACHINED:
        cx, cy = centre()
        _hn_machined(rng, img, pmask, cx, cy, W, H, light, ang, foot)
    grown = blur_mask(np.clip(foot, 0, 1), max(1.0, 0.005 * W)) > 0.02
    return valid * (1 - grown.astype(np.float32))


# ----------------------------------------------------------------------------- v2: camera shifts
# --camera-shifts: applied to every image after it is rendered, each step drawn
# independently with its own probability, in this order (what a camera does):
P_DEFOCUS = 0.30      # Gaussian defocus, radius U(0.3, 2.5) px (Pillow GaussianBlur, native pixels)
P_MOTION = 0.12       # else: linear motion blur, length U(2, 9) px, any direction
P_EXPOSURE = 0.60     # exposure x[0.4, 1.8] (log-uniform), then clipped to 0..255
P_NOISE = 0.50        # extra sensor noise: read noise U(1, 6) + shot noise, luma and some chroma
P_GREY = 0.20         # monochrome camera: luma only, saved as a 1-channel JPEG
P_JPEG = 0.50         # JPEG quality U{40..95} (else the default 90)
# --shift NAME (held-out sets): one fixed shift on every image, nothing random.
SHIFTS = {
    "none": "no change (identical to the default output)",
    "grey": "monochrome: Pillow convert('L') (ITU-R 601 luma), 1-channel JPEG",
    "blur2": "Gaussian blur radius 2 px (Pillow GaussianBlur(2)) at native resolution",
    "under05": "exposure x0.5",
    "over16": "exposure x1.6, clipped at 255",
    "parts4": "4 parts per frame (2x2 grid of scenes; use --sizes 2448x2048)",
}


def motion_blur(a, length, angle):
    """Average of the image shifted along a line of `length` px (edge-replicated)."""
    n = max(2, int(math.ceil(length)) + 1)
    H, W = a.shape[:2]
    p = int(math.ceil(length / 2)) + 1
    ap = np.pad(a, [(p, p), (p, p)] + [(0, 0)] * (a.ndim - 2), mode="edge")
    acc = np.zeros(a.shape, np.float32)
    for t in np.linspace(-length / 2, length / 2, n):
        dx, dy = int(round(t * math.cos(angle))), int(round(t * math.sin(angle)))
        acc += ap[p + dy:p + dy + H, p + dx:p + dx + W]
    return acc / n


def exposure(im, f):
    a = np.asarray(im, np.float32) * f
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), im.mode)


def camera_shift(rng, im):
    """Random camera effects on a rendered RGB image. Returns (image, JPEG quality, description)."""
    desc = []
    if rng.random() < P_DEFOCUS:
        r = rng.uniform(0.3, 2.5)
        im = im.filter(ImageFilter.GaussianBlur(r))
        desc.append("defocus=%.2f" % r)
    elif rng.random() < P_MOTION / (1 - P_DEFOCUS):
        L, a = rng.uniform(2, 9), rng.uniform(0, math.pi)
        im = Image.fromarray(np.clip(motion_blur(np.asarray(im, np.float32), L, a) + 0.5, 0, 255).astype(np.uint8))
        desc.append("motion=%.1f@%.0f" % (L, math.degrees(a)))
    a = np.asarray(im, np.float32)
    if rng.random() < P_EXPOSURE:
        f = loguniform(rng, 0.4, 1.8)
        a = np.clip(a * f, 0, 255)
        desc.append("exposure=%.2f" % f)
    if rng.random() < P_NOISE:
        H, W = a.shape[:2]
        read = rng.uniform(1, 6)
        shot = rng.uniform(0, 0.5)  # sigma = shot * sqrt(value)
        sd = np.sqrt(read * read + shot * shot * a.mean(2, keepdims=True))
        a = a + sd * (rng.standard_normal((H, W, 1), dtype=np.float32) + 0.4 * rng.standard_normal((H, W, 3), dtype=np.float32))
        desc.append("noise=%.1f+%.2f" % (read, shot))
    im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))
    if rng.random() < P_GREY:
        im = im.convert("L")
        desc.append("grey")
    q = JPEG_QUALITY
    if rng.random() < P_JPEG:
        q = int(rng.integers(40, 96))
    desc.append("q=%d" % q)
    return im, q, " ".join(desc)


def fixed_shift(name, im):
    if name == "grey":
        return im.convert("L")
    if name == "blur2":
        return im.filter(ImageFilter.GaussianBlur(2))
    if name == "under05":
        return exposure(im, 0.5)
    if name == "over16":
        return exposure(im, 1.6)
    return im


def render_parts(seed, index, W, H, nx, ny, hard_seed=None):
    """nx x ny parts in one W x H frame: each cell is its own scene (like a tray with
    compartments); labels are offset into the frame."""
    cw, ch = W // nx, H // ny
    frame = Image.new("RGB", (W, H))
    labels = []
    for c in range(nx * ny):
        hard = None if hard_seed is None else np.random.default_rng([hard_seed, index, 32 + c])
        im, lb, _ = render(seed, index, [(cw, ch)], key=[seed, index, 16 + c], hard=hard)
        ox, oy = (c % nx) * cw, (c // nx) * ch
        frame.paste(im, (ox, oy))
        for cls, (x1, y1, x2, y2) in lb:
            labels.append((cls, (x1 + ox, y1 + oy, x2 + ox, y2 + oy)))
    return frame, labels, (W, H)


def make_image(seed, index, sizes, opts):
    """Returns (PIL image, labels, (W, H), JPEG quality, description or None)."""
    if not opts:  # the v1 generator
        im, labels, wh = render(seed, index, sizes)
        return im, labels, wh, JPEG_QUALITY, None
    shift = opts.get("shift", "none")
    if shift == "parts4":
        W, H = sizes[int(np.random.default_rng([seed, index, 5]).integers(len(sizes)))]
        im, labels, wh = render_parts(seed, index, W, H, 2, 2)
        return im, labels, wh, JPEG_QUALITY, shift
    if shift != "none":
        im, labels, wh = render(seed, index, sizes)
        return fixed_shift(shift, im), labels, wh, JPEG_QUALITY, shift
    # training-set options: own RNG streams, so the base scene RNG is untouched
    xr = np.random.default_rng([seed, index, 7])
    hard = np.random.default_rng([seed, index, 11]) if opts.get("hard") else None
    desc = []
    if xr.random() < opts.get("multi", 0.0):
        W, H = sizes[int(xr.integers(len(sizes)))]
        nx, ny = (2, 2) if xr.random() < 0.4 else ((2, 1) if W >= H else (1, 2))
        im, labels, wh = render_parts(seed, index, W, H, nx, ny, hard_seed=seed if hard is not None else None)
        desc.append("parts=%dx%d" % (nx, ny))
    else:
        im, labels, wh = render(seed, index, sizes, hard=hard)
    q = JPEG_QUALITY
    if opts.get("camera"):
        im, q, d = camera_shift(np.random.default_rng([seed, index, 9]), im)
        desc.append(d)
    return im, labels, wh, q, " ".join(desc) or "-"


def _job(args):
    seed, index, sizes, out, opts = args
    im, labels, (W, H), quality, desc = make_image(seed, index, sizes, opts)
    name = "%06d" % index
    im.save(os.path.join(out, "images", name + ".jpg"), quality=quality)
    lines = []
    for cls, (x1, y1, x2, y2) in labels:
        lines.append("%d %.6f %.6f %.6f %.6f" % (cls, (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H))
    with open(os.path.join(out, "labels", name + ".txt"), "w") as f:
        f.write("".join(l + "\n" for l in lines))
    if desc is not None:
        return len(labels), "%s %dx%d %d %s" % (name, W, H, len(labels), desc)
    return len(labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--start", type=int, default=0, help="first image index (for appending)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    v2 = ap.add_argument_group("version 2 (robust) options; without them the output is the v1 generator's, byte for byte")
    v2.add_argument("--camera-shifts", action="store_true",
                    help="random camera effects per image: defocus p=%.2f / motion blur p=%.2f, exposure x0.4-1.8 p=%.2f, "
                         "sensor noise p=%.2f, greyscale p=%.2f, JPEG quality 40-95 p=%.2f" % (P_DEFOCUS, P_MOTION, P_EXPOSURE, P_NOISE, P_GREY, P_JPEG))
    v2.add_argument("--hard-negatives", action="store_true",
                    help="unlabelled look-alikes on the part: blind/tapped/counterbored holes p=%.2f, groove or milled step p=%.2f, "
                         "text or sticker p=%.2f" % (P_HN_HOLES, P_HN_MACHINED, P_HN_TEXT))
    v2.add_argument("--multi-part", type=float, default=0.0, metavar="P",
                    help="fraction of frames with several parts (2 side by side, or 2x2 with probability 0.4)")
    v2.add_argument("--shift", choices=sorted(SHIFTS), default=None,
                    help="held-out mode: one fixed shift on every image (" + "; ".join("%s: %s" % kv for kv in SHIFTS.items()) + ")")
    a = ap.parse_args()
    if a.shift and (a.camera_shifts or a.hard_negatives or a.multi_part > 0):
        ap.error("--shift (held-out sets) cannot be combined with the training-set options")
    opts = {}
    if a.shift and a.shift != "none":
        opts = {"shift": a.shift}
    elif a.camera_shifts or a.hard_negatives or a.multi_part > 0:
        opts = {"camera": a.camera_shifts, "hard": a.hard_negatives, "multi": a.multi_part}
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",")]
    os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "labels"), exist_ok=True)
    jobs = [(a.seed, i, sizes, a.out, opts) for i in range(a.start, a.start + a.count)]
    if a.workers > 1:
        with Pool(a.workers) as p:
            counts = p.map(_job, jobs, chunksize=8)
    else:
        counts = [_job(j) for j in jobs]
    if opts:  # what was applied to each image: DIR/shifts.txt (not written for the v1 output)
        with open(os.path.join(a.out, "shifts.txt" if a.start == 0 else "shifts-%d.txt" % a.start), "w") as f:
            f.write("# generate.py %s\n" % " ".join(sys.argv[1:]))
            f.write("".join(c[1] + "\n" for c in counts))
        counts = [c[0] for c in counts]
    with open(os.path.join(a.out, "data.yaml"), "w") as f:
        f.write("path: %s\ntrain: images\nval: images\nnames:\n" % os.path.abspath(a.out))
        for i, n in enumerate(CLASSES):
            f.write("  %d: %s\n" % (i, n))
    clean = sum(1 for c in counts if c == 0)
    print("wrote %d images (%d defects, %.1f%% defect-free) to %s" % (len(counts), sum(counts), 100.0 * clean / max(1, len(counts)), a.out))


if __name__ == "__main__":
    sys.exit(main())
