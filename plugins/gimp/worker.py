"""``python -m csr_plugins.gimp.worker``: the project side of the GIMP plug-in (protocol: bridge.py).

Region semantics: the condition vector comes from the WHOLE layer and the base net is applied to the
requested region only, so the result in the region equals ``csr retouch`` of the whole layer cropped to
that region (GIMP then blends it through the selection mask). Imports stay light (csr_core.registry,
inference and image_io's size limits: numpy, safetensors; no torch, no UI), so it starts in a fraction of a
second.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import threading
import time
import traceback

from . import bridge
from .bridge import BridgeError

NUMPY_DTYPES = {"u8": "uint8", "u16": "uint16", "f32": "float32"}
#: Memory teaching holds per pixel of the layers beyond the pixels sent (measured: 30 from 4 to 16 MP).
TEACH_BYTES_PER_PIXEL = 30


def layer_array(req: dict, data, index: int = 0):
    """The ``index``-th H x W x C layer in ``data`` (uint8 / uint16 / float32, as the request says)."""
    import numpy as np

    h, w, c = req["height"], req["width"], req["channels"]
    n = bridge.nbytes(w, h, c, req["dtype"])
    dtype = np.dtype(NUMPY_DTYPES[req["dtype"]])
    return np.frombuffer(data, dtype, count=n // dtype.itemsize, offset=index * n).reshape(h, w, c)


_REGISTRY = None


def _registry():
    """One registry per worker (it re-lists styles on each call; loaded models are cached by sha256)."""
    global _REGISTRY
    if _REGISTRY is None:
        from csr_core.registry import Registry

        _REGISTRY = Registry()
    return _REGISTRY


def _device() -> str:
    from csr_core.inference import resolve_device

    return str(resolve_device(os.environ.get("CSR_GIMP_DEVICE", "cpu")))


def styles(registry=None) -> dict:
    from csr_core.registry import DEFAULT_STYLE

    return {"styles": (registry or _registry()).names(), "default": DEFAULT_STYLE}


def retouch(req: dict, layer, registry=None, device: str | None = None):
    """The retouched region (h x w x C, the layer's dtype, alpha untouched), conditioned on the whole layer.

    ``colour_map`` of the whole layer applied to the region: so ``csr retouch`` of the whole layer,
    cropped, agrees (the same LUT-or-exact rule). Beside the layer it holds the region twice at most
    (``working_bytes``): the whole layer's colours are read in place.
    """
    import numpy as np

    from csr_core.inference import colour_map

    look = (registry or _registry()).look(req.get("style", "auto"))
    x, y, w, h = req["region"]
    rgb = layer[..., :3]
    if rgb.dtype == np.float32 and np.isnan(rgb.min()):  # min is NaN iff one is: no layer-sized temporary
        rgb = np.nan_to_num(rgb, nan=0.0)
    apply = colour_map(look, rgb, req["strength"], device or _device(), bool(req.get("exact")))
    colours = np.array(rgb[y:y + h, x:x + w], order="C")
    apply(colours, out=colours)
    if layer.shape[2] == 3:
        return colours
    out = np.array(layer[y:y + h, x:x + w], order="C")
    out[..., :3] = colours
    return out


def working_bytes(req: dict) -> int:
    """The memory a request holds in the worker, within a few tens of MB (measured): its pixels as sent, and
    for a retouch the region's colours and its result (one array for a layer without alpha)."""
    w, h = req["width"], req["height"]
    sent = bridge.payload_size(dict(req, check=False))
    if req["op"] == "teach":
        return sent + TEACH_BYTES_PER_PIXEL * w * h
    rw, rh = req["region"][2:]
    return sent + bridge.nbytes(rw, rh, 3 if req["channels"] == 3 else 3 + req["channels"], req["dtype"])


def check_size(req: dict) -> None:
    """Refuse layers over csr retouch's limits for a photo, before their pixels are read: more pixels than
    CSR_MAX_PIXELS, or more memory than its budget for that many (BYTES_PER_PIXEL per allowed pixel)."""
    from csr_core import image_io
    from csr_core.errors import ImageError

    w, h = req["width"], req["height"]
    limit = image_io.DEFAULT_MAX_PIXELS
    what, it = ("the layers are", "them") if req["op"] == "teach" else ("the layer is", "it")
    advice = f"scale or crop {it} first, or start GIMP with CSR_MAX_PIXELS set higher"
    if w * h > limit:
        raise ImageError(f"{what} too large: {w}x{h} ({millions(w * h)} MP) exceeds csr's limit of "
                         f"{millions(limit)} MP; {advice}")
    need, budget = working_bytes(req), limit * image_io.BYTES_PER_PIXEL
    if need > budget:
        raise ImageError(f"{what} too large: {w}x{h} needs {millions(need)} MB, more than csr's limit of "
                         f"{millions(budget)} MB; {advice}")


def millions(n: int) -> str:
    """``n`` in millions as people write it: '14,400', '12', '4.2', '0.0012'."""
    return f"{n / 1e6:,.0f}" if n >= 1e7 else f"{n / 1e6:.2g}"


def teach(req: dict, before, after, registry=None) -> dict:
    """Condition-only fine-tune of a new user style from one before/after layer pair.

    csr finetune wants 5+ pairs, so the pair is written whole plus five 80% crops (corners, centre):
    the fine-tune's validation is then optimistic, which the reply says. ``finished`` (a folder of
    finished photos in the same look, "" for none) is passed to ``finetune_style``.
    """
    import numpy as np
    import tifffile

    from csr_core.errors import MissingExtra, StyleExistsError, install_command, require
    from csr_core.pixels import from_float, to_float
    from csr_core.registry import DEFAULT_STYLE

    try:
        require("train", "teaching a style")
    except MissingExtra:  # GIMP runs this Python, not the shell's: name it, so pip installs in the right place
        python = f'"{sys.executable}"' if " " in sys.executable else sys.executable
        raise MissingExtra(f"teaching a style needs PyTorch, which the Python csr runs in for GIMP lacks: "
                           f"{python} -m {install_command('train')}") from None
    from csr_core.finetune import FinetuneConfig, finetune_style

    reg = registry or _registry()
    name = str(req.get("name") or "").strip()  # as typed in GIMP's dialog
    try:
        reg.check_new_name(name, bool(req.get("overwrite")))
    except StyleExistsError:  # the registry's hint names csr finetune's --overwrite, which the dialog lacks
        old = next((n for n in reg.names() if n.lower() == name.lower()), name)
        raise StyleExistsError(f"a style named '{old}' already exists; choose another name, or remove that "
                               f"style first: csr styles remove {old}") from None
    finished = os.path.expanduser((req.get("finished") or "").strip())
    if finished and not os.path.isabs(finished):  # the worker runs in the plug-in's folder: no guessing
        raise BridgeError(f"finished photos folder {finished!r}: give its full path")
    base = req.get("base") or (DEFAULT_STYLE if DEFAULT_STYLE in reg.names() else
                               next((s.name for s in reg.styles() if s.kind == "full"), DEFAULT_STYLE))
    h, w = before.shape[:2]
    ch, cw = max(1, h * 4 // 5), max(1, w * 4 // 5)
    crops = [(0, 0, h, w)] + [(y, x, ch, cw) for y, x in
                              ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2))]
    tweaks = req.get("config") or json.loads(os.environ.get("CSR_GIMP_TEACH_CONFIG") or "{}")  # tests: tiny runs
    known = FinetuneConfig.__dataclass_fields__
    cfg = FinetuneConfig(**{k: type(getattr(FinetuneConfig, k))(v) for k, v in tweaks.items() if k in known})
    with tempfile.TemporaryDirectory(prefix="csr-gimp-teach-") as tmp:
        for role, arr in (("before", before), ("after", after)):
            os.makedirs(os.path.join(tmp, role))
            u16 = from_float(to_float(np.nan_to_num(arr[..., :3])), np.uint16)
            for i, (y, x, hh, ww) in enumerate(crops):
                tifffile.imwrite(os.path.join(tmp, role, f"layer_{i}.tif"), u16[y:y + hh, x:x + ww],
                                 photometric="rgb")
        style = finetune_style(tmp, name, base, registry=reg, config=cfg, overwrite=bool(req.get("overwrite")),
                               finished=finished or None)
    psnr = style.card.get("scores", {}).get("validation", {}).get("psnr")
    count = style.card.get("training", {}).get("data", {}).get("finished")
    photos = f" and {count} finished photos" if count else ""
    return {"style": style.name, "base": base, "psnr": psnr, "finished": count,
            "note": f"taught from one photo (and crops of it){photos}: check it on other photos"}


def serve(stdin, stdout) -> int:
    """Answer requests until EOF; a request that fails gets ``ok: false`` and the next one is served."""
    from csr_core.errors import CsrError

    while True:
        header = bridge.read_header(stdin)
        if header is None:
            return 0
        req = bridge.check_request(header)  # a bad header ends the session: its payload size is unknown
        if req["op"] != "styles" and not req["check"]:
            try:
                check_size(req)
            except CsrError as exc:  # the session ends with its pixels unread
                raise BridgeError(str(exc)) from None
        data = bridge.read_exact(stdin, bridge.payload_size(req))
        try:
            reply, payload = handle(req, data)
        except (CsrError, BridgeError) as exc:
            reply, payload = {"ok": False, "error": str(exc)}, b""
        except MemoryError:
            reply, payload = {"ok": False, "error": "out of memory: try a smaller layer or selection"}, b""
        except Exception as exc:  # noqa: BLE001 - anything else still comes back as one line
            traceback.print_exc()
            reply, payload = {"ok": False, "error": one_line(exc)}, b""
        bridge.write_message(stdout, dict(reply, nbytes=len(payload)), payload)


def handle(req: dict, data) -> tuple[dict, memoryview | bytes]:
    """One checked request and its payload -> (reply header, reply bytes)."""
    if req["op"] == "styles":
        return dict(styles(), ok=True), b""
    if req["op"] == "retouch":
        from csr_core.registry import mix_spec

        req = dict(req, style=mix_spec(req["style"], req["mix_with"], req["mix_amount"]))
    if req["check"]:
        check_size(req)
        if req["op"] == "retouch":
            from csr_core.inference import check_strength

            check_strength(req["strength"])
            _registry().look(req["style"])
            return {"ok": True, "style": req["style"]}, b""
        return {"ok": True}, b""
    if req["op"] == "retouch":
        out = retouch(req, layer_array(req, data))
        return {"ok": True, "shape": list(out.shape), "style": req["style"]}, memoryview(out).cast("B")
    return dict(teach(req, layer_array(req, data, 0), layer_array(req, data, 1)), ok=True), b""


def one_line(exc: BaseException) -> str:
    msg = (str(exc).strip().splitlines() or [""])[0]
    if "out of memory" in msg.lower():
        return "out of memory: try a smaller layer or selection, or the cpu device"
    return f"{type(exc).__name__}: {msg}"[:500]


def stop_with_parent(interval: float = 0.5) -> None:
    """End this process as soon as the plug-in that started it is gone. GIMP's Cancel (and quitting GIMP)
    kills the plug-in outright; the worker must not finish teaching and save a style the user cancelled,
    nor keep computing a retouch no one reads. (Where a dead parent's children keep its id, as on Windows,
    the end of stdin still stops the worker between requests.)"""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="csr-stop-with-parent", daemon=True).start()


def main() -> int:
    stop_with_parent()
    try:
        try:
            importlib.import_module("csr_core.errors")
        except ImportError as exc:
            raise BridgeError(f"{sys.executable} cannot import csr_core ({exc}): run 'csr gimp install' "
                              f"from the environment where csr is installed") from None
        return serve(sys.stdin.buffer, sys.stdout.buffer)
    except BridgeError as exc:
        line = str(exc)
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        line = one_line(exc)
    print(bridge.ERROR_PREFIX + line, file=sys.stderr)
    try:
        bridge.write_message(sys.stdout.buffer, {"ok": False, "error": line})
    except OSError:
        pass
    return 1


if __name__ == "__main__":
    sys.exit(main())
