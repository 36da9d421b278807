import os
import sys
import tempfile
import threading

# huggingface_hub reads its settings when it is imported: point its cache at a throwaway
# folder before anything imports it, so tests never touch the user's cache. When pytest runs
# again in the same process (mutmut does), huggingface_hub keeps the folder it read first:
# subprocesses of the tests must be pointed at that same folder.
if "huggingface_hub.constants" in sys.modules:
    os.environ["HF_HOME"] = sys.modules["huggingface_hub.constants"].HF_HOME
else:
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="usdrl-test-hf-")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)

import pytest  # noqa: E402
import torch  # noqa: E402
from hub_server import FakeHub  # noqa: E402
from hypothesis import settings  # noqa: E402
from tqdm import tqdm  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

# tqdm guards its bars with a multiprocessing semaphore by default, shared by every process forked
# after it is made. mutmut forks one worker per mutant: a worker killed while holding it left every
# later worker's bar waiting forever (model.py's run counted them as timeouts). A thread lock is
# all the tests' bars need.
tqdm.set_lock(threading.RLock())

# The property tests draw the same examples on every run and every machine, so that a result
# never depends on luck. To explore new examples, run with ``--hypothesis-profile=random``
# (see docs/testing.md); a failure prints the blob that replays it.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("random", derandomize=False, print_blob=True)
settings.load_profile("deterministic")


@pytest.fixture(scope="session")
def fake_hub():
    """A running loopback hub; huggingface_hub is pointed at it for the whole session."""
    from huggingface_hub import constants

    hub = FakeHub().start()
    saved = constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE
    constants.ENDPOINT = hub.url
    constants.HUGGINGFACE_CO_URL_TEMPLATE = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    yield hub
    constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE = saved
    hub.stop()
