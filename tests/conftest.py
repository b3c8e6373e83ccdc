"Shared pytest setup: nothing may reach a model hub, and ../shared is optional."
import os
from pathlib import Path
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

SHARED = Path(__file__).resolve().parents[1].parent/'shared'/'data'/'real'

@pytest.fixture(scope='session')
def real_data():
    "Folder of the real pages with ground truth (../shared/data/real); the test skips where it is absent."
    if not SHARED.is_dir(): pytest.skip(f'{SHARED} not present (it exists in CI, not in a user clone)')
    return SHARED

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than a few seconds')
    config.addinivalue_line('markers', 'gpu: needs a CUDA device')

def pytest_collection_modifyitems(config, items):
    "Tests marked `gpu` run only where CUDA is available (never in CI)."
    try:
        import torch; has_cuda = torch.cuda.is_available()
    except Exception: has_cuda = False
    if has_cuda: return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords: item.add_marker(skip)
