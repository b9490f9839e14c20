"""Out-of-range training arguments are refused when the module is built, naming the argument,
the value and the range: a negative learning rate must not get as far as the optimizer (torch's
message there names neither the key nor the config), nor quietly train."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_cli
from transformers import LlamaConfig

from lightning_xllama.training.module import XLlamaModule


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> str:
    """A folder that passes the model-path check; the module builds no weights in __init__."""
    folder = tmp_path_factory.mktemp("model")
    LlamaConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("learning_rate", -1.0, "> 0"),
        ("learning_rate", 0.0, "> 0"),
        ("learning_rate", math.nan, "> 0"),
        ("weight_decay", -0.1, ">= 0"),
        ("warmup_ratio", 1.0, r"in \[0, 1\)"),
        ("warmup_ratio", -0.03, r"in \[0, 1\)"),
        ("min_lr_ratio", 1.5, r"in \[0, 1\]"),
        ("min_lr_ratio", -0.1, r"in \[0, 1\]"),
        ("adam_beta1", 1.0, r"in \[0, 1\)"),
        ("adam_beta2", -0.5, r"in \[0, 1\)"),
        ("adam_eps", 0.0, "> 0"),
        ("loss_chunk_size", 0, r"a whole number >= 1 \(positions\) or None"),
        ("loss_chunk_size", 2.5, r"a whole number >= 1 \(positions\) or None"),
        ("max_new_tokens", 0, "a whole number >= 1"),
        ("num_beams", 0, "a whole number >= 1"),
        ("num_beams", True, "a whole number >= 1"),
    ],
)
def test_out_of_range_argument_names_key_value_and_range(model_folder, name, value, expected):
    with pytest.raises(
        ValueError, match=rf"XLlamaModule: {name} must be {expected}, got {value!r}"
    ):
        XLlamaModule(model_folder, **{name: value})


def test_edges_of_the_ranges_and_the_defaults_are_accepted(model_folder):
    XLlamaModule(model_folder)
    XLlamaModule(
        model_folder,
        learning_rate=1e-9,
        weight_decay=0.0,
        warmup_ratio=0.0,
        min_lr_ratio=1.0,
        adam_beta1=0.0,
        adam_eps=1e-12,
        loss_chunk_size=None,
        max_new_tokens=np.int64(1),
        num_beams=1,
    )


def test_cli_refuses_a_negative_learning_rate_before_any_work(demo_root):
    result = run_cli(
        ["fit", "--config", "configs/demo.yaml", "--model.init_args.learning_rate", "-1"],
        cwd=demo_root,
    )
    assert result.returncode != 0
    assert "XLlamaModule: learning_rate must be > 0, got -1.0" in result.stderr
    assert "Invalid learning rate" not in result.stderr  # not torch's, from configure_optimizers
    assert "indexing" not in result.stderr and "Epoch" not in result.stderr  # nothing read
