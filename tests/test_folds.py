"""Surprise's KFold folds built with NumPy equal the ones Surprise builds, trainset by trainset."""

import pickle

import numpy as np
import pytest
from surprise import Trainset
from surprise.model_selection import KFold, ShuffleSplit

from surprise_torch import _data, _folds
from surprise_torch._folds import ArrayTrainset, IndexedTestset
from surprise_torch.arrays import as_rating_arrays

from .conftest import dataset_from, low_rank_ratings


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    ratings = low_rank_ratings(n_users=30, n_items=20, density=0.4, seed=2)
    # A pair rated twice, and a user with one rating.
    ratings += [ratings[3][:2] + (1.0,), ("u_new", "i0", 4.0)]
    return dataset_from(ratings, tmp_path_factory, name="folds.csv")


def _assert_same_trainset(ours, theirs):
    assert isinstance(ours, ArrayTrainset) and isinstance(ours, Trainset)
    assert (ours.n_users, ours.n_items, ours.n_ratings) == (theirs.n_users, theirs.n_items, theirs.n_ratings)
    assert ours.rating_scale == theirs.rating_scale
    assert ours._raw2inner_id_users == theirs._raw2inner_id_users
    assert ours._raw2inner_id_items == theirs._raw2inner_id_items
    assert ours.global_mean == theirs.global_mean  # summed in the same order: equal, not close
    assert dict(ours.ur) == dict(theirs.ur) and dict(ours.ir) == dict(theirs.ir)
    assert ours.to_raw_uid(0) == theirs.to_raw_uid(0) and ours.knows_item(1) == theirs.knows_item(1)


@pytest.mark.parametrize("make_cv", [lambda: KFold(3, random_state=5), lambda: KFold(4, shuffle=False),
                                     lambda: KFold(5, random_state=np.random.RandomState(1)), lambda: 3, lambda: None])
def test_kfold_folds_equal_surprises(data, make_cv):
    np.random.seed(7)  # cv=None or an int shuffles with numpy's global generator, as Surprise does
    ours = _folds.split(make_cv(), data)
    state = np.random.get_state()[1].copy()
    np.random.seed(7)
    from surprise.model_selection.split import get_cv

    theirs = list(get_cv(make_cv()).split(data))
    np.testing.assert_array_equal(state, np.random.get_state()[1])  # the generator advanced alike
    assert len(ours) == len(theirs)
    for (train, test), (their_train, their_test) in zip(ours, theirs):
        _assert_same_trainset(train, their_train)
        assert isinstance(test, IndexedTestset) and list(test) == their_test
        _, _, r_ui, users, items = _data.testset_indices(their_train, their_test)
        np.testing.assert_array_equal(test.users, users)
        np.testing.assert_array_equal(test.items, items)
        np.testing.assert_array_equal(test.ratings, r_ui)
        # The arrays the trainers take: the same ratings, the repeated pair keeping its last rating.
        fast, slow = (as_rating_arrays(a.users, a.items, a.ratings, a.n_users, a.n_items)
                      for a in (_data.trainset_arrays(train), _data.trainset_arrays(their_train)))
        for name in ("users", "items", "ratings"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))


def test_other_splitters_and_bad_folds_are_surprises(data):
    folds = _folds.split(ShuffleSplit(2, random_state=0), data)
    assert all(type(train) is Trainset for train, _ in folds)
    # Surprise's message, naming the value given (Surprise's own names the number of ratings instead).
    with pytest.raises(ValueError, match=r"Incorrect value for n_splits=1\. .*ratings \(\d+\)"):
        _folds.split(KFold(1), data)


def test_a_pickled_fold_stands_alone(data):
    train, _ = _folds.split(KFold(3, random_state=0), data)[0]
    copy = pickle.loads(pickle.dumps(train))
    assert "_raw" not in copy.__dict__
    assert dict(copy.ur) == dict(train.ur) and copy.global_mean == train.global_mean


def test_data_loaded_from_folds_takes_only_its_own_folds(tmp_path):
    # Surprise's other splitters fail on such data with an AttributeError (it has no raw_ratings).
    from surprise import SVD, Dataset, Reader
    from surprise.model_selection import PredefinedKFold

    from surprise_torch import TorchSVD
    from surprise_torch.model_selection import GridSearchCV, cross_validate

    rows = low_rank_ratings(n_users=20, n_items=10, density=0.6)
    for name, part in (("train", rows[::2]), ("test", rows[1::2])):
        (tmp_path / name).write_text("".join(f"{u}\t{i}\t{r}\n" for u, i, r in part))
    data = Dataset.load_from_folds([(str(tmp_path / "train"), str(tmp_path / "test"))],
                                   Reader(line_format="user item rating", sep="\t", rating_scale=(1, 5)))
    for run in (lambda: cross_validate(TorchSVD(n_epochs=2), data, cv=3), lambda: cross_validate(SVD(), data),
                lambda: GridSearchCV(TorchSVD, {"n_epochs": [2]}, cv=ShuffleSplit(2)).fit(data)):
        with pytest.raises(ValueError, match=r"split already; use cv=PredefinedKFold\(\), not (KFold|ShuffleSplit)"):
            run()
    assert len(cross_validate(TorchSVD(n_epochs=2), data, cv=PredefinedKFold())["test_rmse"]) == 1


@pytest.mark.parametrize("ratings", [[4, 2, 5, 1, 3], [4.5, 2.0, 5.0, 0.5, 3.25]], ids=["int", "float"])
def test_a_trainsets_ratings_come_out_as_contiguous_arrays_in_its_order(ratings):
    # Read as (item, rating) records: the fields must come out as Surprise's per-rating loop sees them
    # (a Trainset built from a DataFrame of integers keeps them as integers).
    from collections import defaultdict

    pairs = [(0, 0), (1, 1), (0, 2), (2, 0), (1, 0)]
    ur, ir = defaultdict(list), defaultdict(list)
    for (u, i), r in zip(pairs, ratings):
        ur[u].append((i, r))
        ir[i].append((u, r))
    trainset = Trainset(ur, ir, 3, 3, len(pairs), (0, 5), {"a": 0, "b": 1, "c": 2}, {"x": 0, "y": 1, "z": 2})
    arrays = _data.trainset_arrays(trainset)
    expected = [(u, i, r) for u in range(trainset.n_users) for i, r in trainset.ur[u]]
    assert list(zip(arrays.users.tolist(), arrays.items.tolist(), arrays.ratings.tolist())) == expected
    for array, dtype in ((arrays.users, np.int64), (arrays.items, np.int64), (arrays.ratings, np.float64)):
        assert array.dtype == dtype and array.flags.c_contiguous
