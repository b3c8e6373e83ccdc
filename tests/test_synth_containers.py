"Synthetic books in every container read back through comix.readers with the exact pages and order we wrote."
import hashlib, io, xml.etree.ElementTree as ET
import pytest
from PIL import Image
from comix.paths import natural_key, junk_reason
from comix.synth import synth_book

readers = pytest.importorskip('comix.readers')

def page_bytes(book):
    "Page images of an open book in its reading order (spine for EPUB, page order for PDF, natural sort otherwise)"
    names = getattr(book, 'page_order', None) or sorted((m.name for m in book.members if not m.is_dir and junk_reason(m.name) is None), key=natural_key)
    return names, [book.read(book.member(n)) for n in names]

@pytest.mark.parametrize('suffix', ['.cbz', '.cb7', '.cbt', '.pdf', '.epub', ''])
def test_container_roundtrip(tmp_path, suffix):
    bt = synth_book(tmp_path/f'b{suffix}', n_pages=11, seed=2, size=(160, 240), names='natural', junk=suffix not in ('.pdf', '.epub'))
    book = readers.open_book(tmp_path/f'b{suffix}')
    try:
        names, blobs = page_bytes(book)
        assert names == [p['entry'] for p in bt['pages']]
        for p, b in zip(bt['pages'], blobs):
            assert len(b) == p['n_bytes'] and Image.open(io.BytesIO(b)).size == (p['width'], p['height'])
    finally: book.close()
