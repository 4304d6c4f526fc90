"""The playground: a local web page over a run folder to steer a name, a row or an image by its SAE features.

Pick what to steer, see its feature groups (the identity group from identity.json first) and top features (with
icons when `namesae icons` drew them), zero, scale or transfer groups and features, stack and undo the edits, decode
the original and the edited embedding side by side at one seed, and export the edit list that
`namesae steer --edit` replays to the same pixels (both draw through `namesae.steer.Steerer.steer`).

    from namesae.playground import Playground, EditStack, group_edit
    pg = Playground.open("runs/demo")                       # the demo's SAE, store and tiny decoder
    sel = pg.select("name", pg.dedicated_names()[0])
    stack = EditStack().push(group_edit("zero", sel.groups[0]))
    pair = pg.decode(sel, stack, seed=0)                    # pair.original, pair.edited: PIL images
    pg.export(sel, stack, seed=0).command                   # the `namesae steer` line that redraws pair.edited

Modules: `folder.py` (what a run folder holds), `state.py` (the edit stack, edits from the controls, the export),
`session.py` (`Playground`: select, decode, export), `view.py` (what the page shows, escaped), `app.py` (the Gradio
page and server; gradio is imported there only, `pip install 'namesae[playground]'`).
"""

from namesae._lazy import lazy_exports

# Public name -> the module that defines it (imported on first use).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".folder": ("FeatureGroup", "Icons", "RunFolder", "find_run"),
    ".session": ("DecodedPair", "Export", "FeatureView", "Playground", "Selection"),
    ".state": (
        "EditStack", "describe_edit", "export_text", "feature_edit", "group_edit", "replay_command",
        "slider_edits", "write_export",
    ),
})
