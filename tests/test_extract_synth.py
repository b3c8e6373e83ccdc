"Synthetic books (comix.synth): counts, order, page types, md5; and a SIGKILLed 200-book run equals a clean run"
import hashlib, os, shutil, signal, subprocess, sys, time, zipfile
from pathlib import Path
import pandas as pd
import pytest
from comix.extract import run_extract, find_books
from comix.paths import read_audit

import comix.synth as synth


@pytest.fixture(scope='module')
def lib(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    truth = synth.synth_library(root, n_books=4, pages_per_book=12, size=(90, 135), text=False, names='natural', junk=True)
    return root, truth


def test_synth_books_match_their_truth(lib, tmp_path):
    root, truth = lib
    res = run_extract({'s': str(root)}, tmp_path / 'out', workers=2, progress=False, show=False)
    assert res.exit_code == 0 and res.counts['ok'] == res.counts['units'] == truth.book_key.nunique()
    m = res.table
    assert len(m) == len(truth)
    for book_key, t in truth.groupby('book_key'):
        b = m[m.book_key == book_key].sort_values('page_index')
        t = t.sort_values('page_index')
        assert b.entry.tolist() == t.entry.tolist()                        # page1, page2, ..., page10 (natural order)
        assert b.entry.tolist()[9] == 'page10.jpg'
        assert b.page_type.tolist() == [synth.PAGE_TYPES[p] for p in t.page_type]
        assert (b.width.tolist(), b.height.tolist(), b.n_bytes.tolist()) == (t.width.tolist(), t.height.tolist(), t.n_bytes.tolist())
        with zipfile.ZipFile(t.path.iloc[0]) as z:
            assert b.md5.tolist() == [hashlib.md5(z.read(e)).hexdigest() for e in t.entry]
        assert b.series.iloc[0] == t.series.iloc[0] and int(b.number.iloc[0]) == int(t.number.iloc[0])
    a = res.state
    assert set(a[a.level == 'entry'].reason) == {'macosx', 'appledouble', 'thumbs_db', 'metadata'}


def _tiny_library(root, n_books):
    "200 books quickly: synth pages at thumbnail size, reused across books with different names"
    base = root / '_base'
    synth.synth_library(base, n_books=6, pages_per_book=6, size=(60, 90), text=False)
    books = sorted(base.rglob('*.cbz'))
    for i in range(n_books):
        src = books[i % len(books)]
        dst = root / f'series {i // 20:02d}' / f'book {i:03d}.cbz'
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    shutil.rmtree(base)
    return root


CMD = ("import sys; from comix.extract import main; "
       "sys.exit(main(['--out', sys.argv[1], '--source', 'lib=' + sys.argv[2], '--workers', '2', '--no-progress']))")


def _parts(out):
    "Committed parts of the manifest (the audit part commits its rows)"
    return sorted((out / 'manifest' / 'pages.parts').glob('*.audit.parquet')) if (out / 'manifest' / 'pages.parts').exists() else []


def _committed_books(out):
    "Books whose result a committed part holds, by run id"
    a = pd.concat([pd.read_parquet(p) for p in _parts(out)], ignore_index=True)
    return a[a.level == 'book'].groupby('run').unit.nunique().to_dict()


def test_sigkill_mid_run_then_rerun_equals_clean_run(tmp_path):
    root = _tiny_library(tmp_path / 'lib', 200)
    refs = find_books({'lib': str(root)})
    assert len(refs) == 200
    run_extract({'lib': str(root)}, tmp_path / 'clean', workers=2, progress=False, show=False)
    clean = pd.read_parquet(tmp_path / 'clean' / 'manifest' / 'pages.parquet')
    out = tmp_path / 'killed'
    p = subprocess.Popen([sys.executable, '-c', CMD, str(out), str(root)], start_new_session=True)
    t0, done = time.time(), 0
    while time.time() - t0 < 120:
        done = len(_parts(out))                  # 8 books per part
        if done >= 3 or p.poll() is not None: break
        time.sleep(0.01)
    assert p.poll() is None, 'the run finished before it could be killed'
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    first = _committed_books(out)
    assert len(first) == 1
    (killed_run, n_done), = first.items()
    assert 0 < n_done < 200 and not os.path.exists(out / 'manifest' / 'pages.parquet')
    rc = subprocess.run([sys.executable, '-c', CMD, str(out), str(root)], capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    assert f'200 units = {200 - n_done} ok + {n_done} skipped + 0 error; {200 - n_done} processed' in rc.stdout, rc.stdout
    # the books committed before the kill keep the killed run's result; the rest were read by the rerun, once each
    a = read_audit(out, 'extract')
    books = a[a.level == 'book']
    assert books.unit.is_unique and len(books) == 200
    runs = books.run.value_counts()
    assert len(runs) == 2 and runs[killed_run] == n_done and runs.drop(killed_run).iloc[0] == 200 - n_done
    assert not _parts(out)                       # folded into the table and the audit
    killed = pd.read_parquet(out / 'manifest' / 'pages.parquet')
    assert len(clean) == 200 * 6
    pd.testing.assert_frame_equal(killed, clean)


def test_shards_together_equal_one_run(lib, tmp_path):
    from comix.paths import read_audit
    root, truth = lib
    one = run_extract({'s': str(root)}, tmp_path / 'one', workers=1, progress=False, show=False)
    shards = [run_extract({'s': str(root)}, tmp_path / 'sh', shard=i, num_shards=3, workers=1, progress=False, show=False)
              for i in range(3)]
    # the shards split the books: disjoint, together all of them
    mine = [set(r.audit.page_id) for r in shards]
    assert sum(map(len, mine)) == len(set().union(*mine)) == one.counts['units'] == truth.book_key.nunique()
    assert all(r.counts['processed'] == r.counts['units'] for r in shards)
    # every shard folds into the one table and the one audit: the last shard's view is the whole run's
    pd.testing.assert_frame_equal(shards[-1].table, one.table)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / 'sh' / 'manifest' / 'pages.parquet'),
                                  pd.read_parquet(tmp_path / 'one' / 'manifest' / 'pages.parquet'))
    assert [p.name for p in (tmp_path / 'sh' / 'audit').iterdir()] == ['extract.parquet']
    assert not list((tmp_path / 'sh' / 'manifest').rglob('*.parts/*.parquet'))
    key = ['unit', 'level', 'page_id']
    sharded = read_audit(tmp_path / 'sh', 'extract').sort_values(key, ignore_index=True)
    whole = read_audit(tmp_path / 'one', 'extract').sort_values(key, ignore_index=True)
    assert sharded.run.nunique() == sum(1 for m in mine if m) >= 2 and whole.run.nunique() == 1
    pd.testing.assert_frame_equal(sharded.drop(columns=['seconds', 'run']), whole.drop(columns=['seconds', 'run']))


def test_changed_book_is_read_again(lib, tmp_path):
    root, truth = lib
    lib2 = tmp_path / 'lib'; shutil.copytree(root, lib2)
    first = run_extract({'s': str(lib2)}, tmp_path / 'out', workers=1, progress=False, show=False)
    victim = sorted(lib2.rglob('*.cbz'))[0]
    with zipfile.ZipFile(victim, 'a') as z: z.writestr('zz_extra_page.jpg', zipfile.ZipFile(victim).read(truth.entry.iloc[0]))
    again = run_extract({'s': str(lib2)}, tmp_path / 'out', workers=1, progress=False, show=False)
    assert again.counts['processed'] == 1 and len(again.table) == len(first.table) + 1
    book = again.audit[again.audit.reason != 'already_done']
    assert len(book) == 1 and book.status.iloc[0] == 'ok' and book.page_id.iloc[0].endswith(victim.stem)
    assert again.table.canonical.sum() == len(first.table)     # the added page is an exact duplicate


def test_cli_with_extract_to(lib, tmp_path):
    from comix.cli import main as comix_main
    root, truth = lib
    rc = comix_main(['extract', '--out', str(tmp_path / 'out'), '--source', f's={root}', '--workers', '1', '--no-progress',
                     '--extract-to', str(tmp_path / 'files')])
    assert rc == 0
    m = pd.read_parquet(tmp_path / 'out' / 'manifest' / 'pages.parquet')
    files = sorted((tmp_path / 'files').rglob('*.jpg'))
    assert len(files) == len(m) == len(truth)
    assert sorted(hashlib.md5(f.read_bytes()).hexdigest() for f in files) == sorted(m.md5)
