"""Readers for evaluation sets in their published layouts: FLORES-101/200 and SQuAD-format QA.

- FLORES ships one file per language and split, line ``i`` of every file the same sentence:
  ``{dev,devtest}/{code}.{split}`` in the release, or the files flat in one folder
  (``{code}.{split}``); both are found. Codes come from the language registry (``zho_simpl`` for
  FLORES-101, ``zho_Hans`` for FLORES-200), which has every FLORES-101 language.
- XQuAD (``xquad.{lang}.json``), MLQA (``{dev,test}-context-{c}-question-{q}.json``) and your own
  QA files are SQuAD v1.1 JSON. XQuAD contexts may start with a byte-order mark (U+FEFF): it is
  removed, unless ``keep_bom`` (the paper's loader keeps it: Python's ``strip`` leaves U+FEFF).

Every problem is reported with the file and the line or record, as the training readers do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from lightning_xllama.data.sources import DataFormatError, read_lines, read_parallel
from lightning_xllama.languages import get_language

FloresVersion = Literal["flores101", "flores200"]
FloresSplit = Literal["dev", "devtest"]
MLQASplit = Literal["dev", "test"]

_BOM = "\ufeff"


# --- FLORES -------------------------------------------------------------------------------
def flores_code(lang: str, version: FloresVersion = "flores101") -> str:
    """The file code of a registered language in FLORES-101 or FLORES-200."""
    if version not in ("flores101", "flores200"):
        raise ValueError(f"unknown FLORES version {version!r}; expected 'flores101' or 'flores200'")
    code = getattr(get_language(lang), version)
    if code is None:
        raise ValueError(
            f"language {lang!r} has no {version} code in the registry, so it has no FLORES file; "
            "register it with one (lightning_xllama.languages.register)"
        )
    return code


def _first_file(candidates: list[Path], missing: str) -> Path:
    """The first of ``candidates`` that exists (a release layout, then a flat folder)."""
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{missing}: looked for " + " and ".join(str(path) for path in candidates)
    )


def _flores_paths(root: str | Path, code: str, split: str) -> list[Path]:
    """Where a FLORES file can be: the release layout, then a flat folder."""
    return [Path(root) / split / f"{code}.{split}", Path(root) / f"{code}.{split}"]


def flores_file(
    root: str | Path,
    lang: str,
    split: FloresSplit = "devtest",
    version: FloresVersion = "flores101",
) -> Path:
    """The FLORES file of ``lang``: ``{root}/{split}/{code}.{split}`` or ``{root}/{code}.{split}``.

    When it is missing but the other version's file is there, the error says which ``version``
    the folder needs.
    """
    code = flores_code(lang, version)
    try:
        return _first_file(
            _flores_paths(root, code, split),
            f"no {version} {split} file for {lang!r} (code {code}) in {root}",
        )
    except FileNotFoundError as err:
        other = "flores200" if version == "flores101" else "flores101"
        other_code = getattr(get_language(lang), other)
        found = [p for p in _flores_paths(root, other_code, split) if other_code and p.is_file()]
        if found:
            raise FileNotFoundError(
                f"{err}; {found[0]} is there: the folder has {other} codes, pass version={other!r}"
            ) from None
        raise


def read_flores(
    root: str | Path,
    src_lang: str,
    tgt_lang: str,
    split: FloresSplit = "devtest",
    version: FloresVersion = "flores101",
) -> list[tuple[str, str]]:
    """Aligned ``(source, target)`` sentences of one FLORES direction.

    Files of different lengths, empty files and empty lines are errors naming the file (and line).
    """
    paths = [flores_file(root, lang, split, version) for lang in (src_lang, tgt_lang)]
    sides = [list(read_lines(path)) for path in paths]
    if len(sides[0]) != len(sides[1]):
        raise DataFormatError(
            f"FLORES files are not aligned: {paths[0]} has {len(sides[0])} lines, "
            f"{paths[1]} has {len(sides[1])}"
        )
    for path, lines in zip(paths, sides):
        if not lines:
            raise DataFormatError(f"{path}: empty file, expected one sentence a line")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise DataFormatError(f"{path}:{number}: empty line in a FLORES file")
    return list(zip(*sides))


def read_test_pairs(
    src_lang: str,
    tgt_lang: str,
    test_prefix: Optional[str] = None,
    flores_dir: Optional[str] = None,
    flores_split: FloresSplit = "devtest",
    flores_version: FloresVersion = "flores101",
) -> list[tuple[str, str]]:
    """Pairs of one direction from your aligned files (``{test_prefix}.{src}``/``.{tgt}``) or from
    a FLORES folder: exactly one of ``test_prefix`` and ``flores_dir``."""
    if (test_prefix is None) == (flores_dir is None):
        raise ValueError(
            "give exactly one source of sentence pairs: test_prefix (aligned files "
            "{test_prefix}.{src} and {test_prefix}.{tgt}) or flores_dir (a FLORES-101/200 folder)"
        )
    get_language(src_lang), get_language(tgt_lang)
    if flores_dir is not None:
        return read_flores(flores_dir, src_lang, tgt_lang, flores_split, flores_version)
    return read_parallel(test_prefix, src_lang, tgt_lang)


def parse_direction(direction: str) -> tuple[str, str]:
    """``"en-zh"`` -> ``("en", "zh")``; both codes must be registered."""
    src, sep, tgt = direction.partition("-")
    if not sep or not src or not tgt:
        raise ValueError(f"direction {direction!r} must be 'src-tgt' language codes, e.g. 'en-zh'")
    get_language(src), get_language(tgt)
    return src, tgt


# --- SQuAD-format QA ----------------------------------------------------------------------
@dataclass(frozen=True)
class QAExample:
    """One extractive question with its passage and gold answers."""

    id: str
    context: str
    question: str
    answers: tuple[str, ...]
    lang: str


def _field(record: object, name: str, kind: type, where: str):
    if not isinstance(record, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if name not in record:
        raise DataFormatError(f"{where}: missing field {name!r}")
    value = record[name]
    if not isinstance(value, kind):
        raise DataFormatError(
            f"{where}: field {name!r} must be a {kind.__name__}, got {type(value).__name__}"
        )
    return value


def read_squad(path: str | Path, lang: str, keep_bom: bool = False) -> list[QAExample]:
    """Every question of a SQuAD v1.1 JSON file (XQuAD, MLQA, your own), in file order.

    Expected: ``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers":
    [{"text"}, ...]}]}]}]}``. A leading U+FEFF is removed from contexts and questions unless
    ``keep_bom``: the paper's prompts keep it (its loader strips with Python's ``str.strip``, which
    leaves U+FEFF), so 9 to 47 of XQuAD's 1,190 prompts per language start their passage with it.
    A question without gold answers (SQuAD 2.0's unanswerable ones) is an error: it cannot be
    scored.
    """
    bom = "" if keep_bom else _BOM
    get_language(lang)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"QA file not found: {path}")
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not valid UTF-8 at byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    examples = []
    for a, article in enumerate(_field(document, "data", list, f"{path}")):
        for p, paragraph in enumerate(_field(article, "paragraphs", list, f"{path}: data[{a}]")):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, where).lstrip(bom)
            for q, qa in enumerate(_field(paragraph, "qas", list, where)):
                qa_where = f"{where}.qas[{q}]"
                qa_id = qa.get("id") if isinstance(qa, dict) else None
                if qa_id is not None:
                    qa_where += f" (id {qa_id})"
                question = _field(qa, "question", str, qa_where).lstrip(bom)
                answers = []
                for n, answer in enumerate(_field(qa, "answers", list, qa_where)):
                    answers.append(_field(answer, "text", str, f"{qa_where}.answers[{n}]"))
                if not answers:
                    raise DataFormatError(
                        f"{qa_where}: no gold answers (unanswerable questions cannot be scored)"
                    )
                example_id = str(qa_id) if qa_id is not None else f"{a}-{p}-{q}"
                examples.append(QAExample(example_id, context, question, tuple(answers), lang))
    if not examples:
        raise DataFormatError(
            f"{path}: no questions found (expected SQuAD format: data/paragraphs/qas)"
        )
    return examples


def xquad_file(root: str | Path, lang: str) -> Path:
    """``{root}/xquad.{lang}.json``, as XQuAD is released."""
    get_language(lang)
    path = Path(root) / f"xquad.{lang}.json"
    if not path.is_file():
        raise FileNotFoundError(f"XQuAD file for {lang!r} not found: {path}")
    return path


def mlqa_file(
    root: str | Path, context_lang: str, question_lang: str, split: MLQASplit = "test"
) -> Path:
    """``{root}/{split}/{split}-context-{c}-question-{q}.json`` (the release) or the file in ``root``."""
    get_language(context_lang), get_language(question_lang)
    if split not in ("dev", "test"):
        raise ValueError(f"unknown MLQA split {split!r}; expected 'dev' or 'test'")
    name = f"{split}-context-{context_lang}-question-{question_lang}.json"
    candidates = [Path(root) / split / name, Path(root) / name]
    return _first_file(
        candidates,
        f"MLQA {split} file for context {context_lang!r}, question {question_lang!r} not found",
    )
