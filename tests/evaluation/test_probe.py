"""The representation probe: pooling over real tokens, per-layer alignment, the callback's outputs."""

from __future__ import annotations

import pytest
import torch

from lightning_xllama.callbacks import RepresentationProbe
from lightning_xllama.evaluation.probe import alignment, plot_alignment, pooled_hidden_states, probe

SENTENCES = [
    "the dog sees a cat.",
    "a tall teacher holds the heavy book near the old river.",
    "the king opens a door.",
]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    from transformers import AutoModelForCausalLM

    from lightning_xllama.runtime.hf_loading import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model), load_tokenizer(tiny_model)


def test_pooling_averages_the_sentence_tokens_only(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    batched = pooled_hidden_states(model, tokenizer, SENTENCES, batch_size=3)
    assert batched.shape == (model.config.num_hidden_layers + 1, 3, model.config.hidden_size)
    for index, sentence in enumerate(SENTENCES):
        ids = [tokenizer.bos_token_id] + tokenizer(sentence, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            states = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        expected = torch.stack(
            [layer[0, 1:].mean(dim=0) for layer in states]
        )  # without BOS, no padding
        torch.testing.assert_close(batched[:, index], expected, atol=1e-5, rtol=1e-4)
    # the shorter sentences were padded in the batch: padding changed nothing
    torch.testing.assert_close(
        pooled_hidden_states(model, tokenizer, SENTENCES[:1]), batched[:, :1], atol=1e-5, rtol=1e-4
    )


def test_identical_languages_align_perfectly(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    result = probe(model, tokenizer, [(s, s) for s in SENTENCES], batch_size=2)
    assert (
        result.retrieval_src_to_tgt
        == result.retrieval_tgt_to_src
        == [1.0] * (model.config.num_hidden_layers + 1)
    )
    assert result.cosine_parallel == pytest.approx([1.0] * len(result.cosine_parallel))
    assert all(gap > 0 for gap in result.cosine_gap)


def test_centring_removes_what_every_sentence_of_a_language_shares():
    """A large direction common to all sentences makes every pair look alike (raw gap near 0);
    centred, the pairs stand out as they do without it."""
    generator = torch.Generator().manual_seed(0)
    meaning = torch.randn(1, 6, 8, generator=generator)
    noise = 0.1 * torch.randn(2, 1, 6, 8, generator=generator)
    source, target = meaning + noise[0], meaning + noise[1]
    offset = torch.zeros(1, 1, 8)
    offset[..., 0] = 100.0
    plain = alignment(source, target)
    shifted = alignment(source + offset, target - offset)
    assert abs(shifted.cosine_gap[0]) < 0.01 < plain.cosine_gap[0]
    assert shifted.centered_cosine_gap == pytest.approx(plain.centered_cosine_gap)
    assert shifted.centered_retrieval_src_to_tgt == [1.0]
    assert shifted.centered_retrieval_tgt_to_src == [1.0]


def test_alignment_on_known_vectors():
    source = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    target = torch.tensor([[[1.0, 2.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])  # layer 1: swapped
    result = alignment(source, target)
    a, b = 5**-0.5, 2 * 5**-0.5  # cosines of target 0 with source 0 and source 1
    assert result.cosine_parallel == pytest.approx([(a + 1) / 2, 0.0])
    assert result.cosine_nonparallel == pytest.approx([(0 + b) / 2, 1.0])
    assert result.cosine_gap == pytest.approx([(a + 1 - b) / 2, -1.0])
    assert result.retrieval_src_to_tgt == [1.0, 0.0]
    assert result.retrieval_tgt_to_src == [
        0.5,
        0.0,
    ]  # target 0 is nearer to source 1 than to source 0
    assert result.peak_layer == 0
    with pytest.raises(ValueError, match="at least 2 pairs"):
        alignment(source[:, :1], target[:, :1])
    with pytest.raises(ValueError, match="one shape"):
        alignment(source, target[:1])


def test_probe_callback_logs_curves_and_saves_a_plot(tiny_model, tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    (tmp_path / "test.en").write_text("\n".join(SENTENCES) + "\n")
    (tmp_path / "test.syn_near").write_text(
        "\n".join(SENTENCES) + "\n"
    )  # "translations" identical to the source
    callback = RepresentationProbe(
        directions=["en-syn_near"], test_prefix=str(tmp_path / "test"), num_sentences=2
    )
    callback.prepare()
    assert callback.pairs["en-syn_near"] == [
        (SENTENCES[0], SENTENCES[0]),
        (SENTENCES[1], SENTENCES[1]),
    ]
    result = callback.run(model, tokenizer)
    layers = model.config.num_hidden_layers + 1
    for layer in range(layers):
        assert result.metrics[f"probe/en-syn_near/layer{layer:02d}/retrieval_src_to_tgt"] == 1.0
    assert 0 <= result.metrics["probe/en-syn_near/peak_layer"] < layers
    files = callback.write_outputs(result, tmp_path / "out", "step5")
    assert files["en-syn_near"] == tmp_path / "out" / "en-syn_near-step5.png"
    assert files["en-syn_near"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = callback.markdown(result, files, tmp_path)
    assert "| layer | cosine_parallel" in report and "](out/en-syn_near-step5.png)" in report
    assert report.count("\n| ") == layers + 2  # header, separator, a row per layer


def test_plot_writes_an_image(tmp_path):
    result = alignment(torch.randn(3, 4, 8), torch.randn(3, 4, 8))
    path = plot_alignment(result, tmp_path / "deep" / "curve.png", "random")
    assert path.stat().st_size > 1000


def test_probe_needs_two_pairs(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        RepresentationProbe(directions=["en-zh"], test_prefix="x", num_sentences=1)
    (tmp_path / "one.en").write_text("a b.\n")
    (tmp_path / "one.syn_far").write_text("c d.\n")
    with pytest.raises(ValueError, match="at least 2 sentence pairs"):
        RepresentationProbe(directions=["en-syn_far"], test_prefix=str(tmp_path / "one")).prepare()
