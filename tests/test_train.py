"Training the panel encoder (comix.train) on synthetic DataSpec runs with tiny configs."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from comix.paths import Layout, atomic_write_parquet
from comix.model import collate, page_inputs
from comix.testing.model import content_page, embed_run, recall_at
from comix.train_data import synthetic_spec_run
from comix.train import TrainConfig, train, validate, build_model, prepare_data, main, _step, make_optimizer, batch_losses
from comix.train_data import PageViews, collate_views, select_pages, load_panels, _spec_ids

@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "A synthetic run (3 books x 6 story pages, exact panel text) and a tiny encoder trained on it"
    tmp = tmp_path_factory.mktemp('train')
    synthetic_spec_run(tmp / 'out', tmp / 'lib', n_books=3, pages_per_book=6, seed=2)
    cfg = TrainConfig(out=str(tmp / 'out'), arch='tiny', epochs=6, batch_pages=4, lr=2e-3, val_fraction=0.2,
                      warmup_steps=5, progress=False, run_dir=str(tmp / 'run'))
    return dict(tmp=tmp, cfg=cfg, res=train(cfg))

def test_short_run_lowers_the_loss(run):
    t = run['res']['metrics']; t = t[t.kind == 'train']
    assert len(t) >= 15 and t.loss.iloc[-5:].mean() < 0.8 * t.loss.iloc[:5].mean()
    assert t.skipped.iloc[-1] == 0 and np.isfinite(t.loss).all()

def test_validation_recall_beats_untrained(run):
    cfg = run['cfg']; D = prepare_data(cfg, 32); va = np.flatnonzero(D['val'])
    before = validate(build_model(cfg), D['data'], va, D['variants'], seed=cfg.seed)
    after = run['res']['val']
    assert after['image_r1'] > before['image_r1'] and after['text_r1'] >= before['text_r1']
    assert after['image_r1'] >= 0.6, (before, after)

def test_outputs_and_checkpoint_record_config_data_code(run):
    r, d = run['res'], run['tmp'] / 'run'
    assert (d / 'metrics.csv').exists() and (d / 'curves.png').exists() and (d / 'data.parquet').exists()
    ck = torch.load(d / 'encoder.pt', weights_only=True)
    assert ck['info']['data']['pages'] == 18 and len(ck['info']['data']['version']) == 16
    assert ck['info']['code']['source_sha256'] and ck['info']['train_config']['arch'] == 'tiny'
    last = sorted((d / 'checkpoints').glob('step-*.pt'))[-1]
    tc = torch.load(last, weights_only=True)
    assert set(tc) >= {'encoder', 'optimizer', 'scheduler', 'scaler', 'position', 'rng', 'train_config'}
    sel = pd.read_parquet(d / 'data.parquet')
    assert sel.use.all() and len(sel) == 18

def test_killed_and_resumed_reaches_the_same_weights(run):
    "Stopped after a checkpoint (mid-epoch), started again: the weights of an uninterrupted run with the same seed"
    cfg, tmp = run['cfg'], run['tmp']
    full = train(cfg, run_dir=str(tmp / 'full'), epochs=2)
    part = train(cfg, run_dir=str(tmp / 'part'), epochs=2, max_steps=5, checkpoint_every=2)
    assert part['encoder'] is None and part['position']['step'] == 5
    res = train(cfg, run_dir=str(tmp / 'part'), epochs=2)
    assert res['resumed_from'].endswith('step-0000005.pt')
    a, b = full['model'].state_dict(), res['model'].state_dict()
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-5
    m1, m2 = full['metrics'], res['metrics']
    assert len(m1) == len(m2) and np.allclose(m1.loss.fillna(0), m2.loss.fillna(0), atol=1e-4)

def _cli(*args): return [sys.executable, '-c', 'import sys; from comix.train import main; sys.exit(main(sys.argv[1:]))', *map(str, args)]

def test_sigkill_after_a_checkpoint_and_rerun_reaches_the_same_weights(run):
    "A real kill: `comix train` is SIGKILLed as soon as its first checkpoint file exists; the rerun resumes from it and"
    "ends with the weights and metrics of an uninterrupted run with the same seed"
    cfg, tmp = run['cfg'], run['tmp']
    args = ['--out', cfg.out, '--arch', 'tiny', '--epochs', '4', '--batch-pages', '4', '--lr', '2e-3', '--val-fraction', '0.2',
            '--warmup-steps', '5', '--threads', '1', '--no-progress', '--checkpoint-every', '2']
    env, q = {**os.environ, 'OMP_NUM_THREADS': '1'}, dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    full = subprocess.Popen(_cli(*args, '--run-dir', tmp / 'k_full'), env=env, **q)
    victim = subprocess.Popen(_cli(*args, '--run-dir', tmp / 'k_part'), env=env, **q)
    ck, t0 = tmp / 'k_part' / 'checkpoints', time.time()
    while not (ck.is_dir() and list(ck.glob('step-*.pt'))) and victim.poll() is None and time.time() - t0 < 120: time.sleep(0.002)
    victim.kill(); victim.wait()
    assert victim.returncode == -signal.SIGKILL and not (tmp / 'k_part' / 'encoder.pt').exists()
    left = sorted(p.name for p in ck.glob('step-*.pt')); assert left, 'killed before any checkpoint'
    r = subprocess.run(_cli(*args, '--run-dir', tmp / 'k_part'), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert full.wait() == 0, full.stderr.read()[-2000:]
    a, b = (torch.load(tmp / d / 'encoder.pt', weights_only=True) for d in ('k_full', 'k_part'))
    assert a['info']['steps'] == b['info']['steps'] > int(left[-1][5:12]), (a['info']['steps'], left)   # killed mid-run
    assert max((a['state_dict'][k].float() - b['state_dict'][k].float()).abs().max().item() for k in a['state_dict']) < 1e-5
    m1, m2 = (pd.read_csv(tmp / d / 'metrics.csv') for d in ('k_full', 'k_part'))
    assert len(m1) == len(m2) and np.allclose(m1.loss.fillna(0), m2.loss.fillna(0), atol=1e-4)

def test_hostile_dataspec_pages_are_left_out_with_a_reason(tmp_path):
    "NaN, infinite, area-less and off-page boxes and a truncated DataSpec file: those pages are audited and left out,"
    "the rest trains with finite losses; an OCR-only quality table selects pages and the run says it used the `ocr` score"
    out = tmp_path / 'out'; synthetic_spec_run(out, tmp_path / 'lib', n_books=2, pages_per_book=5, seed=4)
    specs = sorted(_spec_ids(out).items())
    bad = {0: [float('nan'), 0, 50, 50], 1: [10, 10, 100, float('inf')], 2: [10, 10, -40, 30], 3: [10, 10, 0, 30], 4: [5000, 10, 50, 50]}
    for i, box in bad.items():
        d = json.loads(Path(specs[i][1]).read_text()); d['panels'][-1]['panel_coords'] = box; Path(specs[i][1]).write_text(json.dumps(d))
    Path(specs[5][1]).write_text('{"page_id": "x", "panels": [')
    ids = [p for p, _ in specs]
    atomic_write_parquet(Layout(out).quality, pd.DataFrame(dict(page_id=ids, quality_source=['ocr'] * 9 + ['none'],
                                                                quality=[4.0] * 8 + [1.0, 0.0])))
    sel = select_pages(out, min_quality=0.5).set_index('page_id')
    assert sel.reason[ids].tolist() == ['bad_boxes'] * 5 + ['bad_dataspec', 'ok', 'ok', 'low_quality', 'no_quality_score']
    assert sel.quality_source[ids[:9]].tolist() == ['ocr'] * 9 and np.isnan(sel.quality[ids[9]])
    data = load_panels(out, sel.reset_index(), 32, progress=False)
    assert data.page_ids == ids[6:8] and np.isfinite(data.geometry).all()
    r = train(TrainConfig(out=str(out), arch='tiny', epochs=1, batch_pages=2, val_fraction=0.0, progress=False, min_quality=0.5,
                          run_dir=str(tmp_path / 'run')))
    t = r['metrics']; assert np.isfinite(t[t.kind == 'train'].loss).all()
    info = torch.load(r['encoder'], weights_only=True)['info']['data']
    assert info['pages'] == 2 and info['quality_sources'] == ['ocr'] and info['counts']['bad_boxes'] == 5

def test_non_finite_gradients_are_skipped(run):
    "A step whose loss is NaN changes no weight and is reported as not ok"
    cfg = run['cfg']; m = build_model(cfg); D = prepare_data(cfg, 32)
    ds = PageViews(D['data'], range(4), 32, 8, D['variants'])
    batch = collate_views([ds[i] for i in range(4)], 8)
    opt, sched = make_optimizer(m, cfg, 10); scaler = torch.amp.GradScaler('cpu', enabled=False)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    import comix.train as T
    orig = T.batch_losses
    T.batch_losses = lambda *a: {**(L := orig(*a)), 'loss': L['loss'] * float('nan')}
    try: r = _step(m, batch, cfg, opt, sched, scaler, torch.device('cpu'), False)
    finally: T.batch_losses = orig
    assert not r['ok'] and all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert _step(m, batch, cfg, opt, sched, scaler, torch.device('cpu'), False)['ok']

def test_single_modality_and_fused_embeddings_share_one_space(run):
    "Image-only and text-only embeddings of a panel find its fused embedding among all panels;"
    "its image and text are nearer each other than to other panels' (on average)"
    m = run['res']['model']; E = embed_run(m, run['cfg'].out)
    n = len(E['rows']); has_t = torch.tensor([bool(t.strip()) for t in E['rows'].text])
    ri = recall_at(E['image'], E['fused'], list(range(n)))
    rt = recall_at(E['text'][has_t], E['fused'], torch.arange(n)[has_t])
    assert ri['r1'] >= 0.9 and rt['r1'] >= 0.9, (ri, rt)
    s = E['image'][has_t] @ E['text'][has_t].T
    own, other = s.diag().mean(), (s.sum() - s.diag().sum()) / (s.numel() - len(s))
    assert own > other + 0.1, (own, other)

def test_same_content_other_layout_is_nearer_than_other_content_same_layout(run):
    "Content C in layouts 1 and 2, content C' in layout 1: each panel of (C, 1) is nearer its twin in (C, 2)"
    m = run['res']['model']; cfg = m.config
    def emb(contents, layout):
        img, boxes, texts = content_page(contents, layout_seed=layout)
        return m.encode_panels(collate([page_inputs(img, boxes, texts, cfg)]))[0]
    wins, total = 0, 0
    for s in range(4):
        C = [(1000 + 10 * s + i, f'LINE {s} {i} WHERE IS IT') for i in range(5)]
        C2 = [(2000 + 10 * s + i, f'OTHER {s} {i} RUN NOW') for i in range(5)]
        a, b, c = emb(C, 2 * s), emb(C, 2 * s + 1), emb(C2, 2 * s)
        wins += int(((a * b).sum(1) > (a * c).sum(1)).sum()); total += 5
    assert wins / total >= 0.9, wins / total

def test_cli_trains_and_accepts_every_option(run, capsys):
    cfg = run['cfg']
    assert main(['--out', cfg.out, '--arch', 'tiny', '--epochs', '1', '--max-pages', '6', '--no-progress', '--min-quality', '0.5',
                 '--run-dir', str(run['tmp'] / 'cli'), '--batch-pages', '3', '--val-fraction', '0.3']) == 0
    assert '"encoder":' in capsys.readouterr().out
    sel = pd.read_parquet(run['tmp'] / 'cli' / 'data.parquet')
    assert sel.use.sum() == 6 and set(sel.reason) == {'ok', 'over_limit'}

@pytest.mark.gpu
def test_amp_on_gpu(run):
    "On a GPU: mixed precision, finite losses that fall, non-finite steps counted (skipped in CI: no CUDA)"
    r = train(run['cfg'], run_dir=str(run['tmp'] / 'gpu'), device='cuda', amp=True, epochs=3)
    t = r['metrics']; t = t[t.kind == 'train']
    assert np.isfinite(t.loss).all() and t.loss.iloc[-3:].mean() < t.loss.iloc[:3].mean()
    assert r['val']['image_r1'] > 0.5
