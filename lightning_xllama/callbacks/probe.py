"""The representation probe on validation passes: a per-layer alignment curve and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lightning_xllama.callbacks.base import EvaluationCallback, EvaluationResult, log_image_file
from lightning_xllama.data.eval_sets import FloresSplit, FloresVersion
from lightning_xllama.evaluation.markdown import markdown_table
from lightning_xllama.evaluation.probe import (
    Alignment,
    Pooling,
    check_pooling,
    plot_alignment,
    probe,
)
from lightning_xllama.evaluation.test_sets import ParallelTestSets


class RepresentationProbe(EvaluationCallback):
    """How alike the model represents a sentence and its translation, layer by layer.

    Keys per direction and layer ``L`` (0 = embeddings): ``val/{name}/{src}-{tgt}/layer{L}/`` +
    ``{cosine_parallel,cosine_nonparallel,cosine_gap,retrieval_src_to_tgt,retrieval_tgt_to_src}``
    and the same gap and retrieval on mean-centred vectors (``centered_cosine_gap``,
    ``centered_retrieval_src_to_tgt``, ``centered_retrieval_tgt_to_src``; retrieval as a share, 0-1), and ``val/{name}/{src}-{tgt}/peak_layer``, the layer with the
    largest cosine gap; see :mod:`lightning_xllama.evaluation.probe`. Each pass also saves the
    curves as ``{log_dir}/{name}/{src}-{tgt}-step{N}.png`` and sends it to the loggers as an
    image (W&B, TensorBoard). Every rank runs the same forward passes and gets the same numbers.

    Args:
        directions: ``src-tgt`` pairs of language codes, e.g. ``[en-zh]``.
        test_prefix: aligned files ``{test_prefix}.{src}`` and ``{test_prefix}.{tgt}``.
        flores_dir: a FLORES-101/200 folder instead of ``test_prefix``.
        flores_split: ``dev`` or ``devtest``.
        flores_version: ``flores101`` or ``flores200``: which file codes the folder uses.
        num_sentences: parallel pairs to probe with, spread evenly over the set (at least 2).
        batch_size: sentences per forward pass.
        pooling: ``sentence`` (the mean of the states over the sentence's own tokens) or
            ``official`` (as the paper's ``embedding.py``: the sentence as the instruction of the
            Alpaca prompt, the masked sum over the prompt divided by the batch's padded length).
        name: metric namespace (``val/{name}/...``).
        every_n_validations: run on every N-th validation pass of ``fit``.
        before_training: also probe the starting model, logged at step 0.
        plot: save the per-layer curves as an image on each pass.
    """

    def __init__(
        self,
        directions: list[str],
        test_prefix: Optional[str] = None,
        flores_dir: Optional[str] = None,
        flores_split: FloresSplit = "devtest",
        flores_version: FloresVersion = "flores101",
        num_sentences: int = 100,
        batch_size: int = 16,
        pooling: Pooling = "sentence",
        name: str = "probe",
        every_n_validations: int = 1,
        before_training: bool = True,
        plot: bool = True,
    ):
        super().__init__(name, every_n_validations, before_training)
        self.test_sets_spec = ParallelTestSets(
            directions,
            test_prefix,
            flores_dir,
            flores_split,
            flores_version,
            user="RepresentationProbe",
        )
        if num_sentences < 2:
            raise ValueError(
                "the probe compares parallel with non-parallel pairs: num_sentences must be at least 2, "
                f"got {num_sentences}"
            )
        self.directions = self.test_sets_spec.directions
        self.num_sentences, self.batch_size, self.plot = num_sentences, batch_size, plot
        self.pooling = check_pooling(pooling)
        self.pairs: dict[str, list[tuple[str, str]]] = {}

    def prepare(self) -> None:
        if self.pairs:
            return
        self.pairs = self.test_sets_spec.read(self.num_sentences, min_pairs=2, why="the probe")

    def run(self, model, tokenizer, sharded: bool = False) -> EvaluationResult:
        result = EvaluationResult({})
        for direction, pairs in self.pairs.items():
            curves = probe(model, tokenizer, pairs, self.batch_size, self.pooling)
            key = f"{self.name}/{direction}"
            for name, values in curves.as_dict().items():
                for layer, value in enumerate(values):
                    result.metrics[f"{key}/layer{layer:02d}/{name}"] = value
            result.metrics[f"{key}/peak_layer"] = float(curves.peak_layer)
            result.details[direction] = {
                "pairs": len(pairs),
                "pooling": self.pooling,
                **curves.as_dict(),
            }
        return result

    def write_outputs(self, result: EvaluationResult, out_dir: Path, tag: str) -> dict[str, Path]:
        if not self.plot:
            return {}
        files = {}
        for direction, curves in result.details.items():
            stem = f"{direction}-{tag}" if tag else direction
            title = f"{direction}: {curves['pairs']} parallel pairs" + (f" ({tag})" if tag else "")
            files[direction] = plot_alignment(_alignment(curves), out_dir / f"{stem}.png", title)
        return files

    def log_outputs(
        self, loggers: list, result: EvaluationResult, files: dict[str, Path], step: int
    ) -> None:
        """The plots as images (:func:`log_image_file`: W&B, TensorBoard, any ``log_image``)."""
        for direction, path in files.items():
            log_image_file(loggers, f"val/{self.name}/{direction}/alignment", path, step)

    def markdown(self, result: EvaluationResult, files: dict[str, Path], root: Path) -> str:
        """Per direction: the per-layer table and the plot."""
        sections = []
        for direction, curves in result.details.items():
            alignment = _alignment(curves)
            names = list(alignment.as_dict())
            rows = [
                [layer, *(curves[n][layer] for n in names)]
                for layer in range(len(alignment.cosine_gap))
            ]
            text = f"{direction} ({curves['pairs']} pairs; peak cosine gap at layer {alignment.peak_layer}):\n\n"
            text += markdown_table(["layer", *names], rows)
            if direction in files:
                text += f"\n\n![{direction} alignment]({files[direction].relative_to(root)})"
            sections.append(text)
        return "\n\n".join(sections)


def _alignment(curves: dict) -> Alignment:
    return Alignment(**{name: curves[name] for name in Alignment.__dataclass_fields__})
