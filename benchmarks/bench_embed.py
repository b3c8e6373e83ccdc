"""Embedding throughput: `comix embed` (decode + crop in worker processes, batched forward, writes behind it) against
the bare model forward on the same batches (inputs decoded beforehand, no store). The goal: overhead ratio <= 1.5.

    python benchmarks/bench_embed.py                      # 96 synthetic 1000x1500 pages, the shipped checkpoint
                                                          # (or the default architecture with random weights)
    python benchmarks/bench_embed.py --pages 48 --tiny    # a quick look with the tiny test encoder

Runs are interleaved (forward, pipeline, end to end, forward ...) in one process with the same threads, and the text
encoder's string cache is emptied before each run. The overhead ratio compares the pipeline with warm decoding workers
(the steady state of a long run); the end-to-end time of `comix embed` adds its fixed start-up costs. Writes benchmarks/results/bench_embed.json, prints a markdown table."""
import argparse, json, os, sys, time, shutil, tempfile
from pathlib import Path
import numpy as np, pandas as pd


def _clear(model):
    tb = getattr(model, 'text_backbone', None)
    if tb is not None and hasattr(tb, 'cache'): tb.cache.clear()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pages', type=int, default=96); p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--workers', type=int, default=1, help='decoding processes of the pipeline')
    p.add_argument('--rounds', type=int, default=2); p.add_argument('--checkpoint', default=None)
    p.add_argument('--tiny', action='store_true', help='the tiny test encoder (random weights)')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'bench_embed.json'))
    a = p.parse_args(argv)
    import torch
    from comix.testing.search import search_library, tiny_checkpoint
    from comix.model import DEFAULT_WEIGHTS, EncoderConfig, PanelEncoder, save_encoder
    from comix.embed import EmbedStage, cached_encoder, spec_inputs, page_specs, init_loader, load_page, encode_batch, close_pools
    from comix.stage import run_stage
    tmp = Path(tempfile.mkdtemp())
    books = max(1, a.pages // 12)
    truths = search_library(tmp / 'base', tmp / 'lib', n_books=books, pages_per_book=-(-a.pages // books), size=(1000, 1500))
    ck = a.checkpoint or (tiny_checkpoint(tmp / 'tiny.pt') if a.tiny else str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() else None)
    if ck is None:
        torch.manual_seed(0); ck = save_encoder(PanelEncoder(EncoderConfig()).eval(), tmp / 'default-random.pt', note='random weights')
    model = cached_encoder(ck)
    init_loader(tmp / 'base', None, model.config.to_dict(), 1024)
    ids = pd.read_parquet(tmp / 'base' / 'manifest' / 'pages.parquet').page_id.tolist()
    items = [load_page(s)['inputs'] for s in page_specs(spec_inputs(tmp / 'base'), ids)]
    batches = [items[i:i + a.batch_size] for i in range(0, len(items), a.batch_size)]
    encode_batch(model, batches[0])                                   # warm-up: first-call allocations
    from comix.embed import loader_pool, embed_stream
    from comix.store import create_store, page_table
    pool = loader_pool(tmp / 'base', None, model.config.to_dict(), 1024, a.workers) if a.workers else None
    if pool: list(pool.map(load_page, page_specs(spec_inputs(tmp / 'base'), ids[:2])))   # workers up and warm
    man = pd.read_parquet(tmp / 'base' / 'manifest' / 'pages.parquet')
    fwd, pipe, e2e = [], [], []
    for r in range(a.rounds):
        _clear(model); t = time.perf_counter()
        for b in batches: encode_batch(model, b)
        fwd.append(time.perf_counter() - t)
        st = create_store(tmp / f'steady{r}.zarr', page_table(man), model.config.max_panels, model.feature_dim)
        specs = [dict(sp, pos=i) for i, sp in enumerate(page_specs(spec_inputs(tmp / 'base'), list(st.page_ids)))]
        _clear(model); t = time.perf_counter()
        got = list(embed_stream(st, model, specs, a.batch_size, pool))
        pipe.append(time.perf_counter() - t)
        assert sum(g[1] == 'ok' for g in got) == len(ids) and st.done().all()
        out = tmp / f'run{r}'; shutil.copytree(tmp / 'base', out)
        _clear(model); t = time.perf_counter()
        res = run_stage(EmbedStage(ck, batch_size=a.batch_size, workers=a.workers), out, progress=False, show=False)
        e2e.append(time.perf_counter() - t)
        assert res.counts['ok'] == len(ids), res
        print(f'round {r}: forward {fwd[-1]:.2f}s, pipeline {pipe[-1]:.2f}s, comix embed end to end {e2e[-1]:.2f}s', flush=True)
    close_pools()
    n, f, q, e = len(ids), float(np.median(fwd)), float(np.median(pipe)), float(np.median(e2e))
    out = dict(pages=n, batch_size=a.batch_size, workers=a.workers, threads=torch.get_num_threads(), checkpoint=str(ck),
               config=model.config.to_dict(), forward_s=fwd, pipeline_s=pipe, end_to_end_s=e2e,
               forward_pages_per_s=round(n / f, 2), pipeline_pages_per_s=round(n / q, 2),
               end_to_end_pages_per_s=round(n / e, 2), overhead_ratio=round(q / f, 3),
               end_to_end_ratio=round(e / f, 3), cpu_count=os.cpu_count())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"\n{n} pages of 1000x1500, batch {a.batch_size}, {a.workers} decoding worker(s), {out['threads']} torch threads, "
          f"encoder {Path(str(ck)).name}\n")
    print('| run | seconds (median) | pages/s | ratio to the bare forward |\n|---|---|---|---|')
    print(f'| bare forward on the same batches (inputs decoded beforehand) | {f:.2f} | {n / f:.2f} | 1 |')
    print(f'| embed pipeline: decode + crop in workers, forward, writes behind | {q:.2f} | {n / q:.2f} | {q / f:.2f} |')
    print(f'| `comix embed` end to end (+ worker start, model load, store, audit) | {e:.2f} | {n / e:.2f} | {e / f:.2f} |')
    print(f"\noverhead ratio {out['overhead_ratio']} (goal <= 1.5)")
    shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == '__main__': main()
