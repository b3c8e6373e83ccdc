"""The 15M-panel-vector plan, measured: IVF-PQ and IVF-SQ8 indexes with an HNSW coarse quantizer, trained on a
sample (one coarse k-means shared by both), built in shards (one file per shard, as N cluster workers would write them), merged into one on-disk index
(`faiss.contrib.ondisk.merge_ondisk`) and memory-mapped at query time, at 1M, 2M and 4M structured vectors
(clustered, low intrinsic dimension, Zipf-sized clusters: not uniform random), with recall@10 against exact search,
then extrapolated to 15M.

    python benchmarks/bench_index_scale.py                                  # 1M, 2M, 4M x 512: ~1-2 h on 2 quiet cores
    python benchmarks/bench_index_scale.py --sizes 100000,200000 --nlist 1024 --train 40000   # a quick look

Vectors are generated chunk by chunk from a fixed model (the same chunks at every size: 2M = 1M + 1M more), so no
step ever holds more than one shard of raw vectors (`--shard`, default 500k x 512 float32 = 1 GB). Exact top-10 of
the held-out queries is kept as a running merge over the chunks. Query-time figures come from a fresh process that
opens the merged index (its inverted lists stay in the memory-mapped `.ivfdata` file): its peak RSS is what serving the index costs.
Writes benchmarks/results/index_scale.json and prints markdown tables."""
import argparse, json, os, sys, time, tempfile, resource, subprocess, shutil
from pathlib import Path
import numpy as np, faiss


class Stream:
    "Deterministic chunks of structured unit vectors: groups (series) > clusters (a character, a scene) > local subspaces"
    def __init__(self, d:int=512, clusters:int=16384, local_dim:int=16, seed:int=0):
        rng = np.random.default_rng(seed)
        groups = rng.standard_normal((max(1, clusters // 20), d), dtype=np.float32)
        self.centres = groups[rng.integers(0, len(groups), clusters)] + 0.6 * rng.standard_normal((clusters, d), dtype=np.float32)
        w = 1.0 / np.arange(1, clusters + 1) ** 0.8                    # Zipf-like cluster sizes, largest ~3 %
        self.p = rng.permutation(w / w.sum())
        self.bases = rng.standard_normal((clusters, local_dim, d), dtype=np.float32).astype(np.float16)
        self.d, self.seed = d, seed

    def chunk(self, k:int, n:int)->np.ndarray:
        "Chunk `k` (k < 0: held-out sets) of `n` vectors; the same `k` always gives the same vectors"
        rng = np.random.default_rng([self.seed, k + 1000])
        lab = rng.choice(len(self.p), n, p=self.p)
        out = 0.04 * rng.standard_normal((n, self.d), dtype=np.float32)
        order = np.argsort(lab, kind='stable'); s = lab[order]
        cuts = np.flatnonzero(np.diff(s)) + 1
        for idx in np.split(order, cuts):
            c = lab[idx[0]]
            z = rng.standard_normal((len(idx), self.bases.shape[1]), dtype=np.float32)
            out[idx] += self.centres[c] + 0.12 * (z @ self.bases[c].astype(np.float32))
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def empty_index(d:int, nlist:int, centroids:np.ndarray, code:str):
    "An untrained-codes IVF index over `centroids` with an HNSW coarse quantizer: `PQ<m>` (8-bit) or `SQ8` codes"
    q = faiss.IndexHNSWFlat(d, 32); q.add(centroids)
    if code.startswith('PQ'): ix = faiss.IndexIVFPQ(q, d, nlist, int(code[2:]), 8, faiss.METRIC_INNER_PRODUCT)
    elif code == 'SQ8':      # raw vectors, not residuals: IVF-SQ8 by residual under inner product gives recall ~0 in faiss 1.15
        ix = faiss.IndexIVFScalarQuantizer(q, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT, False)
    else: raise ValueError(f'unknown code {code!r}: PQ<m> or SQ8')
    ix.own_fields = True; q.this.disown()
    return ix


def add_shard(trained:str, X:np.ndarray, first:int, f:str, resume:bool=False)->float:
    "Add one shard of vectors (ids from `first`) to a copy of the trained index and write it to `f`; seconds taken"
    if resume and os.path.exists(f + '.json'): return json.loads(Path(f + '.json').read_text())['build_s']
    t = time.perf_counter()
    ix = faiss.read_index(trained); ix.add_with_ids(X, np.arange(first, first + len(X), dtype=np.int64))
    faiss.write_index(ix, f + '.tmp'); os.replace(f + '.tmp', f); secs = time.perf_counter() - t
    Path(f + '.json').write_text(json.dumps(dict(build_s=round(secs, 2))))
    return secs


def peak_rss_mb()->float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def merge_topk(D, I, d, i, k=10):
    "Running exact top-k: merge `(d, i)` of a new chunk into `(D, I)` (inner product, larger is better)"
    if D is None: return d, i
    DD, II = np.hstack([D, d]), np.hstack([I, i])
    o = np.argsort(-DD, axis=1)[:, :k]
    return np.take_along_axis(DD, o, 1), np.take_along_axis(II, o, 1)


def exact_chunk(Q, X, base, k=10):
    "Exact top-k of `Q` in one chunk, ids offset by `base`"
    s = Q @ X.T
    i = np.argpartition(-s, k, axis=1)[:, :k]
    d = np.take_along_axis(s, i, 1)
    return d, i + base


def recall(I, G, k=10)->float: return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(I, G)]))


def query_process(a):
    "In a fresh process: open the merged index memory-mapped, sweep nprobe, report latency, recall and RSS"
    faiss.omp_set_num_threads(1)
    Q, G = np.load(a.q), np.load(a.g)
    rss0 = _status('VmRSS')
    t = time.perf_counter(); ix = faiss.read_index(a.index); open_s = time.perf_counter() - t   # invlists stay in the mmapped .ivfdata
    rows = []
    for nprobe in [int(v) for v in a.nprobes.split(',')]:
        ps = faiss.ParameterSpace()
        ps.set_index_parameter(ix, 'nprobe', nprobe); ps.set_index_parameter(ix, 'quantizer_efSearch', max(64, 2 * nprobe))
        for i in range(20): ix.search(Q[i:i + 1], 10)
        ms, I = [], []
        for i in range(len(Q)):
            t = time.perf_counter(); _, r = ix.search(Q[i:i + 1], 10); ms.append((time.perf_counter() - t) * 1e3); I.append(r[0])
        rows.append(dict(nprobe=nprobe, recall10=round(recall(np.array(I), G), 4), p50_ms=round(float(np.percentile(ms, 50)), 3),
                         p99_ms=round(float(np.percentile(ms, 99)), 3)))
    print(json.dumps(dict(open_s=round(open_s, 3), rss_before_mb=rss0, rss_mb=_status('VmRSS'), peak_rss_mb=_status('VmHWM'),
                     anon_mb=_status('RssAnon'), file_mb=_status('RssFile'), rows=rows)))


def _status(key)->float:
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'): return round(int(line.split()[1]) / 1024, 1)
    return float('nan')


def build(a):
    sizes = sorted(int(s) for s in a.sizes.split(','))
    faiss.omp_set_num_threads(a.threads)
    work = Path(a.work or tempfile.mkdtemp(prefix='comix-index-scale-')); work.mkdir(parents=True, exist_ok=True)
    S = Stream(a.d, a.clusters, a.local_dim)
    Q = S.chunk(-1, a.queries); np.save(work / 'q.npy', Q)
    t = time.perf_counter(); T = S.chunk(-2, a.train); gen_train_s = time.perf_counter() - t
    res = dict(d=a.d, clusters=a.clusters, nlist=a.nlist, train=a.train, shard=a.shard, queries=a.queries, threads=a.threads,
               codes=a.codes.split(','), sizes=sizes, trained={}, scale=[])
    centroids = None
    for f in sorted(work.glob('trained-*.index')) if a.resume else []:     # a resumed run keeps its coarse centroids
        ix0 = faiss.read_index(str(f)); q = faiss.extract_index_ivf(ix0).quantizer       # keep ix0: it owns q
        centroids = q.reconstruct_n(0, q.ntotal).copy(); del q, ix0; break
    t = time.perf_counter()
    if centroids is None:
        km = faiss.Kmeans(a.d, a.nlist, niter=a.niter, seed=1, max_points_per_centroid=10**9); km.train(T); centroids = km.centroids
    res['coarse_train_s'] = round(time.perf_counter() - t, 1); print('coarse centroids', res['coarse_train_s'], 's', flush=True)
    trained = {}
    for code in res['codes']:
        trained[code] = str(work / f'trained-{code}.index')
        if a.resume and os.path.exists(trained[code]): res['trained'][code] = dict(resumed=True); continue
        ix = empty_index(a.d, a.nlist, centroids, code)
        t = time.perf_counter(); ix.train(T); train_s = time.perf_counter() - t
        faiss.write_index(ix, trained[code])
        res['trained'][code] = dict(factory=f'IVF{a.nlist}_HNSW32,{code}', train_s=round(train_s, 1))
        print(code, 'trained', round(train_s, 1), 's', flush=True)
    del T
    n_chunks = -(-sizes[-1] // a.shard)
    D = I = None; build_s = {c: 0.0 for c in res['codes']}; gen_s = gt_s = 0.0; shards = {c: [] for c in res['codes']}
    done = 0
    for k in range(n_chunks):
        n = min(a.shard, sizes[-1] - done)
        t = time.perf_counter(); X = S.chunk(k, n); gen_s += time.perf_counter() - t
        t = time.perf_counter(); D, I = merge_topk(D, I, *exact_chunk(Q, X, done)); gt_s += time.perf_counter() - t
        for code in res['codes']:
            f = str(work / f'shard-{code}-{k:04d}.index')
            build_s[code] += add_shard(trained[code], X, done, f, a.resume); shards[code].append(f)
        done += n; del X
        print(f'chunk {k + 1}/{n_chunks}: {done:,} vectors, peak RSS {peak_rss_mb():.0f} MB', flush=True)
        if done in sizes: res['scale'] += measure(a, work, done, I, shards, trained, build_s, gen_s, gt_s)
    res['build_peak_rss_mb'] = round(peak_rss_mb()); res['gen_train_s'] = round(gen_train_s, 1)
    res['plan'] = extrapolate(res, a.target)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print_tables(res)
    if not a.keep: shutil.rmtree(work, ignore_errors=True)
    return res


def measure(a, work, n, G, shards, trained, build_s, gen_s, gt_s)->list:
    "Merge the shards so far into one on-disk index and query it from a fresh process"
    from faiss.contrib.ondisk import merge_ondisk
    np.save(work / 'g.npy', G)
    rows = []
    for code in shards:
        idx, data = work / f'merged-{code}-{n}.index', work / f'merged-{code}-{n}.ivfdata'
        t = time.perf_counter()
        ix = faiss.read_index(trained[code]); merge_ondisk(ix, shards[code], str(data)); faiss.write_index(ix, str(idx)); del ix
        merge_s = time.perf_counter() - t
        q = subprocess.run([sys.executable, __file__, '--query', str(idx), '--q', str(work / 'q.npy'), '--g', str(work / 'g.npy'),
                            '--nprobes', a.nprobes], capture_output=True, text=True, check=True)
        r = json.loads(q.stdout.strip().splitlines()[-1])
        size_mb = (os.path.getsize(idx) + os.path.getsize(data)) / 2**20
        rows.append(dict(n=n, code=code, build_s=round(build_s[code], 1), merge_s=round(merge_s, 1), file_mb=round(size_mb, 1),
                         bytes_per_vector=round(size_mb * 2**20 / n, 1), query_rss_mb=r['rss_mb'], query_peak_rss_mb=r['peak_rss_mb'], query_anon_mb=r.get('anon_mb'), query_file_mb=r.get('file_mb'),
                         open_s=r['open_s'], gen_s=round(gen_s, 1), exact_s=round(gt_s, 1), sweep=r['rows']))
        print(json.dumps(rows[-1]), flush=True)
        for f in (idx, data): os.remove(f)            # keep disk use to one merged index at a time
    return rows


def _scan_fit(rows, nlist:int, key:str)->tuple:
    "Least squares `ms = a + b * codes scanned` (codes scanned = n * nprobe / nlist) over every size and nprobe, a, b >= 0"
    x = np.array([r['n'] * s['nprobe'] / nlist for r in rows for s in r['sweep']], float)
    y = np.array([s[key] for r in rows for s in r['sweep']], float)
    b, a = np.polyfit(x, y, 1)
    if b < 0: a, b = float(y.mean()), 0.0
    if a < 0: a, b = 0.0, float((x @ y) / (x @ x))
    return float(a), float(b)

def extrapolate(res, target:int)->list:
    "Build time and size linear in n, latency linear in codes scanned, recall linear in log2 n; evaluated at `target`"
    plan = []
    for code in res['codes']:
        rows = [r for r in res['scale'] if r['code'] == code]
        if len(rows) < 2: continue
        n = np.array([r['n'] for r in rows], float)
        lin = lambda y: float(np.polyval(np.polyfit(n, np.array(y, float), 1), target))
        logf = lambda y: float(np.polyval(np.polyfit(np.log2(n), np.array(y, float), 1), np.log2(target)))
        lat = {k: _scan_fit(rows, res['nlist'], k) for k in ('p50_ms', 'p99_ms')}
        for j, s in enumerate(rows[0]['sweep']):
            scanned = target * s['nprobe'] / res['nlist']
            plan.append(dict(n=target, code=code, nprobe=s['nprobe'], build_s=round(lin([r['build_s'] for r in rows]), 0),
                             file_mb=round(lin([r['file_mb'] for r in rows]), 0),
                             query_rss_mb=round(max(r['query_peak_rss_mb'] for r in rows), 0),
                             recall10=round(min(1.0, max(0.0, logf([r['sweep'][j]['recall10'] for r in rows]))), 3),
                             **{k: round(a + b * scanned, 2) for k, (a, b) in lat.items()}))
    return plan


def print_tables(res):
    print(f"\n{res['d']}-d structured vectors, IVF{res['nlist']}_HNSW32 coarse quantizer trained on {res['train']:,}, "
          f"shards of {res['shard']:,}, merged on disk, queried memory-mapped with 1 thread ({res['queries']} single queries)\n")
    print('| vectors | codes | nprobe | recall@10 | p50 ms | p99 ms | build s (shards) | merge s | index MB | query peak RSS MB |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for r in res['scale']:
        for s in r['sweep']:
            print(f"| {r['n']:,} | {r['code']} | {s['nprobe']} | {s['recall10']:.3f} | {s['p50_ms']} | {s['p99_ms']} | {r['build_s']} | "
                  f"{r['merge_s']} | {r['file_mb']:.0f} | {r['query_peak_rss_mb']:.0f} |")
    for p in res['plan']:
        print(f"| **{p['n']:,} (extrapolated)** | {p['code']} | {p['nprobe']} | {p['recall10']:.3f} | {p['p50_ms']} | {p['p99_ms']} | "
              f"{p['build_s']:.0f} | | {p['file_mb']:.0f} | {p['query_rss_mb']:.0f} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', default='1000000,2000000,4000000'); p.add_argument('--target', type=int, default=15_000_000)
    p.add_argument('--d', type=int, default=512); p.add_argument('--clusters', type=int, default=16384)
    p.add_argument('--local-dim', type=int, default=16); p.add_argument('--nlist', type=int, default=8192)
    p.add_argument('--train', type=int, default=200_000); p.add_argument('--shard', type=int, default=500_000)
    p.add_argument('--codes', default='PQ64,SQ8'); p.add_argument('--nprobes', default='16,32,64')
    p.add_argument('--niter', type=int, default=10, help='k-means iterations of the coarse quantizer')
    p.add_argument('--queries', type=int, default=300); p.add_argument('--threads', type=int, default=1, help='FAISS threads for training and adding')
    p.add_argument('--work', default=None, help='scratch folder (default: a temporary one)'); p.add_argument('--keep', action='store_true')
    p.add_argument('--resume', action='store_true', help='reuse the trained indexes and finished shards found in --work')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'index_scale.json'))
    p.add_argument('--query', help=argparse.SUPPRESS); p.add_argument('--q', help=argparse.SUPPRESS); p.add_argument('--g', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.query: a.index = a.query; return query_process(a)
    return build(a)


if __name__ == '__main__': main()
