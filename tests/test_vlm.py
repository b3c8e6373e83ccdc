"""Integration tests of comix.vlm: the real client (AsyncOpenAI) over real HTTP against a loopback
OpenAI-compatible server on 127.0.0.1 that replays every failure kind in the chat-completions wire format.
Pages come from a manifest, as in a real run: tiny synthetic books extracted with `run_extract`."""
import asyncio, json, os, shutil, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageDraw

from comix.paths import ConfigError, Layout, read_audit, reconcile
from comix.stage import run_stage
from comix.extract import run_extract
from comix.synth import synth_book
from comix.vlm import VLMClient, VLMRequestError, VlmStage, PROMPT_VERSION, VLM_COLUMNS, check_result
from comix.testing.vlm import LoopbackVLMServer, SAMPLE_RESULT, synth_truth_result

MODEL = 'google/gemma-3-4b-it'  # has a price in PRICES, so cost is recorded


def _page(i, size=(900, 1350)):
    "A small comic-like page: white, two bordered panels, a balloon with text"
    im = Image.new('RGB', size, 'white'); d = ImageDraw.Draw(im)
    w, h = size
    d.rectangle([20, 20, w - 20, h // 2 - 10], outline='black', width=6)
    d.rectangle([20, h // 2 + 10, w - 20, h - 20], outline='black', width=6)
    d.ellipse([60, 60, 360, 200], outline='black', width=3); d.text((110, 120), f'page {i}!', fill='black')
    return im


def _library(tmp, books:dict, size=(300, 450), out='out'):
    "Synthetic books {name: n_pages} under tmp/lib (source `lib`), extracted into tmp/out; (out, page ids in order)"
    for k, (name, n) in enumerate(books.items()):
        synth_book(tmp / 'lib' / f'{name}.cbz', n_pages=n, seed=k, size=size, text=False, comicinfo=False)
    return _extract(tmp, out)


def _extract(tmp, out='out'):
    res = run_extract({'lib': tmp / 'lib'}, tmp / out, workers=1, progress=False, show=False)
    assert res.exit_code == 0
    return tmp / out, res.table.sort_values(['book_key', 'page_index']).page_id.tolist()


def _stage(srv, **kw):
    kw = dict(timeout=1.5, max_retries=2, backoff_base=0.02) | kw
    return VlmStage(kw.pop('model', MODEL), srv.base_url, **kw)


def _run(out, srv, run_kw=None, **kw):
    "One run of the VLM stage over `out`'s manifest against the loopback server"
    return run_stage(_stage(srv, **kw), out, progress=False, show=False, **(run_kw or {}))


ALL_KINDS = ['good', 'fenced', 'chatty', 'trailing_comma', 'truncated', 'truncated_early', 'garbage', 'empty',
             '500', 'slow', 'reject_schema']
EXPECTED = {'good': ('ok', ''), 'fenced': ('ok', 'repaired'), 'chatty': ('ok', 'repaired'),
            'trailing_comma': ('ok', 'repaired'), 'truncated': ('ok', 'repaired'),
            'truncated_early': ('error', 'truncated'), 'garbage': ('error', 'no_json'), 'empty': ('error', 'empty'),
            '500': ('error', 'http_500'), 'slow': ('error', 'timeout'), 'reject_schema': ('ok', ''),
            '429>good': ('ok', '')}


@pytest.fixture
def mixed(tmp_path):
    "One book of 12 pages: page i gets reply kind ALL_KINDS[i], the last one 429, 429, good"
    out, ids = _library(tmp_path, {'book': len(ALL_KINDS) + 1})
    script = {pid: [k] for pid, k in zip(ids, ALL_KINDS)}
    script[ids[-1]] = ['429', '429', 'good']
    kinds = {pid: ('429>good' if len(ks) > 1 else ks[0]) for pid, ks in script.items()}
    return out, script, kinds


def test_every_reply_kind_ends_in_result_or_audit_row(mixed):
    out, script, kinds = mixed
    pid = {k: p for p, k in kinds.items()}
    with LoopbackVLMServer(script, retry_after=0.05, slow_seconds=10) as srv:
        res = _run(out, srv)
    audit = res.audit
    assert sorted(audit.page_id) == sorted(script)  # no page lost, none twice
    got = {r.page_id: (r.status, r.reason) for r in audit.itertuples()}
    assert got == {p: EXPECTED[k] for p, k in kinds.items()}
    reconcile(audit, len(script), show=False)
    assert res.exit_code == 3 and res.counts['error'] == sum(s == 'error' for s, _ in got.values())
    for p, (status, reason) in got.items():
        f = Path(Layout(out).text_json('vlm', p))
        assert f.exists() == (status == 'ok')
        if status == 'ok':
            doc = json.loads(f.read_text())
            assert doc['page_id'] == p and check_result(doc['result']) == []
            prov = doc['provenance']
            assert prov['prompt_version'] == PROMPT_VERSION and prov['model'] == MODEL and prov['backend'] == 'api'
            assert prov['usage']['prompt_tokens'] > 0 and prov['cost'] > 0
            assert bool(prov['repairs']) == (reason == 'repaired')
    doc = lambda k: json.loads(Path(Layout(out).text_json('vlm', pid[k])).read_text())
    # the fixed-up replies carry the same content as the clean one
    assert doc('good')['result'] == SAMPLE_RESULT
    for k in ('fenced', 'chatty', 'trailing_comma'): assert doc(k)['result'] == SAMPLE_RESULT, k
    # truncated at 80%: repaired, fewer or partial panels, still schema-valid and marked
    trunc = doc('truncated')
    assert 'truncated' in trunc['provenance']['repairs'] and trunc['provenance']['finish_reason'] == 'length'
    # no error log file: the audit says why each page failed, its detail keeps the start of the raw reply
    assert not list(Path(out).rglob('*.jsonl'))
    errors = audit[audit.status == 'error'].set_index('page_id')
    assert (errors.detail.str.len() > 0).all()
    assert 'raw: I am sorry' in errors.detail[pid['garbage']]
    # the audit on disk holds the same results
    disk = read_audit(out, 'text-vlm')
    reconcile(disk, len(script), show=False)
    assert dict(zip(disk.page_id, zip(disk.status, disk.reason))) == got
    # the text table has every ok page's text items
    table = pd.read_parquet(Layout(out).text_table('vlm'))
    assert set(table.page_id) == {p for p, (s, _) in got.items() if s == 'ok'}
    assert set(table.kind) == {'dialogue', 'narration', 'sfx'}
    assert list(table.columns) == ['page_id', 'panel_index', 'kind', 'speaker', 'text', 'order'] == VLM_COLUMNS
    pd.testing.assert_frame_equal(table, res.table, check_dtype=False)


def test_rerun_skips_success_and_retry_errors_redoes_only_failures(mixed):
    out, script, kinds = mixed
    with LoopbackVLMServer(script, retry_after=0.05, slow_seconds=10) as srv:
        first = _run(out, srv)
    failed = set(first.audit[first.audit.status == 'error'].page_id)
    state = read_audit(out, 'text-vlm')
    assert failed and failed == set(state[state.status == 'error'].page_id)
    # plain rerun: nothing is sent; done pages are already done, failed pages keep their error (and exit 3)
    with LoopbackVLMServer(script, retry_after=0.05, slow_seconds=10) as srv:
        second = _run(out, srv)
    assert srv.log == [] and second.counts['processed'] == 0 and second.exit_code == 3
    assert set(second.audit[second.audit.status == 'skipped'].page_id) == set(script) - failed
    assert set(second.audit[second.audit.status == 'skipped'].reason) == {'already_done'}
    err, first_err = (a[a.status == 'error'].set_index('page_id').reason.sort_index() for a in (second.audit, first.audit))
    pd.testing.assert_series_equal(err, first_err)
    # the server is fixed: retry_errors sends exactly the failed pages, everything ends ok
    with LoopbackVLMServer() as srv:
        third = _run(out, srv, dict(retry_errors=True))
    assert sorted(l['page_id'] for l in srv.log) == sorted(failed)
    assert set(third.audit[third.audit.status == 'ok'].page_id) == failed and third.exit_code == 0
    assert (read_audit(out, 'text-vlm').status != 'error').all()
    # a last run has nothing to do and sends nothing
    with LoopbackVLMServer() as srv:
        fourth = _run(out, srv, dict(retry_errors=True))
    assert srv.log == [] and set(fourth.audit.status) == {'skipped'} and len(fourth.audit) == len(script)
    assert pd.read_parquet(Layout(out).text_table('vlm')).page_id.nunique() == len(script)


def test_retry_errors_leaves_done_pages_alone(tmp_path):
    out, ids = _library(tmp_path, {'b': 4})
    with LoopbackVLMServer({ids[1]: ['garbage']}) as srv:
        first = _run(out, srv, dict(limit=2))        # pages 2, 3 never attempted
    assert dict(zip(first.audit.page_id, first.audit.status + ':' + first.audit.reason)) == {
        ids[0]: 'ok:', ids[1]: 'error:no_json', ids[2]: 'skipped:over_limit', ids[3]: 'skipped:over_limit'}
    with LoopbackVLMServer() as srv:
        res = _run(out, srv, dict(retry_errors=True))
    got = dict(zip(res.audit.page_id, res.audit.status + ':' + res.audit.reason))
    assert got == {ids[0]: 'skipped:already_done', ids[1]: 'ok:', ids[2]: 'ok:', ids[3]: 'ok:'}
    assert sorted(l['page_id'] for l in srv.log) == ids[1:]      # the page done before is not sent again


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
    out, ids = _library(tmp_path, {'b': 12}, size=(200, 300))
    with LoopbackVLMServer(latency=0.15) as srv:
        res = _run(out, srv, concurrency=3)
    assert (res.audit.status == 'ok').all() and 2 <= srv.max_in_flight <= 3
    out_b, _ = _extract(tmp_path, 'out_b')
    with LoopbackVLMServer() as srv:
        t0 = time.monotonic()
        _run(out_b, srv, dict(limit=5), concurrency=5, rpm=600)  # one start per 0.1 s
    ts = sorted(l['t'] - t0 for l in srv.log)  # the k-th request arrives no earlier than k * 0.1 s
    assert len(ts) == 5 and all(t >= k * 0.1 for k, t in enumerate(ts)), ts


def test_page_downscaled_and_key_from_named_env_var(tmp_path, monkeypatch):
    out, ids = _library(tmp_path, {'k': 1}, size=(1500, 2400))
    monkeypatch.setenv('COMIX_TEST_VLM_KEY', 'sk-loopback-123')
    with LoopbackVLMServer() as srv:
        _run(out, srv, max_side=512, api_key_env='COMIX_TEST_VLM_KEY')
    assert [l['page_id'] for l in srv.log] == ids
    assert srv.log[0]['image_sizes'] == [(320, 512)]
    assert srv.log[0]['authorization'] == 'Bearer sk-loopback-123'
    # a named variable that is not set: a usage error before any page is read or sent
    monkeypatch.delenv('COMIX_TEST_VLM_KEY')
    with LoopbackVLMServer() as srv, pytest.raises(ConfigError, match='COMIX_TEST_VLM_KEY'):
        _run(out, srv, dict(redo=True), api_key_env='COMIX_TEST_VLM_KEY')
    assert srv.log == []
    with pytest.raises(ConfigError, match='base-url'): VlmStage(MODEL)


def test_unreadable_page_is_audited_not_fatal(tmp_path):
    "Pages whose image is gone or cut short after extraction: an `unreadable_page` error each, the run goes on"
    lib = tmp_path / 'lib' / 'u'; lib.mkdir(parents=True)
    for i in range(3): _page(i, (300, 450)).save(lib / f'p{i + 1}.jpg')
    out, ids = _extract(tmp_path)
    assert len(ids) == 3
    (lib / 'p2.jpg').unlink()                                          # gone
    (lib / 'p3.jpg').write_bytes((lib / 'p3.jpg').read_bytes()[:600])  # a truncated JPEG
    with LoopbackVLMServer() as srv:
        res = _run(out, srv)
    assert dict(zip(res.audit.page_id, res.audit.reason)) == {ids[0]: '', ids[1]: 'unreadable_page', ids[2]: 'unreadable_page'}
    assert res.exit_code == 3 and [l['page_id'] for l in srv.log] == [ids[0]]
    assert set(res.table.page_id) == {ids[0]}


def test_shards_split_pages_without_overlap(tmp_path):
    "Three shards on one OUT: disjoint pages, one audit, one table equal to an unsharded run's"
    books = {f'b{i}': 2 for i in range(6)}
    one, ids = _library(tmp_path, books, size=(200, 300), out='one')
    sh, _ = _extract(tmp_path, 'sh')
    with LoopbackVLMServer() as srv:
        whole = _run(one, srv)
        parts = [_run(sh, srv, dict(shard=s, num_shards=3)) for s in range(3)]
    mine = [set(p.audit.page_id) for p in parts]
    assert sum(map(len, mine)) == len(set().union(*mine)) == len(ids) and sum(1 for m in mine if m) >= 2
    assert len(srv.log) == 2 * len(ids) and sorted(l['page_id'] for l in srv.log) == sorted(ids * 2)
    reconcile(read_audit(sh, 'text-vlm'), len(ids), show=False)
    assert not list(Path(Layout(sh).text_table('vlm')).parent.glob('vlm.parts/*.parquet'))
    pd.testing.assert_frame_equal(pd.read_parquet(Layout(sh).text_table('vlm')), pd.read_parquet(Layout(one).text_table('vlm')))
    pd.testing.assert_frame_equal(parts[-1].table, whole.table)


def test_only_loopback_address():
    with LoopbackVLMServer() as srv:
        assert srv.base_url.startswith('http://127.0.0.1:')


def test_manifest_to_text_table_end_to_end(tmp_path):
    "synth library -> extract manifest -> VLM stage over the containers' pages -> text table equals the synth truth"
    from comix.synth import synth_library
    truth = synth_library(tmp_path / 'lib', n_books=2, pages_per_book=3, size=(500, 750))
    res = run_extract({'synth': tmp_path / 'lib'}, tmp_path / 'out', workers=1, progress=False, show=False)
    man = res.table
    by_id = {f"synth/{r.book_key}/{r.page_index:04d}": synth_truth_result(r._asdict()) for r in truth.itertuples()}
    assert set(by_id) == set(man.page_id)
    with LoopbackVLMServer(result=lambda pid: by_id[pid]) as srv:
        vlm = _run(tmp_path / 'out', srv, max_side=400)
    assert (vlm.audit.status == 'ok').all() and len(vlm.audit) == len(man) and vlm.exit_code == 0
    assert all(max(l['image_sizes'][0]) == 400 for l in srv.log)  # pages read from the CBZs, downscaled
    table = pd.read_parquet(Layout(tmp_path / 'out').text_table('vlm'))
    want = sorted((pid, i, t) for pid, r in by_id.items() for i, p in enumerate(r['panels'])
                  for t in p['narration'] + [d['text'] for d in p['dialogue']])
    assert want and sorted(zip(table.page_id, table.panel_index, table.text)) == want


KILL_SCRIPT = '''
import sys
from comix.stage import run_stage
from comix.vlm import VlmStage
out, url = sys.argv[1], sys.argv[2]
run_stage(VlmStage("m", url, concurrency=4), out, progress=False, show=False)
'''


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    import signal
    out, ids = _library(tmp_path, {'kill': 40}, size=(200, 300))
    docs = Path(Layout(out).text_dir('vlm'))
    with LoopbackVLMServer(latency=0.2) as srv:
        proc = subprocess.Popen([sys.executable, '-c', KILL_SCRIPT, str(out), srv.base_url])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(docs.rglob('*.json'))) < 5:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL); proc.wait()
    done_before = {str(p.relative_to(docs))[:-5] for p in docs.rglob('*.json')}
    assert 5 <= len(done_before) < 40  # killed mid-run
    assert not Path(Layout(out).audit('text-vlm')).exists()  # the killed run never merged
    with LoopbackVLMServer() as srv:
        res = run_stage(VlmStage('m', srv.base_url, concurrency=4), out, progress=False, show=False)
    sent = [l['page_id'] for l in srv.log]
    assert len(sent) == len(set(sent)) and set(sent) >= set(ids) - done_before   # every page not done is sent, once
    assert res.exit_code == 0 and (res.audit.status == 'ok').all() and len(res.audit) == 40
    for f in docs.rglob('*.json'):  # a kill never leaves a half-written result behind
        assert check_result(json.loads(f.read_text())['result']) == []
    table = pd.read_parquet(Layout(out).text_table('vlm'))
    assert table.page_id.nunique() == 40 and len(table) == 40 * 4  # SAMPLE_RESULT has 4 text items
    assert not table.duplicated().any()


def test_page_documents_of_a_killed_run_are_not_requested_again(tmp_path):
    "A run killed after its page documents were written but before its part was committed: the rerun sends nothing"
    out, ids = _library(tmp_path, {'b': 3}, size=(200, 300))
    with LoopbackVLMServer() as srv: _run(out, srv)
    for p in (Layout(out).audit('text-vlm'), Layout(out).text_table('vlm')): os.remove(p)  # as if killed before the commit
    with LoopbackVLMServer() as srv: res = _run(out, srv)
    assert srv.log == [] and (res.audit.status != 'error').all()


def test_comix_text_backend_vlm_command(tmp_path):
    "`comix text --backend vlm` (comix.text.main) runs the VLM stage over the manifest"
    from comix.synth import synth_library
    from comix.text import main
    synth_library(tmp_path / 'lib', n_books=1, pages_per_book=3, size=(400, 600))
    ids = sorted(run_extract({'synth': tmp_path / 'lib'}, tmp_path / 'out', workers=1, progress=False, show=False).table.page_id)
    argv = ['--out', str(tmp_path / 'out'), '--backend', 'vlm', '--model', MODEL, '--max-side', '300']
    with LoopbackVLMServer({ids[1]: ['garbage']}) as srv:
        rc = main(argv + ['--base-url', srv.base_url, '--no-progress'])
    audit = read_audit(tmp_path / 'out', 'text-vlm')
    assert rc == 3 and sorted(audit.status) == ['error', 'ok', 'ok']  # one page failed: exit 3, the audit names it
    assert audit.set_index('page_id').reason[ids[1]] == 'no_json'
    with LoopbackVLMServer() as srv:
        rc = main(argv + ['--base-url', srv.base_url, '--retry-errors', '--no-progress'])
    assert rc == 0 and [l['page_id'] for l in srv.log] == [ids[1]] and all(max(s) == 300 for s in srv.log[0]['image_sizes'])
    # a missing input is a usage error
    assert main(['--out', str(tmp_path / 'nothing'), '--backend', 'vlm', '--base-url', 'http://127.0.0.1:9/v1']) == 2


def test_page_ids_only_sent_to_servers_on_this_machine(monkeypatch):
    monkeypatch.setenv('COMIX_TEST_VLM_KEY', 'k')
    assert VLMClient('http://127.0.0.1:8000/v1', 'm').local and VLMClient('http://localhost:11434/v1', 'm').local
    remote = VLMClient('https://openrouter.ai/api/v1', 'm', api_key_env='COMIX_TEST_VLM_KEY')  # no request is made
    assert not remote.local
    for k in ('OPENAI_API_KEY', 'OPENROUTER_API_KEY'): monkeypatch.delenv(k, raising=False)
    with pytest.warns(UserWarning, match='no API key'):
        VLMClient('https://openrouter.ai/api/v1', 'm')


def test_import_vlm_does_not_load_test_scaffolding():
    "The loopback server lives in comix.testing.vlm: `import comix.vlm` loads no http.server"
    code = "import comix.vlm, sys; print('http.server' in sys.modules, 'comix.testing.vlm' in sys.modules)"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ['False', 'False'], r.stderr
    import comix.vlm
    assert not hasattr(comix.vlm, 'LoopbackVLMServer') and not hasattr(comix.vlm, 'run_vlm')
