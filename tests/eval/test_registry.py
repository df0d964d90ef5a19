"""The benchmark registry: task counts, metric rules per family, protocols, selectors, the table."""

from __future__ import annotations

import csv

import pytest

from had_train.eval.metrics import METRICS
from had_train.eval.published import published_path
from had_train.eval.registry import (
    PROTOCOLS,
    TASKS,
    format_task_list,
    resolve_task,
    select_tasks,
)
from had_train.eval.tasks import BUILTIN_TASKS, TaskError

REVISED_NAMES = {
    "H2AFZ",
    "H3K27ac",
    "H3K27me3",
    "H3K36me3",
    "H3K4me1",
    "H3K4me2",
    "H3K4me3",
    "H3K9ac",
    "H3K9me3",
    "H4K20me1",
    "enhancers",
    "enhancers_types",
    "promoter_all",
    "promoter_no_tata",
    "promoter_tata",
    "splice_sites_acceptors",
    "splice_sites_donors",
    "splice_sites_all",
}
GB_NAMES = {
    "dummy_mouse_enhancers_ensembl",
    "demo_coding_vs_intergenomic_seqs",
    "demo_human_or_worm",
    "human_enhancers_cohn",
    "human_enhancers_ensembl",
    "human_ensembl_regulatory",
    "human_nontata_promoters",
    "human_ocr_ensembl",
}


def family(benchmark: str) -> dict[str, object]:
    return {s.name: s for s in TASKS.values() if s.benchmark == benchmark}


def test_counts_and_keys() -> None:
    assert len(family("nt")) == 18
    assert set(family("nt-revised")) == REVISED_NAMES
    assert set(family("gb")) == GB_NAMES
    assert set(family("builtin")) == set(BUILTIN_TASKS)
    assert len(TASKS) == 18 + 18 + 8 + len(BUILTIN_TASKS)
    for key, spec in TASKS.items():
        assert key == spec.key
        assert key == (
            spec.name if spec.benchmark == "builtin" else f"{spec.benchmark}/{spec.name}"
        )


def test_metric_rules_per_family() -> None:
    for spec in TASKS.values():
        assert spec.metric in METRICS
        assert spec.metrics[0] == spec.metric and "mcc" in spec.metrics
        if spec.benchmark == "nt":
            if spec.name.startswith("H") or spec.name.startswith("enhancers"):
                assert spec.metric == "mcc", spec.key
            elif spec.name == "splice_sites_all":
                assert spec.metric == "accuracy"
            else:
                assert spec.name.startswith(("promoter", "splice_sites_")), spec.key
                assert spec.metric == "f1", spec.key
        elif spec.benchmark == "nt-revised":
            assert spec.metric == "mcc"
        elif spec.benchmark == "gb":
            assert spec.metric == "accuracy"


def test_published_lengths_and_classes() -> None:
    nt = family("nt")
    lengths = {spec.name: spec.seq_len for spec in nt.values()}
    assert {lengths[n] for n in lengths if n.startswith("H")} == {500}
    assert lengths["enhancers"] == lengths["enhancers_types"] == 200
    assert {lengths[n] for n in lengths if n.startswith("promoter")} == {300}
    assert lengths["splice_sites_acceptors"] == lengths["splice_sites_donors"] == 600
    assert lengths["splice_sites_all"] == 400
    assert {s.seq_len for s in family("nt-revised").values() if s.name.startswith("H")} == {1000}
    for spec in TASKS.values():
        assert spec.classes == tuple(sorted(spec.classes)) and spec.num_classes >= 2
        if spec.benchmark in ("nt", "nt-revised"):
            three = spec.name in {"enhancers_types", "splice_sites_all"}
            assert spec.classes == (("0", "1", "2") if three else ("0", "1")), spec.key
    assert TASKS["gb/human_ensembl_regulatory"].classes == ("enhancer", "ocr", "promoter")
    assert TASKS["splice"].classes == ("EI", "IE", "N")


def test_protocols() -> None:
    nt, gb, revised = PROTOCOLS["nt"], PROTOCOLS["gb"], PROTOCOLS["nt-revised"]
    assert (nt.kind, nt.seeds, nt.val_frac) == ("holdout", 10, 0.1)
    assert (gb.kind, gb.seeds, gb.val_frac) == ("holdout", 5, 0.1)
    assert (revised.kind, revised.folds) == ("kfold", 10)
    assert TASKS["splice"].protocol.kind == "stratified"
    assert TASKS["nt/H3"].protocol is nt


def test_select_families_lists_and_names() -> None:
    assert len(select_tasks("all")) == 44
    assert {s.benchmark for s in select_tasks("gb")} == {"gb"}
    picked = select_tasks(" H3 , gb/demo_human_or_worm,nt/H3,nt-revised/H2AFZ,splice")
    assert [s.key for s in picked] == [
        "nt/H3",
        "gb/demo_human_or_worm",
        "nt-revised/H2AFZ",
        "splice",
    ]
    assert resolve_task("H2AFZ").key == "nt-revised/H2AFZ"
    assert resolve_task("h3k14ac").key == "nt/H3K14ac"


@pytest.mark.parametrize(
    ("selector", "match"),
    [
        ("H3K36me3", r"several benchmarks \(nt/H3K36me3, nt-revised/H3K36me3\)"),
        ("enhancers", "nt/enhancers, nt-revised/enhancers"),
        ("H3K4me", "closest: H3K4me"),
        ("human_nontata_promoter", "closest: .*human_nontata_promoters"),
        ("nothing_like_it", "unknown task 'nothing_like_it'.*--list-tasks"),
        (" , ", "no task given"),
    ],
)
def test_selector_errors_are_one_line(selector: str, match: str) -> None:
    with pytest.raises(TaskError, match=match) as info:
        select_tasks(selector)
    assert "\n" not in str(info.value)


def test_task_list_mentions_every_task_aligned() -> None:
    text = format_task_list()
    lines = text.splitlines()
    for key in TASKS:
        assert any(line.split()[0] == key for line in lines if line.strip()), key
    header, rule = lines[0], lines[1]
    metric_col = header.index("metric")
    assert all(line[metric_col - 2 : metric_col] == "  " for line in lines[2 : 2 + len(TASKS)])
    assert rule.startswith("-")
    assert "10 seeds x 90%/10%" in text and "10-fold CV" in text and "5 seeds" in text


def test_published_results_name_registry_tasks_with_their_metric() -> None:
    path = published_path()  # the copy in the package, which the results table reads
    family_of = {"nucleotide_transformer": "nt", "genomic_benchmarks": "gb"}
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if not r["task"].startswith("MEAN_")]
    assert rows
    for row in rows:
        key = f"{family_of[row['benchmark']]}/{row['task']}"
        assert key in TASKS, key
        assert TASKS[key].metric == row["metric"], key


def test_list_tasks_prints_every_task_from_the_command_line() -> None:
    from click.testing import CliRunner

    from had_train.cli import main

    result = CliRunner().invoke(main, ["eval", "--list-tasks"])
    assert result.exit_code == 0, result.output
    for key in ("nt/H3", "nt-revised/H2AFZ", "gb/human_nontata_promoters", "splice"):
        assert key in result.output
