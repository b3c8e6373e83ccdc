"""Benchmark of `comix extract`: manifest build rate vs the raw rate of reading the same archive members.

    .venv/bin/python benchmarks/bench_extract.py [--pages 5000] [--lib /tmp/comix_bench_extract] [--workers 1 2]

Builds (once, kept in /tmp, never in the repo) a library of CBZ books of realistic scans: 12 distinct synthetic
pages at 1800x2700 with scanner-like noise, JPEG q85-93 (1-3 MB each), every page made unique by a few bytes after
its end marker (so every md5 differs, as in a real library). Then, in one run, in fresh subprocesses:
raw pass (open each CBZ with zipfile, read every member, nothing else), manifest passes (`comix extract`, with N
workers) and a raw + md5 pass, each with a cold page cache (dropped before the pass, where allowed: needs root),
then raw and manifest again with a warm cache. Peak memory is the max RSS of each pass's process tree. Writes benchmarks/results/extract.json and prints a markdown table.
"""
import argparse, io, json, os, platform, subprocess, sys, time, zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_library(lib: Path, n_pages: int, per_book: int = 25, seed: int = 0):
    import numpy as np
    from PIL import Image
    from comix.synth import synth_page
    done = lib / '.complete'
    if done.exists() and json.loads(done.read_text()) == {'pages': n_pages, 'per_book': per_book}: return
    rng = np.random.default_rng(seed)
    blobs = []
    for k in range(12):
        img, _ = synth_page(seed=100 + k, layout=['grid', 'borderless', 'splash', 'irregular'][k % 4], size=(1800, 2700))
        a = np.asarray(img.convert('RGB')).astype(np.int16)
        a = np.clip(a + rng.normal(0, 6 + k % 5 * 2, a.shape), 0, 255).astype(np.uint8)
        b = io.BytesIO(); Image.fromarray(a).save(b, 'JPEG', quality=85 + k % 5 * 2); blobs.append(b.getvalue())
    n_books = -(-n_pages // per_book)
    for i in range(n_books):
        p = lib / f'Series {i // 10:03d}' / f'Book {i:04d}.cbz'
        p.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(p, 'w', zipfile.ZIP_STORED) as z:
            for j in range(min(per_book, n_pages - i * per_book)):
                z.writestr(f'page{j + 1}.jpg', blobs[(i * 7 + j) % 12] + f'{i:06d}{j:04d}'.encode())
    done.write_text(json.dumps({'pages': n_pages, 'per_book': per_book}))


RAW = r'''
import sys, os, time, json, zipfile, resource, hashlib
lib, md5 = sys.argv[1], int(sys.argv[2]); files = sorted(os.path.join(d, f) for d, _, fs in os.walk(lib) for f in fs if f.endswith('.cbz'))
t = time.perf_counter(); n = b = 0
for p in files:
    with zipfile.ZipFile(p) as z:
        for i in z.infolist():
            data = z.read(i); n += 1; b += len(data)
            if md5: hashlib.md5(data).hexdigest()
s = time.perf_counter() - t
print(json.dumps({'pages': n, 'bytes': b, 'seconds': s, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''

MANIFEST = r'''
import sys, time, json, resource, shutil
from comix.extract import run_extract
lib, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
shutil.rmtree(out, ignore_errors=True)
t = time.perf_counter()
r = run_extract({'bench': lib}, out, workers=workers, progress=False, show=False)
s = time.perf_counter() - t
m = r.table
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
print(json.dumps({'pages': len(m), 'bytes': int(m.n_bytes.sum()), 'seconds': s, 'peak_rss_mb': peak,
                  'errors': int((r.state.status == 'error').sum()), 'unique_md5': int(m.md5.nunique()), 'exit_code': r.exit_code}))
'''


def run(code, *args):
    env = dict(os.environ, HF_HUB_OFFLINE='1')
    out = subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, env=env, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r['pages_per_s'] = r['pages'] / r['seconds']; r['mb_per_s'] = r['bytes'] / 1e6 / r['seconds']
    return r


def drop_caches()->bool:
    "Drop the OS page cache so a pass reads from disk (needs root; returns False where not allowed)"
    try:
        os.sync(); Path('/proc/sys/vm/drop_caches').write_text('1\n'); return True
    except OSError: return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pages', type=int, default=5000)
    ap.add_argument('--lib', default='/tmp/comix_bench_extract/library')
    ap.add_argument('--out', default='/tmp/comix_bench_extract/out')
    ap.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    a = ap.parse_args()
    lib = Path(a.lib); t = time.time()
    subprocess.run([sys.executable, __file__, '--make', str(lib), str(a.pages)], check=True)
    print(f'library ready in {time.time() - t:.0f}s', file=sys.stderr)
    passes = [('raw read', RAW, (lib, 0))] + [(f'comix extract, {w} worker(s)', MANIFEST, (lib, a.out, w)) for w in a.workers] \
             + [('raw read + md5 only', RAW, (lib, 1))]
    res = {'cold': {}, 'warm': {}}
    for name, code, args in passes:
        cold = drop_caches()
        res['cold' if cold else 'warm'][name] = run(code, *args)
        print(name, 'cold' if cold else 'warm', res['cold' if cold else 'warm'][name], file=sys.stderr)
    run(RAW, lib, 0)                                         # warm the page cache, then measure warm passes
    for name, code, args in passes[:1] + passes[-2:-1]:
        res['warm'][name] = run(code, *args)
        print(name, 'warm', res['warm'][name], file=sys.stderr)
    raw_any = res['cold'].get('raw read') or res['warm']['raw read']
    out = {'library': {'pages': raw_any['pages'], 'bytes': raw_any['bytes'], 'mean_page_mb': raw_any['bytes'] / raw_any['pages'] / 1e6,
                       'books': len(list(lib.rglob('*.cbz'))), 'format': 'CBZ (stored), JPEG 1800x2700, q85-93'},
           'passes': res,
           'ratio_vs_raw': {cw: {k: v['pages_per_s'] / d['raw read']['pages_per_s'] for k, v in d.items()} for cw, d in res.items() if 'raw read' in d},
           'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(), 'platform': platform.platform(),
                       'load_avg_at_end': os.getloadavg()},
           'note': 'raw read = one process reading every member with zipfile (CRC checked), nothing else; raw read + md5 = the '
                   'same plus hashlib.md5 of each member (the floor the manifest contract sets); comix extract = md5 + image '
                   'header + parts + merge + duplicate marking, no pHash. cold = OS page cache dropped before the pass. '
                   'The 2 CPUs are shared with other jobs (see load average).'}
    (HERE / 'results').mkdir(exist_ok=True)
    (HERE / 'results' / 'extract.json').write_text(json.dumps(out, indent=1))
    print(f"| {raw_any['pages']} pages, {raw_any['bytes'] / 1e9:.1f} GB | cache | pages/s | MB/s | ratio vs raw read | peak RSS MB |")
    print('|---|---|---|---|---|---|')
    for cw, d in res.items():
        for name, r in d.items():
            base = d.get('raw read', raw_any)['pages_per_s']
            print(f"| {name} | {cw} | {r['pages_per_s']:.0f} | {r['mb_per_s']:.0f} | {r['pages_per_s'] / base:.2f} | {r['peak_rss_mb']:.0f} |")


if __name__ == '__main__':
    if sys.argv[1:2] == ['--make']: make_library(Path(sys.argv[2]), int(sys.argv[3]))
    else: main()
