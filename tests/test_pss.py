"comix pss: label readers on real labels, the stage (resume, shards, audit, fingerprints, kill), the CLI, training, the shipped model."
import json, shutil, sys, zipfile
from pathlib import Path
import numpy as np, pandas as pd, pytest

from comix.paths import Layout, read_audit, book_of
from comix.pss import PssStage, run_pss, story_pages, read_predictions, main, COLUMNS
from comix.pss_labels import (read_cosmo, cosmo_segments, comicinfo_page_types, COSMO_CLASSES, PAGE_CLASSES, to_cosmo,
                              page_metrics, run_entries, open_runs, segments)
from comix.pss_model import PssConfig, PssModel, save_pss, load_pss, default_weights
from comix.synth import synth_pss_book, PSS_CLASSES


# ---------------------------------------------------------------- label readers on real labels

def test_cosmo_reader_on_431_books(real_data):
    "Pages per class of CoSMo's 431 books equal the published totals; per-page labels cover every segment page once"
    cos = read_cosmo(real_data/'cosmo-pss-labels')
    assert len(cos) == 431 and cos.split.value_counts().to_dict() == {'train': 301, 'test': 87, 'val': 43}
    seg = pd.concat([cosmo_segments(r) for r in cos.record])
    assert seg.groupby('category').n_pages.sum().to_dict() == {'stories': 17500, 'advertisements': 1829, 'textstories': 843, 'covers': 487}
    for rec, labels in zip(cos.record, cos.labels):
        covered = {p for r in cosmo_segments(rec).itertuples() for p in range(r.start, r.end + 1)}
        assert {i for i, l in enumerate(labels) if l is not None} == covered
        starts = {r.start for r in cosmo_segments(rec).itertuples() if r.cls == 'story' and 'continue' not in r.title and r.end >= r.start}
        later = {p for r in cosmo_segments(rec).itertuples() if r.cls != 'story' for p in range(r.start, r.end + 1)}
        assert {i for i, l in enumerate(labels) if l == 'first-page'} == starts - later  # a later category wins overlaps
    aw = json.loads((real_data/'atomic-war-cosmo'/'labels.json').read_text())
    by_hash = dict(zip(cos.hash, cos.labels))
    for b in aw.values(): assert by_hash[b['cosmo_record']['hash_code']] == b['page_types']  # the reader agrees with the released labels


def test_story_runs_open_on_a_first_page_after_covers_and_text_pages(real_data):
    "The counts behind `open_runs`: in CoSMo's books a run after a cover / text story / the book's start opens on a first page >= 98%"
    books = read_cosmo(real_data/'cosmo-pss-labels').labels.tolist()
    e = run_entries(books)
    assert e.loc[['cover', 'textstory', 'start'], 'share'].min() >= 0.98 and e.loc['advertisement', 'share'] < 0.9
    assert int(e[['first-page', 'story']].to_numpy().sum()) == sum(1 for b in books for i, l in enumerate(b)
                                                                     if l in ('story', 'first-page') and (i == 0 or b[i-1] not in ('story', 'first-page')))
    fixed = [open_runs(b)[0] for b in books]  # on the true labels: only the few continuations after a cover / text story change
    changed = sum(x != y for b, f in zip(books, fixed) for x, y in zip(b, f))
    assert changed == e.loc[['cover', 'textstory', 'start'], 'story'].sum() == 7
    assert all(segments(f) == segments(b) for b, f in zip(books, fixed))


def test_comicinfo_reader_on_comicbox_archives(real_data):
    "ComicInfo page types inside the comicbox archives (zip, rar, 7z, tar) read as cover + 4 story pages"
    from comix.readers import open_book
    root, seen = real_data/'comicbox-captain-science', 0
    for p in sorted(root.glob('Captain Science*')):
        if p.is_dir() or 'nothing' in p.name or 'multi' in p.name: continue
        with open_book(p) as b:
            ci = [m for m in b.members if m.name.lower().rsplit('/', 1)[-1] == 'comicinfo.xml']
            if not ci: continue
            top = min(ci, key=lambda m: m.name.count('/'))
            assert comicinfo_page_types(b.read(top), 5) == ['cover'] + ['story']*4, p.name
            seen += 1
    assert seen >= 4
    assert comicinfo_page_types(root/'Captain Science 001'/'comicinfo.xml') == ['cover'] + ['story']*4


# ---------------------------------------------------------------- the stage

@pytest.fixture(scope='module')
def library(tmp_path_factory):
    "Three small synthetic books (one with ComicInfo page types), extracted"
    from comix.extract import run_extract
    d = tmp_path_factory.mktemp('pss'); root = d/'lib'
    truths = {}
    for k, (era, ci) in enumerate([('golden', True), ('modern', False), ('golden', False)]):
        bt = synth_pss_book(root/f'Book {k}.cbz', seed=k, era=era, n_pages=9, size=(240, 360), comicinfo=ci)
        truths[f'syn/Book {k}'] = [p['pss_class'] for p in bt['pages']]
    out = d/'out'; run_extract({'syn': str(root)}, out, workers=1, progress=False, show=False)
    tiny = d/'tiny.pt'; save_pss(PssModel(PssConfig.tiny()), tiny)
    return dict(root=root, out=out, tiny=str(tiny), truths=truths, dir=d)

def _fresh(lib, name):
    o = lib['dir']/name
    if o.exists(): shutil.rmtree(o)
    shutil.copytree(lib['out']/'manifest', o/'manifest'); shutil.copy(Layout(lib['out']).config, Layout(o).config)
    return o

def test_stage_outputs_resume_shards(library):
    "One row per page in the DESIGN columns; a limited run resumed equals a clean run; shards split the books"
    clean = _fresh(library, 'clean'); res = run_pss(clean, weights=library['tiny'], progress=False, show=False)
    man = pd.read_parquet(Layout(clean).manifest)
    t = read_predictions(clean)
    assert res.exit_code == 0 and list(t.columns) == COLUMNS and sorted(t.page_id) == sorted(man.page_id)
    assert np.allclose(t[[c for c in COLUMNS if c.startswith('p_')]].sum(axis=1), 1, atol=1e-4)
    assert set(t.cosmo_type) <= set(COSMO_CLASSES) and all(to_cosmo([a])[0] == b for a, b in zip(t.page_type, t.cosmo_type))
    assert t.model.str.startswith('tiny.pt@').all()
    res_dir = _fresh(library, 'resumed')
    assert run_pss(res_dir, weights=library['tiny'], limit=1, progress=False, show=False).counts['skipped'] == 2  # over_limit
    run_pss(res_dir, weights=library['tiny'], progress=False, show=False)
    pd.testing.assert_frame_equal(read_predictions(res_dir), t)
    again = run_pss(res_dir, weights=library['tiny'], progress=False, show=False)
    assert again.counts['processed'] == 0 and set(again.audit.reason) == {'already_done'} and again.exit_code == 0
    sh = _fresh(library, 'sharded')
    for i in (0, 1): run_pss(sh, weights=library['tiny'], shard=i, num_shards=2, progress=False, show=False)
    pd.testing.assert_frame_equal(read_predictions(sh), t)
    assert read_audit(sh, 'pss').page_id.tolist().count('syn/Book 0') == 1

def test_new_text_or_weights_recompute_only_what_changed(library):
    "A book whose OCR text arrives is predicted again; other books are not; new weights redo every book"
    o = _fresh(library, 'fingerprints'); run_pss(o, weights=library['tiny'], progress=False, show=False)
    man = pd.read_parquet(Layout(o).manifest); pid = man[man.book_key == 'Book 1'].page_id.iloc[0]
    Path(Layout(o).text_table('ocr')).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(dict(page_id=[pid], line_index=[0], text=['SEND NO MONEY'], score=[0.9], x=[5], y=[5], w=[80], h=[12], polygon=[None],
                      panel_index=[None], balloon_index=[None], order=[0])).to_parquet(Layout(o).text_table('ocr'))
    r = run_pss(o, weights=library['tiny'], progress=False, show=False, embed=False)
    assert r.counts['processed'] == 3  # embed=False is another option: every book again
    r = run_pss(o, weights=library['tiny'], progress=False, show=False, embed=False)
    assert r.counts['processed'] == 0
    pd.DataFrame(dict(page_id=[pid, pid], line_index=[0, 1], text=['SEND NO MONEY', 'ORDER NOW'], score=[0.9]*2, x=[5, 5], y=[5, 30],
                      w=[80, 60], h=[12, 12], polygon=[None]*2, panel_index=[None]*2, balloon_index=[None]*2,
                      order=[0, 1])).to_parquet(Layout(o).text_table('ocr'))
    r = run_pss(o, weights=library['tiny'], progress=False, show=False, embed=False)
    assert r.counts['processed'] == 1 and 'syn/Book 1' in set(r.audit[r.audit.status == 'ok'].page_id)

def test_unreadable_page_is_audited(library):
    "A page that cannot be decoded: a page-level error row, the book still predicted, counts reconcile"
    o = _fresh(library, 'broken')
    man = pd.read_parquet(Layout(o).manifest); man.loc[0, 'entry'] = 'missing.jpg'; man.to_parquet(Layout(o).manifest)
    r = run_pss(o, weights=library['tiny'], progress=False, show=False)
    a = read_audit(o, 'pss')
    assert r.exit_code == 0 and set(a.status[a.page_id.isin({book_of(p) for p in man.page_id})]) == {'ok'}
    assert len(read_predictions(o)) == len(man)
    st = r.state
    bad = st[(st.level == 'page')]
    assert bad.page_id.tolist() == [man.page_id[0]] and bad.reason.tolist() == ['unreadable_page']

def test_cli_story_pages_and_report(library):
    "comix pss --out OUT --weights W; story_pages; the report section; exit 2 without a manifest"
    o = _fresh(library, 'cli')
    with pytest.raises(FileNotFoundError): story_pages(o)
    assert main(['--out', str(o), '--weights', library['tiny'], '--no-progress']) == 0
    t = read_predictions(o); sp = story_pages(o)
    assert set(sp) == set(t.page_id[t.cosmo_type.isin(['story', 'first-page'])])
    from comix.stage import Context
    sec = PssStage(library['tiny']).report(Context(o))
    assert 'pages of 3 books' in sec.html and len(sec.images) == 2  # sequences, and the confusion against ComicInfo (Book 0)
    assert main(['--out', str(library['dir']/'nothing'), '--no-progress']) == 2

def test_train_cli(library):
    "comix pss --train: labelled books of OUT (JSON labels, no synthetic pool) -> weights saved, predictions written"
    o = _fresh(library, 'train')
    labels = library['dir']/'labels.json'; labels.write_text(json.dumps({k.split('/', 1)[1]: v for k, v in library['truths'].items()}))
    assert main(['--out', str(o), '--train', '--labels', str(labels), '--synthetic', '0', '--steps', '20', '--no-progress']) == 0
    m = load_pss(Layout(o).pss.replace('predictions.parquet', 'model.pt'))
    assert m.info['steps'] == 20 and sorted(m.info['real_books']) == ['Book 0', 'Book 1', 'Book 2']
    assert read_predictions(o).model.str.startswith('model.pt@').all()
    e = Path(o)/'ens.pt'
    assert main(['--out', str(o), '--train', '--labels', str(labels), '--synthetic', '0', '--steps', '10', '--ensemble', '2',
                 '--save', str(e), '--no-progress']) == 0
    m2 = load_pss(e)
    assert type(m2).__name__ == 'PssEnsemble' and m2.info['seeds'] == [0, 1] and len(m2.members) == 2

@pytest.mark.slow
def test_sigkill_then_finish_equals_clean_run(library):
    "comix pss killed at random instants (SIGKILL), then run to the end: the same table as one clean run"
    from comix.testing.faults import kill_and_finish
    clean = _fresh(library, 'clean2'); run_pss(clean, weights=library['tiny'], progress=False, show=False)
    o = _fresh(library, 'killed')
    rep = kill_and_finish([sys.executable, '-c', 'import sys; from comix.cli import main; sys.exit(main(sys.argv[1:]))', 'pss', '--out', str(o), '--weights', library['tiny'], '--no-progress'], kills=2, seed=1,
                          min_delay=4, max_delay=12)
    assert rep.final_rc == 0
    pd.testing.assert_frame_equal(read_predictions(o), read_predictions(clean))


# ---------------------------------------------------------------- the shipped model

def test_shipped_model_on_synthetic_books(library):
    "The default weights load (weights_only) and read synthetic books of both eras: covers, ads, stories, story starts"
    m = load_pss(None)
    assert Path(default_weights()).stat().st_size < 8e6 and m.info['weights'] == default_weights()
    assert len(m.members) == 4 and m.info['seeds'] == [0, 1, 2, 3]  # the recipe's ensemble
    o = _fresh(library, 'shipped'); run_pss(o, progress=False, show=False)
    t = read_predictions(o); t['book'] = t.page_id.map(book_of)
    truth = [to_cosmo(library['truths'][b]) for b in sorted(library['truths'])]
    pred = [t[t.book == b].cosmo_type.tolist() for b in sorted(library['truths'])]
    pm = page_metrics([l for x in truth for l in x], [l for x in pred for l in x], COSMO_CLASSES)
    assert pm['accuracy'] > 0.8, pm['confusion']
