import json
from pathlib import Path

import pytest

from lightning_xllama.evaluation.qa_metrics import (
    QAScores,
    contains,
    exact_match,
    extract_answer,
    f1,
    normalize_answer,
    normalize_mlqa,
    normalize_squad,
)

XQUAD = Path("/work/shared/data/xquad")


@pytest.mark.parametrize(
    "lang, text, expected",
    [
        ("en", "The Cat and a dog, an owl.", "cat and dog owl"),
        ("en", "theatre", "theatre"),  # articles only as whole words
        ("es", "¿Dónde están los gatos y unas casas?", "dónde están gatos y casas"),
        ("de", "Der Hund, die Katze und das Haus.", "hund katze und haus"),
        ("de", "Dieser Hund", "dieser hund"),
        ("vi", "Chiếc xe của tôi là những cái đẹp", "xe tôi đẹp"),
        ("hi", "यह एक किताब है।", "यह एक किताब है"),  # no articles; "।" is Unicode punctuation
        ("ar", "الكتاب، والقلم", "كتاب و قلم"),  # "ال" replaced everywhere, "،" dropped
        ("ar", "مالك", "م ك"),  # even inside a word, as the official script does
        ("zh", "北京是首都。", "北 京 是 首 都"),
        ("zh", "我用Python 3写代码", "我 用 python 3 写 代 码"),  # Latin runs stay whole words
        ("zh", "《红楼梦》", "红 楼 梦"),
    ],
)
def test_mlqa_normalisation_per_language(lang, text, expected):
    assert normalize_mlqa(text, lang) == expected


def test_mlqa_removes_unicode_punctuation_squad_keeps_it():
    assert normalize_mlqa("«Hola», dijo.", "es") == "hola dijo"
    assert normalize_squad("«Hola», dijo.") == "«hola» dijo"
    assert exact_match("¿Madrid?", "Madrid", "es", "mlqa") == 1.0
    assert exact_match("¿Madrid?", "Madrid", "es", "squad") == 0.0


def test_squad_removes_english_articles_only():
    assert normalize_squad("The house of el rey") == "house of el rey"
    assert normalize_answer("el rey", "es", "mlqa") == "rey"


def test_unknown_rules_are_refused():
    with pytest.raises(ValueError, match="mlqa"):
        normalize_answer("x", "en", "xquad")
    with pytest.raises(ValueError, match="squad"):
        QAScores(rules="bleu", lang="en")


def test_exact_match_and_f1_by_hand():
    assert exact_match("The Eiffel Tower!", "eiffel tower", "en") == 1.0
    assert exact_match("Eiffel", "eiffel tower", "en") == 0.0
    # prediction {eiffel}, gold {eiffel, tower}: P=1, R=1/2, F1=2/3
    assert f1("Eiffel", "the Eiffel Tower", "en") == pytest.approx(2 / 3)
    # bags, not sets: prediction "paris paris" vs gold "paris": common 1, P=1/2, R=1, F1=2/3
    assert f1("Paris Paris", "Paris", "en") == pytest.approx(2 / 3)
    assert f1("London", "Paris", "en") == 0.0


def test_zh_f1_counts_characters():
    # prediction 北 京 市 vs gold 北 京: common 2, P=2/3, R=1, F1=0.8
    assert f1("北京市", "北京", "zh", "mlqa") == pytest.approx(0.8)
    # SQuAD rules keep the whole run as one token: no partial credit
    assert f1("北京市", "北京", "zh", "squad") == 0.0


def test_max_over_gold_answers():
    golds = ["in the year 1889", "1889", "the nineteenth century"]
    assert exact_match("1889", golds, "en") == 1.0
    # against "in the year 1889" -> tokens {in, year, 1889}: P=1, R=1/3 -> 0.5; "1889" gives 1.0
    assert f1("1889.", golds, "en") == 1.0
    assert f1("year 1889", golds, "en") == pytest.approx(0.8)  # P=1, R=2/3
    assert contains("It opened in 1889.", golds, "en") == 1.0


def test_contains_score():
    assert contains("The answer is the Eiffel Tower.", "Eiffel Tower", "en") == 1.0
    assert contains("The answer is the Tower.", "Eiffel Tower", "en") == 0.0
    assert contains("It had 1000 visitors", "10", "en") == 0.0  # whole tokens only
    assert contains("答案是北京。", "北京", "zh") == 1.0
    assert contains("anything", "the", "en") == 0.0  # a gold that normalises to nothing


def test_empty_prediction_scores_zero():
    assert exact_match("", "Paris", "en") == 0.0
    assert f1("", "Paris", "en") == 0.0
    assert contains("", "Paris", "en") == 0.0
    assert f1("   ", "北京", "zh") == 0.0


def test_no_gold_answer_is_an_error():
    with pytest.raises(ValueError, match="gold"):
        f1("Paris", [], "en")


@pytest.mark.parametrize(
    "generated, prompt, expected",
    [
        ("Paris", None, "Paris"),
        ("  Paris  \nQuestion: what else?", None, "Paris"),
        ("\n\n  Paris\nmore", None, "Paris"),
        ("Q: capital?\nA: Paris\nnext", "Q: capital?\nA:", "Paris"),
        ("The prompt is not echoed", "Q: capital?", "The prompt is not echoed"),
        ("", None, ""),
        (" \n \n", "x", ""),
    ],
)
def test_extract_answer(generated, prompt, expected):
    assert extract_answer(generated, prompt) == expected


def test_qa_scores_accumulates_over_updates():
    metric = QAScores(rules="mlqa", lang="en")
    metric.update(
        ["Paris", "the Eiffel Tower is tall"], [["Paris", "City of Paris"], "Eiffel Tower"]
    )
    metric.update([""], ["London"])
    scores = metric.compute()
    assert scores["count"].item() == 3
    assert scores["exact_match"].item() == pytest.approx(100 / 3)
    # F1: 1, then tokens {eiffel, tower, is, tall} vs {eiffel, tower}: P=1/2, R=1 -> 2/3, then 0
    assert scores["f1"].item() == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert scores["contains"].item() == pytest.approx(200 / 3)
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert metric.compute()["f1"].item() == 0.0


def test_qa_scores_state_sums_across_ranks():
    """The states are plain sums, so DDP's sum-reduction merges shares of the data exactly."""
    whole, first, second = (QAScores(rules="squad", lang="en") for _ in range(3))
    predictions, golds = ["a", "b c", "d"], ["a", "b", "e"]
    whole.update(predictions, golds)
    first.update(predictions[:2], golds[:2])
    second.update(predictions[2:], golds[2:])
    first.merge_state(second)
    assert {k: v.item() for k, v in first.compute().items()} == {
        k: v.item() for k, v in whole.compute().items()
    }


def test_qa_scores_rejects_mismatched_batch():
    with pytest.raises(ValueError, match="2 predictions and 1 gold"):
        QAScores().update(["a", "b"], ["a"])


@pytest.mark.skipif(not XQUAD.is_dir(), reason="XQuAD files not present")
@pytest.mark.parametrize("lang, rules", [("en", "squad"), ("zh", "mlqa"), ("zh", "squad")])
def test_xquad_gold_answers_score_100_against_themselves(lang, rules):
    data = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
    answers = [
        [a["text"] for a in qa["answers"]]
        for article in data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    metric = QAScores(rules=rules, lang=lang)
    metric.update([golds[0] for golds in answers], answers)
    scores = metric.compute()
    assert scores["count"].item() == 1190
    assert scores["exact_match"].item() == pytest.approx(100.0)
    assert scores["f1"].item() == pytest.approx(100.0)
