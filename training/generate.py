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
"""
import argparse
import math
import os
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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
def render(seed, index, sizes):
    rng = np.random.default_rng([seed, index])
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


def _job(args):
    seed, index, sizes, out = args
    im, labels, (W, H) = render(seed, index, sizes)
    name = "%06d" % index
    im.save(os.path.join(out, "images", name + ".jpg"), quality=JPEG_QUALITY)
    lines = []
    for cls, (x1, y1, x2, y2) in labels:
        lines.append("%d %.6f %.6f %.6f %.6f" % (cls, (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H))
    with open(os.path.join(out, "labels", name + ".txt"), "w") as f:
        f.write("".join(l + "\n" for l in lines))
    return len(labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--start", type=int, default=0, help="first image index (for appending)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    a = ap.parse_args()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",")]
    os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "labels"), exist_ok=True)
    jobs = [(a.seed, i, sizes, a.out) for i in range(a.start, a.start + a.count)]
    if a.workers > 1:
        with Pool(a.workers) as p:
            counts = p.map(_job, jobs, chunksize=8)
    else:
        counts = [_job(j) for j in jobs]
    with open(os.path.join(a.out, "data.yaml"), "w") as f:
        f.write("path: %s\ntrain: images\nval: images\nnames:\n" % os.path.abspath(a.out))
        for i, n in enumerate(CLASSES):
            f.write("  %d: %s\n" % (i, n))
    clean = sum(1 for c in counts if c == 0)
    print("wrote %d images (%d defects, %.1f%% defect-free) to %s" % (len(counts), sum(counts), 100.0 * clean / max(1, len(counts)), a.out))


if __name__ == "__main__":
    sys.exit(main())
