"""SIGKILL every batch stage at random instants, rerun it to completion, and compare with an uninterrupted run:
identical tables, every unit once (a handful of kills per stage here; `benchmarks/bench_faults.py` does 20+)."""
import shutil
from pathlib import Path
import pytest
from comix.synth import synth_book
from comix.testing.faults import fault_trial
from comix.testing.vlm import LoopbackVLMServer
from comix.extract import run_extract
from comix.detect import run_detect
from comix.stage import run_stage
from comix.text import TextOcrStage

@pytest.fixture(scope='module')
def bases(tmp_path_factory):
    "Output folders holding the inputs of each stage: nothing, a manifest, + panels, + OCR text"
    root = tmp_path_factory.mktemp('faults')
    lib = root/'lib'
    for i in range(3): synth_book(lib/f'Book {i + 1:03d}.cbz', n_pages=2, seed=70 + i, size=(300, 450))
    b = {k: root/k for k in ('empty', 'manifest', 'panels', 'text')}
    b['empty'].mkdir()
    run_extract({'s': str(lib)}, b['manifest'], workers=1, progress=False, show=False)
    shutil.copytree(b['manifest'], b['panels']); run_detect(b['panels'], progress=False, show=False)
    shutil.copytree(b['panels'], b['text']); run_stage(TextOcrStage(ocr_options=dict(threads=1)), b['text'], progress=False, show=False)
    return lib, b

def check(r):
    assert r['kills'] >= 3 and r['equal'] and r['units_unique'] and r['same_units'], r

def test_extract_killed(bases):
    lib, b = bases
    check(fault_trial(['extract', '--source', f's={lib}', '--workers', '1'], b['empty'], 'manifest/pages', 'extract', ['page_id'], kills=3, seed=1, chunk=1))

def test_detect_killed(bases):
    check(fault_trial(['detect'], bases[1]['manifest'], 'detect/classical', 'detect-classical', ['page_id', 'panel_index'], kills=3, seed=2))

def test_text_killed(bases):
    check(fault_trial(['text', '--threads', '1'], bases[1]['panels'], 'text/ocr', 'text-ocr', ['page_id', 'line_index'], kills=3, seed=3))

def test_align_killed(bases):
    check(fault_trial(['align'], bases[1]['text'], 'align/quality', 'align', ['page_id'], kills=3, seed=4))

def test_vlm_killed(bases):
    with LoopbackVLMServer(latency=0.05) as srv:
        check(fault_trial(['text', '--backend', 'vlm', '--base-url', srv.base_url, '--model', 'm', '--concurrency', '2'],
                          bases[1]['manifest'], 'text/vlm', 'text-vlm', ['page_id', 'panel_index', 'order'], kills=3, seed=5))
