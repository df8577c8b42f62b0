"""Root pytest hooks: every test and every nbval-executed notebook writes to a temporary folder."""
import os
import tempfile


def pytest_configure(config):
    root = tempfile.mkdtemp(prefix="ecgnb-test-")
    os.environ["ECGNB_OUTPUTS"] = os.path.join(root, "outputs")
    os.environ["ECGNB_DATA"] = os.path.join(root, "data")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_collection_modifyitems(config, items):
    """Notebook cells (nbval) are slow; ``gpu`` tests are skipped where CUDA is absent."""
    import pytest

    has_cuda = None
    for item in items:
        if item.nodeid.endswith(".ipynb") or ".ipynb::" in item.nodeid:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("gpu") is not None:
            if has_cuda is None:
                import torch
                has_cuda = torch.cuda.is_available()
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="needs CUDA; none on this machine"))
