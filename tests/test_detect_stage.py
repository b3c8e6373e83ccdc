"The `comix detect` batch run: resume, shards, COCO, audit."
import json, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image

from comix.detect import main, run_detect, read_coco, DETECT_COLUMNS
from comix.paths import Layout, fixture_path, read_audit, reconcile
from comix.stage import new_run_id

PEPPER = 'pepper-carrot/Pepper&Carrot ep02 - Rainbow Potions'


@pytest.fixture
def sample_out(tmp_path):
    "The bundled sample library (Pepper&Carrot and the small Captain Science books), extracted"
    from comix.extract import run_extract
    out = tmp_path/'out'
    run_extract({'pc': str(fixture_path('library'))}, out, workers=1, progress=False, show=False)
    return out


def test_cli_resume_shards_coco(sample_out, tmp_path):
    "comix detect: outputs per DESIGN, resume after a kill, shards without overlap, COCO round trip"
    out = sample_out
    man = pd.read_parquet(Layout(out).manifest)
    assert man.book_key.nunique() >= 4
    # a killed run leaves an uncommitted chunk (rows without the audit part that commits them): ignored
    parts = Path(Layout(out).detect('classical')).with_suffix('.parts'); parts.mkdir(parents=True)
    pd.DataFrame([dict(page_id=man.page_id[0], panel_index=0, x=0, y=0, w=1, h=1, score=1.0, order=0,
                       detector='classical', weights='', polygon=[[0.0, 0, 1, 0, 1, 1, 0, 1]])])[DETECT_COLUMNS].to_parquet(parts/f'{new_run_id()}-000000.rows.parquet')
    assert main(['--out', str(out), '--no-progress']) == 0
    det = pd.read_parquet(Layout(out).detect('classical'))
    assert list(det.columns) == DETECT_COLUMNS
    pc = man[man.book_key == PEPPER].sort_values('page_index')
    assert det[det.page_id.isin(pc.page_id)].groupby('page_id').size().to_dict() == {p: n for p, n in zip(pc.page_id, [2, 3, 3, 3, 2, 1])}
    assert not ((det.w == 1) & (det.h == 1)).any()
    assert (det.x + det.w <= det.page_id.map(dict(zip(man.page_id, man.width)))).all()
    a = read_audit(out, 'detect-classical')
    reconcile(a, len(man), show=False)
    assert set(a.page_id[a.status == 'ok']) == set(man.page_id)                    # every page done
    assert not Path(Layout(out).audit('detect')).exists()                           # one audit per detector
    again = run_detect(out, progress=False, show=False)
    assert again.counts['processed'] == 0 and set(again.audit.reason) == {'already_done'} and again.exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(Layout(out).detect('classical')), det)
    back = read_coco(Layout(out).coco('classical'), detector='classical')
    pd.testing.assert_frame_equal(back[['page_id', 'x', 'y', 'w', 'h', 'order']], det[['page_id', 'x', 'y', 'w', 'h', 'order']])
    coco = json.loads(Path(Layout(out).coco('classical')).read_text())
    assert {im['page_id'] for im in coco['images']} == set(man.page_id) and all(im['width'] > 0 for im in coco['images'])
    # three shards on a fresh output: every page once, the merged table equal to the one run's
    o2 = tmp_path/'o2'; shutil.copytree(out/'manifest', o2/'manifest'); shutil.copy(Layout(out).config, Layout(o2).config)
    for i in range(3): assert main(['--out', str(o2), '--shard', str(i), '--num-shards', '3', '--no-progress']) == 0
    a = read_audit(o2, 'detect-classical')
    assert sorted(a.page_id) == sorted(man.page_id) and set(a.status) == {'ok'}
    assert a.run.nunique() >= 2                                                     # the shards really split the pages
    assert not list((o2/'detect'/'classical.parts').glob('*.parquet'))
    pd.testing.assert_frame_equal(pd.read_parquet(Layout(o2).detect('classical')), det)


def test_unreadable_page_is_audited(sample_out):
    "A page whose image cannot be read gives an error row, the others go on, counts reconcile, exit 3"
    out = sample_out
    man = pd.read_parquet(Layout(out).manifest)
    man.loc[0, 'entry'] = 'missing.jpg'; man.to_parquet(Layout(out).manifest)
    assert main(['--out', str(out), '--no-progress']) == 3
    a = read_audit(out, 'detect-classical')
    reconcile(a, len(man), show=False)
    assert (a.status == 'error').sum() == 1 and (a.status == 'ok').sum() == len(man) - 1
    assert a.set_index('page_id').reason[man.page_id[0]] == 'unreadable_page'
    assert man.page_id[0] not in set(pd.read_parquet(Layout(out).detect('classical')).page_id)


def test_missing_manifest_exits_2(tmp_path, capsys):
    assert main(['--out', str(tmp_path/'empty'), '--no-progress']) == 2
    err = capsys.readouterr().err
    assert 'no manifest' in err and 'comix extract' in err
