"Hostile input: every item gets the expected audit reason, nothing crashes, nothing is written outside OUT, counts reconcile"
import hashlib, os, sys, zipfile
from pathlib import Path
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from extract_hostile_corpus import make_hostile_corpus, rar4, jpeg
from comix.extract import run_extract, reconciliation, PageReader, find_books
from comix.paths import read_audit, reconcile
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
    a, m = res.state, res.table
    books = a[a.level == 'book']
    assert (books.page_id == books.unit).all() and books.page_id.is_unique
    by_book = {r.page_id: r for r in books.itertuples()}
    refs = {Path(r.container).name: r for r in find_books({'h': str(lib)})}
    assert set(refs) == set(expect), set(refs) ^ set(expect)
    for fname, ex in expect.items():
        ref = refs[fname]; row = by_book[ref.book_id]
        assert (row.status, row.reason) == ex['book'], (fname, row.status, row.reason, row.detail)
        rows = a[(a.unit == ref.book_id) & (a.level != 'book')]
        assert (rows.page_id.str.startswith(ref.book_id + '/') | rows.page_id.str.startswith(ref.book_id + ':')).all()
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
    a = res.state
    t = reconciliation(a)
    assert t.n.sum() == len(a)
    # the audit on disk keeps `level`: the same reconciliation reads back from OUT/audit/extract.parquet
    disk = read_audit(base / 'out', 'extract')
    pd.testing.assert_frame_equal(reconciliation(disk), t)
    # this run's view: one row per book, and the counts add up
    reconcile(res.audit, len(expect), show=False)
    assert res.counts['units'] == len(expect) == res.counts['ok'] + res.counts['skipped'] + res.counts['error']
    assert res.counts['processed'] == len(expect)
    # books in error: the run finishes and says so with exit code 3
    errors = {k for k, ex in expect.items() if ex['book'][0] == 'error'}
    assert res.counts['error'] == len(errors) > 0 and res.exit_code == 3
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
    assert again.counts['processed'] == 0 and again.counts['units'] == res.counts['units']
    # books done earlier are skipped as already_done; books in error keep their error (no --retry-errors)
    first = res.audit.set_index('page_id')
    for r in again.audit.itertuples():
        if first.status[r.page_id] == 'error': assert (r.status, r.reason) == ('error', first.reason[r.page_id])
        else: assert (r.status, r.reason) == ('skipped', 'already_done'), r
    assert again.exit_code == res.exit_code == 3
    pd.testing.assert_frame_equal(again.table, res.table)
    key = lambda a: a.sort_values(['unit', 'level', 'page_id'], ignore_index=True)
    pd.testing.assert_frame_equal(key(again.state), key(res.state))      # nothing new in the stage's audit
    # what is on disk is what the run returned (parquet reads strings back as pandas' str dtype)
    pd.testing.assert_frame_equal(pd.read_parquet(base / 'out' / 'manifest' / 'pages.parquet'), res.table, check_dtype=False)
    # --retry-errors reads exactly the books in error again, and they fail the same way
    retry = run_extract({'h': str(lib)}, base / 'out', workers=1, progress=False, show=False, retry_errors=True)
    assert retry.counts['processed'] == res.counts['error']
    err = (res.audit.status == 'error').to_numpy()
    cols = ['page_id', 'status', 'reason']
    pd.testing.assert_frame_equal(retry.audit[cols][err], res.audit[cols][err])
    assert set(retry.audit.reason[~err]) == {'already_done'} and retry.exit_code == 3
    pd.testing.assert_frame_equal(retry.table, res.table)


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
    m = res.table
    assert len(m) > 0
    with PageReader(base / 'out') as pr:
        for pid, md5 in m[['page_id', 'md5']].values: assert hashlib.md5(pr.bytes(pid)).hexdigest() == md5
