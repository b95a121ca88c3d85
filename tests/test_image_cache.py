"""Gradio's cache of output images under the app: a picture being downloaded is never cut short by another
visitor's identical output (Gradio 6.31 truncated and rewrote the file every time)."""

import os
import threading

import numpy as np
from gradio import processing_utils
from PIL import Image

import app_actions


def noise_image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (256, 256, 3), dtype=np.uint8))


def test_gradio_saves_every_output_image_through_the_safe_writer():
    assert processing_utils.save_pil_to_cache is app_actions.save_image_to_cache


def test_an_image_already_cached_is_left_alone_and_a_new_one_gets_its_own_file(tmp_path):
    first = app_actions.save_image_to_cache(noise_image(0), str(tmp_path))
    inode = os.stat(first).st_ino
    again = processing_utils.save_pil_to_cache(noise_image(0), str(tmp_path))  # as Gradio calls it
    assert again == first and os.stat(again).st_ino == inode
    other = processing_utils.save_pil_to_cache(noise_image(1), str(tmp_path), format="png")
    assert other != first and Image.open(other).size == (256, 256)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]


def test_reading_while_the_same_image_is_saved_again_always_gets_the_whole_file(tmp_path):
    """A reader opening the file 3000 times while a writer saves the same image in a loop (Gradio's own writer
    rewrote it in place each time: 8 short reads of 3000 here)."""
    path = processing_utils.save_pil_to_cache(noise_image(0), str(tmp_path))
    size = os.path.getsize(path)
    stop = threading.Event()

    def save_again():
        while not stop.is_set():
            processing_utils.save_pil_to_cache(noise_image(0), str(tmp_path))

    writer = threading.Thread(target=save_again)
    writer.start()
    try:
        short = 0
        for _ in range(3000):
            with open(path, "rb") as file:
                short += len(file.read()) != size
    finally:
        stop.set()
        writer.join()
    assert short == 0


def test_a_file_being_read_is_replaced_not_overwritten(tmp_path):
    """When the file must be written (here: a stale file of another size in its place), a download already
    reading it keeps reading the old file whole, and the next one gets the new file whole."""
    path = processing_utils.save_pil_to_cache(noise_image(0), str(tmp_path))
    size = os.path.getsize(path)
    with open(path, "wb") as stale:
        stale.write(b"x" * 10)
    with open(path, "rb") as download:
        processing_utils.save_pil_to_cache(noise_image(0), str(tmp_path))
        assert download.read() == b"x" * 10
    assert os.path.getsize(path) == size
