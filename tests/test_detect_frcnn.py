"Faster R-CNN: CoMix-style checkpoints, panel-only filtering, fine-tuning, and `comix detect --detector frcnn`."
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch

from comix.frcnn import build_frcnn, load_frcnn, save_frcnn, predict_frcnn, finetune_frcnn, items_from_gt, _tensor
from comix.detect import main, DETECT_COLUMNS
from comix.evaluate import boxes_frame
from comix.paths import Layout, fixture_path, read_audit
from comix.synth import synth_page

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
    "A CoMix-style bare state dict (DataParallel `module.` prefix, 7 categories + background)"
    torch.manual_seed(0)
    m = build_frcnn('mobilenet_v3', num_classes=8, min_size=160, max_size=256, box_score_thresh=0.0)
    with torch.no_grad():                                  # every proposal scores as panel (1) and balloon (3) alike
        m.roi_heads.box_predictor.cls_score.weight.zero_()
        m.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0., 5, 0, 5, 0, 0, 0, 0]))
    p = tmp_path_factory.mktemp('ck')/'faster_rcnn-c100-best-tiny.pth'
    torch.save({'module.' + k: v for k, v in m.state_dict().items()}, p)
    return p, m


def test_panels_are_category_one_only(tiny_ckpt):
    "Only label 1 (panel) survives, whatever the other six categories predict"
    p, _ = tiny_ckpt
    m = load_frcnn(p, min_size=160, max_size=256, box_score_thresh=0.0)
    img, _ = synth_page(0, 'grid', size=(200, 300), text=False)
    with torch.inference_mode(): raw = m([_tensor(img)[0]])[0]
    boxes, scores = predict_frcnn(m, [img], score_thresh=0.0)[0]
    assert len(boxes) == int((raw['labels'] == 1).sum())
    assert set(raw['labels'].tolist()) == {1, 3} and len(boxes) < len(raw['labels'])   # balloons were there and were dropped
    assert (np.diff(scores) <= 0).all()


def test_finetune_on_gt_table_and_resume_from_checkpoint(tmp_path):
    "Fine-tune from a GT table (as the COCO/ACBF/Manga109 readers give), checkpoint, load back, loss goes down"
    pages = [synth_page(s, 'grid', size=(160, 240), text=False) for s in range(4)]
    gt = pd.concat([boxes_frame(f'p{i}', [[q[k] for k in 'xywh'] for q in t['panels']]) for i, (_, t) in enumerate(pages)])
    items = items_from_gt(gt.drop(columns='score'), lambda p: pages[int(p[1:])][0])
    m = build_frcnn('mobilenet_v3', min_size=160, max_size=240)
    losses = finetune_frcnn(m, items, epochs=3, lr=0.01, batch_size=4, out=tmp_path)
    assert np.mean(losses[-2:]) < losses[0]
    m2 = load_frcnn(tmp_path/'last.pth')
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))


def test_cli_frcnn(tiny_ckpt, tmp_path):
    "comix detect --detector frcnn --weights PATH writes the same table, recording the weights"
    from comix.extract import run_extract
    p, m = tiny_ckpt
    ck = tmp_path/'tiny.pth'; save_frcnn(m, ck)        # keeps min/max size so the CLI needs no size flags
    out = tmp_path/'out'
    run_extract({'pc': str(fixture_path('library', 'pepper-carrot'))}, out, workers=1, progress=False, show=False)
    assert main(['--out', str(out), '--detector', 'frcnn', '--weights', str(ck), '--score-thresh', '0.0', '--no-progress']) == 0
    det = pd.read_parquet(Layout(out).detect('frcnn'))
    assert list(det.columns) == DETECT_COLUMNS and len(det) > 0
    assert set(det.weights) == {str(ck)} and set(det.detector) == {'frcnn'}
    assert (det.groupby('page_id').order.apply(lambda s: sorted(s) == list(range(len(s))))).all()
    assert set(read_audit(out, 'detect-frcnn').status) == {'ok'}
