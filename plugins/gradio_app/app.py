"""The Gradio UI: wiring only. The work is in ``service.py`` / ``teach.py``, which call ``csr_core``."""
from __future__ import annotations

import functools
import logging

import gradio as gr
from starlette.middleware import Middleware

from csr_core.errors import CsrError
from csr_core.image_io import SUPPORTED_EXTENSIONS
from csr_core.inference import MAX_STRENGTH
from csr_core.registry import DEFAULT_STYLE, Registry

from .service import NO_MIX, READ_ONLY, Limits, Service, public, sample_photos, style_spec
from .teach import FINISHED_HINT, PAIRS_HINT, Teacher
from .uploads import UPLOAD_TTL_S, UploadGuard

log = logging.getLogger("csr.app")
TABLE_HEADERS = ["name", "origin", "kind", "base", "description", "validation score"]


def friendly(fn):
    """Show CsrError (and anything unexpected) as a one-line gr.Error, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except CsrError as exc:
            raise gr.Error(public(str(exc)), print_exception=False) from None
        except Exception as exc:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"unexpected error ({type(exc).__name__}); details are in the server log",
                           print_exception=False) from None

    return wrapper


def build_app(registry: Registry | None = None, *, limits: Limits | None = None, device: str = "cpu",
              finetune_kwargs: dict | None = None, allow_edits: bool = False) -> gr.Blocks:
    """The app on ``registry`` (default: the shared one); queue limits set, ready for ``launch``.

    The registry is read-only unless ``allow_edits``: no teaching, no deleting (neither in the page
    nor as API endpoints)."""
    if registry is None:
        from csr_core.pipeline import default_registry

        registry = default_registry()
    limits = limits or Limits.from_env()
    svc = Service(registry, limits, device, allow_edits=allow_edits)
    teacher = Teacher(registry, limits, allow_edits=allow_edits, **(finetune_kwargs or {}))

    def initial(names):
        return DEFAULT_STYLE if DEFAULT_STYLE in names else (names or [None])[0]

    def pick(current, names, empty=None):
        choices = ([empty] if empty else []) + names
        return gr.update(choices=choices, value=current if current in choices else empty or initial(names))

    def refresh(style, mix, base, chosen):
        names = svc.names()
        chosen = gr.update(choices=names, value=chosen if chosen in names else None)
        return pick(style, names), pick(mix, names, NO_MIX), pick(base, names), chosen, svc.table()

    @friendly
    def preview(path, style, strength, mix, weight, cached):
        if not path:
            return None, "", None
        loaded = svc.load(path, cached)
        after = svc.preview(loaded, style_spec(style, mix, weight), strength)
        (w, h), (pw, ph) = loaded.size, loaded.before.shape[1::-1]
        note = f"**{loaded.name}** · {w}×{h} · preview at {pw}×{ph}; the download is full resolution."
        return (svc.shown(loaded.before), svc.shown(after)), note, loaded

    @friendly
    def render(path, style, strength, mix, weight):
        if not path:
            raise gr.Error("upload a photo first", print_exception=False)
        return str(svc.render(path, style_spec(style, mix, weight), strength))

    @friendly
    def teach(files, name, base, style, mix, chosen, finished=None, progress=gr.Progress()):
        progress(0, desc="preparing pairs")
        summary = teacher.run(files, name, base, on_progress=lambda f, text: progress(f, desc=text),
                              finished=finished)
        return summary, *refresh(style, mix, base, chosen)

    @friendly
    def delete(name, style, mix, base):
        msg = svc.delete(name)
        return msg, *refresh(style, mix, base, None)

    @friendly
    def card(name):
        return svc.card(name) if name else None

    names = svc.names()
    with gr.Blocks(title="csr · photo retouching", delete_cache=(UPLOAD_TTL_S // 3, UPLOAD_TTL_S)) as demo:
        gr.Markdown("## csr · automatic photo retouching (CSRNet)")
        state = gr.State(None, time_to_live=3600)  # the session's preview copy
        with gr.Tabs():
            with gr.Tab("Retouch", id="retouch") as tab_retouch:
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        photo = gr.File(label="Photo (JPEG, PNG, TIFF incl. 16-bit, WebP, HEIC, RAW)", elem_id="photo",
                                        file_types=list(SUPPORTED_EXTENSIONS))
                        samples = sample_photos()
                        gallery = gr.Gallery([(str(p), p.stem) for p in samples], label="Or try a sample photo",
                                             columns=max(1, len(samples)), rows=1, height=150, object_fit="cover",
                                             allow_preview=False, interactive=False, buttons=[], elem_id="samples",
                                             visible=bool(samples))
                        style = gr.Dropdown(names, value=initial(names), label="Style", elem_id="style",
                                            allow_custom_value=True)
                        strength = gr.Slider(0, MAX_STRENGTH, 1.0, step=0.05, label="Strength",
                                             info="0 = unchanged, 1 = the style, 2 = exaggerated", elem_id="strength")
                        with gr.Accordion("Mix with a second style", open=False):
                            mix = gr.Dropdown([NO_MIX, *names], value=NO_MIX, label="Second style", elem_id="mix",
                                              allow_custom_value=True)
                            weight = gr.Slider(0, 1, 0.5, step=0.05, label="Weight of the second style",
                                               elem_id="weight")
                        render_btn = gr.Button("Full-resolution result", variant="primary", elem_id="render")
                        result = gr.File(label="Download (full resolution, metadata kept; 16-bit stays 16-bit, "
                                               "HEIC gives JPEG, RAW a 16-bit TIFF)",
                                         interactive=False, elem_id="result")
                    with gr.Column(scale=2):
                        slider = gr.ImageSlider(label="Before / after (preview)", type="numpy", format="png",
                                                interactive=False, elem_id="slider", max_height=640)
                        note = gr.Markdown(elem_id="note")
            with gr.Tab("Teach a style", id="teach") as tab_teach:
                if allow_edits:
                    gr.Markdown(f"Upload at least 5 before/after pairs: {PAIRS_HINT}. With finished photos in the "
                                "same look (a portfolio, an exported album) 3 pairs are enough: the pairs' colour "
                                "changes turn them into more examples to learn from. Only the condition network "
                                "is fine-tuned (minutes on a CPU); one job runs at a time, others wait in the queue.")
                    pairs = gr.File(file_count="multiple", file_types=[*SUPPORTED_EXTENSIONS, ".zip"],
                                    label="Before/after pairs", elem_id="pairs")
                    finished = gr.File(file_count="multiple", file_types=[*SUPPORTED_EXTENSIONS, ".zip"],
                                       label=f"Finished photos (optional): {FINISHED_HINT}", elem_id="finished")
                else:
                    gr.Markdown(f"Teaching is off: {READ_ONLY.format(what='teach new styles')}.", elem_id="read_only")
                with gr.Row(visible=allow_edits):
                    new_name = gr.Textbox(label="Name of the new style", placeholder="my_look", elem_id="new_name",
                                          info="1-64 letters, digits, '-' or '_'")
                    base = gr.Dropdown(names, value=initial(names), label="Start from", elem_id="base",
                                       allow_custom_value=True)
                if allow_edits:
                    teach_btn = gr.Button("Teach", variant="primary", elem_id="teach_btn")
                    teach_out = gr.Markdown(elem_id="teach_out", min_height=90, padding=True)
            with gr.Tab("Styles", id="styles") as tab_styles:
                table = gr.Dataframe(svc.table(), headers=TABLE_HEADERS, interactive=False, wrap=True,
                                     elem_id="styles_table")
                with gr.Row():
                    chosen = gr.Dropdown(names, value=None, label="Style", elem_id="chosen", allow_custom_value=True)
                    if allow_edits:
                        delete_btn = gr.Button("Delete user style", variant="stop", elem_id="delete")
                styles_msg = gr.Markdown(elem_id="styles_msg")
                card_view = gr.JSON(label="Style card")

        dropdowns = [style, mix, base, chosen]
        refreshed = [*dropdowns, table]
        quick = dict(queue=False, api_visibility="undocumented", show_progress="hidden")
        demo.load(refresh, dropdowns, refreshed, **quick)
        for tab in (tab_retouch, tab_teach, tab_styles):
            tab.select(refresh, dropdowns, refreshed, **quick)
        for dd in dropdowns:
            dd.focus(refresh, dropdowns, refreshed, **quick)

        retouch = dict(concurrency_id="retouch", concurrency_limit=limits.concurrency)
        inputs = [photo, style, strength, mix, weight]
        photo.change(preview, [*inputs, state], [slider, note, state], api_name="preview", **retouch)
        photo.change(lambda: None, None, result, **quick)

        def pick_sample(evt: gr.SelectData) -> str:
            """The sample photo whose thumbnail was clicked goes into the upload (which previews it)."""
            return str(samples[evt.index])

        gallery.select(pick_sample, None, photo, **quick)
        for ctl in (style, strength, mix, weight):
            ctl.change(preview, [*inputs, state], [slider, note, state], trigger_mode="always_last",
                       show_progress="minimal", api_visibility="undocumented", **retouch)
        render_btn.click(render, inputs, result, api_name="render", **retouch)
        if allow_edits:  # otherwise these endpoints do not exist at all
            teach_btn.click(teach, [pairs, new_name, base, style, mix, chosen, finished], [teach_out, *refreshed],
                            api_name="teach", concurrency_id="teach", concurrency_limit=1, show_progress_on=teach_out)
            delete_btn.click(delete, [chosen, style, mix, base], [styles_msg, *refreshed], api_name="delete_style",
                             show_progress_on=styles_msg)
        chosen.change(card, chosen, card_view, api_name="style_card")

        def styles() -> list[list[str]]:
            """Every style: name, origin, kind, base, description, validation score."""
            return svc.table()

        gr.api(styles, api_name="styles")

    demo.queue(default_concurrency_limit=limits.concurrency, max_size=64)
    demo.csr = dict(service=svc, teacher=teacher, limits=limits, allow_edits=allow_edits)
    return demo


def launch(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           block: bool = True, quiet: bool = False, auth: list[tuple[str, str]] | None = None):
    """Start serving ``demo`` (from ``build_app``) with its upload caps; sharing only when asked; with
    ``auth`` ([(user, password), ...], see ``auth.py``) every page and endpoint needs a login."""
    limits: Limits = demo.csr["limits"]
    samples = sample_photos()
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # system fonts: no web font fetches
    return demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, auth=auth,
                       max_file_size=limits.max_bytes, show_error=False, quiet=quiet, ssr_mode=False,
                       allowed_paths=[str(samples[0].parent)] if samples else None, theme=theme,
                       footer_links=["api"], app_kwargs={"middleware": [
                           Middleware(UploadGuard, limits=limits, stored=lambda: demo.upload_file_set)]})
