"""A pretrained student as a self-contained Hugging Face folder that loads without `had`.

    AutoModel.from_pretrained(DIR, trust_remote_code=True)      # the encoder: last_hidden_state
    AutoTokenizer.from_pretrained(DIR, trust_remote_code=True)  # one token per base, had's codes

The folder holds the encoder's config (with `auto_map`) and weights (no pretraining heads), the
model package's source as remote code, a tokenizer for the student's alphabet, and a model card
with the run's provenance. Transformers' remote-code loader copies the files named in
`auto_map` and whatever they import relatively (`from .name import ...`) from one flat folder,
and refuses absolute imports of packages that are not installed; so the source files are
collected by following relative imports, and the model package's one door to `had_train.ops`
(`model/_ops.py`) is replaced by a file importing the copied op files relatively.
"""

from __future__ import annotations

import ast
import csv
import functools
import json
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import had_train.model as model_package
import had_train.ops as ops_package
from had_cache import dna
from had_common.errors import HadError
from had_train.checkpoint import TRAINER_STATE, check_encoder_loaded, resolve_model_dir
from had_train.model import (
    HadStudentConfig,
    HadStudentForSequenceClassification,
    HadStudentModel,
    _ops,
    count_parameters,
)
from had_train.pretrain import (
    CONFIG_FILE,
    HELD_OUT_FILE,
    LOSSES_FILE,
    PROVENANCE_FILE,
    STORE_FILE,
)

CARD_FILE = "README.md"
MASK_TOKEN, PAD_TOKEN = "[MASK]", "[PAD]"
NOT_RECORDED = "not recorded"


class ExportError(HadError):
    """A checkpoint or output folder that cannot be exported as asked."""


def _module_name(cls: type) -> str:
    """`had_train.model.modeling_had.HadStudentModel` -> `modeling_had.HadStudentModel`."""
    return f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"


AUTO_MAP = {
    "AutoConfig": _module_name(HadStudentConfig),
    "AutoModel": _module_name(HadStudentModel),
    "AutoModelForSequenceClassification": _module_name(HadStudentForSequenceClassification),
}
"""What `trust_remote_code=True` loads, by file and class (the files are the entry points)."""


def export_student(checkpoint: Path, out: Path) -> Path:
    """Write the encoder of a pretraining run or `step-N/` folder to `out` (created; must not
    exist or be empty) as a Hugging Face folder that loads without `had`; returns `out`.

    Written into a temporary sibling and renamed last, so `out` is complete or absent.
    """
    model_dir = resolve_model_dir(Path(checkpoint))
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out} exists and is not an empty folder; choose a new one")
    encoder = _load_encoder(model_dir)
    _check_token_codes(encoder.config)
    records = read_run_records(model_dir)
    code = remote_code_files()

    final = out.resolve()  # `out` may be "." or end in "/"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    encoder.config.auto_map = dict(AUTO_MAP)
    encoder.config.architectures = [HadStudentModel.__name__]
    try:
        encoder.save_pretrained(tmp)
        for name, text in code.items():
            (tmp / name).write_text(text)
        save_tokenizer(tmp)
        (tmp / CARD_FILE).write_text(model_card(encoder, records, final.name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        final.rmdir()
    tmp.rename(final)
    return out


def _load_encoder(model_dir: Path) -> HadStudentModel:
    """The checkpoint's encoder (prefix `had.`); refuses a checkpoint missing encoder weights,
    which would otherwise be exported with random ones."""
    encoder, info = HadStudentModel.from_pretrained(model_dir, output_loading_info=True)
    check_encoder_loaded(model_dir, info, new=None)
    return encoder.eval()


def _check_token_codes(config: HadStudentConfig) -> None:
    """The tokenizer writes had_cache.dna's codes; a model reading others would get garbage."""
    found = (config.vocab_size, config.mask_token_id, config.pad_token_id)
    expected = (dna.STUDENT_VOCAB_SIZE, dna.MASK, dna.PAD)
    if found != expected:
        raise ExportError(
            f"the checkpoint's (vocab_size, mask_token_id, pad_token_id) = {found}, but the "
            f"tokenizer writes had's codes {expected}; this export cannot tokenize for it"
        )


# ---- remote code ------------------------------------------------------------------------------


def remote_code_files() -> dict[str, str]:
    """File name -> source text of every file the exported model runs, flat in one folder.

    Starts from the `auto_map` modules, follows relative imports within the model package, and
    from `_ops.py` (replaced by `relative_ops_source()`) into the ops package. Refuses what
    transformers' loader would not follow or what needs `had` installed.
    """
    model_dir = Path(model_package.__file__).parent
    ops_dir = Path(ops_package.__file__).parent
    ops_door = _ops.__name__.rpartition(".")[2]
    project = _project_packages()
    files: dict[str, str] = {}
    origin: dict[str, Path] = {}
    pending = [(model_dir, entry.partition(".")[0]) for entry in AUTO_MAP.values()]
    while pending:
        folder, name = pending.pop()
        if name in origin:
            if origin[name] != folder:
                raise ExportError(
                    f"{name}.py exists in both {origin[name]} and {folder}; remote code is one "
                    "flat folder, so one of them must be renamed"
                )
            continue
        if folder == model_dir and name == ops_door:
            text, imports_from = relative_ops_source(), ops_dir
        else:
            text, imports_from = (folder / f"{name}.py").read_text(), folder
        origin[name], files[f"{name}.py"] = folder, text
        deps = relative_imports(text, folder / f"{name}.py", project)
        pending += [(imports_from, dep) for dep in deps]
    return files


def relative_ops_source() -> str:
    """The exported `_ops.py`: the same names as the model package's, from the copied op files."""
    lines = []
    for name in _ops.__all__:
        package, _, module = getattr(_ops, name).__module__.rpartition(".")
        if package != ops_package.__name__:
            raise ExportError(
                f"{_ops.__name__}.{name} comes from {package}.{module}, not from a file of "
                f"{ops_package.__name__}; the export copies only op files"
            )
        lines.append(f"from .{module} import {name}")
    names = ", ".join(f'"{name}"' for name in _ops.__all__)
    return (
        '"""Written by had_train.export: the ops the layers call, from the op files beside this '
        'one."""\n\n' + "\n".join(lines) + f"\n\n__all__ = [{names}]\n"
    )


def relative_imports(text: str, where: Path, project: frozenset[str] | None = None) -> list[str]:
    """Modules that `text` imports as `from .name import ...` (what transformers follows);
    raises ExportError on a relative import it would not follow (`from . import x`,
    `from ..x import y`) or an absolute import of a `project` package (default: had's)."""
    project = _project_packages() if project is None else project
    found = []
    for node in ast.walk(ast.parse(text, filename=str(where))):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level != 1 or node.module is None or "." in node.module:
                raise ExportError(
                    f"{where}:{node.lineno}: remote code is one flat folder and transformers "
                    "follows only `from .name import ...`; write the import that way"
                )
            found.append(node.module)
        else:
            absolute = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                absolute.append(node.module)
            for name in absolute:
                if name.partition(".")[0] in project:
                    raise ExportError(
                        f"{where}:{node.lineno}: imports {name}, which an exported model "
                        "cannot: it loads without had installed (use a relative import)"
                    )
    return found


@functools.cache
def _project_packages() -> frozenset[str]:
    """Top-level packages of the distribution that holds had_train (had_train, had_cache, ...)."""
    top = __name__.partition(".")[0]
    distributions = metadata.packages_distributions()
    own = set(distributions.get(top, ()))
    return frozenset({top} | {pkg for pkg, names in distributions.items() if own & set(names)})


# ---- tokenizer --------------------------------------------------------------------------------


def build_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character with had_cache.dna's codes: A C G T (either case) -> their
    codes, any other character (IUPAC letters, N, gaps) -> N, exactly as `dna.encode`; [MASK]
    and [PAD] special; nothing added around a sequence; pads on the right (the student's
    attention_mask is left-aligned)."""
    bases = dna.BASES[: dna.N]
    unknown = dna.BASES[dna.N]
    vocab = {letter: code for code, letter in enumerate(dna.BASES)}
    vocab |= {MASK_TOKEN: dna.MASK, PAD_TOKEN: dna.PAD}
    if sorted(vocab.values()) != list(range(dna.STUDENT_VOCAB_SIZE)):
        raise ExportError(f"the alphabet's codes {vocab} do not fill 0..STUDENT_VOCAB_SIZE - 1")
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=unknown))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Replace(Regex(f"[^{bases}{bases.lower()}]"), unknown)]
        + [normalizers.Replace(base.lower(), base) for base in bases]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token=unknown,
        mask_token=MASK_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )


def save_tokenizer(folder: Path) -> None:
    """tokenizer.json + tokenizer_config.json, under the class name transformers 4 and 5 share."""
    build_tokenizer().save_pretrained(folder)
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2) + "\n")


# ---- model card -------------------------------------------------------------------------------


@dataclass
class RunRecords:
    """What the run folder recorded about how the checkpoint was made; None: not recorded."""

    run_dir: Path
    step: int | None = None
    config: dict[str, Any] | None = None
    provenance: list[dict[str, Any]] = field(default_factory=list)
    store: dict[str, Any] | None = None
    held_out: dict[str, Any] | None = None
    last_losses: dict[str, str] | None = None


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ExportError(f"{path}: not valid JSON ({err}); fix or remove it") from err


def read_run_records(model_dir: Path) -> RunRecords:
    """The step folder's trainer state and the run folder's (its parent's) files, each optional."""
    run_dir = Path(model_dir).parent
    state = _read_json(Path(model_dir) / TRAINER_STATE) or {}
    provenance = _read_json(run_dir / PROVENANCE_FILE) or []
    last_losses = None
    if (run_dir / LOSSES_FILE).exists():
        with open(run_dir / LOSSES_FILE, newline="") as fh:
            rows = list(csv.DictReader(fh))
        last_losses = rows[-1] if rows else None
    return RunRecords(
        run_dir=run_dir,
        step=state.get("step"),
        config=_read_json(run_dir / CONFIG_FILE),
        provenance=provenance if isinstance(provenance, list) else [provenance],
        store=_read_json(run_dir / STORE_FILE),
        held_out=_read_json(run_dir / HELD_OUT_FILE),
        last_losses=last_losses,
    )


def _get(data: Any, *keys: str) -> Any:
    """data[k1][k2]..., or None where anything along the way is missing."""
    for key in keys:
        if not isinstance(data, dict) or data.get(key) is None:
            return None
        data = data[key]
    return data


def _show(value: Any) -> str:
    if value is None:
        return NOT_RECORDED
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"`{value}`" if isinstance(value, str) else str(value)


def model_card(encoder: HadStudentModel, records: RunRecords, folder_name: str) -> str:
    """README.md: what the model is, how it was trained (from the run's records), how to use it."""
    config = encoder.config
    first = records.provenance[0] if records.provenance else None
    teacher = _get(records.store, "teacher")
    git = _get(first, "git")
    commit = None
    if git and git.get("commit"):
        commit = git["commit"] + (" (with uncommitted changes)" if git.get("dirty") else "")
    starts = [
        f"  - {_show(r.get('command'))} (from step {r.get('start_step', 0)})"
        for r in records.provenance
    ]
    window = config.attention_window
    rows = [
        ("Teacher", _show(_get(teacher, "name_or_path"))),
        ("Teacher revision", _show(_get(teacher, "revision"))),
        ("Teacher layer (hidden_states index)", _teacher_layer(records)),
        ("Store fingerprint", _show(_get(first, "inputs", "store_fingerprint"))),
        ("Genome (FASTA)", _show(_get(records.store, "fasta", "path"))),
        ("FASTA sha256", _show(_get(records.store, "fasta", "sha256"))),
        ("Window (bp)", _show(_get(records.store, "window_bp"))),
        ("Store records", _show(_get(records.store, "n_records"))),
        ("Objective", _show(_get(records.config, "objective"))),
        ("Steps trained", _show(records.step)),
        ("Batch size", _show(_get(records.config, "batch_size"))),
        ("Learning rate", _show(_get(records.config, "lr"))),
        ("Seed", _show(_get(records.config, "seed"))),
        ("Precision", _show(_get(records.config, "precision"))),
        ("had commit", _show(commit)),
        ("torch / transformers", _versions(first)),
    ]
    held = records.held_out
    if held:
        held_out = "\n".join(
            f"| {label} | {_show(held.get(key))} |"
            for label, key in (
                ("records", "records"),
                ("teacher layer", "teacher_layer"),
                ("alignment cosine", "alignment_cosine"),
                ("alignment R²", "alignment_r2"),
                ("alignment MSE", "alignment_mse"),
                ("reconstruction accuracy", "reconstruction_accuracy"),
            )
        )
        held_out = "| measure | value |\n|---|---|\n" + held_out
    else:
        held_out = f"Held-out figures: {NOT_RECORDED} (the run held out no records)."
    losses = records.last_losses
    last = (
        f"Last logged losses (step {losses.get('step')}): total {losses.get('loss')}, "
        f"alignment {losses.get('align')}, reconstruction {losses.get('recon')}."
        if losses
        else f"Loss log: {NOT_RECORDED}."
    )
    return f"""---
library_name: transformers
tags: [dna, genomics, distillation, had]
license: other
---

# HAD student: {count_parameters(encoder):,}-parameter DNA encoder

A character-level DNA encoder (one token per base) distilled with HAD (Hybrid Architecture
Distillation) from a DNA foundation model: during pretraining it matched the teacher's features
on visible 6-mer groups and reconstructed masked bases. This folder holds the encoder only (no
pretraining heads); its code is included (`trust_remote_code=True`) and needs only torch and
transformers.

| | |
|---|---|
| Parameters | {count_parameters(encoder):,} |
| Blocks (mixers) | {", ".join(config.mixers)} |
| Bidirectional (flip-and-add, tied) | {config.bidirectional} |
| d_model | {config.d_model} |
| Heads x head_dim | {config.num_heads} x {config.head_dim} |
| MLP width | {config.intermediate_size} |
| Attention window | {"global" if window is None else f"{window} bases"} |

## Usage

```python
import torch
from transformers import AutoModel, AutoTokenizer

model = AutoModel.from_pretrained("{folder_name}", trust_remote_code=True).eval()
# trust_remote_code: AutoTokenizer reads config.json, whose class is the included code
tokenizer = AutoTokenizer.from_pretrained("{folder_name}", trust_remote_code=True)
batch = tokenizer(["ACGTNACGTTGCA", "acgtr"], padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(**batch).last_hidden_state  # [batch, bases, {config.d_model}], padding = 0
mask = batch["attention_mask"][..., None]
embedding = (hidden * mask).sum(1) / mask.sum(1)  # one vector per sequence
```

Codes: A=0 C=1 G=2 T=3, every other letter (N, IUPAC codes) N=4, `[MASK]`=5, `[PAD]`=6; lower
case reads as upper case. Pad on the right (the tokenizer does): the attention mask must be
1...1 0...0 per row. `AutoModelForSequenceClassification` adds a mean-pool + linear head.

## Training

| | |
|---|---|
{chr(10).join(f"| {label} | {value} |" for label, value in rows)}

Command(s):
{chr(10).join(starts) if starts else f"  - {NOT_RECORDED}"}

{last}

### Held-out records

{held_out}

## License and limitations

The code is `had`'s (Apache-2.0); the weights are distilled from the teacher's features, so the
teacher's license applies to them too: check it before redistributing. Trained on
windows of the length above from one genome; longer inputs work (recurrent mixers; attention
cost grows with the square of the length unless windowed) but are untested, and no downstream
accuracy is implied by this card. On CUDA the recurrences use fla / mamba_ssm when installed,
else the included PyTorch ops (same results within float tolerance).
"""


def _versions(record: dict[str, Any] | None) -> str:
    versions = _get(record, "versions")
    if not versions:
        return NOT_RECORDED
    return f"{versions.get('torch') or '?'} / {versions.get('transformers') or '?'}"


def _teacher_layer(records: RunRecords) -> str:
    """The layer trained on: --teacher-layer if given, else the store's deepest (the default)."""
    chosen = _get(records.config, "teacher_layer")
    if chosen is not None:
        return str(chosen)
    layers = _get(records.store, "teacher", "layers")
    return f"{max(layers)} (the store's deepest)" if layers else NOT_RECORDED
