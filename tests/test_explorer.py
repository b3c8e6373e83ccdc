"""The explorer in a real browser: JupyterLab served on 127.0.0.1, headless Debian Chromium driven by Playwright.

The test opens a notebook that builds `Explorer(OUT)`, runs its cell, types a query, checks the result grid and
the page view of a clicked result, and takes a screenshot (set COMIX_EXPLORER_SCREENSHOT=PATH to keep it).
Needs `/usr/bin/chromium` (Debian's `chromium` package) and the `playwright` pip package; no browser is downloaded."""
import os, sys, json, time, shutil, socket, secrets, subprocess, urllib.request
from pathlib import Path
import pytest

CHROMIUM = '/usr/bin/chromium'
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--disable-dev-shm-usage']


@pytest.fixture(scope='module')
def indexed_run(tmp_path_factory):
    "A small synthetic library, embedded with a tiny encoder and indexed"
    from comix.testing.search import search_library, tiny_checkpoint
    from comix.embed import EmbedStage
    from comix.index import IndexStage
    from comix.query import Searcher
    from comix.stage import run_stage
    tmp = tmp_path_factory.mktemp('explorer'); out = tmp / 'out'
    search_library(out, tmp / 'lib', n_books=2, pages_per_book=3)
    run_stage(EmbedStage(tiny_checkpoint(tmp / 'tiny.pt'), workers=0), out, progress=False, show=False)
    run_stage(IndexStage(), out, progress=False, show=False)
    p = Searcher(out).panels
    target = p[p.text.str.len() > 20].iloc[0]
    return out, target


def _free_port()->int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _notebook(path:Path, out:Path):
    src = f"from comix.explorer import Explorer\nex = Explorer({str(out)!r}, top_k=6, thumb=110)\nex"
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'id': 'explore', 'metadata': {}, 'outputs': [], 'source': src}],
          'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))


def _start_lab(root:Path, port:int, token:str)->subprocess.Popen:
    "JupyterLab on 127.0.0.1:port with its config, runtime and settings inside `root` (no news, no update checks)"
    cfg = root / 'jupyter-config'; (cfg / 'labconfig').mkdir(parents=True)
    (cfg / 'labconfig' / 'page_config.json').write_text(json.dumps(
        {'disabledExtensions': {'@jupyterlab/apputils-extension:announcements': True}}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(cfg), JUPYTER_RUNTIME_DIR=str(root / 'runtime'),
               JUPYTERLAB_SETTINGS_DIR=str(root / 'settings'), JUPYTERLAB_WORKSPACES_DIR=str(root / 'workspaces'),
               HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}',
           '--allow-root', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate', '--LabApp.news_url=',
           '--LabApp.extension_manager=readonly']
    lab = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(root / 'lab.log', 'w'))
    for _ in range(240):
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{port}/api/status?token={token}', timeout=2); return lab
        except Exception:
            if lab.poll() is not None: break
            time.sleep(0.25)
    lab.kill(); raise RuntimeError('JupyterLab did not start:\n' + (root / 'lab.log').read_text()[-3000:])


def _kernel_idle(port:int, token:str, timeout:float=120)->bool:
    "Wait until the notebook's kernel exists and reports idle (the REST API, not the page's indicator)"
    end = time.time() + timeout
    while time.time() < end:
        try:
            ks = json.loads(urllib.request.urlopen(f'http://127.0.0.1:{port}/api/kernels?token={token}', timeout=5).read())
            if ks and all(k.get('execution_state') == 'idle' for k in ks): return True
        except Exception: pass
        time.sleep(0.5)
    return False


def _run_explorer_cell(page, root:Path, port:int, token:str, tries:int=3):
    """Run the notebook's one cell until the explorer's query box shows (Shift+Enter, again if a keypress was lost
    while the page was still settling); a cell that fails, or never renders, fails the test with what it showed"""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    box, outputs = page.locator('.comix-query input'), page.locator('.jp-OutputArea-output')
    for attempt in range(tries):
        assert _kernel_idle(port, token), 'the kernel never became idle:\n' + (root / 'lab.log').read_text()[-3000:]
        page.locator('.jp-Cell .cm-content').first.click(timeout=90_000)
        page.keyboard.press('Shift+Enter')
        try:
            box.wait_for(timeout=90_000 if attempt == 0 else 60_000); return box
        except PlaywrightTimeout:
            shown = ' | '.join(outputs.all_inner_texts())
            if 'Error' in shown or 'Traceback' in shown: raise AssertionError(f'the explorer cell failed: {shown[-3000:]}')
    raise AssertionError(f'the explorer never rendered after {tries} runs; outputs: {" | ".join(outputs.all_inner_texts())[-2000:]!r}; '
                         'lab log:\n' + (root / 'lab.log').read_text()[-3000:])


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f'{CHROMIUM} not installed (apt-get install -y chromium)')
def test_explorer_in_jupyterlab(indexed_run, tmp_path):
    from playwright.sync_api import sync_playwright, expect
    out, target = indexed_run
    root = tmp_path / 'lab'; root.mkdir(); _notebook(root / 'explore.ipynb', out)
    port, token = _free_port(), secrets.token_hex(16)
    lab = _start_lab(root, port, token)
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(str(tmp_path / 'chromium'), executable_path=CHROMIUM, headless=True,
                                                       args=FLAGS, viewport={'width': 1280, 'height': 1000})
            page = ctx.new_page()
            page.goto(f'http://127.0.0.1:{port}/lab/tree/explore.ipynb?token={token}')
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=90_000)
            box = _run_explorer_cell(page, root, port, token)
            box.fill(target.text); box.press('Enter')
            cards = page.locator('.comix-result')
            expect(cards).to_have_count(6, timeout=60_000)
            expect(page.locator('.comix-status')).to_contain_text('6 results')
            first = cards.first.locator('button')
            expect(first).to_contain_text(f'#1 ')
            expect(first).to_contain_text(f'{target.page_id[-4:]}:{int(target.panel_index)}')
            detail = page.locator('.comix-detail')
            expect(detail).to_contain_text(target.page_id)                 # the first result is shown at once
            expect(detail).to_contain_text(target.text[:30])
            third = cards.nth(2).locator('button')
            tip = third.get_attribute('title')                             # "<page_id> panel <i>, score <s>"
            third.click()
            expect(detail).to_contain_text(tip.split(' panel ')[0])
            expect(page.locator('img.comix-page')).to_be_visible()
            shot = tmp_path / 'explorer.png'
            page.screenshot(path=str(shot), full_page=False)
            ctx.close()
        assert shot.stat().st_size > 10_000
        if os.environ.get('COMIX_EXPLORER_SCREENSHOT'):
            from PIL import Image
            im = Image.open(shot).convert('RGB'); im.thumbnail((800, 800))          # small: it goes into the docs
            im.quantize(colors=128).save(os.environ['COMIX_EXPLORER_SCREENSHOT'], optimize=True)
    finally:
        lab.terminate()
        try: lab.wait(10)
        except subprocess.TimeoutExpired: lab.kill()
