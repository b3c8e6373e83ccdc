"""Index benchmark: build time, memory, and p50/p99 single-query latency at recall@10 >= 0.95 for 1M structured
(clustered, low intrinsic dimension, not uniform random) unit vectors, for the index types `comix index` builds,
against exact search (FAISS flat and the seed's brute-force numpy cosine).

    python benchmarks/bench_index.py                 # 1M x 512, ~25-40 min on 2 quiet cores
    python benchmarks/bench_index.py --n 100000      # a quick look

Writes benchmarks/results/bench_index.json and prints a markdown table."""
import argparse, json, os, sys, time, tempfile, resource
from pathlib import Path
import numpy as np, faiss
from comix.query import index_spec, build_index, save_index, load_index, search_vectors


def structured_vectors(n:int, d:int, n_clusters:int, local_dim:int=16, seed:int=0)->np.ndarray:
    """Unit vectors shaped like learned embeddings: `n_clusters / 20` coarse groups (series), `n_clusters` tight
    clusters inside them (a character, a recurring scene), sizes Zipf-distributed, and within each cluster variation
    in its own random `local_dim`-dimensional subspace (the local intrinsic dimension of learned embeddings is ~10-25)"""
    rng = np.random.default_rng(seed)
    groups = rng.standard_normal((max(1, n_clusters // 20), d)).astype(np.float32)
    centres = groups[rng.integers(0, len(groups), n_clusters)] + 0.6 * rng.standard_normal((n_clusters, d)).astype(np.float32)
    sizes = rng.zipf(1.5, n_clusters).astype(np.float64)
    lab = rng.choice(n_clusters, n, p=sizes / sizes.sum())
    out = np.empty((n, d), np.float32)
    order = np.argsort(lab, kind='stable'); starts = np.searchsorted(lab[order], np.arange(n_clusters + 1))
    for c in range(n_clusters):
        idx = order[starts[c]:starts[c + 1]]
        if not len(idx): continue
        basis = rng.standard_normal((local_dim, d)).astype(np.float32)                       # this cluster's subspace
        x = centres[c] + 0.12 * rng.standard_normal((len(idx), local_dim)).astype(np.float32) @ basis
        out[idx] = x + 0.04 * rng.standard_normal((len(idx), d)).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def rss_mb()->float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latencies(ix, q, k=10, **kw)->tuple:
    "Per-query latency (ms) of single queries and their results"
    ts, I = [], []
    for i in range(len(q)):
        t = time.perf_counter(); _, r = ix.search(q[i:i + 1], k) if not kw else search_vectors(ix, q[i:i + 1], k, **kw)
        ts.append((time.perf_counter() - t) * 1e3); I.append(r[0])
    return np.array(ts), np.array(I)


def recall(I, G, k=10)->float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(I, G)]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n', type=int, default=1_000_000); p.add_argument('--d', type=int, default=512)
    p.add_argument('--queries', type=int, default=500); p.add_argument('--clusters', type=int, default=20_000)
    p.add_argument('--threads', type=int, default=None, help='FAISS threads (default: all cores)')
    p.add_argument('--kinds', default='hnsw,ivf'); p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'bench_index.json'))
    a = p.parse_args(argv)
    if a.threads: faiss.omp_set_num_threads(a.threads)
    t0 = time.perf_counter()
    X = structured_vectors(a.n + a.queries, a.d, a.clusters)
    Q, X = X[:a.queries].copy(), X[a.queries:]
    gen_s = time.perf_counter() - t0
    res = dict(n=a.n, d=a.d, queries=a.queries, clusters=a.clusters, threads=faiss.omp_get_max_threads(), generate_s=round(gen_s, 1), rows=[])
    flat = faiss.IndexFlatIP(a.d); flat.add(X)
    t = time.perf_counter(); _, G = flat.search(Q, 10); exact_batch_s = time.perf_counter() - t
    ms, I = latencies(flat, Q[:50])
    res['rows'].append(dict(index='faiss flat (exact)', params='', build_s=0.0, file_mb=round(X.nbytes / 2**20),
                            recall10=recall(I, G), p50_ms=float(np.percentile(ms, 50)), p99_ms=float(np.percentile(ms, 99))))
    ts = []
    for i in range(20):
        t = time.perf_counter(); s = X @ Q[i]; np.argpartition(-s, 10)[:10]; ts.append((time.perf_counter() - t) * 1e3)
    res['rows'].append(dict(index='numpy brute force (the seed)', params='', build_s=0.0, file_mb=round(X.nbytes / 2**20),
                            recall10=1.0, p50_ms=float(np.percentile(ts, 50)), p99_ms=float(np.percentile(ts, 99))))
    tmp = Path(tempfile.mkdtemp())
    sweeps = {'hnsw': ('ef_search', [16, 24, 32, 48, 64, 96, 128, 256]), 'ivf': ('nprobe', [8, 16, 32, 64, 128, 256])}
    for kind in a.kinds.split(','):
        spec = index_spec(a.n, a.d, kind=kind)
        r0 = rss_mb(); t = time.perf_counter(); ix = build_index(X, spec); build_s = time.perf_counter() - t
        path = save_index(ix, tmp / f'{kind}.faiss'); del ix
        knob, values = sweeps[kind]
        best = None
        for v in values:
            ix = load_index(path, mmap=True, **{knob: v})
            for i in range(20): ix.search(Q[i:i + 1], 10)                   # page in the parts a query touches
            ms, I = latencies(ix, Q)
            row = dict(index=f'comix {kind} (mmap)', params=f'{knob}={v}' + (f", M={spec['hnsw_m']}, efC={spec['ef_construction']}" if kind == 'hnsw'
                       else f", nlist={spec['nlist']}"), build_s=round(build_s, 1), file_mb=round(os.path.getsize(path) / 2**20),
                       build_rss_mb=round(rss_mb() - r0), recall10=round(recall(I, G), 4), p50_ms=round(float(np.percentile(ms, 50)), 3),
                       p99_ms=round(float(np.percentile(ms, 99)), 3))
            res['rows'].append(row); print(row, flush=True)
            if best is None and row['recall10'] >= 0.95: best = row
            del ix
        res[f'{kind}_at_recall_095'] = best
    res['exact_batch_search_s'] = round(exact_batch_s, 2)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"\n{a.n:,} structured vectors x {a.d}, {a.queries} single queries, {res['threads']} FAISS threads\n")
    print('| index | params | build s | file MB | recall@10 | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|')
    for r in res['rows']:
        print(f"| {r['index']} | {r['params']} | {r['build_s']} | {r['file_mb']} | {r['recall10']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    for kind in a.kinds.split(','):
        b = res[f'{kind}_at_recall_095']
        print(f'\n{kind}: first setting at recall@10 >= 0.95: ' + (f"{b['params']}, p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms" if b else 'none'))
    return res


if __name__ == '__main__': main()
