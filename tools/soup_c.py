"""Screen (not shipped): a weight soup of C's builds, scored on every set.

    python tools/soup_c.py C C-draw-0 C-draw-1 C-draw-2 C-draw-3 C-draw-4

The named styles (built-in, or user styles such as ``build_c.py --draw N`` makes) all tune the same GFM layers
from the same ``auto``; their weights are averaged into the user style ``C-soup`` and scored as ``build_c.py``
scores a build.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_c as B  # noqa: E402
from csr_core.registry import Registry, user_dir  # noqa: E402


def main(*names: str) -> None:
    reg = Registry(B.ROOT / "weights", user_dir())
    states = [reg.net(n).state for n in names]
    soup = {k: np.mean([s[k] for s in states], axis=0).astype(states[0][k].dtype) for k in states[0]}
    reg.save_style("C-soup", soup, {"description": f"the mean of {', '.join(names)}"}, base=reg.get("C"),
                   overwrite=True)
    print(json.dumps({k: v["by_strength"]["1"] for k, v in B.scores("C-soup", reg).items()}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
