"""OCR benchmark: comix's backend against RapidOCR 3.x with its default settings, side by side in one process.

Every page is read by both readers in turn (interleaved, same thread count), so both see the same pages under the
same machine load; the script reports word F1 (character F1 for Japanese) and pages/s per data set, and the speed
ratio comix / RapidOCR in wall and CPU seconds. Writes benchmarks/results/ocr.json and prints markdown tables.

    .venv/bin/python benchmarks/bench_ocr.py --threads 1            # the numbers in nbs/31_ocr.ipynb
    .venv/bin/python benchmarks/bench_ocr.py --threads 1 --quick    # a few pages of each set
    .venv/bin/python benchmarks/bench_ocr.py --device cuda          # comix on a CUDA device (onnxruntime-gpu) vs RapidOCR on the CPU
"""
import argparse, json, os, platform, time
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
from comix.ocr import (RapidOCRBackend, PlainRapidOCR, real_ocr_pages, norm_words, norm_chars, word_counts, prf, to_bgr, _version)
from comix.synth import synth_page

LAYOUTS = ['grid', 'borderless', 'irregular', 'inset', 'coloured_gutter', 'splash']

def synth_set(n, size=(1000, 1500), seed=100):
    "Synthetic story pages with their exact text"
    out = []
    for s in range(n):
        img, t = synth_page(seed=seed + s, layout=LAYOUTS[s % len(LAYOUTS)], size=size)
        out.append((f'synth-{seed + s}', img, ' '.join(b['text'] for b in t['balloons'])))
    return out

def side_by_side(readers:dict, pages:list, units)->dict:
    "Each page read by every reader in turn: counts and seconds per reader"
    acc = {k: dict(tp=0, fp=0, fn=0, wall=0.0, cpu=0.0) for k in readers}
    for key, image, truth in pages:
        img = to_bgr(image)                                   # the page decode is shared (and not timed)
        for name, r in readers.items():
            t0, c0 = time.perf_counter(), time.process_time(); lines = r(img)
            acc[name]['wall'] += time.perf_counter() - t0; acc[name]['cpu'] += time.process_time() - c0
            tp, fp, fn = word_counts(units(' '.join(L['text'] for L in lines)), units(truth))
            acc[name]['tp'] += tp; acc[name]['fp'] += fp; acc[name]['fn'] += fn
    n = len(pages)
    return {k: dict(prf(a['tp'], a['fp'], a['fn']), pages=n, s_per_page=round(a['wall'] / n, 3), cpu_s_per_page=round(a['cpu'] / n, 3),
                    pages_per_s=round(n / a['wall'], 3)) for k, a in acc.items()}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--quick', action='store_true')
    ap.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    a = ap.parse_args(); q = a.quick
    sets = {'synth 1000x1500 (exact text)': (synth_set(2 if q else 6), norm_words, 'en'),
            'synth 2000x3000 (exact text)': (synth_set(1 if q else 3, (2000, 3000), 300), norm_words, 'en'),
            'nyc2123 (ACBF, hand-lettered)': (real_ocr_pages('nyc2123', limit=5 if q else None), norm_words, 'en'),
            'xkcd (loose transcripts)': (real_ocr_pages('xkcd'), norm_words, 'en'),
            'openmantra (Japanese, characters)': (real_ocr_pages('openmantra', limit=2 if q else 10), norm_chars, 'ja')}
    res = dict(machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=a.threads, device=a.device,
                            load_average_at_start=os.getloadavg()),
               versions=dict(rapidocr=_version('rapidocr'), onnxruntime=_version('onnxruntime')), sets={})
    base = PlainRapidOCR(threads=a.threads)
    ours = {lang: RapidOCRBackend(threads=a.threads, lang=lang, device=a.device) for lang in ('en', 'ja')}
    res['comix'] = ours['en'].provenance
    for name, (pages, units, lang) in sets.items():
        if not pages: continue
        for _, im, _ in pages[:1]: base(im); ours[lang](im)    # warm up both
        res['sets'][name] = side_by_side({'rapidocr defaults': base, 'comix': ours[lang]}, pages, units)
        print(name, json.dumps(res['sets'][name]), flush=True)
    en = [n for n in res['sets'] if 'openmantra' not in n]
    tot = lambda who, k: sum(res['sets'][n][who][k] * res['sets'][n][who]['pages'] for n in en)
    res['ratio'] = dict(wall=round(tot('comix', 's_per_page') / tot('rapidocr defaults', 's_per_page'), 3),
                        cpu=round(tot('comix', 'cpu_s_per_page') / tot('rapidocr defaults', 'cpu_s_per_page'), 3),
                        over='all English pages above, each read once by each reader')
    res['machine']['load_average_at_end'] = os.getloadavg()
    out = Path(__file__).parent/'results'/('ocr_quick.json' if q else 'ocr.json'); out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"\n| data set | pages | rapidocr defaults P / R / F1 | comix P / R / F1 | rapidocr pages/s | comix pages/s | time ratio (cpu) |\n|---|---|---|---|---|---|---|")
    for name, d in res['sets'].items():
        b, c = d['rapidocr defaults'], d['comix']
        print(f"| {name} | {c['pages']} | {b['precision']:.3f} / {b['recall']:.3f} / **{b['f1']:.3f}** | {c['precision']:.3f} / {c['recall']:.3f} / "
              f"**{c['f1']:.3f}** | {b['pages_per_s']:.2f} | {c['pages_per_s']:.2f} | {c['cpu_s_per_page'] / b['cpu_s_per_page']:.2f} |")
    print(f"\ncomix / rapidocr defaults, English pages: **{res['ratio']['wall']}** wall, **{res['ratio']['cpu']}** CPU "
          f"({a.threads} thread(s), load average {res['machine']['load_average_at_start'][0]:.1f} -> {res['machine']['load_average_at_end'][0]:.1f})")

if __name__ == '__main__': main()
