"""Search quality on real pages with human ground truth, the way the lead's evaluation measures it.

Text: NYC2123 (27 real screens, 32 human-transcribed balloons and captions, ../shared/data/real). The pages go through
`comix extract`, `detect`, `text` (RapidOCR), `embed` and `index`; each human transcript is then a query, and the right
answer is the detected panel holding that balloon. Image: every detected panel of the NYC2123 and Pepper&Carrot pages,
cut out, rescaled and re-compressed as JPEG (and shifted a few pixels), is a query for itself.
Reports recall@1 and recall@10 for keywords alone, text embeddings alone and the fused hybrid.

    python benchmarks/bench_index_real.py [--checkpoint PATH]    # default: the shipped encoder, else random weights

Writes benchmarks/results/bench_index_real.json and prints markdown tables."""
import argparse, json, os, sys, shutil, subprocess, tempfile
from pathlib import Path
import numpy as np, pandas as pd

REAL = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'real'
CLI = [sys.executable, '-c', 'import sys; from comix.cli import main; sys.exit(main(sys.argv[1:]))']


def sh(*args):
    p = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True)
    if p.returncode not in (0, 3): raise RuntimeError(f'comix {args[0]} exited {p.returncode}:\n{p.stderr[-3000:]}')


def build(out, sources:dict, ck):
    "The run folder of `sources`: each stage that has no output yet (kept run folders are reused)"
    src = sum((['--source', f'{k}={v}'] for k, v in sources.items()), [])
    out = Path(out)
    for cmd, args, made in [('extract', src, 'manifest/pages.parquet'), ('detect', [], 'detect/classical.parquet'),
                            ('text', [], 'text/ocr.parquet'), ('embed', ['--checkpoint', ck], 'embeddings.zarr'),
                            ('index', [], 'index/meta.json')]:
        if not (out / made).exists(): sh(cmd, '--out', out, *args, '--no-progress')


def nyc_queries(out)->list:
    "`(transcript, page_id, panel_index)` per human text area: the detected panel holding most of its box"
    from comix.query import Searcher
    gt = json.loads((REAL / 'nyc2123-acbf-auracle' / 'gt_panels_text.json').read_text())['pages']
    man = pd.read_parquet(Path(out) / 'manifest' / 'pages.parquet')
    pid = dict(zip(man.entry.map(lambda e: Path(e).name), man.page_id))
    P = Searcher(out).panels
    qs = []
    for pg in gt:
        p = pid.get(Path(pg['image']).name)
        for a in (pg['text_layers'][0]['areas'] if pg.get('text_layers') else []):
            x, y, w, h = a['bbox_xywh']; ps = P[P.page_id == p]
            ov = [max(0, min(x + w, r.x + r.w) - max(x, r.x)) * max(0, min(y + h, r.y + r.h) - max(y, r.y)) for r in ps.itertuples()]
            qs.append((a['text'], p, int(ps.panel_index.iloc[int(np.argmax(ov))]) if len(ps) and max(ov) > 0 else -1))
    return qs


def markdown(df:pd.DataFrame)->str:
    "A DataFrame as a markdown table (floats to 3 places)"
    f = lambda v: f'{v:.3f}' if isinstance(v, float) else str(v)
    return '\n'.join(['| ' + ' | '.join(df.columns) + ' |', '|' + '---|' * len(df.columns)] +
                     ['| ' + ' | '.join(f(v) for v in r) + ' |' for r in df.itertuples(index=False)])


def recall_at(ranks, k): return float(np.mean([r is not None and r < k for r in ranks]))


def rank_of(df, page_id, panel):
    hit = np.flatnonzero((df.page_id.to_numpy() == page_id) & ((df.panel_index.to_numpy() == panel) | (panel < 0)))
    return int(hit[0]) if len(hit) else None


def text_eval(out, qs)->pd.DataFrame:
    from comix.query import Searcher
    rows = []
    for name, w in [('keywords only', dict(texts=0, panels=0)), ('text embedding only', dict(keywords=0, panels=0)),
                    ('hybrid (default)', {})]:
        S = Searcher(out, weights=w)
        pr = [rank_of(S.search(text=t, top_k=10), p, k) for t, p, k in qs]
        pg = [rank_of(S.search(text=t, top_k=10).drop_duplicates('page_id'), p, -1) for t, p, k in qs]
        rows.append(dict(mode=name, queries=len(qs), panel_r1=recall_at(pr, 1), panel_r10=recall_at(pr, 10),
                         page_r1=recall_at(pg, 1), page_r10=recall_at(pg, 10)))
    return pd.DataFrame(rows)


def image_eval(outs)->pd.DataFrame:
    from comix.query import Searcher
    from comix.extract import open_page
    from comix.testing.search import degraded_crop
    rng, rows = np.random.default_rng(0), []
    for name, kw in [('rescale 0.6, JPEG q40', dict(scale=0.6, quality=40)), ('rescale 0.4, JPEG q25', dict(scale=0.4, quality=25)),
                     ('rescale 0.6, JPEG q40, 3% margin', dict(scale=0.6, quality=40, margin=0.03))]:
        ranks = []
        for out in outs:
            S = Searcher(out)
            for r in S.panels.itertuples():
                q = degraded_crop(open_page(r.page_id, out), [r.x, r.y, r.w, r.h], **kw)
                ranks.append(rank_of(S.search(image=q, top_k=10), r.page_id, r.panel_index))
        rows.append(dict(degradation=name, queries=len(ranks), panel_r1=recall_at(ranks, 1), panel_r10=recall_at(ranks, 10)))
    return pd.DataFrame(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint'); p.add_argument('--work', help='keep the run folders here')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'bench_index_real.json'))
    a = p.parse_args(argv)
    import torch
    from comix.model import DEFAULT_WEIGHTS, EncoderConfig, PanelEncoder, save_encoder
    tmp = Path(a.work or tempfile.mkdtemp()); tmp.mkdir(parents=True, exist_ok=True)
    ck = a.checkpoint or (str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() else None)
    if ck is None:
        torch.manual_seed(0); ck = save_encoder(PanelEncoder(EncoderConfig()).eval(), tmp / 'default-random.pt', note='random weights')
    nyc, pc = tmp / 'nyc', tmp / 'peppercarrot'
    if not (nyc / 'index' / 'meta.json').exists(): build(nyc, {'nyc': REAL / 'nyc2123-acbf-auracle' / 'pages'}, ck)
    if not (pc / 'index' / 'meta.json').exists(): build(pc, {'pc': REAL / 'peppercarrot-ep02-tobira' / 'pages'}, ck)
    qs = nyc_queries(nyc)
    t, i = text_eval(nyc, qs), image_eval([nyc, pc])
    res = dict(checkpoint=str(ck), text=t.to_dict('records'), image=i.to_dict('records'))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print(f'encoder: {ck}\n\nText queries (NYC2123 human transcripts -> detected panels):\n')
    print(markdown(t))
    print('\nImage queries (degraded crops of detected panels, NYC2123 + Pepper&Carrot):\n')
    print(markdown(i))
    return res


if __name__ == '__main__': main()
