"""Encoder training speed on this CPU: steps/s, panels/s and peak memory -> benchmarks/results/train.json

Each configuration runs in its own process (so its peak RSS is its own) on one synthetic run (story pages with
exact panel text, `comix.train_data.synthetic_spec_run`), with `--threads` torch threads (and OMP/MKL threads pinned to the same):
- `tiny`: `EncoderConfig.tiny()` (the tests' architecture);
- `default`: `EncoderConfig()` (the shipped checkpoint's architecture: from-scratch CNN, packaged MiniLM, frozen);
- `resnet18_baseline`: what a user would reach for instead: a torchvision ResNet-18 (random init, 11.7M
  parameters) trained with the same two-view InfoNCE on the same crops at the same size, image side only.
Timed: `--steps` optimisation steps after `--warmup` steps (forward + backward + AdamW; data loading and
augmentation of the batch included, MiniLM cache warm-up and page decoding excluded: they happen once).

    python benchmarks/bench_train.py [--steps 20] [--warmup 3] [--threads 2] [--configs tiny,default,resnet18_baseline]
"""
import argparse, json, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path

def child(name, out, steps, warmup, threads):
    "Time one configuration in this process; print a JSON line"
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import torch, numpy as np
    torch.set_num_threads(threads)
    from comix.train import TrainConfig, build_model, prepare_data, warm_text_cache, make_optimizer, _step, info_nce
    from comix.train_data import PageViews, collate_views
    arch = 'tiny' if name == 'tiny' else 'default'
    cfg = TrainConfig(out=out, arch=arch, batch_pages=8, progress=False, seed=0)
    model = build_model(cfg); S, P = model.config.image_size, model.config.max_panels
    D = prepare_data(cfg, S); data = D['data']
    warm_text_cache(model, data.texts + [v for vs in D['variants'] for v in vs], False)
    ds = PageViews(data, range(len(data)), S, P, D['variants'], 0)
    batches = [list(range(i, i + 8)) for i in range(0, (steps + warmup) * 8, 8)]
    batches = [[j % len(data) for j in b] for b in batches]
    if name == 'resnet18_baseline':
        import torchvision
        net = torchvision.models.resnet18(weights=None); net.fc = torch.nn.Linear(512, model.feature_dim)
        opt = torch.optim.AdamW(net.parameters(), 1e-3)
        def step(b):
            pm = b['a']['panel_mask']; x = b['a']['crops'][pm].float() / 255; y = b['b']['crops'][pm].float() / 255
            za, zb = (torch.nn.functional.normalize(net(v), dim=-1) for v in (x, y))
            loss = info_nce(za, zb, torch.arange(len(za))); opt.zero_grad(); loss.backward(); opt.step()
        params = sum(p.numel() for p in net.parameters())
    else:
        opt, sched = make_optimizer(model, cfg, 1000); scaler = torch.amp.GradScaler('cpu', enabled=False)
        step = lambda b: _step(model, b, cfg, opt, sched, scaler, torch.device('cpu'), False)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    panels, t = 0, None
    for i, bi in enumerate(batches):
        if i == warmup: t, c = time.perf_counter(), time.process_time()
        b = collate_views([ds[j] for j in bi], P)
        if i >= warmup: panels += int(b['a']['panel_mask'].sum())
        step(b)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    print(json.dumps(dict(config=name, image_size=S, trainable_params=params, steps=steps, panels=panels,
                          seconds=round(wall, 2), steps_per_s=round(steps / wall, 3), panels_per_s=round(panels / wall, 1),
                          cpu_seconds=round(cpu, 2), peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--steps', type=int, default=20); ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--configs', default='tiny,default,resnet18_baseline')
    ap.add_argument('--child'); ap.add_argument('--data')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'train.json'))
    a = ap.parse_args()
    if a.child: return child(a.child, a.data, a.steps, a.warmup, a.threads)
    from comix.train_data import synthetic_spec_run
    tmp = Path(tempfile.mkdtemp()); data = tmp / 'out'
    synthetic_spec_run(data, tmp / 'lib', n_books=4, pages_per_book=8, seed=0, size=(600, 900))
    load0, rows = [round(x, 2) for x in os.getloadavg()], []
    for name in a.configs.split(','):
        r = subprocess.run([sys.executable, __file__, '--child', name, '--data', str(data), '--steps', str(a.steps),
                            '--warmup', str(a.warmup), '--threads', str(a.threads)], capture_output=True, text=True,
                           env={**os.environ, 'OMP_NUM_THREADS': str(a.threads), 'MKL_NUM_THREADS': str(a.threads)})
        line = [l for l in r.stdout.splitlines() if l.startswith('{')]
        if r.returncode or not line: print(r.stderr[-2000:], file=sys.stderr); continue
        rows.append({**json.loads(line[-1]), 'load_after': round(os.getloadavg()[0], 2)})
    res = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), threads=a.threads,
               load_before=load0, load_after=[round(x, 2) for x in os.getloadavg()], batch_pages=8, results=rows)
    spare = max(0.5, (os.cpu_count() or 1) - a.threads)       # load other processes may add before the cores are shared
    res['contended'] = bool(load0[0] > spare or max(r['load_after'] for r in rows) > a.threads + spare)
    res['note'] = ('measured while other processes used the CPU (1-min load above what this benchmark adds): '
                   'steps/s are low by up to the load factor; peak RSS is unaffected') if res['contended'] else 'idle machine'
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"| config | image px | trainable params | steps/s | panels/s | CPU s/step | peak RSS MB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['image_size']} | {r['trainable_params']:,} | {r['steps_per_s']} | {r['panels_per_s']} | "
              f"{r['cpu_seconds'] / r['steps']:.2f} | {r['peak_rss_mb']} |")
    print(f"\nload average before/after: {load0} / {res['load_after']}; contended: {res['contended']}")

if __name__ == '__main__': main()
