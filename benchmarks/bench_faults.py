"""Fault harness as a benchmark: SIGKILL each batch stage at 20+ random instants, rerun to completion, compare with an
uninterrupted run (identical tables, every unit once). Writes benchmarks/results/faults.json and prints a table.

    python benchmarks/bench_faults.py [--kills 20] [--books 6] [--pages 3]
"""
import argparse, json, os, platform, shutil, sys, tempfile, time
from pathlib import Path
import pandas as pd
from comix.synth import synth_book
from comix.testing.faults import fault_trial as _fault_trial
from comix.testing.vlm import LoopbackVLMServer
from comix.extract import run_extract
from comix.detect import run_detect
from comix.stage import run_stage
from comix.text import TextOcrStage

def same_store(a, b)->bool:
    "Every array of two embedding stores equal (float embeddings up to one float16 step: batched kernels round last bits)"
    import numpy as np, zarr
    A, B = zarr.open_group(a, mode='r'), zarr.open_group(b, mode='r')
    if sorted(k for k, _ in A.arrays()) != sorted(k for k, _ in B.arrays()): return False
    for k, x in A.arrays():
        x, y = x[:], B[k][:]
        if x.shape != y.shape: return False
        if x.dtype.kind == 'f':
            x, y = x.astype(np.float32), y.astype(np.float32)
            step = np.spacing(np.maximum(np.abs(x), np.abs(y)).astype(np.float16)).astype(np.float32)
            if not ((np.abs(x - y) <= step) | (np.isnan(x) & np.isnan(y))).all(): return False
        elif not (x == y).all(): return False
    return True

def fault_trial(*args, **kw):
    "The harness's trial, trying up to 10 runs per kill asked for (a stage that is nearly done is hard to hit)"
    return _fault_trial(*args, max_attempts=10 * args[5], **kw)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--kills', type=int, default=20)
    ap.add_argument('--books', type=int, default=6); ap.add_argument('--pages', type=int, default=3)
    ap.add_argument('--stages', default='extract,detect,text,align,vlm,pss,embed')
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix='bench-faults-'))
    lib = root/'lib'
    for i in range(a.books): synth_book(lib/f'Book {i + 1:03d}.cbz', n_pages=a.pages, seed=100 + i, size=(500, 750))
    b = {k: root/k for k in ('empty', 'manifest', 'panels', 'text')}
    b['empty'].mkdir()
    run_extract({'s': str(lib)}, b['manifest'], workers=1, progress=False, show=False)
    shutil.copytree(b['manifest'], b['panels']); run_detect(b['panels'], progress=False, show=False)
    shutil.copytree(b['panels'], b['text']); run_stage(TextOcrStage(ocr_options=dict(threads=1)), b['text'], progress=False, show=False)
    trials = {
        'extract': lambda: fault_trial(['extract', '--source', f's={lib}', '--workers', '1'], b['empty'], 'manifest/pages', 'extract', ['page_id'], a.kills, 1, chunk=1),
        'detect': lambda: fault_trial(['detect'], b['manifest'], 'detect/classical', 'detect-classical', ['page_id', 'panel_index'], a.kills, 2),
        'text': lambda: fault_trial(['text', '--threads', '1'], b['panels'], 'text/ocr', 'text-ocr', ['page_id', 'line_index'], a.kills, 3),
        'align': lambda: fault_trial(['align'], b['text'], 'align/quality', 'align', ['page_id'], a.kills, 4, chunk=3),
    }
    def vlm():
        with LoopbackVLMServer(latency=0.1) as srv:
            return fault_trial(['text', '--backend', 'vlm', '--base-url', srv.base_url, '--model', 'm', '--concurrency', '2'],
                               b['manifest'], 'text/vlm', 'text-vlm', ['page_id', 'panel_index', 'order'], a.kills, 5)
    trials['vlm'] = vlm
    trials['pss'] = lambda: fault_trial(['pss'], b['text'], 'pss/predictions', 'pss', ['page_id'], a.kills, 6, chunk=1)
    def embed():
        """The embed stage with a tiny random encoder (the mechanics are the default encoder's, 20x faster): its page
        table and every array of the Zarr store compared"""
        from comix.testing.search import tiny_checkpoint
        ck = tiny_checkpoint(root/'tiny.pt')
        return fault_trial(['embed', '--checkpoint', ck, '--workers', '0', '--batch-size', '2', '--chunk-pages', '2'],
                           b['text'], 'embed/pages', 'embed', ['page_id'], a.kills, 7, chunk=None,
                           check=lambda c, k: same_store(c/'embeddings.zarr', k/'embeddings.zarr'))
    trials['embed'] = embed
    res, t0 = [], time.time()
    for s in a.stages.split(','):
        if s not in trials: continue
        r = trials[s](); res.append(r)
        print(f"{s}: {r['kills']} kills ({r['missed']} missed), tables equal {r['equal']}, units unique {r['units_unique']}", flush=True)
    out = dict(benchmark='faults', what='SIGKILL at random instants, rerun, compare with a clean run', kills_per_stage=a.kills,
               pages=a.books * a.pages, machine=platform.platform(), cpus=os.cpu_count(), load_avg=os.getloadavg(),
               seconds=round(time.time() - t0, 1), results=res)
    p = Path(__file__).parent/'results'/'faults.json'
    if p.exists():   # stages run another time keep their rows (`--stages pss` adds one stage to the table)
        ran = {r['stage'] for r in res}
        res = [r for r in json.loads(p.read_text()).get('results', []) if r['stage'] not in ran] + res
        out['results'] = res
    p.write_text(json.dumps(out, indent=1))
    df = pd.DataFrame(res)[['stage', 'kills', 'missed', 'rows', 'units', 'equal', 'units_unique', 'same_units', 'clean_seconds', 'final_seconds']]
    print('| ' + ' | '.join(df.columns) + ' |\n|' + '---|' * len(df.columns))
    for r in df.itertuples(index=False): print('| ' + ' | '.join(map(str, r)) + ' |')
    shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if all(r['equal'] and r['units_unique'] and r['same_units'] for r in res) else 1)

if __name__ == '__main__': main()
