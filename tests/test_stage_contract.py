"""The stage contract (issue 9), checked the same way on every stage command, through the installed `comix` command:
the common flags, exit 2 with a message naming the command that makes a missing input, exit 3 when units fail,
3 shards equal to one run, two shards at once on one OUT, hostile inputs audited, and the pipeline on the sample."""
import json, os, shutil, subprocess, sys, threading
from pathlib import Path
import numpy as np, pandas as pd, pytest
from comix.paths import Layout, fixture_path, read_audit, reconcile
from comix.stage import COMMON_FLAGS
from comix.synth import synth_book
from comix.testing.faults import run_concurrently

COMIX = str(Path(sys.executable).with_name('comix'))
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}

def comix(*args, ok=(0,)):
    r = subprocess.run([COMIX, *map(str, args)], capture_output=True, text=True, timeout=900, env=ENV)
    assert r.returncode in ok, f'comix {" ".join(map(str, args))} -> {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}'
    return r

# the stages of this comix, with the arguments of their commands
STAGES = {'extract': [], 'detect': [], 'text': ['--backend', 'ocr', '--threads', '1'], 'align': []}
TABLE = {'extract': ('manifest/pages', ['page_id']), 'detect': ('detect/classical', ['page_id', 'panel_index']),
         'text': ('text/ocr', ['page_id', 'line_index']), 'align': ('align/quality', ['page_id'])}
BEFORE = {'extract': [], 'detect': ['extract'], 'text': ['extract', 'detect'], 'align': ['extract', 'detect', 'text']}
AUDIT = {'extract': 'extract', 'detect': 'detect-classical', 'text': 'text-ocr', 'align': 'align'}

@pytest.fixture(scope='module')
def library(tmp_path_factory):
    "Two small synthetic books (6 pages) as CBZ"
    root = tmp_path_factory.mktemp('lib')
    for i in range(2): synth_book(root/f'Book {i + 1:03d}.cbz', n_pages=3, seed=40 + i, size=(360, 540))
    return root

def run(stage, out, lib, *extra, ok=(0,)):
    args = ['--source', f's={lib}'] if stage == 'extract' else []
    return comix(stage, '--out', out, '--no-progress', *args, *STAGES[stage], *extra, ok=ok)

@pytest.fixture(scope='module')
def done(library, tmp_path_factory):
    "An output folder where every stage ran once, unsharded"
    out = tmp_path_factory.mktemp('done')
    for s in STAGES: run(s, out, library)
    return out

def table(out, stage):
    name, by = TABLE[stage]
    return pd.read_parquet(Layout(out).table(name)).sort_values(by, ignore_index=True)

# stages built on the runner after the first five: what each needs first, and the command its message names
LATER = {'pss': 'comix extract', 'embed': 'comix extract', 'index': 'comix embed'}

def test_every_stage_offers_the_common_flags():
    for cmd in [*STAGES, *LATER, 'pipeline']:
        h = comix(cmd, '--help').stdout
        missing = [f for f in COMMON_FLAGS if f not in h]
        assert not missing, (cmd, missing)

def test_missing_input_exits_2_and_names_the_command(tmp_path):
    for stage, before in BEFORE.items():
        r = run(stage, tmp_path/stage, tmp_path/'nothing', ok=(2,)) if stage != 'extract' else comix('extract', '--out', tmp_path/'x', ok=(2,))
        want = 'comix extract' if stage != 'extract' else 'no sources'
        assert want in r.stderr, (stage, r.stderr)
    out = tmp_path/'only-manifest'; run('extract', out, fixture_path('library', 'pepper-carrot'))
    assert 'comix detect' in run('align', out, None, ok=(2,)).stderr
    assert 'comix detect' in comix('embed', '--out', out, '--no-progress', ok=(2,)).stderr
    for stage, want in LATER.items():
        r = comix(stage, '--out', tmp_path/f'later-{stage}', '--no-progress', ok=(2,))
        assert want in r.stderr and 'Traceback' not in r.stderr, (stage, r.stderr)

def test_three_shards_read_back_equal_to_one_run(done, library, tmp_path):
    for stage, before in BEFORE.items():
        out = tmp_path/stage
        for b in before: run(b, out, library)
        for i in range(3): run(stage, out, library, '--shard', i, '--num-shards', 3)
        pd.testing.assert_frame_equal(table(out, stage), table(done, stage), obj=stage)
        reconcile(read_audit(out, AUDIT[stage]), len(read_audit(done, AUDIT[stage]).pipe(lambda a: a[a.page_id == a.unit])), stage, show=False)

def test_two_shards_at_once_give_the_union(done, library, tmp_path):
    for stage in ('extract', 'detect', 'text', 'align'):
        out = tmp_path/stage
        for b in BEFORE[stage]: run(b, out, library)
        args = lambda i: [COMIX, stage, '--out', out, '--no-progress', *STAGES[stage], '--shard', i, '--num-shards', 2,
                          *(['--source', f's={library}'] if stage == 'extract' else [])]
        assert run_concurrently([list(map(str, args(0))), list(map(str, args(1)))], env=ENV) == [0, 0]
        pd.testing.assert_frame_equal(table(out, stage), table(done, stage), obj=stage)

def test_unit_errors_exit_3_and_the_audit_names_them(library, tmp_path):
    lib = tmp_path/'lib'; shutil.copytree(library, lib)
    (lib/'Broken 009.cbz').write_bytes(b'PK\x03\x04 this is no zip archive')
    out = tmp_path/'out'
    run('extract', out, lib, ok=(3,))
    a = read_audit(out, 'extract')
    assert a.set_index('page_id').loc['s/Broken 009', 'status'] == 'error'
    (lib/'Broken 009.cbz').unlink(); run('extract', out, lib)               # gone from the library: gone from the manifest
    os.remove(lib/'Book 002.cbz')                                            # a manifest row whose image is gone
    for stage in ('detect', 'text'):
        run(stage, out, lib, ok=(3,))
        a = read_audit(out, AUDIT[stage]); bad = a[a.status == 'error']
        assert set(bad.reason) == {'unreadable_page'} and len(bad) == 3 and bad.page_id.str.contains('Book 002').all(), stage
        reconcile(a, len(pd.read_parquet(Layout(out).manifest)), stage, show=False)
    (Path(Layout(out).dataspec_dir)/'s').mkdir(parents=True, exist_ok=True)
    (Path(Layout(out).dataspec_dir)/'s'/'Book 001').write_text('a file where a folder should be')
    r = run('align', out, lib, ok=(3,))
    a = read_audit(out, 'align')
    assert set(a[a.status == 'error'].reason) == {'write_error'}, a

def test_hostile_tables_are_audited_not_fatal(done, tmp_path):
    out = tmp_path/'out'; shutil.copytree(done, out)
    man = pd.read_parquet(Layout(out).manifest)
    det = pd.read_parquet(Layout(out).detect('classical'))
    det.loc[0, 'w'] = -40; det.loc[1, 'x'] = np.nan                          # detections that cannot be boxes
    det = pd.concat([det, det.iloc[[2]].assign(page_id='elsewhere/Other 001/0000')], ignore_index=True)
    det.to_parquet(Layout(out).detect('classical'))
    for stage in ('text', 'align'):
        if stage == 'align':                                                 # text of another manifest's pages
            ocr = pd.read_parquet(Layout(out).text_table('ocr'))
            pd.concat([ocr, ocr.head(3).assign(page_id='other/Book 9/0000')]).to_parquet(Layout(out).text_table('ocr'))
        run(stage, out, None)
        a = read_audit(out, AUDIT[stage])
        inp = a[a.level == 'input']
        assert {'bad_row', 'not_in_manifest'} <= set(inp.reason), (stage, inp)
        reconcile(a, len(man), stage, show=False)
    assert 'other/Book 9/0000' in set(read_audit(out, 'align').query("level == 'input'").page_id)
    q = pd.read_parquet(Layout(out).quality)
    assert len(q) == len(man) and set(q.status) <= {'ok', 'skipped'}
    for stage in ('pss', 'embed'):                                           # the later stages read the same tables
        comix(stage, '--out', out, '--no-progress')
        a = read_audit(out, stage); inp = a[a.level == 'input']
        assert {'bad_row', 'not_in_manifest'} <= set(inp.reason), (stage, inp)
        assert 'other/Book 9/0000' in set(inp.page_id) and 'elsewhere/Other 001/0000' in set(inp.page_id), stage
        reconcile(a, len(man) if stage == 'embed' else man.book_key.nunique(), stage, show=False)
    p = pd.read_parquet(Layout(out).table('pss/predictions'))
    assert len(p) == len(man) and np.isfinite(p.filter(like='p_').to_numpy()).all()

def test_vlm_stage_contract(library, tmp_path):
    "The VLM backend of `comix text` against a loopback server: exit 2 without an endpoint, 3 on failures, shards"
    from comix.testing.vlm import LoopbackVLMServer
    out = tmp_path/'out'; run('extract', out, library)
    assert 'needs --base-url' in comix('text', '--out', out, '--backend', 'vlm', ok=(2,)).stderr
    man = pd.read_parquet(Layout(out).manifest)
    with LoopbackVLMServer({man.page_id[1]: ['garbage']}) as srv:
        vlm = ['text', '--out', out, '--backend', 'vlm', '--base-url', srv.base_url, '--model', 'm', '--no-progress']
        comix(*vlm, ok=(3,))
        comix(*vlm, '--retry-errors', ok=(3,))                              # the server still sends garbage for it
    with LoopbackVLMServer() as srv:
        comix('text', '--out', out, '--backend', 'vlm', '--base-url', srv.base_url, '--model', 'm', '--retry-errors')
        o3 = tmp_path/'o3'; shutil.copytree(Path(out)/'manifest', o3/'manifest'); shutil.copy(Layout(out).config, o3)
        for i in range(3): comix('text', '--out', o3, '--backend', 'vlm', '--base-url', srv.base_url, '--model', 'm', '--shard', i, '--num-shards', 3)
    one, three = (pd.read_parquet(Layout(o).text_table('vlm')) for o in (out, o3))
    pd.testing.assert_frame_equal(three, one)
    assert set(read_audit(out, 'text-vlm').status) == {'ok'}

def test_comix_run_takes_out_for_every_notebook(tmp_path):
    comix('run', '00_paths', '--out', tmp_path)
    assert len(list((tmp_path/'runs'/'paths').glob('*.ipynb'))) == 1
