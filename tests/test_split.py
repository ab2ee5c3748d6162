from collections import Counter

import pytest

from simpsons_classifier.data.scan import DatasetError, Sample
from simpsons_classifier.data.split import Split, make_split, source_group


def _samples(classes=5, sources=("dreamworld", "bw_front", "bw_front_shiny", "bw_back", "gen7x_regular",
                                 "gen7x_shiny", "icon_regular"), per_source=3):
    return [Sample(f"/d/c{c}/{s}__{i}.png", f"c{c}") for c in range(classes) for s in sources for i in range(per_source)]


def test_source_group_merges_variants():
    assert source_group("/x/bw_front_shiny__2.png") == "bw_front"
    assert source_group("gen7x_regular__0.png") == source_group("gen7x_shiny__0.png") == "gen7x"
    assert source_group("/x/pic_0001.jpg") == "pic_0001"


def test_random_split_is_stratified_seeded_and_disjoint():
    samples = _samples()
    split = make_split(samples, "random", 0.3, seed=1)
    assert sorted(map(str, split.train + split.val)) == sorted(map(str, samples))
    per_class_val = Counter(s.label for s in split.val)
    assert all(abs(n - 0.3 * 21) <= 1 for n in per_class_val.values())
    assert make_split(samples, "random", 0.3, seed=1) == split
    assert make_split(samples, "random", 0.3, seed=2) != split


def test_group_split_never_puts_a_group_on_both_sides():
    samples = _samples()
    split = make_split(samples, "group", 0.3, seed=0)
    train_groups = {(s.label, source_group(s.path)) for s in split.train}
    val_groups = {(s.label, source_group(s.path)) for s in split.val}
    assert not train_groups & val_groups
    assert len(split.train) + len(split.val) == len(samples)
    for c in range(5):
        val_share = sum(s.label == f"c{c}" for s in split.val) / 21
        assert 0.1 < val_share < 0.5
        assert any(s.label == f"c{c}" for s in split.train)
    assert make_split(samples, "group", 0.3, seed=0) == split


def test_a_random_split_too_small_for_every_character_on_both_sides_is_refused_saying_what_to_change():
    samples = [Sample(f"/d/c{c}/{i}.png", f"c{c}") for c in range(10) for i in range(2)]
    with pytest.raises(DatasetError, match=r"20 images of 10 characters with val_fraction=0.3 cannot put every "
                                           r"character on both sides .*add images, or set val_fraction"):
        make_split(samples, "random", 0.3, seed=0)
    halves = make_split(samples, "random", 0.5, seed=0)
    assert {s.label for s in halves.train} == {s.label for s in halves.val} == {f"c{c}" for c in range(10)}


def test_group_split_can_hold_out_named_sources():
    split = make_split(_samples(), "group", 0.3, seed=0, val_groups=["dreamworld", "gen7x"])
    assert {source_group(s.path) for s in split.val} == {"dreamworld", "gen7x"}
    assert "gen7x" not in {source_group(s.path) for s in split.train}
    with pytest.raises(DatasetError, match=r"\['photos'\] match no file's source group \(a file's group is its name "
                       r"before `__`.*`--set 'val_groups=\[\]'`.*`--set split=random`"):
        make_split(_samples(), "group", 0.3, seed=0, val_groups=["photos"])


def test_held_out_groups_that_plain_file_names_lack_are_refused_saying_how_groups_are_read():
    """`configs/demo.yaml`'s drawing sources, asked of a dataset of plain frame names."""
    samples = [Sample(f"/d/c{c}/pic_{i}.jpg", f"c{c}") for c in range(2) for i in range(5)]
    with pytest.raises(DatasetError, match=r"no file name here has `__`, so a file's group is its whole name"):
        make_split(samples, "group", 0.3, seed=0, val_groups=["dreamworld", "gen7x"])


def test_split_file_round_trips_with_paths_relative_to_the_dataset_folder(tmp_path):
    split = make_split(_samples(), "group", 0.3, seed=0)
    split.write(tmp_path / "split.csv", root="/d")
    assert Split.read(tmp_path / "split.csv", root="/d") == split
    assert "\nc0/" in (tmp_path / "split.csv").read_text() and "/d/" not in (tmp_path / "split.csv").read_text()
    moved = Split.read(tmp_path / "split.csv", root="/e")
    assert [s.path for s in moved.val] == [s.path.replace("/d/", "/e/", 1) for s in split.val]
