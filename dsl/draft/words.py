"""Words of a sentence, normalised so that close variants compare equal.

"a friend subscribes" and "referred user subscribes" both become
``[@referee, subscrib]``: role nouns become a role marker, multi-word
synonyms become one concept, words are lower-cased and stemmed, and words
that carry no meaning here (articles, auxiliaries, prepositions, light verbs)
are dropped.  Field paths go through the same steps, so that
``referee.subscribed_at`` is ``[@referee, subscrib]`` too.  The tables are
deliberately small: a word that is not understood stays a content word, and a
content word that nothing matches is reported, never ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REFERRER, REFEREE, REFERRAL, YOU, THEY = "@referrer", "@referee", "@referral", "@you", "@they"
ROLE_MARKERS = frozenset({REFERRER, REFEREE, REFERRAL})
NOT = "!not"

# Multi-word expressions first (longest match wins), then single words.
_SYNONYMS: dict[str, str] = {
    # the referrer
    "referring user": REFERRER, "referring customer": REFERRER, "referring member": REFERRER,
    "referring friend": REFERRER, "referring person": REFERRER, "existing user": REFERRER,
    "existing customer": REFERRER, "existing member": REFERRER,
    "person who referred them": REFERRER, "whoever referred them": REFERRER,
    "person who invited them": REFERRER,
    "referrer": REFERRER, "referrers": REFERRER, "advocate": REFERRER, "advocates": REFERRER,
    "inviter": REFERRER, "inviters": REFERRER,
    # the referee
    "referred user": REFEREE, "referred users": REFEREE, "referred customer": REFEREE,
    "referred customers": REFEREE, "referred friend": REFEREE, "referred friends": REFEREE,
    "referred member": REFEREE, "referred person": REFEREE, "referred people": REFEREE,
    "new customer": REFEREE, "new customers": REFEREE, "new user": REFEREE,
    "new users": REFEREE, "new member": REFEREE, "new members": REFEREE,
    "invited friend": REFEREE, "invited friends": REFEREE, "invited user": REFEREE,
    "friend you referred": REFEREE, "friend you invited": REFEREE,
    "friend you refer": REFEREE, "friends you refer": REFEREE, "friend you invite": REFEREE,
    "friends you invite": REFEREE,
    "friends you referred": REFEREE, "friends you invited": REFEREE,
    "person you referred": REFEREE, "person you invited": REFEREE,
    "someone you refer": REFEREE, "someone you referred": REFEREE,
    "someone you invite": REFEREE, "someone you invited": REFEREE,
    "referee": REFEREE, "referees": REFEREE, "friend": REFEREE, "friends": REFEREE,
    "invitee": REFEREE, "invitees": REFEREE,
    # the referral itself
    "being referred": REFERRAL, "getting referred": REFERRAL, "was referred": REFERRAL,
    "were referred": REFERRAL, "being invited": REFERRAL, "referral date": REFERRAL,
    "the invite": REFERRAL, "invitation": REFERRAL, "referral": REFERRAL,
    "referrals": REFERRAL,
    # the same person on both sides
    "self-referral": f"{REFEREE} {REFERRER}", "self referral": f"{REFEREE} {REFERRER}",
    "refers themselves": f"{REFEREE} {REFERRER}", "refer themselves": f"{REFEREE} {REFERRER}",
    "referred themselves": f"{REFEREE} {REFERRER}",
    # events
    "signs up": "signup", "sign up": "signup", "signed up": "signup", "signing up": "signup",
    "sign-up": "signup", "sign-ups": "signup", "signups": "signup", "joins": "signup",
    "join": "signup", "joined": "signup", "joining": "signup", "registers": "signup",
    "register": "signup", "registered": "signup", "registering": "signup",
    "creates an account": "signup", "create an account": "signup",
    "opens an account": "signup", "open an account": "signup", "opened an account": "signup",
    "buys a subscription": "subscrib", "buy a subscription": "subscrib",
    "starts a subscription": "subscrib", "start a subscription": "subscrib",
    "takes out a subscription": "subscrib", "becomes a subscriber": "subscrib",
    "subscription": "subscrib", "subscriptions": "subscrib", "subscriber": "subscrib",
    "money back": "refund", "requests": "ask", "request": "ask", "requested": "ask",
    "requesting": "ask",
    "bought": "buy", "buys": "buy", "buying": "buy", "purchase": "buy", "purchases": "buy",
    "purchased": "buy", "purchasing": "buy",
    "yearly": "annual", "annually": "annual", "1st": "first",
    "verification": "verifi", "cancelled": "cancel", "canceled": "cancel",
    "cancelling": "cancel", "canceling": "cancel",
    "made": "make", "got": "get", "took": "take", "gave": "give", "paid for": "buy",
}
_MAX_SYNONYM_WORDS = max(len(k.split()) for k in _SYNONYMS)

_PRONOUNS = frozenset("they them their theirs themselves he him his she her hers".split())
_SECOND_PERSON = frozenset("you your yours yourself".split())
_NEGATIONS = frozenset("not no never without".split())

# Dropped: they carry no meaning for matching once roles and negation are known.
STOPWORDS = frozenset(
    """a an the is are was were be been being am has have had having does do did doing
    will would shall should can could may might must who whom whose that which this these
    those it its of for to on in at by from with into as any some own just also already
    still there than successfully actually""".split()
)
# Light verbs: "makes a first payment" is "first payment".
LIGHT_VERBS = frozenset(
    "make makes making get gets getting take takes taking start starts started".split()
)
# Nouns that only restate the person: "a paid user" is "paid".
FILLER_NOUNS = frozenset("user users customer customers member members person people one "
                         "someone account".split())
# Field-name words that say how a value is stored, not what it is.
FIELD_WEAK = frozenset("at on date time timestamp ts creat is has flag amount count number".split())

_IRREGULAR = {"paid": "paid", "annual": "annual", "does": "do", "has": "have", "is": "is",
              "this": "this", "plus": "plus", "bonus": "bonus", "status": "status",
              "us": "us", "yes": "yes", "news": "news"}

_TOKEN = re.compile(r"[^\W\d][\w'’-]*|\d[\d,]*(?:\.\d+)?|\"[^\"]*\"")


def stem(word: str) -> str:
    """A light suffix stripper: subscribes/subscribed/subscribing -> subscrib."""
    if word in _IRREGULAR or len(word) <= 3 or word.startswith("@"):
        return _IRREGULAR.get(word, word)
    for suffix, repl in (("ies", "i"), ("ied", "i"), ("ing", ""), ("ed", ""), ("es", ""),
                         ("s", ""), ("y", "i"), ("e", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith("ss"):
                return word
            return word[: len(word) - len(suffix)] + repl
    return word


@dataclass(frozen=True)
class Word:
    """One normalised word and where it was written (``start``/``end`` in the sentence)."""

    norm: str  # a role marker, @they, @you, !not, a stem, or a raw value for quoted text
    raw: str
    start: int
    end: int

    @property
    def is_role(self) -> bool:
        return self.norm in ROLE_MARKERS or self.norm == YOU


def split_words(text: str, offset: int = 0) -> list[tuple[str, int, int]]:
    """Raw words with their positions; possessives and "n't" are split off."""
    out: list[tuple[str, int, int]] = []
    for m in _TOKEN.finditer(text):
        word, start = m.group(), offset + m.start()
        word = word.replace("’", "'")
        low = word.lower()
        if low.endswith("n't"):
            stem_part = {"won't": "will", "can't": "can"}.get(low, word[:-3])
            out.append((stem_part, start, start + len(word) - 3))
            out.append(("not", start + len(word) - 3, start + len(word)))
            continue
        if low.endswith("'s") or low.endswith("s'"):
            word = word[:-2] if low.endswith("'s") else word[:-1]
        out.append((word, start, start + len(word)))
    return out


def normalize(text: str, offset: int = 0) -> list[Word]:
    """Normalised words of ``text``, stopwords included (``content`` drops them)."""
    raw = split_words(text, offset)
    words: list[Word] = []
    i = 0
    while i < len(raw):
        for n in range(min(_MAX_SYNONYM_WORDS, len(raw) - i), 0, -1):
            key = " ".join(w.lower() for w, _, _ in raw[i:i + n])
            if n > 1 or key in _SYNONYMS:
                target = _SYNONYMS.get(key)
                if target is None:
                    continue
                start, end = raw[i][1], raw[i + n - 1][2]
                text_span = " ".join(w for w, _, _ in raw[i:i + n])
                words.extend(Word(t, text_span, start, end) for t in target.split())
                i += n
                break
        else:
            word, start, end = raw[i]
            words.append(Word(_classify(word), word, start, end))
            i += 1
    # "their friend", "your friend": the possessive is the friend's owner, not a role.
    out: list[Word] = []
    for j, w in enumerate(words):
        nxt = words[j + 1] if j + 1 < len(words) else None
        if w.norm in (THEY, YOU) and w.raw.lower() in {"their", "your", "his", "her"} and (
            nxt is not None and nxt.norm in ROLE_MARKERS
        ):
            continue
        out.append(w)
    return out


def _classify(word: str) -> str:
    low = word.lower()
    if low.startswith('"'):
        return low.strip('"')
    if low in _PRONOUNS:
        return THEY
    if low in _SECOND_PERSON:
        return YOU
    if low in _NEGATIONS:
        return NOT
    return stem(low)


def is_ignorable(word: Word) -> bool:
    low = word.raw.lower()
    return low in STOPWORDS or low in LIGHT_VERBS or word.norm in LIGHT_VERBS


def field_words(path: str) -> tuple[str | None, tuple[str, ...]]:
    """A path as (role marker, content words): referee.subscribed_at is (@referee, subscrib)."""
    segments = path.split(".")
    head = {"referrer": REFERRER, "referee": REFEREE, "referral": REFERRAL}.get(segments[0])
    rest = segments[1:] if head else segments
    text = " ".join(part.replace("_", " ") for part in rest)
    words = [
        w.norm for w in normalize(text)
        if not is_ignorable(w) and w.norm not in FIELD_WEAK and w.raw.lower() not in FILLER_NOUNS
    ]
    return head, tuple(words)


NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "forty": 40, "forty-five": 45, "fifty": 50, "sixty": 60,
    "ninety": 90,
}


_SLUG_SKIP = STOPWORDS | frozenset(
    "when if then once after their your and or give gives pay award issue credit grant "
    "within days day".split()
)


def slug(text: str, limit: int = 5) -> str:
    """A rule id from a sentence: its first content words, snake_case."""
    words = [w.lower() for w, _, _ in split_words(text)]
    kept = [re.sub(r"\W", "", w) for w in words if w not in _SLUG_SKIP]
    kept = [w for w in kept if w][:limit]
    name = "_".join(kept) or "draft"
    return name if name[0].isalpha() else f"draft_{name}"
