"""Translation quality measured during training: generation on a test set, sacreBLEU scores."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import lightning as L
import torch

from lightning_xllama.data.sources import read_parallel
from lightning_xllama.data.tasks import translation_prompt_instruction
from lightning_xllama.evaluation.generation import generate_on_all_ranks
from lightning_xllama.evaluation.translation_metrics import corpus_scores
from lightning_xllama.languages import get_language
from lightning_xllama.prompts import alpaca_prompt

log = logging.getLogger(__name__)


def publish_metrics(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
    """Log metrics outside a ``self.log`` hook and make them visible to other callbacks."""
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)


class TranslationEvaluation(L.Callback):
    """Translate a test set on validation passes and log BLEU, chrF++ and exact match.

    Keys are ``val/{name}/{src}-{tgt}/{bleu,chrf_pp,exact_match}``. Every rank generates its
    share and scores are computed on the gathered outputs, so all ranks log the same values.

    Args:
        test_prefix: aligned test files ``{test_prefix}.{src}`` and ``{test_prefix}.{tgt}``.
        directions: ``src-tgt`` pairs of language codes, e.g. ``[en-zh, zh-en]``.
        name: metric namespace (``val/{name}/...``).
        max_samples: evaluate on the first N sentences only (cost control).
        batch_size: generation batch size.
        max_new_tokens: generation length limit.
        num_beams: 1 for greedy decoding.
        every_n_validations: run on every N-th validation pass.
        before_training: also evaluate the starting model, logged at step 0.
        spm_model: local SentencePiece model for spBLEU (flores101/200 tokenisation).
        write_samples: write every output of each pass to ``{log_dir}/{name}/step{N}.jsonl``.
    """

    def __init__(
        self,
        test_prefix: str,
        directions: list[str],
        name: str = "translation",
        max_samples: Optional[int] = None,
        batch_size: int = 32,
        max_new_tokens: int = 64,
        num_beams: int = 1,
        every_n_validations: int = 1,
        before_training: bool = True,
        spm_model: Optional[str] = None,
        write_samples: bool = True,
    ):
        self.test_prefix, self.directions, self.name = test_prefix, list(directions), name
        self.max_samples, self.batch_size, self.max_new_tokens = max_samples, batch_size, max_new_tokens
        self.num_beams, self.every_n_validations = num_beams, every_n_validations
        self.before_training, self.spm_model, self.write_samples = before_training, spm_model, write_samples
        self.test_sets: dict[str, list[tuple[str, str]]] = {}
        self._validations = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Read every test set now, so a missing file fails before training starts."""
        for direction in self.directions:
            src, sep, tgt = direction.partition("-")
            if not sep:
                raise ValueError(f"direction {direction!r} must be 'src-tgt', e.g. 'en-zh'")
            get_language(src), get_language(tgt)
            pairs = read_parallel(self.test_prefix, src, tgt)
            self.test_sets[direction] = pairs[: self.max_samples] if self.max_samples else pairs

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for direction, pairs in self.test_sets.items():
            src, _, tgt = direction.partition("-")
            instruction = translation_prompt_instruction(src, tgt)
            prompts = [alpaca_prompt(instruction, source) for source, _ in pairs]
            hypotheses = generate_on_all_ranks(
                pl_module.model, pl_module.tokenizer, prompts, self.batch_size, self.max_new_tokens,
                self.num_beams, sharded=trainer.world_size > 1 and type(trainer.strategy).__name__ != "DDPStrategy",
            )
            references = [reference for _, reference in pairs]
            scores = corpus_scores(hypotheses, references, tgt, self.spm_model)
            key = f"val/{self.name}/{direction}"
            metrics[f"{key}/bleu"] = scores["bleu"]
            metrics[f"{key}/chrf_pp"] = scores["chrf_pp"]
            metrics[f"{key}/exact_match"] = 100.0 * sum(
                h.strip() == r.strip() for h, r in zip(hypotheses, references)
            ) / len(references)
            if self._validations == 0:
                log.info("%s signatures: BLEU %s | chrF++ %s", direction, scores["bleu_signature"], scores["chrf_pp_signature"])
            self._write_samples(trainer, direction, pairs, hypotheses)
        return metrics

    def _write_samples(self, trainer, direction, pairs, hypotheses) -> None:
        if not (self.write_samples and trainer.is_global_zero and trainer.log_dir):
            return
        out = Path(trainer.log_dir) / self.name / f"{direction}-step{trainer.global_step}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as handle:
            for (source, reference), hypothesis in zip(pairs, hypotheses):
                handle.write(json.dumps({"source": source, "reference": reference, "hypothesis": hypothesis}, ensure_ascii=False) + "\n")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.before_training and trainer.global_step == 0:
            publish_metrics(trainer, self.evaluate(trainer, pl_module), step=0)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._validations += 1
        if self._validations % self.every_n_validations:
            return
        for key, value in self.evaluate(trainer, pl_module).items():
            pl_module.log(key, value, prog_bar=key.endswith("chrf_pp"))
