"""VLM client overhead: requests/s of `comix.vlm.VLMClient` (AsyncOpenAI over real HTTP, JPEG encode, retries
machinery, parsing) against the loopback OpenAI-compatible server on 127.0.0.1, at concurrency 1, 8 and 32.
The server answers at once (no model), so this is the client's (and the in-process server's) own cost per request.
Both run in this process on the same CPU cores: read the numbers as a floor on what one client process sustains.

Run: .venv/bin/python benchmarks/bench_vlm_client.py  ->  benchmarks/results/vlm_client.json
"""
import asyncio, json, os, platform, statistics, sys, time
from pathlib import Path

from PIL import Image, ImageDraw

from comix.vlm import VLMClient, encode_page, parse_reply
from comix.testing.vlm import LoopbackVLMServer


def page(size):
    im = Image.new('RGB', size, 'white'); d = ImageDraw.Draw(im)
    for i in range(0, size[1], 40): d.line([(0, i), (size[0], (i * 7) % size[1])], fill=(i % 255, 80, 160), width=3)
    return im


async def bench(srv, img, max_side, concurrency, n):
    cl = VLMClient(srv.base_url, 'bench', concurrency=concurrency, max_side=max_side)
    lat = []
    async def one(i):
        t = time.perf_counter()
        r = await cl.complete(f'b/{i:05d}', img)
        parse_reply(r.text, r.finish_reason)
        lat.append(time.perf_counter() - t)
    async def worker(ids):  # `concurrency` workers, each sending its requests one after another (as the VLM stage does)
        for i in ids: await one(i)
    await asyncio.gather(*(worker([i]) for i in range(concurrency)))  # warm up connections
    lat.clear()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(range(w, n, concurrency)) for w in range(concurrency)))
    wall = time.perf_counter() - t0
    await cl.aclose()
    q = statistics.quantiles(lat, n=20)
    return {'concurrency': concurrency, 'requests': n, 'seconds': round(wall, 3), 'requests_per_s': round(n / wall, 1),
            'latency_p50_ms': round(statistics.median(lat) * 1000, 2), 'latency_p95_ms': round(q[18] * 1000, 2)}


def main(n=300):
    rows, load0 = [], os.getloadavg()[0]
    cases = [('small page 256x384', (256, 384), 384),
             ('page 683x1024, already downscaled (as PageReader(max_side) gives it)', (683, 1024), 1024),
             ('page 1000x1500, downscaled to 1024 by the client', (1000, 1500), 1024)]
    with LoopbackVLMServer() as srv:
        for name, size, max_side in cases:
            img = page(size)
            t = time.perf_counter()
            for _ in range(10): encode_page(img, max_side)
            enc_ms = round((time.perf_counter() - t) / 10 * 1000, 2)
            for c in (1, 8, 32):
                r = asyncio.run(bench(srv, img, max_side, c, n)) | {'case': name, 'encode_page_ms': enc_ms}
                rows.append(r); print(r, flush=True)
    res = {'benchmark': 'vlm_client', 'what': 'requests/s of VLMClient.complete + parse_reply against LoopbackVLMServer on 127.0.0.1',
           'cpu_count': os.cpu_count(), 'load_avg_before': load0, 'load_avg_after': os.getloadavg()[0], 'python': sys.version.split()[0],
           'platform': platform.platform(), 'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'results': rows}
    out = Path(__file__).parent / 'results' / 'vlm_client.json'
    out.parent.mkdir(exist_ok=True); out.write_text(json.dumps(res, indent=1))
    print(f"load average before: {res['load_avg_before']:.1f} on {res['cpu_count']} cores")
    print('| case | concurrency | requests/s | p50 ms | p95 ms | encode_page ms |\n|---|---|---|---|---|---|')
    for r in rows: print(f"| {r['case']} | {r['concurrency']} | {r['requests_per_s']} | {r['latency_p50_ms']} | {r['latency_p95_ms']} | {r['encode_page_ms']} |")


if __name__ == '__main__':
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
