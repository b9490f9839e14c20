"""The demo world: small artificial languages that stand in for real corpora offline.

An English-like language comes from a small grammar (determiner, adjective, noun, verb, an
optional prepositional phrase). Each target language is derived from it by deterministic rules
read from its :class:`~lightning_xllama.demo.settings.SyntheticSettings`: a word-for-word lexicon
(cognates or invented words), a script, and a word order. From a seed, :class:`SyntheticWorld`
generates everything a real user would bring, in the real formats: pretraining text, Alpaca
instruction records in English and translated, parallel sentence pairs, a translation test set
and SQuAD-style QA. All downstream code reads these files as it reads real data.
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from lightning_xllama.demo.layout import DataLayout
from lightning_xllama.demo.settings import synthetic_settings
from lightning_xllama.languages import Language, get_language

DETERMINERS = ["the", "a"]
NOUNS = (
    "dog cat bird horse fish farmer teacher child doctor king girl boy tree house river boat "
    "apple book stone ball garden table window road city hill door cup hat key"
).split()
ADJECTIVES = (
    "big small red green old young happy tall quiet bright dark heavy quick cold warm".split()
)
VERBS = [  # (base form, third person)
    ("see", "sees"),
    ("like", "likes"),
    ("find", "finds"),
    ("take", "takes"),
    ("hold", "holds"),
    ("carry", "carries"),
    ("follow", "follows"),
    ("paint", "paints"),
    ("watch", "watches"),
    ("push", "pushes"),
    ("help", "helps"),
    ("build", "builds"),
    ("open", "opens"),
    ("move", "moves"),
    ("call", "calls"),
]
PREPOSITIONS = "near behind under beside".split()
NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve thirteen".split()
FUNCTION_WORDS = (
    "what is of this sentence does how many words are in rewrite with and swapped subject "
    "object who"
).split()
PUNCTUATION = {".", "?"}

_LETTERS = {
    "cyrillic": dict(zip("abcdefghijklmnopqrstuvwxyz", "абцдефгхийклмнопкрстувшксз")),
    "greek": dict(zip("abcdefghijklmnopqrstuvwxyz", "αβψδεφγηιξκλμνοπκρστυβωχυζ")),
}
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_VOWEL_SHIFT = str.maketrans("aeiou", "eioua")


def english_vocabulary() -> list[str]:
    verbs = [form for pair in VERBS for form in pair]
    words = DETERMINERS + NOUNS + ADJECTIVES + verbs + PREPOSITIONS + NUMBERS + FUNCTION_WORDS
    return list(dict.fromkeys(words))


@dataclass(frozen=True)
class NounPhrase:
    determiner: str
    noun: str
    adjective: Optional[str] = None


@dataclass(frozen=True)
class Clause:
    """One sentence of the grammar: subject, verb, object and an optional place."""

    subject: NounPhrase
    verb: int | str  # index into VERBS; a grammar with its own verbs may hold the verb itself
    object: NounPhrase
    preposition: Optional[str] = None
    place: Optional[NounPhrase] = None

    def swapped(self) -> "Clause":
        return Clause(self.object, self.verb, self.subject, self.preposition, self.place)


def render(tokens: Sequence[str]) -> str:
    """Join tokens with spaces, attaching punctuation to the word before it."""
    text = ""
    for token in tokens:
        text += token if (token in PUNCTUATION or not text) else " " + token
    return text


class LanguageRenderer:
    """Turns clauses and English word sequences into one language's words and order."""

    def __init__(self, language: Language):
        self.language = language
        self.settings = synthetic_settings(language.code)
        self.lexicon = self._build_lexicon()

    def _build_lexicon(self) -> dict[str, str]:
        if self.language.code == "en":
            return {w: w for w in english_vocabulary()}
        # A stable per-language seed: the lexicon depends on the language, not on the run.
        rng = random.Random(zlib.crc32(self.language.code.encode()))
        lexicon: dict[str, str] = {}
        used: set[str] = set(english_vocabulary())
        for word in english_vocabulary():
            for _ in range(1000):
                if rng.random() < self.settings.cognate_share:
                    candidate = word.translate(_VOWEL_SHIFT) + rng.choice(["", "a", "o"])
                else:
                    syllables = rng.randint(1, 3) if len(word) > 3 else rng.randint(1, 2)
                    candidate = "".join(
                        rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables)
                    ) + rng.choice(["", "n", "r", "s"])
                candidate = self._transliterate(candidate)
                if candidate not in used:
                    break
            else:  # pragma: no cover - 1000 collisions in a row cannot happen with this alphabet
                raise RuntimeError(f"could not invent a word for {word!r}")
            used.add(candidate)
            lexicon[word] = candidate
        return lexicon

    def _transliterate(self, word: str) -> str:
        table = _LETTERS.get(self.settings.script)
        return "".join(table[c] for c in word) if table else word

    def words(self, english_tokens: Sequence[str]) -> list[str]:
        """Word-for-word rendering (instructions and questions keep English order)."""
        return [t if t in PUNCTUATION else self.lexicon[t] for t in english_tokens]

    def noun_phrase(self, phrase: NounPhrase) -> list[str]:
        if phrase.adjective is None:
            order = [phrase.determiner, phrase.noun]
        elif self.settings.adjective_after_noun:
            order = [phrase.determiner, phrase.noun, phrase.adjective]
        else:
            order = [phrase.determiner, phrase.adjective, phrase.noun]
        return self.words(order)

    def clause(self, clause: Clause) -> list[str]:
        subject = self.noun_phrase(clause.subject)
        verb = self.words([VERBS[clause.verb][1]])
        obj = self.noun_phrase(clause.object)
        place = (
            self.words([clause.preposition]) + self.noun_phrase(clause.place)
            if clause.place is not None
            else []
        )
        if self.settings.word_order == "SOV":
            return subject + obj + place + verb + ["."]
        return subject + verb + obj + place + ["."]

    def object_position(self, clause: Clause) -> int:
        """Index of the object's first token in :meth:`clause`'s output."""
        subject = len(self.noun_phrase(clause.subject))
        return subject if self.settings.word_order == "SOV" else subject + 1

    def sentence(self, clause: Clause) -> str:
        return render(self.clause(clause))


def _noun_phrase(rng: random.Random, exclude: set[str] = frozenset()) -> NounPhrase:
    noun = rng.choice([n for n in NOUNS if n not in exclude])
    adjective = rng.choice(ADJECTIVES) if rng.random() < 0.6 else None
    return NounPhrase(rng.choice(DETERMINERS), noun, adjective)


def random_clause(rng: random.Random) -> Clause:
    subject = _noun_phrase(rng)
    obj = _noun_phrase(rng, exclude={subject.noun})
    if rng.random() < 0.4:
        place = _noun_phrase(rng, exclude={subject.noun, obj.noun})
        return Clause(subject, rng.randrange(len(VERBS)), obj, rng.choice(PREPOSITIONS), place)
    return Clause(subject, rng.randrange(len(VERBS)), obj)


def _instruction(clause: Clause, task: str) -> tuple[list[str], Optional[object]]:
    """English instruction tokens and the answer's source for one task."""
    if task == "subject":
        return "what is the subject of this sentence ?".split(), clause.subject
    if task == "object":
        question = ["what", "does"] + _phrase_tokens(clause.subject) + [VERBS[clause.verb][0], "?"]
        return question, clause.object
    if task == "count":
        return "how many words are in this sentence ?".split(), "count"
    if task == "swap":
        return (
            "rewrite this sentence with the subject and the object swapped .".split(),
            clause.swapped(),
        )
    raise ValueError(f"unknown synthetic task {task!r}")


def _phrase_tokens(phrase: NounPhrase) -> list[str]:
    """English order of a noun phrase (questions are rendered word-for-word)."""
    return [phrase.determiner] + ([phrase.adjective] if phrase.adjective else []) + [phrase.noun]


TASKS = ("subject", "object", "count", "swap")


class SyntheticWorld:
    """Reproducible corpora for English and a set of synthetic target languages.

    A world with another grammar subclasses it: :meth:`random_clause` draws its clauses and its
    renderers (``english``, ``targets``) render them; the corpora and files follow."""

    def __init__(self, targets: Sequence[str], seed: int = 0):
        self.seed = seed
        self.english = LanguageRenderer(get_language("en"))
        self.targets = {code: LanguageRenderer(get_language(code)) for code in targets}

    def renderer(self, code: str) -> LanguageRenderer:
        return self.english if code == "en" else self.targets[code]

    def _rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{purpose}")

    def random_clause(self, rng: random.Random) -> Clause:
        """One clause of the grammar, drawn from ``rng``."""
        return random_clause(rng)

    def _clauses(
        self, purpose: str, count: int, exclude: set[Clause] = frozenset()
    ) -> list[Clause]:
        """``count`` distinct clauses not in ``exclude``, drawn from the purpose's own stream."""
        rng = self._rng(purpose)
        seen, clauses = set(exclude), []
        while len(clauses) < count:
            clause = self.random_clause(rng)
            if clause not in seen:
                seen.add(clause)
                clauses.append(clause)
        return clauses

    # --- what a user would bring -------------------------------------------------------
    def pretraining_text(
        self, count: int, target_share: float = 0.1, bilingual_share: float = 0.05
    ) -> list[str]:
        """Base-model pretraining lines: mostly English, ``target_share`` in each target language,
        and ``bilingual_share`` of lines that pair an English sentence with its translation, as
        web text holds a few (the latent knowledge that instruction tuning then aligns)."""
        rng = self._rng("pretraining")
        targets = list(self.targets)
        lines = []
        for _ in range(count):
            draw = rng.random()
            clause = self.random_clause(rng)
            if targets and draw < bilingual_share:
                target = self.targets[rng.choice(targets)]
                lines.append(f"{self.english.sentence(clause)} = {target.sentence(clause)}")
                continue
            code = "en"
            for i, target in enumerate(targets):
                if draw < bilingual_share + (i + 1) * target_share:
                    code = target
                    break
            lines.append(self.renderer(code).sentence(clause))
        return lines

    def instructions(self, count: int, lang: str = "en") -> list[dict]:
        """Alpaca records; record ``i`` of a target language translates English record ``i``."""
        renderer = self.renderer(lang)
        rng = self._rng("instructions")
        records = []
        for clause in self._clauses("instructions", count):
            task = rng.choice(TASKS)
            instruction, answer = _instruction(clause, task)
            sentence = renderer.clause(clause)
            if answer == "count":
                output = [renderer.lexicon[NUMBERS[sum(t not in PUNCTUATION for t in sentence)]]]
            elif isinstance(answer, Clause):
                output = renderer.clause(answer)
            else:
                output = renderer.noun_phrase(answer)
            records.append(
                {
                    "instruction": render(renderer.words(instruction)),
                    "input": render(sentence),
                    "output": render(output),
                }
            )
        return records

    def parallel(self, lang: str, count: int) -> list[tuple[str, str]]:
        """English-target sentence pairs for training, disjoint from the test set."""
        test = set(self._clauses("test", self._test_size_hint))
        clauses = self._clauses(f"parallel:{lang}", count, exclude=test)
        return [(self.english.sentence(c), self.targets[lang].sentence(c)) for c in clauses]

    _test_size_hint = 1000  # the test set is the first N clauses of its own stream

    def translation_test(self, lang: str, count: int) -> list[tuple[str, str]]:
        if count > self._test_size_hint:
            raise ValueError(f"at most {self._test_size_hint} test sentences, asked for {count}")
        clauses = self._clauses("test", self._test_size_hint)[:count]
        return [(self.english.sentence(c), self.targets[lang].sentence(c)) for c in clauses]

    def qa(self, lang: str, count: int, sentences_per_context: int = 3) -> dict:
        """Extractive QA in SQuAD v1.1 format, context and question in ``lang``."""
        renderer = self.renderer(lang)
        rng = self._rng(f"qa:{lang}")
        paragraphs = []
        for i in range(count):
            clauses = self._distinct_subjects(rng, sentences_per_context)
            asked = rng.randrange(len(clauses))
            context, answer_start, answer = "", 0, ""
            for j, clause in enumerate(clauses):
                tokens = renderer.clause(clause)
                prefix = context + (" " if context else "")
                if j == asked:
                    answer = render(renderer.noun_phrase(clause.object))
                    before = renderer.object_position(clause)
                    answer_start = len(prefix) + (len(render(tokens[:before])) + 1 if before else 0)
                context = prefix + render(tokens)
            clause = clauses[asked]
            question_tokens, _ = _instruction(clause, "object")
            question = render(renderer.words(question_tokens))
            qa = {
                "id": f"syn-{lang}-{i}",
                "question": question,
                "answers": [{"text": answer, "answer_start": answer_start}],
            }
            paragraphs.append({"context": context, "qas": [qa]})
        return {
            "version": "synthetic-1",
            "data": [{"title": f"synthetic-{lang}", "paragraphs": paragraphs}],
        }

    def _distinct_subjects(self, rng: random.Random, count: int) -> list[Clause]:
        """Clauses whose subjects differ, so a question about one has a single answer."""
        clauses: list[Clause] = []
        while len(clauses) < count:
            clause = self.random_clause(rng)
            if all(clause.subject.noun != c.subject.noun for c in clauses):
                clauses.append(clause)
        return clauses

    def lexicons(self) -> dict[str, list[str]]:
        """Each language's words, for identifying which language an output is in."""
        return {
            code: sorted(set(r.lexicon.values()))
            for code, r in [("en", self.english), *self.targets.items()]
        }

    # --- files in the real formats ------------------------------------------------------
    def write(
        self,
        out_dir: str | Path,
        pretraining: int = 20000,
        bilingual_share: float = 0.05,
        instructions: int = 2000,
        parallel: int = 4000,
        test: int = 200,
        qa: int = 100,
    ) -> dict[str, str]:
        """Write every corpus under ``out_dir`` (in the :class:`DataLayout`) and return the paths by role."""
        layout = DataLayout(out_dir)
        paths: dict[str, str] = {}

        def write_lines(path: Path, lines: Sequence[str]) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

        def write_json(path: Path, obj: object) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")

        write_lines(
            layout.pretraining, self.pretraining_text(pretraining, bilingual_share=bilingual_share)
        )
        paths["pretraining"] = str(layout.pretraining)
        write_json(layout.instructions("en"), self.instructions(instructions, "en"))
        paths["instructions/en"] = str(layout.instructions("en"))
        for lang in self.targets:
            write_json(layout.instructions(lang), self.instructions(instructions, lang))
            paths[f"instructions/{lang}"] = str(layout.instructions(lang))
            pairs = self.parallel(lang, parallel)
            prefix = layout.parallel(lang)
            write_lines(prefix.with_suffix(".en"), [p[0] for p in pairs])
            write_lines(prefix.with_suffix(f".{lang}"), [p[1] for p in pairs])
            paths[f"parallel/{lang}"] = str(layout.parallel_dir(lang))
            pairs = self.translation_test(lang, test)
            prefix = layout.translation_test(lang)
            write_lines(prefix.with_suffix(".en"), [p[0] for p in pairs])
            write_lines(prefix.with_suffix(f".{lang}"), [p[1] for p in pairs])
            paths[f"test/{lang}"] = str(layout.translation_test_dir(lang))
            write_json(layout.qa(lang), self.qa(lang, qa))
            paths[f"qa/{lang}"] = str(layout.qa(lang))
        write_json(layout.lexicons, self.lexicons())
        paths["lexicons"] = str(layout.lexicons)
        return paths
