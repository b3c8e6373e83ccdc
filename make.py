#!/usr/bin/env python3
"""The two commands a fresh clone needs, with nothing but Python 3.10+:

    python3 make.py sample   # install (once) and run the whole pipeline on the bundled sample library
    python3 make.py test     # install (once) and run every test, as CI does

Both create the project's virtual environment `.venv` with the README's install (`pip install -e ".[dev]"`) the
first time, and reuse it afterwards; it is installed again only when `settings.ini` or `setup.py` change.
`python3 make.py install` does only that step; `python3 make.py readme` writes README.md from nbs/index.ipynb (the
docs workflow's `nbdev_readme` needs Quarto).
"""
import hashlib, os, subprocess, sys, venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / '.venv'
BIN = VENV / ('Scripts' if os.name == 'nt' else 'bin')
STAMP = VENV / '.comix-install'
OFFLINE = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'PIP_DISABLE_PIP_VERSION_CHECK': '1'}

def sh(*cmd, env=None, **kw):
    "Run a command from the repository root; stop with its exit code when it fails"
    print('+', ' '.join(map(str, cmd)), flush=True)
    r = subprocess.run([str(c) for c in cmd], cwd=ROOT, env={**os.environ, **OFFLINE, **(env or {})}, **kw)
    if r.returncode: sys.exit(r.returncode)
    return r

def exe(name): return BIN / (name + ('.exe' if os.name == 'nt' else ''))

def install():
    "Create or reuse .venv; run the README's install when the project's requirements changed"
    if sys.version_info < (3, 10): sys.exit(f'comix needs Python 3.10 or newer, not {sys.version.split()[0]}')
    want = hashlib.sha256(b''.join((ROOT / f).read_bytes() for f in ('settings.ini', 'setup.py'))).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want and exe('comix').exists(): return
    if not exe('python').exists(): venv.create(VENV, with_pip=True)
    sh(exe('python'), '-m', 'pip', 'install', '-q', '-e', '.[dev]')          # the README's install
    STAMP.write_text(want)

def tree_state():
    r = subprocess.run(['git', 'status', '--porcelain'], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None

def check_exported():
    "In a git checkout: `nbdev_export` and `nbdev_clean` must leave the tree as it is"
    before = tree_state()
    if before is None: return
    sh(exe('nbdev_export')); sh(exe('nbdev_clean'))
    after = tree_state()
    if after != before:
        print('nbdev_export / nbdev_clean changed the tree: run both and commit\n' +
              '\n'.join(sorted(set(after.splitlines()) ^ set(before.splitlines()))))
        sys.exit(1)

def test():
    "Every notebook as a test, then the integration tests"
    check_exported()
    sh(exe('nbdev_test'))
    sh(exe('pytest'), 'tests', '-q')

def sample(out='sample-out'):
    "The whole pipeline on the bundled sample library"
    sh(exe('comix'), 'pipeline', '--out', out)

def readme():
    "README.md from nbs/index.ipynb: markdown cells as they are, code cells as Python blocks, doc links to notebooks"
    import json, re
    nbs = {re.sub(r'^\d+[a-z]?_', '', f.stem): f.name for f in (ROOT/'nbs').glob('*.ipynb')}
    link = lambda m: f"](nbs/{nbs[m[1]]}{m[2] or ''})" if m[1] in nbs else m[0]
    out = ['<!-- Written from nbs/index.ipynb by `python3 make.py readme`; edit the notebook, not this file. -->', '']
    for c in json.loads((ROOT/'nbs'/'index.ipynb').read_text())['cells']:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#|'): continue
        if c['cell_type'] == 'markdown': out.append(re.sub(r'\]\(([\w-]+)\.html(#[\w-]+)?\)', link, src.replace('```{mermaid}', '```mermaid')))
        else: out.append(f'```python\n{src}\n```')
        out.append('')
    (ROOT/'README.md').write_text('\n'.join(out))
    print('wrote README.md')

if __name__ == '__main__':
    what = sys.argv[1] if len(sys.argv) > 1 else 'help'
    if what not in ('install', 'test', 'sample', 'readme'): print(__doc__); sys.exit(0 if what == 'help' else 2)
    if what == 'readme': readme(); sys.exit(0)
    install()
    if what == 'test': test()
    if what == 'sample': sample(*sys.argv[2:3])
