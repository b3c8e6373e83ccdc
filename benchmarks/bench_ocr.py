"""OCR benchmark: accuracy per data set (plain RapidOCR defaults vs comix's tuned backend) and seconds per page at
two page sizes on this CPU. Writes benchmarks/results/ocr.json and prints a markdown table.

    .venv/bin/python benchmarks/bench_ocr.py [--threads 1] [--quick]
"""
import argparse, json, os, platform, time
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
from comix.ocr import (RapidOCRBackend, PlainRapidOCR, evaluate_ocr, real_ocr_pages, norm_words, norm_chars, _version)
from comix.synth import synth_page

LAYOUTS = ['grid', 'borderless', 'irregular', 'inset', 'coloured_gutter', 'splash']

def synth_set(n):
    out = []
    for s in range(n):
        img, t = synth_page(seed=100 + s, layout=LAYOUTS[s % len(LAYOUTS)])
        out.append((f'synth-{100+s}', img, ' '.join(b['text'] for b in t['balloons'])))
    return out

def speed(ocr, size, n):
    pages = [synth_page(seed=200 + i, layout='grid', size=size)[0] for i in range(n)]
    ocr(pages[0])  # warm up
    t0 = time.perf_counter()
    for p in pages: ocr(p)
    return (time.perf_counter() - t0) / n

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--threads', type=int, default=1); ap.add_argument('--quick', action='store_true')
    a = ap.parse_args()
    q = a.quick
    sets = {'synth (exact text)': (synth_set(3 if q else 6), norm_words, 'en'),
            'nyc2123 (ACBF, hand-lettered)': (real_ocr_pages('nyc2123', limit=5 if q else None), norm_words, 'en'),
            'xkcd (loose transcripts)': (real_ocr_pages('xkcd'), norm_words, 'en'),
            'openmantra (Japanese, characters)': (real_ocr_pages('openmantra', limit=3 if q else 10), norm_chars, 'ja')}
    res = dict(machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=a.threads,
                            load_average_at_start=os.getloadavg()),
               versions=dict(rapidocr=_version('rapidocr'), onnxruntime=_version('onnxruntime')), accuracy={}, speed={})
    base = PlainRapidOCR(threads=a.threads)
    for name, (pages, units, lang) in sets.items():
        if not pages: continue
        ours = RapidOCRBackend(threads=a.threads, lang=lang)
        for label, ocr in [('rapidocr defaults', base), ('comix', ours)]:
            s, rows = evaluate_ocr(ocr, pages, units)
            res['accuracy'].setdefault(name, {})[label] = dict(s, pages=len(pages), s_per_page=round(sum(r['seconds'] for r in rows)/len(rows), 2))
            print(name, label, res['accuracy'][name][label], flush=True)
    ours = RapidOCRBackend(threads=a.threads)
    for size in [(1000, 1500), (2000, 3000)]:
        for label, ocr in [('rapidocr defaults', base), ('comix', ours)]:
            res['speed'].setdefault(f'{size[0]}x{size[1]}', {})[label] = round(speed(ocr, size, 2 if q else 3), 2)
    res['machine']['load_average_at_end'] = os.getloadavg()
    print(res['speed'])
    out = Path(__file__).parent/'results'/('ocr_quick.json' if q else 'ocr.json'); out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print('\n| data set | pages | rapidocr defaults P / R / F1 | comix P / R / F1 |\n|---|---|---|---|')
    for name, d in res['accuracy'].items():
        b, c = d['rapidocr defaults'], d['comix']
        print(f"| {name} | {c['pages']} | {b['precision']:.3f} / {b['recall']:.3f} / **{b['f1']:.3f}** | {c['precision']:.3f} / {c['recall']:.3f} / **{c['f1']:.3f}** |")
    print(f"\n| page size | rapidocr defaults s/page | comix s/page |\n|---|---|---|")
    for size, d in res['speed'].items(): print(f"| {size} | {d['rapidocr defaults']} | {d['comix']} |")

if __name__ == '__main__': main()
