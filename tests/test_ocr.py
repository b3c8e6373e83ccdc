"OCR on rendered and real comic pages: the comic-tuned RapidOCR backend against the text we know is there."
import importlib.util, json
import numpy as np, pytest
from comix.ocr import (RapidOCRBackend, PlainRapidOCR, PaddleOCRBackend, make_backend, evaluate_ocr, real_ocr_pages,
                       norm_words, word_counts, prf, clean_text, load_lexicon)
from comix.synth import synth_page

@pytest.fixture(scope='module')
def ocr(): return RapidOCRBackend(threads=1)

def test_synth_pages_read_exactly(ocr):
    pages = [(f's{s}', *synth_page(seed=s, layout=l, size=(800, 1200))) for s, l in [(11, 'grid'), (12, 'inset')]]
    scores, rows = evaluate_ocr(ocr, [(k, im, ' '.join(b['text'] for b in t['balloons'])) for k, im, t in pages])
    assert scores['f1'] >= 0.97, rows
    line = ocr(pages[0][1])[0]
    assert set(line) >= {'text', 'score', 'polygon', 'x', 'y', 'w', 'h'} and len(line['polygon']) == 8

def test_blank_page_has_no_text(ocr):
    img, truth = synth_page(seed=3, layout='grid', size=(600, 900), text=False)
    words = norm_words(' '.join(L['text'] for L in ocr(img)))
    assert len(words) <= 1, words

def test_lexicon_repairs_real_errors():
    lex = load_lexicon()
    # errors plain RapidOCR makes on NYC2123 pages 06, 10, 11 and 28
    assert clean_text("ATNIGHT, ALL", lex) == 'AT NIGHT, ALL'
    assert clean_text("QF 'EM IN BROOKLYN, THEN", lex) == "OF 'EM IN BROOKLYN, THEN"
    assert clean_text('OFF 3,O58', lex) == 'OFF 3,058'
    assert clean_text('WASBLIND.', lex) == 'WAS BLIND.'
    assert clean_text('ASSHOLE.', lex) == 'ASSHOLE.'   # a word the book list lacks stays whole

def test_nyc2123_beats_plain_rapidocr(real_data, ocr):
    pages = [p for p in real_ocr_pages('nyc2123', real_data) if p[0] in ('pages/06.jpg', 'pages/10.jpg', 'pages/11.jpg')]
    assert len(pages) == 3
    ours, _ = evaluate_ocr(ocr, pages)
    base, _ = evaluate_ocr(PlainRapidOCR(threads=1), pages)
    assert ours['f1'] >= 0.97 and ours['f1'] > base['f1'], (ours, base)

def test_metric_definition():
    tp, fp, fn = word_counts(norm_words("I DON'T KNOW. I don't!"), norm_words('I DONT KNOW I DONT NOW'))
    assert (tp, fp, fn) == (5, 0, 1)
    assert prf(0, 0, 0)['f1'] == 1.0 and prf(0, 3, 0)['precision'] == 0.0

def test_unknown_engine_and_missing_model_dirs():
    with pytest.raises(ValueError, match='unknown OCR engine'): make_backend('tesseract')
    with pytest.raises(FileNotFoundError): make_backend('paddleocr', det_model_dir='/nope/det', rec_model_dir='/nope/rec')

@pytest.mark.skipif(importlib.util.find_spec('paddleocr') is None,
                    reason='paddleocr is not installed (optional [paddle] extra; it also needs local model directories)')
def test_paddleocr_backend_with_local_models(tmp_path):
    import os
    det, rec = os.environ.get('COMIX_PADDLE_DET'), os.environ.get('COMIX_PADDLE_REC')
    if not (det and rec): pytest.skip('set COMIX_PADDLE_DET and COMIX_PADDLE_REC to local PaddleOCR model directories')
    img, truth = synth_page(seed=11, layout='grid', size=(800, 1200))
    lines = PaddleOCRBackend(det, rec)(img)
    s = prf(*word_counts(norm_words(' '.join(L['text'] for L in lines)), norm_words(' '.join(b['text'] for b in truth['balloons']))))
    assert s['f1'] >= 0.9

def test_fast_path_is_what_runs(ocr):
    "The default backend: detection capped at 1024 px, Latin-only int8 recogniser, and it says so in its provenance"
    from comix.ocr import det_scale, det_input
    assert ocr.rec_kind == 'int8-latin' and len(ocr.chars) == 536
    p = ocr.provenance['params']
    assert p['rec'] == 'int8-latin' and p['Det.max_side_len'] == 1024 and p['device'] == 'cpu'
    assert det_input(np.zeros((1500, 1000, 3), np.uint8), det_scale(1500, 1000)).shape == (1, 3, 1024, 672)
    img, _ = synth_page(seed=11, layout='grid', size=(800, 1200))
    ocr.timings.clear(); ocr(img)
    assert ocr.timings['pages'] == 1 and ocr.timings['detect'] > 0 and ocr.timings['recognise'] > 0

def test_derived_recogniser_is_cached(tmp_path):
    "A derived model is built once into the cache folder, keyed by the source model, and then found"
    from comix.ocr import recogniser_model, rapidocr_model, model_classes
    rec = rapidocr_model('PP-OCRv6_rec_small.onnx')
    p, kind = recogniser_model(rec, latin=True, int8=False, cache=tmp_path)
    assert kind == 'fp32-latin' and p.parent == tmp_path/'ocr' and model_classes(p)[-1] == ' '
    t = p.stat().st_mtime_ns
    assert recogniser_model(rec, latin=True, int8=False, cache=tmp_path)[0] == p and p.stat().st_mtime_ns == t

def test_near_miss_gaps_and_spaced_letters():
    from comix.ocr import NEAR_SPACE as N
    lex = load_lexicon()
    assert clean_text(f'EVERY{N}BODY STAND BACK.', lex) == 'EVERYBODY STAND BACK.'    # xkcd 208, int8 and fp32 disagree here
    assert clean_text(f'AT{N}NIGHT, ALL', lex) == 'AT NIGHT, ALL'
    assert clean_text(f'I{N}S S{N}U E 1', lex) == 'ISSUE 1'                           # NYC2123 title, letter-spaced
    assert clean_text("19.999. THAT'5 WEIRD.", lex) == "19.999. THAT'S WEIRD."       # xkcd 217

@pytest.mark.gpu
def test_cuda_backend_reads_like_the_cpu_one():
    "device='cuda' (onnxruntime-gpu): both networks on the CUDA provider, lines batched, same words on a synthetic page"
    gpu = make_backend(device='cuda', threads=1)
    assert gpu.det.get_providers()[0] == 'CUDAExecutionProvider' and gpu.rec_kind == 'fp32-latin'
    img, truth = synth_page(seed=11, layout='grid', size=(800, 1200))
    s = prf(*word_counts(norm_words(' '.join(L['text'] for L in gpu(img))), norm_words(' '.join(b['text'] for b in truth['balloons']))))
    assert s['f1'] >= 0.97, s
