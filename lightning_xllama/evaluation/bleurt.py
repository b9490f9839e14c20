"""BLEURT (the paper's BLEURT-20) from a local PyTorch checkpoint, through the bleurt-pytorch port.

Google's BLEURT-20 is a TensorFlow checkpoint; bleurt-pytorch (``pip install bleurt-pytorch``, the
``[bleurt]`` extra) reimplements its RemBERT-style encoder and regression head as a Hugging Face
model (``BleurtForSequenceClassification``). Its converter needs TensorFlow, so this module only
reads an already converted folder (e.g. ``lucadiliello/BLEURT-20`` downloaded on a connected
machine): ``config.json`` (``model_type: bleurt``), the weights (safetensors or
``pytorch_model.bin``) and the tokenizer (``spm.model`` for BLEURT-20, ``vocab.txt`` for the older
BERT-based checkpoints). Nothing is downloaded.

Scoring is batched, under ``torch.inference_mode``, on the GPU when there is one: the model moves
there for a call and back afterwards, so it holds no GPU memory while a model trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional

import torch

from lightning_xllama.evaluation.translation_metrics import check_segments

INSTALL_HINT = "BLEURT needs bleurt-pytorch: pip install bleurt-pytorch==0.0.1 (the [bleurt] extra)"
CONVERT_HINT = (
    "use a converted PyTorch BLEURT folder (config.json, model weights, spm.model), e.g. "
    "lucadiliello/BLEURT-20 downloaded on a connected machine, or convert the TensorFlow "
    "checkpoint with bleurt-pytorch's converter (needs TensorFlow)"
)


@dataclass
class Bleurt:
    """A loaded BLEURT checkpoint: the regression model, its tokenizer, and where it came from."""

    model: Any
    """``bleurt_pytorch.BleurtForSequenceClassification``, in eval mode, on the CPU."""
    tokenizer: Any
    """The checkpoint's tokenizer: the reference is segment A, the candidate segment B."""
    path: str

    @property
    def max_length(self) -> int:
        """Longest input in tokens (reference + candidate + 3 special tokens); longer pairs are
        truncated longest first, as BLEURT's own encoder does. BLEURT-20: 512."""
        return min(self.model.config.max_position_embeddings, self.tokenizer.model_max_length)

    def signature(self) -> str:
        """What the score was computed with, to report beside it."""
        return (
            f"model:{Path(self.path).name}|bleurt-pytorch:{version('bleurt-pytorch')}"
            f"|max_len:{self.max_length}"
        )


def load_bleurt(path: str) -> Bleurt:
    """Load a converted BLEURT checkpoint folder, offline; fails naming what is missing.

    Called when callbacks are set up, so a wrong path or a TensorFlow checkpoint is reported before
    training starts.
    """
    try:
        from bleurt_pytorch import BleurtConfig, BleurtForSequenceClassification
        from bleurt_pytorch.bleurt.tokenization_bleurt_fast import BleurtTokenizerFast
        from bleurt_pytorch.bleurt.tokenization_bleurt_sp import BleurtSPTokenizer
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"BLEURT checkpoint folder not found: {path!r}; {CONVERT_HINT}")
    if not (folder / "config.json").is_file():
        found = (
            "a TensorFlow BLEURT checkpoint" if (folder / "bleurt_config.json").is_file() else ""
        )
        raise FileNotFoundError(
            f"BLEURT folder {path!r} has no config.json"
            + (f" (it holds {found}, which PyTorch cannot read)" if found else "")
            + f"; {CONVERT_HINT}"
        )
    config = BleurtConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type != "bleurt":
        raise ValueError(
            f"{str(folder / 'config.json')!r} is a {config.model_type!r} model, "
            f"expected model_type 'bleurt'; {CONVERT_HINT}"
        )
    weights = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
    if not weights:
        raise FileNotFoundError(
            f"BLEURT folder {path!r} has no weights (model.safetensors or pytorch_model.bin)"
        )
    # Choose the tokenizer by its files: the port's own BleurtTokenizer tries the WordPiece one
    # first and falls back with a misleading class-mismatch warning.
    if (folder / "spm.model").is_file():
        tokenizer = BleurtSPTokenizer.from_pretrained(folder, local_files_only=True)
    elif (folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file():
        tokenizer = BleurtTokenizerFast.from_pretrained(folder, local_files_only=True)
    else:
        raise FileNotFoundError(
            f"BLEURT folder {path!r} has no tokenizer: expected spm.model (BLEURT-20) or vocab.txt"
        )
    model = BleurtForSequenceClassification.from_pretrained(
        folder, config=config, local_files_only=True
    )
    return Bleurt(model.eval(), tokenizer, str(path))


def metric_device() -> torch.device:
    """Where learned metrics run: the current CUDA device when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def bleurt_score(
    bleurt: Bleurt,
    hypotheses: list[str],
    references: list[str],
    batch_size: int = 32,
    device: Optional[str | torch.device] = None,
) -> tuple[float, list[float]]:
    """BLEURT system score (the mean) and one score per segment, in input order.

    Pairs are batched longest first (less padding; an out-of-memory shows in the first batch) on
    ``device`` (default: :func:`metric_device`); the model returns to where it was afterwards.
    """
    check_segments(hypotheses, references)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device) if device is not None else metric_device()
    model, home = bleurt.model, next(bleurt.model.parameters()).device
    order = sorted(range(len(hypotheses)), key=lambda i: -(len(references[i]) + len(hypotheses[i])))
    scores = [0.0] * len(hypotheses)
    model.to(device)
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                inputs = bleurt.tokenizer(
                    [references[i] for i in batch],
                    [hypotheses[i] for i in batch],
                    padding="longest",
                    truncation="longest_first",
                    max_length=bleurt.max_length,
                    return_tensors="pt",
                ).to(device)
                logits = model(**inputs).logits[:, 0].float().tolist()
                for i, score in zip(batch, logits):
                    scores[i] = score
    finally:
        model.to(home)
    return sum(scores) / len(scores), scores
