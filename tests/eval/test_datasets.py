"""Benchmark data from disk: tiny synthetic datasets in each layout users have."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from had_common.checksums import file_sha256
from had_train.eval.datasets import load_task_data
from had_train.eval.registry import NT_HUB
from had_train.eval.tasks import TaskError, load_task

SHA = "96d86d5" + "0" * 33  # a full-length commit starting with the pinned prefix


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def write_hf_metadata(root: Path, rel: str, commit: str) -> None:
    """What `hf download --local-dir root` writes beside each file: commit, etag, timestamp."""
    meta = root / ".cache" / "huggingface" / "download" / f"{rel}.metadata"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(f"{commit}\n{'e' * 40}\n1712656091.123\n")


def nt_folder(tmp_path: Path, benchmark: str = "nt", commit: str = SHA) -> Path:
    root = tmp_path / NT_HUB[benchmark].folder
    for split, seqs, labels in (
        ("train", ["ACGT", "GGCC", "TTAA", "ACGN"], [0, 1, 0, 1]),
        ("test", ["CCCC", "AAAA"], [1, 1]),
    ):
        write_parquet(
            root / "H3" / f"{split}.parquet",
            {"sequence": seqs, "label": labels, "task": ["H3"] * len(seqs)},
        )
        write_hf_metadata(root, f"H3/{split}.parquet", commit)
    return root


def test_nt_hf_download_folder(tmp_path: Path) -> None:
    root = nt_folder(tmp_path)
    data = load_task_data("nt/H3", tmp_path)
    assert data.spec is not None and data.spec.key == "nt/H3"
    assert data.train.sequences == ("ACGT", "GGCC", "TTAA", "ACGN")
    assert data.train.labels.tolist() == [0, 1, 0, 1]
    assert data.test is not None and data.test.labels.tolist() == [1, 1]
    assert data.train.class_names == data.test.class_names == ("0", "1")
    assert data.source["revision"] == SHA and data.source["layout"] == "hf-parquet"
    assert data.source["files"] == {
        f"H3/{s}.parquet": file_sha256(root / "H3" / f"{s}.parquet") for s in ("train", "test")
    }
    # --data-dir may also be the downloaded folder itself; a bare name resolves when unique.
    assert load_task_data("H3", root).train.fingerprint() == data.train.fingerprint()


def test_nt_other_revision_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    nt_folder(tmp_path, commit="f" * 40)
    with caplog.at_level(logging.WARNING, logger="had_train.eval.datasets"):
        data = load_task_data("nt/H3", tmp_path)
    assert data.source["revision"] == "f" * 40
    assert "not the pinned 96d86d5" in caplog.text


def test_nt_shared_files_are_split_by_the_task_column(tmp_path: Path) -> None:
    root = tmp_path / NT_HUB["nt-revised"].folder
    for split in ("train", "test"):
        write_parquet(
            root / "data" / f"{split}-00000-of-00001.parquet",
            {
                "sequence": ["ACGT", "GGGG", "TTTT", "CCCC"],
                "label": [0, 1, 0, 2],
                "task": ["H2AFZ", "H2AFZ", "enhancers", "enhancers"],
            },
        )
    data = load_task_data("nt-revised/H2AFZ", tmp_path)
    assert data.train.sequences == ("ACGT", "GGGG")
    assert data.test is not None and len(data.test) == 2
    assert data.source["revision"] is None  # no download metadata: unknown, not invented


def test_splits_share_the_union_of_classes(tmp_path: Path) -> None:
    root = tmp_path / NT_HUB["nt"].folder / "enhancers_types"
    write_parquet(root / "train.parquet", {"sequence": ["AC", "GT"], "label": [0, 2]})
    write_parquet(root / "test.parquet", {"sequence": ["AA", "CC"], "label": [1, 1]})
    data = load_task_data("nt/enhancers_types", tmp_path)
    assert data.train.class_names == data.test.class_names == ("0", "1", "2")
    assert data.train.labels.tolist() == [0, 2] and data.test.labels.tolist() == [1, 1]


def test_bad_sequence_in_parquet_names_file_and_row(tmp_path: Path) -> None:
    root = tmp_path / NT_HUB["nt"].folder / "H4"
    write_parquet(root / "train.parquet", {"sequence": ["ACGT", "AC-T"], "label": [0, 1]})
    write_parquet(root / "test.parquet", {"sequence": ["ACGT"], "label": [0]})
    with pytest.raises(TaskError, match=r"train\.parquet, row 1: sequence contains '-'"):
        load_task_data("nt/H4", tmp_path)


def test_gb_package_folder_layout(tmp_path: Path) -> None:
    root = tmp_path / "human_nontata_promoters"
    files = {
        "train/negative/1.txt": "ACGTA",
        "train/negative/2.txt": "CCGTA\n",
        "train/positive/3.txt": "TTTTA",
        "test/positive/4.txt": "GGGGA",
        "test/negative/5.txt": "AAAAA",
    }
    for rel, seq in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(seq)
    data = load_task_data("gb/human_nontata_promoters", tmp_path)
    assert data.train.class_names == ("negative", "positive")
    assert data.train.sequences == ("ACGTA", "CCGTA", "TTTTA")
    assert data.train.labels.tolist() == [0, 0, 1]
    assert data.test is not None and dict(
        zip(data.test.sequences, data.test.labels.tolist(), strict=True)
    ) == {
        "AAAAA": 0,
        "GGGGA": 1,
    }
    assert data.source["layout"] == "genomic-benchmarks"
    assert data.source["files"]["train/negative"]["count"] == 2


def test_gb_parquet_mirror(tmp_path: Path) -> None:
    root = tmp_path / "Genomic_Benchmarks_demo_human_or_worm"
    write_parquet(
        root / "data" / "train-00000-of-00001-abc.parquet",
        {"seq": ["ACG", "TTA", "GGA"], "label": [0, 1, 1]},
    )
    write_parquet(root / "data" / "test-00000-of-00001-def.parquet", {"seq": ["CCA"], "label": [0]})
    write_hf_metadata(root, "data/train-00000-of-00001-abc.parquet", "a" * 40)
    write_hf_metadata(root, "data/test-00000-of-00001-def.parquet", "a" * 40)
    data = load_task_data("demo_human_or_worm", tmp_path)
    assert data.spec is not None and data.spec.key == "gb/demo_human_or_worm"
    assert (len(data.train), len(data.test or ())) == (3, 1)
    assert data.train.class_names == ("0", "1")
    assert data.source["layout"] == "gb-parquet-mirror" and data.source["revision"] == "a" * 40


def test_csv_with_split_column(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("sequence,label,split\nACGT,b,train\nGGCC,a,Train\nTTAA,c,test\n\n")
    data = load_task_data(str(path), None)
    assert data.spec is None
    assert data.train.sequences == ("ACGT", "GGCC") and data.train.labels.tolist() == [1, 0]
    assert data.test is not None and data.test.labels.tolist() == [2]
    assert data.train.class_names == data.test.class_names == ("a", "b", "c")
    assert data.source["files"] == {str(path): file_sha256(path)}


def test_csv_without_split_column_is_todays_task(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("sequence,label\nACGT,x\nGGCC,y\n")
    data = load_task_data(str(path), tmp_path)
    assert data.test is None
    assert data.train.fingerprint() == load_task(path).fingerprint()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "sequence,label,split\nACGT,a,train\nGGCC,b,valid\n",
            r"line 3: 'split' is 'valid'; expected train or test",
        ),
        ("sequence,label,split\nACGT,a,train\nGGCC,b,train\n", "no 'test' rows"),
        ("sequence,label,split\nACGT,a,train\nGGCC,a,test\n", "only one class"),
    ],
)
def test_csv_split_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TaskError, match=match):
        load_task_data(str(path), None)


def test_builtin_has_no_official_split() -> None:
    data = load_task_data("splice", None)
    assert data.spec is not None and data.spec.key == "splice"
    assert data.test is None and len(data.train) == 3190


@pytest.mark.parametrize(
    ("task", "make", "match"),
    [
        (
            "nt/H3",
            None,
            r"no folder .*nucleotide_transformer_downstream_tasks; expected .*hf download InstaDeepAI/nucleotide_transformer_downstream_tasks --repo-type dataset --local-dir",
        ),
        (
            "gb/human_ocr_ensembl",
            None,
            r"download_dataset\('human_ocr_ensembl', version=0, dest_path=.*hf download katarinagresova/Genomic_Benchmarks_human_ocr_ensembl",
        ),
        ("gb/human_ocr_ensembl", "Human_OCR_Ensembl", r"found .*Human_OCR_Ensembl: misnamed\?"),
        (
            "nt/H3K4me1",
            "nucleotide_transformer_downstream_tasks/H3",
            r"no train/test parquet files for H3K4me1",
        ),
        (
            "gb/human_enhancers_cohn",
            "human_enhancers_cohn/readme",
            r"holds neither train/ and test/ nor parquet",
        ),
    ],
)
def test_missing_or_misnamed_folder_is_one_line(
    tmp_path: Path, task: str, make: str | None, match: str
) -> None:
    if make is not None:
        (tmp_path / make).mkdir(parents=True)
    with pytest.raises(TaskError, match=match) as info:
        load_task_data(task, tmp_path)
    assert "\n" not in str(info.value)


def test_registry_task_needs_a_data_dir() -> None:
    with pytest.raises(TaskError, match=r"give --data-dir DIR with DIR/human_nontata_promoters"):
        load_task_data("human_nontata_promoters", None)


def test_partial_download_does_not_read_other_tasks(tmp_path: Path) -> None:
    nt_folder(tmp_path)  # H3 only
    with pytest.raises(TaskError, match="no train/test parquet files for H3K4me1"):
        load_task_data("nt/H3K4me1", tmp_path)


def test_other_benchmark_version_is_named(tmp_path: Path) -> None:
    nt_folder(tmp_path, benchmark="nt-revised")
    with pytest.raises(TaskError, match=r"_revised: that is nt-revised, not nt\)"):
        load_task_data("nt/H3", tmp_path)


def test_task_folder_whose_task_column_spells_the_name_otherwise(tmp_path: Path) -> None:
    root = tmp_path / NT_HUB["nt"].folder / "H4ac"
    for split in ("train", "test"):
        write_parquet(
            root / f"{split}.parquet",
            {"sequence": ["ACGT", "GGCC"], "label": [0, 1], "task": ["h4ac"] * 2},
        )
    data = load_task_data("nt/H4ac", tmp_path)
    assert len(data.train) == 2 and data.test is not None and len(data.test) == 2
