"""Speed of comix.synth and realism of its JPEG sizes.

Usage: .venv/bin/python benchmarks/bench_synth.py [--pages N]
Writes benchmarks/results/synth.json and prints a markdown table.
"""
import argparse, io, json, os, platform, statistics, tempfile, time
from pathlib import Path
from comix.synth import synth_page, synth_library, LAYOUTS

def bench_pages(size, n, quality=90):
    render, cpu, enc, nbytes = [], [], [], []
    for s in range(n):
        c0, t0 = time.process_time(), time.perf_counter(); img, _ = synth_page(s, LAYOUTS[s % len(LAYOUTS)], size, rtl=s % 4 == 3)
        t1 = time.perf_counter(); cpu.append(time.process_time() - c0); b = io.BytesIO(); img.save(b, 'JPEG', quality=quality)
        render.append(t1 - t0); enc.append(time.perf_counter() - t1); nbytes.append(b.tell())
    return dict(size=f'{size[0]}x{size[1]}', pages=n, render_cpu_ms_median=round(1e3*statistics.median(cpu), 1),
                render_ms_median=round(1e3*statistics.median(render), 1),
                render_ms_p90=round(1e3*sorted(render)[int(0.9*(n-1))], 1), jpeg_ms_median=round(1e3*statistics.median(enc), 1),
                jpeg_q90_kb_median=round(statistics.median(nbytes)/1024), jpeg_q90_kb_min=round(min(nbytes)/1024), jpeg_q90_kb_max=round(max(nbytes)/1024))

def bench_library(n_books, pages, size, text):
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter(); df = synth_library(d, n_books=n_books, pages_per_book=pages, size=size, text=text)
        dt = time.perf_counter() - t0
    return dict(books=n_books, pages=len(df), size=f'{size[0]}x{size[1]}', text=text, seconds=round(dt, 2), pages_per_s=round(len(df)/dt, 1))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--pages', type=int, default=30); a = ap.parse_args()
    pages = [bench_pages(s, a.pages) for s in [(200, 300), (1000, 1500), (1988, 3056)]]
    libs = [bench_library(200, 2, (200, 300), False), bench_library(200, 2, (200, 300), True)]
    res = dict(machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} cpus (shared)', load_average=os.getloadavg(), pages=pages, libraries=libs)
    out = Path(__file__).parent/'results'/'synth.json'; out.parent.mkdir(exist_ok=True); out.write_text(json.dumps(res, indent=1))
    print(f'load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus\n')
    print('| page size | render CPU ms (median) | render wall ms (median / p90) | JPEG q90 encode ms | JPEG q90 KB (median, min-max) |\n|---|---|---|---|---|')
    for r in pages: print(f"| {r['size']} | {r['render_cpu_ms_median']} | {r['render_ms_median']} / {r['render_ms_p90']} | {r['jpeg_ms_median']} | {r['jpeg_q90_kb_median']} ({r['jpeg_q90_kb_min']}-{r['jpeg_q90_kb_max']}) |")
    print('\n| library | pages | text | seconds | pages/s |\n|---|---|---|---|---|')
    for r in libs: print(f"| {r['books']} books x 2 pages, {r['size']} | {r['pages']} | {r['text']} | {r['seconds']} | {r['pages_per_s']} |")
