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
