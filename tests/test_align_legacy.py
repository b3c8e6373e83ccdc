"Legacy import: the seed's COCO predictions (absolute Windows paths) and VLM JSON folders (other paths) -> page_id."
import json
from pathlib import Path
import pandas as pd, pytest
from comix.legacy import import_legacy, read_coco_predictions, legacy_result
from comix.align import run_align
from comix.testing.align import synthetic_run
from comix.paths import Layout

@pytest.fixture
def lib(tmp_path):
    "Two synthetic books of one series whose page files share names (001.jpg ...), extracted into a manifest"
    S1 = synthetic_run(tmp_path/'out', tmp_path/'lib'/'Space Ace', n_pages=3, seed=1)
    man = pd.read_parquet(Layout(tmp_path/'out').manifest)
    return tmp_path, man, S1

def test_coco_and_vlm_import_with_unmappable_and_ambiguous_paths(lib):
    tmp, man, S = lib
    win = {pid: 'E:\\CalibreComics_extracted\\Space Ace\\' + bk.replace('/', '\\') + '\\' + e
           for pid, bk, e in zip(man.page_id, man.book_key, man.entry)}
    foreign = list(win.values()) + [r'E:\CalibreComics_extracted\Nobody\Lost Book\009.jpg']    # not in the library
    coco = {'images': [{'id': i, 'file_name': f} for i, f in enumerate(foreign)],
            'categories': [{'id': 1, 'name': 'panel'}, {'id': 3, 'name': 'balloon'}],
            'annotations': [{'image_id': i, 'category_id': 1, 'bbox': [b['x'], b['y'], b['w'], b['h']], 'score': 0.9}
                            for i, pid in enumerate(win) for b in S['truths'][pid]['panels']]
                           + [{'image_id': 0, 'category_id': 3, 'bbox': [1, 1, 5, 5], 'score': 0.9}]}
    (tmp/'preds.json').write_text(json.dumps(coco))
    vdir = tmp/'vlm'
    for pid, e in zip(man.page_id, man.entry):                      # S3-style key tree: bucket/analysis/<book>/<page>.json
        f = vdir/'analysis'/man.book_key[0].split('/')[-1]/(Path(e).stem + '.json'); f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({'result': {'panels': [{'caption': 'Meanwhile.', 'speakers': [{'character': 'Ace', 'dialogue': 'Hi'}]}
                                                       for _ in S['truths'][pid]['panels']]}}))
    (vdir/'misc').mkdir(); (vdir/'misc'/'cover_scan.json').write_text('{}')          # maps to nothing
    (vdir/'analysis'/'Synth Book 001'/'002.png.json').write_text('{"panels": []}')   # a second file for page 0002: duplicate
    rep = import_legacy(tmp/'out', tmp/'preds.json', vdir, show=False)
    by = rep.groupby(['kind', 'status']).size().to_dict()
    assert by[('coco', 'mapped')] == 3 and by[('coco', 'unmatched')] == 1
    assert by[('vlm', 'mapped')] == 3 and by[('vlm', 'unmatched')] == 1 and by[('vlm', 'duplicate')] == 1
    dup = rep[rep.status == 'duplicate']
    assert dup.foreign.tolist() == ['analysis/Synth Book 001/002.png.json'] and dup.page_id.tolist() == [man.page_id[1]]
    det = pd.read_parquet(Layout(tmp/'out').detect('legacy'))
    assert len(det) == sum(len(t['panels']) for t in S['truths'].values())          # the balloon was not imported
    assert set(det.page_id) == set(man.page_id)
    saved = pd.read_parquet(Path(Layout(tmp/'out').quality).parent/'legacy_import.parquet')
    assert len(saved) == len(rep)
    r = run_align(tmp/'out', detector='legacy', show=False, progress=False)
    q = r.table
    assert len(q) == len(man) and r.exit_code == 0
    assert q.is_perfect_match.all() and (q.text_coverage == 1.0).all() and (q.status == 'ok').all()

def test_ambiguous_leaf_names_are_reported_not_guessed(tmp_path):
    S = synthetic_run(tmp_path/'out', tmp_path/'lib', n_pages=2, seed=2)
    synthetic_run(tmp_path/'out2', tmp_path/'lib2', n_pages=2, seed=3)      # a second library with the same page names
    man = pd.concat([pd.read_parquet(Layout(tmp_path/'out').manifest),
                     pd.read_parquet(Layout(tmp_path/'out2').manifest).assign(source='other',
                         page_id=lambda d: d.page_id.str.replace('synth/', 'other/', regex=False))], ignore_index=True)
    from comix.paths import atomic_write_parquet
    atomic_write_parquet(Layout(tmp_path/'out').manifest, man)
    coco = {'images': [{'id': 0, 'file_name': '001.jpg'}, {'id': 1, 'file_name': r'C:\x\other\Synth Book 001\001.jpg'}],
            'annotations': [{'image_id': i, 'category_id': 1, 'bbox': [0, 0, 10, 10]} for i in (0, 1)]}
    rep = import_legacy(tmp_path/'out', coco=coco, show=False).set_index('foreign')
    assert rep.loc['001.jpg', 'status'] == 'ambiguous' and len(rep.loc['001.jpg', 'candidates']) == 2
    assert rep.loc[r'C:\x\other\Synth Book 001\001.jpg', 'page_id'] == 'other/Synth Book 001/0000'

def test_coco_list_format_and_category_by_id():
    anns = [{'image_id': 'a/b/001.jpg', 'category_id': 1, 'bbox': [0, 0, 5, 5]}, {'image_id': 'a/b/001.jpg', 'category_id': 2, 'bbox': [0, 0, 1, 1]}]
    boxes, images, dropped = read_coco_predictions(anns)
    assert len(boxes) == 1 and dropped == 1 and boxes.foreign.tolist() == ['a/b/001.jpg']

def test_legacy_vlm_shapes():
    doc = [{'panels': [{'speakers': [{'character': 'A', 'dialogue': 'x', 'speech_type': 'narration'}], 'sfx': ['BAM']}]}]
    r = legacy_result(doc)
    assert r['panels'][0]['narration'] == ['x'] and r['panels'][0]['sfx'] == ['BAM'] and r['panels'][0]['dialogue'] == []
