#!/usr/bin/env python3
"""Evaluate the trained detector (PyTorch weights) on a generated dataset.

Mirrors the Sightline server evaluation: letterbox (Pillow bilinear), decode to
letterboxed xywh + sigmoid scores exactly like the exported ONNX graph, keep the
best class per anchor, conf >= 0.001, class-wise NMS (IoU 0.7), max 300 boxes,
map back to original pixels, COCO 101-point AP at IoU 0.50:0.05:0.95.

    python3 training/evaluate.py --data /tmp/defects-val --weights /tmp/sightline-defects-ckpt.pt
Options: --noaa (point-sampled bilinear resize instead of Pillow's antialiased one),
--onnx-ref DIR (also dump torch output of a zero tensor to DIR/ref.json for the
Node/onnxruntime numerics check), --sweep (precision/recall/verdict accuracy per threshold),
--ng-thr T (escapes and false rejects at the NG verdict threshold, default 0.35).
"""
import argparse
import glob
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import CLASSES, Detector, letterbox, read_labels  # noqa: E402


def load_model(path):
    ck = torch.load(path, map_location="cpu")
    m = Detector(imgsz=ck["imgsz"])
    m.load_state_dict(ck["model"])
    m.eval()
    m.export = True
    return m, ck["imgsz"]


def iou_matrix(a, b):
    """a [n,4], b [m,4] xyxy -> [n,m]"""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (aa[:, None] + ab[None, :] - inter + 1e-9)


def nms(boxes, scores, thr):
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        if len(order) == 1:
            break
        ious = iou_matrix(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= thr]
    return np.array(keep, np.int64)


def postprocess(out, conf=0.001, iou=0.7, max_det=300):
    """out: [8, A] numpy (one image) -> boxes xyxy (letterbox space), scores, classes."""
    xywh = out[:4].T
    sc = out[4:].T
    cls = sc.argmax(1)
    score = sc.max(1)
    k = score >= conf
    xywh, cls, score = xywh[k], cls[k], score[k]
    if len(score) > 30000:
        o = np.argsort(-score)[:30000]
        xywh, cls, score = xywh[o], cls[o], score[o]
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    keep = []
    for c in np.unique(cls):
        idx = np.nonzero(cls == c)[0]
        keep.extend(idx[nms(boxes[idx], score[idx], iou)])
    keep = np.array(keep, np.int64)
    if len(keep):
        keep = keep[np.argsort(-score[keep], kind="stable")][:max_det]
    return boxes[keep], score[keep], cls[keep]


def verdict_rates(dets, gts, thr):
    """Image-level OK/NG verdict at an NG threshold (the server's default rule: NG when any
    detection scores >= thr).  Escape: an image with a defect judged OK; false reject: a
    defect-free image judged NG.  Returns (escapes, ng_images, false_rejects, ok_images)."""
    esc = fr = n_ng = n_ok = 0
    for (b, s, k), g in zip(dets, gts):
        ng_pred = bool((s >= thr).any())
        if len(g):
            n_ng += 1
            esc += not ng_pred
        else:
            n_ok += 1
            fr += ng_pred
    return esc, n_ng, fr, n_ok


def ap101(rec, prec):
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([1.0], prec, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapz(np.interp(x, mrec, mpre), x))


def compute_map(dets, gts, nc):
    """dets: list per image of (boxes, scores, cls); gts: list per image of [k,5] (cls,x1,y1,x2,y2).
    COCO-style greedy matching in confidence order, per IoU threshold."""
    thrs = np.linspace(0.5, 0.95, 10)
    ap = np.zeros((nc, len(thrs)))
    for c in range(nc):
        recs = []  # (score, tp[10])
        npos = 0
        for (b, s, k), g in zip(dets, gts):
            gb = g[g[:, 0] == c, 1:]
            npos += len(gb)
            m = k == c
            db, ds = b[m], s[m]
            if len(ds) == 0:
                continue
            o = np.argsort(-ds, kind="stable")
            db, ds = db[o], ds[o]
            ious = iou_matrix(db, gb)
            tp = np.zeros((len(ds), len(thrs)), bool)
            for ti, t in enumerate(thrs):
                used = np.zeros(len(gb), bool)
                for di in range(len(ds)):
                    if len(gb) == 0:
                        break
                    cand = np.where(used, -1, ious[di])
                    j = int(cand.argmax())
                    if cand[j] >= t:
                        used[j] = True
                        tp[di, ti] = True
            for di in range(len(ds)):
                recs.append((ds[di], tp[di]))
        if npos == 0 or not recs:
            continue
        recs.sort(key=lambda r: -r[0])
        tps = np.array([r[1] for r in recs], np.float64)
        ctp = np.cumsum(tps, 0)
        cfp = np.cumsum(1 - tps, 0)
        for ti in range(len(thrs)):
            rec = ctp[:, ti] / npos
            prec = ctp[:, ti] / (ctp[:, ti] + cfp[:, ti])
            ap[c, ti] = ap101(rec, prec)
    return ap


@torch.no_grad()
def run(model, S, files, aa=True, batch=16):
    outs, metas = [], []
    for i in range(0, len(files), batch):
        arrs = []
        for f in files[i:i + batch]:
            im = Image.open(f).convert("RGB")
            arr, scale, left, top = letterbox(im, S, aa=aa)
            arrs.append(arr)
            metas.append((scale, left, top, im.size))
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
        outs.extend(model(x).numpy())
    return outs, metas


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--weights", default="/tmp/sightline-defects-ckpt.pt")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--noaa", action="store_true")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--onnx-ref", default="")
    ap.add_argument("--json", default="", help="write metrics to this JSON file")
    ap.add_argument("--ng-thr", type=float, default=0.35,
                    help="NG verdict threshold for escapes / false rejects (model.json's verdict.ng, 0.35 for every class)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    model, S = load_model(a.weights)
    if a.onnx_ref:
        os.makedirs(a.onnx_ref, exist_ok=True)
        g = torch.Generator().manual_seed(0)
        xr = torch.rand(2, 3, S, S, generator=g)
        xr[1] = 0.0
        with torch.no_grad():
            y = model(xr).numpy()
        np.asarray(xr.numpy(), "<f4").tofile(os.path.join(a.onnx_ref, "input.bin"))
        np.asarray(y, "<f4").tofile(os.path.join(a.onnx_ref, "output.bin"))
        json.dump({"input_shape": list(xr.shape), "output_shape": list(y.shape)}, open(os.path.join(a.onnx_ref, "shapes.json"), "w"))
        print("reference written, output shape", y.shape)
    files = sorted(glob.glob(os.path.join(a.data, "images", "*.jpg")))
    if a.limit:
        files = files[:a.limit]
    outs, metas = run(model, S, files, aa=not a.noaa)
    dets, gts = [], []
    for f, o, (scale, left, top, (w, h)) in zip(files, outs, metas):
        b, s, k = postprocess(o)
        b = b.copy()
        b[:, [0, 2]] = np.clip((b[:, [0, 2]] - left) / scale, 0, w)
        b[:, [1, 3]] = np.clip((b[:, [1, 3]] - top) / scale, 0, h)
        dets.append((b, s, k))
        gts.append(read_labels(f.replace(os.sep + "images" + os.sep, os.sep + "labels" + os.sep)[:-4] + ".txt", w, h))
    apm = compute_map(dets, gts, len(CLASSES))
    print("images: %d  instances: %d  (%s resize)" % (len(files), sum(len(g) for g in gts), "point-sampled" if a.noaa else "Pillow antialiased"))
    print("%-8s %8s %8s %8s" % ("class", "inst", "AP50", "AP50-95"))
    res = {"images": len(files), "classes": {}}
    for c, n in enumerate(CLASSES):
        inst = int(sum((g[:, 0] == c).sum() for g in gts))
        print("%-8s %8d %8.4f %8.4f" % (n, inst, apm[c, 0], apm[c].mean()))
        res["classes"][n] = {"instances": inst, "AP50": round(float(apm[c, 0]), 4), "AP50-95": round(float(apm[c].mean()), 4)}
    print("%-8s %8s %8.4f %8.4f" % ("all", "", apm[:, 0].mean(), apm.mean()))
    res["mAP50"] = round(float(apm[:, 0].mean()), 4)
    res["mAP50-95"] = round(float(apm.mean()), 4)
    esc, n_ng, fr, n_ok = verdict_rates(dets, gts, a.ng_thr)
    print("verdict at NG threshold %.2f: escapes %d/%d (%.1f %%), false rejects %d/%d (%.1f %%)"
          % (a.ng_thr, esc, n_ng, 100.0 * esc / max(1, n_ng), fr, n_ok, 100.0 * fr / max(1, n_ok)))
    res["verdict"] = {"ng_threshold": a.ng_thr, "ng_images": n_ng, "escapes": esc, "escape_rate": round(esc / max(1, n_ng), 4),
                      "ok_images": n_ok, "false_rejects": fr, "false_reject_rate": round(fr / max(1, n_ok), 4)}
    if a.sweep:
        # image-level verdict accuracy and box precision/recall (IoU 0.5) per threshold
        for t in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6):
            tp = fp = fn = 0
            vok = 0
            for (b, s, k), g in zip(dets, gts):
                m = s >= t
                ng_pred = bool(m.any())
                vok += ng_pred == (len(g) > 0)
                bb, kk = b[m], k[m]
                used = np.zeros(len(g), bool)
                ious = iou_matrix(bb, g[:, 1:])
                for di in range(len(bb)):
                    cand = np.where(used | (g[:, 0] != kk[di]), -1, ious[di]) if len(g) else np.array([-1.0])
                    j = int(cand.argmax())
                    if cand[j] >= 0.5:
                        used[j] = True
                        tp += 1
                    else:
                        fp += 1
                fn += int((~used).sum())
            print("thr %.2f  P %.4f  R %.4f  verdict-acc %.4f" % (t, tp / max(1, tp + fp), tp / max(1, tp + fn), vok / len(dets)))
    if a.json:
        json.dump(res, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
