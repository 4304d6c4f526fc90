"""The playground's web page (Gradio, imported here only): layout and wiring over `Playground`, `EditStack` and the
view helpers, which hold all the logic."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from namesae.errors import NamesaeError
from namesae.playground.session import Playground, Selection
from namesae.playground.state import GROUP_OPS, EditStack, export_text, group_edit, slider_edits
from namesae.playground.view import (
    FEATURE_COLUMNS,
    GROUP_COLUMNS,
    feature_rows,
    gallery_items,
    group_rows,
    header_html,
    name_choices,
    selection_html,
    stack_text,
    summary_html,
)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
MAX_GROUPS = 8  # slider slots: the page has a fixed number of controls
MAX_FEATURES = 8
# Tiny decoders draw 32 x 32 images: show them large, pixels sharp.
CSS = ("#pg-original img, #pg-edited img {width: 100%; height: 100%; object-fit: contain; "
       "image-rendering: pixelated} .pg-icons img {image-rendering: pixelated}")


def server_host(host: str | None) -> str:
    """The address to listen on: loopback unless a host is given."""
    return LOOPBACK if host is None else host


def free_port(host: str) -> int:
    """A TCP port free on `host` now (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _group_label(group: Any) -> str:
    n = len(group.features)
    return f"{group.label} ({n} feature{'s' if n != 1 else ''})"


def _frame(rows: list[list[Any]], columns: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


def build_app(playground: Playground) -> Any:
    """The Gradio Blocks of the playground over an open `Playground`."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local tool: no telemetry
    import gradio as gr

    choices = name_choices(playground)
    first = choices[0][1] if choices else None
    note = playground.image_note()

    def fail(err: NamesaeError) -> gr.Error:
        return gr.Error(str(err))

    with gr.Blocks(title="namesae playground", analytics_enabled=False) as app:
        selection_state = gr.State(None)
        stack_state = gr.State(EditStack())
        gr.HTML(header_html(playground))
        with gr.Row():
            with gr.Column(scale=1):
                kind = gr.Radio(["name", "row", "image"], value="name", label="Steer", elem_id="pg-kind")
                name = gr.Dropdown(choices=choices, value=first, label="Name", filterable=True, elem_id="pg-name")
                row = gr.Number(value=0, precision=0, label=f"Row (0 to {playground.n_rows - 1})", elem_id="pg-row")
                upload = gr.Image(type="filepath", label="Image" + (" (no encoder for this space)" if note else ""),
                                  sources=["upload"], interactive=note is None, elem_id="pg-upload", height=120)
                select = gr.Button("Select", elem_id="pg-select")
            with gr.Column(scale=2):
                selected = gr.HTML(selection_html(None), elem_id="pg-selection")
                with gr.Row():
                    original = gr.Image(label="Original", type="pil", format="png", interactive=False, height=240,
                                        elem_id="pg-original")
                    edited = gr.Image(label="Edited", type="pil", format="png", interactive=False, height=240,
                                      elem_id="pg-edited")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="Seed (original and edited)", elem_id="pg-seed",
                                     scale=1)
                    decode = gr.Button("Decode original and edited", variant="primary", elem_id="pg-decode",
                                       scale=2)
                summary = gr.HTML("", elem_id="pg-summary-box")
        with gr.Row():
            groups_table = gr.Dataframe(_frame([], GROUP_COLUMNS), label="Feature groups", interactive=False,
                                        elem_id="pg-groups", max_height=320)
            top_table = gr.Dataframe(_frame([], FEATURE_COLUMNS), label="Top features", interactive=False,
                                     elem_id="pg-top", max_height=320)
        icons = gr.Gallery(label="Icons", columns=8, height=140, visible=False, elem_classes=["pg-icons"])
        with gr.Row():
            group = gr.Dropdown(choices=[], label="Group", elem_id="pg-group")
            op = gr.Radio(list(GROUP_OPS), value="zero", label="Operation", elem_id="pg-op")
            factor = gr.Number(value=0.0, label="Scale factor", elem_id="pg-factor")
            donor = gr.Dropdown(choices=choices, value=None, label="Transfer from name", filterable=True,
                                elem_id="pg-donor")
            alpha = gr.Number(value=1.0, label="Transfer alpha", elem_id="pg-alpha")
            add = gr.Button("Add edit", elem_id="pg-add")
        with gr.Row():
            stack_box = gr.Textbox(stack_text(EditStack()), label="Edit stack", lines=3, interactive=False,
                                   elem_id="pg-stack", scale=4)
            with gr.Column(scale=1, min_width=120):
                undo = gr.Button("Undo", elem_id="pg-undo")
                clear = gr.Button("Clear", elem_id="pg-clear")
        with gr.Accordion("Sliders: scale each group and top feature (0 switches it off)", open=True):
            with gr.Row():
                with gr.Column():
                    group_sliders = [gr.Slider(0.0, 3.0, value=1.0, step=0.05, visible=False,
                                               elem_id=f"pg-group-slider-{i}") for i in range(MAX_GROUPS)]
                with gr.Column():
                    feature_sliders = [gr.Slider(0.0, 3.0, value=1.0, step=0.05, visible=False,
                                                 elem_id=f"pg-feature-slider-{i}") for i in range(MAX_FEATURES)]
            apply = gr.Button("Apply sliders as edits", elem_id="pg-apply")
        export = gr.Button("Export the edit list", elem_id="pg-export-button")
        with gr.Row():
            exported = gr.Textbox(label="Edit list (namesae steer --edit)", lines=4, interactive=False,
                                  elem_id="pg-export")
            command = gr.Textbox(label="Replay with", lines=4, interactive=False, elem_id="pg-command")
            exported_file = gr.File(label="edits.json", interactive=False, elem_id="pg-export-file")

        sliders = [*group_sliders, *feature_sliders]

        def on_select(kind_value: str, name_value: str | None, row_value: float | None,
                      upload_value: str | None) -> list[Any]:
            value = {"name": name_value, "row": row_value, "image": upload_value}[kind_value]
            if value is None:
                raise gr.Error(f"choose a {kind_value} first")
            try:
                sel = playground.select(kind_value, value)
            except NamesaeError as err:
                raise fail(err) from None
            items = gallery_items(sel, playground.icons)
            group_updates = [gr.update(visible=i < len(sel.groups), value=1.0,
                                       label=_group_label(sel.groups[i]) if i < len(sel.groups) else None)
                             for i in range(MAX_GROUPS)]
            feature_updates = [gr.update(visible=i < len(sel.top), value=1.0,
                                         label=(f"feature {sel.top[i].feature}" + (f" ({sel.top[i].label})"
                                                if sel.top[i].label else "")) if i < len(sel.top) else None)
                               for i in range(MAX_FEATURES)]
            labels = [(g.label, i) for i, g in enumerate(sel.groups)]
            return [sel, selection_html(sel), _frame(group_rows(sel.groups), GROUP_COLUMNS),
                    _frame(feature_rows(sel.top), FEATURE_COLUMNS), gr.update(value=items, visible=bool(items)),
                    *group_updates, *feature_updates,
                    gr.update(choices=labels, value=0 if labels else None), None, None, ""]

        select_outputs = [selection_state, selected, groups_table, top_table, icons, *sliders, group, original,
                          edited, summary]
        select.click(on_select, [kind, name, row, upload], select_outputs)
        name.input(lambda n: "name", [name], [kind]).then(on_select, [kind, name, row, upload], select_outputs)
        app.load(on_select, [kind, name, row, upload], select_outputs)

        def need(sel: Selection | None) -> Selection:
            if sel is None:
                raise gr.Error("select a name, a row or an image first")
            return sel

        def on_apply(sel: Selection | None, stack: EditStack, *values: float) -> list[Any]:
            sel = need(sel)
            groups = sel.groups[:MAX_GROUPS]
            top = [f.feature for f in sel.top[:MAX_FEATURES]]
            edits = slider_edits(groups, values[:len(groups)], top, values[MAX_GROUPS:MAX_GROUPS + len(top)])
            stack = stack.push(*edits)
            return [stack, stack_text(stack), *[gr.update(value=1.0) for _ in sliders]]

        apply.click(on_apply, [selection_state, stack_state, *sliders], [stack_state, stack_box, *sliders])

        def on_add(sel: Selection | None, stack: EditStack, index: int | None, op_value: str, factor_value: float,
                   donor_value: str | None, alpha_value: float) -> list[Any]:
            sel = need(sel)
            if index is None or not 0 <= int(index) < len(sel.groups):
                raise gr.Error("choose a group first")
            try:
                edit = group_edit(op_value, sel.groups[int(index)], factor_value or 0.0, donor_value,
                                  1.0 if alpha_value is None else alpha_value)
            except NamesaeError as err:
                raise fail(err) from None
            stack = stack.push(edit)
            return [stack, stack_text(stack)]

        add.click(on_add, [selection_state, stack_state, group, op, factor, donor, alpha], [stack_state, stack_box])

        def on_change(change: str) -> Any:
            def apply_change(stack: EditStack) -> list[Any]:
                stack = stack.undo() if change == "undo" else stack.clear()
                return [stack, stack_text(stack)]
            return apply_change

        undo.click(on_change("undo"), [stack_state], [stack_state, stack_box])
        clear.click(on_change("clear"), [stack_state], [stack_state, stack_box])

        def on_decode(sel: Selection | None, stack: EditStack, seed_value: float | None) -> list[Any]:
            sel = need(sel)
            try:
                pair = playground.decode(sel, stack, int(seed_value or 0))
            except NamesaeError as err:
                raise fail(err) from None
            return [pair.original, pair.edited, summary_html(pair.summary, pair.seed)]

        decode.click(on_decode, [selection_state, stack_state, seed], [original, edited, summary])

        def on_export(sel: Selection | None, stack: EditStack, seed_value: float | None) -> list[Any]:
            sel = need(sel)
            done = playground.export(sel, stack, int(seed_value or 0))
            return [export_text(stack), done.command, str(done.path)]

        export.click(on_export, [selection_state, stack_state, seed], [exported, command, exported_file])
    return app


@dataclass
class Served:
    """A running playground: its address and how to stop it."""

    app: Any
    host: str
    port: int
    url: str

    def wait(self) -> None:
        """Serve until interrupted (Ctrl-C), then stop."""
        try:
            self.app.block_thread()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the web server."""
        self.app.close()


def serve(playground: Playground, host: str | None = None, port: int = 0) -> Served:
    """Start the playground's web server in the background on `host` (loopback unless given) and `port` (0: a
    free one); `Served.wait` blocks, `Served.close` stops it."""
    host = server_host(host)
    port = int(port) or free_port(host)
    app = build_app(playground)
    app.queue(default_concurrency_limit=1)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up requests, one log line each
    icons = [str(playground.run.icons.parent)] if playground.run.icons else []
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
               show_error=True, quiet=True, ssr_mode=False, css=CSS,
               allowed_paths=[str(playground.export_dir), *icons])
    served = Served(app, host, port, f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/")
    log.info("playground: serving %s on %s", playground.run.root, served.url)
    return served
