"""The evaluation callbacks in a ``validate`` run; run as a script, on 2 CPU ranks (DDP, gloo).

``python tests/ddp_callbacks.py MODEL DATA OUT [COMET]`` writes each rank's logged metrics to
``OUT.rank{r}.json``; test_eval_callbacks.py compares them with one rank.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from training_utils import quiet_trainer, tiny_datamodule

from lightning_xllama.callbacks import (
    QAEvaluation,
    RepresentationProbe,
    TranslationEvaluation,
)
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.training.module import XLlamaModule

# Odd sizes: the ranks get unequal shares and one pads its generation with a repeated batch.
TRANSLATIONS, QUESTIONS, PROBE_PAIRS = 7, 5, 6


def evaluation_callbacks(data: Path | str, comet: Optional[str] = None) -> list:
    data = Path(data)
    test = str(DataLayout(data).translation_test("syn_far"))
    return [
        TranslationEvaluation(
            directions=["en-syn_far"],
            test_prefix=test,
            max_samples=TRANSLATIONS,
            batch_size=2,
            max_new_tokens=6,
            comet_model=comet,
            comet_batch_size=4,
        ),
        QAEvaluation(
            files={"syn_far": str(DataLayout(data).qa("syn_far"))},
            prompt_style="question",
            max_samples=QUESTIONS,
            batch_size=2,
            max_new_tokens=6,
        ),
        RepresentationProbe(
            directions=["en-syn_far"], test_prefix=test, num_sentences=PROBE_PAIRS, batch_size=4
        ),
    ]


def validate_metrics(
    model: str, data: Path | str, comet: Optional[str] = None, **trainer_args
) -> tuple[dict[str, float], int]:
    """The ``val/`` metrics but the loss after ``trainer.validate`` with the callbacks, and the rank."""
    trainer = quiet_trainer(
        limit_val_batches=1, callbacks=evaluation_callbacks(data, comet), **trainer_args
    )
    trainer.validate(XLlamaModule(model), datamodule=tiny_datamodule(model, data))
    return {
        key: float(value)
        for key, value in trainer.callback_metrics.items()
        if key.startswith("val/") and key != "val/loss"
    }, trainer.global_rank


if __name__ == "__main__":
    model_path, data_path, out = sys.argv[1:4]
    comet_path = sys.argv[4] if len(sys.argv) > 4 else None
    metrics, rank = validate_metrics(model_path, data_path, comet_path, devices=2, strategy="ddp")
    Path(f"{out}.rank{rank}.json").write_text(json.dumps(metrics, indent=1))
