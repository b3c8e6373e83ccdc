"""Scale-out benchmark: wall time of `extract` + classical `detect` over a synthetic library of 2,000 pages with 1 and
2 workers, on the local executor (processes on this machine) and on a Dask LocalCluster (`--executor dask`), each
run from scratch into a fresh output folder. The scaling ratio is wall(1 worker) / wall(2 workers) (2.0 is perfect
on 2 cores); the Dask rows show what the cluster executor costs against local processes on the same cores.

    python benchmarks/bench_scale.py                        # 2,000 pages of 1000x1500, ~30-40 min on 2 quiet cores
    python benchmarks/bench_scale.py --pages 200 --books 10 # a quick look

The library is generated once (`comix.synth.synth_library`, ~1 min per 1,000 pages) and kept in `--work`.
Writes benchmarks/results/scale.json and prints a markdown table."""
import argparse, json, os, shutil, time, tempfile
from pathlib import Path
import pandas as pd


def library(work:Path, pages:int, books:int, size:tuple)->Path:
    "The synthetic library (made once per parameters)"
    lib = work / f'lib-{pages}-{books}-{size[0]}x{size[1]}'
    if (lib / '.done').exists(): return lib
    from comix.synth import synth_library
    shutil.rmtree(lib, ignore_errors=True)
    t = time.perf_counter()
    synth_library(lib, n_books=books, pages_per_book=pages // books, seed=7, size=size)
    (lib / '.done').write_text(f'{time.perf_counter() - t:.0f} s')
    return lib


def one_run(lib:Path, out:Path, executor:str, workers:int)->dict:
    "extract then detect from scratch; seconds of each (and of the cluster's start for dask)"
    from comix.extract import run_extract
    from comix.detect import run_detect
    shutil.rmtree(out, ignore_errors=True)
    kw, start_s, cluster = dict(workers=workers, progress=False, show=False), 0.0, None
    if executor == 'dask':
        from comix.cluster import local_cluster, DaskExecutor
        t = time.perf_counter(); cluster = local_cluster(workers); start_s = time.perf_counter() - t
        ex = lambda: DaskExecutor(cluster=cluster)
    else: ex = lambda: 'local'
    try:
        t0 = time.perf_counter(); e = run_extract({'lib': str(lib)}, out, executor=ex(), **kw)
        t1 = time.perf_counter(); d = run_detect(out, executor=ex(), **kw); t2 = time.perf_counter()
    finally:
        if cluster is not None: cluster.close()
    assert e.exit_code == 0 and d.exit_code == 0, (e, d)
    n = len(e.table)
    return dict(executor=executor, workers=workers, pages=n, cluster_start_s=round(start_s, 1), extract_s=round(t1 - t0, 1),
                detect_s=round(t2 - t1, 1), total_s=round(t2 - t0, 1), pages_per_s=round(n / (t2 - t0), 1),
                panels=int(len(d.table)), table=pd.read_parquet(out / 'detect' / 'classical.parquet'))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pages', type=int, default=2000); p.add_argument('--books', type=int, default=50)
    p.add_argument('--size', default='1000x1500'); p.add_argument('--workers', default='1,2')
    p.add_argument('--executors', default='local,dask'); p.add_argument('--work', default=str(Path(tempfile.gettempdir()) / 'comix-bench-scale'))
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'scale.json'))
    a = p.parse_args(argv)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    lib = library(work, a.pages, a.books, tuple(int(v) for v in a.size.split('x')))
    rows, ref = [], None
    for executor in a.executors.split(','):
        for w in [int(v) for v in a.workers.split(',')]:
            r = one_run(lib, work / f'out-{executor}-{w}', executor, w)
            table = r.pop('table')
            if ref is None: ref = table
            r['same_panels_as_first'] = bool(table.equals(ref))
            rows.append(r); print(json.dumps(r), flush=True)
    for r in rows:
        one = next(x for x in rows if x['executor'] == r['executor'] and x['workers'] == 1)
        r['scaling'] = round(one['total_s'] / r['total_s'], 2)
        loc = next((x for x in rows if x['executor'] == 'local' and x['workers'] == r['workers']), None)
        r['vs_local'] = round(loc['total_s'] / r['total_s'], 2) if loc else None
    res = dict(pages=rows[0]['pages'], books=a.books, size=a.size, cpus=os.cpu_count(), load_avg=os.getloadavg()[0], rows=rows)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"\nextract + classical detect, {res['pages']:,} synthetic pages of {a.size} in {a.books} CBZ books, "
          f"{res['cpus']} CPUs, load average {res['load_avg']:.1f} at the end\n")
    print('| executor | workers | extract s | detect s | total s | pages/s | scaling (1 -> n workers) | vs local | cluster start s |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['executor']} | {r['workers']} | {r['extract_s']} | {r['detect_s']} | {r['total_s']} | {r['pages_per_s']} | "
              f"{r['scaling']:.2f} | {r['vs_local']:.2f} | {r['cluster_start_s']} |")
    return res


if __name__ == '__main__': main()
