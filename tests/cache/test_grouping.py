"""The 6-mer grouping, the NT tokenization rule and the group-mask -> base mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from had_cache import dna, masking, tokenize
from had_train.model import HadStudentConfig, HadStudentForPretraining
from tests.conftest import real_dna


def test_vocabulary_layout_matches_nt() -> None:
    assert len(tokenize.VOCAB) == 4107
    assert tokenize.VOCAB[:6] == ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")
    assert tokenize.TOKEN_ID["AAAAAA"] == 6
    assert tokenize.TOKEN_ID["AAAAAT"] == 7  # product order A, T, C, G
    assert tokenize.TOKEN_ID["AAAAAC"] == 8
    assert tokenize.TOKEN_ID["GGGGGG"] == 4101
    assert tokenize.VOCAB[4102:] == ("A", "T", "C", "G", "N")


def test_tokenize_splits_on_n_and_emits_short_tails_as_letters() -> None:
    seq = "ACGTACGTN" + "TTTTTTGG"
    toks = tokenize.tokenize(seq)
    spans = [(t.start, t.end) for t in toks]
    assert spans == [(0, 6), (6, 7), (7, 8), (8, 9), (9, 15), (15, 16), (16, 17)]
    assert [tokenize.VOCAB[t.id] for t in toks] == ["ACGTAC", "G", "T", "N", "TTTTTT", "G", "G"]


def test_kmer_ids_equal_tokenize_on_real_windows() -> None:
    codes = dna.encode(real_dna(1020 * 8)).reshape(8, 1020)
    fast = tokenize.kmer_ids(codes)
    for row, window in zip(fast, codes, strict=True):
        slow = tokenize.tokenize(dna.decode(window))
        assert [t.id for t in slow] == row.tolist()
        assert [t.start for t in slow] == list(range(0, 1020, 6))


def test_kmer_ids_refuse_n() -> None:
    with pytest.raises(ValueError, match="N-free"):
        tokenize.kmer_ids(dna.encode("ACGTAN"))


def test_group_mask_is_a_pure_function_of_seed_and_record() -> None:
    a = masking.group_mask(seed=7, record=123, n_tokens=170, ratio=0.15)
    assert np.array_equal(a, masking.group_mask(7, 123, 170, 0.15))
    assert not np.array_equal(a, masking.group_mask(7, 124, 170, 0.15))
    assert not np.array_equal(a, masking.group_mask(8, 123, 170, 0.15))
    masks = masking.group_masks(7, np.arange(50), 170, 0.15)
    assert (masks.sum(axis=1) == 26).all()  # 0.15 * 170 = 25.5 rounds half up


def test_masked_group_hides_exactly_its_six_bases() -> None:
    codes = dna.encode(real_dna(1020 * 4)).reshape(4, 1020)
    mask = masking.group_masks(0, np.arange(4), 170, 0.15)
    student = masking.student_input(codes, mask)
    for row in range(4):
        for group in range(170):
            bases = slice(6 * group, 6 * group + 6)
            if mask[row, group]:
                assert (student[row, bases] == dna.MASK).all()
            else:
                assert np.array_equal(student[row, bases], codes[row, bases])
    ids = tokenize.kmer_ids(codes)
    teacher = masking.teacher_input(ids, mask, tokenize.MASK_ID)
    assert ((teacher == tokenize.MASK_ID) == mask).all()


def test_student_model_masks_the_same_bases_as_the_cache() -> None:
    """The model re-derives masked bases from the group mask; it must agree with masking.py."""
    codes = dna.encode(real_dna(1020 * 2)).reshape(2, 1020)
    mask = masking.group_masks(3, np.arange(2), 170, 0.15)
    model = HadStudentForPretraining(HadStudentConfig.from_preset("tiny"))
    ids = torch.from_numpy(codes).long()
    base = model.base_mask(ids, torch.from_numpy(mask))
    assert np.array_equal(base.numpy(), masking.base_mask(mask))
    targets = model.reconstruction_targets(ids, torch.from_numpy(mask))
    assert np.array_equal(targets.numpy().ravel(), codes[masking.base_mask(mask)])


def test_reverse_complement_round_trip() -> None:
    codes = dna.encode("ACGTNACG")
    assert dna.decode(dna.reverse_complement(codes)) == "CGTNACGT"
    assert np.array_equal(dna.reverse_complement(dna.reverse_complement(codes)), codes)


def test_our_ids_and_offsets_equal_the_hf_tokenizer_on_random_sequences(tiny_teacher) -> None:
    """Thousands of random sequences with N runs and odd lengths, against the NT tokenizer files."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_teacher)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        length = int(rng.integers(1, 80))
        seq = "".join(rng.choice(list("ACGT"), size=length))
        for _ in range(int(rng.integers(0, 3))):  # N runs at random places
            at = int(rng.integers(0, length))
            seq = seq[:at] + "N" * int(rng.integers(1, 4)) + seq[at:]
        ours = tokenize.tokenize(seq)
        theirs = hf(seq, add_special_tokens=False)["input_ids"]
        assert [t.id for t in ours] == theirs, seq
        # Offsets tile the sequence exactly and each token spells its own bases.
        assert [t.start for t in ours] == [0] + [t.end for t in ours[:-1]]
        assert ours[-1].end == len(seq)
        assert all(tokenize.VOCAB[t.id] == seq[t.start : t.end] for t in ours)
