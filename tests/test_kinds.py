"Balloon kinds: synthetic pages with exact truth in both reading directions, NYC2123's human types, and DataSpec."
import json
from collections import Counter
from pathlib import Path
import numpy as np, pandas as pd, pytest
from comix.kinds import KINDS, TRUTH_KINDS, group_kinds, load_kinds_model, real_kind_pages, area_kinds
from comix.kinds_train import styled_page
from comix.synth import synth_page

def _truth_groups(t):
    lines = [L for b in t['balloons'] for L in b['lines']]
    return lines, [k for k, b in enumerate(t['balloons']) for _ in b['lines']], [TRUTH_KINDS[b['kind']] for b in t['balloons']]

def _score(pages):
    "Per true kind: (right, total) over (image, truth) pages, with the true line boxes and panels"
    res = Counter()
    for img, t in pages:
        lines, labels, want = _truth_groups(t)
        got = group_kinds(img, lines, labels, t['panels'])
        for g, w in zip(got, want): res[w, 'n'] += 1; res[w, 'ok'] += g == w
    return {k: (res[k, 'ok'], res[k, 'n']) for k in KINDS}

@pytest.mark.parametrize('rtl', [False, True])
def test_plain_synthetic_pages(rtl):
    "comix.synth pages (ovals with tails, boxed captions, outlined sound effects), western and manga"
    pages = [synth_page(seed=s, layout=['grid', 'irregular', 'inset'][s % 3], size=(800, 1200), rtl=rtl, sfx=True) for s in range(6)]
    res = _score(pages)
    for k, (ok, n) in res.items(): assert n >= 3 and ok / n >= 0.9, (k, res)

@pytest.mark.parametrize('rtl', [False, True])
def test_styled_synthetic_pages(rtl):
    "Every look of comix.synth_art (clouds, shouts, coloured, translucent and borderless captions, rotated sfx) on pages it did not train on"
    pages = [styled_page(seed=90000 + s, size=(800, 1200), rtl=rtl) for s in range(5)]
    res = _score(pages)
    for k, (ok, n) in res.items(): assert n >= 3 and ok / n >= 0.85, (k, res)
    assert sum(ok for ok, _ in res.values()) / sum(n for _, n in res.values()) >= 0.93, res

def test_group_forms_and_vertical_writing():
    "Groups as index lists or per-line labels give the same kinds; a page turned on its side (vertical lines) too"
    img, t = synth_page(seed=0, layout='grid', size=(800, 1200), sfx=True)
    lines, labels, want = _truth_groups(t)
    lists = [[i for i, g in enumerate(labels) if g == k] for k in range(len(t['balloons']))]
    got = group_kinds(img, lines, labels, t['panels'])
    assert group_kinds(img, lines, lists, t['panels']) == got
    swap = lambda b: dict(b, x=b['y'], y=b['x'], w=b['h'], h=b['w'])
    turned = np.ascontiguousarray(np.asarray(img).transpose(1, 0, 2))
    vertical = [g for g in lists if all(lines[i]['w'] > 1.5 * lines[i]['h'] for i in g)]
    assert len(vertical) >= 3
    assert group_kinds(turned, [swap(L) for L in lines], vertical, [swap(p) for p in t['panels']]) == \
           group_kinds(img, lines, vertical, t['panels'])
    assert group_kinds(img, [], []) == [] and group_kinds(img, lines, [[], lists[0]])[0] == 'dialogue'

def test_shipped_model_is_small_and_plain():
    m = load_kinds_model()
    assert Path(m.info['weights']).name == 'kinds.npz' and m.W1.shape[0] == 3 and len(m.features) == m.W1.shape[1]
    assert m.info['held_out_accuracy'] >= 0.98
    np.load(Path(__file__).resolve().parents[1]/'comix'/'weights'/'kinds.npz', allow_pickle=False)   # no pickles inside

def test_nyc2123_human_types(real_data):
    "OCR -> text groups -> kinds on NYC2123 screens with speech balloons (05-07) and captions (05, 11), against ACBF types"
    from comix.ocr import RapidOCRBackend
    from comix.text import assign_text
    ocr, right, total = RapidOCRBackend(threads=1), 0, 0
    for key, path, areas in real_kind_pages('nyc2123', real_data):
        if key not in ('pages/05.jpg', 'pages/06.jpg', 'pages/07.jpg', 'pages/11.jpg'): continue
        lines, balloons = assign_text(ocr(path), [], image=path)
        kinds = group_kinds(path, lines, [b['lines'] for b in balloons])
        per_line = {i: k for b, k in zip(balloons, kinds) for i in b['lines']}
        got = area_kinds(lines, [per_line[i] for i in range(len(lines))], areas)
        right += sum(g == a['kind'] for g, a in zip(got, areas)); total += len(areas)
    assert total == 7 and right >= 6, (right, total)

def test_dataspec_of_an_ocr_only_run_puts_captions_under_narration(tmp_path):
    "extract -> detect -> text (OCR) -> align on a synthetic book: the captions' words land in DataSpec's narration lists"
    from comix.extract import run_extract
    from comix.detect import run_detect
    from comix.text import TextOcrStage
    from comix.align import run_align
    from comix.stage import run_stage
    from comix.synth import synth_library
    from comix.ocr import norm_words
    from comix.paths import Layout
    truth = synth_library(tmp_path/'lib', n_books=1, pages_per_book=3, seed=7, size=(700, 1050), rtl=False)
    out = tmp_path/'out'
    run_extract({'synth': str(tmp_path/'lib')}, out, workers=1, progress=False, show=False)
    run_detect(out, progress=False, show=False)
    assert run_stage(TextOcrStage(ocr_options=dict(threads=1)), out, progress=False, show=False).exit_code == 0
    assert 'kind' in pd.read_parquet(Layout(out).text_table('ocr')).columns
    run_align(out, progress=False, show=False)
    specs = {json.loads(p.read_text())['page_id']: json.loads(p.read_text()) for p in Path(Layout(out).dataspec_dir).rglob('*.json')}
    man = pd.read_parquet(Layout(out).manifest).sort_values('page_index')
    got = Counter()
    for pid, t in zip(man.page_id, truth.sort_values('page_index').to_dict('records')):
        items = [(k, Counter(norm_words(s))) for p in specs.get(pid, {}).get('panels', []) for k in KINDS for s in p['text'][k]]
        for b in t['balloons']:
            w = Counter(norm_words(b['text']))
            best = max(items, key=lambda it: sum((it[1] & w).values()), default=(None, Counter()))
            if sum((best[1] & w).values()) >= 0.5 * sum(w.values()): got[TRUTH_KINDS[b['kind']], best[0]] += 1
    n = lambda k: sum(v for (a, _), v in got.items() if a == k)
    assert n('narration') >= 2 and n('dialogue') >= 2, got                        # the book has captions and speech, found
    assert got['narration', 'narration'] >= 0.8 * n('narration'), got             # captions under narration
    assert got['dialogue', 'dialogue'] >= 0.8 * n('dialogue'), got                # speech stays dialogue
