from flowers_hf.data.labels import FLOWER_NAMES, numeric_names_to_flowers


def test_canonical_names_follow_the_oxford_order():
    assert len(FLOWER_NAMES) == 102
    assert FLOWER_NAMES[0] == "pink primrose"
    assert FLOWER_NAMES[101] == "blackberry lily"
    assert len(set(FLOWER_NAMES)) == 102


def test_one_based_ids_map_to_names():
    assert numeric_names_to_flowers(["1", "2", "102"]) == [FLOWER_NAMES[0], FLOWER_NAMES[1], FLOWER_NAMES[101]]


def test_string_ordered_ids_keep_their_positions():
    # nelorth/oxford-flowers orders classes as strings: '1', '10', '100', '101', '102', '11', …
    names = sorted(str(i) for i in range(1, 103))
    mapped = numeric_names_to_flowers(names)
    assert mapped[:3] == [FLOWER_NAMES[0], FLOWER_NAMES[9], FLOWER_NAMES[99]]
    assert sorted(mapped) == sorted(FLOWER_NAMES)


def test_zero_based_ids_map_to_names():
    assert numeric_names_to_flowers(["0", "5", "101"]) == [FLOWER_NAMES[0], FLOWER_NAMES[5], FLOWER_NAMES[101]]


def test_non_numeric_or_out_of_range_names_are_left_alone():
    assert numeric_names_to_flowers(["rose", "tulip"]) is None
    assert numeric_names_to_flowers(["1", "103"]) is None
    assert numeric_names_to_flowers(["1", "01"]) is None  # the same id twice
    assert numeric_names_to_flowers([]) is None
