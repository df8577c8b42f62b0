"""Root pytest hooks: every test and every nbval-executed notebook writes to a temporary folder."""
import os
import tempfile


def pytest_configure(config):
    root = tempfile.mkdtemp(prefix="ecgnb-test-")
    os.environ["ECGNB_OUTPUTS"] = os.path.join(root, "outputs")
    os.environ["ECGNB_DATA"] = os.path.join(root, "data")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("TQDM_DISABLE", "1")
