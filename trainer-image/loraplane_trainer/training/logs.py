"""Plain log lines a `kubectl logs` reader can follow; a progress bar only on a terminal."""

from __future__ import annotations

import logging
import os
import sys
import warnings

log = logging.getLogger("loraplane_trainer")


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries stay quiet unless something is wrong.
    for noisy in ("urllib3", "botocore", "s3fs", "fsspec", "httpx", "huggingface_hub", "transformers", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Deprecation chatter of the libraries is not for the person reading the pod's log.
    warnings.filterwarnings("ignore", category=FutureWarning)
    if not sys.stderr.isatty():
        # Library progress bars ("Loading weights: 40%") garble `kubectl logs`: plain lines only.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_NO_TQDM", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass


def progress_bar(total: int, initial: int = 0, desc: str = "train"):
    """A tqdm bar when stderr is a terminal, else None (the log lines carry the progress)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False)
