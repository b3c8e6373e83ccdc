"The align stage end to end on synthetic books: DataSpec round trip, skip reasons, duplicates, resume after SIGKILL, shards."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import fsspec, numpy as np, pandas as pd, pytest
from PIL import Image
from comix.align import run_align, main, AlignStage
from comix.testing.align import synthetic_run, layout_truths, random_flaws, truth_tables, write_inputs
from comix.stage import run_stage
from comix.dataspec import read_dataspec, dataspec_files, TEXT_KINDS
from comix.paths import Layout, atomic_write_parquet, read_audit, reconcile

def _expected_text(truth, i):
    "What the seed's loader should read for panel i: the VLM's dialogue then captions, else the OCR lines in the panel"
    bal = [b for b in truth['balloons'] if b['panel'] == i]
    vlm = [b['text'] for b in bal if b['kind'] == 'dialogue'] + [b['text'] for b in bal if b['kind'] == 'caption']
    return ' '.join(vlm or [' '.join(L['text'] for L in b['lines']) for b in bal])

@pytest.fixture
def run(tmp_path):
    S = synthetic_run(tmp_path/'out', tmp_path/'lib', n_pages=6, seed=21)
    return tmp_path/'out', S

def test_dataspec_round_trip_through_seed_reader(run):
    out, S = run
    r = run_align(out, show=False, progress=False)
    assert r.counts == dict(units=6, processed=6, ok=6, skipped=0, error=0) and r.exit_code == 0
    assert (r.table.status == 'ok').all() and len(r.table) == 6
    assert len(list(Path(Layout(out).dataspec_dir).rglob('0*.json'))) == 6
    files = dataspec_files(Path(Layout(out).lists_dir)/'perfect.txt')
    assert len(files) == 6                                       # every VLM panel count is right
    for f in files:
        d = read_dataspec(f)
        t = S['truths'][d['page_id']]
        assert [p['bbox'] for p in d['panels']] == [[b[k] for k in 'xywh'] for b in t['panels']]
        assert [p['text'] for p in d['panels']] == [_expected_text(t, i) for i in range(len(t['panels']))]
        assert d['size'] == [t['width'], t['height']]
        with fsspec.open(d['image']) as fh: assert Image.open(fh).size == (t['width'], t['height'])   # zip://entry::book.cbz
    raw = json.loads(Path(files[0]).read_text())
    assert raw['dataspec_version'] == '0.3' and raw['provenance']['detector'] == 'classical'
    assert all(it['source'] in ('vlm', 'ocr') for p in raw['panels'] for it in p['text_items'])

def test_quality_cases_on_synthetic_book(tmp_path):
    S = synthetic_run(tmp_path/'out', tmp_path/'lib', n_pages=4, seed=8)
    ids = list(S['truths'])
    n = [len(S['truths'][p]['panels']) for p in ids]
    T = truth_tables(S['truths'], drop={ids[1]: [0]}, no_text={ids[2]}, shift={ids[3]: 0.3})   # redo the inputs, imperfect
    write_inputs(tmp_path/'out', T)
    q = run_align(tmp_path/'out', show=False, progress=False).table.set_index('page_id').loc[ids]
    assert q.is_perfect_match.tolist() == [True, False, True, True]
    assert q.panel_count_ratio.iloc[1] == pytest.approx((n[1] - 1) / n[1])
    assert q.text_coverage.iloc[2] == 0.0
    assert q.geo_match_share.tolist()[:3] == [1.0, (n[1] - 1) / n[1], 1.0]
    assert q.geo_mean_iou.iloc[3] == pytest.approx(0.7 / 1.3, abs=1e-6)
    said = lambda p, i: any(b['panel'] == i and b['kind'] in ('dialogue', 'caption') for b in S['truths'][p]['balloons'])
    has_text = [sum(said(p, i) for i in range(k)) for p, k in zip(ids, n)]
    cov0 = has_text[0] / n[0]
    assert q.quality_score.iloc[0] == 2 + (1 if cov0 >= 0.5 else 0.5 if cov0 >= 0.3 else 0) + (1 if n[0] <= 15 else 0.5)

def test_skip_reasons_missing_image_and_reconcile(run):
    out, S = run
    man = pd.read_parquet(Layout(out).manifest)
    det = pd.read_parquet(Layout(out).detect('classical'))
    ghost = det[det.page_id == man.page_id[0]].assign(page_id='synth/Ghost Book/0000')   # detections of a page no manifest knows
    first, third = man.page_id[1], man.page_id[3]
    nan_box = det[det.page_id == third].iloc[[0]].assign(panel_index=99, w=np.nan)        # a NaN box beside good ones
    neg_box = det[det.page_id == third].iloc[[0]].assign(panel_index=98, h=-10)           # and a negative size
    atomic_write_parquet(Layout(out).detect('classical'), pd.concat([det[det.page_id != first], ghost, nan_box, neg_box]))
    r = run_align(out, show=False, progress=False)
    q = r.table.set_index('page_id')
    assert set(q.index) == set(man.page_id)                                          # only manifest pages
    assert q.loc[first, 'reason'] == 'no_dets_after_threshold'
    assert q.loc[third, 'status'] == 'ok' and q.loc[third, 'det_panels'] == len(S['truths'][third]['panels'])
    assert (q.status == 'ok').sum() == 5 and r.exit_code == 0
    a = read_audit(out, 'align')
    counts = reconcile(a, 6, show=False)                                              # input rows are not units
    assert counts.set_index(['status', 'reason']).n.to_dict() == {('ok', '-'): 5, ('skipped', 'no_dets_after_threshold'): 1}
    inputs = a[a.level == 'input']
    assert sorted(zip(inputs.page_id, inputs.reason)) == sorted([(third, 'bad_row'), ('synth/Ghost Book/0000', 'not_in_manifest')])
    assert 'detect/classical' in inputs.set_index('page_id').detail['synth/Ghost Book/0000']
    skips = pd.read_csv(Path(Layout(out).quality).parent/'skips.csv')
    assert sorted(skips.reason) == ['no_dets_after_threshold']
    book, = Path(out).parent.joinpath('lib').glob('*.cbz')
    os.remove(book)                                                                  # the book itself disappears
    r = run_align(out, show=False, progress=False, redo=True)                        # redo: everything again
    assert set(r.table.reason) == {'missing_image'} and len(r.table) == 6 and r.counts['processed'] == 6
    assert not list(Path(Layout(out).dataspec_dir).rglob('0*.json'))                 # stale DataSpec files removed
    reconcile(read_audit(out, 'align'), 6, show=False)

def test_vanished_book_makes_its_pages_missing_image_on_rerun(run):
    out, S = run
    assert (run_align(out, show=False, progress=False).table.status == 'ok').all()
    book, = Path(out).parent.joinpath('lib').glob('*.cbz')
    os.remove(book)
    r = run_align(out, show=False, progress=False)
    assert set(r.table.reason) == {'missing_image'} and r.counts['processed'] == 6
    assert not list(Path(Layout(out).dataspec_dir).rglob('0*.json'))

def test_duplicates_stay_out_of_training_lists(run):
    out, S = run
    man = pd.read_parquet(Layout(out).manifest)
    dup = man.page_id[2]
    man.loc[man.page_id == dup, 'canonical'] = False
    atomic_write_parquet(Layout(out).manifest, man)
    stage = AlignStage()
    r = run_stage(stage, out, show=False, progress=False)
    assert set(stage.lists) == {'perfect', 'near_perfect', 'high_quality', 'high_quality_ocr'}
    lists = {k: [read_dataspec(f)['page_id'] for f in dataspec_files(Path(Layout(out).lists_dir)/f'{k}.txt')] for k in stage.lists}
    assert {k: len(v) for k, v in lists.items()} == stage.lists
    for k, v in lists.items(): assert dup not in v, k
    assert len(lists['perfect']) == 5
    assert os.path.exists(Layout(out).dataspec(dup))                                 # written, just not listed
    assert not r.table.set_index('page_id').canonical[dup]

def test_page_marked_duplicate_later_leaves_the_lists(run):
    out, S = run
    run_align(out, show=False, progress=False)
    man = pd.read_parquet(Layout(out).manifest)
    dup = man.page_id[2]
    man.loc[man.page_id == dup, 'canonical'] = False
    atomic_write_parquet(Layout(out).manifest, man)
    r = run_align(out, show=False, progress=False)
    assert not r.table.set_index('page_id').canonical[dup]
    perfect = [read_dataspec(f)['page_id'] for f in dataspec_files(Path(Layout(out).lists_dir)/'perfect.txt')]
    assert dup not in perfect and len(perfect) == 5

def _big_run(out, n):
    "A manifest and inputs for n synthetic pages (no images; --no-check-images)"
    LT = layout_truths(n, seed=3, size=(800, 1200))
    T = truth_tables(LT, **random_flaws(LT, seed=3))
    man = T['pages'].assign(source='synth', book_key=[p.rsplit('/', 1)[0] for p in T['pages'].page_id], container='x.cbz',
                            entry='p.jpg', page_index=0, canonical=True)
    atomic_write_parquet(Layout(out).manifest, man)
    write_inputs(out, T)

def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in Path(root).rglob('*.json')}

KILL = ('import sys; from comix.align import AlignStage, main\n'
        'AlignStage.chunk = 150      # commit every 150 pages, so that a kill lands between commits\n'
        'sys.exit(main(sys.argv[1:]))')

def _parts(out):
    d = Path(Layout(out).quality).parent/'quality.parts'
    return sorted(d.glob('*.audit.parquet')) if d.is_dir() else []

def _lists(out):
    return {k: (Path(Layout(out).lists_dir)/f'{k}.txt').read_text().replace(str(out), '')
            for k in ('perfect', 'near_perfect', 'high_quality', 'high_quality_ocr')}

def test_sigkill_then_resume_equals_clean_run(tmp_path):
    for o in ('killed', 'clean'): _big_run(tmp_path/o, 1500)
    cmd = [sys.executable, '-c', KILL, '--out', str(tmp_path/'killed'), '--no-check-images', '--no-progress']
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while len(_parts(tmp_path/'killed')) < 2 and p.poll() is None and time.time() - t0 < 120: time.sleep(0.005)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not os.path.exists(Layout(tmp_path/'killed').quality), 'the run finished before it could be killed'
    committed = pd.concat([pd.read_parquet(f) for f in _parts(tmp_path/'killed')])
    assert committed.page_id.is_unique and 300 <= len(committed) < 1500
    n_before = len(list(Path(Layout(tmp_path/'killed').dataspec_dir).rglob('*.json')))
    assert 0 < n_before < 1500
    for f in Path(Layout(tmp_path/'killed').dataspec_dir).rglob('*.json'): json.loads(f.read_text())   # no torn file at a final name
    r = run_align(tmp_path/'killed', check_images=False, show=False, progress=False)
    done = set(r.audit.page_id[r.audit.reason == 'already_done'])
    assert done == set(committed.page_id) and r.counts['processed'] == 1500 - len(done)   # the committed chunks are not redone
    assert not _parts(tmp_path/'killed')
    c = run_align(tmp_path/'clean', check_images=False, show=False, progress=False)
    pd.testing.assert_frame_equal(r.table, c.table)
    a, b = _tree(Layout(tmp_path/'killed').dataspec_dir), _tree(Layout(tmp_path/'clean').dataspec_dir)
    assert len(a) == (c.table.status == 'ok').sum() and a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert _lists(tmp_path/'killed') == _lists(tmp_path/'clean')

def test_shards_split_and_merge_like_one_run(tmp_path):
    _big_run(tmp_path/'one', 400); _big_run(tmp_path/'three', 400)
    assert main(['--out', str(tmp_path/'one'), '--no-check-images', '--no-progress']) == 0
    for s in range(3): assert main(['--out', str(tmp_path/'three'), '--no-check-images', '--no-progress', '--shard', str(s), '--num-shards', '3']) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(Layout(tmp_path/'one').quality), pd.read_parquet(Layout(tmp_path/'three').quality))
    a = read_audit(tmp_path/'three', 'align')
    reconcile(a, 400, show=False)
    by_run = a[a.level == 'page'].groupby('run').page_id.nunique()
    assert len(by_run) == 3 and by_run.sum() == 400 and (by_run > 50).all()       # three disjoint shards, one audit
    assert not _parts(tmp_path/'three') and list(Path(tmp_path/'three'/'audit').iterdir()) == [Path(tmp_path/'three'/'audit'/'align.parquet')]
    one, three = _tree(Layout(tmp_path/'one').dataspec_dir), _tree(Layout(tmp_path/'three').dataspec_dir)
    assert one.keys() == three.keys() and all(one[k] == three[k] for k in one)
    assert _lists(tmp_path/'one') == _lists(tmp_path/'three')

def test_comix_align_command(run):
    out, _ = run
    from comix.cli import main as comix
    assert comix(['align', '--out', str(out), '--no-progress', '--min-text-coverage', '0.9']) == 0
    q = pd.read_parquet(Layout(out).quality)
    assert len(q) == 6 and (q.status == 'ok').all()

def test_images_option_gives_plain_files_for_the_seed_trainer(run, tmp_path):
    out, S = run
    assert main(['--out', str(out), '--no-progress', '--images', str(tmp_path/'pages')]) == 0
    for f in dataspec_files(Path(Layout(out).lists_dir)/'perfect.txt'):
        d = read_dataspec(f)
        assert d['image'].startswith(str(tmp_path/'pages')) and Image.open(d['image']).size == tuple(d['size'])
