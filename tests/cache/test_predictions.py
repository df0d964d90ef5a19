"""The teacher's predictions at masked groups: marginals, top-k, and their place in a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from had_cache import dna, masking, predictions, schema, tokenize
from had_cache.reader import CacheReader
from had_cache.teacher import load_teacher
from had_cache.verify import check_integrity
from had_common.errors import ConfigError
from tests.conftest import extract_store, real_dna


def test_marginals_of_one_6mer_are_its_bases() -> None:
    codes = dna.encode(real_dna(60))
    index = tokenize.kmer_ids(codes) - tokenize.FIRST_KMER_ID  # [10] 6-mer indices
    probs = torch.nn.functional.one_hot(torch.as_tensor(index), predictions.N_KMERS).float()
    marginals = predictions.base_marginals(probs)  # [10, 6, 4]
    assert marginals.shape == (10, dna.K, 4)
    assert np.array_equal(marginals.argmax(-1).numpy().reshape(-1), codes)
    assert np.array_equal(predictions.kmer_codes(index).reshape(-1), codes)


def test_marginals_sum_position_by_position() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, predictions.N_KMERS, generator=gen) * 3, -1)
    marginals = predictions.base_marginals(probs)
    torch.testing.assert_close(marginals.sum(-1), torch.ones(3, dna.K))
    # Brute force for one position: P(C at position 2) = sum over 6-mers with C there.
    kmers = predictions.kmer_codes(np.arange(predictions.N_KMERS))
    has_c = torch.as_tensor(kmers[:, 2] == dna.C)
    torch.testing.assert_close(marginals[:, 2, dna.C], probs[:, has_c].sum(-1))


def test_softmax_is_over_6mers_only() -> None:
    logits = torch.zeros(1, len(tokenize.VOCAB))
    logits[0, tokenize.MASK_ID] = 50.0  # mass on a special token is not a 6-mer guess
    probs = predictions.kmer_probabilities(logits)
    torch.testing.assert_close(probs, torch.full_like(probs, 1 / predictions.N_KMERS))


@pytest.fixture(scope="module")
def predicting_store(tmp_path_factory: pytest.TempPathFactory, small_fasta, tiny_teacher) -> Path:
    out = tmp_path_factory.mktemp("pred") / "s.zarr"
    return extract_store(
        small_fasta, tiny_teacher, out, window_bp=120, chunk_records=16, predictions=8
    )


def test_store_keeps_the_teachers_predictions_of_its_masked_groups(
    predicting_store: Path, tiny_teacher: Path
) -> None:
    reader = CacheReader(predicting_store)
    a = reader.attrs
    assert a.has_predictions and a.prediction_top_k == 8
    records = reader.read(slice(0, 4))
    assert records.base_prob.shape == (4, a.n_masked, dna.K, 4)
    group = reader.group
    top_prob = group[schema.TOPK_PROB][:4].astype(np.float32)
    assert (np.diff(top_prob, axis=-1) <= 0).all()  # descending
    # The same numbers from the teacher's logits, computed here from scratch.
    teacher = load_teacher(str(tiny_teacher), torch.device("cpu"), torch.float32)
    ids = masking.teacher_input(tokenize.kmer_ids(records.seq), records.mask, tokenize.MASK_ID)
    logits = teacher.model(input_ids=torch.as_tensor(tokenize.with_cls(ids))).logits[:, 1:]
    probs = predictions.kmer_probabilities(logits[torch.as_tensor(records.mask)])
    want = predictions.base_marginals(probs).reshape(records.base_prob.shape)
    np.testing.assert_allclose(records.base_prob.astype(np.float32), want.detach(), atol=2e-3)
    top = probs.topk(8, -1).indices.reshape(4, a.n_masked, 8).numpy()
    assert np.array_equal(group[schema.TOPK_KMER][:4], top)
    assert check_integrity(predicting_store).bad_shards == []


def test_features_do_not_change_when_predictions_are_stored(
    predicting_store: Path, train_store_like: Path
) -> None:
    with_preds = CacheReader(predicting_store).read(slice(0, 16))
    without = CacheReader(train_store_like).read(slice(0, 16))
    assert without.base_prob is None
    assert np.array_equal(with_preds.teacher, without.teacher)
    assert np.array_equal(with_preds.mask, without.mask)


@pytest.fixture(scope="module")
def train_store_like(tmp_path_factory: pytest.TempPathFactory, small_fasta, tiny_teacher) -> Path:
    out = tmp_path_factory.mktemp("nopred") / "s.zarr"
    return extract_store(small_fasta, tiny_teacher, out, window_bp=120, chunk_records=16)


def test_predictions_option_is_checked_before_the_teacher_loads(
    small_fasta: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="--predictions takes 0"):
        extract_store(small_fasta, Path("/nonexistent"), tmp_path / "s.zarr", predictions=5000)
