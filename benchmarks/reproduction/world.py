"""The science world: a synthetic world in which translation keeps improving into the
thousands of pairs (the demo's world saturates within a hundred).

The same file formats and folder layout as the demo (:class:`DataLayout`), so the package's
readers, sweep and DataModules read it unchanged, but:

- a vocabulary of invented English-like words (nouns, adjectives, verbs, prepositions; the
  study's ``Settings.world`` sets how many), drawn with Zipf frequencies, so rare words turn up
  only in large subsets;
- morphology on top of word order: plural nouns after ``some``, and, in a language without
  cognates, an object-case suffix and a plural suffix that differ from English's ``-s``;
- few bilingual lines in pretraining, so the lexicon has to come from the parallel pairs.

It extends the demo's world (``lightning_xllama/demo/world.py``) rather than copying it: its own
grammar draws the clauses (:meth:`ScienceWorld.random_clause`, over the demo's ``Clause`` and
``NounPhrase``) and its renderers render them; the demo's pretraining, parallel, test and file
writers are used as they are, so the demo's output does not change.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from lightning_xllama.demo.languages import synthetic_settings
from lightning_xllama.demo.world import PUNCTUATION, Clause, NounPhrase, SyntheticWorld, render

DETERMINERS = ("the", "a", "some")
"""``some`` makes the noun plural (and the English verb loses its -s)."""
FUNCTION_WORDS = "what is of this sentence subject does who".split()


def _invent(rng: random.Random, count: int, used: set[str], syllables=(1, 3), ending="") -> list:
    """``count`` new pronounceable words not in ``used`` (which they are added to)."""
    words = []
    while len(words) < count:
        word = "".join(
            rng.choice("bcdfghklmnprstvwz") + rng.choice("aeiou")
            for _ in range(rng.randint(*syllables))
        ) + rng.choice(["", "n", "r", "t", "l"])
        word += ending
        if word not in used:
            used.add(word)
            words.append(word)
    return words


@dataclass(frozen=True)
class Vocabulary:
    """The English side of the science world."""

    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    verbs: tuple[str, ...]
    prepositions: tuple[str, ...]

    @classmethod
    def build(cls, nouns: int, adjectives: int, verbs: int, prepositions: int) -> "Vocabulary":
        rng, used = random.Random("science-english"), set(DETERMINERS) | set(FUNCTION_WORDS)
        return cls(
            tuple(_invent(rng, nouns, used)),
            tuple(_invent(rng, adjectives, used, ending="y")),
            tuple(_invent(rng, verbs, used, syllables=(1, 2), ending="e")),
            tuple(_invent(rng, prepositions, used, syllables=(1, 1))),
        )

    def words(self) -> list[str]:
        plurals = [noun + "s" for noun in self.nouns]
        third = [verb + "s" for verb in self.verbs]
        return [
            *DETERMINERS,
            *FUNCTION_WORDS,
            *self.nouns,
            *plurals,
            *self.adjectives,
            *self.verbs,
            *third,
            *self.prepositions,
        ]


class Zipf:
    """Draws from a list with probability proportional to 1 / rank."""

    def __init__(self, items):
        self.items = list(items)
        self.weights = [1.0 / (rank + 1) for rank in range(len(self.items))]

    def __call__(self, rng: random.Random, exclude=()) -> str:
        while True:
            item = rng.choices(self.items, self.weights)[0]
            if item not in exclude:
                return item


class Renderer:
    """English, or a target language: lexicon, word order and morphology."""

    def __init__(self, code: str, vocabulary: Vocabulary):
        self.code, self.vocabulary = code, vocabulary
        self.settings = None if code == "en" else synthetic_settings(code)
        self.lexicon = self._lexicon()
        far = self.settings is not None and self.settings.cognate_share < 0.3
        self.plural, self.object_case = ("i", "um") if far else ("s", "")
        if self.settings is not None:
            self.plural, self.object_case = (
                self._script(self.plural),
                self._script(self.object_case),
            )

    def _script(self, word: str) -> str:
        from lightning_xllama.demo.world import _LETTERS

        table = _LETTERS.get(self.settings.script) if self.settings else None
        return "".join(table[c] for c in word) if table else word

    def _lexicon(self) -> dict[str, str]:
        stems = [
            *DETERMINERS,
            *FUNCTION_WORDS,
            *self.vocabulary.nouns,
            *self.vocabulary.adjectives,
            *self.vocabulary.verbs,
            *self.vocabulary.prepositions,
        ]
        if self.code == "en":
            return {word: word for word in stems}
        rng = random.Random(zlib.crc32(f"science:{self.code}".encode()))
        used: set[str] = set(self.vocabulary.words())
        lexicon = {}
        for word in stems:
            if rng.random() < self.settings.cognate_share:
                candidate = word.translate(str.maketrans("aeiou", "eioua")) + rng.choice("ao")
                while candidate in used:
                    candidate += rng.choice("ao")
                used.add(candidate)
            else:
                candidate = _invent(rng, 1, used)[0]
            lexicon[word] = self._script(candidate)
        return lexicon

    def word(self, english: str) -> str:
        return english if english in PUNCTUATION else self.lexicon[english]

    def phrase(self, phrase: NounPhrase, case: bool = False) -> list[str]:
        plural = phrase.determiner == "some"
        if self.code == "en":
            noun = phrase.noun + ("s" if plural else "")
        else:
            noun = self.word(phrase.noun) + (self.plural if plural else "")
            noun += self.object_case if case else ""
        adjective = [] if phrase.adjective is None else [self.word(phrase.adjective)]
        after = self.settings is not None and self.settings.adjective_after_noun
        body = [noun, *adjective] if after else [*adjective, noun]
        return [self.word(phrase.determiner), *body]

    def sentence_tokens(self, sentence: Clause) -> list[str]:
        plural_subject = sentence.subject.determiner == "some"
        if self.code == "en":
            verb = sentence.verb + ("" if plural_subject else "s")
        else:
            verb = self.word(sentence.verb)
        subject = self.phrase(sentence.subject)
        obj = self.phrase(sentence.object, case=True)
        place = (
            [self.word(sentence.preposition), *self.phrase(sentence.place)]
            if sentence.place is not None
            else []
        )
        if self.settings is not None and self.settings.word_order == "SOV":
            return [*subject, *obj, *place, verb, "."]
        return [*subject, verb, *obj, *place, "."]

    def sentence(self, sentence: Clause) -> str:
        return render(self.sentence_tokens(sentence))


class ScienceWorld(SyntheticWorld):
    """The demo world (:class:`SyntheticWorld`: its corpora and file writer) over a bigger grammar."""

    def __init__(
        self,
        targets,
        seed: int = 0,
        nouns: int = 240,
        adjectives: int = 60,
        verbs: int = 60,
        prepositions: int = 10,
    ):
        self.seed = seed
        self.vocabulary = Vocabulary.build(nouns, adjectives, verbs, prepositions)
        self.english = Renderer("en", self.vocabulary)
        self.targets = {code: Renderer(code, self.vocabulary) for code in targets}
        self._nouns, self._adjectives = (
            Zipf(self.vocabulary.nouns),
            Zipf(self.vocabulary.adjectives),
        )
        self._verbs = Zipf(self.vocabulary.verbs)

    def _phrase(self, rng: random.Random, exclude=()) -> NounPhrase:
        adjective = self._adjectives(rng) if rng.random() < 0.5 else None
        return NounPhrase(rng.choice(DETERMINERS), self._nouns(rng, exclude), adjective)

    def random_clause(self, rng: random.Random) -> Clause:
        """One clause of this grammar (the verb itself, nouns and adjectives by Zipf); the demo
        world's corpora draw their clauses here."""
        subject = self._phrase(rng)
        obj = self._phrase(rng, {subject.noun})
        if rng.random() < 0.3:
            place = self._phrase(rng, {subject.noun, obj.noun})
            preposition = rng.choice(self.vocabulary.prepositions)
            return Clause(subject, self._verbs(rng), obj, preposition, place)
        return Clause(subject, self._verbs(rng), obj)

    def pretraining_text(
        self, count: int, target_share: float = 0.1, bilingual_share: float = 0.01
    ) -> list[str]:
        """Mostly English; ``target_share`` per target language; a few bilingual lines."""
        return super().pretraining_text(count, target_share, bilingual_share)

    def instructions(self, count: int, lang: str = "en") -> list[dict]:
        """Subject and object questions; record ``i`` of a target language translates record ``i``
        of English."""
        renderer, rng, records = self.renderer(lang), self._rng("instructions"), []
        for sentence in self._clauses("instructions", count):
            if rng.random() < 0.5:
                question, answer = "what is the subject of this sentence ?", sentence.subject
                words = [renderer.word(w) for w in question.split()]
            else:
                words = [renderer.word("who"), renderer.word("does"), renderer.word("what"), "?"]
                answer = sentence.object
            records.append(
                {
                    "instruction": render(words),
                    "input": renderer.sentence(sentence),
                    "output": render(renderer.phrase(answer, case=answer is sentence.object)),
                }
            )
        return records

    def qa(self, lang: str, count: int, sentences_per_context: int = 3) -> dict:
        """SQuAD-style: which object a named subject's sentence has, in ``lang``."""
        renderer, rng, paragraphs = self.renderer(lang), self._rng(f"qa:{lang}"), []
        for i in range(count):
            sentences = self._distinct_subjects(rng, sentences_per_context)
            asked = rng.randrange(len(sentences))
            texts = [renderer.sentence(s) for s in sentences]
            answer = render(renderer.phrase(sentences[asked].object, case=True))
            context = " ".join(texts)
            offset = len(" ".join(texts[:asked])) + (1 if asked else 0)
            start = offset + texts[asked].index(answer)
            subject = render(renderer.phrase(sentences[asked].subject))
            question = render([renderer.word("what"), renderer.word("does"), subject, "?"])
            paragraphs.append(
                {
                    "context": context,
                    "qas": [
                        {
                            "id": f"sci-{lang}-{i}",
                            "question": question,
                            "answers": [{"text": answer, "answer_start": start}],
                        }
                    ],
                }
            )
        return {
            "version": "science-1",
            "data": [{"title": f"science-{lang}", "paragraphs": paragraphs}],
        }

    def lexicons(self) -> dict[str, list[str]]:
        found = {"en": sorted(set(self.vocabulary.words()))}
        for code, renderer in self.targets.items():
            words = set(renderer.lexicon.values())
            words |= {renderer.word(n) + renderer.plural for n in self.vocabulary.nouns}
            found[code] = sorted(words)
        return found
