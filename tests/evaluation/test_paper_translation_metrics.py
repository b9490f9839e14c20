"""The paper's translation metrics: spBLEU from a local FLORES SentencePiece model, COMET and BLEURT
from local checkpoints, on the GPU when there is one, switched on in the 7B recipes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from bleurt_fixture import build_tiny_bleurt
from comet_fixture import build_tiny_comet, needs_comet
from sacrebleu.metrics import BLEU

from lightning_xllama.callbacks import TranslationEvaluation
from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.evaluation import bleurt as bleurt_module
from lightning_xllama.evaluation import translation_metrics
from lightning_xllama.evaluation.bleurt import bleurt_score, load_bleurt, metric_device
from lightning_xllama.evaluation.translation_metrics import comet_score, corpus_scores, load_comet

REFS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "The committee will publish its report next spring.",
    "猫坐在垫子上。",
]
HYPS = [
    "The cat sat on a mat.",
    "A fast brown fox jumped over the lazy dog.",
    "",
    "猫坐在席子上。",
]


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> Path:
    """A tiny SentencePiece model trained here, standing in for FLORES-101's."""
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("flores_spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join((REFS + HYPS) * 3) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "flores"),
        vocab_size=60,
        hard_vocab_limit=False,
        character_coverage=1.0,
        minloglevel=2,
    )
    return folder / "flores.model"


@pytest.fixture(scope="module")
def tiny_bleurt(tmp_path_factory) -> str:
    return str(build_tiny_bleurt(tmp_path_factory.mktemp("bleurt")))


# --- spBLEU ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target_lang", ["en", "zh"])
def test_spbleu_is_sacrebleu_bleu_on_the_sentencepiece_pieces(spm_model, target_lang):
    """spBLEU = BLEU on the texts split into pieces by the SentencePiece model, joined by spaces."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))

    def pieces(line: str) -> str:
        return " ".join(sp.encode(line, out_type=str))

    ours = corpus_scores(HYPS, REFS, target_lang, spm_model=str(spm_model))
    pretokenised = BLEU(tokenize="none").corpus_score(
        [pieces(h) for h in HYPS], [[pieces(r) for r in REFS]]
    )
    assert 0 < ours["spbleu"] < 100
    assert ours["spbleu"] == pytest.approx(pretokenised.score, abs=1e-9)
    assert "tok:flores101" in ours["spbleu_signature"]
    # BLEU keeps the per-language tokeniser beside it
    assert ours["bleu"] == corpus_scores(HYPS, REFS, target_lang)["bleu"]
    assert ("tok:zh" if target_lang == "zh" else "tok:13a") in ours["bleu_signature"]


def test_spbleu_is_absent_without_a_model():
    assert "spbleu" not in corpus_scores(HYPS, REFS, "en")


# --- BLEURT ------------------------------------------------------------------------------------
def test_bleurt_loads_offline_and_scores_reference_then_candidate(tiny_bleurt):
    bleurt = load_bleurt(tiny_bleurt)
    system, segments = bleurt_score(bleurt, HYPS, REFS, batch_size=3)
    assert len(segments) == len(HYPS) and all(math.isfinite(s) for s in segments)
    assert system == pytest.approx(sum(segments) / len(segments))
    assert len({round(s, 4) for s in segments}) == len(segments)  # the inputs matter
    # each segment as the bare port scores it, one pair at a time: reference is segment A
    model, tokenizer = bleurt.model, bleurt.tokenizer
    with torch.no_grad():
        one_by_one = [
            model(**tokenizer(r, h, return_tensors="pt")).logits[0, 0].item()
            for h, r in zip(HYPS, REFS)
        ]
        swapped = [
            model(**tokenizer(h, r, return_tensors="pt")).logits[0, 0].item()
            for h, r in zip(HYPS, REFS)
        ]
    assert segments == pytest.approx(one_by_one, abs=1e-5)  # padding and sorting change nothing
    assert segments != pytest.approx(swapped, abs=1e-5)
    for batch_size in (1, 2, 8):
        assert bleurt_score(bleurt, HYPS, REFS, batch_size)[1] == pytest.approx(segments, abs=1e-5)
    assert next(bleurt.model.parameters()).device.type == "cpu"  # back where it was
    assert bleurt.signature() == f"model:{Path(tiny_bleurt).name}|bleurt-pytorch:0.0.1|max_len:128"


def test_bleurt_truncates_pairs_longer_than_the_model(tiny_bleurt):
    bleurt = load_bleurt(tiny_bleurt)
    long = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)
    _, segments = bleurt_score(bleurt, [long, "A cat."], [long, "The cat sat."])
    assert all(math.isfinite(s) for s in segments)


def test_bleurt_checkpoint_weights_are_loaded(tiny_bleurt):
    from safetensors.torch import load_file

    saved = load_file(str(Path(tiny_bleurt) / "model.safetensors"))
    loaded = load_bleurt(tiny_bleurt).model.state_dict()
    assert saved and all(torch.equal(saved[name], loaded[name]) for name in saved)


def test_bleurt_errors_name_what_is_missing(tiny_bleurt, tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-bleurt.*lucadiliello/BLEURT-20"):
        load_bleurt(str(tmp_path / "no-such-bleurt"))
    tensorflow = tmp_path / "BLEURT-20-tf"
    tensorflow.mkdir()
    (tensorflow / "bleurt_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no config.json.*TensorFlow"):
        load_bleurt(str(tensorflow))
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((Path(tiny_bleurt) / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_bleurt(str(no_weights))
    with pytest.raises(ValueError, match="as many hypotheses as references"):
        bleurt_score(load_bleurt(tiny_bleurt), HYPS[:2], REFS)


# --- the GPU when there is one (this machine has none: the choice is checked, not the run) --------
def test_learned_metrics_choose_the_gpu_only_when_there_is_one(monkeypatch):
    assert metric_device() == torch.device("cpu") or torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert bleurt_module.metric_device() == torch.device("cuda", 3)


@pytest.mark.parametrize("cuda", [False, True])
def test_comet_predicts_on_the_gpu_when_there_is_one(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    class Recorder:
        def predict(self, samples, **options):
            self.options = options
            return type("Prediction", (), {"system_score": 0.5, "scores": [0.5] * len(samples)})

    model = Recorder()
    comet_score(model, ["a", "b"], ["a", "b"], ["a", "b"], batch_size=64)
    assert model.options["batch_size"] == 64 and model.options["num_workers"] == 0
    assert (model.options["gpus"], model.options["devices"]) == ((1, [0]) if cuda else (0, None))
    comet_score(model, ["a"], ["a"], ["a"], gpus=0)
    assert model.options["gpus"] == 0
    with pytest.raises(ValueError, match="gpus must be 0"):
        comet_score(model, ["a"], ["a"], ["a"], gpus=2)


# --- the callback ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    from transformers import AutoModelForCausalLM

    from lightning_xllama.runtime.hf_loading import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model), load_tokenizer(tiny_model)


@needs_comet
def test_callback_logs_spbleu_comet_and_bleurt_with_signatures(
    tiny_data, model_and_tokenizer, spm_model, tiny_bleurt, tmp_path
):
    comet = str(build_tiny_comet(tmp_path / "comet").parent.parent)
    callback = TranslationEvaluation(
        ["en-syn_far"],
        str(DataLayout(tiny_data).translation_test("syn_far")),
        max_samples=3,
        max_new_tokens=4,
        spm_model=str(spm_model),
        comet_model=comet,
        comet_batch_size=2,
        bleurt_model=tiny_bleurt,
        bleurt_batch_size=2,
    )
    callback.prepare()
    result = callback.run(*model_and_tokenizer)
    records = result.samples["en-syn_far"]
    hyps, refs = [r["hypothesis"] for r in records], [r["reference"] for r in records]
    srcs = [r["source"] for r in records]
    key = "translation/en-syn_far"
    scores = corpus_scores(hyps, refs, "syn_far", spm_model=str(spm_model))
    assert result.metrics[f"{key}/spbleu"] == pytest.approx(scores["spbleu"])
    assert result.metrics[f"{key}/bleu"] == pytest.approx(scores["bleu"])
    comet_system, comet_segments = comet_score(load_comet(comet), srcs, hyps, refs)
    assert result.metrics[f"{key}/comet"] == pytest.approx(comet_system)
    bleurt_system, bleurt_segments = bleurt_score(load_bleurt(tiny_bleurt), hyps, refs)
    assert result.metrics[f"{key}/bleurt"] == pytest.approx(bleurt_system, abs=1e-5)
    assert [r["bleurt"] for r in records] == pytest.approx(bleurt_segments, abs=1e-4)
    assert [r["comet"] for r in records] == pytest.approx(comet_segments, abs=1e-4)

    details = result.details["en-syn_far"]
    assert "tok:flores101" in details["spbleu_signature"]
    assert details["comet_signature"] == "model:comet|unbabel-comet:2.2.7"
    assert details["bleurt_signature"].startswith(f"model:{Path(tiny_bleurt).name}|bleurt-pytorch")
    callback.write_outputs(result, tmp_path / "out", "step0")
    written = json.loads((tmp_path / "out" / "signatures.json").read_text())
    assert written["en-syn_far"]["bleurt_model"] == tiny_bleurt
    notes = "\n".join(callback.report_notes(result))
    assert "spBLEU `" in notes and "COMET `" in notes and "BLEURT `" in notes


@pytest.mark.parametrize("setting", ["spm_model", "comet_model", "bleurt_model"])
def test_a_missing_metric_file_fails_at_setup_naming_the_setting(tmp_path, setting):
    (tmp_path / "test.en").write_text("Hello.\n")
    (tmp_path / "test.zh").write_text("你好。\n")
    callback = TranslationEvaluation(
        ["en-zh"], str(tmp_path / "test"), **{setting: "/path/to/nothing-here"}
    )
    with pytest.raises(
        FileNotFoundError, match=rf"{setting}: '/path/to/nothing-here'.*placeholder"
    ):
        callback.prepare()


def test_batch_sizes_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="bleurt_batch_size must be at least 1, got 0"):
        TranslationEvaluation(["en-zh"], str(tmp_path / "test"), bleurt_batch_size=0)


# --- the recipes -------------------------------------------------------------------------------
def test_comet_signature_names_the_model_folder(tmp_path):
    (tmp_path / "wmt22-comet-da" / "checkpoints").mkdir(parents=True)
    checkpoint = tmp_path / "wmt22-comet-da" / "checkpoints" / "model.ckpt"
    checkpoint.write_text("")
    for path in (checkpoint, checkpoint.parent.parent):
        assert translation_metrics.comet_signature(str(path)).startswith("model:wmt22-comet-da|")
