"""Roots and outputs on S3: a real S3 server (moto's, `comix.testing.s3.LoopbackS3`) on 127.0.0.1. extract, detect,
text and align run with the library root and the output folder on it and give the tables a local run gives; one
page of a large CBZ read back costs about that page's bytes, not the archive's."""
import io, os, json, zipfile
import pytest
import pandas as pd
from PIL import Image
from comix.testing.s3 import LoopbackS3
from comix.synth import synth_library
from comix.paths import Layout, read_audit
from comix.stage import run_stage
from comix.extract import run_extract, PageReader
from comix.detect import run_detect
from comix.text import TextOcrStage
from comix.align import run_align
from comix.readers import RANGE_BLOCK


@pytest.fixture(scope='module')
def s3():
    with LoopbackS3() as server: yield server


def _pipeline(lib, out):
    "extract, classical detect, OCR text and align, as a user runs them; the four runs"
    kw = dict(progress=False, show=False)
    return [run_extract({'synth': lib}, out, workers=1, **kw), run_detect(out, workers=1, **kw),
            run_stage(TextOcrStage(ocr_options=dict(threads=1)), out, workers=1, **kw), run_align(out, **kw)]


def test_extract_detect_text_align_on_s3_equal_local(s3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                                          # a path mistaken for local would land here
    synth_library(tmp_path / 'lib', n_books=1, pages_per_book=2, seed=21, size=(600, 900), rtl=False)
    local = _pipeline(str(tmp_path / 'lib'), tmp_path / 'local')
    root = s3.upload(tmp_path / 'lib', s3.bucket('comix-s3') + '/lib')
    out = 's3://comix-s3/out'
    remote = _pipeline(root, out)
    assert [r.exit_code for r in remote] == [0, 0, 0, 0] and [r.counts for r in remote] == [r.counts for r in local]
    for name in ('manifest/pages', 'detect/classical', 'text/ocr', 'align/quality'):
        here, there = pd.read_parquet(Layout(tmp_path / 'local').table(name)), pd.read_parquet(Layout(out).table(name))
        assert len(there), name
        pd.testing.assert_frame_equal(there, here, check_dtype=False, obj=name)
    fs = s3.fs()
    pid = local[0].table.page_id.iloc[-1]
    assert fs.exists(f'comix-s3/out/text/ocr/{pid}.json') and fs.exists('comix-s3/out/detect/classical.coco.json')
    spec = json.loads(fs.cat_file(f'comix-s3/out/dataspec/{pid}.json'))
    assert spec['page_id'] == pid and spec['page_image_path'].endswith('::s3://comix-s3/lib/' + local[0].table.container.iloc[-1])
    lists = {p.rsplit('/', 1)[-1] for p in fs.ls('comix-s3/out/dataspec/lists')}
    assert {'perfect.txt', 'high_quality.txt'} <= lists
    assert all(len(read_audit(out, a)) for a in ('extract', 'detect-classical', 'text-ocr', 'align'))
    again = run_detect(out, workers=1, progress=False, show=False)       # resume on S3: nothing to redo
    assert again.counts['processed'] == 0 and again.counts['skipped'] == len(local[0].table)
    assert not [p for p in os.listdir(tmp_path) if p.startswith('s3')]  # nothing written to a local "s3:" folder


def test_one_page_of_a_large_cbz_costs_about_that_page(s3, tmp_path):
    (tmp_path / 'big').mkdir()
    with zipfile.ZipFile(tmp_path / 'big' / 'big.cbz', 'w') as z:
        for i in range(60):
            b = io.BytesIO(); Image.effect_noise((300, 420), 30 + i).convert('RGB').save(b, 'JPEG', quality=95)
            z.writestr(f'page{i:03d}.jpg', b.getvalue())
    size = (tmp_path / 'big' / 'big.cbz').stat().st_size
    root = s3.upload(tmp_path / 'big', s3.bucket('comix-big') + '/lib')
    man = run_extract({'big': root}, tmp_path / 'out', workers=1, progress=False, show=False).table
    row = man.iloc[37]
    s3.traffic.reset()
    with PageReader(tmp_path / 'out') as pr: data = pr.bytes(row.page_id)
    got = s3.traffic.bytes(contains='big.cbz')
    assert len(data) == row.n_bytes
    assert row.n_bytes <= got <= row.n_bytes + 2 * RANGE_BLOCK + 16_384, (got, row.n_bytes)
    assert got < size / 20 and s3.traffic.count(contains='big.cbz') <= 8

