"""A local OpenAI-compatible judge for the tests: ``/v1/chat/completions`` on 127.0.0.1, scripted.

Each request first takes the next queued action, if any (sleep, an HTTP error, a given content,
a raw body), and otherwise answers with :func:`scripted_verdict`: an answer containing ``GOOD``
scores 8 (else 3) and wins a comparison (both or neither: a tie); a FairEval request gets a review
ending in the two assistants' scores; a correctness request is answered YES when the answer
contains ``GOOD``. A request for ``n`` completions gets ``n`` choices of that content. Every request is recorded with
its headers, so tests can check what was sent (both orders of a pair, the key in the header).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Union


@dataclass
class Sleep:
    """Wait this long before answering normally (longer than the client's timeout: a timeout)."""

    seconds: float


@dataclass
class Fail:
    """Answer with an HTTP error status (and headers such as ``Retry-After``)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Content:
    """Answer normally, with this message content (e.g. text that is not JSON)."""

    content: str


@dataclass
class RawBody:
    """Answer 200 with this body as it is (e.g. a truncated JSON document)."""

    body: bytes


Action = Union[Sleep, Fail, Content, RawBody]


def _between(text: str, start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), text, re.S)
    return match.group(1) if match else ""


def scripted_verdict(body: dict) -> str:
    """The judge's reply content: ``GOOD`` in an answer is what makes it good."""
    user = body["messages"][-1]["content"]
    if "[The Start of Assistant 1's Answer]" in user:
        scores = [
            8
            if "GOOD" in _between(user, f"[The Start of Assistant {n}'s Answer]", "[The End")
            else 3
            for n in (1, 2)
        ]
        return (
            "Evaluation evidence: scripted\n"
            f"Score of the Assistant 1: {scores[0]}\nScore of the Assistant 2: {scores[1]}"
        )
    if "Evaluation Form (YES or NO):" in user:
        return "YES" if "GOOD" in user.split("\nAnswer: ")[-1] else "NO"
    if "[Answer A]" in user:
        a = "GOOD" in _between(user, "[Answer A]", "[End of Answer A]")
        b = "GOOD" in _between(user, "[Answer B]", "[End of Answer B]")
        winner = "tie" if a == b else "A" if a else "B"
        return json.dumps({"winner": winner, "reason": "scripted"})
    good = "GOOD" in _between(user, "[Answer]", "[End of Answer]")
    return json.dumps({"score": 8 if good else 3, "reason": "scripted"})


class JudgeServer:
    """The server, started by ``with JudgeServer() as server:``; ``server.url`` is the base URL.

    Args:
        reply: the content of a normal answer, from the request body.
    """

    def __init__(self, reply: Callable[[dict], str] = scripted_verdict):
        self.reply = reply
        self.requests: list[dict] = []
        """Every request: ``{"body": parsed JSON, "headers": {lower-case name: value}}``."""
        self.actions: deque[Action] = deque()
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None

    def queue(self, *actions: Action) -> None:
        """Actions for the next requests, one each, in order."""
        with self._lock:
            self.actions.extend(actions)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def bodies(self) -> list[dict]:
        return [request["body"] for request in self.requests]

    def __enter__(self) -> "JudgeServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(
                        {"body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}
                    )
                    action = server.actions.popleft() if server.actions else None
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, b'{"error": {"message": "not found"}}')
                if isinstance(action, Sleep):
                    time.sleep(action.seconds)
                if isinstance(action, Fail):
                    error = {"error": {"message": f"scripted {action.status}", "type": "test"}}
                    return self._send(action.status, json.dumps(error).encode(), action.headers)
                if isinstance(action, RawBody):
                    return self._send(200, action.body)
                content = action.content if isinstance(action, Content) else server.reply(body)
                prompt = " ".join(m["content"] for m in body.get("messages", []))
                answer = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", ""),
                    "choices": [
                        {
                            "index": index,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                        for index in range(int(body.get("n") or 1))
                    ],
                    "usage": {
                        "prompt_tokens": len(prompt.split()),
                        "completion_tokens": len(content.split()),
                        "total_tokens": len(prompt.split()) + len(content.split()),
                    },
                }
                self._send(200, json.dumps(answer).encode())

            def _send(self, status: int, payload: bytes, headers: Optional[dict] = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): nothing to answer

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
