#!/usr/bin/env python3
"""Train the built-in Sightline surface-defect detector on CPU and export it to ONNX.

A compact anchor-free YOLOv8-style detector:
  * backbone: Conv/C2f stages (strides 2..32) + SPPF
  * neck: FPN + PAN with C2f blocks, outputs at strides 8/16/32
  * head: decoupled box (DFL, reg_max=16) and class branches
  * assignment: task-aligned assigner (top-10, alpha=0.5, beta=6)
  * loss: BCE (cls) + CIoU + DFL, weights 0.5 / 7.5 / 1.5
  * AdamW, warm-up + cosine LR, EMA of weights

Pre-processing is identical to the Sightline server: RGB, letterbox to SxS
(scale = min(S/w, S/h), new size = round(w*scale) x round(h*scale), bilinear,
centred, pad value 114, pad left/top = floor((S-new)/2)), float32 in [0,1], NCHW.

ONNX export (Ultralytics v8 layout): input `images` float32 [N,3,S,S] (dynamic N),
output `output0` float32 [N, 4+4, A] with rows cx,cy,w,h (letterboxed pixels) and
4 sigmoid class scores, A = (S/8)^2 + (S/16)^2 + (S/32)^2.  No NMS inside.

Reproduce the shipped model (see training/README.md):
    python3 training/generate.py --out /tmp/defects-train --count 6000 --seed 1000
    python3 training/train.py --data /tmp/defects-train --imgsz 416 --minutes 45 \\
        --seed 0 --out models/defects/1/model.onnx
"""
import argparse
import glob
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

CLASSES = ["scratch", "dent", "crack", "stain"]
NC = len(CLASSES)
REG_MAX = 16
STRIDES = (8, 16, 32)


# ============================================================================ pre-processing
def letterbox_params(w, h, S):
    scale = min(S / w, S / h)
    nw, nh = int(math.floor(w * scale + 0.5)), int(math.floor(h * scale + 0.5))
    left, top = (S - nw) // 2, (S - nh) // 2
    return scale, nw, nh, left, top


def letterbox(im, S, aa=True):
    """PIL RGB image -> uint8 array (S,S,3) plus (scale, left, top).

    aa=True: Pillow bilinear (antialiased, like libvips/sharp reduce);
    aa=False: plain point-sampled bilinear (like cv2.INTER_LINEAR), used as augmentation.
    """
    w, h = im.size
    scale, nw, nh, left, top = letterbox_params(w, h, S)
    if (nw, nh) != (w, h):
        if aa:
            im = im.resize((nw, nh), Image.BILINEAR)
        else:
            sx, sy = w / nw, h / nh
            im = im.transform((nw, nh), Image.AFFINE, (sx, 0, 0, 0, sy, 0), resample=Image.BILINEAR)
    out = np.full((S, S, 3), 114, np.uint8)
    out[top:top + nh, left:left + nw] = np.asarray(im)
    return out, scale, left, top


def read_labels(path, w, h):
    boxes = []
    if os.path.exists(path):
        for line in open(path):
            p = line.split()
            if len(p) != 5:
                continue
            c, cx, cy, bw, bh = int(p[0]), float(p[1]) * w, float(p[2]) * h, float(p[3]) * w, float(p[4]) * h
            boxes.append([c, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    return np.array(boxes, np.float32).reshape(-1, 5)


def build_cache(data_dir, S, seed, p_noaa=0.3):
    """Letterbox every image once; returns uint8 [N,S,S,3] and list of [k,5] (cls,x1,y1,x2,y2) in SxS space."""
    cache = os.path.join(data_dir, "cache_%d.npz" % S)
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        return z["imgs"], list(z["labels"])
    files = sorted(glob.glob(os.path.join(data_dir, "images", "*.jpg")))
    rng = random.Random(seed)
    imgs = np.empty((len(files), S, S, 3), np.uint8)
    labels = []
    for i, f in enumerate(files):
        im = Image.open(f).convert("RGB")
        w, h = im.size
        arr, scale, left, top = letterbox(im, S, aa=rng.random() >= p_noaa)
        imgs[i] = arr
        lb = read_labels(f.replace(os.sep + "images" + os.sep, os.sep + "labels" + os.sep)[:-4] + ".txt", w, h)
        lb[:, 1:] *= scale
        lb[:, [1, 3]] += left
        lb[:, [2, 4]] += top
        labels.append(lb)
    lab = np.empty(len(labels), dtype=object)
    lab[:] = labels
    np.savez(cache, imgs=imgs, labels=lab)
    return imgs, labels


# ============================================================================ model
class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c, shortcut=True):
        super().__init__()
        self.cv1 = Conv(c, c, 3)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Detector(nn.Module):
    def __init__(self, w=(16, 32, 48, 96, 128), n=(1, 1, 1, 1), head_c=32, imgsz=416):
        super().__init__()
        c0, c1, c2, c3, c4 = w
        self.stem = Conv(3, c0, 3, 2)                                  # /2
        self.s1 = nn.Sequential(Conv(c0, c1, 3, 2), C2f(c1, c1, n[0]))  # /4
        self.s2 = nn.Sequential(Conv(c1, c2, 3, 2), C2f(c2, c2, n[1]))  # /8  P3
        self.s3 = nn.Sequential(Conv(c2, c3, 3, 2), C2f(c3, c3, n[2]))  # /16 P4
        self.s4 = nn.Sequential(Conv(c3, c4, 3, 2), C2f(c4, c4, n[3]), SPPF(c4, c4))  # /32 P5
        # FPN (top-down)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td4 = C2f(c4 + c3, c3, 1, False)
        self.td3 = C2f(c3 + c2, c2, 1, False)
        # PAN (bottom-up)
        self.dn3 = Conv(c2, c2, 3, 2)
        self.bu4 = C2f(c2 + c3, c3, 1, False)
        self.dn4 = Conv(c3, c3, 3, 2)
        self.bu5 = C2f(c3 + c4, c4, 1, False)
        chs = (c2, c3, c4)
        self.box = nn.ModuleList(nn.Sequential(Conv(c, head_c, 3), Conv(head_c, head_c, 3), nn.Conv2d(head_c, 4 * REG_MAX, 1)) for c in chs)
        self.cls = nn.ModuleList(nn.Sequential(Conv(c, head_c, 3), nn.Conv2d(head_c, NC, 1)) for c in chs)
        for b, c, s in zip(self.box, self.cls, STRIDES):
            b[-1].bias.data[:] = 1.0
            c[-1].bias.data[:] = math.log(5 / NC / (imgsz / s) ** 2)
        self.imgsz = imgsz
        self.export = False

    def forward(self, x):
        x = self.stem(x)
        x = self.s1(x)
        p3 = self.s2(x)
        p4 = self.s3(p3)
        p5 = self.s4(p4)
        t4 = self.td4(torch.cat((self.up(p5), p4), 1))
        t3 = self.td3(torch.cat((self.up(t4), p3), 1))
        b4 = self.bu4(torch.cat((self.dn3(t3), t4), 1))
        b5 = self.bu5(torch.cat((self.dn4(b4), p5), 1))
        feats = (t3, b4, b5)
        bs = x.shape[0]
        box = torch.cat([self.box[i](f).flatten(2) for i, f in enumerate(feats)], 2)  # [N, 4R, A]
        cls = torch.cat([self.cls[i](f).flatten(2) for i, f in enumerate(feats)], 2)  # [N, C, A]
        if not self.export:
            return box, cls
        anchors, strides = make_anchors(self.imgsz, x.device)
        a = box.shape[2]
        dist = box.view(bs, 4, REG_MAX, a).softmax(2)
        proj = torch.arange(REG_MAX, dtype=dist.dtype, device=dist.device).view(1, 1, REG_MAX, 1)
        ltrb = (dist * proj).sum(2) * strides.t().unsqueeze(0)  # [N, 4, A] pixels
        lt, rb = ltrb[:, :2], ltrb[:, 2:]
        anc = anchors.t().unsqueeze(0)  # [1, 2, A]
        x1y1 = anc - lt
        x2y2 = anc + rb
        xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1)
        return torch.cat((xywh, cls.sigmoid()), 1)


def make_anchors(S, device="cpu"):
    pts, strd = [], []
    for s in STRIDES:
        n = S // s
        r = (torch.arange(n, dtype=torch.float32, device=device) + 0.5) * s
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        pts.append(torch.stack((xx.flatten(), yy.flatten()), 1))
        strd.append(torch.full((n * n, 1), float(s), device=device))
    return torch.cat(pts), torch.cat(strd)


def decode(box, cls, anchors, strides):
    """Raw head outputs -> (xyxy pixels [N,A,4], dist logits [N,A,4,R], cls logits [N,A,C])."""
    bs, _, a = box.shape
    logits = box.view(bs, 4, REG_MAX, a).permute(0, 3, 1, 2)  # [N,A,4,R]
    proj = torch.arange(REG_MAX, dtype=box.dtype, device=box.device)
    ltrb = (logits.softmax(3) * proj).sum(3) * strides.unsqueeze(0)  # [N,A,4]
    xyxy = torch.cat((anchors - ltrb[..., :2], anchors + ltrb[..., 2:]), 2)
    return xyxy, logits, cls.permute(0, 2, 1)


# ============================================================================ loss
def box_iou_pair(b1, b2, ciou=False, eps=1e-7):
    """Element-wise IoU between broadcastable [...,4] xyxy boxes."""
    iw = (torch.min(b1[..., 2], b2[..., 2]) - torch.max(b1[..., 0], b2[..., 0])).clamp(0)
    ih = (torch.min(b1[..., 3], b2[..., 3]) - torch.max(b1[..., 1], b2[..., 1])).clamp(0)
    inter = iw * ih
    w1, h1 = b1[..., 2] - b1[..., 0], b1[..., 3] - b1[..., 1] + eps
    w2, h2 = b2[..., 2] - b2[..., 0], b2[..., 3] - b2[..., 1] + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if not ciou:
        return iou
    cw = torch.max(b1[..., 2], b2[..., 2]) - torch.min(b1[..., 0], b2[..., 0])
    ch = torch.max(b1[..., 3], b2[..., 3]) - torch.min(b1[..., 1], b2[..., 1])
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((b2[..., 0] + b2[..., 2] - b1[..., 0] - b1[..., 2]) ** 2 + (b2[..., 1] + b2[..., 3] - b1[..., 1] - b1[..., 3]) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


@torch.no_grad()
def tal_assign(scores, pboxes, anchors, gt_cls, gt_box, gt_mask, topk=10, alpha=0.5, beta=6.0, eps=1e-9):
    """Task-aligned assignment. scores [B,A,C] (sigmoid), pboxes [B,A,4], anchors [A,2],
    gt_cls [B,M] long, gt_box [B,M,4], gt_mask [B,M] bool.
    Returns target boxes [B,A,4], target scores [B,A,C], fg mask [B,A]."""
    B, A, C = scores.shape
    M = gt_box.shape[1]
    if M == 0:
        return torch.zeros_like(pboxes), torch.zeros_like(scores), torch.zeros(B, A, dtype=torch.bool)
    # anchor centres inside gt (gt boxes grown to at least 10 px so tiny ones still get anchors)
    ctr = (gt_box[..., :2] + gt_box[..., 2:]) / 2
    half = ((gt_box[..., 2:] - gt_box[..., :2]) / 2).clamp(min=5.0)
    g1, g2 = ctr - half, ctr + half  # [B,M,2]
    ax, ay = anchors[:, 0].view(1, 1, A), anchors[:, 1].view(1, 1, A)
    in_gt = (ax > g1[..., 0:1]) & (ax < g2[..., 0:1]) & (ay > g1[..., 1:2]) & (ay < g2[..., 1:2])
    in_gt &= gt_mask.unsqueeze(2)  # [B,M,A]
    ious = box_iou_pair(gt_box.unsqueeze(2), pboxes.unsqueeze(1)).clamp(0)  # [B,M,A]
    cls_idx = gt_cls.clamp(0).unsqueeze(2).expand(B, M, A)
    sc = scores.permute(0, 2, 1).gather(1, cls_idx)  # [B,M,A]
    align = sc.pow(alpha) * ious.pow(beta) * in_gt
    ious = ious * in_gt
    top = align.topk(min(topk, A), dim=2).indices
    mask_top = torch.zeros_like(align, dtype=torch.bool).scatter_(2, top, True)
    pos = mask_top & in_gt  # [B,M,A]
    # resolve anchors claimed by several gts: keep the best-IoU gt
    multi = pos.sum(1, keepdim=True) > 1
    if multi.any():
        best = ious.argmax(1, keepdim=True)
        best_mask = torch.zeros_like(pos).scatter_(1, best, True)
        pos = torch.where(multi.expand_as(pos), best_mask & in_gt, pos)
    fg = pos.any(1)  # [B,A]
    gidx = pos.float().argmax(1)  # [B,A]
    t_box = gt_box.gather(1, gidx.unsqueeze(2).expand(B, A, 4))
    t_cls = gt_cls.gather(1, gidx).clamp(0)
    t_scores = F.one_hot(t_cls, C).float() * fg.unsqueeze(2)
    align = align * pos
    pos_align = align.amax(2, keepdim=True)
    pos_iou = (ious * pos).amax(2, keepdim=True)
    norm = (align * pos_iou / (pos_align + eps)).amax(1)  # [B,A]
    t_scores = t_scores * norm.unsqueeze(2)
    return t_box, t_scores, fg


def compute_loss(box, cls, targets, anchors, strides):
    """targets: [B,M,5] (cls,x1,y1,x2,y2), padded rows have cls=-1."""
    pboxes, dist, logits = decode(box, cls, anchors, strides)
    gt_cls = targets[..., 0].long()
    gt_box = targets[..., 1:]
    gt_mask = gt_cls >= 0
    t_box, t_scores, fg = tal_assign(logits.detach().sigmoid(), pboxes.detach(), anchors, gt_cls, gt_box, gt_mask)
    tss = t_scores.sum().clamp(min=1)
    l_cls = F.binary_cross_entropy_with_logits(logits, t_scores, reduction="sum") / tss
    l_box = torch.zeros((), device=box.device)
    l_dfl = torch.zeros((), device=box.device)
    if fg.any():
        w = t_scores.sum(2)[fg]
        iou = box_iou_pair(pboxes[fg], t_box[fg], ciou=True)
        l_box = ((1 - iou) * w).sum() / tss
        anc = anchors.unsqueeze(0).expand(fg.shape[0], -1, -1)[fg]
        st = strides.unsqueeze(0).expand(fg.shape[0], -1, -1)[fg]
        tb = t_box[fg]
        ltrb = torch.cat((anc - tb[:, :2], tb[:, 2:] - anc), 1) / st
        ltrb = ltrb.clamp(0, REG_MAX - 1 - 0.01)
        tl = ltrb.long()
        wr = ltrb - tl
        wl = 1 - wr
        d = dist[fg]  # [P,4,R]
        ce_l = F.cross_entropy(d.reshape(-1, REG_MAX), tl.view(-1), reduction="none").view(-1, 4)
        ce_r = F.cross_entropy(d.reshape(-1, REG_MAX), (tl + 1).view(-1), reduction="none").view(-1, 4)
        l_dfl = ((ce_l * wl + ce_r * wr).mean(1) * w).sum() / tss
    return 7.5 * l_box + 0.5 * l_cls + 1.5 * l_dfl, (l_box.item(), l_cls.item(), l_dfl.item())


# ============================================================================ training utils
class EMA:
    def __init__(self, model, tau=300):
        import copy
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.updates = 0
        self.tau = tau

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        d = 0.9995 * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)


def make_batch(imgs, labels, idx, gen, augment=True, crop=0):
    x = torch.from_numpy(imgs[idx]).permute(0, 3, 1, 2).float().div_(255.0)  # [B,3,S,S]
    S = x.shape[-1]
    lbs = [torch.from_numpy(np.asarray(labels[i], np.float32)).clone() for i in idx]
    if augment:
        B = x.shape[0]
        for b in range(B):
            lb = lbs[b]
            if torch.rand(1, generator=gen).item() < 0.5:
                x[b] = x[b].flip(2)
                lb[:, [1, 3]] = S - lb[:, [3, 1]]
            if torch.rand(1, generator=gen).item() < 0.5:
                x[b] = x[b].flip(1)
                lb[:, [2, 4]] = S - lb[:, [4, 2]]
        # photometric jitter: gain, contrast, per-channel tint (letterbox padding left untouched)
        pad = (x == 114 / 255.0).all(1, keepdim=True)
        gain = 1 + (torch.rand(B, 1, 1, 1, generator=gen) - 0.5) * 0.5
        tint = 1 + (torch.rand(B, 3, 1, 1, generator=gen) - 0.5) * 0.16
        mean = x.mean((1, 2, 3), keepdim=True)
        con = 1 + (torch.rand(B, 1, 1, 1, generator=gen) - 0.5) * 0.4
        y = ((x - mean) * con + mean) * gain * tint
        x = torch.where(pad, x, y.clamp(0, 1))
    if crop and crop < S:
        xs = torch.empty((x.shape[0], 3, crop, crop))
        for b in range(x.shape[0]):
            lb = lbs[b]
            if len(lb) and torch.rand(1, generator=gen).item() < 0.7:
                k = int(torch.randint(len(lb), (1,), generator=gen))
                cx, cy = float(lb[k, 1] + lb[k, 3]) / 2, float(lb[k, 2] + lb[k, 4]) / 2
                fx, fy = torch.rand(2, generator=gen).tolist()
                ox = int(min(max(cx - (0.15 + 0.7 * fx) * crop, 0), S - crop))
                oy = int(min(max(cy - (0.15 + 0.7 * fy) * crop, 0), S - crop))
            else:
                ox, oy = [int(v) for v in torch.randint(S - crop + 1, (2,), generator=gen)]
            xs[b] = x[b, :, oy:oy + crop, ox:ox + crop]
            if len(lb):
                area = (lb[:, 3] - lb[:, 1]) * (lb[:, 4] - lb[:, 2])
                c = lb.clone()
                c[:, [1, 3]] = (c[:, [1, 3]] - ox).clamp(0, crop)
                c[:, [2, 4]] = (c[:, [2, 4]] - oy).clamp(0, crop)
                w_, h_ = c[:, 3] - c[:, 1], c[:, 4] - c[:, 2]
                keep = (w_ * h_ >= 0.5 * area) & (w_ >= 3) & (h_ >= 3)
                lbs[b] = c[keep]
        x = xs
    M = max([len(l) for l in lbs] + [1])
    t = torch.full((len(idx), M, 5), -1.0)
    for b, lb in enumerate(lbs):
        if len(lb):
            t[b, :len(lb)] = lb
    return x, t


def init_from_onnx(model, path, x):
    """Start from an exported model's weights (fine-tuning v1 into v2).

    The export folds every BatchNorm into its convolution, so the ONNX file holds one
    weight and bias per convolution and no BN statistics. Each Conv2d gets its folded
    weight; its BatchNorm is then set, on one batch `x` in training mode, to pass the
    convolution's output through unchanged plus the folded bias (scale = the batch's
    std, shift = its mean + bias, running statistics = the batch's). The network then
    computes what the exported model computes, in training and in eval mode, and
    training goes on from there.
    """
    import onnx
    from onnx import numpy_helper
    mo = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in mo.graph.initializer}
    folded = []
    for node in mo.graph.node:
        if node.op_type == "Conv":
            w = inits[node.input[1]]
            b = inits[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
            folded.append((w, b))
    # The Conv2d modules in the order the forward pass runs them: the same order the
    # exporter traced them in.
    order = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in model.modules() if isinstance(m, nn.Conv2d)]
    model.eval()
    with torch.no_grad():
        model(x[:1])
    for h in hooks:
        h.remove()
    if len(order) != len(folded):
        raise SystemExit("--init %s: %d convolutions, the model has %d" % (path, len(folded), len(order)))
    bn_of = {}
    for m in model.modules():
        if isinstance(m, Conv):
            bn_of[m.conv] = m.bn
    bias_of = {}
    with torch.no_grad():
        for conv, (w, b) in zip(order, folded):
            if tuple(conv.weight.shape) != w.shape:
                raise SystemExit("--init %s: shape %s where the model has %s" % (path, w.shape, tuple(conv.weight.shape)))
            conv.weight.copy_(torch.from_numpy(w))
            if conv in bn_of:
                bias_of[bn_of[conv]] = torch.from_numpy(b)
            else:
                conv.bias.copy_(torch.from_numpy(b))

    def calibrate(bn, inputs):
        z = inputs[0]
        mean = z.mean((0, 2, 3))
        var = z.var((0, 2, 3), unbiased=False)
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(mean + bias_of[bn])
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)

    hooks = [bn.register_forward_pre_hook(calibrate) for bn in bias_of]
    model.train()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    print("initialised from %s: %d convolutions" % (path, len(order)), flush=True)


def export_onnx(model, S, path):
    import copy
    m = copy.deepcopy(model).eval()
    m.export = True
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    dummy = torch.zeros(1, 3, S, S)
    torch.onnx.export(m, dummy, path, opset_version=13, input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}}, do_constant_folding=True)
    try:
        import onnx
    except ImportError:
        return path
    fix_output_shape(path, S)
    onnx.checker.check_model(onnx.load(path))
    return path


def fix_output_shape(path, S):
    """Declare output0 as [batch, 8, A] (tracing leaves dims 1 and 2 symbolic)."""
    import onnx
    mo = onnx.load(path)
    dims = mo.graph.output[0].type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    dims[1].Clear()
    dims[1].dim_value = 4 + NC
    dims[2].Clear()
    dims[2].dim_value = sum((S // s) ** 2 for s in STRIDES)
    onnx.save(mo, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset dir made by generate.py")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--epochs", type=float, default=0, help="epochs (0 = use --minutes)")
    ap.add_argument("--minutes", type=float, default=45, help="training time budget (cosine schedule is laid out on it)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--crop", type=int, default=288, help="train on random crops of the letterboxed image (speed)")
    ap.add_argument("--full-frac", type=float, default=0.15, help="final fraction of iterations trained on full SxS frames")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="models/defects/1/model.onnx")
    ap.add_argument("--init", default="", help="start from this exported model (ONNX, same architecture) instead of random weights")
    ap.add_argument("--init-check", default="", help="with --init: export the initialised model here and stop (to compare with the --init file)")
    ap.add_argument("--ckpt", default="", help="where to save torch weights (default: <out dir>/../../training-ckpt.pt in /tmp)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    np.random.seed(a.seed)
    S = a.imgsz
    t0 = time.time()
    imgs, labels = build_cache(a.data, S, a.seed)
    print("cached %d images at %d in %.0fs" % (len(imgs), S, time.time() - t0), flush=True)

    model = Detector(imgsz=S)
    if a.init:
        calib = np.random.default_rng(a.seed).choice(len(imgs), size=min(64, len(imgs)), replace=False)
        x0, _ = make_batch(imgs, labels, np.sort(calib), torch.Generator().manual_seed(a.seed), augment=False)
        init_from_onnx(model, a.init, x0)
        if a.init_check:
            export_onnx(model, S, a.init_check)
            print("exported the initialised model to %s" % a.init_check, flush=True)
            return 0
    nparam = sum(p.numel() for p in model.parameters())
    print("params: %d" % nparam, flush=True)
    ema = EMA(model)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}], lr=a.lr, betas=(0.9, 0.999))
    anchors, strides = make_anchors(S)
    anchors_c, strides_c = make_anchors(a.crop)
    gen = torch.Generator().manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    N = len(imgs)
    ipe = N // a.batch

    # measure speed on a few iterations to lay out the schedule on the time budget
    if a.epochs > 0:
        total_iters = int(a.epochs * ipe)
    else:
        total_iters = None
    warm = 200
    it = 0
    perm = rng.permutation(N)
    pos = 0
    tstart = time.time()
    run = None
    model.train()
    while True:
        if total_iters is None and it == 20:
            per_it = (time.time() - tstart) / 20
            ratio = 1.0 if a.crop >= S else (S / a.crop) ** 2
            total_iters = max(100, int(a.minutes * 60 / (per_it * (1 - a.full_frac + a.full_frac * ratio))))
            print("%.2fs/iter -> %d iterations (%.1f epochs)" % (per_it, total_iters, total_iters / ipe), flush=True)
        if total_iters is not None and it >= total_iters:
            break
        T = total_iters if total_iters is not None else 10 ** 9
        lr = a.lr * (0.5 * (1 + math.cos(math.pi * min(1.0, it / T))) * 0.95 + 0.05)
        if it < warm:
            lr *= (it + 1) / warm
        for g in opt.param_groups:
            g["lr"] = lr
        if pos + a.batch > N:
            perm = rng.permutation(N)
            pos = 0
        idx = np.sort(perm[pos:pos + a.batch])
        pos += a.batch
        full = it >= int(T * (1 - a.full_frac)) or a.crop >= S
        x, t = make_batch(imgs, labels, idx, gen, crop=0 if full else a.crop)
        box, cls = model(x)
        anc, strd = (anchors, strides) if full else (anchors_c, strides_c)
        loss, parts = compute_loss(box, cls, t, anc, strd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        ema.update(model)
        lv = np.array([loss.item(), *parts])
        run = lv if run is None else 0.98 * run + 0.02 * lv
        it += 1
        if it % 50 == 0:
            el = time.time() - tstart
            print("it %d/%s ep %.2f lr %.5f loss %.3f (box %.3f cls %.3f dfl %.3f) %.0fs" % (it, total_iters, it / ipe, lr, *run, el), flush=True)
    train_s = time.time() - tstart
    print("training done: %d iterations in %.1f min" % (it, train_s / 60), flush=True)
    ckpt = a.ckpt or os.path.join("/tmp", "sightline-defects-ckpt.pt")
    torch.save({"model": ema.ema.state_dict(), "imgsz": S, "iters": it, "train_s": train_s, "params": nparam}, ckpt)
    print("saved torch weights to %s" % ckpt, flush=True)
    export_onnx(ema.ema, S, a.out)
    print("exported %s (%.2f MB)" % (a.out, os.path.getsize(a.out) / 1e6), flush=True)


if __name__ == "__main__":
    sys.exit(main())
