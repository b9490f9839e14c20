"""What the evaluation callbacks share: when they run, and how scores and outputs are published.

An evaluation reads its data in :meth:`EvaluationCallback.prepare` (called at ``setup``, so a
missing file fails before training starts) and measures a model in
:meth:`EvaluationCallback.run`, which needs no Trainer: ``python -m lightning_xllama evaluate``
calls the same methods on a model loaded from a folder.

Prompts are rendered in the template the model was trained with (:func:`trained_template`: the
DataModule's ``template``, else the ``run.json`` of the model folder, else ``alpaca``) unless an
evaluation is given a ``template`` of its own, so a chat-tuned model is not scored with Alpaca
prompts it never saw.

Under DDP/FSDP every rank runs every evaluation in step (same forward passes, same collectives):
generation is split across ranks and gathered, scores that add up are torchmetrics metrics
updated with each rank's own share, and corpus-level scores are computed on gathered outputs.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from lightning_xllama.evaluation.generation import check_stop_rules, generate_on_all_ranks
from lightning_xllama.evaluation.markdown import cell_text, markdown_table
from lightning_xllama.evaluation.off_target import OffTargetRate, build_identifier
from lightning_xllama.evaluation.partial_outputs import SetOutputs
from lightning_xllama.prompts import Template, check_template, render_prompt
from lightning_xllama.runtime import distributed
from lightning_xllama.runtime.progress import progress
from lightning_xllama.runtime.run_record import RUN_RECORD_FILE, read_run_record


def check_at_least(owner: object, name: str, value: Any, low: int, optional: bool = False) -> None:
    """Refuse, in one line naming ``owner``'s class, a setting that is not a whole number
    ``>= low`` (or None, when ``optional``): at construction, not at the first validation."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if optional and value is None or whole and value >= low:
        return
    expected = f"a whole number >= {low}" + (" or None" if optional else "")
    raise ValueError(f"{type(owner).__name__}: {name} must be {expected}, got {value!r}")


@dataclass
class EvaluationResult:
    """What one evaluation pass measured."""

    metrics: dict[str, float]
    """Scores keyed ``{name}/{set}/{metric}`` (logged with a ``val/`` prefix)."""
    samples: dict[str, list[dict]] = field(default_factory=dict)
    """Per set, one record per example (input, reference, output), in input order."""
    details: dict[str, Any] = field(default_factory=dict)
    """Per set, JSON values that are not scores: metric signatures, per-layer curves."""


def folder_template(folder: Optional[str]) -> Optional[Template]:
    """The template in ``{folder}/run.json`` (exports copy the run's record into the model folder);
    None when there is no such file or it names no template (a hub name, a base model)."""
    if not folder:
        return None
    path = Path(folder) / RUN_RECORD_FILE
    if not path.is_file():
        return None
    template = read_run_record(path).get("template")
    return None if template is None else check_template(template, f"{path}: template")


def trained_template(trainer, pl_module) -> tuple[Template, str]:
    """The template a module is trained with, and where it was found: the trainer's DataModule
    (``hparams.template``), else the ``run.json`` of the module's model folder
    (``model_name_or_path``), else ``alpaca`` (the package's default)."""
    datamodule = getattr(trainer, "datamodule", None)
    template = getattr(getattr(datamodule, "hparams", None), "template", None)
    if template is not None:
        return check_template(template, "the DataModule's template"), "the DataModule"
    hparams = getattr(pl_module, "hparams", None) or {}
    folder = hparams.get("model_name_or_path")
    template = folder_template(folder)
    if template is not None:
        return template, f"{folder}/{RUN_RECORD_FILE}"
    return "alpaca", "the default"


def publish_metrics(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
    """Log metrics outside a ``self.log`` hook and make them visible to other callbacks."""
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)


def summary_writer(logger) -> Optional[Any]:
    """The TensorBoard ``SummaryWriter`` of a logger that has one (``TensorBoardLogger``: it has
    no ``log_text``/``log_image``, its writer has ``add_text``/``add_image``), else None."""
    experiment = getattr(logger, "experiment", None)
    return experiment if hasattr(experiment, "add_text") else None


def log_table(
    loggers: list, key: str, columns: list[str], data: list[list[str]], step: int
) -> None:
    """A table to every logger that shows one: ``log_text`` (W&B: a ``wandb.Table``), else the
    TensorBoard writer's ``add_text`` as a markdown table (the Text tab renders it)."""
    for logger in loggers:
        if hasattr(logger, "log_text"):
            logger.log_text(key=key, columns=columns, data=data, step=step)
        elif (writer := summary_writer(logger)) is not None:
            writer.add_text(key, markdown_table(columns, data), global_step=step)


def log_image_file(loggers: list, key: str, path: Path, step: int) -> None:
    """An image file (a PNG plot) to every logger that shows one: ``log_image`` (W&B), else the
    TensorBoard writer's ``add_image`` (the Images tab)."""
    for logger in loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)], step=step)
        elif (writer := summary_writer(logger)) is not None:
            from matplotlib.image import imread

            writer.add_image(key, imread(path), global_step=step, dataformats="HWC")


class EvaluationCallback(L.Callback, ABC):
    """Runs :meth:`run` before training, on every ``every_n_validations``-th validation pass of
    ``fit`` and on every ``validate`` pass, and logs its scores as ``val/{name}/...``; on a
    ``test`` pass, once at its end, logged as ``test/{name}/...``.

    Prompts (:meth:`prompt_for`) are in ``template`` when one is given, else in the template the
    model was trained with: set at ``setup`` from the trainer (:func:`trained_template`) and by
    ``evaluate`` from the model folder (:meth:`use_model_template`).
    """

    progress_bar_metric: Optional[str] = None
    """The metric of every set shown in the progress bar (``val/{name}/{set}/{metric}``)."""
    stage: str = "val"
    """The prefix of the scores :meth:`measure` returns: ``test`` during a test pass."""

    def __init__(
        self,
        name: str,
        every_n_validations: int = 1,
        before_training: bool = True,
        template: Optional[Template] = None,
    ):
        check_at_least(self, "every_n_validations", every_n_validations, 1)
        self.name, self.every_n_validations, self.before_training = (
            name,
            every_n_validations,
            before_training,
        )
        self.template = None if template is None else check_template(template, f"{name}: template")
        self.model_template: tuple[Template, str] = ("alpaca", "the default")
        """The model's own template and where it was found (used when ``template`` is None)."""
        self._validations = 0

    # --- prompts ----------------------------------------------------------------------------
    def use_model_template(self, template: Template, source: str) -> None:
        """Prompt in ``template``, the one the model was trained with (found in ``source``),
        unless this evaluation was given a ``template`` of its own."""
        self.model_template = (check_template(template, source), source)

    @property
    def prompt_template(self) -> Template:
        """The template prompts are rendered in."""
        return self.template or self.model_template[0]

    @property
    def template_source(self) -> str:
        """Where :attr:`prompt_template` comes from, for reports."""
        return "its own template setting" if self.template else self.model_template[1]

    def prompt_for(self, instruction: str, input: str, tokenizer) -> str:
        """The prompt for an instruction in :attr:`prompt_template` (``tokenizer`` for ``chat``)."""
        return render_prompt(instruction, input, self.prompt_template, tokenizer)

    # --- what a subclass provides ---------------------------------------------------------
    @abstractmethod
    def prepare(self) -> None:
        """Read and check the evaluation data (fails on a missing file or an empty set)."""

    @abstractmethod
    def run(self, model, tokenizer, sharded: bool = False) -> EvaluationResult:
        """Measure ``model``; every rank calls it and gets the same result."""

    def write_outputs(self, result: EvaluationResult, out_dir: Path, tag: str) -> dict[str, Path]:
        """Write files for people to look at (outputs, plots) under ``out_dir``; rank 0 only."""
        return {}

    def log_outputs(
        self, loggers: list, result: EvaluationResult, files: dict[str, Path], step: int
    ) -> None:
        """Send tables or images to the loggers that take them (:func:`log_table`,
        :func:`log_image_file`); rank 0 only."""

    def markdown(self, result: EvaluationResult, files: dict[str, Path], root: Path) -> str:
        """The section of the ``evaluate`` report: a table of the scores, set by metric."""
        sets: dict[str, dict[str, float]] = {}
        for key, value in result.metrics.items():
            set_name, metric = key[len(self.name) + 1 :].split("/", 1)
            sets.setdefault(set_name, {})[metric] = value
        columns = list(dict.fromkeys(metric for scores in sets.values() for metric in scores))
        rows = [
            [set_name, *(scores.get(m, "") for m in columns)] for set_name, scores in sets.items()
        ]
        return markdown_table(["set", *columns], rows)

    # --- Lightning hooks ------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    def state_dict(self) -> dict:
        return {"validations": self._validations}

    def load_state_dict(self, state_dict: dict) -> None:
        self._validations = state_dict["validations"]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage in ("fit", "validate", "test"):  # predict never evaluates: no COMET loading there
            self.use_model_template(*trained_template(trainer, pl_module))
            self.prepare()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.before_training and trainer.global_step == 0:
            publish_metrics(trainer, self.measure(trainer, pl_module), step=0)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn not in ("fit", "validate"):
            return
        if trainer.state.fn == "fit":
            self._validations += 1
            if self._validations % self.every_n_validations:
                return
        for key, value in self.measure(trainer, pl_module).items():
            shown = key.split("/", 3)[3:] == [self.progress_bar_metric]
            pl_module.log(key, value, prog_bar=shown, sync_dist=True)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``test``: measure the model once, as a validation pass does, logged as ``test/``."""
        self.stage = "test"
        try:
            scores = self.measure(trainer, pl_module)
        finally:
            self.stage = "val"
        for key, value in scores.items():
            pl_module.log(key, value, sync_dist=True)

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Run the evaluation on the module's model and publish its outputs (files in the
        logger's folder, tagged ``test-`` on a test pass; tables and images to loggers; nothing
        without a logger); the scores, prefixed with :attr:`stage` (``val/``, ``test/``)."""
        sharded = distributed.shards_model(trainer)
        result = self.run(pl_module.model, pl_module.tokenizer, sharded=sharded)
        if trainer.loggers:
            log_dir = trainer.log_dir  # a collective under DDP: every rank asks
            if trainer.is_global_zero:
                tag = f"step{trainer.global_step}"
                tag = tag if self.stage == "val" else f"{self.stage}-{tag}"
                files = self.write_outputs(result, Path(log_dir) / self.name, tag)
                self.log_outputs(trainer.loggers, result, files, trainer.global_step)
        return {f"{self.stage}/{key}": value for key, value in result.metrics.items()}


@dataclass(frozen=True)
class Generation:
    """How a generation evaluation decodes: its one nested ``generation:`` argument.

    A setting left None takes the evaluation's default (its ``default_generation``: e.g. 32
    prompts a batch and 256 new tokens for translation, 16 and 64 for QA). The same keys are
    still accepted flat beside the evaluation's other arguments (``max_new_tokens: 64``);
    one setting given both ways with two values is refused.

    Args:
        batch_size: prompts generated together.
        max_new_tokens: the length limit of each output, in tokens.
        num_beams: beam width (1: greedy, as the paper decoded).
        stop_at_newline: end each output at its first line break after some text (single-line
            tasks such as sentence translation; off as the paper decoded).
        repeat_ngram: with ``repeat_times``, end an output whose latest ``repeat_ngram`` tokens
            occurred ``repeat_times`` times (a model repeating itself); 0: off, as the paper
            decoded. The rows each rule ended are logged as ``stopped_newline`` and
            ``stopped_repeating``, with ``hit_limit`` (rows that reached ``max_new_tokens``).
        repeat_times: how many occurrences of that n-gram end an output (at least 2; 0: off).
    """

    batch_size: Optional[int] = None
    max_new_tokens: Optional[int] = None
    num_beams: Optional[int] = None
    stop_at_newline: Optional[bool] = None
    repeat_ngram: Optional[int] = None
    repeat_times: Optional[int] = None

    def over(self, other: "Generation") -> "Generation":
        """These settings, with ``other``'s where these are None."""
        return Generation(
            *(
                getattr(other, f.name) if getattr(self, f.name) is None else getattr(self, f.name)
                for f in fields(self)
            )
        )

    def check_agrees(self, flat: "Generation", owner: str) -> None:
        """Refuse, in one line naming ``owner``, a setting given here and in ``flat`` (the
        older flat keys) with two values."""
        for setting in fields(self):
            nested, alone = getattr(self, setting.name), getattr(flat, setting.name)
            if nested is not None and alone is not None and nested != alone:
                raise ValueError(
                    f"{owner}: {setting.name} is given twice, as generation.{setting.name}: "
                    f"{nested!r} and as {setting.name}: {alone!r}; keep one"
                )


class GenerationEvaluation(EvaluationCallback):
    """An evaluation that generates answers to prompts: how it decodes (:class:`Generation`),
    the off-target rate, and the outputs written as JSONL and as a sample table.

    A subclass takes its own arguments and ``generation``, and passes ``generation`` and
    ``**kwargs`` on to this constructor: the keyword arguments below are then every generation
    evaluation's config keys, documented here once (the CLI and ``--help`` find them here).

    Args:
        name: the evaluation's name, in its metric keys and output folder.
        generation: how outputs are decoded (:class:`Generation`); None: the defaults.
        template: the prompt template (None: the one the model was trained with).
        max_samples: evaluate N examples of each set, spread evenly over it (cost control;
            None: all).
        off_target: measure the share of outputs not in the expected language.
        language_id_candidates: languages the identifier may answer with (default: the
            evaluated languages, English and every registered language py3langid knows).
        every_n_validations: run on every N-th validation pass of ``fit``.
        before_training: also evaluate the starting model, logged at step 0.
        write_samples: write every output of each pass to ``{log_dir}/{name}/{set}-step{N}.jsonl``
            and the first ``table_rows`` as a markdown table next to it.
        table_rows: samples sent to the loggers as a table (W&B, TensorBoard, any logger with
            ``log_text``).
        batch_size: flat spelling of ``generation.batch_size``.
        max_new_tokens: flat spelling of ``generation.max_new_tokens``.
        num_beams: flat spelling of ``generation.num_beams``.
        stop_at_newline: flat spelling of ``generation.stop_at_newline``.
        repeat_ngram: flat spelling of ``generation.repeat_ngram``.
        repeat_times: flat spelling of ``generation.repeat_times``.
    """

    default_generation = Generation(
        batch_size=16,
        max_new_tokens=256,
        num_beams=1,
        stop_at_newline=False,
        repeat_ngram=0,
        repeat_times=0,
    )
    """What a setting of ``generation`` left None becomes; a subclass's own
    ``default_generation`` needs only the settings it changes."""

    def __init__(
        self,
        name: str,
        generation: Optional[Generation] = None,
        *,
        template: Optional[Template] = None,
        max_samples: Optional[int] = None,
        off_target: bool = True,
        language_id_candidates: Optional[list[str]] = None,
        every_n_validations: int = 1,
        before_training: bool = True,
        write_samples: bool = True,
        table_rows: int = 8,
        batch_size: Optional[int] = None,
        max_new_tokens: Optional[int] = None,
        num_beams: Optional[int] = None,
        stop_at_newline: Optional[bool] = None,
        repeat_ngram: Optional[int] = None,
        repeat_times: Optional[int] = None,
    ):
        flat = Generation(
            batch_size, max_new_tokens, num_beams, stop_at_newline, repeat_ngram, repeat_times
        )
        nested = generation or Generation()
        nested.check_agrees(flat, type(self).__name__)
        defaults = self.default_generation.over(GenerationEvaluation.default_generation)
        self.generation = flat.over(nested).over(defaults)
        for setting in fields(self.generation):
            setattr(self, setting.name, getattr(self.generation, setting.name))
        for setting, low in (("batch_size", 1), ("max_new_tokens", 1), ("num_beams", 1)):
            check_at_least(self, setting, getattr(self, setting), low)
        check_stop_rules(self.repeat_ngram, self.repeat_times, self.num_beams, self.stop_at_newline)
        check_at_least(self, "max_samples", max_samples, 1, optional=True)
        check_at_least(self, "table_rows", table_rows, 0)
        super().__init__(name, every_n_validations, before_training, template)
        self.max_samples, self.off_target = max_samples, off_target
        self.language_id_candidates = language_id_candidates
        self.write_samples, self.table_rows = write_samples, table_rows
        self.identifier = None
        self.outputs_folder: Optional[Path] = None
        self.resume_outputs = False

    def use_model_template(self, template: Template, source: str) -> None:
        super().use_model_template(template, source)
        rank_zero_info(
            f"{self.name}: prompts in the {self.prompt_template!r} template "
            f"(from {self.template_source})"
        )

    def prepare_identifier(self, languages: list[str]) -> None:
        """Build the language identifier now, so a language it cannot tell fails at setup."""
        if self.off_target:
            self.identifier = build_identifier(languages, self.language_id_candidates)

    def keep_outputs_in(self, folder: Path, resume: bool) -> None:
        """Write each set's outputs to ``{folder}/{set}.partial.jsonl`` batch by batch (single
        process: ``evaluate``), and with ``resume`` generate only the rows not found there
        (:class:`~lightning_xllama.evaluation.partial_outputs.SetOutputs`)."""
        self.outputs_folder, self.resume_outputs = Path(folder), resume

    def generate(
        self,
        model,
        tokenizer,
        prompts: list[str],
        sharded: bool,
        counts: Optional[dict] = None,
        set_name: Optional[str] = None,
    ) -> list[str]:
        """Outputs in input order; ``counts`` gets how many rows each stop rule ended.

        Rank 0 shows the progress of the set (``{name} {set_name}``: prompts done, rate, time
        left; a few plain lines when stderr is not a terminal). After :meth:`keep_outputs_in`,
        a set's outputs are on disk as they are generated."""
        saved = None
        if self.outputs_folder is not None and set_name is not None:
            if distributed.world_size() == 1:
                saved = SetOutputs(self.outputs_folder, set_name, prompts, self.resume_outputs)
        missing = saved.missing if saved is not None else list(range(len(prompts)))
        label = self.name if set_name is None else f"{self.name} {set_name}"
        if saved is not None and saved.reused_from is not None:
            rank_zero_info(
                f"{label}: {len(prompts) - len(missing)} of {len(prompts)} outputs read from "
                f"{saved.reused_from}, {len(missing)} to generate"
            )
        bar = None
        if missing and distributed.rank() == 0:
            bar = progress(desc=label, total=len(missing), unit="prompts", leave=False)

        def on_batch(rows: list[int], outputs: list[str], stops: dict[str, int]) -> None:
            if saved is not None:
                saved.append([missing[row] for row in rows], outputs, stops)
            if bar is not None:
                bar.update(len(rows))

        try:
            outputs = generate_on_all_ranks(
                model,
                tokenizer,
                [prompts[i] for i in missing],
                self.batch_size,
                self.max_new_tokens,
                self.num_beams,
                sharded=sharded,
                stop_at_newline=self.stop_at_newline,
                repeat_ngram=self.repeat_ngram,
                repeat_times=self.repeat_times,
                counts=None if saved is not None else counts,
                on_batch=on_batch,
            )
        except BaseException:  # stopped or failed: the batches written stay for --resume
            if saved is not None:
                saved.close()
            raise
        finally:
            if bar is not None:
                bar.close()
        if saved is None:
            return outputs
        if counts is not None:
            for key, value in saved.stops.items():
                counts[key] = counts.get(key, 0) + value
        return saved.finish()

    def stop_metrics(self, key: str, counts: dict[str, int]) -> dict[str, float]:
        """``{key}/stopped_newline``, ``stopped_repeating`` and ``hit_limit`` (rows that ran to
        ``max_new_tokens``) when a stop rule is on; nothing otherwise."""
        if not (self.stop_at_newline or self.repeat_ngram):
            return {}
        return {f"{key}/{rule}": float(count) for rule, count in counts.items()}

    def off_target_scores(
        self, outputs: list[str], expected_lang: str, device: torch.device
    ) -> dict[str, float]:
        """``off_target`` and ``undetermined`` percentages, each rank counting its own share."""
        if self.identifier is None:
            return {}
        metric = OffTargetRate(self.identifier, expected_lang).to(device)
        metric.update([outputs[i] for i in distributed.rank_share(len(outputs))])
        return metric.compute()

    def identify(self, outputs: list[str]) -> list[Optional[str]]:
        """The language of each output, for the sample records (None: undetermined)."""
        if self.identifier is None:
            return [None] * len(outputs)
        return [self.identifier.identify(output) for output in outputs]

    def write_outputs(self, result: EvaluationResult, out_dir: Path, tag: str) -> dict[str, Path]:
        """``{set}-{tag}.jsonl`` with every output and ``{set}-{tag}.md`` with the first
        ``table_rows`` as a table (for loggers that take no tables)."""
        if not self.write_samples:
            return {}
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {}
        for set_name, records in result.samples.items():
            stem = f"{set_name}-{tag}" if tag else set_name
            path = out_dir / f"{stem}.jsonl"
            with path.open("w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            table = out_dir / f"{stem}.md"
            table.write_text(self.sample_table(records) + "\n", encoding="utf-8")
            files[set_name] = path
        return files

    def sample_table(self, records: list[dict]) -> str:
        rows = records[: self.table_rows]
        columns = list(rows[0]) if rows else []
        return markdown_table(columns, [[record[c] for c in columns] for record in rows])

    def log_outputs(
        self, loggers: list, result: EvaluationResult, files: dict[str, Path], step: int
    ) -> None:
        """The first ``table_rows`` samples of each set as a table (:func:`log_table`: W&B,
        TensorBoard, any logger with ``log_text``)."""
        for set_name, records in result.samples.items():
            rows = records[: self.table_rows]
            if not rows:
                continue
            columns = list(rows[0])
            data = [[cell_text(record[c]) for c in columns] for record in rows]
            log_table(loggers, f"val/{self.name}/{set_name}/samples", columns, data, step)

    def report_notes(self, result: EvaluationResult) -> list[str]:
        """Lines printed under the score table of the ``evaluate`` report (e.g. signatures)."""
        return []

    def markdown(self, result: EvaluationResult, files: dict[str, Path], root: Path) -> str:
        sections = [super().markdown(result, files, root)]
        sections.append(
            f"Prompts in the `{self.prompt_template}` template (from {self.template_source})."
        )
        notes = self.report_notes(result)
        if notes:
            sections.append("\n".join(notes))
        for set_name, records in result.samples.items():
            where = (
                f" (all outputs: `{files[set_name].relative_to(root)}`)"
                if set_name in files
                else ""
            )
            sections.append(f"Samples of {set_name}{where}:\n\n{self.sample_table(records)}")
        return "\n\n".join(sections)
