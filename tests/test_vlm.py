"""Integration tests of comix.vlm: the real client (AsyncOpenAI) over real HTTP against a loopback
OpenAI-compatible server on 127.0.0.1 that replays every failure kind in the chat-completions wire format."""
import asyncio, json, os, time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageDraw

from comix.paths import read_audit, reconcile
from comix.vlm import (LoopbackVLMServer, VLMClient, VLMRequestError, PAGE_SCHEMA, PROMPT_VERSION, SAMPLE_RESULT,
                       check_result, errors_path, failed_pages, run_vlm, vlm_table_path)

MODEL = 'google/gemma-3-4b-it'  # has a price in PRICES, so cost is recorded


def _page(i, size=(900, 1350)):
    "A small comic-like page: white, two bordered panels, a balloon with text"
    im = Image.new('RGB', size, 'white'); d = ImageDraw.Draw(im)
    w, h = size
    d.rectangle([20, 20, w - 20, h // 2 - 10], outline='black', width=6)
    d.rectangle([20, h // 2 + 10, w - 20, h - 20], outline='black', width=6)
    d.ellipse([60, 60, 360, 200], outline='black', width=3); d.text((110, 120), f'page {i}!', fill='black')
    return im


ALL_KINDS = ['good', 'fenced', 'chatty', 'trailing_comma', 'truncated', 'truncated_early', 'garbage', 'empty',
             '500', 'slow', 'reject_schema']
EXPECTED = {'good': ('ok', ''), 'fenced': ('ok', 'repaired'), 'chatty': ('ok', 'repaired'),
            'trailing_comma': ('ok', 'repaired'), 'truncated': ('ok', 'repaired'),
            'truncated_early': ('error', 'truncated'), 'garbage': ('error', 'no_json'), 'empty': ('error', 'empty'),
            '500': ('error', 'http_500'), 'slow': ('error', 'timeout'), 'reject_schema': ('ok', ''),
            '429>good': ('ok', '')}


@pytest.fixture
def mixed():
    script = {f'lib/book/{i:04d}': [k] for i, k in enumerate(ALL_KINDS)}
    script['lib/book/0100'] = ['429', '429', 'good']
    kinds = {pid: ('429>good' if len(ks) > 1 else ks[0]) for pid, ks in script.items()}
    pages = [(pid, _page(i)) for i, pid in enumerate(script)]
    return script, kinds, pages


def _run(out, srv, pages, **kw):
    kw = dict(timeout=1.5, max_retries=2, backoff_base=0.02, progress=False) | kw
    return run_vlm(out, MODEL, srv.base_url, pages=pages, **kw)


def test_every_reply_kind_ends_in_result_or_audit_row(tmp_path, mixed):
    script, kinds, pages = mixed
    with LoopbackVLMServer(script, retry_after=0.05, slow_seconds=10) as srv:
        audit = _run(tmp_path, srv, pages)
    assert sorted(audit.page_id) == sorted(script)  # no page lost, none twice
    got = {r.page_id: (r.status, r.reason) for r in audit.itertuples()}
    assert got == {pid: EXPECTED[k] for pid, k in kinds.items()}
    reconcile(audit, len(pages), show=False)
    for pid, (status, reason) in got.items():
        f = tmp_path / 'text' / 'vlm' / f'{pid}.json'
        assert f.exists() == (status == 'ok')
        if status == 'ok':
            doc = json.loads(f.read_text())
            assert doc['page_id'] == pid and check_result(doc['result']) == []
            prov = doc['provenance']
            assert prov['prompt_version'] == PROMPT_VERSION and prov['model'] == MODEL and prov['backend'] == 'api'
            assert prov['usage']['prompt_tokens'] > 0 and prov['cost'] > 0
            assert bool(prov['repairs']) == (reason == 'repaired')
    # the fixed-up replies carry the same content as the clean one
    good = json.loads((tmp_path / 'text/vlm/lib/book/0000.json').read_text())['result']
    assert good == SAMPLE_RESULT
    for k in ('fenced', 'chatty', 'trailing_comma'):
        pid = f'lib/book/{ALL_KINDS.index(k):04d}'
        assert json.loads((tmp_path / 'text/vlm' / f'{pid}.json').read_text())['result'] == SAMPLE_RESULT
    # truncated at 80%: repaired, fewer or partial panels, still schema-valid and marked
    trunc = json.loads((tmp_path / 'text/vlm/lib/book/0004.json').read_text())
    assert 'truncated' in trunc['provenance']['repairs'] and trunc['provenance']['finish_reason'] == 'length'
    # error log: one line per failed page with its reason (raw reply kept for parse failures)
    log = pd.read_json(errors_path(tmp_path), lines=True)
    assert dict(zip(log.page_id, log.reason)) == {p: r for p, (s, r) in got.items() if s == 'error'}
    assert log.set_index('page_id').loc['lib/book/0006', 'raw'].startswith('I am sorry')
    # the audit on disk is the returned one
    assert len(read_audit(tmp_path, 'text_vlm')) == len(pages)
    # the text table has every ok page's text items
    table = pd.read_parquet(tmp_path / 'text' / 'vlm.parquet')
    assert set(table.page_id) == {p for p, (s, _) in got.items() if s == 'ok'}
    assert set(table.kind) == {'dialogue', 'narration', 'sfx'}
    assert list(table.columns) == ['page_id', 'panel_index', 'kind', 'speaker', 'text', 'order']


def test_rerun_skips_success_and_retry_failed_redoes_only_failures(tmp_path, mixed):
    script, kinds, pages = mixed
    with LoopbackVLMServer(script, retry_after=0.05, slow_seconds=10) as srv:
        first = _run(tmp_path, srv, pages)
    failed = set(first[first.status == 'error'].page_id)
    assert failed and failed == failed_pages(tmp_path)
    # plain rerun: the succeeded pages are not requested again
    with LoopbackVLMServer(script, retry_after=0.05, slow_seconds=10) as srv:
        second = _run(tmp_path, srv, pages)
    assert {l['page_id'] for l in srv.log} == failed
    assert set(second[second.status == 'skipped'].page_id) == set(script) - failed
    assert set(second[second.status == 'skipped'].reason) == {'already_done'}
    # the server is fixed: retry_failed sends exactly the failed pages, everything ends ok
    with LoopbackVLMServer() as srv:
        third = _run(tmp_path, srv, pages, retry_failed=True)
    assert sorted(l['page_id'] for l in srv.log) == sorted(failed)
    assert set(third[third.status == 'ok'].page_id) == failed
    assert failed_pages(tmp_path) == set()
    # a last run has nothing to do and sends nothing
    with LoopbackVLMServer() as srv:
        fourth = _run(tmp_path, srv, pages, retry_failed=True)
    assert srv.log == [] and set(fourth.status) == {'skipped'} and len(fourth) == len(pages)
    assert pd.read_parquet(tmp_path / 'text' / 'vlm.parquet').page_id.nunique() == len(pages)


def test_retry_failed_leaves_never_failed_pages_alone(tmp_path):
    pages = [(f's/b/{i:04d}', _page(i, (300, 450))) for i in range(4)]
    with LoopbackVLMServer({'s/b/0001': ['garbage']}) as srv:
        _run(tmp_path, srv, pages[:2])  # pages 2, 3 never attempted
    with LoopbackVLMServer() as srv:
        audit = _run(tmp_path, srv, pages, retry_failed=True)
    got = dict(zip(audit.page_id, audit.status + ':' + audit.reason))
    assert got == {'s/b/0000': 'skipped:already_done', 's/b/0001': 'ok:', 's/b/0002': 'skipped:not_failed',
                   's/b/0003': 'skipped:not_failed'}


def test_429_waits_retry_after_then_gives_up_with_reason():
    async def go():
        with LoopbackVLMServer({'a': ['429', 'good'], 'b': ['429']}, retry_after=0.4) as srv:
            cl = VLMClient(srv.base_url, MODEL, max_retries=2, backoff_base=0.01)
            ok = await cl.complete('a', _page(0))
            with pytest.raises(VLMRequestError) as e: await cl.complete('b', _page(1))
            await cl.aclose()
        return ok, e.value, srv.log
    ok, err, log = asyncio.run(go())
    assert ok.attempts == 2 and err.reason == 'http_429' and err.attempts == 3
    ts = [l['t'] for l in log if l['page_id'] == 'a']
    assert ts[1] - ts[0] >= 0.39  # honoured Retry-After (0.4 s), not the 0.01 s backoff


def test_structured_output_steps_down_when_rejected():
    async def go():
        with LoopbackVLMServer({'p': ['reject_schema']}) as srv:
            cl = VLMClient(srv.base_url, MODEL)
            r = await cl.complete('p', _page(0)); await cl.aclose()
        return r, srv.log
    r, log = asyncio.run(go())
    assert [l['response_format'] for l in log] == ['json_schema', 'json_object'] and r.response_format == 'json_object'


def test_concurrency_limit_and_rpm(tmp_path):
    pages = [(f'c/b/{i:04d}', _page(i, (200, 300))) for i in range(12)]
    with LoopbackVLMServer(latency=0.15) as srv:
        audit = _run(tmp_path / 'a', srv, pages, concurrency=3)
    assert (audit.status == 'ok').all() and 2 <= srv.max_in_flight <= 3
    with LoopbackVLMServer() as srv:
        t0 = time.monotonic()
        _run(tmp_path / 'b', srv, pages[:5], concurrency=5, rpm=600)  # one start per 0.1 s
    ts = sorted(l['t'] - t0 for l in srv.log)  # the k-th request arrives no earlier than k * 0.1 s
    assert len(ts) == 5 and all(t >= k * 0.1 for k, t in enumerate(ts)), ts


def test_page_downscaled_and_key_from_named_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv('COMIX_TEST_VLM_KEY', 'sk-loopback-123')
    with LoopbackVLMServer() as srv:
        _run(tmp_path, srv, [('k/b/0000', _page(0, (1500, 2400)))], max_side=512, api_key_env='COMIX_TEST_VLM_KEY')
    assert srv.log[0]['image_sizes'] == [(320, 512)]
    assert srv.log[0]['authorization'] == 'Bearer sk-loopback-123'
    monkeypatch.delenv('COMIX_TEST_VLM_KEY')
    with LoopbackVLMServer() as srv, pytest.raises(KeyError, match='COMIX_TEST_VLM_KEY'):
        _run(tmp_path / 'x', srv, [('k/b/0001', _page(1))], api_key_env='COMIX_TEST_VLM_KEY')
    assert srv.log == []


def test_unreadable_page_is_audited_not_fatal(tmp_path):
    _page(2, (300, 450)).save(tmp_path / 'cut.jpg')
    (tmp_path / 'cut.jpg').write_bytes((tmp_path / 'cut.jpg').read_bytes()[:600])  # a truncated JPEG
    pages = [('u/b/0000', _page(0, (300, 450))), ('u/b/0001', str(tmp_path / 'missing.jpg')),
             ('u/b/0002', str(tmp_path / 'cut.jpg'))]
    with LoopbackVLMServer() as srv:
        audit = _run(tmp_path, srv, pages)
    assert dict(zip(audit.page_id, audit.reason)) == {'u/b/0000': '', 'u/b/0001': 'unreadable', 'u/b/0002': 'unreadable'}
    assert [l['page_id'] for l in srv.log] == ['u/b/0000']


def test_shards_split_pages_without_overlap(tmp_path):
    pages = [(f'sh/b/{i:04d}', _page(i, (200, 300))) for i in range(10)]
    with LoopbackVLMServer() as srv:
        a0 = _run(tmp_path, srv, pages, shard=0, num_shards=2)
        a1 = _run(tmp_path, srv, pages, shard=1, num_shards=2)
    assert sorted(list(a0.page_id) + list(a1.page_id)) == [p for p, _ in pages]
    assert len(read_audit(tmp_path, 'text_vlm')) == 10
    parts = [pd.read_parquet(vlm_table_path(tmp_path, s, 2)) for s in (0, 1)]
    assert set(parts[0].page_id).isdisjoint(parts[1].page_id)
    assert len(srv.log) == 10


def test_only_loopback_address():
    with LoopbackVLMServer() as srv:
        assert srv.base_url.startswith('http://127.0.0.1:')


def test_manifest_to_text_table_end_to_end(tmp_path):
    "synth library -> extract manifest -> run_vlm over PageReader pages -> text table equals the synth truth"
    pytest.importorskip('comix.extract'); pytest.importorskip('comix.synth')
    from comix.extract import run_extract
    from comix.synth import synth_library
    from comix.vlm import synth_truth_result
    truth = synth_library(tmp_path / 'lib', n_books=2, pages_per_book=3, size=(500, 750))
    res = run_extract({'synth': tmp_path / 'lib'}, tmp_path / 'out', workers=1, progress=False, show=False)
    man = res['manifest']
    by_id = {f"synth/{r.book_key}/{r.page_index:04d}": synth_truth_result(r._asdict()) for r in truth.itertuples()}
    assert set(by_id) == set(man.page_id)
    with LoopbackVLMServer(result=lambda pid: by_id[pid]) as srv:
        audit = run_vlm(tmp_path / 'out', MODEL, srv.base_url, max_side=400, progress=False)
    assert (audit.status == 'ok').all() and len(audit) == len(man)
    assert all(max(l['image_sizes'][0]) == 400 for l in srv.log)  # pages read from the CBZs, downscaled
    table = pd.read_parquet(tmp_path / 'out' / 'text' / 'vlm.parquet')
    want = sorted((pid, i, t) for pid, r in by_id.items() for i, p in enumerate(r['panels'])
                  for t in p['narration'] + [d['text'] for d in p['dialogue']])
    assert want and sorted(zip(table.page_id, table.panel_index, table.text)) == want


KILL_SCRIPT = '''
import sys
from PIL import Image
from comix.vlm import run_vlm
out, url = sys.argv[1], sys.argv[2]
pages = [(f"kill/b/{i:04d}", Image.new("RGB", (200, 300), (i, 100, 200))) for i in range(40)]
run_vlm(out, "m", url, pages=pages, concurrency=4, progress=False)
'''


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    import signal, subprocess, sys, time
    pages = [(f'kill/b/{i:04d}', Image.new('RGB', (200, 300), (i, 100, 200))) for i in range(40)]
    with LoopbackVLMServer(latency=0.2) as srv:
        proc = subprocess.Popen([sys.executable, '-c', KILL_SCRIPT, str(tmp_path), srv.base_url])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((tmp_path / 'text' / 'vlm').rglob('*.json'))) < 5:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL); proc.wait()
    done_before = {str(p.relative_to(tmp_path / 'text' / 'vlm'))[:-5] for p in (tmp_path / 'text' / 'vlm').rglob('*.json')}
    assert 5 <= len(done_before) < 40  # killed mid-run
    assert not (tmp_path / 'audit').exists()  # the audit of the killed run never appeared
    with LoopbackVLMServer() as srv:
        audit = run_vlm(tmp_path, 'm', srv.base_url, pages=pages, concurrency=4, progress=False)
    assert {l['page_id'] for l in srv.log} == {p for p, _ in pages} - done_before  # nothing done twice
    assert set(audit[audit.status == 'skipped'].page_id) == done_before and (audit.status != 'error').all()
    for f in (tmp_path / 'text' / 'vlm').rglob('*.json'):  # a kill never leaves a half-written result behind
        assert check_result(json.loads(f.read_text())['result']) == []
    table = pd.read_parquet(tmp_path / 'text' / 'vlm.parquet')
    assert table.page_id.nunique() == 40 and len(table) == 40 * 4  # SAMPLE_RESULT has 4 text items


def test_comix_text_backend_vlm_command(tmp_path):
    "`comix text --backend vlm` (comix.text.main, OCR engineer) drives run_vlm over the manifest"
    for m in ('comix.text', 'comix.extract', 'comix.synth'): pytest.importorskip(m)
    from comix.extract import run_extract
    from comix.synth import synth_library
    from comix.text import main
    synth_library(tmp_path / 'lib', n_books=1, pages_per_book=3, size=(400, 600))
    ids = sorted(run_extract({'synth': tmp_path / 'lib'}, tmp_path / 'out', workers=1, progress=False, show=False)['manifest'].page_id)
    argv = ['--out', str(tmp_path / 'out'), '--backend', 'vlm', '--model', MODEL, '--max-side', '300']
    with LoopbackVLMServer({ids[1]: ['garbage']}) as srv:
        rc = main(argv + ['--base-url', srv.base_url, '--no-progress'])
    audit = read_audit(tmp_path / 'out', 'text_vlm')
    assert rc == 1 and sorted(audit.status) == ['error', 'ok', 'ok']  # one page failed: non-zero exit
    with LoopbackVLMServer() as srv:
        rc = main(argv + ['--base-url', srv.base_url, '--retry-failed', '--no-progress'])
    assert rc == 0 and [l['page_id'] for l in srv.log] == [ids[1]] and all(max(s) == 300 for s in srv.log[0]['image_sizes'])


def test_page_ids_only_sent_to_servers_on_this_machine(monkeypatch):
    monkeypatch.setenv('COMIX_TEST_VLM_KEY', 'k')
    assert VLMClient('http://127.0.0.1:8000/v1', 'm').local and VLMClient('http://localhost:11434/v1', 'm').local
    remote = VLMClient('https://openrouter.ai/api/v1', 'm', api_key_env='COMIX_TEST_VLM_KEY')  # no request is made
    assert not remote.local
    for k in ('OPENAI_API_KEY', 'OPENROUTER_API_KEY'): monkeypatch.delenv(k, raising=False)
    with pytest.warns(UserWarning, match='no API key'):
        VLMClient('https://openrouter.ai/api/v1', 'm')
