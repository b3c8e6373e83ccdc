"""Local transformers backend of the VLM stage, on a tiny random LLaVA-style model built from configs
(nothing is downloaded). Its output is garbage: every page must end as an audit row with a parse reason."""
import json

import pandas as pd
import pytest
import torch
from PIL import Image

from comix.paths import reconcile
from comix.vlm import errors_path, run_vlm

torch.set_num_threads(1)
pytest.importorskip('transformers')
from comix.vlm_local import LocalVLM, save_tiny_vlm  # noqa: E402

PARSE_REASONS = {'no_json', 'invalid_json', 'truncated', 'schema_invalid', 'empty'}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return save_tiny_vlm(tmp_path_factory.mktemp('tiny') / 'model')


def test_tiny_model_loads_through_auto_classes(tiny):
    vlm = LocalVLM(tiny, device='cpu', max_new_tokens=12)
    assert type(vlm.net).__name__ == 'LlavaForConditionalGeneration'
    r = vlm.generate(Image.new('RGB', (640, 960), 'white'))
    assert r.usage['completion_tokens'] == 12 and r.finish_reason == 'length' and r.usage['prompt_tokens'] > 100
    assert isinstance(r.text, str) and r.model == tiny


def test_garbage_from_local_model_ends_as_audit_rows(tmp_path, tiny):
    pages = [(f'loc/b/{i:04d}', Image.new('RGB', (400, 600), (255, 255 - 40 * i, 255))) for i in range(3)]
    audit = run_vlm(tmp_path, tiny, backend='local', pages=pages, max_tokens=24, progress=False)
    reconcile(audit, 3, show=False)
    assert set(audit.status) == {'error'} and set(audit.reason) <= PARSE_REASONS
    assert not (tmp_path / 'text' / 'vlm').exists()  # nothing invalid is written as a result
    log = [json.loads(l) for l in open(errors_path(tmp_path))]
    assert sorted(l['page_id'] for l in log) == [p for p, _ in pages] and all(l['model'] == tiny for l in log)
    assert pd.read_parquet(tmp_path / 'text' / 'vlm.parquet').empty
    # failed pages are tried again on the next run (nothing was marked done)
    again = run_vlm(tmp_path, tiny, backend='local', pages=pages, max_tokens=8, retry_failed=True, progress=False)
    assert set(again.status) == {'error'} and len(again) == 3
