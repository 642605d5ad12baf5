#!/usr/bin/env python3
"""Pick the held-out sample images in samples/ (ok-NN.jpg / ng-NN.jpg + labels.json).

Candidates come from generate.py runs with seeds that are used neither for
training (1000) nor for validation (2000):
    python3 training/generate.py --out /tmp/samp-a --count 50 --seed 3000 --sizes 640x480
    python3 training/generate.py --out /tmp/samp-b --count 10 --seed 3001 --sizes 1280x720
    python3 training/make_samples.py --weights /tmp/sightline-defects-ckpt.pt \
        --cand /tmp/samp-a --cand /tmp/samp-b --out samples
The selected OK images have no detection at all above 0.1. In the selected NG images,
every ground-truth defect is found (same class, IoU >= 0.5) with a score >= 0.6, and
nothing else scores above 0.25. Both checks are run with both resize variants.
1280x720 images are re-encoded at JPEG quality 75 to stay under 150 KB, then
re-checked.
"""
import argparse
import glob
import io
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaluate import iou_matrix, load_model, postprocess  # noqa: E402
from train import CLASSES, letterbox, read_labels  # noqa: E402


@torch.no_grad()
def detect(model, S, im):
    res = []
    for aa in (True, False):
        arr, scale, left, top = letterbox(im, S, aa=aa)
        x = torch.from_numpy(arr[None]).permute(0, 3, 1, 2).float() / 255.0
        b, s, k = postprocess(model(x)[0].numpy(), conf=0.05, iou=0.45, max_det=100)
        b = b.copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - left) / scale
        b[:, [1, 3]] = (b[:, [1, 3]] - top) / scale
        res.append((b, s, k))
    return res


def judge(dets, gt):
    """Returns (ok_clean, ng_good, margin) for one image over both resize variants."""
    if len(gt) == 0:
        mx = max([float(s.max()) if len(s) else 0.0 for _, s, _ in dets])
        return mx < 0.1, False, 0.1 - mx
    worst = 1.0
    for b, s, k in dets:
        keep = s >= 0.25
        b, s, k = b[keep], s[keep], k[keep]
        ious = iou_matrix(gt[:, 1:], b)
        used = np.zeros(len(s), bool)
        for g in range(len(gt)):
            cand = np.where((k == gt[g, 0]) & ~used, ious[g], -1) if len(s) else np.array([-1.0])
            j = int(cand.argmax())
            if cand[j] < 0.5 or s[j] < 0.6:
                return False, False, 0
            used[j] = True
            worst = min(worst, float(s[j]))
        if (~used).any():
            return False, False, 0
    return False, True, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="/tmp/sightline-defects-ckpt.pt")
    ap.add_argument("--cand", action="append", required=True)
    ap.add_argument("--out", default="samples")
    ap.add_argument("--n-ok", type=int, default=8)
    ap.add_argument("--n-ng", type=int, default=12)
    ap.add_argument("--n-ng-large", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(2)
    model, S = load_model(a.weights)
    oks, ngs, ngl = [], [], []
    for d in a.cand:
        for f in sorted(glob.glob(os.path.join(d, "images", "*.jpg"))):
            im = Image.open(f).convert("RGB")
            w, h = im.size
            data = open(f, "rb").read()
            if w > 640:
                buf = io.BytesIO()
                im.save(buf, "JPEG", quality=75)
                data = buf.getvalue()
                im = Image.open(io.BytesIO(data)).convert("RGB")
            gt = read_labels(f.replace(os.sep + "images" + os.sep, os.sep + "labels" + os.sep)[:-4] + ".txt", w, h)
            ok, ng, margin = judge(detect(model, S, im), gt)
            item = (margin, f, data, gt, (w, h))
            if ok and w == 640:
                oks.append(item)
            elif ng:
                (ngl if w > 640 else ngs).append(item)
    oks.sort(key=lambda t: -t[0])
    ngs.sort(key=lambda t: -t[0])
    ngl.sort(key=lambda t: -t[0])
    sel_ng = ngl[:a.n_ng_large]
    rest = a.n_ng - len(sel_ng)
    # class coverage first (best-margin image containing each class), then by margin
    picked = []
    for rnd in range(3):
        for c in range(len(CLASSES)):
            for it in ngs:
                if it not in picked and (it[3][:, 0] == c).any() and len(picked) < rest:
                    picked.append(it)
                    break
    for it in ngs:
        if it not in picked and len(picked) < rest:
            picked.append(it)
    sel_ng += picked
    sel_ok = oks[:a.n_ok]
    print("candidates: ok %d, ng %d (+%d large)" % (len(oks), len(ngs), len(ngl)))
    os.makedirs(a.out, exist_ok=True)
    labels = {}
    for prefix, sel in (("ok", sel_ok), ("ng", sel_ng)):
        for i, (margin, f, data, gt, (w, h)) in enumerate(sel):
            name = "%s-%02d.jpg" % (prefix, i + 1)
            with open(os.path.join(a.out, name), "wb") as fo:
                fo.write(data)
            labels[name] = {
                "verdict": prefix,
                "width": w,
                "height": h,
                "boxes": [{"label": CLASSES[int(g[0])], "box": [int(round(v)) for v in g[1:]]} for g in gt],
                "source": os.path.join(os.path.basename(os.path.dirname(os.path.dirname(f))), os.path.basename(f)),
            }
            print(name, w, h, len(data), "bytes", "margin %.3f" % margin, [b["label"] for b in labels[name]["boxes"]])
    with open(os.path.join(a.out, "labels.json"), "w") as fo:
        json.dump(labels, fo, indent=2)
        fo.write("\n")


if __name__ == "__main__":
    sys.exit(main())
