"""Every language of the benchmarks is registered: FLORES-101's 102 files, XQuAD and MLQA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_xllama import languages
from lightning_xllama.callbacks.qa import qa_answer, qa_prompt
from lightning_xllama.data.eval_sets import (
    QAExample,
    flores_code,
    read_flores,
    read_squad,
    xquad_file,
)
from lightning_xllama.evaluation.language_id import written_in
from lightning_xllama.languages import (
    Language,
    QAPromptWords,
    get_language,
    language_for_flores,
    register,
)

SHARED = Path("/work/shared/data")

# The file codes of the FLORES-101 release (flores101_dataset/devtest/{code}.devtest).
FLORES101 = """
    afr amh ara hye asm ast azj bel ben bos bul mya cat ceb zho_simpl zho_trad hrv ces dan nld eng
    est tgl fin fra ful glg lug kat deu ell guj hau heb hin hun isl ibo ind gle ita jpn jav kea kam
    kan kaz khm kor kir lao lav lin lit luo ltz mkd msa mal mlt mri mar mon npi nso nob nya oci ory
    orm pus fas pol por pan ron rus srp sna snd slk slv som ckb spa swh swe tgk tam tel tha tur ukr
    umb urd uzb vie cym wol xho yor zul
""".split()
XQUAD = ["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]
MLQA = ["ar", "de", "en", "es", "hi", "vi", "zh"]

# FLORES-101 code -> (registry code, FLORES-200 code), where the FLORES-200 code is not simply
# the FLORES-101 code with a script, or the registry code is worth pinning.
SAMPLES = {
    "zho_simpl": ("zh", "zho_Hans"),
    "zho_trad": ("zh_Hant", "zho_Hant"),
    "ara": ("ar", "arb_Arab"),
    "ron": ("ro", "ron_Latn"),
    "tha": ("th", "tha_Thai"),
    "eng": ("en", "eng_Latn"),
    "lav": ("lv", "lvs_Latn"),
    "msa": ("ms", "zsm_Latn"),
    "mon": ("mn", "khk_Cyrl"),
    "orm": ("om", "gaz_Latn"),
    "pus": ("ps", "pbt_Arab"),
    "fas": ("fa", "pes_Arab"),
    "uzb": ("uz", "uzn_Latn"),
    "ful": ("ff", "fuv_Latn"),
    "nob": ("nb", "nob_Latn"),
    "swh": ("sw", "swh_Latn"),
    "ast": ("ast", "ast_Latn"),  # no ISO 639-1 code: the ISO 639-3 one
    "ckb": ("ckb", "ckb_Arab"),
    "kor": ("ko", "kor_Hang"),
    "jpn": ("ja", "jpn_Jpan"),
}
NO_ISO_639_1 = {"ast", "ceb", "kea", "kam", "luo", "nso", "umb", "ckb"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("code", sorted(set(XQUAD) | set(MLQA)))
def test_every_xquad_and_mlqa_language_has_qa_words_of_its_own(code):
    words = get_language(code).qa
    fields = [words.instruction, words.context, words.question, words.answer]
    assert all(field.strip() for field in fields)
    if code != "en":
        assert words.instruction != QAPromptWords().instruction  # not the English defaults
    assert written_in(" ".join(fields), code, min_share=1.0)  # in the language's own script
    example = QAExample("1", "passage", "question?", ("a",), code)
    prompt = qa_prompt(example)
    assert f"{words.context}: passage\n{words.question}: question?" in prompt
    assert qa_answer(f"{words.answer}: a", prompt, code) == "a"


def test_the_package_lists_the_qa_languages():
    assert sorted(languages.XQUAD_LANGUAGES) == XQUAD
    assert sorted(languages.MLQA_LANGUAGES) == MLQA


def test_every_flores101_code_round_trips():
    assert len(FLORES101) == len(set(FLORES101)) == 102  # 101 languages and English
    assert sorted(language_for_flores(code).code for code in FLORES101) == sorted(
        languages.FLORES101_LANGUAGES
    )
    for code in FLORES101:
        language = language_for_flores(code)
        assert get_language(language.code) is language
        assert language.flores101 == code == flores_code(language.code, "flores101")
        assert language_for_flores(language.flores200) is language
        assert flores_code(language.code, "flores200") == language.flores200
        assert language.flores200.split("_")[1] == language.script
        # (a user module may re-register a shipped language with synthetic settings: the
        # Swahili of tests/helpers/swahili_language.py does, so synthetic is not checked here)
        assert language.name
        key = language.code
        assert len(key) == 2 or key in NO_ISO_639_1 or key == "zh_Hant", key
        assert (key in NO_ISO_639_1) == (key == code)  # 639-3 keys are the FLORES-101 codes
    for code, (key, flores200) in SAMPLES.items():
        assert (language_for_flores(code).code, language_for_flores(code).flores200) == (
            key,
            flores200,
        )
    with pytest.raises(KeyError, match="xyz_Latn"):
        language_for_flores("xyz_Latn")


def test_flores_files_of_every_language_read_in_both_layouts(tmp_path):
    """The releases: flores101_dataset/{dev,devtest}/{code}.{split}, the same for FLORES-200."""
    for code in FLORES101:
        language = language_for_flores(code)
        for root, file_code in (("flores101_dataset", code), ("flores200_dataset", None)):
            file_code = file_code or language.flores200
            for split in ("dev", "devtest"):
                write(
                    tmp_path / root / split / f"{file_code}.{split}",
                    f"{split} one in {file_code}\n{split} two in {file_code}\n",
                )
    for code in languages.FLORES101_LANGUAGES:
        language = get_language(code)
        assert read_flores(tmp_path / "flores101_dataset", "en", code) == [
            ("devtest one in eng", f"devtest one in {language.flores101}"),
            ("devtest two in eng", f"devtest two in {language.flores101}"),
        ]
        pairs = read_flores(tmp_path / "flores200_dataset", code, "en", "dev", "flores200")
        assert pairs[0] == (f"dev one in {language.flores200}", "dev one in eng_Latn")


def test_a_folder_of_the_other_version_is_named(tmp_path):
    write(tmp_path / "devtest" / "eng_Latn.devtest", "One.\n")
    write(tmp_path / "devtest" / "ron_Latn.devtest", "Unu.\n")
    with pytest.raises(FileNotFoundError, match=r"ron\.devtest.*pass version='flores200'"):
        read_flores(tmp_path, "ro", "en")
    assert read_flores(tmp_path, "en", "ro", version="flores200") == [("One.", "Unu.")]
    write(tmp_path / "tha.devtest", "หนึ่ง\n")
    with pytest.raises(FileNotFoundError, match=r"tha_Thai\.devtest.*pass version='flores101'"):
        read_flores(tmp_path, "th", "en", version="flores200")


def test_xquad_files_of_every_language_read(tmp_path):
    question = {"id": "q", "question": "?", "answers": [{"text": "c"}]}
    document = {"data": [{"paragraphs": [{"context": "\ufeffc", "qas": [question]}]}]}
    for code in XQUAD:
        write(tmp_path / f"xquad.{code}.json", json.dumps(document))
        [example] = read_squad(xquad_file(tmp_path, code), code)
        assert example.context == "c" and example.lang == code


@pytest.fixture()
def private_registry(monkeypatch):
    """The registry as shipped, restored after the test."""
    monkeypatch.setattr(languages, "_REGISTRY", dict(languages._REGISTRY))
    monkeypatch.setattr(languages, "_GIVES_WAY", set(languages._GIVES_WAY))


def test_a_user_module_registering_a_newly_shipped_language_keeps_working(private_registry):
    # what a user module had to write before Romanian was shipped: English QA words
    own = Language("ro", "Romanian", "Latn", "ron", "ron_Latn")
    assert own != get_language("ro")
    assert register(own) is own and get_language("ro") is own
    with pytest.raises(ValueError, match="already registered"):  # a second, different one
        register(Language("ro", "Rumanian", "Latn", "ron", "ron_Latn"))
    with pytest.raises(ValueError, match="already registered"):  # entries shipped before
        register(Language("zh", "Mandarin", "Hans", "zho_simpl", "zho_Hans"))
    register(Language("zh", "Mandarin", "Hans", "zho_simpl", "zho_Hans"), overwrite=True)
    assert get_language("zh").name == "Mandarin"
    # the user's Swahili module (tests/helpers) registers an entry equal to the shipped one
    swahili = get_language("sw")
    assert (swahili.flores101, swahili.flores200, swahili.script) == ("swh", "swh_Latn", "Latn")


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared real data is not on this machine")
def test_real_files_are_read_by_their_codes():
    folder = SHARED / "flores101-devtest"
    files = sorted(folder.glob("*.devtest"))
    assert files
    for path in files:
        language = language_for_flores(path.stem)
        lines = [tgt for _, tgt in read_flores(folder, "en", language.code)]
        assert sum(written_in(line, language.code) is True for line in lines) == len(lines) == 1012
    for path in sorted((SHARED / "xquad").glob("xquad.*.json")):
        code = path.name.split(".")[1]
        examples = read_squad(xquad_file(SHARED / "xquad", code), code)
        assert len(examples) == 1190
        assert get_language(code).qa.context in qa_prompt(examples[0])
