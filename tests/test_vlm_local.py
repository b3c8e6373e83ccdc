"""Local transformers backend of the VLM stage, on a tiny random LLaVA-style model built from configs
(nothing is downloaded). Its output is garbage: every page must end as an audit row with a parse reason."""
import pandas as pd
import pytest
import torch
from PIL import Image

from comix.paths import Layout, read_audit, reconcile
from comix.stage import run_stage
from comix.extract import run_extract
from comix.synth import synth_book
from comix.vlm import VlmStage

torch.set_num_threads(1)
pytest.importorskip('transformers')
from comix.vlm_local import LocalVLM  # noqa: E402
from comix.testing.vlm import save_tiny_vlm  # noqa: E402

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
    synth_book(tmp_path / 'lib' / 'b.cbz', n_pages=3, size=(400, 600), text=False)
    out = tmp_path / 'out'
    ids = sorted(run_extract({'loc': tmp_path / 'lib'}, out, workers=1, progress=False, show=False).table.page_id)
    assert len(ids) == 3
    res = run_stage(VlmStage(tiny, backend='local', max_tokens=24), out, progress=False, show=False)
    audit = res.audit
    reconcile(audit, 3, show=False)
    assert sorted(audit.page_id) == ids and res.exit_code == 3
    assert set(audit.status) == {'error'} and set(audit.reason) <= PARSE_REASONS
    assert (audit.detail.str.len() > 0).all()              # the audit says what was wrong with each reply
    assert not (out / 'text' / 'vlm').exists()              # nothing invalid is written as a result
    assert pd.read_parquet(Layout(out).text_table('vlm')).empty
    reconcile(read_audit(out, 'text-vlm'), 3, show=False)
    # a plain rerun keeps the errors; --retry-errors tries the failed pages again (nothing was marked done)
    same = run_stage(VlmStage(tiny, backend='local', max_tokens=24), out, progress=False, show=False)
    assert same.counts['processed'] == 0 and set(same.audit.status) == {'error'} and same.exit_code == 3
    again = run_stage(VlmStage(tiny, backend='local', max_tokens=24), out, progress=False, show=False, retry_errors=True)
    assert set(again.audit.status) == {'error'} and len(again.audit) == 3 and again.counts['processed'] == 3
