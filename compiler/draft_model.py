"""The optional model backend of ``rules draft``: an OpenAI-compatible chat endpoint.

The model is given the sentence, the program's vocabulary and the field list,
and asked for rule text only.  Its answer is text like any other:
``compiler.draft`` parses, validates, round-trips and grounds it, and refuses
it if any of that fails.  Only the standard library is used (urllib), so the
backend adds no dependency; tests talk to a local stub server.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from dsl.draft import DraftError, Lexicon

log = logging.getLogger(__name__)

ENV_URL = "REFERRAL_DRAFT_MODEL"
ENV_NAME = "REFERRAL_DRAFT_MODEL_NAME"
ENV_KEY = "REFERRAL_DRAFT_API_KEY"
DEFAULT_NAME = "referral-draft"

_LANGUAGE = """\
Write one rule of this language and nothing else (no explanation, no DEFINE, no EXAMPLE):

RULE <id> "<description>"
  [PRIORITY n] [EXCLUSIVE]
  IF <condition>
  THEN ISSUE <money> REWARD TO referrer|referee
  [AND ISSUE <n>% OF <money field> REWARD TO referrer|referee [UP TO <money>]]
  [LIMIT <money> PER referrer|referee PER DAY|MONTH|YEAR|EVER]
  [HOLD <n> DAYS]
  [REVERSE IF <condition>]

Conditions: a vocabulary phrase as written below; <field> = "text" | number | <money> |
true | false; <field> != ... ; >, >=, <, <= for numbers, money and dates;
<field> IN ["a", "b"]; <date field> WITHIN <n> DAYS OF <date field>; AND, OR, NOT, ( ).
Money is written ₹1,000 (or INR 1000). Use only the amounts, people and conditions the
sentence states; if the sentence does not say something, leave it out."""


@dataclass(frozen=True)
class ChatModel:
    """One OpenAI-compatible endpoint (``.../v1/chat/completions``)."""

    url: str
    name: str = DEFAULT_NAME
    api_key: str | None = None
    timeout: float = 60.0

    @classmethod
    def from_env(cls, url: str | None) -> ChatModel | None:
        """The endpoint named by ``--model`` or ``REFERRAL_DRAFT_MODEL`` (None: builtin)."""
        url = url or os.environ.get(ENV_URL)
        if not url:
            return None
        return cls(url, os.environ.get(ENV_NAME) or DEFAULT_NAME, os.environ.get(ENV_KEY))

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")

    def complete(self, messages: list[dict[str, str]]) -> tuple[str, str]:
        """The answer's text and the model name the endpoint reports."""
        body = json.dumps(
            {"model": self.name, "messages": messages, "temperature": 0}
        ).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, body, headers, method="POST")
        log.debug("POST %s", self.endpoint)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data: Any = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise DraftError(f"model endpoint {self.endpoint} answered {e.code} {e.reason}") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DraftError(f"model endpoint {self.endpoint} unreachable: {reason}") from e
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DraftError(f"model endpoint {self.endpoint} did not answer JSON: {e}") from e
        try:
            text = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise DraftError(
                f"model endpoint {self.endpoint} answered without choices[0].message.content"
            ) from e
        if not isinstance(text, str):
            raise DraftError(f"model endpoint {self.endpoint} answered a non-text message")
        name = data.get("model") if isinstance(data, dict) else None
        return text, name if isinstance(name, str) and name else self.name


def prompt(sentence: str, lexicon: Lexicon) -> list[dict[str, str]]:
    """The chat messages: the language, the program's words and fields, the sentence."""
    phrases = "\n".join(f'- "{p.phrase}"' for p in lexicon.phrases) or "- (none)"
    fields = "\n".join(f"- {f.describe()}" for f in lexicon.fields.values()) or "- (none)"
    system = (
        f"{_LANGUAGE}\n\nVocabulary phrases of the program:\n{phrases}\n\n"
        f"Fields (records hold money as integer minor units):\n{fields}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": sentence}]


_FENCE = re.compile(r"```[\w-]*\n(.*?)```", re.S)


def answer_text(content: str) -> str:
    """The rule text of an answer: the first fenced block if there is one."""
    fenced = _FENCE.search(content)
    text = fenced.group(1) if fenced else content
    return text.strip() + "\n"


__all__ = ["ChatModel", "ENV_URL", "answer_text", "prompt"]
