"""Translation metrics: sacreBLEU's BLEU, spBLEU and chrF++, and COMET from a local checkpoint.

Everything here runs offline. sacreBLEU's ``flores101``/``flores200`` tokenisers download their
SentencePiece model on first use, so BLEU is tokenised with ``13a`` by default (``zh`` for Chinese
targets), and spBLEU, the FLORES-101 paper's BLEU on SentencePiece pieces, is computed beside it
from a SentencePiece model file you already have (``spm_model``). COMET is loaded with
unbabel-comet's own ``load_from_checkpoint`` from a folder on disk and scored on the GPU when there
is one (see :func:`load_comet` for what offline loading needs). BLEURT is in :mod:`.bleurt`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import torch
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_spm import TokenizerSPM

if TYPE_CHECKING:
    from comet.models import CometModel

BLEU_TOKENIZERS = {"zh": "zh"}
"""BLEU tokeniser per target language code; every other language gets ``13a``."""


class LocalSPMTokenizer(TokenizerSPM):
    """sacreBLEU's SentencePiece tokeniser, loaded from a file you name instead of downloaded.

    ``TokenizerSPM.__init__`` always loads ``$SACREBLEU/models/<file name of its URL>`` (default
    ``~/.sacrebleu``) and downloads it when absent. This subclass skips that constructor and loads
    ``model_file``; tokenisation (pieces joined by spaces) and the signature (``name``) are
    sacreBLEU's. The other offline route is to copy the file to where sacreBLEU looks for it:
    ``$SACREBLEU/models/sacrebleu_tokenizer_spm.model`` (flores101) or
    ``$SACREBLEU/models/flores200sacrebleuspm`` (flores200); the command line then finds it too.
    """

    def __init__(self, model_file: str | Path, name: str = "flores101") -> None:
        import sentencepiece

        if not Path(model_file).is_file():
            raise FileNotFoundError(f"SentencePiece model for BLEU not found: {str(model_file)!r}")
        self.name = name
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))


def _spbleu(spm_model: str, spm_name: str) -> BLEU:
    """sacreBLEU's BLEU tokenised by the SentencePiece model ``spm_model`` (spBLEU)."""
    # BLEU has no hook for a tokeniser object: build it untokenised, then swap in the SPM
    # tokeniser and its signature (BLEU reads both attributes when scoring and signing).
    bleu = BLEU(tokenize="none")
    bleu.tokenizer = LocalSPMTokenizer(spm_model, spm_name)
    bleu.tokenizer_signature = bleu.tokenizer.signature()
    return bleu


def check_segments(hypotheses: list[str], references: list[str]) -> None:
    """One hypothesis per reference, and at least one: a corpus score of a misaligned or empty
    set would be a number about nothing."""
    if len(hypotheses) != len(references):
        raise ValueError(
            f"expected as many hypotheses as references, got {len(hypotheses)} hypotheses "
            f"and {len(references)} references"
        )
    if not hypotheses:
        raise ValueError("expected at least one segment to score, got empty lists")


def corpus_scores(
    hypotheses: list[str],
    references: list[str],
    target_lang: str,
    spm_model: Optional[str] = None,
    spm_name: str = "flores101",
) -> dict:
    """Corpus BLEU, chrF++ and, given ``spm_model``, spBLEU (sacreBLEU, one reference per segment)
    with their signatures.

    Args:
        hypotheses: system outputs, one per segment (an empty string is a valid, empty output).
        references: the reference translations, aligned with ``hypotheses``.
        target_lang: language code of the target side; picks the BLEU tokeniser
            (:data:`BLEU_TOKENIZERS`, else ``13a``).
        spm_model: path of a local SentencePiece model (FLORES-101's
            ``sacrebleu_tokenizer_spm.model`` or the FLORES-200 one): spBLEU is BLEU on its pieces,
            as sacreBLEU's ``flores101``/``flores200`` tokenisers compute it. Nothing is downloaded.
        spm_name: the tokeniser name written in the spBLEU signature for ``spm_model``
            (``flores101`` or ``flores200``: say which model the file is).

    Returns:
        ``{"bleu", "chrf_pp", "bleu_signature", "chrf_pp_signature"}``, plus ``"spbleu"`` and
        ``"spbleu_signature"`` with ``spm_model``: scores on sacreBLEU's 0-100 scale and the
        signature strings to report next to them.
    """
    check_segments(hypotheses, references)
    bleu = BLEU(tokenize=BLEU_TOKENIZERS.get(target_lang, "13a"), trg_lang=target_lang)
    chrf = CHRF(word_order=2)
    scores = {
        "bleu": bleu.corpus_score(hypotheses, [references]).score,
        "chrf_pp": chrf.corpus_score(hypotheses, [references]).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_pp_signature": str(chrf.get_signature()),
    }
    if spm_model is not None:
        spbleu = _spbleu(spm_model, spm_name)
        scores["spbleu"] = spbleu.corpus_score(hypotheses, [references]).score
        scores["spbleu_signature"] = str(spbleu.get_signature())
    return scores


def load_comet(path: str) -> "CometModel":
    """Load a COMET model from a local checkpoint with ``comet.load_from_checkpoint``, offline.

    ``path`` is either ``checkpoints/model.ckpt`` or the model folder that holds it (the layout of
    ``Unbabel/wmt22-comet-da``: ``hparams.yaml`` next to ``checkpoints/``). Called when callbacks
    are set up, so a missing checkpoint, ``hparams.yaml`` or encoder fails here, naming what is
    missing, before any training starts.

    Offline loading: hyperparameters are read from ``hparams.yaml`` (comet's
    ``reload_hparams=True``) and only local files are used (``local_files_only=True``). The
    checkpoint holds all weights, but COMET still builds its encoder from the config and tokenizer
    named by ``pretrained_model`` in ``hparams.yaml`` (``xlm-roberta-large`` for the released
    models): that name must be in the Hugging Face cache, or set it to a local folder holding the
    encoder's ``config.json`` and tokenizer files.
    """
    try:
        import comet
    except ImportError as error:
        raise ImportError(
            "COMET needs unbabel-comet: pip install --no-deps unbabel-comet==2.2.7 entmax pandas"
        ) from error
    import yaml

    given = Path(path)
    checkpoint = given / "checkpoints" / "model.ckpt" if given.is_dir() else given
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"COMET checkpoint not found: {path!r}; expected a model.ckpt file or a folder "
            "holding checkpoints/model.ckpt and hparams.yaml"
        )
    hparams_file = checkpoint.parent.parent / "hparams.yaml"
    if not hparams_file.is_file():
        raise FileNotFoundError(
            f"COMET checkpoint {str(checkpoint)!r} has no hparams.yaml; "
            f"expected {str(hparams_file)!r}"
        )
    encoder = yaml.safe_load(hparams_file.read_text(encoding="utf-8")).get(
        "pretrained_model", "xlm-roberta-large"
    )
    # Without this check a missing encoder surfaces deep in transformers as
    # "'NoneType' object has no attribute 'endswith'".
    if not Path(encoder).is_dir() and not _in_hf_cache(encoder):
        raise FileNotFoundError(
            f"COMET encoder {encoder!r} (pretrained_model in {str(hparams_file)!r}) is neither a "
            "local folder nor in the Hugging Face cache; point pretrained_model to a local copy "
            "of the encoder's config and tokenizer"
        )
    return comet.load_from_checkpoint(str(checkpoint), reload_hparams=True, local_files_only=True)


def _in_hf_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except HFValidationError:  # a path, not a hub name
        return False


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence the "GPU available" and tip lines that every COMET ``predict`` Trainer prints."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def comet_score(
    model: "CometModel",
    sources: list[str],
    hypotheses: list[str],
    references: list[str],
    batch_size: int = 16,
    gpus: Optional[int] = None,
) -> tuple[float, list[float]]:
    """COMET system score and one score per segment, in batches of ``batch_size``.

    Goes through comet's own ``model.predict`` with no progress bar, on the current CUDA device
    when there is one (``gpus=None``: 1 if ``torch.cuda.is_available()``, else 0; ``gpus=0``
    forces the CPU). That method builds its own (pytorch_lightning) Trainer on each call, so it
    also works from inside a running training loop, including on a DDP rank; its teardown puts the
    model back on the CPU, so COMET holds no GPU memory between validation passes. Samples are
    prepared in this process (``num_workers=0``): forking a training process for two data loader
    workers costs more than tokenising a test set. The system score is the mean of the segment
    scores.
    """
    if not len(sources) == len(hypotheses) == len(references):
        raise ValueError(
            f"expected as many sources, hypotheses and references, got {len(sources)}, "
            f"{len(hypotheses)} and {len(references)}"
        )
    if not hypotheses:
        raise ValueError("expected at least one segment to score, got empty lists")
    if gpus is None:
        gpus = 1 if torch.cuda.is_available() else 0
    if gpus not in (0, 1):
        # comet's multi-GPU predict launches its own DDP and exit()s every rank but the first
        raise ValueError(f"gpus must be 0 (CPU), 1 or None (1 when CUDA is available), got {gpus}")
    # Rank 0 of a multi-GPU run scores on its own device, not on whatever "auto" picks.
    devices = [torch.cuda.current_device()] if gpus == 1 else None
    samples = [
        {"src": src, "mt": mt, "ref": ref} for src, mt, ref in zip(sources, hypotheses, references)
    ]
    with _quiet_lightning():
        output = model.predict(
            samples,
            batch_size=batch_size,
            gpus=gpus,
            devices=devices,
            num_workers=0,
            progress_bar=False,
        )
    return float(output.system_score), [float(score) for score in output.scores]


def comet_signature(path: str) -> str:
    """What a COMET score was computed with, to report beside it: the model folder's name (e.g.
    ``wmt22-comet-da``) and the unbabel-comet version."""
    from importlib.metadata import version

    given = Path(path)
    folder = given.parent.parent if given.is_file() else given
    return f"model:{folder.name}|unbabel-comet:{version('unbabel-comet')}"
