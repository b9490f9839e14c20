"""Translation quality measured during training: FLORES or your own test sets, greedy decoding,
sacreBLEU BLEU, spBLEU and chrF++, COMET and BLEURT from local checkpoints (the paper's metrics),
and the off-target rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

from lightning.pytorch.utilities import rank_zero_info

from lightning_xllama.callbacks.base import (
    EvaluationResult,
    Generation,
    GenerationEvaluation,
)
from lightning_xllama.data.eval_sets import FloresSplit, FloresVersion, parse_direction
from lightning_xllama.evaluation.bleurt import bleurt_score, load_bleurt
from lightning_xllama.evaluation.test_sets import ParallelTestSets
from lightning_xllama.evaluation.translation_metrics import (
    LocalSPMTokenizer,
    comet_score,
    comet_signature,
    corpus_scores,
    load_comet,
)
from lightning_xllama.prompts import (
    InstructionRule,
    check_instruction_rule,
    evaluation_translation_instruction,
)
from lightning_xllama.runtime import distributed

METRIC_FILES = {
    "spm_model": "the FLORES-101 SentencePiece model (sacrebleu_tokenizer_spm.model)",
    "comet_model": "a COMET folder (wmt22-comet-da: hparams.yaml, checkpoints/model.ckpt)",
    "bleurt_model": "a converted BLEURT folder (BLEURT-20: config.json, weights, spm.model)",
}
"""The metric files of :class:`TranslationEvaluation`, by setting, and what each should be."""


def _require_path(setting: str, path: Optional[str], what: str) -> None:
    """Fail naming the setting (the callback's YAML key) when its file is not there: a recipe's
    placeholder path otherwise fails deep inside a metric library, or after a whole generation."""
    if path is None or Path(path).exists():
        return
    placeholder = " (still the recipe's placeholder)" if path.startswith("/path/to/") else ""
    raise FileNotFoundError(
        f"TranslationEvaluation {setting}: {path!r} does not exist{placeholder}. Set {setting} "
        f"(init_args of the TranslationEvaluation callback in the config) to {what}, or remove "
        "it to skip that metric."
    )


class TranslationEvaluation(GenerationEvaluation):
    """Translate test sets on validation passes and log BLEU, spBLEU, chrF++, COMET, BLEURT,
    exact match and the off-target rate.

    Keys are ``val/{name}/{src}-{tgt}/{bleu,spbleu,chrf_pp,comet,bleurt,exact_match,off_target,
    undetermined}`` (``spbleu`` only with ``spm_model``, ``comet`` with ``comet_model``, ``bleurt``
    with ``bleurt_model``; COMET and BLEURT as their models give them, the rest on a 0-100 scale).
    Corpus scores are computed on the outputs gathered from all ranks (COMET and BLEURT once, on
    rank 0, on its GPU when it has one), so all ranks log the same values. The metric signatures
    are printed once and written to ``{log_dir}/{name}/signatures.json`` (and the ``evaluate``
    report). The metric files are checked at setup: a path that does not exist stops ``fit`` or
    ``validate`` before training, naming the setting.

    Args:
        directions: ``src-tgt`` pairs of language codes, e.g. ``[en-zh, zh-en]``.
        test_prefix: your aligned test files ``{test_prefix}.{src}`` and ``{test_prefix}.{tgt}``.
        flores_dir: a FLORES-101/200 folder (``{dev,devtest}/{code}.{split}`` or flat
            ``{code}.{split}``); give it or ``test_prefix``, not both.
        flores_split: ``dev`` or ``devtest`` (the paper: devtest).
        flores_version: ``flores101`` or ``flores200``: which file codes the folder uses.
        instruction: the instruction each sentence is given: ``package`` ("Translate the
            following sentences from English to Chinese.", the registry's language names) or
            ``official`` (the paper's ``_INSTRUCTIONS[0]`` with its ISO 639 names, e.g. ``Modern
            Greek (1453-)``); see :func:`~lightning_xllama.prompts.evaluation_translation_instruction`.
        name: metric namespace (``val/{name}/...``), e.g. ``flores``.
        generation: how translations are decoded (:class:`~lightning_xllama.callbacks.base.Generation`;
            defaults: 32 a batch, 256 new tokens, greedy; the paper's limit: 512).
        spm_model: local FLORES SentencePiece model (FLORES-101: ``sacrebleu_tokenizer_spm.model``)
            for spBLEU, logged as ``spbleu`` beside ``bleu``; nothing is downloaded.
        spm_name: which model ``spm_model`` is (``flores101`` or ``flores200``), for the signature.
        comet_model: local COMET checkpoint (``wmt22-comet-da`` folder or its ``model.ckpt``),
            loaded at setup; it must exist.
        comet_batch_size: COMET scoring batch size (on the GPU when there is one).
        bleurt_model: local converted BLEURT checkpoint folder (BLEURT-20 for bleurt-pytorch:
            ``config.json``, weights, ``spm.model``), loaded at setup; it must exist.
        bleurt_batch_size: BLEURT scoring batch size (on the GPU when there is one).
        **kwargs: every generation evaluation's settings (``max_samples``, ``off_target``,
            ``every_n_validations``, ``template``...; see
            :class:`~lightning_xllama.callbacks.base.GenerationEvaluation`).
    """

    default_generation = Generation(batch_size=32, max_new_tokens=256)

    progress_bar_metric = "chrf_pp"

    def __init__(
        self,
        directions: list[str],
        test_prefix: Optional[str] = None,
        flores_dir: Optional[str] = None,
        flores_split: FloresSplit = "devtest",
        flores_version: FloresVersion = "flores101",
        instruction: InstructionRule = "package",
        name: str = "translation",
        generation: Optional[Generation] = None,
        spm_model: Optional[str] = None,
        spm_name: Literal["flores101", "flores200"] = "flores101",
        comet_model: Optional[str] = None,
        comet_batch_size: int = 16,
        bleurt_model: Optional[str] = None,
        bleurt_batch_size: int = 32,
        **kwargs,
    ):
        super().__init__(name, generation, **kwargs)
        self.test_sets_spec = ParallelTestSets(
            directions,
            test_prefix,
            flores_dir,
            flores_split,
            flores_version,
            user="TranslationEvaluation",
        )
        self.directions = self.test_sets_spec.directions
        self.instruction = check_instruction_rule(instruction, f"{name}: instruction")
        self.spm_model, self.spm_name = spm_model, spm_name
        self.comet_model, self.comet_batch_size = comet_model, comet_batch_size
        self.bleurt_model, self.bleurt_batch_size = bleurt_model, bleurt_batch_size
        for setting in ("comet_batch_size", "bleurt_batch_size"):
            if getattr(self, setting) < 1:
                raise ValueError(f"{setting} must be at least 1, got {getattr(self, setting)}")
        self.test_sets: dict[str, list[tuple[str, str]]] = {}
        self.comet = None
        self.bleurt = None
        self._signatures_logged = False

    def prepare(self) -> None:
        """Check the metric files, read every test set and load COMET and BLEURT (on rank 0), so a
        missing file fails before training starts."""
        if self.test_sets:
            return
        for setting, what in METRIC_FILES.items():
            _require_path(setting, getattr(self, setting), what)
        if self.spm_model is not None:
            LocalSPMTokenizer(self.spm_model, self.spm_name)  # a folder or a broken file fails here
        test_sets = self.test_sets_spec.read(self.max_samples)
        self.prepare_identifier(self.test_sets_spec.languages())
        if distributed.rank() == 0:  # the other ranks receive the scores
            if self.comet_model is not None:
                self.comet = load_comet(self.comet_model)
            if self.bleurt_model is not None:
                self.bleurt = load_bleurt(self.bleurt_model)
        self.test_sets = test_sets

    def run(self, model, tokenizer, sharded: bool = False) -> EvaluationResult:
        result = EvaluationResult({})
        device = next(model.parameters()).device
        for direction, pairs in self.test_sets.items():
            src, tgt = parse_direction(direction)
            instruction = evaluation_translation_instruction(self.instruction, src, tgt)
            sources = [source for source, _ in pairs]
            references = [reference for _, reference in pairs]
            stops: dict[str, int] = {}
            hypotheses = self.generate(
                model,
                tokenizer,
                [self.prompt_for(instruction, s, tokenizer) for s in sources],
                sharded,
                stops,
                set_name=direction,
            )
            scores = corpus_scores(hypotheses, references, tgt, self.spm_model, self.spm_name)
            key = f"{self.name}/{direction}"
            result.metrics[f"{key}/bleu"] = scores["bleu"]
            result.metrics[f"{key}/chrf_pp"] = scores["chrf_pp"]
            if "spbleu" in scores:
                result.metrics[f"{key}/spbleu"] = scores["spbleu"]
            exact = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references))
            result.metrics[f"{key}/exact_match"] = 100.0 * exact / len(references)
            details = {
                "instruction": instruction,
                "max_new_tokens": self.max_new_tokens,
                "bleu_signature": scores["bleu_signature"],
                "chrf_pp_signature": scores["chrf_pp_signature"],
            }
            if "spbleu" in scores:
                details["spbleu_signature"] = scores["spbleu_signature"]
            records = [
                {"source": s, "reference": r, "hypothesis": h, "language": lang}
                for s, r, h, lang in zip(sources, references, hypotheses, self.identify(hypotheses))
            ]
            if self.comet_model is not None:
                system, segments = distributed.on_rank_zero(
                    lambda: comet_score(
                        self.comet, sources, hypotheses, references, self.comet_batch_size
                    )
                )
                result.metrics[f"{key}/comet"] = system
                details["comet_model"] = self.comet_model
                details["comet_signature"] = comet_signature(self.comet_model)
                for record, segment in zip(records, segments):
                    record["comet"] = round(segment, 4)
            if self.bleurt_model is not None:
                system, segments, signature = distributed.on_rank_zero(
                    lambda: (
                        *bleurt_score(self.bleurt, hypotheses, references, self.bleurt_batch_size),
                        self.bleurt.signature(),
                    )
                )
                result.metrics[f"{key}/bleurt"] = system
                details["bleurt_model"] = self.bleurt_model
                details["bleurt_signature"] = signature
                for record, segment in zip(records, segments):
                    record["bleurt"] = round(segment, 4)
            result.metrics.update(self.stop_metrics(key, stops))
            for metric, value in self.off_target_scores(hypotheses, tgt, device).items():
                result.metrics[f"{key}/{metric}"] = value
            result.samples[direction] = records
            result.details[direction] = details
        if not self._signatures_logged:
            for direction, details in result.details.items():
                rank_zero_info(f"{self.name}/{direction} signatures: {details}")
            self._signatures_logged = True
        return result

    def write_outputs(self, result: EvaluationResult, out_dir: Path, tag: str) -> dict[str, Path]:
        """The outputs (see :class:`GenerationEvaluation`) and ``signatures.json``: how each
        direction was scored."""
        files = super().write_outputs(result, out_dir, tag)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "signatures.json").write_text(
            json.dumps(result.details, indent=1), encoding="utf-8"
        )
        return files

    def report_notes(self, result: EvaluationResult) -> list[str]:
        return ["Signatures:", ""] + [
            f"- {direction}: BLEU `{d['bleu_signature']}`; chrF++ `{d['chrf_pp_signature']}`"
            + (f"; spBLEU `{d['spbleu_signature']}`" if "spbleu_signature" in d else "")
            + (
                f"; COMET `{d['comet_model']}` (`{d['comet_signature']}`)"
                if "comet_model" in d
                else ""
            )
            + (
                f"; BLEURT `{d['bleurt_model']}` (`{d['bleurt_signature']}`)"
                if "bleurt_model" in d
                else ""
            )
            for direction, d in result.details.items()
        ]
