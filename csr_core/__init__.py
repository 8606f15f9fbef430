"""csr core: CSRNet photo retouching without any UI dependencies."""
from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"
#: Retouching strength s blends ``out = in + s * (styled - in)``, 0 <= s <= MAX_STRENGTH.
MAX_STRENGTH = 2.0
#: Where the network runs: cpu (numpy), or through PyTorch cuda, mps or auto (the best available).
DEVICES = ("cpu", "cuda", "mps", "auto")
#: Long side of the copy the condition net sees: a style's ``cond_size`` lies in this range. The net's cost
#: grows with its square: 1024 takes ~1 s and 0.2 GB on any photo, 4096 would take ~13 s and 2.3 GB.
COND_SIZES = (32, 1024)
#: True where the program started OpenBLAS with one thread (OPENBLAS_NUM_THREADS=1 before numpy's first
#: import, as the csr command does): ``csr_core.threads`` then has no BLAS threads to limit.
BLAS_STARTED_SERIAL = False

#: The bundled sample photos (``data_dir("samples")``). Only these are samples: the quick start writes its
#: result beside them (``coffee_dark_retouched.jpg``), and that is the reader's photo, not one of ours.
SAMPLE_PHOTOS = ("astronaut.jpg", "cat_cast_flat.jpg", "coffee_dark.jpg")


def data_dir(name: str) -> Path:
    """The folder of the bundled ``weights`` or ``samples``: installed as ``csr_core.<name>``, or the
    checkout's top-level folder when ``csr_core`` is imported from a source tree (``python -m`` run in
    the repository after a non-editable install). Found from the package's import spec (importing
    ``importlib.resources`` would cost a short run several milliseconds)."""
    from importlib.util import find_spec

    spec = find_spec(f"csr_core.{name}")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / name
