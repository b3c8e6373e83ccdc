"""`comix embed` acceptance: a killed run finished with another batch size equals an uninterrupted run; two shard
processes fill one store at once; `--append` adds the pages of a grown manifest and leaves the old ones alone.
All runs use the real `comix.model.PanelEncoder` (its tiny configuration, random weights from a checkpoint file)."""
import os, sys, time, shutil, subprocess
from pathlib import Path
import numpy as np, pandas as pd, zarr
import pytest
from comix.testing.search import search_library, tiny_checkpoint
from comix.testing.faults import kill_group, run_concurrently
from comix.embed import EmbedStage, verify_embeddings
from comix.store import EmbeddingStore
from comix.stage import run_stage

EMBED = [sys.executable, '-c', 'import sys; from comix.embed import main; sys.exit(main(sys.argv[1:]))']
FLOATS = ('panel_embeddings', 'page_embeddings', 'image_only_embeddings', 'text_only_embeddings')


@pytest.fixture(scope='module')
def library(tmp_path_factory):
    "A 24-page synthetic run (manifest, panels, text), a tiny encoder checkpoint, and one clean run of it"
    tmp = tmp_path_factory.mktemp('embed')
    truths = search_library(tmp / 'base', tmp / 'lib', n_books=3, pages_per_book=8)
    ck = tiny_checkpoint(tmp / 'tiny.pt')
    shutil.copytree(tmp / 'base', tmp / 'clean')
    r = run_stage(EmbedStage(ck, batch_size=4, workers=0, chunk_pages=4), tmp / 'clean', progress=False, show=False)
    assert r.counts['ok'] == len(truths)
    return tmp, truths, ck


def _copy(library, name):
    tmp = library[0]; dst = tmp / name
    shutil.copytree(tmp / 'base', dst)
    return dst


def assert_same_store(a, b):
    "Every variable equal; embeddings equal up to one float16 step (batched kernels may round the last bit differently)"
    A, B = zarr.open_group(a, mode='r'), zarr.open_group(b, mode='r')
    assert sorted(k for k, _ in A.arrays()) == sorted(k for k, _ in B.arrays())
    for k, x in A.arrays():
        x, y = x[:], B[k][:]
        assert x.shape == y.shape, k
        if k in FLOATS:
            x, y = x.astype(np.float32), y.astype(np.float32)
            step = np.spacing(np.maximum(np.abs(x), np.abs(y)).astype(np.float16)).astype(np.float32)
            assert (np.abs(x - y) <= step).all(), f'{k}: differs by more than one float16 step'
            assert (x == y).mean() > 0.99, f'{k}: only {(x == y).mean():.4f} of the values identical'
        else: assert (x == y).all(), k
    skip = {'created'}
    assert {k: v for k, v in A.attrs.items() if k not in skip} == {k: v for k, v in B.attrs.items() if k not in skip}


def test_killed_run_finished_with_another_batch_size_equals_clean_run(library):
    tmp, truths, ck = library
    clean, killed = tmp / 'clean', _copy(library, 'killed')
    args = ['--out', str(killed), '--checkpoint', str(ck), '--workers', '0', '--chunk-pages', '4', '--no-progress']
    partial, rng = [], np.random.default_rng(0)
    for k in range(6):                          # kill at a random instant once pages are being written
        p = subprocess.Popen(EMBED + args + ['--batch-size', '3'], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = killed / 'embeddings.zarr'
        t0 = time.time()
        while time.time() - t0 < 60 and p.poll() is None:         # wait until it has written something
            if path.exists() and 0 < EmbeddingStore(path).done().sum(): break
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.3 / 2 ** k)))           # a fast machine finishes 24 pages in a blink: aim earlier
        kill_group(p); p.wait()
        partial.append(int(EmbeddingStore(path).done().sum()) if path.exists() else 0)
        if 0 < partial[-1] < len(truths): break
        if partial[-1] == len(truths): shutil.rmtree(killed); killed = _copy(library, 'killed')   # it finished: start over
    assert any(0 < n < len(truths) for n in partial), f'no kill landed mid-run: done counts {partial}'
    assert subprocess.run(EMBED + args + ['--batch-size', '5'], capture_output=True).returncode == 0
    assert_same_store(clean / 'embeddings.zarr', killed / 'embeddings.zarr')
    assert verify_embeddings(killed).ok.all()


def test_two_shard_processes_fill_one_store(library):
    tmp, truths, ck = library
    clean, sharded = tmp / 'clean', _copy(library, 'sharded')
    base = EMBED + ['--out', str(sharded), '--checkpoint', str(ck), '--chunk-pages', '4', '--no-progress', '--num-shards', '2']
    assert run_concurrently([base + ['--shard', '0', '--workers', '1', '--batch-size', '2'],
                             base + ['--shard', '1', '--workers', '0', '--batch-size', '6']]) == [0, 0]
    st = EmbeddingStore(sharded / 'embeddings.zarr')
    assert st.done().all()
    assert_same_store(clean / 'embeddings.zarr', sharded / 'embeddings.zarr')
    a = [pd.read_parquet(sharded / 'audit' / f) for f in os.listdir(sharded / 'audit') if f.startswith('embed')]
    assert len(a) >= 1


def test_append_adds_new_pages_and_keeps_old(library, tmp_path):
    tmp, truths, ck = library
    grown = _copy(library, 'grown')
    man_path = grown / 'manifest' / 'pages.parquet'
    full = pd.read_parquet(man_path)
    first = full.iloc[:16]
    first.to_parquet(man_path)                                       # the library before it grew
    run_stage(EmbedStage(ck, workers=0, chunk_pages=4), grown, progress=False, show=False)
    before = EmbeddingStore(grown / 'embeddings.zarr')
    old = {k: before.group[k][:] for k in FLOATS}
    mtimes = {f: f.stat().st_mtime_ns for f in (grown / 'embeddings.zarr' / 'panel_embeddings' / 'c').rglob('*') if f.is_file()}
    full.to_parquet(man_path)                                        # the manifest grew
    r = run_stage(EmbedStage(ck, workers=0), grown, progress=False, show=False)
    assert r.counts['skipped'] == len(full) and set(r.audit.reason) == {'already_done', 'not_in_store'}
    r = run_stage(EmbedStage(ck, workers=0, append=True), grown, progress=False, show=False)
    assert (r.counts['ok'], r.counts['processed']) == (len(full) - 16, len(full) - 16)
    after = EmbeddingStore(grown / 'embeddings.zarr')
    assert len(after) == len(full) and after.done().all()
    assert list(after.page_ids[:16]) == list(before.page_ids)          # old pages keep their positions
    for k in FLOATS: assert (after.group[k][:16] == old[k]).all(), k
    root = grown / 'embeddings.zarr' / 'panel_embeddings' / 'c'
    full_chunks = [f for f in mtimes if f.relative_to(root).parts[0] in ('0', '1', '2', '3')]   # full chunks: not rewritten
    assert full_chunks and all(f.stat().st_mtime_ns == mtimes[f] for f in full_chunks)
    assert verify_embeddings(grown).ok.all()
    c = EmbeddingStore(tmp / 'clean' / 'embeddings.zarr')
    pos = c.positions(after.page_ids)
    for k in FLOATS:
        x, y = after.group[k][:].astype(np.float32), c.group[k][:][pos].astype(np.float32)
        assert np.abs(x - y).max() <= 1e-3, k


def test_bad_pages_are_audited_and_the_run_goes_on(library):
    tmp, truths, ck = library
    out = _copy(library, 'bad')
    man = pd.read_parquet(out / 'manifest' / 'pages.parquet')
    gone = man.page_id.iloc[3]
    man.loc[man.page_id == gone, 'entry'] = 'missing.jpg'              # the container lacks this entry
    man.to_parquet(out / 'manifest' / 'pages.parquet')
    r = run_stage(EmbedStage(ck, workers=0, pages='story'), out, progress=False, show=False)
    a = r.audit.set_index('page_id')
    assert a.loc[gone, 'status'] == 'error' and a.loc[gone, 'reason'] == 'unreadable_page'
    story = {p for p, t in truths.items() if t['page_type'] == 'story'}
    assert set(a.index[a.reason == 'not_selected']) == set(truths) - story
    assert r.counts['ok'] == len(story - {gone}) and r.exit_code == 3
    assert len(a) == len(man)                                        # every manifest page is accounted for
