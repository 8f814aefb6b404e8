"""The splitter takes each part of the images once, from positions, and gives the very parts the
former splitter gave: scikit-learn's split of the arrays themselves, one split after another."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from kcnn.data import datasets
from kcnn.data.splits import make_splits
from kcnn.data.validation import Data


def _split(x, y, size, seed):  # the former splitter, kept here as the reference
    try:
        return train_test_split(x, y, test_size=size, random_state=seed, stratify=y)
    except ValueError:
        return train_test_split(x, y, test_size=size, random_state=seed)


def _reference(data, val_split, seed, limit=None, test_split=0.2):
    x, y = data.x_train, data.y_train
    if data.x_test is None:
        x, x_test, y, y_test = _split(x, y, test_split, seed)
    else:
        x_test, y_test = data.x_test, data.y_test
    if limit is not None:
        if limit < len(y):
            _, x, _, y = _split(x, y, limit, seed)
        if limit < len(y_test):
            _, x_test, _, y_test = _split(x_test, y_test, limit, seed)
    x_train, x_val, y_train, y_val = _split(x, y, val_split, seed)
    return x_train, y_train, x_val, y_val, x_test, y_test


def _with_a_test_set():
    rng = np.random.default_rng(5)
    y, y_test = rng.integers(0, 3, 200), rng.integers(0, 3, 80)
    x = rng.integers(0, 256, (200, 8, 8, 1), dtype=np.uint8)
    x_test = rng.integers(0, 256, (80, 8, 8, 1), dtype=np.uint8)
    return Data("own-test", x, y, x_test, y_test, ["a", "b", "c"])


def _with_a_rare_class():
    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(60, int), np.ones(60, int), [2]]  # one image of class 2: no stratifying
    x = rng.integers(0, 256, (len(y), 8, 8, 1), dtype=np.uint8)
    return Data("rare", x, y, None, None, ["a", "b", "c"])


@pytest.mark.parametrize(
    "name, val_split, seed, limit",
    [
        ("digits", 0.2, 83, None),  # no test set: one is held out
        ("digits", 0.25, 7, 300),  # limited
        ("mnist-5k", 0.2, 1, 200),
        ("own-test", 0.2, 83, None),  # a test set of its own, kept as it is
        ("own-test", 0.3, 2, 50),
        ("rare", 0.2, 3, None),  # a class too rare to stratify: plain shuffles
    ],
)
def test_splits_are_those_of_the_former_splitter_array_for_array(name, val_split, seed, limit):
    made = {"rare": _with_a_rare_class, "own-test": _with_a_test_set}
    data = made[name]() if name in made else datasets.load(name)
    parts = make_splits(data, val_split, seed, limit)
    got = (parts.x_train, parts.y_train, parts.x_val, parts.y_val, parts.x_test, parts.y_test)
    for a, b in zip(got, _reference(data, val_split, seed, limit), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_each_part_is_one_array_of_its_own_and_a_given_test_set_is_not_copied():
    data = _with_a_test_set()
    parts = make_splits(data, 0.2, 83)
    assert parts.x_test is data.x_test  # nothing to take: held as it is
    for part in (parts.x_train, parts.x_val):
        assert part.base is None or part.base is not data.x_train  # a copy, not a view
        assert not np.shares_memory(part, data.x_train)
