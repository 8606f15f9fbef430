"""Child process for test_dos_bounds.py: run one entry point over hostile inputs, one JSON line each.

    python tests/capped_entry.py photos core|cli|web FOLDER OUT [.EXT]   # every file of FOLDER (to .EXT)
    python tests/capped_entry.py spec PARTS                       # a style mix of PARTS parts
    python tests/capped_entry.py zip FILE                         # a teaching upload
    python tests/capped_entry.py import FILE                      # csr styles import
    python tests/capped_entry.py styles                           # csr styles list ($CSR_HOME)
    python tests/capped_entry.py app                              # build the web app ($CSR_HOME)
    python tests/capped_entry.py profiles COUNT MB                # web renders of photos with big ICC profiles

Each input prints {"start": name} before and {"name", "outcome", "message", "s", "warnings"} after, so a child
killed by its resource caps still shows which input it was on.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def _attempt(name: str, fn) -> None:
    from csr_core.errors import CsrError

    _emit(start=name)
    t0 = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            message = fn() or ""
            outcome = "ok"
        except CsrError as exc:
            outcome, message = "error", str(exc)
    _emit(name=name, outcome=outcome, message=message, s=round(time.monotonic() - t0, 3),
          warnings=[str(w.message) for w in caught])


def _cli(*args: str) -> str:
    from click.testing import CliRunner

    from csr_cli.main import cli
    from csr_core.errors import CsrError

    res = CliRunner().invoke(cli, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    if res.exit_code:
        raise CsrError(res.output.strip())
    return res.output.strip()


def photos(entry: str, folder: str, out: str, ext: str = ".png") -> None:
    from csr_core.image_io import load_photo
    from csr_core.pipeline import default_registry
    from csr_plugins.gradio_app.service import Limits, Service

    service = Service(default_registry(), Limits()) if entry == "web" else None
    for path in sorted(Path(folder).iterdir()):
        dest = Path(out) / f"{path.stem}{ext}"
        fn = {"core": lambda: load_photo(path) and None,
              "cli": lambda: _cli("retouch", str(path), "-o", str(dest)),
              "web": lambda: service.render(str(path), "auto", 1.0) and None}[entry]
        _attempt(path.name, fn)


def spec(parts: str) -> None:
    import numpy as np

    from csr_core.pipeline import default_registry
    from csr_plugins.gradio_app.service import Limits, Loaded, Service

    service = Service(default_registry(), Limits())
    small = np.full((8, 8, 3), 0.5, np.float32)
    loaded = Loaded(("x",), "x", (8, 8), small, (small * 255).astype(np.uint8))
    mix = ",".join(["auto"] * int(parts))
    _attempt(f"mix of {parts}", lambda: service.preview(loaded, mix, 1.0) is not None and None)


def unzip(file: str) -> None:
    from csr_plugins.gradio_app.service import Limits
    from csr_plugins.gradio_app.teach import Stager

    with tempfile.TemporaryDirectory() as tmp:
        _attempt(Path(file).name, lambda: Stager(Path(tmp), Limits()).add(Path(file)))


def import_(file: str) -> None:
    _attempt(Path(file).name, lambda: _cli("styles", "import", file, "--name", "imported"))


def styles() -> None:
    _attempt("styles list", lambda: _cli("styles", "list"))
    _attempt("retouch with a user style", lambda: _cli("retouch", str(REPO / "samples" / "coffee_dark.jpg"),
                                                         "-o", tempfile.mktemp(suffix=".jpg"), "--style", "x"))


def profiles(count: str, mb: str) -> None:
    """Render ``count`` TIFFs, each with its own ``mb`` MB ICC profile, in the web app's Service; the
    message of each is the resident memory (MB) left once the request is over."""
    import gc
    import struct

    import imagecodecs
    import numpy as np

    import hostile
    from csr_core.pipeline import default_registry
    from csr_plugins.gradio_app.service import Limits, Service

    service = Service(default_registry(), Limits())
    srgb = imagecodecs.cms_profile("srgb")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(int(count)):
            icc = bytearray(srgb + bytes(int(mb) << 20))
            icc[-8:] = struct.pack(">Q", i)  # each profile distinct
            struct.pack_into(">I", icc, 0, len(icc))
            photo = Path(tmp) / f"icc{i}.tif"
            photo.write_bytes(hostile.tiff(hostile.pixels(16, 16), iccprofile=bytes(icc)))
            del icc

            def render() -> str:
                service.render(str(photo), "auto", 1.0).unlink()
                photo.unlink()
                gc.collect()
                return str(int(Path("/proc/self/statm").read_text().split()[1]) * 4096 >> 20)

            _attempt(photo.name, render)


def app() -> None:
    def build() -> str:
        from csr_plugins.gradio_app.app import build_app

        return ",".join(build_app().csr["service"].names())

    _attempt("build the app", build)


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    {"photos": photos, "spec": spec, "zip": unzip, "import": import_, "styles": styles, "app": app,
     "profiles": profiles}[command](*rest)
