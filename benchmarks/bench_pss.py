"""Speed of `comix pss` against the page encoder CoSMo's pipeline needs (CLIP ViT-B/32 image features), per page on CPU.

The alternative a user would pick is CoSMo: CLIP/SigLIP features of every page, then BookBERT. Its weights are not
available here, but its cost does not depend on the weights: a randomly initialised open_clip ViT-B-32 does the same
arithmetic. Both are measured in one process, interleaved, on the same synthetic pages, with the same thread count.

    OMP_NUM_THREADS=1 python benchmarks/bench_pss.py [--pages 60] [--threads 1]

writes benchmarks/results/pss.json and prints a markdown table.
"""
import argparse, json, os, time, tempfile
from pathlib import Path
import numpy as np, pandas as pd


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--pages', type=int, default=60); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--rounds', type=int, default=3); a = ap.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import torch; torch.set_num_threads(a.threads)
    from comix.synth import synth_pss_book
    from comix.extract import run_extract, PageReader
    from comix.paths import Layout
    from comix.pss import run_pss
    from comix.pss_features import out_book_features, stage_tables, STAT_SIDE
    from comix.pss_model import load_pss, predict_probs
    d = Path(tempfile.mkdtemp()); n_books = max(1, a.pages // 30)
    for k in range(n_books): synth_pss_book(d/'lib'/f'b{k}.cbz', seed=k, n_pages=a.pages // n_books, size=(1000, 1500))
    out = d/'out'; run_extract({'b': str(d/'lib')}, out, workers=1, progress=False, show=False)
    man = pd.read_parquet(Layout(out).manifest); n = len(man)
    model = load_pss(None); tables = stage_tables(out)

    def comix_features(detect, cache=False, infer=True):
        r = PageReader(out); t0 = time.perf_counter()
        for _, pages in man.groupby('book_key'):
            bf, _ = out_book_features(out, pages, tables, r.image, cache=cache, detect=detect, embed=False)
            if infer: predict_probs(model, bf)
        r.close(); return time.perf_counter() - t0

    r0 = PageReader(out); feats = [out_book_features(out, p, tables, r0.image, cache=True, detect=True, embed=False)[0]
                                   for _, p in man.groupby('book_key')]; r0.close()  # warms the per-page_id feature cache
    def inference():
        t0 = time.perf_counter()
        for bf in feats: predict_probs(model, bf)
        return time.perf_counter() - t0

    import open_clip
    clip, _, pre = open_clip.create_model_and_transforms('ViT-B-32', pretrained=None); clip.eval()
    def clip_features():
        r = PageReader(out); t0 = time.perf_counter()
        with torch.no_grad():
            for pid in man.page_id:
                clip.encode_image(pre(r.image(pid, max_side=448)).unsqueeze(0))
        r.close(); return time.perf_counter() - t0

    K = dict(cold='features, cold (image stats + classical detection) + inference', given='features, cold (no panel detection: layout group absent) + inference',
             cached='features from the page_id cache + inference', infer='inference only (features in memory)',
             clip='CLIP ViT-B/32 page features (CoSMo-style, features only)')
    runs = {v: [] for v in K.values()}
    for _ in range(a.rounds):  # interleaved
        runs[K['cold']].append(comix_features(True)); runs[K['given']].append(comix_features(False))
        runs[K['cached']].append(comix_features(True, cache=True)); runs[K['infer']].append(inference())
        runs[K['clip']].append(clip_features())
    rows = [dict(method=k, pages=n, seconds_median=float(np.median(v)), ms_per_page=1000*float(np.median(v))/n,
                 pages_per_s=n/float(np.median(v))) for k, v in runs.items()]
    base = rows[-1]['ms_per_page']
    for r in rows: r['ratio_to_clip'] = round(r['ms_per_page'] / base, 3)
    res = dict(threads=a.threads, pages=n, page_size=[1000, 1500], rounds=a.rounds, rows=rows)
    Path('benchmarks/results').mkdir(parents=True, exist_ok=True)
    Path('benchmarks/results/pss.json').write_text(json.dumps(res, indent=1))
    print(f'| method | ms / page | pages / s | time vs CLIP |\n|---|---|---|---|')
    for r in rows: print(f"| {r['method']} | {r['ms_per_page']:.1f} | {r['pages_per_s']:.2f} | {r['ratio_to_clip']:.2f} |")


if __name__ == '__main__':
    main()
