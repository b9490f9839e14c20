"""The off-target rate catches any language other than the target, not only English."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from lightning_xllama import languages
from lightning_xllama.data.eval_sets import read_flores
from lightning_xllama.evaluation.language_id import (
    LangidIdentifier,
    language_scripts,
    off_target_rate,
    on_target,
    script_counts,
    written_in,
)
from lightning_xllama.evaluation.off_target import OffTargetRate, build_identifier, real_candidates
from lightning_xllama.languages import Language, register

SHARED = Path("/work/shared/data")

RUSSIAN = [
    "Комитет опубликует свой окончательный доклад о новой железной дороге следующей весной.",
    "Учёные говорят, что это открытие может изменить наше понимание болезни.",
    "Москва является столицей России и крупнейшим городом страны.",
]
CHINESE = [
    "委员会将于明年春天发布关于新铁路的最终报告。",
    "科学家表示，这一发现可能会改变我们对这种疾病的认识。",
    "我们使用 Python 和 PyTorch 训练模型。",  # English words in a Chinese sentence
]
GERMAN = "Der Ausschuss wird seinen Abschlussbericht im nächsten Frühjahr veröffentlichen."
FRENCH_WITH_NAMES = [
    "Le président Xi Jinping (习近平) a rencontré Vladimir Poutine (Владимир Путин) à Moscou.",
    "Selon Ehud Ur, professeur à l'université Dalhousie, l'étude en est encore à ses débuts.",
]


class Always:
    """An identifier that names one language whatever the text (a badly restricted one)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def identify(self, text: str) -> Optional[str]:
        return self.code if text.strip() else None


@pytest.fixture(scope="module")
def en_zh():
    return build_identifier(["en", "zh"])


def test_russian_output_for_a_chinese_target_is_off_target(en_zh):
    assert [en_zh.identify(text) for text in RUSSIAN] == ["ru"] * 3  # named, not called zh
    assert off_target_rate(RUSSIAN, "zh", en_zh)["off_target"] == 3
    # the pair alone cannot name Russian; the script check still catches every output
    assert off_target_rate(RUSSIAN, "zh", LangidIdentifier(["en", "zh"]))["off_target"] == 3
    assert off_target_rate(RUSSIAN, "zh", Always("zh"))["off_target"] == 3
    assert off_target_rate(["Hello, how are you today?"], "zh", Always("zh"))["off_target"] == 1


def test_correct_chinese_output_stays_on_target(en_zh):
    result = off_target_rate(CHINESE, "zh", en_zh)
    assert result == {"total": 3, "on_target": 3, "off_target": 0, "undetermined": 0, "rate": 0.0}


def test_german_output_for_a_french_target_is_off_target():
    en_fr = build_identifier(["en", "fr"])
    assert en_fr.identify(GERMAN) == "de"
    result = off_target_rate([GERMAN, *FRENCH_WITH_NAMES], "fr", en_fr)
    assert (result["on_target"], result["off_target"]) == (2, 1)


def test_a_latin_target_with_a_few_foreign_names_stays_on_target():
    # py3langid may call the first sentence Tajik (its Cyrillic names); the letters overrule it
    en_fr = build_identifier(["en", "fr"])
    assert off_target_rate(FRENCH_WITH_NAMES, "fr", en_fr)["on_target"] == 2
    assert off_target_rate(FRENCH_WITH_NAMES, "fr", Always("fr"))["on_target"] == 2
    # a Chinese answer to a French request is off target even if called French
    assert off_target_rate(CHINESE[:1], "fr", Always("fr"))["off_target"] == 1


def test_too_short_or_empty_outputs_stay_undetermined(en_zh):
    result = off_target_rate(["", "  ", "Да", "42 + 17", "ok"], "zh", en_zh)
    assert result["undetermined"] == 5 and result["rate"] == 0.0


def test_the_metric_and_each_verdict_count_third_languages(en_zh):
    outputs = [*RUSSIAN, CHINESE[0], ""]
    metric = OffTargetRate(en_zh, "zh")
    metric.update(outputs)
    assert metric.compute() == {"off_target": 60.0, "undetermined": 20.0}
    assert [on_target(output, "zh", en_zh) for output in outputs] == [False] * 3 + [True, None]


def test_candidates_are_every_registered_language_py3langid_knows():
    candidates = real_candidates(["zh", "en"])
    assert candidates[:2] == ["zh", "en"]  # the evaluated languages first
    assert {"ru", "de", "fr", "ja", "ko", "th", "ro", "nb", "ff"} <= set(candidates)
    assert not {"syn_far", "syn_near", "ast", "kea", "wo"} & set(candidates)  # unknown to it
    assert (
        build_identifier(["en", "nb"]).identify(
            "Komiteen vil publisere sin endelige rapport om den nye jernbanen neste vår."
        )
        == "nb"
    )  # py3langid's "no"
    assert (
        build_identifier(["en", "zh_Hant"]).identify("委員會將於明年春天發布最終報告。")
        == "zh_Hant"
    )
    with pytest.raises(ValueError, match="cannot tell 'zh' from 'zh_Hant'"):
        build_identifier(["en", "zh", "zh_Hant"])
    assert build_identifier(["en", "zh"], ["en", "zh"]).candidates == ["en", "zh"]  # as given


@pytest.mark.parametrize(
    "text, counts",
    [
        ("我们使用 Python 和 PyTorch", {"Hani": 5, "Latn": 2}),
        ("日本語のテキスト", {"Hani": 3, "Hira": 1, "Kana": 4}),
        ("हिन्दी भाषा", {"Deva": 2}),  # vowel signs do not split a word
        ("ภาษาไทย ดี", {"Thai": 2}),
        ("한국어 텍스트", {"Hang": 2}),
        ("Ｐｙｔｈｏｎ ok", {"Latn": 2}),  # full-width Latin
        ("Привет, world!", {"Cyrl": 1, "Latn": 1}),
        ("123 !?", {}),
    ],
)
def test_script_counts(text, counts):
    assert dict(script_counts(text)) == counts


def test_each_language_is_checked_against_its_registered_script():
    assert written_in(RUSSIAN[0], "ru") and written_in(RUSSIAN[0], "uk")  # script alone: no tell
    assert written_in(CHINESE[0], "zh") and written_in(CHINESE[0], "ja")
    assert written_in(CHINESE[0], "ko") is False and written_in(GERMAN, "el") is False
    assert written_in("Мок дал сун", "syn_far") and written_in("Мок дал сун", "syn_near") is False
    assert written_in("42", "zh") is None  # no letters
    assert language_scripts("ja") == {"Hani", "Hira", "Kana"}
    assert language_scripts("xx") is None  # unregistered


def test_a_script_the_check_does_not_know_leaves_it_to_the_identifier(monkeypatch):
    monkeypatch.setattr(languages, "_REGISTRY", dict(languages._REGISTRY))
    register(Language("tzm", "Central Atlas Tamazight", "Tfng"))
    assert language_scripts("tzm") is None
    assert off_target_rate(["ⵜⴰⵎⴰⵣⵉⵖⵜ ⵜⴰⵏⴰⵡⴰⵢⵜ"], "tzm", Always("tzm"))["on_target"] == 1
    assert off_target_rate([GERMAN], "tzm", Always("de"))["off_target"] == 1


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared real data is not on this machine")
def test_real_flores_references(en_zh):
    pairs = read_flores(SHARED / "flores101-devtest", "en", "zh")
    english, chinese = [e for e, _ in pairs], [z for _, z in pairs]
    assert off_target_rate(chinese, "zh", en_zh)["off_target"] <= 1  # of 1,012 correct ones
    assert off_target_rate(english, "en", en_zh)["off_target"] == 0
    assert off_target_rate(english, "zh", en_zh)["on_target"] == 0
    assert off_target_rate(chinese, "en", LangidIdentifier(["en", "zh"]))["on_target"] == 0
