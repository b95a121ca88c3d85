"""chunky in the browser: `python app.py` (set CHUNKY_MODEL=tiny for the test mode, no downloads)."""

from __future__ import annotations

import logging
import os

import gradio as gr

from chunky.editor import ChunkyEditor
from chunky.errors import ChunkyError

log = logging.getLogger("chunky.app")


def build_demo(editor: ChunkyEditor | None, *, startup_error: str = "") -> gr.Blocks:
    """Lay out the page and wire it to ``editor``. With no editor, the page explains ``startup_error``."""
    with gr.Blocks(title="chunky: ChunkyGAN in the browser") as demo:
        gr.Markdown("# chunky\nReal image inversion via segments (ChunkyGAN, ECCV 2022).")
        if editor is None:
            gr.Markdown(f"**The model could not be loaded.** {startup_error}")
            return demo
        if editor.label:
            gr.Markdown(f"Model: **{editor.label}**")
        with gr.Row():
            with gr.Column():
                seed = gr.Number(value=0, precision=0, label="Seed")
                truncation = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Truncation")
                button = gr.Button("Random face", variant="primary")
            face = gr.Image(label="Synthetic face", type="numpy", format="png")

        def random_face(seed_value, psi):
            try:
                return editor.random_face(int(seed_value or 0), truncation=float(psi))
            except ChunkyError as error:
                raise gr.Error(str(error)) from None

        button.click(random_face, [seed, truncation], face, api_name="random_face")
    return demo


def load_editor() -> tuple[ChunkyEditor | None, str]:
    """The editor named by CHUNKY_MODEL ("ffhq" by default, "tiny" for the test mode), or the reason it failed."""
    if os.environ.get("CHUNKY_MODEL", "ffhq") == "tiny":
        return ChunkyEditor.tiny(), ""
    try:
        return ChunkyEditor.from_pretrained(), ""
    except ChunkyError as error:
        log.error("%s", error)
        return None, str(error)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    editor, error = load_editor()
    demo = build_demo(editor, startup_error=error)
    demo.queue(default_concurrency_limit=1).launch(server_name=os.environ.get("CHUNKY_HOST", "127.0.0.1"))


if __name__ == "__main__":
    main()
