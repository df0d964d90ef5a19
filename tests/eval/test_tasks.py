"""Task loading: the built-in splice and Oct4/Mafk sets, class ids from sorted names, and CSV validation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from had_common.errors import HadError
from had_train.eval.tasks import (
    BUILTIN_TASKS,
    TaskError,
    builtin_task_path,
    load_task,
    read_csv_rows,
)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_builtin_splice_is_the_uci_set() -> None:
    data = load_task("splice")
    assert len(data) == 3190
    assert data.class_names == ("EI", "IE", "N")
    assert data.class_counts() == {"EI": 767, "IE": 768, "N": 1655}
    assert {len(s) for s in data.sequences} == {60}
    assert data.labels.dtype == np.int64
    assert Path(data.source).name == BUILTIN_TASKS["splice"].filename


def test_builtin_oct4_mafk_is_the_janggu_set(caplog: pytest.LogCaptureFixture) -> None:
    data = load_task("oct4_mafk")
    assert len(data) == 7997
    assert data.class_names == ("Mafk", "Oct4")
    assert data.class_counts() == {"Mafk": 4000, "Oct4": 3997}
    assert {len(s) for s in data.sequences} == {200}
    assert all(set(s) <= set("ACGT") for s in data.sequences)  # upper-cased, no N
    assert len(set(data.sequences)) == len(data)
    assert Path(data.source).name == BUILTIN_TASKS["oct4_mafk"].filename
    assert "split" not in caplog.text  # the built-in pools its source's split without a warning
    rows = read_csv_rows(builtin_task_path("oct4_mafk"))
    splits = Counter((r.split, r.label) for r in rows)
    assert splits == {
        ("train", "Oct4"): 3897,
        ("train", "Mafk"): 3900,
        ("test", "Oct4"): 100,
        ("test", "Mafk"): 100,
    }


def test_class_ids_come_from_sorted_names_not_row_order(tmp_path: Path) -> None:
    rows = [("ACGT", "zeta"), ("GGCC", "alpha"), ("TTAA", "mid"), ("CCCA", "alpha")]
    first = write_csv(
        tmp_path / "a.csv", "sequence,label\n" + "".join(f"{s},{c}\n" for s, c in rows)
    )
    second = write_csv(
        tmp_path / "b.csv", "sequence,label\n" + "".join(f"{s},{c}\n" for s, c in rows[::-1])
    )
    for path in (first, second):
        data = load_task(path)
        assert data.class_names == ("alpha", "mid", "zeta")
        by_seq = dict(zip(data.sequences, data.labels.tolist(), strict=True))
        assert by_seq == {"ACGT": 2, "GGCC": 0, "TTAA": 1, "CCCA": 0}


def test_variable_lengths_extra_columns_and_bom_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("\ufeffid,label,sequence\n1,x,ACGTN\n2,y,AC\n\n3,x,acgtacgtRY\n")
    data = load_task(str(path))
    assert data.name == "t"
    assert data.sequences == ("ACGTN", "AC", "acgtacgtRY")
    assert data.labels.tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("seq,label\nACGT,a\nACGT,b\n", "missing column.*'sequence'"),
        ("sequence,class\nACGT,a\nACGT,b\n", "missing column.*'label'"),
        ("", "missing column"),
        ("sequence,label\n", "no rows"),
        ("sequence,label\nACGT,a\nGGCC,a\n", "only one class"),
        ("sequence,label\nACGT,a\n,b\n", "line 3: empty 'sequence'"),
        ("sequence,label\nACGT,a\nACGT,\n", "line 3: empty 'label'"),
        ("sequence,label\nACGT,a\nAC-GT,b\n", "line 3: sequence contains '-'"),
    ],
)
def test_malformed_csv_is_a_clear_had_error(tmp_path: Path, text: str, match: str) -> None:
    path = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(TaskError, match=match) as info:
        load_task(path)
    assert isinstance(info.value, HadError)
    assert "bad.csv" in str(info.value)


def test_unknown_name_or_missing_file_names_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(
        TaskError, match="not a built-in task \\(oct4_mafk, splice\\).*does not exist"
    ):
        load_task(tmp_path / "nope.csv")
    with pytest.raises(TaskError, match="is a directory"):
        load_task(tmp_path)
