#!/usr/bin/env python3
"""CSRNet Retouch for GIMP 3 (Filters > Enhance): a thin plug-in; the csr worker does the work.

Runs under GIMP's own Python (gi + stdlib): it reads the active layer as sRGB "R'G'B'(A)" (u8 / u16 when
stored so, else float: never squeezed through 8 bits), hands it to
``python -m csr_plugins.gimp.worker`` in the project's interpreter (see bridge.py) and writes the retouched
selection bounds back through the shadow buffer, so the selection mask, alpha and one undo step are
GIMP's own. The condition vector comes from the whole layer; only the selected region changes.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # installed: bridge.py beside us; in the checkout: one up
import bridge  # noqa: E402

_T0 = time.time()
_TIMING = bool(os.environ.get("CSR_GIMP_TIMING"))
_worker = None  # one worker per plug-in run (imports once), started as early as possible
_worker_error = None
_STYLES = (["auto"], "auto")  # (names, registry default) as listed when the procedure was created
_LISTED = False  # True once list_styles ran


def mark(what):
    """With CSR_GIMP_TIMING set, print seconds since the plug-in started (to GIMP's stderr)."""
    if _TIMING:
        print(f"csr_retouch: {time.time() - _T0:6.2f} s {what}", file=sys.stderr, flush=True)


def get_worker():
    """The running worker, started on first use; BridgeError when csr cannot be reached."""
    global _worker, _worker_error
    if _worker is None and _worker_error is None:
        try:
            _worker = bridge.Worker(HERE)
        except bridge.BridgeError as exc:
            _worker_error = str(exc)
    if _worker is None:
        raise bridge.BridgeError(_worker_error)
    return _worker


if "-run" in sys.argv:  # GIMP starts plug-ins with -query, -init or -run
    try:
        get_worker()  # the worker's imports now overlap ours and GIMP's handshake
    except bridge.BridgeError:
        pass  # reported by the procedure

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

RETOUCH = "python-fu-csr-retouch"
TEACH = "python-fu-csr-teach-style"
MENU = "<Image>/Filters/Enhance"
RW = GObject.ParamFlags.READWRITE
#: The style argument's default: GIMP drops a style name its cached list lacks (it only warns), so a PDB
#: call with an unknown name arrives as this and fails loudly instead of silently using another style.
UNSET = "(choose)"
NO_MIX = "(none)"  # the Mix with choice when no second style is mixed in
#: The retouch procedure's arguments after image and drawables, in the dialog's order.
ARGS = ("style", "strength", "exact", "mix-with", "mix-amount")
DIALOG = ("style", "mix-with", "mix-amount", "strength", "exact")


def fail(procedure, message):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(f"CSRNet: {message}"))


def check_layer(image, drawables):
    """The one RGB, non-group layer to work on, or an error message."""
    if len(drawables) != 1:
        return None, "select exactly one layer"
    layer = drawables[0]
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        return None, "works on RGB images only; convert with Image > Mode > RGB first"
    if not layer.is_layer():
        return None, "works on layers, not on channels or layer masks"
    if layer.is_group():
        return None, "cannot retouch a layer group; select one of its layers"
    return layer, None


def wire_dtype(image):
    """u8 / u16 when the layer already holds exactly that in sRGB (a plain copy), else float32."""
    p = image.get_precision()
    if image.get_color_profile() is not None:  # a non-built-in profile: convert in float, no rounding
        return "f32"
    if p in (Gimp.Precision.U8_NON_LINEAR, Gimp.Precision.U8_PERCEPTUAL):
        return "u8"
    if p in (Gimp.Precision.U16_NON_LINEAR, Gimp.Precision.U16_PERCEPTUAL):
        return "u16"
    return "f32"


def layer_args(layer, dtype, channels=None):
    """The request fields that describe ``layer`` in the wire format (width, height, channels, dtype)."""
    return dict(width=layer.get_width(), height=layer.get_height(),
                channels=channels or (4 if layer.has_alpha() else 3), dtype=dtype)


def read_layer(layer, args):
    """The whole layer's pixels, as ``layer_args`` describes them."""
    rect = Gegl.Rectangle.new(0, 0, args["width"], args["height"])
    return layer.get_buffer().get(rect, 1.0, bridge.babl_format(args["channels"], args["dtype"]),
                                  Gegl.AbyssPolicy.CLAMP)


def show_dialog(procedure, config, title, order=None):
    """Interactive runs: the procedure's own dialog (its arguments in ``order``, else as declared); False when
    cancelled."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(procedure.get_name())
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    dialog.fill(list(order) if order else None)
    ok = dialog.run()
    dialog.destroy()
    return ok


def retouch_run(procedure, run_mode, image, drawables, config, data):
    layer, problem = check_layer(image, drawables)
    if problem:
        return fail(procedure, problem)
    try:
        worker = get_worker()  # first: without csr, the style list is only a fallback
    except bridge.BridgeError as exc:
        return fail(procedure, str(exc))
    if run_mode != Gimp.RunMode.NONINTERACTIVE and config.get_property("style") == UNSET:
        config.set_property("style", _STYLES[1])
    if run_mode == Gimp.RunMode.INTERACTIVE and not show_dialog(procedure, config, "CSRNet Retouch", DIALOG):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    style, strength, exact, second, amount = (config.get_property(k) for k in ARGS)
    if style == UNSET:
        return fail(procedure, f"unknown or missing style: pass one of {', '.join(_STYLES[0])} (GIMP updates "
                               f"its list of styles when it restarts: restart it to use one made since)")
    if amount > 0 and second == NO_MIX:
        return fail(procedure, f"unknown or missing style to mix in: pass one of {', '.join(_STYLES[0])} as Mix "
                               f"with, or set Mix amount to 0")
    ok, x, y, w, h = layer.mask_intersect()
    if not ok or w <= 0 or h <= 0:
        return fail(procedure, "the selection does not overlap the active layer: nothing to retouch")
    try:
        args = dict(layer_args(layer, wire_dtype(image)), style=style, mix_with="" if second == NO_MIX else second,
                    mix_amount=amount, strength=strength, exact=exact, region=[x, y, w, h])
        reply, _ = worker.ask("retouch", check=True, **args)  # a layer too large, a style gone: said before reading
        Gimp.progress_init(f"CSRNet: retouching with '{reply.get('style', style)}'")  # the mix csr made
        mark("dialog done")
        pixels = read_layer(layer, args)
        mark(f"read {args['width']}x{args['height']}x{args['channels']} {args['dtype']}")
        _, out = worker.ask("retouch", pixels, **args)
    except bridge.BridgeError as exc:
        return fail(procedure, str(exc))
    mark("worker done")
    shadow = layer.get_shadow_buffer()
    shadow.set(Gegl.Rectangle.new(x, y, w, h), bridge.babl_format(args["channels"], args["dtype"]), out)
    shadow.flush()
    image.undo_group_start()
    layer.merge_shadow(True)  # blends through the selection mask, pushes the undo step
    layer.update(x, y, w, h)
    image.undo_group_end()
    mark("written back")
    Gimp.progress_end()
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def teach_run(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE and not show_dialog(procedure, config, "Teach CSRNet Style"):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    before, after, name, finished = (config.get_property(k) for k in ("before", "after", "name", "finished"))
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        return fail(procedure, "works on RGB images only; convert with Image > Mode > RGB first")
    if before is None or after is None or before.get_id() == after.get_id():
        return fail(procedure, "choose two different layers: the photo before and after your edit")
    if (before.get_width(), before.get_height()) != (after.get_width(), after.get_height()):
        return fail(procedure, "the before and after layers must have the same size")
    try:
        worker = get_worker()
        Gimp.progress_init(f"CSRNet: teaching style '{name}' (this takes a while)")
        args = dict(layer_args(before, "f32", 3), name=name, finished=finished or "")
        worker.ask("teach", check=True, **args)
        reply, _ = worker.ask("teach", [read_layer(before, args), read_layer(after, args)], **args)
    except bridge.BridgeError as exc:
        return fail(procedure, str(exc))
    remember_styles(*bridge.list_styles(worker, _STYLES[0])[::2])
    Gimp.progress_end()
    Gimp.message(f"CSRNet: style '{reply.get('style', name)}' saved (fine-tuned from '{reply.get('base')}'); "
                 f"{reply.get('note', '')}. It is listed the next time you open CSRNet Retouch.")
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def remember_styles(names, why):
    """Record a style list the worker gave (``why`` None); when it changed during a run, GIMP re-queries the
    plug-in at its next start, so the PDB's style choices include new styles (a style just taught)."""
    try:
        if why is None and bridge.record_styles(HERE, names) and "-run" in sys.argv:
            os.utime(__file__)
    except OSError:
        pass


class CsrRetouch(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [RETOUCH, TEACH]

    def do_create_procedure(self, name):
        if name == RETOUCH:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, retouch_run, None)
            proc.set_menu_label("CSRNet _Retouch...")
            proc.set_documentation(
                "Automatic global retouching (exposure, white balance, contrast, colour) with a CSRNet style",
                "Retouches the selected part of the active layer with a csr style (built-in or your own). "
                "The look is computed from the whole layer; alpha is kept; one undo step.", name)
            proc.add_choice_argument("style", "_Style", "csr style name (see: csr styles list)",
                                     *self._styles(UNSET, "(choose a style)"), RW)
            proc.add_double_argument("strength", "S_trength", "0 = unchanged, 1 = full style, 2 = exaggerated",
                                     0.0, 2.0, 1.0, RW)
            proc.add_boolean_argument("exact", "_Exact (slower)", "Run the network on every pixel instead of "
                                      "through the per-layer 3-D LUT (the LUT is at most 2/255 off)", False, RW)
            proc.add_choice_argument("mix-with", "_Mix with", "A second csr style to mix into the first one",
                                     *self._styles(NO_MIX, "(no second style)"), RW)
            proc.add_double_argument("mix-amount", "Mix _amount", "How much of the second style: 0 = only the "
                                     "first style, 0.3 = 70% of it and 30% of the second, 1 = only the second",
                                     0.0, 1.0, 0.0, RW)
        elif name == TEACH:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, teach_run, None)
            proc.set_menu_label("Teach CSRNet _Style from Layers...")
            proc.set_documentation(
                "Teach csr a new style from a before and an after layer (condition-only fine-tune)",
                "Saves a user style that every csr front end can use.", name)
            proc.add_layer_argument("before", "_Before", "The photo before your edit", False, RW)
            proc.add_layer_argument("after", "_After", "The same photo after your edit", False, RW)
            proc.add_string_argument("name", "Style _name", "Name of the new style", "my-style", RW)
            proc.add_string_argument("finished", "_Finished photos folder",
                                     "Optional: the full path of a folder of finished photos in the same look "
                                     "(a portfolio, an exported album) to learn from as well; empty for none",
                                     "", RW)
        else:
            return None
        proc.set_image_types("RGB*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        proc.set_attribution("csr contributors", "csr contributors", "2025")
        proc.add_menu_path(MENU)
        return proc

    @staticmethod
    def _styles(unset, label):
        """(Gimp.Choice, ``unset``): the styles the worker lists now (if it cannot: those recorded at install),
        then ``unset`` shown as ``label``, the default."""
        if not _LISTED:
            list_styles()
        names = _STYLES[0]
        choice = Gimp.Choice.new()
        for i, n in enumerate(names):
            choice.add(n, i, n, "")
        choice.add(unset, len(names), label, "")
        return choice, unset


def list_styles():
    """Ask the worker for the styles once per plug-in run (if it cannot: those recorded at install)."""
    global _STYLES, _LISTED
    running = "-run" in sys.argv
    fallback = bridge.load_config(HERE).get("styles") or ["auto"]  # recorded by csr gimp install
    try:
        worker = get_worker() if running else bridge.Worker(HERE)
        names, default, why = bridge.list_styles(worker, fallback)
        if not running:
            worker.close()
    except bridge.BridgeError as exc:
        names, default, why = list(fallback), fallback[0], str(exc)
    remember_styles(names, why)
    _STYLES, _LISTED = (names, default), True
    mark(f"styles listed ({why or 'ok'})")


Gimp.main(CsrRetouch.__gtype__, sys.argv)
