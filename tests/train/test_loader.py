"""The loader hands the trainer compact batches, widened on the device, and refuses a store
that does not fit the run it resumes."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
import torch

from had_train.data import PretrainBatches, prefetch
from had_train.pretrain import STORE_FILE, RunError, check_store_fits


def test_batches_stay_compact_until_the_device_and_prefetch_keeps_the_order(
    train_store: Path,
) -> None:
    data = PretrainBatches(train_store, batch_size=8, seed=1)
    raw = data.batch(0)
    assert (raw.seq.dtype, raw.teacher.dtype) == (torch.uint8, torch.float16)
    moved = list(itertools.islice(prefetch(data.iterate(0), torch.device("cpu")), 3))
    for step, batch in enumerate(moved):
        want = data.batch(step)
        assert (batch.seq.dtype, batch.teacher.dtype) == (torch.int64, torch.float32)
        assert torch.equal(batch.seq, want.seq.long()) and torch.equal(batch.record, want.record)
        assert torch.equal(batch.teacher, want.teacher.float())


def test_a_store_that_does_not_fit_the_resumed_run_is_one_line(
    train_store: Path, tmp_path: Path
) -> None:
    attrs = PretrainBatches(train_store, batch_size=8).attrs
    (tmp_path / STORE_FILE).write_text(json.dumps(attrs.to_json()))
    check_store_fits(tmp_path, attrs)  # the run's own store fits
    other = dataclasses.replace(
        attrs, window_bp=60, teacher=dataclasses.replace(attrs.teacher, hidden_size=48)
    )
    width = attrs.hidden_size
    with pytest.raises(RunError, match=rf"teacher width 48 \(run has {width}\), window size 60 "):
        check_store_fits(tmp_path, other)


def test_each_rank_reads_a_contiguous_run_of_the_store(train_store: Path) -> None:
    """A step's ids are sorted, so rank r's block lies wholly before rank r + 1's: ranks touch
    about 1 / R of the step's chunks each, and together hold exactly the global batch."""
    data = PretrainBatches(train_store, batch_size=8, seed=2, shuffle_chunks=8)
    for step in range(6):
        ids = data.record_ids(step)
        blocks = [data.batch(step, rank, 4).record for rank in range(4)]
        assert torch.equal(torch.cat(blocks), torch.from_numpy(ids))
        assert all(a.max() < b.min() for a, b in itertools.pairwise(blocks))
