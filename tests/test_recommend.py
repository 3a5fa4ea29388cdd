"""top_n against Surprise's FAQ recipe (predict every unseen pair, sort)."""

from collections import defaultdict

import numpy as np
import pytest

from surprise_torch import top_n

from .conftest import ALGORITHMS, FAST


def faq_top_n(algo, trainset, n):
    """Surprise's FAQ recipe, verbatim in spirit: test the anti-testset, sort each user's list."""
    result = defaultdict(list)
    for pred in algo.test(trainset.build_anti_testset()):
        result[pred.uid].append((pred.iid, pred.est))
    return {uid: sorted(recs, key=lambda x: x[1], reverse=True)[:n] for uid, recs in result.items()}


@pytest.mark.parametrize("algo_class", ALGORITHMS, ids=lambda c: c.__name__)
def test_top_n_agrees_with_the_faq_recipe(algo_class, split):
    trainset, _ = split
    algo = algo_class(**FAST[algo_class]).fit(trainset)
    n = 5
    ours, recipe = top_n(algo, n=n), faq_top_n(algo, trainset, n)
    assert set(ours) == set(recipe) == {trainset.to_raw_uid(u) for u in range(trainset.n_users)}
    for uid, recs in ours.items():
        assert len(recs) == n
        # The same estimates, best first (ties at the clip bound may pick other items)...
        np.testing.assert_allclose([e for _, e in recs], [e for _, e in recipe[uid]], atol=1e-9)
        seen = {trainset.to_raw_iid(i) for i, _ in trainset.ur[trainset.to_inner_uid(uid)]}
        for iid, est in recs:
            # ...each one unseen and exactly what predict says.
            assert iid not in seen
            assert algo.predict(uid, iid).est == pytest.approx(est, abs=1e-9)


def test_top_n_options(split):
    trainset, _ = split
    algo = ALGORITHMS[0](**FAST[ALGORITHMS[0]]).fit(trainset)
    some = top_n(algo, n=3, users=["u1", "u2"])
    assert list(some) == ["u1", "u2"] and all(len(v) == 3 for v in some.values())
    with_seen = top_n(algo, n=trainset.n_items, exclude_seen=False, users=["u1"])
    assert len(with_seen["u1"]) == trainset.n_items
    # Batches change the shapes of the score products, so scores agree to float rounding only.
    batched, whole = top_n(algo, n=3, batch_size=7), top_n(algo, n=3)
    assert list(batched) == list(whole)
    for user, ranked in whole.items():
        assert [iid for iid, _ in batched[user]] == [iid for iid, _ in ranked]
        assert [s for _, s in batched[user]] == pytest.approx([s for _, s in ranked], rel=1e-12)
    with pytest.raises(ValueError, match="not in the trainset"):
        top_n(algo, users=["nobody"])
    # One id where a collection belongs: a string is iterable, so "12" meant users "1" and "2" where they exist.
    with pytest.raises(TypeError, match=r"not one id: pass \['u1'\]"):
        top_n(algo, users="u1")
    with pytest.raises(ValueError, match="n must"):
        top_n(algo, n=0)
    with pytest.raises(ValueError, match="fit first"):
        top_n(ALGORITHMS[0]())
