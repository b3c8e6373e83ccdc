"Foundation tests that need more than one process: atomic writes under SIGKILL, the `comix` command itself."
import hashlib, os, signal, subprocess, sys, textwrap, time, json, random
from pathlib import Path
import pandas as pd
import pytest
from comix.paths import make_page_id, book_key_of, locate, select_shard, book_of, bridge_paths

WRITER = textwrap.dedent('''
    import sys, hashlib, os
    from comix.paths import atomic_write_bytes
    target, i = sys.argv[1], 0
    print('ready', flush=True)
    while True:
        body = (f'version {i} '.encode() + os.urandom(16)) * 40000      # ~1 MB, different every time
        atomic_write_bytes(target, body + hashlib.sha256(body).hexdigest().encode())
        i += 1
''')

def _complete(path: Path) -> bool:
    data = path.read_bytes()
    body, digest = data[:-64], data[-64:]
    return hashlib.sha256(body).hexdigest().encode() == digest

def test_atomic_write_survives_sigkill(tmp_path):
    "Kill a writer that rewrites one file in a loop, at 12 random instants: the final name always holds a whole version."
    target, script = tmp_path/'page.json', tmp_path/'writer.py'
    script.write_text(WRITER)
    rng = random.Random(0)
    for trial in range(12):
        p = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == b'ready'
        time.sleep(rng.uniform(0.0, 0.4))
        p.send_signal(signal.SIGKILL); p.wait()
        if target.exists(): assert _complete(target), f'partial file at the final name after kill #{trial}'
    assert target.exists() and _complete(target)
    # the killed writers may leave temp files behind, never under the final name
    assert {f.name for f in tmp_path.iterdir() if not f.name.endswith('.tmp')} == {'page.json', 'writer.py'}

def test_same_book_every_spelling_one_page_id():
    "Windows, UNC, WSL, POSIX and S3 spellings of one book under their roots give one page_id."
    cases = [({'lib': r'E:\Comics'}, r'E:\Comics\Image\Saga 001.cbz'),
             ({'lib': r'e:/comics'}, r'E:\Comics\Image\Saga 001.cbz'),          # Windows ignores case
             ({'lib': '/mnt/e/Comics'}, '/mnt/e/Comics/Image/Saga 001.cbz'),
             ({'lib': r'\\nas\share\Comics'}, '//nas/share/Comics/Image/Saga 001.cbz'),
             ({'lib': '/srv/comics'}, '/srv/comics/Image/Saga 001.cbz'),
             ({'lib': 's3://bucket/comics'}, 's3://bucket/comics/Image/Saga 001.cbz'),
             ({'lib': 'gs://bucket/comics/'}, 'gs://bucket/comics/Image/Saga 001.cbz')]
    ids = {make_page_id(*locate(path, roots), 3) for roots, path in cases}
    assert ids == {'lib/Image/Saga 001/0003'}

def test_posix_paths_keep_case():
    with pytest.raises(ValueError): book_key_of('/srv/Comics/x.cbz', '/srv/comics')

def test_shards_disjoint_and_complete():
    ids = [make_page_id('lib', f'series {b % 7}/book {b}', p) for b in range(300) for p in range(5)]
    for n in (1, 2, 3, 8):
        parts = [select_shard(ids, i, n, key=book_of) for i in range(n)]
        flat = [x for part in parts for x in part]
        assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
        if n > 1: assert all(0.5 * len(ids) / n < len(part) < 1.5 * len(ids) / n for part in parts)

def test_bridge_never_maps_one_foreign_path_to_two_pages():
    man = pd.DataFrame(dict(page_id=[f'lib/{b}/{i:04d}' for b in ('A', 'B') for i in range(3)], source='lib',
                            book_key=[b for b in ('A', 'B') for _ in range(3)],
                            entry=[f'p{i}.jpg' for _ in range(2) for i in range(3)], page_index=[i for _ in range(2) for i in range(3)]))
    br = bridge_paths(['p1.jpg', r'C:\x\A\p1.jpg', 's3://b/B/p2.png', 'C/p9.jpg'], man)
    assert dict(zip(br.mapping.foreign, br.mapping.page_id)) == {r'C:\x\A\p1.jpg': 'lib/A/0001', 's3://b/B/p2.png': 'lib/B/0002'}
    assert br.ambiguous.foreign.tolist() == ['p1.jpg'] and br.ambiguous.candidates[0] == ['lib/A/0001', 'lib/B/0001']
    assert br.unmatched == ['C/p9.jpg']

def _tiny_nb(folder: Path, body: str, params: str = 'out = None\nn = 1', name: str = '50_tiny') -> Path:
    import nbformat
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params); p.metadata['tags'] = ['parameters']
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    path = folder/f'{name}.ipynb'; nbformat.write(nb, path); return path

def _comix(*args, cwd):
    exe = Path(sys.executable).with_name('comix')
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300)

def test_comix_run_command(tmp_path):
    "The installed `comix` command: unknown and secret parameters are refused, a failing notebook exits non-zero."
    nb = _tiny_nb(tmp_path, 'assert n < 5, "n too big"\nprint("n =", n)')
    r = _comix('run', str(nb), '-p', 'm', '2', cwd=tmp_path)
    assert r.returncode == 2 and "unknown parameter(s) ['m']" in r.stderr
    r = _comix('run', str(nb), '-p', 'openai_api_key', 'x', cwd=tmp_path)
    assert r.returncode == 2 and 'looks like a secret' in r.stderr
    r = _comix('run', str(nb), '-p', 'n', '9', '--out', 'o', cwd=tmp_path)
    assert r.returncode == 1 and 'AssertionError' in r.stderr and 'n too big' in r.stderr
    r = _comix('run', 'tiny', '--nbs', str(tmp_path), '-p', 'n', '2', '--out', 'o', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    logs = sorted((tmp_path/'o'/'runs'/'tiny').glob('*.ipynb'))
    assert len(logs) == 2 and any('n = 2' in l.read_text() for l in logs)
    assert _comix('nonsense', cwd=tmp_path).returncode == 2
    # a notebook that declares no `out` still runs with --out: OUT is where its run log goes
    _tiny_nb(tmp_path, 'print("k =", k)', params='k = 1', name='51_no_out')
    r = _comix('run', 'no_out', '--nbs', str(tmp_path), '-p', 'k', '3', '--out', 'o', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    logs = sorted((tmp_path/'o'/'runs'/'no_out').glob('*.ipynb'))
    assert len(logs) == 1 and 'k = 3' in logs[0].read_text()
