"Text to panels, balloons and reading order on synthetic truth, and the `comix text` stage end to end."
import json, os
from pathlib import Path
import pandas as pd, pytest
from comix.ocr import make_line, norm_words, word_counts, prf
from comix.paths import Layout, read_audit, reconcile, atomic_write_parquet
from comix.synth import synth_page, synth_library
from comix.text import assign_text, truth_order, run_text_ocr, main, TEXT_COLUMNS, collect_text_table

LAYOUTS = ['grid', 'borderless', 'splash', 'irregular', 'inset', 'coloured_gutter']

def _truth_lines(t):
    return [make_line(L['text'], 1.0, [[L['x'], L['y']], [L['x']+L['w'], L['y']], [L['x']+L['w'], L['y']+L['h']], [L['x'], L['y']+L['h']]])
            for b in t['balloons'] for L in b['lines']]

def test_assignment_on_synthetic_truth():
    n = ordered = 0
    for seed in range(8):
        for lay in LAYOUTS:
            rtl = seed % 2 == 1
            _, t = synth_page(seed=seed, layout=lay, rtl=rtl, size=(600, 900) if seed % 3 else (1000, 1500), grain=0)
            lines, balloons = assign_text(_truth_lines(t), t['panels'], rtl=rtl)
            true_panel = [b['panel'] if b['panel'] is not None else -1 for b in t['balloons'] for _ in b['lines']]
            true_balloon = [k for k, b in enumerate(t['balloons']) for _ in b['lines']]
            got_balloon = [L['balloon_index'] for L in lines]
            assert [L['panel_index'] for L in lines] == true_panel, (seed, lay)            # exact
            assert len(set(zip(got_balloon, true_balloon))) == len(t['balloons']) == len(balloons), (seed, lay)  # exact
            n += 1; ordered += [L['text'] for L in sorted(lines, key=lambda L: L['order'])] == truth_order(t)
    assert ordered == n, (ordered, n)   # reading order exact too

def test_page_level_text_and_threshold():
    panels = [dict(x=0, y=0, w=100, h=100)]
    half_out = make_line('HALF', 1, [[80, 10], [120, 10], [120, 20], [80, 20]])     # 50% inside
    mostly_out = make_line('OUT', 1, [[90, 50], [190, 50], [190, 60], [90, 60]])    # 10% inside
    lines, _ = assign_text([half_out, mostly_out], panels)
    assert [L['panel_index'] for L in lines] == [0, -1]
    lines, _ = assign_text([half_out, mostly_out], panels, min_overlap=0.6)
    assert [L['panel_index'] for L in lines] == [-1, -1]

@pytest.fixture(scope='module')
def library(tmp_path_factory):
    from comix.extract import run_extract
    tmp = tmp_path_factory.mktemp('text')
    truth = synth_library(tmp/'lib', n_books=1, pages_per_book=3, seed=21, size=(600, 900), rtl=False)
    out = tmp/'out'
    run_extract({'synth': str(tmp/'lib')}, out, workers=1, progress=False, show=False)
    man = pd.read_parquet(Layout(out).manifest)
    # panels of the truth as a detector would write them (contract of OUT/detect/<detector>.parquet)
    rows = []
    for pid, t in zip(man.sort_values('page_index').page_id, truth.to_dict('records')):
        for i, p in enumerate(t['panels']):
            rows.append(dict(page_id=pid, panel_index=i, **p, score=1.0, order=i, detector='truth', weights=''))
    atomic_write_parquet(Layout(out).detect('truth'), pd.DataFrame(rows))
    return out, man, truth

def test_stage_end_to_end(library):
    out, man, truth = library
    ids = list(man.page_id)
    audit = run_text_ocr(out, detector='truth', ocr_options=dict(threads=1), pages=ids + ['synth/missing/0000'], progress=False)
    assert dict(zip(audit.page_id, audit.reason))['synth/missing/0000'] == 'unreadable_page'
    assert (audit.status == 'ok').sum() == len(ids)
    reconcile(read_audit(out, 'text_ocr'), len(ids) + 1, show=False)
    table = pd.read_parquet(Layout(out).text_table('ocr'))
    assert list(table.columns) == TEXT_COLUMNS
    doc = json.loads(Path(Layout(out).text_json('ocr', ids[0])).read_text())
    assert doc['provenance']['backend'] == 'rapidocr' and doc['provenance']['detector'] == 'truth'
    assert doc['provenance']['versions']['rapidocr'] and doc['provenance']['time']
    for pid, t in zip(man.sort_values('page_index').page_id, truth.to_dict('records')):
        got = table[table.page_id == pid].sort_values('order')
        want = [b['text'] for b in t['balloons']]
        s = prf(*word_counts(norm_words(' '.join(got.text)), norm_words(' '.join(want))))
        assert s['f1'] >= 0.95, (pid, s)
        if t['page_type'] == 'story':   # every line lands in the panel of the true balloon it lies in
            def true_panel(r):
                cx, cy = r.x + r.w/2, r.y + r.h/2
                return next(b['panel'] for b in t['balloons'] if b['x'] <= cx <= b['x']+b['w'] and b['y'] <= cy <= b['y']+b['h'])
            assert [r.panel_index for r in got.itertuples()] == [true_panel(r) for r in got.itertuples()]
    # rerun: every page skipped, nothing rewritten
    again = run_text_ocr(out, detector='truth', ocr_options=dict(threads=1), pages=ids, progress=False)
    assert set(again.reason) == {'already_done'}
    assert pd.read_parquet(Layout(out).text_table('ocr')).equals(table)

def test_shards_and_cli(library, tmp_path):
    out, man, _ = library
    for s in range(2):
        assert main(['--out', str(out), '--shard', str(s), '--num-shards', '2', '--threads', '1', '--no-progress', '--detector', 'truth']) == 0
    parts = read_audit(out, 'text_ocr')
    assert set(parts.page_id) >= set(man.page_id)
    assert main(['--out', str(out), '--collect']) == 0
    assert set(pd.read_parquet(Layout(out).text_table('ocr')).page_id) <= set(man.page_id)

def test_cli_vlm_backend_delegates(library, monkeypatch):
    from comix.vlm import LoopbackVLMServer
    out, man, _ = library
    monkeypatch.setenv('COMIX_TEST_KEY', 'loopback-test')
    with LoopbackVLMServer() as srv:
        rc = main(['--out', str(out), '--backend', 'vlm', '--base-url', srv.base_url, '--model', 'loopback', '--api-key-env', 'COMIX_TEST_KEY'])
    assert rc == 0
    assert {l['page_id'] for l in srv.log} == set(man.page_id)
    assert all(Path(Layout(out).text_json('vlm', pid)).exists() for pid in man.page_id)
