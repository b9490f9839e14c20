"""Translation quality measured during training: FLORES or your own test sets, greedy decoding,
sacreBLEU BLEU and chrF++, COMET from a local checkpoint, and the off-target rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

from lightning.pytorch.utilities import rank_zero_info

from lightning_xllama import distributed
from lightning_xllama.callbacks.base import (
    EvaluationResult,
    GenerationEvaluation,
    GenerationSettings,
)
from lightning_xllama.data.eval_sets import FloresSplit, FloresVersion, parse_direction
from lightning_xllama.data.tasks import translation_prompt_instruction
from lightning_xllama.evaluation.test_sets import ParallelTestSets
from lightning_xllama.evaluation.translation_metrics import comet_score, corpus_scores, load_comet
from lightning_xllama.prompts import alpaca_prompt


class TranslationEvaluation(GenerationEvaluation):
    """Translate test sets on validation passes and log BLEU, chrF++, COMET, exact match and the
    off-target rate.

    Keys are ``val/{name}/{src}-{tgt}/{bleu,chrf_pp,comet,exact_match,off_target,undetermined}``
    (``comet`` only with ``comet_model``; all but ``comet`` on a 0-100 scale; COMET as the model
    gives it). Corpus scores are computed on the outputs gathered from all ranks (COMET once, on
    rank 0), so all ranks log the same values. The metric signatures are printed once and written
    to ``{log_dir}/{name}/signatures.json`` (and the ``evaluate`` report).

    Args:
        directions: ``src-tgt`` pairs of language codes, e.g. ``[en-zh, zh-en]``.
        test_prefix: your aligned test files ``{test_prefix}.{src}`` and ``{test_prefix}.{tgt}``.
        flores_dir: a FLORES-101/200 folder (``{dev,devtest}/{code}.{split}`` or flat
            ``{code}.{split}``); give it or ``test_prefix``, not both.
        flores_split: ``dev`` or ``devtest`` (the paper: devtest).
        flores_version: ``flores101`` or ``flores200``: which file codes the folder uses.
        name: metric namespace (``val/{name}/...``), e.g. ``flores``.
        max_samples: evaluate on this many sentences, spread evenly over the set (cost control).
        batch_size: generation batch size.
        max_new_tokens: generation length limit.
        num_beams: 1 for greedy decoding.
        spm_model: local SentencePiece model of FLORES for spBLEU (nothing is downloaded).
        spm_name: which model ``spm_model`` is (``flores101`` or ``flores200``), for the signature.
        comet_model: local COMET checkpoint (``wmt22-comet-da`` folder or its ``model.ckpt``),
            loaded at setup; it must exist.
        comet_batch_size: COMET scoring batch size.
        off_target: measure the share of outputs not in the target language.
        language_id_candidates: languages the identifier may answer with (default: English and the
            directions' languages; every synthetic language for synthetic ones).
        every_n_validations: run on every N-th validation pass of ``fit``.
        before_training: also evaluate the starting model, logged at step 0.
        write_samples: write every output of each pass to ``{log_dir}/{name}/{src}-{tgt}-step{N}.jsonl``
            and the first ``table_rows`` as a markdown table next to it.
        table_rows: sample translations sent to loggers that take tables (``log_text``).
    """

    progress_bar_metric = "chrf_pp"

    def __init__(
        self,
        directions: list[str],
        test_prefix: Optional[str] = None,
        flores_dir: Optional[str] = None,
        flores_split: FloresSplit = "devtest",
        flores_version: FloresVersion = "flores101",
        name: str = "translation",
        max_samples: Optional[int] = None,
        batch_size: int = 32,
        max_new_tokens: int = 256,
        num_beams: int = 1,
        spm_model: Optional[str] = None,
        spm_name: Literal["flores101", "flores200"] = "flores101",
        comet_model: Optional[str] = None,
        comet_batch_size: int = 16,
        off_target: bool = True,
        language_id_candidates: Optional[list[str]] = None,
        every_n_validations: int = 1,
        before_training: bool = True,
        write_samples: bool = True,
        table_rows: int = 8,
    ):
        super().__init__(name, GenerationSettings.from_arguments(locals()))
        self.test_sets_spec = ParallelTestSets(
            directions,
            test_prefix,
            flores_dir,
            flores_split,
            flores_version,
            user="TranslationEvaluation",
        )
        self.directions = self.test_sets_spec.directions
        self.spm_model, self.spm_name = spm_model, spm_name
        self.comet_model, self.comet_batch_size = comet_model, comet_batch_size
        self.test_sets: dict[str, list[tuple[str, str]]] = {}
        self.comet = None
        self._signatures_logged = False

    def prepare(self) -> None:
        """Read every test set and load COMET, so a missing file fails before training starts."""
        if self.test_sets:
            return
        test_sets = self.test_sets_spec.read(self.max_samples)
        if self.spm_model is not None and not Path(self.spm_model).is_file():
            raise FileNotFoundError(f"SentencePiece model for BLEU not found: {self.spm_model}")
        self.prepare_identifier(self.test_sets_spec.languages())
        if self.comet_model is not None:
            self.comet = self._load_comet()
        self.test_sets = test_sets

    def _load_comet(self):
        """The COMET model on rank 0; the other ranks only check that the path exists."""
        if distributed.rank() != 0:
            if not Path(self.comet_model).exists():
                raise FileNotFoundError(f"COMET checkpoint not found: {self.comet_model}")
            return None
        return load_comet(self.comet_model)

    def run(self, model, tokenizer, sharded: bool = False) -> EvaluationResult:
        result = EvaluationResult({})
        device = next(model.parameters()).device
        for direction, pairs in self.test_sets.items():
            src, tgt = parse_direction(direction)
            instruction = translation_prompt_instruction(src, tgt)
            sources = [source for source, _ in pairs]
            references = [reference for _, reference in pairs]
            hypotheses = self.generate(
                model, tokenizer, [alpaca_prompt(instruction, s) for s in sources], sharded
            )
            scores = corpus_scores(hypotheses, references, tgt, self.spm_model, self.spm_name)
            key = f"{self.name}/{direction}"
            result.metrics[f"{key}/bleu"] = scores["bleu"]
            result.metrics[f"{key}/chrf_pp"] = scores["chrf_pp"]
            exact = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references))
            result.metrics[f"{key}/exact_match"] = 100.0 * exact / len(references)
            details = {
                "bleu_signature": scores["bleu_signature"],
                "chrf_pp_signature": scores["chrf_pp_signature"],
            }
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
                for record, segment in zip(records, segments):
                    record["comet"] = round(segment, 4)
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
            + (f"; COMET `{d['comet_model']}`" if "comet_model" in d else "")
            for direction, d in result.details.items()
        ]
