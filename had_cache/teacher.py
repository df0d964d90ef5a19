"""Load a teacher the Hugging Face way and take its features of masked 6-mer windows.

`--teacher` is a hub id, a local folder, or `demo` (the small NT-architecture teacher that ships
in `had_cache/assets/demo_teacher`). The tokenizer must be the NT 6-mer vocabulary of
`tokenize.py`, checked id by id, so token ids can be computed in bulk without calling it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from had_cache import masking, predictions, tokenize
from had_cache.schema import TeacherInfo, hidden_state_index
from had_common.checksums import files_sha256
from had_common.errors import ConfigError, HadError

PAPER_TEACHER = "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species"
DEMO_TEACHER = "demo"
DEMO_TEACHER_DIR = Path(__file__).parent / "assets" / "demo_teacher"
AUTO_DTYPE = "auto"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt"}
DEFAULT_LAYERS = (-1,)
"""The paper's choice: the final layer, after the final layer norm (`last_hidden_state`)."""


class TeacherError(HadError):
    """The teacher cannot be loaded or does not fit the NT 6-mer contract."""


def parse_layers(layer: int | None, layers: str | None) -> tuple[int, ...]:
    """`--layer N` or `--layers a,b,c` (not both) -> hidden_states indices; default (-1,)."""
    if layer is not None and layers is not None:
        raise ConfigError("give --layer or --layers, not both")
    if layers is None:
        return DEFAULT_LAYERS if layer is None else (layer,)
    try:
        parsed = tuple(int(x) for x in layers.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--layers takes comma-separated integers, got {layers!r}") from None
    if not parsed:
        raise ConfigError("--layers needs at least one layer")
    return parsed


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` -> bfloat16 on GPU, float32 on CPU (CPU half precision is slow and lossy)."""
    if dtype == AUTO_DTYPE:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be auto or one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _weights_sha256(folder: Path) -> str | None:
    files = [p for p in folder.glob("*") if p.suffix in WEIGHT_SUFFIXES]
    return files_sha256(files) if files else None


def _check_vocabulary(tokenizer: object, name: str) -> None:
    """Refuse a tokenizer whose ids differ from NT's 6-mer vocabulary (ids are computed in bulk)."""
    for token, expected in tokenize.TOKEN_ID.items():
        got = tokenizer.convert_tokens_to_ids(token)
        if got != expected:
            raise TeacherError(
                f"teacher {name!r} does not use the Nucleotide Transformer 6-mer vocabulary: "
                f"token {token!r} has id {got}, expected {expected}"
            )


@dataclass
class Teacher:
    """A frozen masked LM in eval mode and the layer whose features we store."""

    model: torch.nn.Module
    info: TeacherInfo
    device: torch.device
    max_tokens: int

    @torch.inference_mode()
    def features(self, token_ids: np.ndarray) -> dict[int, torch.Tensor]:
        """Features [B, T, D] per stored layer of already-masked 6-mer ids [B, T] (no `<cls>`).

        The input is `<cls>` + the 6-mer tokens, as NT prepends `<cls>`; no `<eos>` is appended.
        Windows of one batch have equal length, so there is no padding and no attention mask.
        """
        return self._forward(token_ids, with_logits=False)[0]

    def _forward(
        self, token_ids: np.ndarray, with_logits: bool
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor | None]:
        """(features per stored layer, masked-LM logits [B, T, V] or None), `<cls>` removed."""
        ids = torch.as_tensor(tokenize.with_cls(token_ids), device=self.device)
        if with_logits:
            out = self.model(input_ids=ids, output_hidden_states=True)
            logits = out.logits[:, 1:]
        else:  # the encoder alone: the masked-LM head is not needed for features
            out = self.model.base_model(input_ids=ids, output_hidden_states=True)
            logits = None
        return {layer: out.hidden_states[layer][:, 1:] for layer in self.info.layers}, logits

    @torch.inference_mode()
    def visible_features(
        self, seq: np.ndarray, mask: np.ndarray, token_ids: np.ndarray | None = None
    ) -> dict[int, torch.Tensor]:
        """Features [B, T - M, D] of the visible tokens, in token order, per stored layer.

        seq [B, 6T] N-free codes, mask bool [B, T] with the same count per row. The teacher
        sees masked groups as `<mask>` (its features of visible tokens must not leak them).
        `token_ids`: that masked input (`teacher_input`), when a prefetcher built it already.
        """
        return self.encode(seq, mask, token_ids=token_ids)[0]

    @torch.inference_mode()
    def encode(
        self,
        seq: np.ndarray,
        mask: np.ndarray,
        top_k: int = 0,
        token_ids: np.ndarray | None = None,
    ) -> tuple[dict[int, torch.Tensor], predictions.MaskedPredictions | None]:
        """`visible_features`, and with `top_k` > 0 the teacher's predictions at the masked
        groups from the same forward pass (`had_cache.predictions`)."""
        ids = teacher_input(seq, mask) if token_ids is None else token_ids
        visible = torch.as_tensor(~np.asarray(mask, dtype=bool), device=self.device)
        n_visible = int(visible[0].sum()) if len(visible) else 0
        feats, logits = self._forward(ids, with_logits=top_k > 0)
        visible_feats = {
            layer: out[visible].reshape(len(seq), n_visible, -1) for layer, out in feats.items()
        }
        preds = predictions.masked_predictions(logits, mask, top_k) if logits is not None else None
        return visible_feats, preds


def teacher_input(seq: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The teacher's masked 6-mer ids [B, T] of windows `seq` under group masks `mask`."""
    return masking.teacher_input(tokenize.kmer_ids(seq), mask, tokenize.MASK_ID)


@contextlib.contextmanager
def _no_loading_bar() -> Iterator[None]:
    """transformers draws a bar per weight file even for a second's load; our own bars (and a
    one-line error if the teacher is refused) are what the user should read on stderr."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _from_pretrained(
    source: str, dtype: torch.dtype, kwargs: dict
) -> tuple[object, torch.nn.Module]:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    try:
        with _no_loading_bar():
            model, loading = AutoModelForMaskedLM.from_pretrained(
                source, dtype=dtype, output_loading_info=True, **kwargs
            )
    except RuntimeError as err:  # transformers refuses weights whose shapes do not fit
        if "mismatch" not in str(err):
            raise
        raise TeacherError(
            f"teacher {source!r}: checkpoint weights do not fit the model class, so they would "
            "be newly initialised at random"
            + _remote_code_hint(source, kwargs.get("trust_remote_code", True))
        ) from None
    _refuse_new_weights(source, model, loading, kwargs.get("trust_remote_code", True))
    return tokenizer, model


def _refuse_new_weights(
    source: str, model: torch.nn.Module, loading: dict, trust_remote_code: bool
) -> None:
    """A weight missing from the checkpoint is silently initialised at random: refuse that.

    Why: a teacher that loaded with fresh weights runs and yields features of noise
    (design.md section 7); with the wrong class (e.g. NT v2 without its remote code) the gated
    feed-forward weights do not fit and would be re-initialised.
    """
    missing = list(loading.get("missing_keys", [])) + [
        str(m[0]) if isinstance(m, tuple) else str(m) for m in loading.get("mismatched_keys", [])
    ]
    encoder = [k for k in missing if not k.startswith("lm_head")]
    if not encoder:
        return
    raise TeacherError(
        f"teacher {source!r} is missing {len(encoder)} encoder weights that would be newly "
        f"initialised at random, e.g. {', '.join(encoder[:3])}"
        + _remote_code_hint(source, trust_remote_code)
    )


def _remote_code_hint(source: str, trust_remote_code: bool) -> str:
    if trust_remote_code or not (Path(source) / "modeling_esm.py").exists():
        return ""
    return " (the checkpoint ships its own modeling code: drop --no-trust-remote-code)"


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the Hub, so an offline machine fails in seconds, not minutes."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _from_hub(name: str, dtype: torch.dtype, kwargs: dict) -> tuple[object, torch.nn.Module]:
    """Load from the local Hugging Face cache if it has the model, else from the Hub."""
    try:
        return _from_pretrained(name, dtype, kwargs | {"local_files_only": True})
    except OSError:
        pass
    if not hub_reachable():
        raise TeacherError(
            f"teacher {name!r} is not a local folder, not in the Hugging Face cache, and the Hub "
            "cannot be reached from here. On a machine with internet run `hf download "
            f"{name} --local-dir DIR`, copy DIR here and pass --teacher DIR"
        )
    return _from_pretrained(name, dtype, kwargs)


def _source(name: str) -> tuple[str, Path, bool]:
    """(what to load from, the folder it names, whether it is a path rather than a hub id)."""
    source = str(DEMO_TEACHER_DIR) if name == DEMO_TEACHER else name
    folder = Path(source).expanduser()
    is_path = folder.is_dir() or source.startswith((".", "/", "~"))
    if folder.exists() and not folder.is_dir():
        raise TeacherError(
            f"--teacher {name}: expected a folder in Hugging Face layout, got a file"
        )
    if is_path and not folder.is_dir():
        raise TeacherError(f"--teacher {name}: no such folder")
    if is_path:
        check_folder(folder, name)
    return source, folder, is_path


FOLDER_PARTS = {
    "config.json": ("config.json",),
    "weights (*.safetensors or *.bin)": ("*.safetensors", "*.bin", "*.safetensors.index.json"),
    "tokenizer (vocab.txt or tokenizer.json)": ("vocab.txt", "tokenizer.json"),
}
"""What a teacher folder must hold, as Hugging Face `save_pretrained` writes it."""


def check_folder(folder: Path, name: str) -> None:
    """TeacherError naming every part a teacher folder lacks (an empty or half-copied folder)."""
    missing = [
        part
        for part, patterns in FOLDER_PARTS.items()
        if not any(next(folder.glob(p), None) for p in patterns)
    ]
    if missing:
        raise TeacherError(
            f"--teacher {name} is not a Hugging Face model folder: it has no "
            f"{', no '.join(missing)}; make one with `hf download {PAPER_TEACHER} --local-dir "
            f"{name}` (or pass a hub id)"
        )


def load_config(name: str, revision: str | None = None, trust_remote_code: bool = True) -> object:
    """The teacher's config alone (no weights), or None where a hub id is not in the local
    cache (then loading the teacher itself says why): what checks before the weights read."""
    from transformers import AutoConfig

    source, folder, is_path = _source(name)
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        if is_path:
            return AutoConfig.from_pretrained(str(folder), **kwargs)
        return AutoConfig.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError:
        if is_path:
            raise TeacherError(f"cannot read the config of the teacher {name!r}") from None
        return None
    except ValueError as err:
        raise TeacherError(f"cannot read the config of the teacher {name!r}: {err}") from None


def max_tokens(config: object) -> int:
    """Tokens a teacher reads, `<cls>` included. ESM counts two extra position slots (NTv2:
    2,050 -> at most 2,048 tokens with <cls>)."""
    return int(getattr(config, "max_position_embeddings", 1 << 30)) - 2


def teacher_info(
    name: str,
    config: object,
    dtype: torch.dtype,
    layers: Sequence[int] = DEFAULT_LAYERS,
    revision: str | None = None,
) -> TeacherInfo:
    """What the store records of a teacher: from its name, folder and config (no weights)."""
    _, folder, is_path = _source(name)
    num_layers = int(config.num_hidden_layers)
    if not layers:
        raise ConfigError("--layers needs at least one layer")
    return TeacherInfo(
        # Loadable again from any working directory: `demo`, an absolute folder, or a hub id.
        name_or_path=DEMO_TEACHER
        if name == DEMO_TEACHER
        else str(folder.resolve())
        if is_path
        else name,
        revision=revision or getattr(config, "_commit_hash", None),
        weights_sha256=_weights_sha256(folder) if folder.is_dir() else None,
        layers=list(dict.fromkeys(hidden_state_index(layer, num_layers) for layer in layers)),
        num_layers=num_layers,
        hidden_size=int(config.hidden_size),
        dtype=str(dtype).removeprefix("torch."),
        token_dropout=getattr(config, "token_dropout", None),
        mask_token_id=tokenize.MASK_ID,
    )


def load_teacher(
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    layers: Sequence[int] = DEFAULT_LAYERS,
    revision: str | None = None,
    trust_remote_code: bool = True,
) -> Teacher:
    """Load tokenizer and masked LM by hub id or folder, offline-first, and freeze it."""
    source, folder, is_path = _source(name)
    if not layers:
        raise ConfigError("--layers needs at least one layer")
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        if is_path:
            tokenizer, model = _from_pretrained(str(folder), dtype, kwargs)
        else:
            tokenizer, model = _from_hub(name, dtype, kwargs)
    except (OSError, ValueError) as err:
        raise TeacherError(f"cannot load the teacher {name!r}: {err}") from err
    _check_vocabulary(tokenizer, name)
    model.eval().requires_grad_(False).to(device)
    info = teacher_info(name, model.config, dtype, layers, revision)
    return Teacher(model=model, info=info, device=device, max_tokens=max_tokens(model.config))


def teacher_parameter_count(
    name: str, revision: str | None = None, trust_remote_code: bool = True
) -> int | None:
    """Parameters of a teacher's encoder from its config alone (built on the meta device, no
    weights read), to decide what a machine can afford before loading anything; None for a
    hub id that is not in the local cache."""
    from transformers import AutoModel

    config = load_config(name, revision, trust_remote_code)
    if config is None:
        return None
    try:
        with torch.device("meta"):
            model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise TeacherError(f"cannot build the teacher {name!r} from its config: {err}") from err
    return sum(p.numel() for p in model.parameters())
