"""The CoIT DataModule: English instructions, translated instructions and translation pairs.

Cross-lingual instruction tuning for one target language (x-LLaMA) mixes three streams by
weight. Each stream is read from the user's files (the synthetic world writes the same formats),
templated with Alpaca, tokenised with the prompt masked out, and batched with dynamic padding.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Literal, Optional

import lightning as L
from torch.utils.data import DataLoader

from lightning_xllama.data.collate import PadCollator
from lightning_xllama.data.encoding import EncodingReport, Overflow, encode_example
from lightning_xllama.data.mixing import MixtureSampler
from lightning_xllama.data.sources import Example, read_instructions, read_lines, read_parallel
from lightning_xllama.data.tasks import Direction, translation_examples, translation_prompt_instruction
from lightning_xllama.hf_loading import load_tokenizer
from lightning_xllama.languages import get_language
from lightning_xllama.prompts import alpaca_prompt

log = logging.getLogger(__name__)

STREAMS = ("english", "translated", "parallel")


class CoITDataModule(L.LightningDataModule):
    """Mixes the three CoIT streams for one target language.

    Args:
        language: target language code (see ``lightning_xllama.languages``).
        english_instructions: Alpaca JSON or JSONL file of English instructions.
        translated_instructions: the same instructions translated into the target language.
        parallel: path prefix of the aligned parallel corpus: ``{parallel}.en`` and
            ``{parallel}.{language}`` (Moses/OPUS layout).
        weights: share of each stream (``english``, ``translated``, ``parallel``) in an epoch,
            as ratios; a stream asked for more than it holds is repeated.
        direction: translation direction of the pairs: ``en-x``, ``x-en`` or ``both``.
        examples_per_epoch: size of one epoch; by default the total of the three streams.
        val_examples_per_stream: examples held out of each stream for the validation loss.
        max_length: longest example in tokens (the paper: 512).
        overflow: what to do with a longer example: ``truncate`` its response or ``drop`` it
            (both counted and logged).
        batch_size: examples per micro-batch on each device.
        eval_batch_size: micro-batch size for validation and prediction (default batch_size).
        num_workers: DataLoader worker processes.
        seed: seeds the held-out split, the instruction paraphrases and the epoch order.
        tokenizer: tokenizer folder or hub name; the CLI links it to the model's path.
        predict_file: input of ``predict``: a JSONL of Alpaca records (instruction, input) or,
            with ``predict_direction``, a plain text file with one sentence to translate a line.
        predict_direction: ``src-tgt`` language codes (``en-zh``) when ``predict_file`` is text.
    """

    def __init__(
        self,
        language: str,
        english_instructions: str,
        translated_instructions: str,
        parallel: str,
        weights: Optional[dict[str, float]] = None,
        direction: Direction = "en-x",
        examples_per_epoch: Optional[int] = None,
        val_examples_per_stream: int = 64,
        max_length: int = 512,
        overflow: Overflow = "truncate",
        batch_size: int = 4,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 0,
        seed: int = 42,
        tokenizer: Optional[str] = None,
        predict_file: Optional[str] = None,
        predict_direction: Optional[str] = None,
    ):
        super().__init__()
        get_language(language)  # an unknown code fails here, listing the known ones
        weights = dict(weights) if weights is not None else {name: 1.0 for name in STREAMS}
        unknown = set(weights) - set(STREAMS)
        if unknown:
            raise ValueError(f"unknown stream(s) in weights: {sorted(unknown)}; expected {STREAMS}")
        self.save_hyperparameters()
        self.weights = [float(weights.get(name, 0.0)) for name in STREAMS]
        self.train_set: list[dict] = []
        self.val_set: list[dict] = []
        self.predict_set: list[dict] = []
        self.stream_sizes: list[int] = []
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self.hparams.tokenizer is None:
                raise ValueError("CoITDataModule needs a tokenizer (the CLI links it to the model)")
            self._tokenizer = load_tokenizer(self.hparams.tokenizer)
        return self._tokenizer

    # --- reading --------------------------------------------------------------------------
    def read_streams(self) -> dict[str, list[Example]]:
        """The three streams as examples, before templating."""
        h = self.hparams
        return {
            "english": list(read_instructions(h.english_instructions, "en")),
            "translated": list(read_instructions(h.translated_instructions, h.language)),
            "parallel": translation_examples(
                read_parallel(h.parallel, "en", h.language), "en", h.language, h.direction, h.seed
            ),
        }

    def setup(self, stage: str) -> None:
        if stage == "predict":
            self.predict_set = self._read_predict_file()
            return
        if self.train_set:
            return
        h = self.hparams
        report = EncodingReport()
        self.train_set, self.val_set, self.stream_sizes = [], [], []
        for name, examples in self.read_streams().items():
            order = list(range(len(examples)))
            random.Random(f"{h.seed}:{name}").shuffle(order)
            held_out = min(h.val_examples_per_stream, len(examples) // 10)
            encoded = [encode_example(self.tokenizer, examples[i], h.max_length, h.overflow, report) for i in order]
            encoded = [e for e in encoded if e is not None]
            self.val_set += encoded[:held_out]
            self.train_set += encoded[held_out:]
            self.stream_sizes.append(len(encoded) - held_out)
        log.info("CoIT data for %s: %s; stream sizes %s", h.language, report.summary(),
                 dict(zip(STREAMS, self.stream_sizes)))
        self.encoding_report = report

    def _read_predict_file(self) -> list[dict]:
        h = self.hparams
        if h.predict_file is None:
            raise ValueError("predict needs --data.predict_file (JSONL of instructions, or text with --data.predict_direction)")
        if h.predict_direction:
            src, _, tgt = h.predict_direction.partition("-")
            instruction = translation_prompt_instruction(src, tgt)
            return [
                {"id": i, "instruction": instruction, "input": line, "prompt": alpaca_prompt(instruction, line)}
                for i, line in enumerate(read_lines(h.predict_file))
            ]
        if Path(h.predict_file).suffix not in (".jsonl", ".json"):
            raise ValueError(
                f"{h.predict_file}: a text file needs --data.predict_direction (e.g. en-{h.language}); "
                "instructions must be .jsonl or .json"
            )
        examples = read_instructions(h.predict_file, h.language, require_output=False)
        return [
            {"id": i, "instruction": e.instruction, "input": e.input, "prompt": alpaca_prompt(e.instruction, e.input)}
            for i, e in enumerate(examples)
        ]

    # --- loaders --------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        trainer = self.trainer
        sampler = MixtureSampler(
            self.stream_sizes,
            self.weights,
            h.examples_per_epoch or sum(self.stream_sizes),
            seed=h.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )
        return DataLoader(
            self.train_set, batch_size=h.batch_size, sampler=sampler, num_workers=h.num_workers,
            collate_fn=PadCollator(self.tokenizer.pad_token_id), persistent_workers=h.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(
            self.val_set, batch_size=h.eval_batch_size or h.batch_size, shuffle=False,
            num_workers=h.num_workers, collate_fn=PadCollator(self.tokenizer.pad_token_id),
        )

    def predict_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(
            self.predict_set, batch_size=h.eval_batch_size or h.batch_size, shuffle=False,
            collate_fn=lambda records: records,
        )
