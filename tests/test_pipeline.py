"End to end: `comix pipeline` on the bundled sample library, as a user runs it, and `comix run` as the same stage."
import re, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
from comix.paths import fixture_path, Layout, read_audit, reconcile
from comix.pipeline import STEPS

def comix(*args, cwd, ok=(0,)):
    exe = Path(sys.executable).with_name('comix')
    r = subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=1800,
                       env={**__import__('os').environ, 'HF_HUB_OFFLINE': '1'})
    assert r.returncode in ok, f'comix {" ".join(map(str, args))} -> {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r

@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    "The whole pipeline on the bundled sample, offline"
    tmp = tmp_path_factory.mktemp('pipe')
    r = comix('pipeline', '--out', tmp/'out', '--no-progress', cwd=tmp)
    return tmp/'out', r

def test_pipeline_runs_every_stage_and_reports_it(sample):
    out, r = sample
    assert f"report: {out/'report.html'}" in r.stdout
    html = (out/'report.html').read_text()
    present = [s.name for s in STEPS if s.load() is not None and not s.needs_vlm]
    for name in present: assert f'<h2 id="{name}">' in html, name                 # every stage has its section
    assert html.count('data:image/jpeg;base64') >= 4                                # with pictures
    man = pd.read_parquet(Layout(out).manifest)
    assert man.page_id.is_unique and man.page_id.str.startswith('sample/').all()
    pc = man[man.book_key == 'pepper-carrot/Pepper&Carrot ep02 - Rainbow Potions']
    assert len(pc) == 6 and pc.page_index.tolist() == list(range(6))
    for audit in ('detect-classical', 'text-ocr', 'align'):                        # one unit row per page, each once
        reconcile(read_audit(out, audit), len(man), audit, show=False)
    assert (read_audit(out, 'detect-classical').status == 'ok').all()
    assert 'text-vlm' in html and 'no VLM endpoint configured' in html            # offline: the VLM step says why not

def test_pipeline_again_redoes_nothing_and_changes_nothing(sample, tmp_path):
    out, _ = sample
    tables = [Layout(out).manifest, Layout(out).detect('classical'), Layout(out).text_table('ocr'), Layout(out).quality]
    before = {p: pd.read_parquet(p) for p in tables}
    r = comix('pipeline', '--out', out, '--no-progress', cwd=tmp_path)
    for line in re.findall(r'^\S+: \d+ units .*$', r.stdout, re.M):
        assert ' 0 processed' in line, line
    for p, df in before.items(): pd.testing.assert_frame_equal(pd.read_parquet(p), df, obj=p)

def test_comix_run_extract_is_the_same_stage(tmp_path):
    "`comix run extract` runs the notebook as a batch job: same manifest as `comix extract`, the run log kept."
    lib = fixture_path('library')
    comix('extract', '--out', tmp_path/'cli', '--source', f'sample={lib}', cwd=tmp_path)
    comix('run', 'extract', '--out', tmp_path/'nb', '-p', 'sources', f'["sample={lib}"]', cwd=tmp_path)
    a, b = (pd.read_parquet(Layout(tmp_path/d).manifest) for d in ('cli', 'nb'))
    cols = ['page_id', 'container', 'entry', 'width', 'height', 'md5', 'n_bytes']
    pd.testing.assert_frame_equal(a[cols].sort_values('page_id', ignore_index=True), b[cols].sort_values('page_id', ignore_index=True))
    assert len(list((tmp_path/'nb'/'runs'/'extract').glob('*.ipynb'))) == 1

def test_comix_run_vlm_never_writes_its_demo_into_a_users_out(tmp_path):
    "Without an endpoint, `comix run vlm --out OUT` fails with a reason and leaves OUT's tables alone"
    comix('extract', '--out', tmp_path/'out', '--source', f'pc={fixture_path("library", "pepper-carrot")}', cwd=tmp_path)
    r = comix('run', 'vlm', '--out', tmp_path/'out', cwd=tmp_path, ok=(1,))
    assert 'base_url' in r.stderr
    assert not (tmp_path/'out'/'text').exists()
