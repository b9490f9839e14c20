"""The dtypes a strategy's settings name, and their torch types."""

from __future__ import annotations

from typing import Literal

import torch

DType = Literal["bf16", "fp16", "fp32"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
