"""The Email Activity API's ``query`` language, enough of it for reconciliation and tests.

SendGrid's GET /v3/messages takes ``query=<field><op><value>`` clauses joined by AND / OR, with
parentheses and NOT, e.g. ``unique_args['outreach_id']="o-42" AND status="delivered"`` or
``msg_id LIKE 'W9Pp0iHOTnS-eJi5t0vzkA%'`` (how SendGrid suggests finding a request's messages by
its X-Message-Id). Supported operators: = != LIKE, NOT LIKE, IN (...), NOT IN (...), BETWEEN
TIMESTAMP "..." AND TIMESTAMP "...", and < <= > >= on ``last_event_time``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from reactivation.sandbox.state import EmailMessage

Predicate = Callable[[EmailMessage], bool]

FIELDS = ("msg_id", "from_email", "subject", "to_email", "status", "template_id", "asm_group_id", "categories")


class QueryError(ValueError):
    """The query is not something the sandbox (or SendGrid) understands."""


_TOKENS = re.compile(
    r"""\s*(?:
        (?P<punct>[()\[\],])
      | (?P<op>!=|<>|>=|<=|=|>|<)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|“[^”]*”)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


def _tokenize(query: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    query = query.strip()
    while position < len(query):
        match = _TOKENS.match(query, position)
        if not match or match.end() == position:
            raise QueryError(f"unexpected text at position {position}")
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "string":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        tokens.append((kind, text))
        position = match.end()
        while position < len(query) and query[position].isspace():
            position += 1
    return tokens


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"not a timestamp: {text!r} (use 2024-01-31T00:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _like(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        position = self.index + offset
        return self.tokens[position] if position < len(self.tokens) else None

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].upper() in words:
            self.index += 1
            return True
        return False

    def expect(self, kind: str, text: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (text is not None and token[1].upper() != text):
            wanted = text or kind
            raise QueryError(f"expected {wanted} at token {self.index + 1}")
        self.index += 1
        return token[1]

    def parse(self) -> Predicate:
        predicate = self.expression()
        if self.peek() is not None:
            raise QueryError(f"unexpected {self.peek()[1]!r} at token {self.index + 1}")  # type: ignore[index]
        return predicate

    def expression(self) -> Predicate:
        terms = [self.term()]
        while self.keyword("OR"):
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else (lambda m: any(t(m) for t in terms))

    def term(self) -> Predicate:
        factors = [self.factor()]
        while self.keyword("AND"):
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else (lambda m: all(f(m) for f in factors))

    def factor(self) -> Predicate:
        if self.keyword("NOT"):
            inner = self.factor()
            return lambda m: not inner(m)
        token = self.peek()
        if token == ("punct", "("):
            self.index += 1
            inner = self.expression()
            self.expect("punct", ")")
            return inner
        return self.comparison()

    def value(self) -> str:
        token = self.peek()
        if token and token[0] == "word" and token[1].upper() == "TIMESTAMP":
            self.index += 1
            return self.expect("string")
        if token and token[0] in ("string", "number"):
            self.index += 1
            return token[1]
        raise QueryError(f"expected a quoted value at token {self.index + 1}")

    def field(self) -> Callable[[EmailMessage], Any]:
        name = self.expect("word").lower()
        if name == "unique_args":
            self.expect("punct", "[")
            key = self.expect("string")
            self.expect("punct", "]")
            return lambda m: m.custom_args.get(key)
        if name == "last_event_time":
            return lambda m: datetime.fromtimestamp(int(m.last_event_time or m.created_at), UTC)
        if name == "categories":
            return lambda m: list(m.categories)
        if name in FIELDS:
            return lambda m: getattr(m, name)
        raise QueryError(f"the sandbox cannot filter on {name!r}; it knows {', '.join(FIELDS)}, unique_args['key']")

    def comparison(self) -> Predicate:
        start = self.index
        getter = self.field()
        is_time = self.tokens[start][1].lower() == "last_event_time"
        convert: Callable[[str], Any] = _timestamp if is_time else str
        negate = self.keyword("NOT")
        test: Callable[[Any], bool]
        if self.keyword("LIKE"):
            pattern = _like(self.expect("string"))
            test = lambda v: bool(pattern.fullmatch(str(v)))  # noqa: E731
        elif self.keyword("IN"):
            self.expect("punct", "(")
            options = {convert(self.value())}
            while self.peek() == ("punct", ","):
                self.index += 1
                options.add(convert(self.value()))
            self.expect("punct", ")")
            test = lambda v: v in options  # noqa: E731
        elif self.keyword("BETWEEN"):
            low = convert(self.value())
            self.expect("word", "AND")
            high = convert(self.value())
            test = lambda v: low <= v <= high  # noqa: E731
        elif not negate and self.peek() is not None and self.peek()[0] == "op":  # type: ignore[index]
            op = self.expect("op")
            if op not in ("=", "!=", "<>") and not is_time:
                raise QueryError(f"{op} only works on last_event_time")
            expected = convert(self.value())
            check = _OPERATORS[op]
            test = lambda v: check(v, expected)  # noqa: E731
        else:
            raise QueryError(f"expected an operator (=, !=, LIKE, IN, BETWEEN) at token {self.index + 1}")

        def matches(message: EmailMessage) -> bool:
            values = _values(getter(message), convert)
            hit = any(test(v) for v in values)
            return not hit if negate else hit

        return matches


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _values(value: Any, convert: Callable[[str], Any]) -> list[Any]:
    """A field's values for comparison: none for a missing value, each category for ``categories``."""
    if value is None:
        return []
    if isinstance(value, list):
        return [convert(str(v)) for v in value]
    return [value if isinstance(value, datetime) else convert(str(value))]


def parse_query(query: str | None) -> Predicate:
    """A predicate over stored messages; an empty query matches everything."""
    if query is None or not query.strip():
        return lambda m: True
    return _Parser(_tokenize(query)).parse()
