"""An exported student loads without had (as remote code) and embeds as its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from had_cache import dna
from had_common.errors import HadError
from had_train import pretrain
from had_train.checkpoint import save_checkpoint
from had_train.export import (
    AUTO_MAP,
    CARD_FILE,
    NOT_RECORDED,
    STORE_FILE,
    ExportError,
    build_tokenizer,
    export_student,
    relative_imports,
)
from had_train.model import HadStudentForPretraining, HadStudentModel, count_parameters
from tests.helpers import MIXER_STACKS, tiny_config

SEQUENCES = ["ACGTACGTTTGCA", "acgtn", "ACGRYNnkgt", "G"]
"""A padded batch: upper and lower case, N, IUPAC letters, a single base."""
STACKS = {"gdn_attention": ["gdn", "attention"], "hybrid": MIXER_STACKS["hybrid"]}

# Runs with `python -I -S`: no site-packages and no .pth files (the editable install of had is a
# .pth finder); only the directories torch and transformers live in are appended.
LOADER = """
import importlib.util, json, sys
sys.path.extend(json.loads(sys.argv[1]))
assert importlib.util.find_spec("had_train") is None, "had is importable: the test proves nothing"
import numpy as np, torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
sequences = json.loads(sys.argv[2])
for folder in sys.argv[3:]:
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    batch = tokenizer(sequences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    np.save(f"{folder}/hidden.npy", hidden.numpy())
    np.save(f"{folder}/ids.npy", batch["input_ids"].numpy())
    np.save(f"{folder}/mask.npy", batch["attention_mask"].numpy())
    classifier = AutoModelForSequenceClassification.from_pretrained(
        folder, trust_remote_code=True, num_labels=3
    ).eval()
    with torch.no_grad():
        np.save(f"{folder}/pooled.npy", classifier.embed(**batch).numpy())
    alone = [tokenizer(s, add_special_tokens=True)["input_ids"] for s in sequences]
    json.dump({"class": type(model).__name__, "alone": alone}, open(f"{folder}/loaded.json", "w"))
"""


def write_run_files(run: Path) -> None:
    """What `had-train pretrain` writes beside its checkpoints (a subset of the fields)."""
    (run / pretrain.CONFIG_FILE).write_text(
        json.dumps({"objective": "had", "batch_size": 8, "lr": 0.001, "seed": 3})
    )
    record = {
        "command": "had-train pretrain --cache demo.had.zarr",
        "git": {"commit": "0123abc", "dirty": True},
        "versions": {"torch": "2.13.0", "transformers": "5.24.0"},
        "inputs": {"store_fingerprint": "f1ng3rpr1nt"},
        "start_step": 0,
    }
    (run / pretrain.PROVENANCE_FILE).write_text(json.dumps([record]))
    store = {
        "teacher": {"name_or_path": "InstaDeepAI/nt-tiny", "layers": [2, 4]},
        "window_bp": 1020,
        "n_records": 17,
        "fasta": {"path": "demo.fa.gz", "sha256": "abc"},
    }
    (run / STORE_FILE).write_text(json.dumps(store))
    held_out = {"records": 4, "alignment_cosine": 0.5, "reconstruction_accuracy": 0.25}
    (run / pretrain.HELD_OUT_FILE).write_text(json.dumps(held_out))
    (run / pretrain.LOSSES_FILE).write_text("step,loss,align,recon\n1,2.0,1.0,1.0\n5,1.5,0.7,0.8\n")


def make_checkpoint(run: Path, mixers: list[str], seed: int) -> Path:
    """A pretraining checkpoint whose weights are not an initialisation (so a load that silently
    re-initialised would be caught)."""
    torch.manual_seed(seed)
    model = HadStudentForPretraining(tiny_config(mixers=mixers))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return save_checkpoint(run, 5, model, optimizer, {}, keep=1)


def dependency_paths() -> list[str]:
    """Where torch, transformers and their dependencies are installed (not had's .pth files)."""
    import transformers

    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    paths |= {str(Path(m.__file__).parents[1]) for m in (torch, transformers, np)}
    return sorted(paths)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """stack -> (step folder, export folder), all loaded once in a subprocess without had."""
    root = tmp_path_factory.mktemp("export")
    folders = {}
    for seed, (name, mixers) in enumerate(STACKS.items()):
        run = root / f"run-{name}"
        step = make_checkpoint(run, mixers, seed)
        if name == "gdn_attention":
            write_run_files(run)
        folders[name] = (step, export_student(run, root / f"export-{name}"))
    env = {"HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", "PATH": os.environ["PATH"]}
    args = [json.dumps(dependency_paths()), json.dumps(SEQUENCES)]
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LOADER, *args, *(str(f) for _, f in folders.values())],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return folders


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_export_loads_without_had_and_embeds_as_the_checkpoint(
    exported: dict[str, tuple[Path, Path]], stack: str
) -> None:
    step, folder = exported[stack]
    assert json.loads((folder / "loaded.json").read_text())["class"] == "HadStudentModel"
    ids = torch.from_numpy(np.load(folder / "ids.npy"))
    mask = torch.from_numpy(np.load(folder / "mask.npy"))
    for row, seq in enumerate(SEQUENCES):  # padded on the right, valid part left-aligned
        assert mask[row].tolist() == [1] * len(seq) + [0] * (ids.shape[1] - len(seq))
        assert ids[row, len(seq) :].eq(dna.PAD).all()
    encoder = HadStudentModel.from_pretrained(step).eval()
    with torch.no_grad():
        expected = encoder(ids, mask).last_hidden_state
    hidden = torch.from_numpy(np.load(folder / "hidden.npy"))
    torch.testing.assert_close(hidden, expected, rtol=1e-6, atol=1e-6)
    # AutoModelForSequenceClassification (auto_map) loads the same encoder under its head
    pooled = torch.from_numpy(np.load(folder / "pooled.npy"))
    torch.testing.assert_close(pooled, encoder.pool(expected, mask), rtol=1e-6, atol=1e-6)


def test_exported_tokenizer_writes_dna_codes(exported: dict[str, tuple[Path, Path]]) -> None:
    _, folder = exported["gdn_attention"]
    alone = json.loads((folder / "loaded.json").read_text())["alone"]
    assert alone == [dna.encode(seq).tolist() for seq in SEQUENCES]  # nothing added around


def test_tokenizer_ids_equal_dna_encode_for_every_ascii_character() -> None:
    tokenizer = build_tokenizer()
    text = "".join(chr(c) for c in range(33, 127)) + "acgtACGT ryswkmbdhvnRYSWKMBDHVN-."
    assert tokenizer(text)["input_ids"] == dna.encode(text).tolist()
    assert (tokenizer.mask_token_id, tokenizer.pad_token_id) == (dna.MASK, dna.PAD)
    assert len(tokenizer) == dna.STUDENT_VOCAB_SIZE
    assert tokenizer.decode(dna.encode("ACGTN").tolist()) == "ACGTN"


def test_folder_holds_the_encoder_its_code_and_the_card(
    exported: dict[str, tuple[Path, Path]],
) -> None:
    step, folder = exported["gdn_attention"]
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and config["architectures"] == ["HadStudentModel"]
    with safe_open(folder / "model.safetensors", "pt") as weights:
        keys = set(weights.keys())
    encoder = HadStudentModel.from_pretrained(step)
    assert keys == set(encoder.state_dict())  # the encoder only: no had. prefix, no heads
    ops = (folder / "_ops.py").read_text()
    assert not [line for line in ops.splitlines() if line.startswith(("from had", "import had"))]
    assert "from .gated_delta_rule import gated_delta_rule" in ops
    assert (folder / "selective_scan.py").exists() and (folder / "_common.py").exists()
    assert not (folder / "__init__.py").exists()

    card = (folder / CARD_FILE).read_text()
    for fact in (
        f"{count_parameters(encoder):,}",
        "gdn, attention",
        "InstaDeepAI/nt-tiny",
        "f1ng3rpr1nt",
        "0123abc (with uncommitted changes)",
        "had-train pretrain --cache demo.had.zarr",
        "| Steps trained | 5 |",
        "| Objective | `had` |",
        "| Learning rate | 0.001 |",
        "4 (the store's deepest)",
        "| reconstruction accuracy | 0.25 |",
        "step 5): total 1.5",
        'AutoModel.from_pretrained("export-gdn_attention", trust_remote_code=True)',
    ):
        assert fact in card, fact
    assert NOT_RECORDED not in card.split("## Training")[0]


def test_a_run_without_records_still_exports(exported: dict[str, tuple[Path, Path]]) -> None:
    card = (exported["hybrid"][1] / CARD_FILE).read_text()
    assert "| Teacher | not recorded |" in card and "| Store fingerprint | not recorded |" in card
    assert "| Steps trained | 5 |" in card  # from the step folder's trainer state
    assert "gdn, mamba, attention" in card


def test_bad_paths_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(HadError, match="checkpoint not found"):
        export_student(tmp_path / "nowhere", tmp_path / "out")
    step = make_checkpoint(tmp_path / "run", ["attention"], seed=0)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(HadError, match="not an empty folder"):
        export_student(step, tmp_path / "taken")
    (tmp_path / "run" / pretrain.PROVENANCE_FILE).write_text("{not json")
    with pytest.raises(HadError, match="not valid JSON"):
        export_student(step, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


@pytest.mark.parametrize(
    "source",
    [
        "from had_train.ops import gated_delta_rule",  # absent where the export loads
        "import had_cache.dna",
        "from . import norm",  # transformers' loader would not copy norm.py
        "from ..ops import selective_scan",  # no parent package in one flat folder
    ],
)
def test_source_that_would_not_load_as_remote_code_is_refused(source: str) -> None:
    assert relative_imports("from .norm import RMSNorm\nimport torch\n", Path("x.py")) == ["norm"]
    with pytest.raises(ExportError, match="x.py:2"):
        relative_imports(f"import math\n{source}\n", Path("x.py"))
