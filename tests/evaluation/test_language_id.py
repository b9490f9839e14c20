import pytest

from lightning_xllama.evaluation.language_id import (
    LangidIdentifier,
    LanguageIdentifier,
    SyntheticIdentifier,
    off_target_rate,
    script_of,
)

ENGLISH = "The committee will publish its final report on the new railway next spring."
CHINESE = "委员会将于明年春天发布关于新铁路的最终报告。"
ARABIC = "ستنشر اللجنة تقريرها النهائي عن السكة الحديدية الجديدة في الربيع المقبل."
GERMAN = "Der Ausschuss wird seinen Abschlussbericht im nächsten Frühjahr veröffentlichen."


@pytest.fixture(scope="module")
def en_zh_ar() -> LangidIdentifier:
    return LangidIdentifier(["en", "zh", "ar"])


def test_langid_identifies_real_sentences(en_zh_ar):
    assert en_zh_ar.identify(ENGLISH) == "en"
    assert en_zh_ar.identify(CHINESE) == "zh"
    assert en_zh_ar.identify(ARABIC) == "ar"


def test_langid_answers_only_with_candidates():
    # German is not a candidate: the closest candidate is English, never "de"
    assert LangidIdentifier(["en", "zh"]).identify(GERMAN) == "en"
    assert LangidIdentifier(["de", "en"]).identify(GERMAN) == "de"


def test_langid_short_or_empty_is_undetermined(en_zh_ar):
    for text in ["", "   ", "ok", "42 + 17 = 59", "..."]:
        assert en_zh_ar.identify(text) is None
    assert LangidIdentifier(["en", "zh"], min_chars=2).identify("北京") == "zh"


def test_langid_refuses_unknown_codes():
    with pytest.raises(ValueError, match="syn_far"):
        LangidIdentifier(["en", "syn_far"])
    with pytest.raises(ValueError, match="candidate"):
        LangidIdentifier([])


def test_langid_leaves_the_global_py3langid_unrestricted(en_zh_ar):
    import py3langid

    assert en_zh_ar.identify(ENGLISH) == "en"
    assert py3langid.classify(GERMAN)[0] == "de"


@pytest.mark.parametrize(
    "text, script",
    [
        ("hello world", "latin"),
        ("tiếng Việt", "latin"),
        ("καλημέρα κόσμε", "greek"),
        ("привет мир", "cyrillic"),
        ("北京", "other"),
        ("123 !?", "other"),
        ("привет world мир", "cyrillic"),
    ],
)
def test_script_of(text, script):
    assert script_of(text) == script


@pytest.fixture()
def synthetic() -> SyntheticIdentifier:
    return SyntheticIdentifier(
        {
            "en": {"the", "dog", "sees", "a", "cat", "river"},
            "syn_near": {"tha", "dogo", "sees", "cato", "rivera"},  # "sees" is a shared cognate
            "syn_far": {"мок", "дал", "сун", "рива"},
        },
        scripts={"en": "latin", "syn_near": "latin", "syn_far": "cyrillic"},
    )


def test_synthetic_identifier_by_lexicon(synthetic):
    assert synthetic.identify("The dog sees a cat.") == "en"
    assert synthetic.identify("Tha dogo sees cato.") == "syn_near"
    assert synthetic.identify("Мок дал сун.") == "syn_far"
    # the majority wins when languages are mixed
    assert synthetic.identify("tha dogo sees cato the") == "syn_near"  # 4 votes to 2


def test_synthetic_identifier_undetermined(synthetic):
    assert synthetic.identify("") is None
    assert synthetic.identify("dog") is None  # fewer than min_words
    assert synthetic.identify("unknown words only") is None
    assert synthetic.identify("sees sees") is None  # a tie between two Latin-script languages


def test_synthetic_identifier_script_breaks_ties():
    identifier = SyntheticIdentifier({"en": {"kat"}, "syn_far": {"kat"}})
    assert identifier.scripts == {"en": "latin", "syn_far": "cyrillic"}  # from the registry
    assert identifier.identify("kat kat") == "en"
    custom = SyntheticIdentifier({"x": {"kat"}, "y": {"kat"}}, scripts={"x": "greek", "y": "latin"})
    assert custom.identify("kat kat") == "y"


def test_identifiers_follow_the_protocol(synthetic, en_zh_ar):
    identifiers: list[LanguageIdentifier] = [synthetic, en_zh_ar]
    assert all(callable(identifier.identify) for identifier in identifiers)


def test_off_target_rate_counts(en_zh_ar):
    outputs = [CHINESE, "北京是中国的首都，也是一座历史名城。", ENGLISH, ARABIC, "", "ok"]
    result = off_target_rate(outputs, "zh", en_zh_ar)
    assert result == {"total": 6, "on_target": 2, "off_target": 2, "undetermined": 2, "rate": 2 / 6}


def test_off_target_rate_with_synthetic_identifier_and_no_outputs(synthetic):
    result = off_target_rate(["Мок дал сун.", "The dog sees a cat."], "syn_far", synthetic)
    assert result == {"total": 2, "on_target": 1, "off_target": 1, "undetermined": 0, "rate": 0.5}
    assert off_target_rate([], "syn_far", synthetic)["rate"] == 0.0
