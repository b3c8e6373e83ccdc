"Hostile input: every item gets the expected audit reason, nothing crashes, nothing is written outside OUT, counts reconcile"
import hashlib, os, sys, zipfile
from pathlib import Path
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from extract_hostile_corpus import make_hostile_corpus, rar4, jpeg
from comix.extract import run_extract, reconciliation, PageReader
from comix.readers import open_book, fix_name


def _snapshot(d):
    return sorted((str(p.relative_to(d)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in Path(d).rglob('*'))


@pytest.fixture(scope='module')
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp('hostile')
    lib = base / 'library' / 'inner'          # zip-slip targets would land in library/ or base/
    expect = make_hostile_corpus(lib)
    work = base / 'cwd'; work.mkdir()
    before = _snapshot(base)
    cwd = os.getcwd(); os.chdir(work)
    try: res = run_extract({'h': str(lib)}, base / 'out', workers=2, progress=False, show=False)
    finally: os.chdir(cwd)
    return base, lib, expect, before, res


def test_every_item_has_its_reason(hostile):
    base, lib, expect, before, res = hostile
    a, m = res['audit'], res['manifest']
    books = a[a.level == 'book'].assign(name=lambda d: d.page_id.str.split('/', n=1).str[1])
    by_book = {r.page_id: r for r in books.itertuples()}
    from comix.extract import find_books
    refs = {Path(r.container).name: r for r in find_books({'h': str(lib)})}
    assert set(refs) == set(expect), set(refs) ^ set(expect)
    for fname, ex in expect.items():
        ref = refs[fname]; row = by_book[ref.book_id]
        assert (row.status, row.reason) == ex['book'], (fname, row.status, row.reason, row.detail)
        rows = a[a.page_id.str.startswith(ref.book_id + '/') | a.page_id.str.startswith(ref.book_id + ':')]
        got = {r.entry: (r.status, r.reason) for r in rows.itertuples()}
        for entry, st in ex.get('entries', {}).items(): assert got.get(entry) == st, (fname, entry, got.get(entry))
        pages = m[m.book_key == ref.book_key].sort_values('page_index')
        if 'pages' in ex: assert len(pages) == ex['pages'], (fname, len(pages))
        for i, reason in ex.get('page_errors', {}).items():
            r = a[a.page_id == f'{ref.book_id}/{i:04d}'].iloc[0]
            assert (r.status, r.reason) == ('error', reason), (fname, i, r.reason)
        for i, md5 in ex.get('md5', {}).items(): assert pages.md5.iloc[i] == md5
        if 'order' in ex: assert pages.entry.tolist() == ex['order']
        if 'page_reasons' in ex: assert ex['page_reasons'] <= set(rows[rows.level == 'page'].reason)


def test_reconciliation_adds_up(hostile):
    base, lib, expect, before, res = hostile
    a = res['audit']
    t = reconciliation(a)
    assert t.n.sum() == len(a)
    # entries seen, counted independently with zipfile for every zip that opens: one audit row per member
    for p in sorted(lib.glob('*.cbz')):
        try: n = len(zipfile.ZipFile(p).infolist())
        except Exception: continue
        book = 'h/' + fix_name(p.stem)[0]
        if a[a.page_id == book].status.iloc[0] == 'error' and a[a.page_id == book].reason.iloc[0] in ('zip_bomb', 'truncated_zip', 'non_utf8_path'): continue
        rows = a[(a.level != 'book') & (a.page_id.str.startswith(book + '/') | a.page_id.str.startswith(book + ':'))]
        assert len(rows) == n, (p.name, len(rows), n)
    assert set(a.status) == {'ok', 'skipped', 'error'}


def test_nothing_written_outside_out(hostile):
    base, lib, expect, before, res = hostile
    after = [s for s in _snapshot(base) if not s[0].startswith('out')]
    assert after == before
    assert not list((base / 'cwd').iterdir())
    assert not (base / 'evil.jpg').exists() and not (base / 'library' / 'evil.jpg').exists() and not Path('/abs/evil.jpg').exists()


def test_rerun_is_idempotent(hostile):
    base, lib, expect, before, res = hostile
    again = run_extract({'h': str(lib)}, base / 'out', workers=1, progress=False, show=False)
    assert again['processed'] == 0 and again['already_done'] == res['books']
    pd.testing.assert_frame_equal(again['manifest'], res['manifest'])


def test_rar4_and_encrypted_rar4_are_real(tmp_path):
    "The generated RAR4 archives are genuine: unrar decrypts the encrypted one with the right password"
    from unrar.cffi.rarfile import RarFile
    rar4(tmp_path / 'e.cbr', [('p1.jpg', jpeg(7))], password='pw')
    assert RarFile(str(tmp_path / 'e.cbr'), pwd='pw').read('p1.jpg') == jpeg(7)
    rar4(tmp_path / 'p.cbr', [('p1.jpg', jpeg(8)), ('p2.jpg', jpeg(9))])
    with open_book(tmp_path / 'p.cbr') as b:
        assert b.kind == 'rar' and [b.read(m) for m in b.members] == [jpeg(8), jpeg(9)]


def test_pages_read_back_through_page_reader(hostile):
    base, lib, expect, before, res = hostile
    m = res['manifest']
    with PageReader(base / 'out') as pr:
        for pid, md5 in m[['page_id', 'md5']].values: assert hashlib.md5(pr.bytes(pid)).hexdigest() == md5
