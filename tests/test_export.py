"""Export folders: private, fresh, pruned by age and by a byte budget; symlinks are never followed."""

import os
import stat
import time

from chunky.export import FolderBudget


def age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_each_process_gets_a_private_root_and_fresh_folders():
    a, b = FolderBudget(), FolderBudget()
    assert a.root != b.root and stat.S_IMODE(a.root.stat().st_mode) == 0o700
    first, second = a.new(), a.new()
    assert first != second and first.parent == a.root and not any(first.iterdir())


def test_old_folders_go_first_and_the_byte_budget_holds(tmp_path):
    folders = FolderBudget(root=tmp_path, max_age_s=3600, max_bytes=2500)
    old, middle, new = (tmp_path / name for name in ("old", "middle", "new"))
    for k, folder in enumerate((old, middle, new)):
        folder.mkdir()
        (folder / "file.bin").write_bytes(b"x" * 1000)
        age(folder, 7200 if folder is old else 100 - k)
    folders.prune()
    assert not old.exists() and middle.exists() and new.exists()  # too old; then 2000 bytes fit the budget
    (new / "more.bin").write_bytes(b"x" * 1000)
    folders.prune()
    assert not middle.exists() and new.exists()  # over budget: the oldest goes


def test_a_symlink_in_the_root_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    (outside / "precious").mkdir(parents=True)
    age(outside / "precious", 7200)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    age(root, 7200)
    FolderBudget(root=root, max_age_s=1).prune()
    assert (outside / "precious").is_dir() and (root / "link").is_symlink()


def test_the_apps_upload_folder_is_private_and_its_prune_never_reaches_through_a_link(tmp_path, monkeypatch):
    """$GRADIO_TEMP_DIR is a link to another program's folder holding a 2-hour-old folder: the app uploads into
    a new private folder inside it, and pruning that deletes only the app's own old uploads."""
    import app_actions

    victim = tmp_path / "victim"
    theirs = victim / "their-folder"
    theirs.mkdir(parents=True)
    link = tmp_path / "gradio"
    link.symlink_to(victim)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(link))
    monkeypatch.setattr(app_actions, "UPLOADS_PARENT", str(link))
    uploads = app_actions.private_uploads()
    assert os.environ["GRADIO_TEMP_DIR"] == str(uploads.root) and uploads.root.parent == link
    assert uploads.root.stat().st_mode & 0o777 == 0o700
    mine = uploads.root / "upload-1"
    mine.mkdir()
    two_hours_ago = time.time() - 7200
    for folder in (theirs, mine):
        os.utime(folder, (two_hours_ago, two_hours_ago))
    uploads.prune()
    assert theirs.is_dir() and not mine.exists()
    FolderBudget(root=link, max_age_s=1).prune()  # a root that is itself a link is left alone
    assert theirs.is_dir()
