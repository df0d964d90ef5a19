"""The masked-base context-count baseline: what it sees, what it learns, how it backs off."""

from __future__ import annotations

import numpy as np
import pytest

from had_cache import dna
from had_train.context_model import ContextCounts, masked_contexts


def test_contexts_are_what_the_student_sees_around_the_group() -> None:
    seq = dna.encode("AAAAAACCCCCCGGGGGGTTTTTT")[None]  # groups 0..3
    mask = np.array([[False, True, True, False]])  # groups 1 and 2 hidden
    key, truth = masked_contexts(seq, mask, k=2)
    # group 1: left "AA", right = the first two bases of group 2, hidden -> unknown (4)
    # group 2: left = the last two of group 1, hidden -> unknown; right "TT"
    expect = [
        np.array([dna.A, dna.A, 4, 4]) @ 5 ** np.arange(4),
        np.array([4, 4, dna.T, dna.T]) @ 5 ** np.arange(4),
    ]
    assert key.tolist() == expect
    assert dna.decode(truth[0]) == "CCCCCC" and dna.decode(truth[1]) == "GGGGGG"
    edge_key, _ = masked_contexts(seq, np.array([[True, False, False, False]]), k=1)
    assert edge_key.tolist() == [4 + 5 * dna.C]  # beyond the window's edge is unknown too


def test_a_context_that_decides_the_bases_is_learnt_and_random_dna_is_chance() -> None:
    rng = np.random.default_rng(0)
    n, t = 400, 20
    # periodic DNA whose 3-mers are all distinct: each base follows from the 3 before it
    periodic = np.tile(dna.encode("ACGTTGCAAC"), (n, 12))[:, : 6 * t]
    mask = np.zeros((n, t), dtype=bool)
    for row in mask:  # never two neighbouring groups, never at an edge: contexts stay visible
        row[rng.choice([2, 6, 10, 14], 3, replace=False)] = True
    model = ContextCounts(3).fit(periodic[:300], mask[:300])
    acc, scored = model.accuracy(periodic[300:], mask[300:])
    assert acc == 1.0 and scored == 100 * 3 * 6
    noise = rng.integers(0, 4, size=(n, 6 * t)).astype(np.uint8)
    acc, _ = ContextCounts(1).fit(noise[:300], mask[:300]).accuracy(noise[300:], mask[300:])
    assert 0.2 < acc < 0.32


def test_unseen_contexts_back_off_to_the_positions_commonest_base() -> None:
    train = np.tile(dna.encode("GGGGGG" * 4), (10, 1))
    mask = np.array([[False, True, False, False]] * 10)
    model = ContextCounts(3).fit(train, mask)
    unseen = dna.encode("TTTTTT" + "AAAAAA" + "CCCCCC" * 2)[None]
    assert dna.decode(model.predict(unseen, mask[:1])[0]) == "GGGGGG"
    hidden_n = dna.encode("ACGTAC" + "NNNNNN" + "ACGTAC" * 2)[None]
    acc, scored = model.accuracy(hidden_n, mask[:1])
    assert scored == 0 and np.isnan(acc)  # hidden Ns are not scored


def test_k_is_bounded() -> None:
    with pytest.raises(ValueError, match="0..4"):
        ContextCounts(5)


def test_per_window_counts_are_the_accuracy_split_by_window() -> None:
    """A paired comparison with a student resamples windows: each window's counts are its own
    (a window with no masked group, or only hidden Ns, scores nothing)."""
    train = np.tile(dna.encode("GGGGGG" * 4), (10, 1))
    model = ContextCounts(2).fit(train, np.array([[False, True, False, False]] * 10))
    seq = np.stack(
        [
            dna.encode("GGGGGG" * 4),
            dna.encode("GGGGGG" + "GGGAAA" + "NNNNNN" + "GGGGGG"),
            dna.encode("ACGTAC" * 4),
        ]
    )
    mask = np.array([[True, True, False, False], [False, True, True, False], [False] * 4])
    correct, scored = model.correct_by_window(seq, mask)
    assert correct.tolist() == [12, 3, 0] and scored.tolist() == [12, 6, 0]
    assert model.accuracy(seq, mask) == (15 / 18, 18)
