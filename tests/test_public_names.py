"""The names configs, scripts and the README use keep importing after the package's layout
changed: the module, the data modules, the callbacks and the strategies under their public
paths, and each is the class the package builds."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "lightning_xllama.model.XLlamaModule": "lightning_xllama.training.module.XLlamaModule",
    "lightning_xllama.data.CoITDataModule": "lightning_xllama.data.datamodule.CoITDataModule",
    "lightning_xllama.data.MuITDataModule": "lightning_xllama.data.datamodule.MuITDataModule",
    "lightning_xllama.strategies.DecoderFSDPStrategy": (
        "lightning_xllama.training.strategies.fsdp.DecoderFSDPStrategy"
    ),
    "lightning_xllama.strategies.DecoderFSDP2Strategy": (
        "lightning_xllama.training.strategies.fsdp2.DecoderFSDP2Strategy"
    ),
    "lightning_xllama.callbacks.TranslationEvaluation": (
        "lightning_xllama.callbacks.translation.TranslationEvaluation"
    ),
    "lightning_xllama.callbacks.QAEvaluation": "lightning_xllama.callbacks.qa.QAEvaluation",
    "lightning_xllama.callbacks.RepresentationProbe": (
        "lightning_xllama.callbacks.probe.RepresentationProbe"
    ),
    "lightning_xllama.callbacks.JudgeEvaluation": "lightning_xllama.callbacks.judge.JudgeEvaluation",
    "lightning_xllama.callbacks.ResumableCheckpoint": (
        "lightning_xllama.callbacks.checkpoint.ResumableCheckpoint"
    ),
    "lightning_xllama.callbacks.HFExport": "lightning_xllama.callbacks.export.HFExport",
    "lightning_xllama.callbacks.MetricsSummary": "lightning_xllama.callbacks.summary.MetricsSummary",
}


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("public", sorted(PUBLIC))
def test_public_name_is_the_class_the_package_builds(public):
    assert _resolve(public) is _resolve(PUBLIC[public])


def test_the_strategies_shim_exports_all_of_its_package():
    shim = importlib.import_module("lightning_xllama.strategies")
    package = importlib.import_module("lightning_xllama.training.strategies")
    assert set(shim.__all__) == set(package.__all__)
    assert all(getattr(shim, name) is getattr(package, name) for name in package.__all__)
