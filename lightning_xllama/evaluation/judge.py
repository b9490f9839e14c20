"""An LLM judge for open-ended instructions (the paper's MI-Eval, which asked ChatGPT), over any
OpenAI-compatible endpoint.

Three ways to judge. **Single answer**: the judge scores one answer from 1 to 10 with a short reason.
**Pairwise**: the judge picks the better of two answers (A, B or tie); every pair is asked in both
orders, (model, reference) and (reference, model), and the two verdicts are combined, so a judge that
prefers the first (or second) position cancels out. Either way the judge is told, in English, which
language the answer must be in, and that an answer in another language is a fault: the method's
known failure is a model answering a Chinese instruction in English. **FairEval** (the paper's
MI-Eval, x-LLM ``eval/mieval.eval.py``): the FairEval prompt scores two models' answers 1-10 each,
asked in both orders with several samples per request (temperature 1); a language gate comes
first: an answer that a language identifier does not find in the expected language loses without
a request.

The XQuAD correctness judge (x-LLM ``eval/xquad.eval.py``) asks YES or NO: is a model's answer to a
passage and question correct (:func:`correctness_messages`).

Every request goes through :class:`JudgeClient`: the ``openai`` client with its own retries off, so
the retry policy is this module's (exponential backoff, ``Retry-After`` on 429 honoured up to a
cap), and a reply whose JSON is missing or malformed counts as a failed attempt. A cache of valid
replies (JSON lines keyed by a hash of judge model, prompt and sampling settings) makes a re-run
cost no requests. The API key is read from an environment variable whose *name* is configured; the
key itself is never stored, logged or written.

A failed judgement (after its retries) is counted by kind and left out of the scores; nothing here
raises on endpoint failures, so a training run never stops because the judge is down.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import os
import random
import re
import threading
import time
import urllib.parse
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

from lightning_xllama.languages import get_language

JudgeMode = Literal["single", "pairwise", "faireval"]
MODES = ("single", "pairwise", "faireval")

FAILURE_KINDS = (
    "timeout",
    "rate_limit",
    "server_error",
    "client_error",
    "connection",
    "malformed_json",
    "other",
)
"""Why a judgement attempt failed: no reply in time; HTTP 429; HTTP 5xx; another HTTP 4xx (a
wrong key, model or URL: not retried); no connection; a reply (body or content) that is not the
expected JSON; anything else."""

RETRIED = frozenset({"timeout", "rate_limit", "server_error", "connection", "malformed_json"})
"""Failure kinds worth another attempt; a 4xx other than 429 will fail the same way again."""

NO_KEY = "no-key"
"""The key sent when ``api_key_env`` is None (local servers that check none; the client needs one)."""


# --- the judge's instructions, per language ------------------------------------------------

LANGUAGE_NOTES: dict[str, str] = {
    "ar": "Expect Arabic script (Modern Standard Arabic or a widely understood dialect); Arabic "
    "written in Latin letters counts as another language.",
    "el": "Expect the Greek alphabet; Greek written in Latin letters (Greeklish) counts as another "
    "language.",
    "hi": "Expect Hindi in Devanagari script; romanised Hindi (Latin letters) counts as another "
    "language, common English loanwords do not.",
    "tr": "Expect Turkish with its own letters (ç, ğ, ı, İ, ö, ş, ü); missing diacritics are a "
    "fluency fault, not another language.",
    "vi": "Expect Vietnamese with its diacritics (tone marks); text without them is a fluency "
    "fault, not another language.",
    "zh": "Expect Chinese in Simplified characters; Traditional characters are a minor fault, not "
    "another language.",
    "ru": "Expect the Cyrillic alphabet; Russian in Latin letters counts as another language.",
}
"""What the judge should know about each language beyond its name (script, variants). Add your
own with :func:`register_language_note`."""


def register_language_note(code: str, note: str) -> None:
    """Tell the judge something about language ``code`` (replaces an earlier note)."""
    LANGUAGE_NOTES[code] = note


def language_note(code: str) -> str:
    """The note for ``code``: registered (a language plug-in registers one for languages a judge
    cannot know, such as the demo's artificial ones, naming their alphabet); else empty."""
    if code in LANGUAGE_NOTES:
        return LANGUAGE_NOTES[code]
    get_language(code)  # an unknown code fails here, listing the known ones
    return ""


def _language_rules(code: str, whose: str) -> str:
    name = get_language(code).name
    note = language_note(code)
    return (
        f"The instruction is for a {name} speaker: {whose} must be written in {name}. "
        + (f"{note} " if note else "")
        + f"An answer wholly or mostly in a language other than {name} is a serious fault, "
        "however good its content (names, code, formulas and words quoted from the instruction "
        "do not count)."
    )


def _task(instruction: str, input: str) -> str:
    text = f"[Instruction]\n{instruction}\n[End of Instruction]"
    if input:
        text += f"\n\n[Input]\n{input}\n[End of Input]"
    return text


def single_messages(instruction: str, input: str, lang: str, answer: str) -> list[dict]:
    """The chat messages asking for a 1-10 score of ``answer`` (expected in ``lang``)."""
    system = (
        "You are an impartial judge of how well an AI assistant follows a user's instruction. "
        "Rate the answer for helpfulness, correctness, relevance, level of detail and fluency. "
        + _language_rules(lang, "the answer")
        + " Give such an answer a score of at most 2. "
        'Reply with one JSON object and nothing else: {"score": <integer from 1 to 10>, '
        '"reason": "<one or two sentences in English>"}.'
    )
    user = f"{_task(instruction, input)}\n\n[Answer]\n{answer}\n[End of Answer]"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def pairwise_messages(
    instruction: str, input: str, lang: str, answer_a: str, answer_b: str
) -> list[dict]:
    """The chat messages asking which of two answers (A first, B second) is better."""
    system = (
        "You are an impartial judge comparing the answers of two AI assistants to the same user "
        "instruction. Prefer the answer that is more helpful, correct, relevant, detailed and "
        "fluent. Do not let the order of the answers or their length decide. "
        + _language_rules(lang, "each answer")
        + " An answer in the right language beats one in another language. "
        'Reply with one JSON object and nothing else: {"winner": "A", "B" or "tie", '
        '"reason": "<one or two sentences in English>"}.'
    )
    user = (
        f"{_task(instruction, input)}\n\n[Answer A]\n{answer_a}\n[End of Answer A]\n\n"
        f"[Answer B]\n{answer_b}\n[End of Answer B]"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


FAIREVAL_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
"""The FairEval system prompt (x-LLM ``eval/mieval.eval.py``, ``gen_prompt``)."""

FAIREVAL_TEMPLATE = (
    "[Question]\n{question}\n\n[The Start of Assistant 1's Answer]\n{answer_1}\n"
    "[The End of Assistant 1's Answer]\n\n[The Start of Assistant 2's Answer]\n{answer_2}\n"
    "[The End of Assistant 2's Answer]\n\n[System]\n{prompt}\n"
)
FAIREVAL_PROMPT = (
    "We would like to request your feedback on the performance of two AI assistants in response "
    "to the user question displayed above.\n"
    "    Please rate the helpfulness, relevance, accuracy, level of details of their responses.\n"
    "\n"
    "    Each assistant receives an overall score on a scale of 1 to 10, where a higher score "
    "indicates better overall performance.\n"
    "    Please first provide a comprehensive explanation of your evaluation, avoiding any "
    "potential bias and ensuring that the order in which the responses were presented does not "
    "affect your judgment. \n"
    "    Then, output two lines indicating the scores for Assistant 1 and 2, respectively.\n"
    "\n"
    "    Output with the following format:\n"
    "    Evaluation evidence: <your evluation explanation here>\n"
    "    Score of the Assistant 1: <score>\n"
    "    Score of the Assistant 2: <score>"
)
"""The FairEval instructions, byte for byte as the paper's script sends them (the indentation
of its triple-quoted string and the spelling included)."""

FAIREVAL_SAMPLES = 3
"""Completions per request in the paper's script (``-k 3``); temperature 1, up to 512 tokens."""


def faireval_question(instruction: str, input: str) -> str:
    """The question FairEval shows: instruction, a newline, input (a trailing newline when the
    input is empty, as the paper's script joins them)."""
    return f"{instruction}\n{input}"


def faireval_messages(question: str, answer_1: str, answer_2: str) -> list[dict]:
    """The chat messages asking FairEval to score Assistant 1's and Assistant 2's answers."""
    user = FAIREVAL_TEMPLATE.format(
        question=question, answer_1=answer_1, answer_2=answer_2, prompt=FAIREVAL_PROMPT
    )
    return [{"role": "system", "content": FAIREVAL_SYSTEM}, {"role": "user", "content": user}]


CORRECTNESS_TEMPLATE = """You will be given a context followed by question. You will then be given one potential answer to the question.
Your task is to tell if the answer is correct.
Please make sure you read and understand these instructions carefully. Please keep this document open while reviewing, and refer to it as needed.

Evaluation Criteria:
Correctness (YES or NO): Is the answer correct?
YES means the answer provides an accurate and valid response that aligns with the facts, logic, and requirements of the question. The answer should be in the same language as the context.
NO means otherwise.

Context: {context}
Answer: {answer}

Evaluation Form (YES or NO):
"""  # noqa: E501 - the paper's prompt, line for line
"""The XQuAD correctness prompt (x-LLM ``eval/xquad.eval.py``); ``context`` is the whole input of
the QA prompt (passage, question and answer label), ``answer`` the model's output."""

CORRECTNESS_QUESTIONS = 100
"""The paper judged the first 100 questions of each XQuAD language."""


def correctness_messages(context: str, answer: str) -> list[dict]:
    """One user message asking whether ``answer`` is correct (temperature 0 in the paper)."""
    return [
        {"role": "user", "content": CORRECTNESS_TEMPLATE.format(context=context, answer=answer)}
    ]


# --- reading the judge's reply -------------------------------------------------------------


def _json_object(content: str) -> Optional[dict]:
    """The first JSON object in ``content`` (code fences and text around it tolerated)."""
    start = content.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(content[start:])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def parse_single(content: str) -> Optional[dict]:
    """``{"score", "reason"}`` from a reply, or None when the score is missing or not in 1-10."""
    value = _json_object(content)
    if value is None:
        return None
    score = value.get("score")
    if isinstance(score, str):
        try:
            score = float(score.strip())
        except ValueError:
            return None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 10:
        return None
    return {"score": float(score), "reason": str(value.get("reason", ""))}


def parse_pairwise(content: str) -> Optional[dict]:
    """``{"winner": "A"|"B"|"tie", "reason"}`` from a reply, or None when the winner is not one of them."""
    value = _json_object(content)
    if value is None or not isinstance(value.get("winner"), str):
        return None
    winner = value["winner"].strip().strip("[]()'\"").upper()
    winner = {"A": "A", "B": "B", "TIE": "tie"}.get(winner)
    if winner is None:
        return None
    return {"winner": winner, "reason": str(value.get("reason", ""))}


def parse_faireval(content: str) -> Optional[dict]:
    """``{"scores": [assistant 1, assistant 2], "review"}`` from the last two lines of a FairEval
    review (the text after the last colon of each, as the paper's script reads them), or None."""
    lines = content.strip().split("\n")
    if len(lines) < 2:
        return None
    try:
        scores = [float(line.split(":")[-1].strip()) for line in lines[-2:]]
    except ValueError:
        return None
    if not all(math.isfinite(score) for score in scores):
        return None
    return {"scores": scores, "review": content}


def parse_yes_no(content: str) -> Optional[dict]:
    """``{"correct": bool, "reply"}``: the first ``YES`` or ``NO`` in the reply, as the paper's
    script reads it; a reply with neither counts as NO (the script's ``NO(Error)``)."""
    match = re.search(r"(YES)|(NO)", content)
    return {"correct": bool(match and match.group(0) == "YES"), "reply": content}


def combine_orders(model_first: str, reference_first: str) -> str:
    """``win``/``tie``/``loss`` of the model from the verdicts of both orders.

    In ``model_first`` the model's answer was A; in ``reference_first`` it was B. Each order gives
    the model 1, 0.5 or 0 points; more than half of the two is a win, less a loss, exactly half a
    tie, so contradictory verdicts (the judge picking the same position twice) make a tie.
    """
    points = {"A": 1.0, "tie": 0.5, "B": 0.0}[model_first]
    points += {"B": 1.0, "tie": 0.5, "A": 0.0}[reference_first]
    return "win" if points > 1 else "loss" if points < 1 else "tie"


# --- settings, cache, statistics, the client -----------------------------------------------


@dataclass(frozen=True)
class JudgeSettings:
    """Where the judge is and how to ask it; no secret in here (the key stays in the environment).

    Args:
        base_url: the OpenAI-compatible API root, e.g. ``https://api.openai.com/v1`` or a vLLM
            server's ``http://host:8000/v1``.
        model: the judge model's name at that endpoint, e.g. ``gpt-4o-mini``.
        api_key_env: NAME of the environment variable holding the API key; None for an endpoint
            that checks none. The key is read when requests are sent and never stored.
        timeout: seconds one request may take before it counts as a timeout.
        max_attempts: attempts per judgement (1: no retries).
        backoff_base: seconds before the first retry; doubled for each further one, with jitter.
        backoff_max: the longest backoff between attempts.
        retry_after_max: the longest wait a 429's ``Retry-After`` header can impose.
        temperature: the judge's sampling temperature (0: as repeatable as the endpoint allows).
        max_tokens: the judge's reply length limit.
        samples: completions per request (the API's ``n``); every one must be readable, and the
            verdict holds them all (FairEval: 3, averaged).
        json_mode: ask for ``response_format={"type": "json_object"}`` (OpenAI, vLLM; some
            endpoints reject it). Without it the first JSON object of the reply is read.
        concurrency: requests in flight at once.
        cache_dir: folder of the reply cache (``judge-cache.jsonl``); None: no cache.
    """

    base_url: str
    model: str
    api_key_env: Optional[str] = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_attempts: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    temperature: float = 0.0
    max_tokens: int = 256
    samples: int = 1
    json_mode: bool = False
    concurrency: int = 4
    cache_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.base_url or not self.model:
            raise ValueError("the judge needs a base_url (an OpenAI-compatible API) and a model")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        for name in ("backoff_base", "backoff_max", "retry_after_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> "JudgeSettings":
        """The settings among a constructor's ``arguments`` (its ``locals()``), by name."""
        return cls(**{f.name: arguments[f.name] for f in fields(cls)})

    def api_key(self) -> str:
        """The key from the environment; a clear error names the variable (never a value)."""
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ValueError(
                f"the judge's API key is read from the environment variable {self.api_key_env!r}, "
                "which is not set: export it, name another variable with api_key_env, or set "
                "api_key_env to null for an endpoint that needs no key"
            )
        return key


def public_url(url: str) -> str:
    """``url`` without a ``user:password@`` part, for reports."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def cache_key(
    model: str, messages: list[dict], temperature: float, max_tokens: int, samples: int = 1
) -> str:
    """The hash that names one judge request: model, full prompt and sampling settings."""
    request = {"model": model, "messages": messages, "temperature": temperature, "max": max_tokens}
    if samples != 1:
        request["n"] = samples
    text = json.dumps(
        request,
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JudgeCache:
    """Valid judge replies in ``{folder}/judge-cache.jsonl``, one ``{key, model, content}`` per line.

    Appended and flushed reply by reply, so an interrupted run keeps what it paid for; a torn
    last line is skipped on reading.
    """

    FILE = "judge-cache.jsonl"

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / self.FILE
        self._entries: dict[str, dict] = {}
        self._lock = threading.Lock()
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self._entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def get(self, key: str) -> Optional[dict]:
        return self._entries.get(key)

    def put(self, key: str, model: str, content: str) -> None:
        entry = {"key": key, "model": model, "content": content}
        with self._lock:
            self._entries[key] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


@dataclass
class JudgeStats:
    """What judging cost and how it failed (thread-safe counters)."""

    requests: int = 0
    """HTTP requests sent, retries included."""
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    """Judgements that failed after every attempt, by the kind of their last error."""
    attempt_errors: dict[str, int] = field(default_factory=dict)
    """Every failed attempt, retried or not, by kind."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)

    def count(self, table: str, kind: str) -> None:
        with self._lock:
            counts = getattr(self, table)
            counts[kind] = counts.get(kind, 0) + 1

    def __getstate__(self) -> dict:  # picklable without its lock: rank 0 broadcasts a run
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def as_dict(self) -> dict:
        with self._lock:
            return {
                f.name: dict(getattr(self, f.name))
                if isinstance(getattr(self, f.name), dict)
                else getattr(self, f.name)
                for f in fields(self)
                if not f.name.startswith("_")
            }


@dataclass
class JudgeCall:
    """One judgement: the parsed verdict, or the kind of failure after the last attempt."""

    verdict: Optional[dict]
    failure: Optional[str] = None
    content: Optional[str] = None
    """The judge's raw reply (the last one when it failed)."""
    cached: bool = False


def _header_seconds(headers: Mapping[str, str]) -> Optional[float]:
    """The wait a response asks for: ``retry-after-ms``, or ``retry-after`` in seconds or as a date."""
    try:
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return when.timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None


def classify(error: BaseException) -> tuple[str, Optional[float]]:
    """The failure kind of an exception from the ``openai`` client, and the wait it asks for."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return "timeout", None
    if isinstance(error, openai.APIConnectionError):
        return "connection", None
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 429:
            return "rate_limit", _header_seconds(error.response.headers)
        if status == 408:
            return "timeout", None
        return ("server_error" if status >= 500 else "client_error"), None
    if isinstance(error, (json.JSONDecodeError, openai.APIResponseValidationError)):
        return "malformed_json", None
    if type(error).__name__ == "ValidationError":  # pydantic, on a body of the wrong shape
        return "malformed_json", None
    return "other", None


def _contents(cached: str, samples: int) -> list[str]:
    """The completions of a cached reply: one content, or a JSON list of ``samples`` of them."""
    if samples == 1:
        return [cached]
    try:
        contents = json.loads(cached)
    except json.JSONDecodeError:
        return []
    return [str(c) for c in contents] if isinstance(contents, list) else []


class JudgeClient:
    """Sends judge requests with this package's retry policy, cache and accounting.

    Args:
        settings: endpoint, model, retries, cache (see :class:`JudgeSettings`).
        sleep: the wait between attempts (tests may pass a recorder).
    """

    def __init__(self, settings: JudgeSettings, sleep: Callable[[float], None] = time.sleep):
        import openai

        self.settings, self.sleep = settings, sleep
        self._client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key(),
            timeout=settings.timeout,
            max_retries=0,  # the retries are ours: backoff, Retry-After cap, JSON failures
        )
        self.cache = JudgeCache(settings.cache_dir) if settings.cache_dir else None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "JudgeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def backoff(self, attempt: int, asked: Optional[float]) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): a 429's own wait, capped at
        ``retry_after_max``, else ``backoff_base * 2**(attempt-1)`` up to ``backoff_max``, jittered."""
        if asked is not None:
            return min(max(asked, 0.0), self.settings.retry_after_max)
        delay = min(self.settings.backoff_base * 2 ** (attempt - 1), self.settings.backoff_max)
        return delay * random.uniform(0.5, 1.0)

    def _send(self, messages: list[dict], stats: JudgeStats) -> list[str]:
        """The contents of one request's completions (``samples`` of them)."""
        extra = {"response_format": {"type": "json_object"}} if self.settings.json_mode else {}
        if self.settings.samples != 1:
            extra["n"] = self.settings.samples
        stats.add(requests=1)
        response = self._client.chat.completions.create(
            model=self.settings.model,
            messages=messages,
            temperature=self.settings.temperature,
            max_tokens=self.settings.max_tokens,
            **extra,
        )
        usage = getattr(response, "usage", None)
        if usage is not None:
            stats.add(
                prompt_tokens=usage.prompt_tokens or 0,
                completion_tokens=usage.completion_tokens or 0,
            )
        contents = [choice.message.content for choice in response.choices or []]
        if len(contents) != self.settings.samples or any(c is None for c in contents):
            raise json.JSONDecodeError(
                f"the reply has {len(contents)} message contents, expected {self.settings.samples}",
                "",
                0,
            )
        return contents

    def _parse(self, contents: list[str], parse: Callable[[str], Optional[dict]]) -> Optional[dict]:
        """The verdict of one request: ``parse`` of its one completion, or with several samples
        ``{"samples": [verdict, ...]}`` (None when any of them is unreadable)."""
        verdicts = [parse(content) for content in contents]
        if len(verdicts) != self.settings.samples or any(v is None for v in verdicts):
            return None
        return verdicts[0] if self.settings.samples == 1 else {"samples": verdicts}

    def judge(
        self, messages: list[dict], parse: Callable[[str], Optional[dict]], stats: JudgeStats
    ) -> JudgeCall:
        """One judgement: from the cache, or asked with retries; never raises."""
        s = self.settings
        key = cache_key(s.model, messages, s.temperature, s.max_tokens, s.samples)
        if self.cache is not None:
            hit = self.cache.get(key)
            verdict = self._parse(_contents(hit["content"], s.samples), parse) if hit else None
            if verdict is not None:
                stats.add(cache_hits=1)
                return JudgeCall(verdict, content=hit["content"], cached=True)
        content, failure = None, "other"
        for attempt in range(1, s.max_attempts + 1):
            asked = None
            try:
                contents = self._send(messages, stats)
                content = (
                    contents[0] if s.samples == 1 else json.dumps(contents, ensure_ascii=False)
                )
                verdict = self._parse(contents, parse)
                if verdict is not None:
                    if self.cache is not None:
                        self.cache.put(key, s.model, content)
                    return JudgeCall(verdict, content=content)
                failure = "malformed_json"
            except Exception as error:  # noqa: BLE001 - every endpoint failure is counted, none raised
                failure, asked = classify(error)
            stats.count("attempt_errors", failure)
            if failure not in RETRIED or attempt == s.max_attempts:
                break
            stats.add(retries=1)
            self.sleep(self.backoff(attempt, asked))
        stats.count("failures", failure)
        return JudgeCall(None, failure=failure, content=content)


# --- judging a set of answers --------------------------------------------------------------


@dataclass(frozen=True)
class JudgeItem:
    """One answer to judge: the instruction it answers, its expected language, and for pairwise
    judging the reference answer it is compared with."""

    instruction: str
    input: str
    lang: str
    answer: str
    reference: Optional[str] = None


@dataclass
class JudgeRun:
    """The judgements of a set (one record per item, in order), the scores and the costs."""

    mode: JudgeMode
    records: list[dict]
    stats: JudgeStats
    scores: dict[str, float]
    """Single: ``score`` (mean, 1-10). Pairwise: ``win_rate`` (percent, ties count half),
    ``wins``/``ties``/``losses`` (counts). Empty when every judgement failed."""
    judged: int
    failed: int

    def report(self, settings: Optional[JudgeSettings] = None) -> dict:
        """A JSON-ready summary: costs, failures by kind and scores (no key, no prompts)."""
        report = {"mode": self.mode, "items": len(self.records), "judged": self.judged}
        report["failed"] = self.failed
        if settings is not None:
            report["judge_model"], report["base_url"] = (
                settings.model,
                public_url(settings.base_url),
            )
        return {**report, **self.stats.as_dict(), "scores": self.scores}

    def failure_message(self, what: str) -> Optional[str]:
        """A warning when judgements failed (None when none did)."""
        if not self.failed:
            return None
        kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.stats.failures.items()))
        if not self.judged:
            return (
                f"{what}: every judgement failed ({kinds}); no judge score for this pass. "
                "Check the endpoint (base_url, model, the API key variable) and its limits."
            )
        return (
            f"{what}: {self.failed} of {len(self.records)} answers could not be judged ({kinds}); "
            "they are left out of the scores"
        )


def judge_items(
    items: Sequence[JudgeItem],
    mode: JudgeMode,
    client: JudgeClient,
    identify: Optional[Callable[[str], Optional[str]]] = None,
) -> JudgeRun:
    """Judge ``items`` (pairwise and faireval: each in both orders) and score the ones that got
    verdicts; ``identify`` (a text's language code, None when undetermined) is faireval's
    language gate."""
    if mode not in MODES:
        raise ValueError(f"unknown judge mode {mode!r}; expected one of {MODES}")
    if mode == "faireval":
        if identify is None:
            raise ValueError("faireval judging needs a language identifier for its language gate")
        return faireval_items(items, client, identify)
    stats = JudgeStats()
    requests: list[tuple[list[dict], Callable[[str], Optional[dict]]]] = []
    for item in items:
        if mode == "single":
            requests.append(
                (
                    single_messages(item.instruction, item.input, item.lang, item.answer),
                    parse_single,
                )
            )
            continue
        if item.reference is None:
            raise ValueError("pairwise judging needs a reference answer for every item")
        for first, second in ((item.answer, item.reference), (item.reference, item.answer)):
            messages = pairwise_messages(item.instruction, item.input, item.lang, first, second)
            requests.append((messages, parse_pairwise))
    with ThreadPoolExecutor(max_workers=client.settings.concurrency) as pool:
        calls = list(pool.map(lambda request: client.judge(*request, stats), requests))

    records, outcomes, points = [], {"win": 0, "tie": 0, "loss": 0}, []
    for index, item in enumerate(items):
        record = {
            "instruction": item.instruction,
            "input": item.input,
            "lang": item.lang,
            "answer": item.answer,
        }
        if mode == "single":
            call = calls[index]
            record.update(
                score=call.verdict["score"] if call.verdict else None,
                reason=call.verdict["reason"] if call.verdict else None,
                failure=call.failure,
            )
            if call.verdict:
                points.append(call.verdict["score"])
        else:
            ab, ba = calls[2 * index], calls[2 * index + 1]
            outcome = (
                combine_orders(ab.verdict["winner"], ba.verdict["winner"])
                if (ab.verdict and ba.verdict)
                else None
            )
            record.update(
                reference=item.reference,
                model_first=ab.verdict["winner"] if ab.verdict else None,
                reference_first=ba.verdict["winner"] if ba.verdict else None,
                outcome=outcome,
                reasons=[c.verdict["reason"] if c.verdict else None for c in (ab, ba)],
                failure=ab.failure or ba.failure,
            )
            if outcome is not None:
                outcomes[outcome] += 1
                points.append(outcome)
        records.append(record)

    judged = len(points)
    scores: dict[str, float] = {}
    if judged and mode == "single":
        scores["score"] = sum(points) / judged
    elif judged:
        scores["win_rate"] = 100.0 * (outcomes["win"] + 0.5 * outcomes["tie"]) / judged
        scores.update({f"{k}{'es' if k == 'loss' else 's'}": v for k, v in outcomes.items()})
    return JudgeRun(mode, records, stats, scores, judged, len(items) - judged)


def faireval_outcome(model: float, opponent: float) -> str:
    """``win``/``tie``/``loss`` of the evaluated model from the two mean scores."""
    return "win" if model > opponent else "loss" if model < opponent else "tie"


def faireval_items(
    items: Sequence[JudgeItem],
    client: JudgeClient,
    identify: Callable[[str], Optional[str]],
) -> JudgeRun:
    """The paper's MI-Eval judging of the model's answers (``answer``) against another model's
    (``reference``), as x-LLM ``eval/mieval.eval.py`` runs it.

    First the language gate: an answer whose language (``identify``) is not the item's ``lang``
    (undetermined included) loses without a request (0 against 1); when both are off, the item is
    a tie (0 against 0). Otherwise FairEval scores both answers in both orders (model as Assistant
    1, then as Assistant 2), each request with ``client.settings.samples`` completions; each
    model's score is the mean over all completions of both orders, and the higher mean wins.
    An item whose requests fail is left out of the scores.
    """
    stats = JudgeStats()
    gates, requests = [], []
    for item in items:
        if item.reference is None:
            raise ValueError("faireval judging needs the other model's answer for every item")
        gate = (identify(item.answer) == item.lang, identify(item.reference) == item.lang)
        gates.append(gate)
        if all(gate):
            question = faireval_question(item.instruction, item.input)
            requests.append(faireval_messages(question, item.answer, item.reference))
            requests.append(faireval_messages(question, item.reference, item.answer))
    with ThreadPoolExecutor(max_workers=client.settings.concurrency) as pool:
        calls = iter(
            list(pool.map(lambda messages: client.judge(messages, parse_faireval, stats), requests))
        )

    records, outcomes, judged = [], {"win": 0, "tie": 0, "loss": 0}, 0
    for item, gate in zip(items, gates):
        record = {
            "instruction": item.instruction,
            "input": item.input,
            "lang": item.lang,
            "answer": item.answer,
            "reference": item.reference,
            "in_language": list(gate),
        }
        if all(gate):
            first, second = next(calls), next(calls)
            if first.verdict and second.verdict:
                pairs = [v["scores"] for v in _samples(first.verdict)]
                pairs += [v["scores"][::-1] for v in _samples(second.verdict)]
                model = sum(p[0] for p in pairs) / len(pairs)
                opponent = sum(p[1] for p in pairs) / len(pairs)
                outcome = faireval_outcome(model, opponent)
                reviews = [[v["review"] for v in _samples(c.verdict)] for c in (first, second)]
                record.update(score=[model, opponent], outcome=outcome, reviews=reviews)
            else:
                outcome = None
                record.update(outcome=None, failure=first.failure or second.failure)
        else:
            score = [float(gate[0]), float(gate[1])] if any(gate) else [0.0, 0.0]
            outcome = faireval_outcome(*score)
            which = "both answers" if not any(gate) else "answer" if not gate[0] else "reference"
            record.update(score=score, outcome=outcome, reviews=f"{which} not in {item.lang}")
        if outcome is not None:
            outcomes[outcome] += 1
            judged += 1
        records.append(record)
    scores: dict[str, float] = {}
    if judged:
        scores["win_rate"] = 100.0 * (outcomes["win"] + 0.5 * outcomes["tie"]) / judged
        scores.update({f"{k}{'es' if k == 'loss' else 's'}": v for k, v in outcomes.items()})
    return JudgeRun("faireval", records, stats, scores, judged, len(items) - judged)


def _samples(verdict: dict) -> list[dict]:
    """The verdicts of a request's completions (one, or ``{"samples": [...]}``)."""
    return verdict["samples"] if "samples" in verdict else [verdict]


@dataclass
class CorrectnessRun:
    """The YES/NO correctness judgements of a QA set's first questions."""

    records: list[dict]
    stats: JudgeStats
    judged: int
    correct: int

    @property
    def score(self) -> Optional[float]:
        """Percent of the judged answers found correct (None when none was judged)."""
        return 100.0 * self.correct / self.judged if self.judged else None


def judge_correctness(cases: Sequence[tuple[str, str]], client: JudgeClient) -> CorrectnessRun:
    """Ask YES or NO for each ``(context, answer)`` (x-LLM ``eval/xquad.eval.py``): an empty
    answer is NO without a request; an endpoint failure (after retries) is left out."""
    stats = JudgeStats()
    asked = [i for i, (_, answer) in enumerate(cases) if answer.strip()]
    with ThreadPoolExecutor(max_workers=client.settings.concurrency) as pool:
        calls = list(
            pool.map(
                lambda i: client.judge(correctness_messages(*cases[i]), parse_yes_no, stats), asked
            )
        )
    by_case = dict(zip(asked, calls))
    records, judged, correct = [], 0, 0
    for index, (context, answer) in enumerate(cases):
        call = by_case.get(index)
        if call is None:
            verdict: Optional[bool] = False
            reply = "empty answer"
        else:
            verdict = call.verdict["correct"] if call.verdict else None
            reply = call.content
        record = {"answer": answer, "correct": verdict, "reply": reply}
        if call is not None and call.failure:
            record["failure"] = call.failure
        if verdict is not None:
            judged += 1
            correct += int(verdict)
        records.append(record)
    return CorrectnessRun(records, stats, judged, correct)


def read_answers(path: str | Path) -> list[dict]:
    """Answer records from a JSONL file: ``instruction``, ``output`` (the answer), ``lang``, and
    optionally ``input`` and ``reference``; a bad line is named."""
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: invalid JSON ({err.msg})") from None
        missing = [k for k in ("instruction", "output", "lang") if k not in record]
        if missing:
            raise ValueError(f"{path}:{number}: missing field(s) {missing}")
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no answers to judge")
    return records


def judge_outputs(
    answers: str | Sequence[Mapping[str, Any]],
    settings: JudgeSettings,
    mode: JudgeMode = "single",
    output_dir: Optional[str] = None,
) -> dict:
    """Judge answers a model already gave (no model needed), per language; for an ``evaluate`` mode.

    Args:
        answers: a JSONL path or records, each with ``instruction``, ``output`` (the answer),
            ``lang`` (the expected answer language) and optionally ``input`` and ``reference``
            (required for ``pairwise``).
        settings: the judge endpoint, retries and cache.
        mode: ``single`` (1-10 scores), ``pairwise`` (against ``reference``, both orders) or
            ``faireval`` (the paper's: ``reference`` is another model's answer; language gate).
        output_dir: where ``judgements-{lang}.jsonl`` and ``judge-report.json`` go (None: nowhere).

    Returns:
        ``{"metrics": {"{lang}/score" | "{lang}/win_rate": value, "{lang}/failed": n},
        "report": {lang: JudgeRun.report()}, "warnings": [...]}``; a language whose every
        judgement failed has no score (a warning says why), never a NaN.
    """
    records = read_answers(answers) if isinstance(answers, (str, Path)) else list(answers)
    by_lang: dict[str, list[JudgeItem]] = {}
    for record in records:
        item = JudgeItem(
            record["instruction"],
            record.get("input", ""),
            record["lang"],
            record["output"],
            record.get("reference"),
        )
        get_language(item.lang)  # an unknown code fails before any request
        by_lang.setdefault(item.lang, []).append(item)
    result: dict[str, Any] = {"metrics": {}, "report": {}, "warnings": []}
    identify = None
    if mode == "faireval":
        from lightning_xllama.evaluation.off_target import build_identifier

        identify = build_identifier(list(by_lang)).identify
    runs = {}
    with JudgeClient(settings) as client:
        for lang, items in by_lang.items():
            runs[lang] = run = judge_items(items, mode, client, identify)
            for name in ("score", "win_rate"):
                if name in run.scores:
                    result["metrics"][f"{lang}/{name}"] = run.scores[name]
            result["metrics"][f"{lang}/failed"] = float(run.failed)
            result["report"][lang] = run.report(settings)
            message = run.failure_message(f"judge/{lang}")
            if message:
                result["warnings"].append(message)
                warnings.warn(message, stacklevel=2)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for lang, run in runs.items():
            write_jsonl(out / f"judgements-{lang}.jsonl", run.records)
        (out / "judge-report.json").write_text(
            json.dumps({k: result[k] for k in ("metrics", "report", "warnings")}, indent=1),
            encoding="utf-8",
        )
    return result


def write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
