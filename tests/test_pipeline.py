"End to end: the sample library through every stage's command, as a user runs it, on one output folder."
import json, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
from comix.paths import fixture_path, Layout, read_audit, reconcile

def comix(*args, cwd):
    exe = Path(sys.executable).with_name('comix')
    r = subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f'comix {" ".join(map(str, args))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r

def test_sample_library_through_every_stage(tmp_path):
    out, L = tmp_path/'out', Layout(tmp_path/'out')
    comix('extract', '--out', out, '--source', f'sample={fixture_path("library")}', cwd=tmp_path)
    man = pd.read_parquet(L.manifest)
    assert man.page_id.is_unique and man.page_id.str.startswith('sample/').all()
    pc = man[man.book_key == 'pepper-carrot/Pepper&Carrot ep02 - Rainbow Potions']
    assert len(pc) == 6 and pc.page_index.tolist() == list(range(6))
    comix('detect', '--out', out, cwd=tmp_path)
    det = pd.read_parquet(L.detect('classical'))
    assert set(det.page_id) <= set(man.page_id) and len(det) > 0
    comix('text', '--out', out, '--backend', 'ocr', cwd=tmp_path)
    comix('align', '--out', out, cwd=tmp_path)
    assert Path(L.quality).exists()
    for stage in ('extract', 'detect', 'text_ocr', 'align'):
        audit = read_audit(out, stage)
        assert len(audit) > 0 and set(audit.status) <= {'ok', 'skipped', 'error'}, stage
    for stage in ('detect', 'text_ocr', 'align'):       # one audit row per manifest page, each page once
        reconcile(read_audit(out, stage), len(man), stage, show=False)
    assert (read_audit(out, 'detect').status == 'ok').all()
    # a second run of every stage redoes nothing and changes nothing
    before = {p: p.read_bytes() for p in (Path(L.manifest), Path(L.detect('classical')), Path(L.quality))}
    for args in (('extract', '--source', f'sample={fixture_path("library")}'), ('detect',), ('text', '--backend', 'ocr'), ('align',)):
        comix(args[0], '--out', out, *args[1:], cwd=tmp_path)
    for p, b in before.items(): assert pd.read_parquet(p).equals(pd.read_parquet(__import__('io').BytesIO(b))), p

def test_comix_run_extract_is_the_same_stage(tmp_path):
    "`comix run extract` runs the notebook as a batch job: same manifest as `comix extract`, the run log kept."
    lib = fixture_path('library')
    comix('extract', '--out', tmp_path/'cli', '--source', f'sample={lib}', cwd=tmp_path)
    comix('run', 'extract', '--out', tmp_path/'nb', '-p', 'sources', f'["sample={lib}"]', cwd=tmp_path)
    a, b = (pd.read_parquet(Layout(tmp_path/d).manifest) for d in ('cli', 'nb'))
    cols = ['page_id', 'container', 'entry', 'width', 'height', 'md5', 'n_bytes']
    pd.testing.assert_frame_equal(a[cols].sort_values('page_id', ignore_index=True), b[cols].sort_values('page_id', ignore_index=True))
    assert len(list((tmp_path/'nb'/'runs'/'extract').glob('*.ipynb'))) == 1
