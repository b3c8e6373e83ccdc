"The panel encoder (comix.model) without training: absent modalities, one space, loading, pretrained backbones, MiniLM."
import random, shutil
import numpy as np, pytest, torch
from PIL import Image
from comix.model import (EncoderConfig, PanelEncoder, collate, crop_panel, encoder_state, load_encoder, page_inputs,
                         save_encoder, DEFAULT_WEIGHTS)
from comix.testing.model import content_page

def _pages(cfg, n_pages=3, seed=0):
    "Synthetic pages as model inputs; every third panel without text, the last page without its image"
    rng, xs = random.Random(seed), []
    for p in range(n_pages):
        contents = [(seed * 100 + p * 10 + i, '' if i % 3 == 2 else f'WORD{p}{i} HELLO THERE') for i in range(rng.randint(2, 5))]
        img, boxes, texts = content_page(contents, layout_seed=p)
        xs.append(page_inputs(None if p == n_pages - 1 else img, boxes, texts, cfg, size=img.size))
    return collate(xs, cfg.max_panels)

@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    return PanelEncoder(EncoderConfig.tiny()).eval()

def test_absent_modality_garbage_changes_nothing(tiny):
    "Random pixels behind image_mask=False and random words behind text_mask=False leave every output bit-identical"
    b = _pages(tiny.config)
    assert (~b['image_mask'] & b['panel_mask']).any() and (~b['text_mask'] & b['panel_mask']).any()
    g = dict(b, crops=b['crops'].clone(), texts=[list(r) for r in b['texts']])
    absent = ~b['image_mask']
    g['crops'][absent] = torch.randint(0, 256, g['crops'][absent].shape, dtype=torch.uint8)
    for i, row in enumerate(g['texts']):
        for j in range(len(row)):
            if not b['text_mask'][i, j]: row[j] = 'GARBAGE ' * random.randint(1, 9)
    a1, a2 = tiny(b), tiny(g)
    for k in ('panels', 'pages', 'image', 'text', 'fused', 'recon'): assert torch.equal(a1[k], a2[k]), k
    assert torch.equal(a1['weights'][~b['image_mask'] & b['panel_mask']][:, 0], torch.zeros(int((~b['image_mask'] & b['panel_mask']).sum())))

def test_absent_modality_is_not_a_zero_vector(tiny):
    "A text-less panel's fused embedding is its image-only embedding (weight 1), not diluted by a zero text vector"
    b = _pages(tiny.config)
    r = tiny(b)
    only_img = b['image_mask'] & ~b['text_mask'] & b['panel_mask']
    assert torch.allclose(r['panels'][only_img], r['image'][only_img], atol=1e-6)
    only_txt = b['text_mask'] & ~b['image_mask'] & b['panel_mask']
    assert torch.allclose(r['panels'][only_txt], r['text'][only_txt], atol=1e-6)
    assert torch.allclose(r['panels'][b['panel_mask']].norm(dim=-1), torch.ones(int(b['panel_mask'].sum())), atol=1e-5)
    assert (r['panels'][~b['panel_mask']] == 0).all()

def test_branch_switched_off():
    "A text-only encoder ignores crops entirely; an image-only one ignores texts; neither branch: refused"
    torch.manual_seed(0)
    t_only, i_only = PanelEncoder(EncoderConfig.tiny(vision=())), PanelEncoder(EncoderConfig.tiny(text=None))
    b = _pages(t_only.config); g = dict(b, crops=torch.randint(0, 256, b['crops'].shape, dtype=torch.uint8))
    assert torch.equal(t_only.encode_panels(b), t_only.encode_panels(g))
    g = dict(b, texts=[['NOISE'] * len(r) for r in b['texts']])
    assert torch.equal(i_only.encode_panels(b), i_only.encode_panels(g))
    with pytest.raises(ValueError): PanelEncoder(EncoderConfig.tiny(vision=(), text=None))
    with pytest.raises(ValueError): t_only.encode_image_only([Image.new('RGB', (8, 8))])

def test_panel_with_no_content_is_reconstructed(tiny):
    "A real panel with neither image nor text gets the page model's reconstruction (finite, unit length)"
    img, boxes, texts = content_page([(1, 'A'), (2, 'B'), (3, '')], 0)
    x = page_inputs(img, boxes + [[10000, 10000, 5, 5]], texts + [''], tiny.config)
    p = tiny.encode_panels(collate([x]))
    assert torch.isfinite(p).all() and abs(p[0, 3].norm().item() - 1) < 1e-5

def test_single_modality_encoders_match_encode_panels(tiny):
    "encode_image_only / encode_text_only give exactly the per-modality vectors encode_panels fuses"
    img, boxes, texts = content_page([(1, 'HELLO'), (2, 'WORLD')], 0)
    r = tiny(collate([page_inputs(img, boxes, texts, tiny.config)]))
    crops = [crop_panel(img, b, tiny.config.image_size) for b in boxes]
    assert torch.allclose(tiny.encode_image_only(crops), r['image'][0], atol=1e-5)
    assert torch.allclose(tiny.encode_image_only([img.crop((b[0], b[1], b[0] + b[2], b[1] + b[3])) for b in boxes]), r['image'][0], atol=1e-5)
    assert torch.allclose(tiny.encode_text_only(texts), r['text'][0], atol=1e-5)

def test_save_load_weights_only(tiny, tmp_path):
    "A checkpoint is a plain dict torch loads with weights_only=True; info records weights, sha256, config, version"
    p = save_encoder(tiny, tmp_path / 'e.pt', data={'pages': 3})
    ck = torch.load(p, weights_only=True)
    assert ck['format'] == 'comix-encoder/1' and ck['config']['feature_dim'] == 32
    m = load_encoder(p)
    b = _pages(tiny.config)
    assert torch.equal(m.encode_panels(b), tiny.encode_panels(b))
    assert m.info['data'] == {'pages': 3} and len(m.info['sha256']) == 64 and 'comix_version' in m.info
    with pytest.raises(FileNotFoundError): load_encoder(tmp_path / 'nope.pt')

def test_pretrained_backbones_from_local_folders(tmp_path):
    "SigLIP and transformers ResNet from a folder, torchvision ResNet from a state-dict file; fine-tuning the last block;"
    "the checkpoint carries them (loads after the folder is gone)"
    from transformers import SiglipVisionConfig, SiglipVisionModel, ResNetConfig, ResNetModel
    import torchvision
    SiglipVisionModel(SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         image_size=32, patch_size=8)).save_pretrained(tmp_path / 'sig')
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).save_pretrained(tmp_path / 'res')
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / 'r18.pth')
    b = None
    for kw in (dict(vision=('siglip',), siglip_path=str(tmp_path / 'sig'), finetune_blocks=1),
               dict(vision=('small', 'resnet'), resnet_path=str(tmp_path / 'res')),
               dict(vision=('resnet',), resnet_path=str(tmp_path / 'r18.pth'))):
        torch.manual_seed(0); m = PanelEncoder(EncoderConfig.tiny(**kw)).eval()
        b = b or _pages(m.config)
        net = m.vision[kw['vision'][-1]]
        n_train = sum(p.requires_grad for p in net.parameters())
        assert (n_train > 0) == (kw.get('finetune_blocks', 0) > 0)
        p = save_encoder(m, tmp_path / 'm.pt')
        shutil.rmtree(tmp_path / 'sig', ignore_errors=True)
        assert torch.allclose(load_encoder(p).encode_panels(b), m.encode_panels(b), atol=1e-5)

def test_default_architecture_with_packaged_minilm(tmp_path):
    "EncoderConfig(): 512-d, the packaged MiniLM frozen and left out of the checkpoint (which stays under 20 MB)"
    torch.manual_seed(0); m = PanelEncoder(EncoderConfig()).eval()
    t = m.encode_text_only(['WHERE IS THE MAP?', 'WHERE IS THE MAP', 'THE SHIP LEAVES AT DAWN'])
    assert t.shape == (3, 512) and float(t[0] @ t[1]) > float(t[0] @ t[2])
    assert not any(p.requires_grad for p in m.text_backbone.parameters())
    p = save_encoder(m, tmp_path / 'd.pt')
    assert (tmp_path / 'd.pt').stat().st_size < 20e6
    assert not any(k.startswith('text_backbone.') for k in encoder_state(m)['state_dict'])
    assert torch.allclose(load_encoder(p).encode_text_only(['WHERE IS THE MAP?']), t[:1], atol=1e-5)

@pytest.fixture(scope='module')
def shipped():
    "The default checkpoint that ships in comix/weights (trained by nbs/70_train.ipynb)"
    return load_encoder(None)

def test_shipped_checkpoint_records_its_data_and_licences(shipped):
    info = shipped.info
    assert DEFAULT_WEIGHTS.stat().st_size < 20e6 and shipped.feature_dim == 512
    assert set(info['licences']) == {'synthetic', 'atomic', 'pepper'} and not any('NC' in v for v in info['licences'].values())
    assert info['data']['pages'] > 200 and len(info['data']['version']) == 16 and info['code']['source_sha256']
    assert info['data']['quality_sources'] == ['ocr'] and info['threads'] == info['recipe']['train']['threads']   # OCR-only real runs
    assert info['val']['image_r1'] > 0.9 and info['val']['text_r1'] > 0.9

def test_shipped_same_content_other_layout_is_nearer(shipped):
    "Unseen synthetic content: a panel of (C, layout 1) is nearer its twin in (C, layout 2) than panel i of (C', layout 1)"
    wins = total = 0
    for s in range(6):
        C = [(5000 + 10 * s + i, f'WE MEET AT {s} {i} BY THE OLD MILL') for i in range(5)]
        C2 = [(6000 + 10 * s + i, f'NO TIME LEFT {s} {i} RUN') for i in range(5)]
        e = lambda c, l: shipped.encode_panels(collate([page_inputs(*content_page(c, layout_seed=l), shipped.config)]))[0]
        a, b, c = e(C, 2 * s), e(C, 2 * s + 1), e(C2, 2 * s)
        wins += int(((a * b).sum(1) > (a * c).sum(1)).sum()); total += len(C)
        ia, ib, ic = (shipped.encode_image_only([crop_panel(im, bb, shipped.config.image_size) for bb in bx]) for im, bx, _ in
                      (content_page(C, 2 * s), content_page(C, 2 * s + 1), content_page(C2, 2 * s)))
        wins += int(((ia * ib).sum(1) > (ia * ic).sum(1)).sum()); total += len(C)
    assert wins / total >= 0.95, wins / total

def test_shipped_modalities_share_one_space(shipped):
    "Unseen synthetic pages (random words): image-only and text-only embeddings of a panel find its fused embedding first"
    from comix.synth_art import WORDS
    rng, xs, crops, texts = random.Random(5), [], [], []
    for s in range(4):
        C = [(7000 + 10 * s + i, ' '.join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))) for i in range(5)]
        img, boxes, t = content_page(C, layout_seed=40 + s)
        xs.append(page_inputs(img, boxes, t, shipped.config)); crops += [crop_panel(img, b, shipped.config.image_size) for b in boxes]; texts += t
    b = collate(xs, None); f = shipped.encode_panels(b)[b['panel_mask']]
    n = len(f)
    i, t = shipped.encode_image_only(crops), shipped.encode_text_only(texts)
    assert (i @ f.T).argmax(1).tolist() == list(range(n)) and (t @ f.T).argmax(1).tolist() == list(range(n))

def test_shipped_image_and_text_of_a_panel_agree(shipped):
    """Unseen pages where a panel's picture and words are tied (a drawn subject, a caption naming it): a panel's
    image-only and text-only embeddings are nearer each other than other panels' (v1's third failure), and each
    view finds its own fused embedding first"""
    from comix.testing.model import subject_pages, modality_agreement
    ma = modality_agreement(shipped, subject_pages(range(9000, 9012)))
    assert ma.n.min() > 80, ma
    assert (ma.gap > 0.1).all() and (ma.auc > 0.8).all(), ma
    assert ma.loc['image - text', 'r1'] > 5 * ma.loc['image - text', 'chance'], ma
    assert (ma.loc[['image - fused', 'text - fused'], 'r1'] == 1).all(), ma

def test_shipped_finds_degraded_crops_of_real_pages(shipped):
    "Pepper&Carrot ep. 2 (the packaged fixture, CC BY): degraded crops of its 14 panels find their panels"
    import json, zipfile, io
    from comix.paths import fixture_path
    from comix.testing.search import degraded_crop
    gt = json.loads(fixture_path('peppercarrot_ep02_panels.json').read_text())['pages']
    z = zipfile.ZipFile(next(fixture_path('library', 'pepper-carrot').glob('*.cbz')))
    rng, keys, queries = np.random.default_rng(0), [], []
    for entry in gt:
        page = Image.open(io.BytesIO(z.read(next(n for n in z.namelist() if n.endswith(entry['entry']))))).convert('RGB')
        bx = [p['bbox_xywh'] for p in sorted(entry['panels'], key=lambda p: p['order'])]
        keys.append(shipped.encode_image_only([crop_panel(page, b, shipped.config.image_size) for b in bx]))
        queries.append(shipped.encode_image_only([degraded_crop(page, b, rng.uniform(0.4, 0.8), int(rng.integers(25, 60)),
                                                                rng.uniform(-0.03, 0.05)) for b in bx]))
    k, q = torch.cat(keys), torch.cat(queries)
    assert len(k) == 14 and (q @ k.T).argmax(1).tolist() == list(range(14))
