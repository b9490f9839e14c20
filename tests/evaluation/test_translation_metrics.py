import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from comet_fixture import build_tiny_comet, needs_comet

from lightning_xllama.evaluation.translation_metrics import comet_score, corpus_scores, load_comet

EN_REFS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "The committee will publish its report next spring.",
    "It's 5 o'clock, and the train hasn't arrived yet!",
]
EN_HYPS = [
    "The cat sat on a mat.",
    "A fast brown fox jumped over the lazy dog.",
    "The committee publishes the report in spring.",
    "It is 5 o'clock and the train has not arrived yet.",
]
ZH_REFS = ["猫坐在垫子上。", "委员会将于明年春天发布报告。", "火车五点还没有到。"]
ZH_HYPS = ["猫坐在席子上。", "委员会明年春天发布它的报告。", "五点钟火车还没到。"]


def _sacrebleu_cli(
    tmp_path: Path, hyps: list[str], refs: list[str], *options: str, env=None
) -> dict:
    """BLEU and chrF++ as sacreBLEU's command line reports them on the same lines, written to files."""
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "sacrebleu",
        str(tmp_path / "ref.txt"),
        "-i",
        str(tmp_path / "hyp.txt"),
    ]
    command += ["-m", "bleu", "chrf", "--chrf-word-order", "2", "-w", "6", *options]
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    bleu, chrf = json.loads(output)
    return {"bleu": bleu, "chrf_pp": chrf}


@pytest.mark.parametrize(
    "lang, hyps, refs, tokenizer", [("en", EN_HYPS, EN_REFS, "13a"), ("zh", ZH_HYPS, ZH_REFS, "zh")]
)
def test_scores_match_sacrebleu_command_line(tmp_path, lang, hyps, refs, tokenizer):
    ours = corpus_scores(hyps, refs, target_lang=lang)
    cli = _sacrebleu_cli(tmp_path, hyps, refs, "-tok", tokenizer)
    assert 0 < ours["bleu"] < 100
    assert ours["bleu"] == pytest.approx(cli["bleu"]["score"], abs=1e-5)
    assert ours["chrf_pp"] == pytest.approx(cli["chrf_pp"]["score"], abs=1e-5)
    assert ours["bleu_signature"] == cli["bleu"]["signature"]
    assert ours["chrf_pp_signature"] == cli["chrf_pp"]["signature"]
    assert f"tok:{tokenizer}" in ours["bleu_signature"]
    assert "nw:2" in ours["chrf_pp_signature"]


def test_local_spm_model_is_used_without_download(tmp_path):
    """A local SentencePiece file gives spBLEU as sacreBLEU's flores101 tokeniser does with that file,
    beside the per-language BLEU."""
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join((EN_REFS + EN_HYPS) * 3) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "flores"), vocab_size=40, minloglevel=2
    )
    ours = corpus_scores(EN_HYPS, EN_REFS, "en", spm_model=str(tmp_path / "flores.model"))
    assert "tok:flores101" in ours["spbleu_signature"] and "tok:13a" in ours["bleu_signature"]
    assert ours["bleu"] == corpus_scores(EN_HYPS, EN_REFS, "en")["bleu"]

    # sacreBLEU looks for its model under $SACREBLEU/models and downloads only when it is absent
    cache = tmp_path / "sacrebleu_home"
    (cache / "models").mkdir(parents=True)
    shutil.copy(tmp_path / "flores.model", cache / "models" / "sacrebleu_tokenizer_spm.model")
    cli = _sacrebleu_cli(
        tmp_path, EN_HYPS, EN_REFS, "-tok", "flores101", env={**os.environ, "SACREBLEU": str(cache)}
    )
    assert ours["spbleu"] == pytest.approx(cli["bleu"]["score"], abs=1e-5)
    assert ours["spbleu_signature"] == cli["bleu"]["signature"]
    assert ours["spbleu"] != pytest.approx(ours["bleu"])

    flores200 = corpus_scores(
        EN_HYPS, EN_REFS, "en", spm_model=str(tmp_path / "flores.model"), spm_name="flores200"
    )
    assert "tok:flores200" in flores200["spbleu_signature"]
    with pytest.raises(FileNotFoundError, match="missing.model"):
        corpus_scores(EN_HYPS, EN_REFS, "en", spm_model=str(tmp_path / "missing.model"))


def test_empty_hypotheses_score_zero():
    all_empty = corpus_scores(["", "", "", ""], EN_REFS, "en")
    assert all_empty["bleu"] == 0.0 and all_empty["chrf_pp"] == 0.0
    one_empty = corpus_scores(EN_HYPS[:3] + [""], EN_REFS, "en")
    assert 0 < one_empty["bleu"] < corpus_scores(EN_HYPS, EN_REFS, "en")["bleu"]
    assert corpus_scores(["", "", ""], ZH_REFS, "zh")["bleu"] == 0.0


def test_length_mismatch_and_no_segments_are_errors():
    with pytest.raises(ValueError, match="3 hypotheses and 4 references"):
        corpus_scores(EN_HYPS[:3], EN_REFS, "en")
    with pytest.raises(ValueError, match="at least one segment"):
        corpus_scores([], [], "en")


@pytest.fixture(scope="module")
def tiny_comet(tmp_path_factory) -> Path:
    return build_tiny_comet(tmp_path_factory.mktemp("comet"))


@needs_comet
def test_comet_scores_offline_through_load_from_checkpoint(tiny_comet):
    model = load_comet(str(tiny_comet))
    sources = ["The cat sat on the mat.", "A quick brown fox.", "Language models learn from text."]
    hypotheses = ["Die Katze sitzt auf der Matte.", "", "猫坐在垫子上。"]
    references = ["Die Katze saß auf der Matte.", "Ein schneller brauner Fuchs.", "猫坐在垫子上。"]
    system, segments = comet_score(model, sources, hypotheses, references, batch_size=2)
    assert len(segments) == 3
    assert all(math.isfinite(score) for score in segments)
    assert system == pytest.approx(sum(segments) / len(segments))
    # segments come back in input order (comet sorts by length internally)
    _, reversed_segments = comet_score(model, sources[::-1], hypotheses[::-1], references[::-1])
    assert reversed_segments == pytest.approx(segments[::-1])


@needs_comet
def test_comet_checkpoint_weights_are_loaded(tiny_comet):
    model = load_comet(str(tiny_comet.parent.parent))  # the model folder works too
    saved = torch.load(tiny_comet, weights_only=True)["state_dict"]
    loaded = model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[name], loaded[name]) for name in saved)


@needs_comet
def test_comet_missing_checkpoint_fails_naming_the_path(tmp_path):
    missing = tmp_path / "wmt22-comet-da"
    with pytest.raises(FileNotFoundError, match="wmt22-comet-da"):
        load_comet(str(missing))


@needs_comet
def test_comet_missing_encoder_fails_naming_it(tiny_comet, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(tiny_comet, tmp_path / "checkpoints" / "model.ckpt")
    hparams = yaml.safe_load((tiny_comet.parent.parent / "hparams.yaml").read_text())
    hparams["pretrained_model"] = str(tmp_path / "no-such-encoder")
    (tmp_path / "hparams.yaml").write_text(yaml.safe_dump(hparams))
    with pytest.raises(FileNotFoundError, match="no-such-encoder"):
        load_comet(str(tmp_path))


@needs_comet
def test_comet_length_mismatch_is_an_error(tiny_comet):
    model = load_comet(str(tiny_comet))
    with pytest.raises(ValueError, match="2, 1 and 2"):
        comet_score(model, ["a", "b"], ["a"], ["a", "b"])
