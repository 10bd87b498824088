import numpy as np
import pytest

from stylepuppet.errors import ConfigError
from stylepuppet.landmarks.scheme import GROUPS, NUM_POINTS, SEED_GROUP_WEIGHTS, parse_group_weights, point_weights


def test_groups_partition_all_68_points_without_overlap():
    indices = [i for g in GROUPS.values() for i in g]
    assert sorted(indices) == list(range(NUM_POINTS))


def test_aliases_and_later_entries_win():
    w = parse_group_weights("mouth=5,eyes=0,left_eye=2")
    assert w["outer_lip"] == w["inner_lip"] == 5
    assert w["right_eye"] == 0 and w["left_eye"] == 2
    assert w["jaw"] == 1


def test_base_weights_are_kept_where_not_overridden():
    w = parse_group_weights("jaw=0", base=SEED_GROUP_WEIGHTS)
    assert w["jaw"] == 0 and w["nose_bridge"] == 0.1 and w["outer_lip"] == 5


@pytest.mark.parametrize("spec, words", [
    ("nostril=1", "unknown landmark group 'nostril'"),
    ("mouth", "not of the form name=value"),
    ("mouth=abc", "must be a number"),
    ("mouth=-1", ">= 0"),
    ("mouth=nan", ">= 0"),
])
def test_bad_specs_say_what_is_wrong(spec, words):
    with pytest.raises(ConfigError, match=words):
        parse_group_weights(spec)


def test_point_weights_follow_groups():
    w = point_weights(parse_group_weights("all=0,inner_lip=3"))
    assert w.shape == (68,)
    assert np.all(w[60:68] == 3) and np.all(w[:60] == 0)


def test_points_outside_every_group_get_the_rest_weight():
    groups = {"jaw": np.array([0, 1]), "inner_lip": np.array([3])}
    w = point_weights({"jaw": 0.5, "inner_lip": 5.0}, groups, num_points=6, rest=0.25)
    np.testing.assert_array_equal(w, [0.5, 0.5, 0.25, 5.0, 0.25, 0.25])
    assert point_weights({"jaw": 0.5, "inner_lip": 5.0}, groups, num_points=6)[[2, 4, 5]].tolist() == [0, 0, 0]
