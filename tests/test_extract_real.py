"Real archives: the comicbox Captain Science fixtures in every format (skipped when ../shared is absent)"
import hashlib, zipfile
from pathlib import Path
import pandas as pd
import pytest
from comix.extract import run_extract, PageReader, open_page, find_books, reconciliation
from comix.paths import read_audit

REAL = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'real' / 'comicbox-captain-science'
pytestmark = pytest.mark.skipif(not REAL.exists(), reason='../shared/data/real is not available')
FOLDER = REAL / 'Captain Science 001'


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp('real')
    return out, run_extract({'real': str(REAL)}, out, workers=2, progress=False, show=False)


def _truth():
    "md5 of the five loose JPEGs, read with plain file IO: the same pages every archive holds"
    return [hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(FOLDER.glob('*.jpg'))]


def test_every_format_gives_the_five_pages_in_order(run):
    out, res = run
    m = res.table
    truth = _truth()
    assert len(truth) == 5
    containers = {'Captain Science #001.cbz', 'Captain Science #001-cix.cbz', 'Captain Science #001-comet.cbz',
                  'Captain Science #001-cbi.cbr', 'Captain Science #001-cix-cbi.cbr', 'Captain Science #001.cb7',
                  'Captain Science #001-cix.cbt', 'Captain Science 001'}
    for c in containers:
        b = m[m.container == c].sort_values('page_index')
        assert b.md5.tolist() == truth, c
        assert b.page_index.tolist() == list(range(5)) and (b.n_pages == 5).all(), c
        assert b.entry.str.endswith(('_01.jpg', '_02.jpg', '_03.jpg', '_04.jpg', '_05.jpg')).all(), c
        assert (b.format == 'jpeg').all() and (b.height == 160).all(), c
        assert b.series.iloc[0] == 'Captain Science' and b.year.iloc[0] == 1950, c


def test_rar_is_rar5_and_reads(run):
    out, res = run
    assert (REAL / 'Captain Science #001-cbi.cbr').read_bytes()[:8] == b'Rar!\x1a\x07\x01\x00'
    m = res.table
    with PageReader(out) as pr:
        for pid in m[m.container.str.endswith('.cbr')].page_id:
            assert hashlib.md5(pr.bytes(pid)).hexdigest() == m.set_index('page_id').md5[pid]


def test_comicinfo_page_types(run):
    out, res = run
    m = res.table
    for c in ['Captain Science #001.cbz', 'Captain Science #001-cix.cbz', 'Captain Science #001-cix-cbi.cbr', 'Captain Science 001']:
        b = m[m.container == c].sort_values('page_index')
        assert b.page_type.tolist() == ['FrontCover'] + ['Story'] * 4, c
    # no ComicInfo / MetronInfo: no page types, but CoMet / CBI still give the series
    for c in ['Captain Science #001-comet.cbz', 'Captain Science #001-cbi.cbr']:
        b = m[m.container == c]
        assert b.page_type.isna().all() and (b.series == 'Captain Science').all(), c


def test_junk_empty_and_metadata_only(run):
    out, res = run
    a = res.state
    book = lambda k: a[(a.page_id == f'real/{k}') & (a.level == 'book')].iloc[0]
    assert (book('empty').status, book('empty').reason) == ('skipped', 'empty_archive')
    assert book('Captain Science #001 (1950) The Beginning - nothing').reason == 'empty_archive'
    for k in ['Captain Science #001-metron', 'comicbox', 'yaml', 'xml', 'patchme']:
        assert (book(k).status, book(k).reason) == ('skipped', 'no_pages'), k
    mac = a[a.page_id.str.startswith('real/macos_resource_fork')]
    assert sorted(mac[mac.level == 'entry'].reason) == ['macosx'] * 3
    assert (mac[mac.level == 'page'].status == 'ok').sum() == 2
    # every zip member is accounted for exactly once
    for p in REAL.glob('*.cbz'):
        n = len(zipfile.ZipFile(p).infolist())
        key = [r for r in find_books({'real': str(REAL)}) if r.container == p.name][0].book_id
        rows = a[(a.level != 'book') & (a.unit == key)]
        assert len(rows) == n, p.name
        assert (rows.page_id.str.startswith(key + '/') | rows.page_id.str.startswith(key + ':')).all(), p.name


def test_text_only_pdfs_are_rendered(run):
    out, res = run
    m = res.table
    b = m[m.container == 'test_pdf.pdf'].sort_values('page_index')
    assert len(b) == 4 and (b.format == 'png').all()
    im = open_page(b.page_id.iloc[0], out, max_side=200)
    assert max(im.size) == 200


def test_reconciled(run):
    out, res = run
    t = reconciliation(res.state)
    assert t.n.sum() == len(res.state)
    assert not (res.state.status == 'error').any() and res.exit_code == 0
    # the same table reads back from the audit on disk, with its levels
    pd.testing.assert_frame_equal(reconciliation(read_audit(out, 'extract')), t)
    books = find_books({'real': str(REAL)})
    assert res.counts['units'] == len(books) == res.counts['ok'] + res.counts['skipped']
