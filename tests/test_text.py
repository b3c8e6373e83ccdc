"Text to panels, balloons and reading order on synthetic truth, and the `comix text` stage end to end."
import json, os, shutil
from pathlib import Path
import pandas as pd, pytest
from comix.ocr import make_line, norm_words, word_counts, prf
from comix.paths import Layout, read_audit, reconcile, atomic_write_parquet
from comix.stage import run_stage
from comix.synth import synth_page, synth_library
from comix.text import assign_text, truth_order, main, TEXT_COLUMNS, TextOcrStage

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

def _copy(src, dst, text=True):
    "A copy of an output folder (without the text outputs when `text` is False)"
    shutil.copytree(src, dst, ignore=None if text else shutil.ignore_patterns('text', 'text-*'))
    return dst

def _ocr(**kw): return TextOcrStage(detector='truth', ocr_options=dict(threads=1), **kw)

@pytest.fixture(scope='module')
def library(tmp_path_factory):
    "Two synthetic books of two pages (a cover and a story page each), extracted, with their true panels as detections"
    from comix.extract import run_extract
    tmp = tmp_path_factory.mktemp('text')
    truth = synth_library(tmp/'lib', n_books=2, pages_per_book=2, seed=21, size=(600, 900), rtl=False)
    out = tmp/'out'
    run_extract({'synth': str(tmp/'lib')}, out, workers=1, progress=False, show=False)
    man = pd.read_parquet(Layout(out).manifest).sort_values(['book_key', 'page_index'], ignore_index=True)
    truth = truth.sort_values(['book_key', 'page_index'], ignore_index=True)
    assert man.book_key.tolist() == truth.book_key.tolist() and 'story' in set(truth.page_type)
    # panels of the truth as a detector would write them (contract of OUT/detect/<detector>.parquet)
    rows = []
    for pid, t in zip(man.page_id, truth.to_dict('records')):
        for i, p in enumerate(t['panels']):
            rows.append(dict(page_id=pid, panel_index=i, **p, score=1.0, order=i, detector='truth', weights=''))
    atomic_write_parquet(Layout(out).detect('truth'), pd.DataFrame(rows))
    _copy(out, tmp/'pristine')                  # manifest + detections, no text yet
    return out, man, truth, tmp/'pristine'

@pytest.fixture(scope='module')
def ocr_run(library):
    "The OCR stage run once over the library (real RapidOCR)"
    out, man, truth, _ = library
    return run_stage(_ocr(), out, progress=False, show=False)

def test_stage_end_to_end(library, ocr_run):
    out, man, truth, _ = library
    res, ids = ocr_run, list(man.page_id)
    assert res.exit_code == 0 and res.counts == dict(units=len(ids), processed=len(ids), ok=len(ids), skipped=0, error=0)
    reconcile(read_audit(out, 'text-ocr'), len(ids), show=False)
    assert not Path(Layout(out).audit('text_ocr')).exists()          # one audit name: text-ocr
    table = pd.read_parquet(Layout(out).text_table('ocr'))
    assert list(table.columns) == TEXT_COLUMNS
    pd.testing.assert_frame_equal(table, res.table, check_dtype=False)
    doc = json.loads(Path(Layout(out).text_json('ocr', ids[0])).read_text())
    assert doc['provenance']['backend'] == 'rapidocr' and doc['provenance']['detector'] == 'truth'
    assert doc['provenance']['versions']['rapidocr'] and doc['provenance']['time']
    for pid, t in zip(man.page_id, truth.to_dict('records')):
        got = table[table.page_id == pid].sort_values('order')
        want = [b['text'] for b in t['balloons']]
        s = prf(*word_counts(norm_words(' '.join(got.text)), norm_words(' '.join(want))))
        assert s['f1'] >= 0.95, (pid, s)
        if t['page_type'] == 'story':   # every line lands in the panel of the true balloon it lies in
            def true_panel(r):
                cx, cy = r.x + r.w/2, r.y + r.h/2
                return next(b['panel'] for b in t['balloons'] if b['x'] <= cx <= b['x']+b['w'] and b['y'] <= cy <= b['y']+b['h'])
            assert [r.panel_index for r in got.itertuples()] == [true_panel(r) for r in got.itertuples()]
    # rerun: every page skipped, nothing processed, the same table
    again = run_stage(_ocr(), out, progress=False, show=False)
    assert again.counts['processed'] == 0 and set(again.audit.reason) == {'already_done'} and again.exit_code == 0
    assert pd.read_parquet(Layout(out).text_table('ocr')).equals(table)

def test_changed_detections_keep_lines_and_redo_panels(library, ocr_run, tmp_path):
    "Only the detections of one page change: that page is `reassigned` (its OCR lines kept), the others already done"
    out, man, truth, _ = library
    out = _copy(out, tmp_path/'out')
    det = pd.read_parquet(Layout(out).detect('truth'))
    story = man.page_id[truth.page_type.eq('story').to_numpy()].iloc[0]
    last = det[det.page_id == story].panel_index.max()
    atomic_write_parquet(Layout(out).detect('truth'), det[~((det.page_id == story) & (det.panel_index == last))])
    res = run_stage(_ocr(), out, progress=False, show=False)
    assert res.counts['processed'] == 1 and res.exit_code == 0
    assert dict(zip(res.audit.page_id, res.audit.reason)) == {p: 'reassigned' if p == story else 'already_done' for p in man.page_id}
    before, after = (t[t.page_id == story].sort_values('text', ignore_index=True) for t in (ocr_run.table, res.table))
    assert after.text.tolist() == before.text.tolist() and after.score.tolist() == before.score.tolist()   # lines kept
    assert last in set(before.panel_index) and last not in set(after.panel_index)                          # panels redone
    others = lambda t: t[t.page_id != story].reset_index(drop=True)
    pd.testing.assert_frame_equal(others(res.table), others(ocr_run.table))

def test_hostile_inputs_are_audited(library, ocr_run, tmp_path):
    "A manifest row whose image is gone, detections of a page of another manifest, NaN and negative boxes"
    out, man, truth, _ = library
    out = _copy(out, tmp_path/'out')
    m = pd.read_parquet(Layout(out).manifest)
    gone = m.iloc[[0]].assign(page_id='synth/gone/0000', book_key='gone', container='gone.cbz')
    atomic_write_parquet(Layout(out).manifest, pd.concat([m, gone], ignore_index=True))
    det = pd.read_parquet(Layout(out).detect('truth'))
    ids = list(man.page_id)
    bad = pd.concat([det.iloc[[0]].assign(page_id='other/book/0000'), det.iloc[[0]].assign(page_id=ids[0], panel_index=90, x=float('nan')),
                     det.iloc[[0]].assign(page_id=ids[1], panel_index=91, w=-5)], ignore_index=True)
    atomic_write_parquet(Layout(out).detect('truth'), pd.concat([det, bad], ignore_index=True))
    res = run_stage(_ocr(), out, progress=False, show=False)
    assert res.exit_code == 3 and res.counts['units'] == len(ids) + 1 and res.counts['error'] == 1
    got = dict(zip(res.audit.page_id, zip(res.audit.status, res.audit.reason)))
    assert got.pop('synth/gone/0000') == ('error', 'unreadable_page')
    # the other pages are done: left-out bad rows change no page's valid panels, so no fingerprint
    assert set(got) == set(ids) and set(got.values()) == {('skipped', 'already_done')}
    a = read_audit(out, 'text-ocr')
    inputs = a[a.level == 'input']
    assert sorted(zip(inputs.page_id, inputs.reason)) == sorted([('other/book/0000', 'not_in_manifest'), (ids[0], 'bad_row'), (ids[1], 'bad_row')])
    reconcile(a, len(ids) + 1, show=False)                       # input rows are not units
    assert set(res.table.page_id) == set(ids)                     # no row for the foreign page, none for the gone one
    pd.testing.assert_frame_equal(res.table, ocr_run.table)

def test_bad_rows_leave_other_pages_fingerprints_alone(library, tmp_path):
    from comix.stage import Context
    out, man, _, pristine = library
    out, ids = _copy(pristine, tmp_path/'out'), list(man.page_id)
    before = _ocr().fingerprints(Context(out), ids)
    det = pd.read_parquet(Layout(out).detect('truth'))
    bad = det.iloc[[0]].assign(page_id=ids[0], panel_index=90, x=float('nan'))
    atomic_write_parquet(Layout(out).detect('truth'), pd.concat([det, bad], ignore_index=True))
    assert _ocr().fingerprints(Context(out), ids) == before

def test_missing_input_exits_2(tmp_path, capsys):
    assert main(['--out', str(tmp_path/'empty'), '--no-progress']) == 2
    assert 'no manifest' in capsys.readouterr().err

def test_shards_and_cli(library, ocr_run, tmp_path):
    "Three shards through the CLI fold into the one table and audit of the unsharded run"
    out, man, _, pristine = library
    sh = _copy(pristine, tmp_path/'sh')
    # the OCR lines of each page come from its page document (kept across runs), the assignment is redone per shard
    shutil.copytree(Path(Layout(out).text_dir('ocr')), Path(Layout(sh).text_dir('ocr')))
    for s in range(3):
        assert main(['--out', str(sh), '--shard', str(s), '--num-shards', '3', '--threads', '1', '--no-progress', '--detector', 'truth']) == 0
    a = read_audit(sh, 'text-ocr')
    reconcile(a, len(man), show=False)
    assert set(a.page_id) == set(man.page_id) and a.run.nunique() >= 2 and set(a.reason) == {'reassigned'}
    assert not list(Path(Layout(sh).text_table('ocr')).parent.glob('ocr.parts/*.parquet'))
    pd.testing.assert_frame_equal(pd.read_parquet(Layout(sh).text_table('ocr')), pd.read_parquet(Layout(out).text_table('ocr')))

def test_cli_vlm_backend_delegates(library, monkeypatch, capsys):
    from comix.testing.vlm import LoopbackVLMServer, SAMPLE_RESULT
    out, man, _, _ = library
    assert main(['--out', str(out), '--backend', 'vlm', '--no-progress']) == 2             # no endpoint configured
    assert '--base-url' in capsys.readouterr().err
    monkeypatch.delenv('COMIX_UNSET_KEY', raising=False)
    with LoopbackVLMServer() as srv:
        assert main(['--out', str(out), '--backend', 'vlm', '--base-url', srv.base_url, '--api-key-env', 'COMIX_UNSET_KEY']) == 2
        assert not srv.log and 'COMIX_UNSET_KEY' in capsys.readouterr().err
    monkeypatch.setenv('COMIX_TEST_KEY', 'loopback-test')
    with LoopbackVLMServer() as srv:
        rc = main(['--out', str(out), '--backend', 'vlm', '--base-url', srv.base_url, '--model', 'loopback',
                   '--api-key-env', 'COMIX_TEST_KEY', '--no-progress'])
    assert rc == 0
    assert sorted(l['page_id'] for l in srv.log) == sorted(man.page_id)
    assert {l['authorization'] for l in srv.log} == {'Bearer loopback-test'}
    assert all(Path(Layout(out).text_json('vlm', pid)).exists() for pid in man.page_id)
    reconcile(read_audit(out, 'text-vlm'), len(man), show=False)
    t = pd.read_parquet(Layout(out).text_table('vlm'))
    per_page = sum(len(p['dialogue']) + len(p['narration']) + len(p['sfx']) for p in SAMPLE_RESULT['panels'])
    assert t.groupby('page_id').size().to_dict() == {p: per_page for p in man.page_id}
