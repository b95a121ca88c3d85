import os

import pytest
import torch

from chunky.cache import InversionCache, cached_invert, inversion_key
from chunky.config import InversionConfig

CONFIG = InversionConfig(space="w+", steps=4, perceptual="none", resolution=32, dilate_px=0)


@pytest.fixture
def scene():
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    left = torch.zeros(1, 1, 32, 32)
    left[..., :16] = 1
    return target, torch.cat([left, 1 - left])


def counting():
    calls = []
    return calls, lambda step, total, info: calls.append(step)


def test_second_call_does_not_optimise_and_returns_identical_codes(tmp_path, tiny_generator, scene):
    cache = InversionCache(tmp_path)
    calls, progress = counting()
    first = cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG, progress=progress)
    assert calls == [1, 2, 3, 4]
    calls.clear()
    second = cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG, progress=progress)
    assert calls == []
    assert torch.equal(second.codes, first.codes) and torch.equal(second.composite, first.composite)
    assert second.config == CONFIG and second.history == first.history


def test_key_depends_on_every_input(tiny_generator, scene):
    target, masks = scene
    base = inversion_key(tiny_generator, target, masks, CONFIG)
    assert base == inversion_key(tiny_generator, target.clone(), masks.clone(), CONFIG)
    variants = [
        inversion_key(tiny_generator, target + 1e-3, masks, CONFIG),
        inversion_key(tiny_generator, target, masks.flip(0), CONFIG),
        inversion_key(tiny_generator, target, None, CONFIG),
        inversion_key(tiny_generator, target, masks, CONFIG.replace(steps=5)),
        inversion_key(tiny_generator, target, masks, CONFIG, keep=[1]),
        inversion_key(tiny_generator, target, masks, CONFIG, init=tiny_generator.w_avg),
    ]
    assert len(set(variants + [base])) == len(variants) + 1


def test_corrupt_entry_is_discarded_and_recomputed(tmp_path, tiny_generator, scene):
    cache = InversionCache(tmp_path)
    first = cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG)
    (entry,) = tmp_path.glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    calls, progress = counting()
    again = cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG, progress=progress)
    assert calls == [1, 2, 3, 4]
    assert torch.equal(again.codes, first.codes)
    assert cache.get(entry.stem) is not None  # rewritten


def test_least_recently_used_entries_are_evicted(tmp_path, tiny_generator, scene):
    cache = InversionCache(tmp_path)
    configs = [CONFIG.replace(seed=s) for s in range(3)]
    for c in configs:
        cached_invert(tiny_generator, *scene, cache=cache, config=c)
    sizes = sorted(p.stat().st_size for p in tmp_path.glob("*.pt"))
    keys = [inversion_key(tiny_generator, *scene, c) for c in configs]
    for age, key in enumerate(keys):  # make the order of use unambiguous: 0 oldest
        os.utime(tmp_path / f"{key}.pt", (1000 + age, 1000 + age))
    assert cache.get(keys[0]) is not None  # touching entry 0 makes entry 1 the least recent
    cache.max_bytes = sizes[-1] * 2 + 1
    cache._evict()
    assert sorted(p.stem for p in tmp_path.glob("*.pt")) == sorted([keys[0], keys[2]])


def test_failed_write_leaves_the_cache_as_it_was(tmp_path, tiny_generator, scene, monkeypatch):
    cache = InversionCache(tmp_path)
    cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    result = cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG.replace(seed=9))
    assert result.steps_run == 4  # the user still gets the result
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp file left, nothing changed


def test_an_entry_with_the_right_keys_but_wrong_shapes_is_recomputed_not_served(tmp_path, tiny_generator, scene):
    cache = InversionCache(tmp_path)
    good = cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG)
    key = inversion_key(tiny_generator, *scene, CONFIG)
    entry = torch.load(tmp_path / f"{key}.pt", weights_only=True)
    entry["codes"] = entry["codes"][:1]  # one code for two projected segments
    torch.save(entry, tmp_path / f"{key}.pt")
    calls, progress = counting()
    again = cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG, progress=progress)
    assert calls == [1, 2, 3, 4] and torch.equal(again.codes, good.codes)  # recomputed, same answer
    calls.clear()
    cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG, progress=progress)
    assert calls == []  # and the fixed entry is served from then on


def test_an_entry_of_another_format_version_is_discarded(tmp_path, tiny_generator, scene):
    cache = InversionCache(tmp_path)
    cached_invert(tiny_generator, *scene, cache=cache, config=CONFIG)
    key = inversion_key(tiny_generator, *scene, CONFIG)
    entry = torch.load(tmp_path / f"{key}.pt", weights_only=True)
    entry["cache_version"] = 1
    torch.save(entry, tmp_path / f"{key}.pt")
    assert cache.get(key) is None and not (tmp_path / f"{key}.pt").exists()
