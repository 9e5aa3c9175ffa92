"""A learned prompt-injection scorer: hashed character n-grams and a linear model.

The text is read in overlapping windows of `WINDOW` characters; each window's score is
the sum of the weights of the character 3-, 4- and 5-grams starting in it, divided by
the square root of their number, plus a bias. The text's score is its best window, so an
injection inside a long document is judged on its own neighbourhood, not diluted by the
rest. Every step is a fixed number of numpy passes over the text (hashing, one gather,
one cumulative sum), so the cost is linear with a small constant and has no worst case.

The weights are trained offline by scripts/train_injection.py; nothing is downloaded.
The featuriser here is the one the trainer uses, so scores match across the two.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "DENY_MIN_CHARS",
    "MODEL_PATH",
    "NGRAMS",
    "STRIDE",
    "WINDOW",
    "InjectionModel",
    "ModelScore",
    "bucket_rows",
    "load_model",
    "normalise",
    "window_starts",
]

MODEL_PATH = Path(__file__).with_name("model") / "injection_ngram.npz"
WINDOW = 400
STRIDE = 200  # half a window: `_best_window` sums a window as two STRIDE blocks
# Characters scored per numpy pass; a multiple of STRIDE.
SEGMENT = 256_000
NGRAMS = (3, 4, 5)
# The shortest text the model alone may deny (its "deny" threshold is calibrated on such).
DENY_MIN_CHARS = 160
BITS = 18
_MULT = np.uint32(0x9E3779B1)
_PRIME = np.uint32(1_000_003)
_SHIFT = np.uint32(32 - BITS)
# Digits become "0" and every whitespace character a space, one for one (in `_codes`),
# so offsets in the normalised text are offsets in the input.
_FOLD = np.arange(128, dtype=np.uint32)
_FOLD[ord("1"):ord("9") + 1] = ord("0")
_FOLD[[9, 10, 11, 12, 13]] = ord(" ")

U32Array = npt.NDArray[np.uint32]
F32Array = npt.NDArray[np.float32]


class ModelScore(NamedTuple):
    """The best window's probability of injection and its [start, end) in the input."""

    probability: float
    start: int
    end: int


def normalise(text: str) -> str:
    """Lower-cased text of the same length as `text`; `_codes` folds digits and spaces."""
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = text.translate({c: c + 32 for c in range(65, 91)})
    return lowered


def _codes(text: str) -> U32Array:
    if text.isascii():
        return _FOLD[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).copy()
    low = codes < 128
    codes[low] = _FOLD[codes[low]]
    return codes


def bucket_rows(text: str, ngrams: tuple[int, ...] = NGRAMS) -> list[U32Array]:
    """For each n in NGRAMS, the hash bucket of the n-gram starting at each offset.

    `text` is already normalised. Row k has len(text) - NGRAMS[k] + 1 entries (none for
    shorter text). Integer overflow wraps, which is the hash.
    """
    codes = _codes(text)
    size = len(codes)
    rows: list[U32Array] = []
    if size < 2:
        return rows
    # One running hash updated in place: a handful of array passes, no temporaries.
    acc = codes[:-1] * _PRIME
    acc += codes[1:]
    with np.errstate(over="ignore"):
        for n in range(3, ngrams[-1] + 1):
            if size < n:
                break
            acc = acc[:-1]
            acc *= _PRIME
            acc += codes[n - 1:]
            if n in ngrams:
                salted = acc + np.uint32(n)
                salted *= _MULT
                salted >>= _SHIFT
                rows.append(salted)
    return rows


def window_starts(size: int) -> list[int]:
    """Window offsets covering `size` characters: every STRIDE, the last one flush."""
    if size <= WINDOW:
        return [0]
    starts = list(range(0, size - WINDOW, STRIDE))
    starts.append(size - WINDOW)
    return starts


class InjectionModel:
    """The linear model over hashed n-grams, with the thresholds it was calibrated at."""

    def __init__(self, weights: F32Array, bias: float, thresholds: dict[str, float],
                 meta: dict[str, object]) -> None:
        if weights.shape != (1 << BITS,):
            raise ValueError(f"injection model: expected {1 << BITS} weights, "
                             f"got {weights.shape}")
        self.weights = weights
        self.bias = bias
        self.thresholds = thresholds
        self.meta = meta
        grams = meta.get("ngrams", NGRAMS)
        self.ngrams = tuple(int(n) for n in grams) if isinstance(grams, list | tuple) else NGRAMS

    def score(self, text: str, lowered: str | None = None) -> ModelScore:
        """The probability of injection of the most suspicious window of `text`.

        `lowered`, when given, is `text` already lower-cased offset for offset.
        """
        norm = normalise(text) if lowered is None else lowered
        best = ModelScore(-math.inf, 0, len(norm))
        # Segments overlap by a window, so every window lies whole in one of them, and
        # bound the numpy arrays on long input.
        for lo in range(0, max(len(norm) - WINDOW, 1), SEGMENT):
            logit, start, end = self._best_window(norm[lo:lo + SEGMENT + WINDOW])
            if logit > best.probability:
                best = ModelScore(logit, lo + start, lo + end)
        return ModelScore(_sigmoid(best.probability), best.start, best.end)

    def _best_window(self, norm: str) -> tuple[float, int, int]:
        size = len(norm)
        rows = bucket_rows(norm, self.ngrams)
        if not rows:
            return self.bias, 0, size
        # contrib[i]: the weights of the n-grams starting at offset i (float32, one take
        # per n), then summed per STRIDE block: a window is two blocks (WINDOW = 2 STRIDE),
        # except the last, flush with the end, which is summed on its own.
        blocks = -(-size // STRIDE)
        contrib = np.zeros(blocks * STRIDE, dtype=np.float32)
        for row in rows:
            contrib[:len(row)] += self.weights.take(row)
        block_sums = contrib.reshape(blocks, STRIDE).sum(axis=1, dtype=np.float64)
        starts = np.asarray(window_starts(size), dtype=np.int64)
        ends = np.minimum(starts + WINDOW, size)
        first = starts[:-1] // STRIDE
        sums = np.empty(len(starts), dtype=np.float64)
        sums[:-1] = block_sums[first] + block_sums[first + 1]
        sums[-1] = contrib[starts[-1]:ends[-1]].sum(dtype=np.float64)
        # n-grams starting in [start, end): each n contributes up to size - n + 1 of them.
        n = np.zeros(len(starts), dtype=np.float64)
        for width in self.ngrams:
            n += np.clip(np.minimum(ends, size - width + 1) - starts, 0, None)
        logits = sums / np.sqrt(np.maximum(n, 1.0)) + self.bias
        best = int(np.argmax(logits))
        return float(logits[best]), int(starts[best]), int(ends[best])


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@cache
def load_model(path: Path = MODEL_PATH) -> InjectionModel:
    """The shipped model; raises OSError or ValueError when the file is missing or bad."""
    with np.load(path, allow_pickle=False) as data:
        weights = np.asarray(data["weights"], dtype=np.float32)
        bias = float(data["bias"])
        meta = json.loads(bytes(data["meta"]).decode("utf-8"))
    thresholds = {k: float(v) for k, v in meta["thresholds"].items()}
    return InjectionModel(weights, bias, thresholds, meta)
