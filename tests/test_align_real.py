"""Geometric score on real pages: Pepper&Carrot ep. 2 (CC BY 4.0). The verified panels play the detector; the upstream
YOLO manifest, whose counts are right but whose boxes are shifted by 5-10% of the page width, plays a VLM that gives
boxes. The seed's count-only score calls every page perfect; the geometric score sees the shifts."""
import json
import numpy as np, pandas as pd
from scipy.optimize import linear_sum_assignment
from comix.align import align_tables, vlm_tables

def _iou(A, B):
    "IoU matrix of [x, y, w, h] boxes, written out here so the check does not lean on comix's own IoU"
    ax0, ay0, ax1, ay1 = A[:, None, 0], A[:, None, 1], A[:, None, 0] + A[:, None, 2], A[:, None, 1] + A[:, None, 3]
    bx0, by0, bx1, by1 = B[None, :, 0], B[None, :, 1], B[None, :, 0] + B[None, :, 2], B[None, :, 1] + B[None, :, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    return inter / (A[:, None, 2] * A[:, None, 3] + B[None, :, 2] * B[None, :, 3] - inter)

def _tables(real):
    d = real/'peppercarrot-ep02-tobira'
    gt = json.loads((d/'panels_gt_verified.json').read_text())['pages']
    pred = json.loads((d/'panels_manifest_model_predicted.json').read_text())['pages']
    pages = pd.DataFrame([(f'pc/ep02/{i:04d}', p['width'], p['height']) for i, p in enumerate(gt)], columns=['page_id', 'width', 'height'])
    det = pd.DataFrame([(f'pc/ep02/{i:04d}', j, *b['bbox_xywh'], 1.0, j) for i, p in enumerate(gt) for j, b in enumerate(p['panels'])],
                       columns=['page_id', 'panel_index', 'x', 'y', 'w', 'h', 'score', 'order'])
    docs = [{'page_id': f'pc/ep02/{i:04d}', 'result': {'panels': [
        {'box_2d': [b['bbox'][1] * 1000, b['bbox'][0] * 1000, (b['bbox'][1] + b['bbox'][3]) * 1000, (b['bbox'][0] + b['bbox'][2]) * 1000],
         'narration': ['text'], 'dialogue': [], 'sfx': []} for b in p['panels']]}} for i, p in enumerate(pred)]
    return pages, det, docs, gt, pred

def test_geometric_score_on_pepper_carrot(real_data):
    pages, det, docs, gt, pred = _tables(real_data)
    vlm, _ = vlm_tables(docs)
    q = align_tables(pages, det, vlm, None)['quality']
    assert q.is_perfect_match.all()                     # counts agree on all 6 pages (14 panels)
    assert q.det_panels.sum() == 14
    # the same numbers computed independently, page by page with scipy
    for i, (g, p) in enumerate(zip(gt, pred)):
        A = np.array([b['bbox_xywh'] for b in g['panels']], float)
        B = np.array([[b['bbox'][0] * p['width'], b['bbox'][1] * p['height'], b['bbox'][2] * p['width'], b['bbox'][3] * p['height']]
                      for b in p['panels']])
        m = _iou(A, B)
        r, c = linear_sum_assignment(m, maximize=True)
        ok = m[r, c] >= 0.5
        assert q.geo_matched[i] == ok.sum()
        assert q.geo_match_share[i] == ok.sum() / max(len(A), len(B))
        if ok.any(): assert abs(q.geo_mean_iou[i] - m[r, c][ok].mean()) < 1e-9
    assert q.geo_mean_iou.max() < 0.99                  # the shifted boxes show: no page is geometrically perfect
