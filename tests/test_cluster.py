"""`--executor dask` on a LocalCluster of 2 workers: the same outputs as `local`, and a worker killed with SIGKILL
while it holds a chunk costs only that chunk (dask retries it; given up, a rerun finishes it), nothing lost or
duplicated."""
import os, sys, signal, glob, shutil, threading, time
import cloudpickle, pytest
import pandas as pd
from comix.stage import InkStage, run_stage
from comix.cluster import DaskExecutor, ChunksLost, local_cluster
from comix.extract import run_extract
from comix.paths import fixture_path, read_audit
from comix.testing.s3 import LoopbackS3

PC = fixture_path('library', 'pepper-carrot', 'Pepper&Carrot ep02 - Rainbow Potions.cbz')


class SlowInk(InkStage):
    "The runner's example stage, `delay` seconds per page, so that a worker can be killed while it holds a chunk"
    def __init__(self, thresh:int=96, delay:float=0.4): super().__init__(thresh); self.delay = delay
    def process(self, ctx, state, units):
        for d in super().process(ctx, state, units): time.sleep(self.delay); yield d

cloudpickle.register_pickle_by_value(sys.modules[__name__])     # workers cannot import this test module


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "A manifest of 18 pages (3 books), the table of a local run, a loopback S3 server and a LocalCluster of 2 workers"
    d = tmp_path_factory.mktemp('cluster'); (d / 'lib').mkdir()
    for b in 'abc': shutil.copy(PC, d / 'lib' / f'{b}.cbz')
    run_extract({'lib': str(d / 'lib')}, d / 'base', workers=1, progress=False, show=False)
    def fresh(name):
        shutil.copytree(d / 'base', d / name); return d / name
    local = run_stage(SlowInk(delay=0), fresh('local'), workers=2, progress=False, show=False)
    with LoopbackS3() as s3:                                  # started first: the workers inherit its endpoint
        cluster = local_cluster(2)
        yield fresh, local, cluster, s3, d / 'lib'
        cluster.close()


def kill_one_busy_worker(client, out, killed:list, timeout:float=60):
    "Once a first chunk is committed, SIGKILL a worker process that is running a chunk"
    pids = client.run(os.getpid)
    t0 = time.time()
    while time.time() - t0 < timeout:
        busy = [w for w, ts in client.processing().items() if ts]
        if glob.glob(f'{out}/ink/pages.parts/*.audit.parquet') and busy:
            os.kill(pids[busy[0]], signal.SIGKILL); killed.append(pids[busy[0]]); return
        time.sleep(0.05)


def with_kill(client, out, fn):
    killed = []
    t = threading.Thread(target=kill_one_busy_worker, args=(client, out, killed)); t.start()
    try: return fn(), killed
    finally: t.join()


def check_complete(out, local):
    pd.testing.assert_frame_equal(pd.read_parquet(out / 'ink' / 'pages.parquet'), local.table)
    a = read_audit(out, 'ink')
    units = a[a.page_id == a.unit]
    assert len(units) == len(local.table) and units.page_id.is_unique and (units.status == 'ok').all()


def test_dask_equals_local_and_survives_a_killed_worker(runs):
    fresh, local, cluster, _, _ = runs
    out = fresh('dask')
    with DaskExecutor(cluster=cluster) as ex:
        res, killed = with_kill(ex.client, out, lambda: run_stage(SlowInk(), out, workers=2, executor=ex, progress=False, show=False))
    assert killed, 'no worker was killed: the run finished too fast'
    assert res.exit_code == 0 and res.counts['ok'] == len(local.table)
    pd.testing.assert_frame_equal(res.table, local.table)
    check_complete(out, local)


def test_chunk_given_up_stays_undone_and_a_rerun_finishes_it(runs):
    fresh, local, cluster, _, _ = runs
    out = fresh('lost')
    cluster.scheduler.allowed_failures = 0                           # the first death of a chunk's worker gives it up
    try:
        with DaskExecutor(cluster=cluster) as ex:
            cluster.wait_for_workers(2)
            with pytest.raises(ChunksLost, match='run the same command again'):
                with_kill(ex.client, out, lambda: run_stage(SlowInk(), out, workers=2, executor=ex, progress=False, show=False))
    finally: cluster.scheduler.allowed_failures = 3
    res = run_stage(SlowInk(delay=0), out, workers=1, progress=False, show=False)
    assert res.counts["processed"] < len(local.table)                 # only the units not done
    assert res.counts['skipped'] == len(local.table) - res.counts['processed']
    check_complete(out, local)


def test_dask_workers_read_the_library_and_write_the_output_on_s3(runs):
    fresh, local, cluster, s3, lib = runs
    root = s3.upload(lib, s3.bucket('comix-dask') + '/lib')
    kw = dict(workers=2, progress=False, show=False)
    with DaskExecutor(cluster=cluster) as ex: run_extract({'lib': root}, 's3://comix-dask/out', executor=ex, **kw)
    with DaskExecutor(cluster=cluster) as ex: res = run_stage(SlowInk(delay=0), 's3://comix-dask/out', executor=ex, **kw)
    assert res.exit_code == 0 and s3.traffic.count('PUT', 'comix-dask/out/ink/pages.parts/') >= 2    # parts from workers
    pd.testing.assert_frame_equal(pd.read_parquet('s3://comix-dask/out/ink/pages.parquet'), local.table, check_dtype=False)
