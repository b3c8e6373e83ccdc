"""Search with known answers on a synthetic library embedded by the real (tiny) panel encoder: a panel's own text
finds it first, so does its text with OCR-like misreadings, and so does a rescaled, re-compressed crop of it; filters
exclude what they should; the command line prints the promised JSON, and `--queries` answers in order."""
import io, os, sys, json, random, subprocess, contextlib
import numpy as np, pandas as pd
import pytest
from comix.testing.search import search_library, tiny_checkpoint, degraded_crop
from comix.embed import EmbedStage
from comix.index import IndexStage
from comix.query import Searcher, main
from comix.stage import run_stage
from comix.extract import open_page


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('query'); out = tmp / 'out'
    search_library(out, tmp / 'lib', n_books=3, pages_per_book=6)
    run_stage(EmbedStage(tiny_checkpoint(tmp / 'tiny.pt'), workers=0), out, progress=False, show=False)
    run_stage(IndexStage(), out, progress=False, show=False)
    return out, Searcher(out)


def _key(df, i=0): return (df.page_id.iloc[i], int(df.panel_index.iloc[i]))


def _unique_texts(S):
    p = S.panels[S.panels.text.str.split().str.len() >= 3]
    return p[~p.text.duplicated(keep=False)]


def test_own_text_finds_the_panel_first(run):
    out, S = run
    p = _unique_texts(S)
    assert len(p) >= 40
    hits = [_key(S.search(text=r.text, top_k=1)) == (r.page_id, r.panel_index) for r in p.itertuples()]
    assert np.mean(hits) == 1.0, f'{np.mean(hits):.3f} of {len(p)} panels found first by their own text'


def _misread(text, rng):
    "OCR-like damage: about one character in twelve swapped for a look-alike"
    look = {'O': '0', 'I': '1', 'L': '1', 'S': '5', 'G': '6', 'B': '8', 'E': 'F', 'A': '4'}
    return ''.join(look.get(c, c) if c in look and rng.random() < 0.25 else c for c in text)


def test_misread_text_still_finds_the_panel(run):
    out, S = run
    rng, p = random.Random(0), _unique_texts(S)
    p = p[p.text.str.len() >= 25]
    r1 = [_key(S.search(text=_misread(r.text, rng), top_k=10)) == (r.page_id, r.panel_index) for r in p.itertuples()]
    assert np.mean(r1) >= 0.9, np.mean(r1)


def test_degraded_crop_finds_the_panel_first(run):
    out, S = run
    p = S.panels[(S.panels.w >= 60) & (S.panels.h >= 60)]
    hits = []
    for r in p.itertuples():
        q = degraded_crop(open_page(r.page_id, out), [r.x, r.y, r.w, r.h], scale=0.6, quality=40)
        hits.append(_key(S.search(image=q, top_k=1)) == (r.page_id, r.panel_index))
    assert np.mean(hits) >= 0.95, f'{np.mean(hits):.3f} of {len(p)} degraded crops found first'
    r = p.iloc[0]                                                    # the exact example of the issue
    q = degraded_crop(open_page(r.page_id, out), [r.x, r.y, r.w, r.h], scale=0.5, quality=30)
    assert (r.page_id, r.panel_index) in {_key(S.search(image=q, top_k=3), i) for i in range(3)}


def test_filters_exclude_what_they_should(run):
    out, S = run
    t = _unique_texts(S)
    cover = t[t.page_type == 'cover'].iloc[0]
    res = S.search(text=cover.text, top_k=20, where=['page_type=story'])
    assert len(res) and set(res.page_type) == {'story'} and _key(res) != (cover.page_id, cover.panel_index)
    series = sorted(set(S.panels.series))
    res = S.search(text=cover.text, top_k=50, where={'series': series[:1]})
    assert set(res.series) == set(series[:1])
    res = S.search(panel=(cover.page_id, int(cover.panel_index)), top_k=50, where=[f'series={series[-1]}'])
    assert set(res.series) == {series[-1]}
    assert S.search(text=cover.text, where=['source=elsewhere']).empty
    pages = S.search(page=cover.page_id, top_k=5, where=['page_type=cover'])
    assert pages.panel_index.eq(-1).all() and set(pages.page_type) == {'cover'} and pages.page_id.iloc[0] == cover.page_id


def test_command_line_json_and_query_files(run, tmp_path):
    out, S = run
    t = _unique_texts(S).iloc[:3]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([t.text.iloc[0], '--out', str(out), '--top-k', '4', '--json', '--where', 'page_type=story,cover']) == 0
    got = json.loads(buf.getvalue())
    assert len(got) == 4 and list(got[0]) == ['page_id', 'panel_index', 'score', 'x', 'y', 'w', 'h', 'text']
    assert (got[0]['page_id'], got[0]['panel_index']) == (t.page_id.iloc[0], t.panel_index.iloc[0])
    r = S.panels.iloc[5]
    crop = tmp_path / 'crop.jpg'
    degraded_crop(open_page(r.page_id, out), [r.x, r.y, r.w, r.h]).save(crop)
    qs = [{'text': t.text.iloc[1]}, {'image': str(crop)}, {'text': t.text.iloc[2], 'top_k': 2}]
    (tmp_path / 'q.jsonl').write_text('\n'.join(json.dumps(q) for q in qs) + '\n')
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): assert main(['--out', str(out), '--queries', str(tmp_path / 'q.jsonl'), '--top-k', '3']) == 0
    lines = [json.loads(l) for l in buf.getvalue().splitlines()]
    assert [len(l) for l in lines] == [3, 3, 2]
    assert [(l[0]['page_id'], l[0]['panel_index']) for l in lines] == [_key(pd.DataFrame([t.iloc[1]])), (r.page_id, r.panel_index),
                                                                     _key(pd.DataFrame([t.iloc[2]]))]
    assert main(['words', '--out', str(out), '--panel', 'no-colon']) == 2
    assert main(['words', '--out', str(out), '--where', 'colour=red']) == 2
