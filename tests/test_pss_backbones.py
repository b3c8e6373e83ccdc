"Pretrained image features for comix pss (CLIP / SigLIP through transformers, CLIP through open_clip), on tiny random configs saved and loaded back: nothing is downloaded."
import json
import numpy as np, pytest, torch
from PIL import Image
from comix.pss_features import load_image_backbone, BookFeatures, GROUPS, position_stats
from comix.pss_labels import PAGE_CLASSES
from comix.pss_model import PssConfig, PssModel, TrainBook, train_pss, predict_probs, save_pss, load_pss

TINY_VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)
TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, vocab_size=99)
PAGES = [Image.new('RGB', (60, 90), c) for c in ((250, 240, 200), (20, 20, 20), (200, 30, 30))]

def _tiny_clip(d):
    from transformers import CLIPConfig, CLIPModel, CLIPImageProcessor
    cfg = CLIPConfig(vision_config=dict(TINY_VISION, projection_dim=16), text_config=dict(TINY_TEXT, projection_dim=16,
                     bos_token_id=0, eos_token_id=1, pad_token_id=2), projection_dim=16)
    torch.manual_seed(0); CLIPModel(cfg).save_pretrained(d)
    CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(d)

def _tiny_siglip(d):
    from transformers import SiglipConfig, SiglipModel, SiglipImageProcessor
    cfg = SiglipConfig(vision_config=TINY_VISION, text_config=dict(TINY_TEXT, max_position_embeddings=16))
    torch.manual_seed(0); SiglipModel(cfg).save_pretrained(d)
    SiglipImageProcessor(size={'height': 32, 'width': 32}).save_pretrained(d)

@pytest.mark.parametrize('make,dim', [(_tiny_clip, 16), (_tiny_siglip, 32)])
def test_transformers_backbones(tmp_path, make, dim):
    make(tmp_path)
    bb = load_image_backbone(str(tmp_path))
    f = bb.encode(PAGES)
    assert f.shape == (3, dim) and bb.dim == dim and bb.info['kind'] == 'transformers'
    assert np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    assert not np.allclose(f[0], f[1])  # different pages, different features
    assert np.allclose(load_image_backbone(str(tmp_path)).encode(PAGES), f, atol=1e-5)  # same weights, same features

def test_open_clip_backbone(tmp_path):
    import open_clip
    cfg = dict(embed_dim=16, vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
               text_cfg=dict(context_length=8, vocab_size=100, width=32, heads=2, layers=1))
    (tmp_path/'comix-tiny-clip.json').write_text(json.dumps(cfg)); open_clip.add_model_config(tmp_path/'comix-tiny-clip.json')
    torch.manual_seed(0); m = open_clip.create_model('comix-tiny-clip', pretrained=None)
    torch.save(m.state_dict(), tmp_path/'tiny.pt')
    bb = load_image_backbone('open_clip:comix-tiny-clip', checkpoint=str(tmp_path/'tiny.pt'))
    f = bb.encode(PAGES)
    assert f.shape == (3, 16) and bb.info == dict(kind='open_clip', name='comix-tiny-clip', checkpoint=str(tmp_path/'tiny.pt'), dim=16)
    assert np.allclose(load_image_backbone('open_clip:comix-tiny-clip', checkpoint=str(tmp_path/'tiny.pt')).encode(PAGES), f, atol=1e-5)

def test_backbone_features_as_an_extra_group(tmp_path):
    "The page-sequence model takes backbone features as one more group, trains on them and round-trips through save/load"
    _tiny_clip(tmp_path/'clip'); bb = load_image_backbone(str(tmp_path/'clip'))
    rng = np.random.default_rng(0); books = []
    for k in range(6):
        n = 12; lab = ['cover'] + ['story', 'advertisement']*5 + ['story']
        ims = [PAGES[0] if l == 'cover' else PAGES[1] if l == 'story' else PAGES[2] for l in lab]
        x = dict(position=position_stats(n), clip=bb.encode(ims) + rng.normal(0, 0.01, (n, bb.dim)).astype(np.float32))
        books.append(TrainBook(BookFeatures([f'b{k}/{i}' for i in range(n)], x, {g: np.ones(n, bool) for g in x}), lab))
    cfg = PssConfig.tiny(groups=dict(GROUPS, clip=bb.dim), group_dropout={})
    model, losses = train_pss(books, cfg, steps=60, lr=5e-3, batch=4, warmup=10, progress=False)
    assert losses[-1] < losses[0] / 2
    pred = predict_probs(model, books[0].features).argmax(1)
    assert (pred == np.array([PAGE_CLASSES.index(l) for l in books[0].labels])).mean() > 0.9
    save_pss(model, tmp_path/'m.pt'); back = load_pss(tmp_path/'m.pt')
    assert back.cfg.groups['clip'] == bb.dim
    assert np.allclose(predict_probs(back, books[0].features), predict_probs(model, books[0].features), atol=2e-2)
