"""Speed of panel detection on one CPU core: the classical detector (with its frame parts, and without them: the
gutter cut alone, timed side by side on the same pages, interleaved) at realistic page sizes, on the hard synthetic
layouts and on the real pages; Faster R-CNN (MobileNetV3-FPN and ResNet-50-FPN) seconds per page. Writes
benchmarks/results/bench_detect.json and prints a markdown table. The CPU may be shared: the load average before
and after is recorded with the numbers.

Kumiko, the tool users would pick instead, is not on a package registry (PyPI's `kumiko` is an unrelated Discord IPC
library; npm has none), so it cannot be run here: its published ~0.43 s a page is the reference.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_detect.py [--quick] [--no-frcnn]
"""
import argparse, io, json, os, platform, time
from pathlib import Path
import numpy as np
from PIL import Image

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')
KUMIKO_S_PER_PAGE = 0.43      # published reference (issue 15); Kumiko is not installable from a registry


def _jpeg(img, q=90):
    b = io.BytesIO(); img.convert('RGB').save(b, 'JPEG', quality=q); return b.getvalue()


def _time(fn, items, repeat=1):
    "Median wall and CPU seconds per item"
    wall, cpu = [], []
    for _ in range(repeat):
        for it in items:
            t0, c0 = time.perf_counter(), time.process_time(); fn(it)
            wall.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def _time_pair(fns, items, repeat=1):
    "Median wall and CPU seconds per item of each function, the functions interleaved item by item (same load)"
    t = {k: ([], []) for k in fns}
    for _ in range(repeat):
        for it in items:
            for k, fn in fns.items():
                t0, c0 = time.perf_counter(), time.process_time(); fn(it)
                t[k][0].append(time.perf_counter() - t0); t[k][1].append(time.process_time() - c0)
    return {k: (float(np.median(w)), float(np.median(c))) for k, (w, c) in t.items()}


def _detectors():
    from comix.panels import detect_panels, PanelParams
    old = PanelParams(quads=False, frames=False, overlays=False)
    return {'classical': lambda im, rtl=False: detect_panels(im, rtl=rtl),
            'classical, gutter cut only': lambda im, rtl=False: detect_panels(im, old, rtl=rtl)}


def bench_hard(n_pages, repeat, size=(1988, 3056)):
    "Both detectors, interleaved, on hard synthetic pages (comix.synth_layouts) as JPEG bytes"
    from comix.synth_layouts import hard_page, HARD_LAYOUTS
    pages = [_jpeg(hard_page(s, lay, size=size, quality=None)[0]) for s in range(n_pages) for lay in HARD_LAYOUTS]
    fns = {k: (lambda b, d=d: d(Image.open(io.BytesIO(b)))) for k, d in _detectors().items()}
    return [dict(detector=k, size=f'{size[0]}x{size[1]} (hard synthetic layouts)', input='JPEG bytes (decode + detect)',
                 pages=len(pages), s_per_page=w, cpu_s_per_page=c, pages_per_s=1/w) for k, (w, c) in _time_pair(fns, pages, repeat).items()]


def bench_classical(sizes, n_pages, repeat):
    from comix.synth import synth_page
    from comix.panels import detect_panels
    from comix.evaluate import contour_baseline
    rows = []
    for W, H in sizes:
        pages = [_jpeg(synth_page(s, lay, size=(W, H))[0]) for s, lay in zip(range(n_pages), ['grid', 'borderless', 'irregular', 'inset', 'coloured_gutter', 'splash'] * 9)]
        for name, fn in [('classical', detect_panels), ('contour baseline', contour_baseline)]:
            w_jpg, c_jpg = _time(lambda b: fn(Image.open(io.BytesIO(b))), pages, repeat)
            rows.append(dict(detector=name, size=f'{W}x{H}', input='JPEG bytes (decode + detect)', pages=len(pages),
                             s_per_page=w_jpg, cpu_s_per_page=c_jpg, pages_per_s=1/w_jpg))
        decoded = [Image.open(io.BytesIO(b)).convert('RGB') for b in pages]
        w_dec, c_dec = _time(detect_panels, decoded, repeat)
        rows.append(dict(detector='classical', size=f'{W}x{H}', input='decoded RGB image', pages=len(pages),
                         s_per_page=w_dec, cpu_s_per_page=c_dec, pages_per_s=1/w_dec))
    return rows


def bench_real(repeat):
    "Both classical variants, interleaved, on the real pages in ../shared/data/real (if present)"
    from comix.evaluate import real_datasets
    rows = []
    for name, (gt, folder, rtl) in real_datasets().items():
        pages = [(Path(folder)/p).read_bytes() for p in sorted(set(gt.page))]
        fns = {k: (lambda b, d=d: d(Image.open(io.BytesIO(b)), rtl)) for k, d in _detectors().items()}
        size = Image.open(io.BytesIO(pages[0])).size
        for k, (w, c) in _time_pair(fns, pages, repeat).items():
            rows.append(dict(detector=k, size=f'{size[0]}x{size[1]} ({name})', input='JPEG/PNG bytes (decode + detect)',
                             pages=len(pages), s_per_page=w, cpu_s_per_page=c, pages_per_s=1/w))
    return rows


def bench_frcnn(threads, size, n_pages):
    import torch
    from comix.frcnn import build_frcnn, predict_frcnn
    from comix.synth import synth_page
    torch.set_num_threads(threads)
    pages = [synth_page(s, 'grid', size=size)[0] for s in range(n_pages)]
    rows = []
    for arch in ('mobilenet_v3', 'resnet50'):
        torch.manual_seed(0)
        m = build_frcnn(arch, box_score_thresh=0.05).eval()          # default sizes: short side 800, long side <= 1333
        predict_frcnn(m, pages[:1])                                    # warm-up
        w, c = _time(lambda im: predict_frcnn(m, [im], score_thresh=0.05), pages)
        rows.append(dict(detector=f'frcnn {arch}', size=f'{size[0]}x{size[1]}', input='decoded image, min_size 800 / max_size 1333',
                         pages=len(pages), threads=threads, s_per_page=w, cpu_s_per_page=c, pages_per_s=1/w))
    return rows


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); ap.add_argument('--no-frcnn', action='store_true')
    a = ap.parse_args()
    import cv2; cv2.setNumThreads(1)
    load0 = os.getloadavg()
    sizes = [(1988, 3056), (1600, 900), (2500, 3500), (1000, 1500)]
    rows = bench_classical(sizes, 3 if a.quick else 6, 1 if a.quick else 2)
    rows += bench_hard(1 if a.quick else 2, 1)
    rows += bench_real(1)
    if not a.no_frcnn: rows += bench_frcnn(1, (1988, 3056), 2 if a.quick else 3)
    load1 = os.getloadavg()
    res = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), loadavg_before=load0, loadavg_after=load1,
               note='CPU shared with other engineers; wall times inflate with the load average, cpu_s_per_page less so',
               kumiko=dict(installable=False, s_per_page_reference=KUMIKO_S_PER_PAGE,
                           why='not on PyPI (the PyPI name kumiko is an unrelated Discord IPC library) nor on npm'),
               rows=rows, time=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    out = Path(__file__).parent/'results'/'bench_detect.json'; out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f'load average before {load0}, after {load1} on {os.cpu_count()} CPUs\n')
    print('| detector | page size | input | pages | s/page (wall) | CPU s/page | pages/s | Kumiko 0.43 s / this |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['detector']} | {r['size']} | {r['input']} | {r['pages']} | {r['s_per_page']:.3f} | {r['cpu_s_per_page']:.3f} | "
              f"{r['pages_per_s']:.2f} | {KUMIKO_S_PER_PAGE / r['cpu_s_per_page']:.1f}x |")


if __name__ == '__main__': main()
