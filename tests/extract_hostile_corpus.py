"""Generator of a hostile comic library: every way an archive can hurt an extractor, built from scratch.

`make_hostile_corpus(root)` writes the files and returns what comix.extract must say about each of them.
No file is committed: everything (including RAR4 archives, plain and AES-encrypted) is written here.
"""
from __future__ import annotations
import hashlib, io, os, struct, tarfile, zipfile, zlib
from pathlib import Path
from PIL import Image


def jpeg(seed=0, size=(60, 90)) -> bytes:
    "A small noisy JPEG, different per seed"
    import numpy as np
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(a, 'RGB')
    b = io.BytesIO(); im.save(b, 'JPEG', quality=80); return b.getvalue()


def png_bomb_header(w=30000, h=30000) -> bytes:
    "A valid PNG header claiming w x h pixels (a decompression bomb that costs 60 bytes to make)"
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 64)) + chunk(b'IEND', b''))


def cbz(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, 'w', compression) as z:
        for name, data in members: z.writestr(zipfile.ZipInfo(name, (2025, 1, 1, 0, 0, 0)), data)
    return path


# ---------------------------------------------------------------- RAR4 (RAR 2.9 format), stored, optional AES-128
def _rar3_key(password: str, salt: bytes):
    "RAR 3.x key derivation: 2^18 SHA-1 rounds over UTF-16LE password + salt + round counter"
    raw = password.encode('utf-16-le') + salt
    h, iv = hashlib.sha1(), bytearray(16)
    for i in range(0x40000):
        h.update(raw); h.update(bytes((i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff)))
        if i % 0x4000 == 0: iv[i // 0x4000] = h.copy().digest()[19]
    d = h.digest()
    return b''.join(d[4 * k:4 * k + 4][::-1] for k in range(4)), bytes(iv)


def _rar_block(htype, flags, body):
    head = struct.pack('<BHH', htype, flags, 7 + len(body)) + body
    return struct.pack('<H', zlib.crc32(head) & 0xffff) + head


def rar4(path, members, password=None):
    "Write a RAR 2.9/4.x archive with stored members (AES-128-CBC encrypted when `password` is given)"
    out = bytearray(b'Rar!\x1a\x07\x00') + _rar_block(0x73, 0, b'\x00' * 6)
    for name, data in members:
        flags, salt, packed = 0x8000, b'', data
        if password:
            from Cryptodome.Cipher import AES
            salt = hashlib.sha256(name.encode() + data[:16]).digest()[:8]
            key, iv = _rar3_key(password, salt)
            packed = AES.new(key, AES.MODE_CBC, iv).encrypt(data + b'\x00' * (-len(data) % 16))
            flags |= 0x04 | 0x400
        nm = name.encode('ascii')
        dos = ((2025 - 1980) << 25) | (1 << 21) | (1 << 16)
        body = struct.pack('<IIBIIBBHI', len(packed), len(data), 2, zlib.crc32(data), dos, 29, 0x30, len(nm), 0x20) + nm + salt
        out += _rar_block(0x74, flags, body) + packed
    out += b'\xc4\x3d\x7b\x00\x40\x07\x00'
    Path(path).write_bytes(bytes(out)); return path


# ---------------------------------------------------------------- the corpus
def make_hostile_corpus(root) -> dict:
    """Write the hostile library under `root`; return `{file name: expectation}` where an expectation is a dict with
    `book` (status, reason) and optionally `entries` {member name: (status, reason)} and `pages` (number of ok pages)."""
    root = Path(root); root.mkdir(parents=True, exist_ok=True)
    ex = {}
    good = [jpeg(i) for i in range(4)]

    # a healthy reference book
    cbz(root / 'good.cbz', [('p1.jpg', good[0]), ('p2.jpg', good[1]), ('p10.jpg', good[2])])
    ex['good.cbz'] = dict(book=('ok', ''), pages=3)

    # truncated zip: the end-of-central-directory is gone
    data = cbz(root / 'tmp.zip', [('p1.jpg', good[0]), ('p2.jpg', good[1])]).read_bytes(); os.remove(root / 'tmp.zip')
    (root / 'truncated.cbz').write_bytes(data[:len(data) // 2])
    ex['truncated.cbz'] = dict(book=('error', 'truncated_zip'))

    # a member whose compressed data is damaged (central directory intact)
    data = bytearray(cbz(root / 'tmp.zip', [('p1.jpg', good[0] * 3), ('p2.jpg', good[1])], zipfile.ZIP_DEFLATED).read_bytes())
    os.remove(root / 'tmp.zip'); data[100:400] = bytes(300)
    (root / 'damaged_member.cbz').write_bytes(bytes(data))
    ex['damaged_member.cbz'] = dict(book=('ok', ''), entries={'p1.jpg': ('error', 'corrupt_member')}, pages=1)

    # zip-slip: parent and absolute member names
    cbz(root / 'zipslip.cbz', [('../../evil.jpg', good[0]), ('/abs/evil.jpg', good[1]), ('ok.jpg', good[2])])
    ex['zipslip.cbz'] = dict(book=('ok', ''), entries={'../../evil.jpg': ('error', 'zip_slip'),
                                                          '/abs/evil.jpg': ('error', 'zip_slip')}, pages=1)

    # zip bomb by ratio: 64 MB of zeros that deflate to ~64 KB
    with zipfile.ZipFile(root / 'bomb_ratio.cbz', 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('p1.jpg', good[0]); z.writestr('p2.jpg', bytes(64 << 20))
    ex['bomb_ratio.cbz'] = dict(book=('ok', ''), entries={'p2.jpg': ('error', 'zip_bomb')}, pages=1)

    # zip bomb by total size: the central directory claims 12 x 4 GB
    data = bytearray(cbz(root / 'tmp.zip', [(f'p{i}.jpg', good[i % 4]) for i in range(12)]).read_bytes())
    os.remove(root / 'tmp.zip'); pos = data.find(b'PK\x01\x02')
    while pos >= 0: data[pos + 24:pos + 28] = struct.pack('<I', 0xFFFFFFF0); pos = data.find(b'PK\x01\x02', pos + 4)
    (root / 'bomb_total.cbz').write_bytes(bytes(data))
    ex['bomb_total.cbz'] = dict(book=('error', 'zip_bomb'))

    # encrypted 7z: data only, then data and header
    import py7zr
    with py7zr.SevenZipFile(root / 'encrypted.cb7', 'w', password='secret') as z:
        z.writestr(good[0], 'p1.jpg'); z.writestr(good[1], 'p2.jpg')
    ex['encrypted.cb7'] = dict(book=('error', 'encrypted'), entries={'p1.jpg': ('error', 'encrypted'), 'p2.jpg': ('error', 'encrypted')}, pages=0)
    with py7zr.SevenZipFile(root / 'encrypted_header.cb7', 'w', password='secret', header_encryption=True) as z:
        z.writestr(good[0], 'p1.jpg')
    ex['encrypted_header.cb7'] = dict(book=('error', 'encrypted'))

    # RAR4: plain and AES-encrypted (RAR 3.x encryption)
    rar4(root / 'rar4.cbr', [('p1.jpg', good[0]), ('p2.jpg', good[1])])
    ex['rar4.cbr'] = dict(book=('ok', ''), pages=2, md5={0: hashlib.md5(good[0]).hexdigest(), 1: hashlib.md5(good[1]).hexdigest()})
    rar4(root / 'encrypted.cbr', [('p1.jpg', good[0]), ('p2.jpg', good[1])], password='secret')
    ex['encrypted.cbr'] = dict(book=('error', 'encrypted'), entries={'p1.jpg': ('error', 'encrypted'), 'p2.jpg': ('error', 'encrypted')}, pages=0)

    # corrupt images, 0-byte page, decompression bomb
    cbz(root / 'bad_images.cbz', [('p1.jpg', b'\xff\xd8\xff\xe0 this is not really a jpeg'), ('p2.jpg', good[0][:len(good[0]) // 2]),
                                  ('p3.jpg', b''), ('p4.png', png_bomb_header()), ('p5.jpg', good[1])])
    ex['bad_images.cbz'] = dict(book=('ok', ''), pages=1, page_errors={0: 'corrupt_image', 1: 'truncated_image',
                                                                         2: 'empty_page', 3: 'decompression_bomb'})

    # PDF with no pages; EPUB with no images; EPUB whose spine order differs from name order
    (root / 'nopages.pdf').write_bytes(pdf_without_pages())
    ex['nopages.pdf'] = dict(book=('skipped', 'empty_archive'))
    epub(root / 'noimages.epub', [('c1.xhtml', None)])
    ex['noimages.epub'] = dict(book=('skipped', 'no_pages'))
    epub(root / 'spine.epub', [('c1.xhtml', 'img/b.jpg'), ('c2.xhtml', 'img/a.jpg'), ('c3.xhtml', 'img/c.jpg')],
         images={'img/a.jpg': good[0], 'img/b.jpg': good[1], 'img/c.jpg': good[2]})
    ex['spine.epub'] = dict(book=('ok', ''), pages=3, order=['OEBPS/img/b.jpg', 'OEBPS/img/a.jpg', 'OEBPS/img/c.jpg'])

    # non-UTF-8 member name (Latin-1 bytes, no UTF-8 flag)
    data = cbz(root / 'tmp.zip', [('cafX.jpg', good[0]), ('p2.jpg', good[1])]).read_bytes(); os.remove(root / 'tmp.zip')
    (root / 'latin1_names.cbz').write_bytes(data.replace(b'cafX', b'caf\xe9'))
    ex['latin1_names.cbz'] = dict(book=('ok', ''), pages=2, page_reasons={'non_utf8_name'})

    # non-UTF-8 names in a tar and in an image folder; a container whose own file name is not UTF-8
    with tarfile.open(root / 'latin1_names.cbt', 'w', encoding='utf-8', errors='surrogateescape') as t:
        for name, data in [(b'caf\xe9.jpg', good[0]), (b'p2.jpg', good[1])]:
            ti = tarfile.TarInfo(os.fsdecode(name)); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    ex['latin1_names.cbt'] = dict(book=('ok', ''), pages=2, page_reasons={'non_utf8_name'})
    (root / 'latin1 folder').mkdir()
    for name, data in [(b'caf\xe9.jpg', good[0]), (b'p2.jpg', good[1])]:
        with open(os.path.join(os.fsencode(root / 'latin1 folder'), name), 'wb') as f: f.write(data)
    ex['latin1 folder'] = dict(book=('ok', ''), pages=2, page_reasons={'non_utf8_name'})
    with open(os.path.join(os.fsencode(root), b'bad_name_\xe9.cbz'), 'wb') as f: f.write((root / 'good.cbz').read_bytes())
    ex[os.fsdecode(b'bad_name_\xe9.cbz')] = dict(book=('error', 'non_utf8_path'))

    # a zip named .cbr; a text file named .cbz; an empty zip; a 0-byte file
    cbz(root / 'really_zip.cbr', [('p1.jpg', good[0])])
    ex['really_zip.cbr'] = dict(book=('ok', 'ext_mismatch'), pages=1)
    (root / 'not_an_archive.cbz').write_text('hello, I am a text file\n')
    ex['not_an_archive.cbz'] = dict(book=('error', 'unknown_format'))
    cbz(root / 'empty.cbz', [])
    ex['empty.cbz'] = dict(book=('skipped', 'empty_archive'))
    (root / 'zero_bytes.cbz').write_bytes(b'')
    ex['zero_bytes.cbz'] = dict(book=('error', 'empty_file'))

    # nested archive and junk
    cbz(root / 'nested.cbz', [('p1.jpg', good[0]), ('extras/inner.cbz', (root / 'good.cbz').read_bytes()),
                              ('__MACOSX/._p1.jpg', b'\x00\x05\x16\x07'), ('.DS_Store', b'junk'), ('Thumbs.db', b'junk')])
    ex['nested.cbz'] = dict(book=('ok', ''), pages=1, entries={'extras/inner.cbz': ('skipped', 'nested_archive'),
                            '__MACOSX/._p1.jpg': ('skipped', 'macosx'), '.DS_Store': ('skipped', 'ds_store'),
                            'Thumbs.db': ('skipped', 'thumbs_db')})

    # malformed ComicInfo.xml: audit error on that entry, the pages still extracted
    cbz(root / 'bad_xml.cbz', [('ComicInfo.xml', b'<ComicInfo><Series>Broken</Ser'), ('p1.jpg', good[0])])
    ex['bad_xml.cbz'] = dict(book=('ok', ''), pages=1, entries={'ComicInfo.xml': ('error', 'bad_metadata')})

    # "billion laughs" ComicInfo.xml (entity expansion): refused by expat's amplification limit, audited
    laughs = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
              + b''.join(b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b'&' + bytes([97 + i]) + b';') * 10) for i in range(9))
              + b']><ComicInfo><Series>&j;</Series></ComicInfo>')
    cbz(root / 'billion_laughs.cbz', [('ComicInfo.xml', laughs), ('p1.jpg', good[0])])
    ex['billion_laughs.cbz'] = dict(book=('ok', ''), pages=1, entries={'ComicInfo.xml': ('error', 'bad_metadata')})

    # truncated compressed tar
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode='w:gz') as t:
        for i in range(3):
            ti = tarfile.TarInfo(f'p{i}.jpg'); ti.size = len(good[i]); t.addfile(ti, io.BytesIO(good[i]))
    (root / 'truncated.cbt').write_bytes(b.getvalue()[:len(b.getvalue()) // 2])
    ex['truncated.cbt'] = dict(book=('error', 'corrupt_archive'))

    # unreadable: a dangling symlink always; chmod 000 (root reads it anyway: expectation says so honestly)
    os.symlink(root / 'does_not_exist.cbz', root / 'dangling.cbz')
    ex['dangling.cbz'] = dict(book=('error', 'unreadable'))
    cbz(root / 'no_permission.cbz', [('p1.jpg', good[3])]); os.chmod(root / 'no_permission.cbz', 0)
    ex['no_permission.cbz'] = dict(book=('ok', ''), pages=1) if os.geteuid() == 0 else dict(book=('error', 'unreadable'))
    return ex


def epub(path, chapters, images=None):
    "Write a minimal EPUB 3: `chapters` [(xhtml name, image href or None)] in spine order"
    images = images or {}
    items = ''.join(f'<item id="c{i}" href="{n}" media-type="application/xhtml+xml"/>' for i, (n, _) in enumerate(chapters))
    items += ''.join(f'<item id="i{i}" href="{n}" media-type="image/jpeg"/>' for i, n in enumerate(images))
    spine = ''.join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    opf = (f'<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata/>'
           f'<manifest>{items}</manifest><spine>{spine}</spine></package>')
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('mimetype', 'application/epub+zip')
        z.writestr('META-INF/container.xml', '<?xml version="1.0"?><container xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                   '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>')
        z.writestr('OEBPS/content.opf', opf)
        for n, img in chapters:
            body = f'<img src="{img}"/>' if img else '<p>Only text here.</p>'
            z.writestr(f'OEBPS/{n}', f'<html xmlns="http://www.w3.org/1999/xhtml"><body>{body}</body></html>')
        for n, data in images.items(): z.writestr(f'OEBPS/{n}', data)
    return path


def pdf_without_pages() -> bytes:
    "A well-formed PDF whose page tree is empty"
    objs = [b'<< /Type /Catalog /Pages 2 0 R >>', b'<< /Type /Pages /Kids [] /Count 0 >>']
    out, offs = bytearray(b'%PDF-1.4\n'), []
    for i, o in enumerate(objs, 1): offs.append(len(out)); out += b'%d 0 obj\n' % i + o + b'\nendobj\n'
    x = len(out)
    out += b'xref\n0 %d\n0000000000 65535 f \n' % (len(objs) + 1) + b''.join(b'%010d 00000 n \n' % o for o in offs)
    out += b'trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n' % (len(objs) + 1, x)
    return bytes(out)
