"""Reference models that involve no student: what a benchmark number should be compared with.

- `kmer_logreg`: k-mer frequencies (k = 3..6) + logistic regression. Position-free: it shows
  how much of a task composition alone solves.
- `positional_onehot_logreg`: the one-hot base at every position + logistic regression. For
  short, aligned tasks (splice junctions) this simple model is strong (~0.94 on UCI splice);
  a student that does not beat it has not learned anything the task needs beyond position.
- `teacher_embeddings`: the teacher's mean-pooled features of one hidden layer, so the student
  can be compared with what it was distilled from (probe both the same way).

Both logistic regressions are multinomial (lbfgs). The k-mer one uses a fixed C = 1.0: on UCI
splice (5-fold, seed 0) its accuracy moves by less than 0.01 over C = 0.03..1 (0.694-0.700,
`recipes/splice_baselines.py`), and a search per fold would cost several fits of 5,440
features. The positional one-hot one is cheap and sensitive to C (0.940 at C = 1, 0.958 at
C = 0.03), so by default it picks C from `ONEHOT_CS` by 3-fold cross-validation inside the
training rows (never the test rows): a baseline tuned as fairly as the student is. k-mer
frequencies are standardised (their scales differ by k); the one-hot is not (every column is
already 0/1; standardising it costs splice accuracy, 0.931 vs 0.940 at C = 1). Pass `C` to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from had_cache import dna, tokenize
from had_cache.schema import hidden_state_index
from had_cache.teacher import AUTO_DTYPE, Teacher, load_teacher, resolve_dtype
from had_common.device import AUTO, resolve_device
from had_common.errors import ConfigError
from had_train.eval.finetune import encode_padded

KMER_SIZES = (3, 4, 5, 6)
LOGREG_C = 1.0
ONEHOT_CS = (0.01, 0.03, 0.1, 0.3, 1.0)
"""C values the positional one-hot baseline chooses from by inner cross-validation."""
INNER_FOLDS = 3
LOGREG_MAX_ITER = 5000
"""lbfgs converges in well under 100 iterations on splice; the cap only guards odd tasks."""


def kmer_features(sequences: Sequence[str], ks: Sequence[int] = KMER_SIZES) -> sp.csr_matrix:
    """k-mer frequencies [N, sum(4^k)] (sparse): for each k, the count of every k-mer over
    A, C, G, T divided by the number of such k-mers in the sequence (each k block sums to 1,
    or 0 for a sequence with none), so sequences of different lengths are comparable.

    Columns: k blocks in the order of `ks`; within a block, k-mers in lexicographic A, C, G, T
    order (the k-mer's base-4 number in `had_cache.dna` codes). k-mers holding any other
    letter (N, IUPAC codes) are not counted.
    """
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"k-mer sizes must be positive integers, got {tuple(ks)}")
    codes = [dna.encode(seq).astype(np.int64) for seq in sequences]
    blocks = []
    for k in ks:
        weights = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
        rows, cols, vals = [], [], []
        for row, c in enumerate(codes):
            if c.size < k:
                continue
            windows = np.lib.stride_tricks.sliding_window_view(c, k)
            index = windows[~dna.is_n(windows).any(axis=1)] @ weights
            if index.size:
                rows.append(np.full(index.size, row))
                cols.append(index)
                vals.append(np.full(index.size, 1.0 / index.size))
        shape = (len(codes), 4**k)
        if rows:  # duplicates (the same k-mer twice) are summed into counts by tocsr()
            coo = sp.coo_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape
            )
            blocks.append(coo.tocsr())
        else:
            blocks.append(sp.csr_matrix(shape))
    return sp.hstack(blocks, format="csr")


def _fit_predict(
    train: np.ndarray | sp.spmatrix,
    labels: Sequence[int] | np.ndarray,
    test: np.ndarray | sp.spmatrix,
    seed: int,
    C: float | None,
    standardise: bool,
) -> np.ndarray:
    """Fit a multinomial logistic regression (after standardising the features if asked; no
    centring for sparse input, which would densify it) and predict the test rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [StandardScaler(with_mean=not sp.issparse(train))] if standardise else []
    labels = np.asarray(labels)
    if C is None:
        C = _choose_c(train, labels, seed, standardise)
    regression = LogisticRegression(C=C, max_iter=LOGREG_MAX_ITER, random_state=seed)
    model = make_pipeline(*steps, regression)
    model.fit(train, np.asarray(labels))
    return model.predict(test)


def _choose_c(
    train: np.ndarray | sp.spmatrix, labels: np.ndarray, seed: int, standardise: bool
) -> float:
    """The C of `ONEHOT_CS` with the best mean accuracy over stratified inner folds of the
    training rows (ties: the stronger regularisation)."""
    from sklearn.model_selection import StratifiedKFold

    n_folds = min(INNER_FOLDS, int(np.bincount(labels).min()))
    if n_folds < 2:
        return LOGREG_C
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    scores = []
    for c in ONEHOT_CS:
        hits = [
            np.mean(
                _fit_predict(train[fit], labels[fit], train[val], seed, c, standardise)
                == labels[val]
            )
            for fit, val in folds.split(np.zeros(labels.size), labels)
        ]
        scores.append(float(np.mean(hits)))
    return ONEHOT_CS[int(np.argmax(scores))]


def kmer_logreg(
    train_seqs: Sequence[str],
    train_labels: Sequence[int] | np.ndarray,
    test_seqs: Sequence[str],
    seed: int,
    ks: Sequence[int] = KMER_SIZES,
    C: float = LOGREG_C,
) -> np.ndarray:
    """Predicted labels of `test_seqs` from logistic regression on standardised k-mer
    frequencies (`kmer_features`): the composition-only reference."""
    train, test = kmer_features(train_seqs, ks), kmer_features(test_seqs, ks)
    return _fit_predict(train, train_labels, test, seed, C, standardise=True)


def positional_onehot(sequences: Sequence[str], length: int) -> np.ndarray:
    """One-hot bases [N, length * 4] (float32), every sequence centred in `length` positions:
    longer ones cropped around their centre (the evaluation's `max_len` rule), shorter ones
    padded equally on both sides. Padding and non-ACGT letters are all-zero positions."""
    if length < 1:
        raise ConfigError(f"length must be >= 1, got {length}")
    codes, lengths = encode_padded(tuple(sequences), max_len=length)
    out = np.zeros((len(sequences), length, 4), dtype=np.float32)
    for row, (c, n) in enumerate(zip(codes, lengths, strict=True)):
        offset = (length - int(n)) // 2
        bases = c[:n]
        known = np.flatnonzero(~dna.is_n(bases))
        out[row, offset + known, bases[known]] = 1.0
    return out.reshape(len(sequences), length * 4)


def positional_onehot_logreg(
    train_seqs: Sequence[str],
    train_labels: Sequence[int] | np.ndarray,
    test_seqs: Sequence[str],
    seed: int,
    length: int | None = None,
    C: float | None = None,
) -> np.ndarray:
    """Predicted labels of `test_seqs` from logistic regression on the one-hot base at each
    position (`positional_onehot`; `length` defaults to the longest training sequence): the
    strong reference for short, aligned tasks. Features are not standardised; C = None picks
    it from `ONEHOT_CS` by inner cross-validation on the training rows (see above)."""
    if not train_seqs:
        raise ConfigError("positional_onehot_logreg needs training sequences")
    length = length or max(len(s) for s in train_seqs)
    train = positional_onehot(train_seqs, length)
    test = positional_onehot(test_seqs, length)
    return _fit_predict(train, train_labels, test, seed, C, standardise=False)


def _token_ids(sequence: str) -> np.ndarray:
    """The teacher's input for one unmasked sequence: `<cls>` + NT's tokens (6-mers from the
    left of each N-free run, single letters for leftovers and N)."""
    ids = np.array([token.id for token in tokenize.tokenize(sequence)], dtype=np.int64)
    return tokenize.with_cls(ids)


@torch.inference_mode()
def teacher_embeddings(
    teacher: str | Teacher,
    sequences: Sequence[str],
    layer: int = -1,
    device: str = AUTO,
    batch_size: int = 32,
    revision: str | None = None,
    dtype: str = AUTO_DTYPE,
    max_len: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Mean-pooled teacher features [N, hidden] (float32) of one hidden layer, for probing
    the teacher the way the student is probed.

    `teacher` is a hub id, a folder or `demo` (loaded with `had_cache.teacher.load_teacher`;
    `device`, `dtype`, `revision` apply), or an already loaded `Teacher` (reused as is, so a
    caller looping over folds loads it once). `layer` indexes `hidden_states` (0 =
    embeddings, -1 = final layer after the final norm). Each sequence is tokenized unmasked
    as NT does (N and a length that is not a multiple of 6 give single-letter tokens), with
    `<cls>` prepended; the mean runs over its own tokens, never `<cls>` or padding, so the
    result does not depend on the batch. `max_len` crops longer sequences around their
    centre first (the evaluation's rule); a sequence longer than the teacher reads is refused.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(teacher, str):
        dev = resolve_device(device)
        teacher = load_teacher(teacher, dev, resolve_dtype(dtype, dev), (layer,), revision)
    index = hidden_state_index(layer, teacher.info.num_layers)
    if not sequences:
        return np.zeros((0, teacher.info.hidden_size), dtype=np.float32)
    codes, lengths = encode_padded(tuple(sequences), max_len)
    inputs = [_token_ids(dna.decode(c[:n])) for c, n in zip(codes, lengths, strict=True)]
    sizes = np.array([ids.size for ids in inputs])
    if sizes.max() > teacher.max_tokens:
        row = int(sizes.argmax())
        raise ConfigError(
            f"sequence {row} is {sizes[row] - 1} teacher tokens long; the teacher reads at most "
            f"{teacher.max_tokens - 1} (plus <cls>): pass max_len to crop around the centre"
        )
    out = np.zeros((len(inputs), teacher.info.hidden_size), dtype=np.float32)
    order = np.argsort(-sizes, kind="stable")  # similar lengths together: little padding
    encoder = teacher.model.base_model
    with tqdm(total=len(inputs), desc="teacher", unit="seq", disable=not progress) as bar:
        for start in range(0, order.size, batch_size):
            batch = order[start : start + batch_size]
            width = int(sizes[batch].max())
            ids = torch.full((batch.size, width), tokenize.PAD_ID, dtype=torch.long)
            valid = torch.zeros((batch.size, width), dtype=torch.long)
            for i, row in enumerate(batch):
                ids[i, : sizes[row]] = torch.from_numpy(inputs[row])
                valid[i, : sizes[row]] = 1
            ids, valid = ids.to(teacher.device), valid.to(teacher.device)
            hidden = encoder(input_ids=ids, attention_mask=valid, output_hidden_states=True)
            feats = hidden.hidden_states[index].float()
            tokens = valid.clone()
            tokens[:, 0] = 0  # <cls> is not a token of the sequence
            weights = tokens[..., None].float()
            pooled = (feats * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            out[batch] = pooled.cpu().numpy()
            bar.update(batch.size)
    return out
