"""Alertmanager label matchers: ``severity=~"critical|page"``, ``env!=prod``, ``{a="b", c!~"d"}``.

This module reproduces Alertmanager's matcher syntax and semantics (``pkg/labels/matcher.go``,
the classic parser ``pkg/labels/parse.go``, the UTF-8 parser ``matcher/parse`` and the
switch between them in ``matcher/compat``) so that a matcher copied from ``alertmanager.yml``
selects exactly the same alerts here.

Parse modes (Alertmanager's ``--enable-feature`` flags):

``"fallback"`` (default, as in Alertmanager >= 0.27)
    Both parsers run. If the classic parser accepts the input its result is used (when the two
    parsers disagree, Alertmanager also keeps the classic result); otherwise the UTF-8 parser's
    result is used. So ``foo=~"\\d+"`` keeps working, while ``"host.name"="x"`` and
    ``{ a = b }`` are accepted through the UTF-8 parser. One consequence, faithful to
    Alertmanager: in this mode ``foo="\\u00e9"`` means the six characters ``\\u00e9``, and a
    single ``parse_matcher('a=b,c=d')`` has the value ``b,c=d``.
``"utf8"`` (``utf8-strict-mode``)
    Only the UTF-8 parser: values are Go string literals (``strconv.Unquote``: ``\\n``,
    ``\\t``, ``\\"``, ``\\\\``, ``\\xNN``, ``\\u00e9``, ``\\U0001f642``, octal), label names
    may be quoted UTF-8, unquoted text may not contain ``{}!=~,\\"'`` backtick or spaces.
``"classic"`` (``classic-mode``, Alertmanager <= 0.26)
    Only the classic parser: names are ``[a-zA-Z_:][a-zA-Z0-9_:]*``; only ``\\"``, ``\\\\``
    and ``\\n`` are escapes, any other backslash is literal.

A missing label is the empty string: ``foo=""`` matches when ``foo`` is absent, ``foo!=""``
requires it, ``foo=~".*"`` matches an absent label, ``foo=~".+"`` requires a non-empty one.

Regular expressions are compiled by RE2 (Google's C++ library, the model of Go's ``regexp``)
as Alertmanager compiles them: ``^(?:re)$``, matched with a search, so RE2's syntax and semantics
apply and matching takes linear time. See ``regex`` for the few things RE2 accepts and Go rejects
(they are rejected here too).

Deliberate differences from Alertmanager (kept small and on the safe side):

* An empty label name (``""="x"``, accepted by Alertmanager's UTF-8 parser) is an error: no
  Prometheus label has an empty name, so such a matcher is always a mistake.
* RE2 (C++) and Go's ``regexp`` still differ in a few corners: RE2 refuses a pattern whose
  compiled program exceeds its memory budget (``\\pL{1000}``), accepts nesting deeper than
  Go's 1000 levels, and its Unicode tables may be a Unicode version apart from Go's.
* When both parsers reject an input in fallback mode, Alertmanager reports the classic parser's
  "bad matcher format"; we report the UTF-8 parser's diagnosis (it names what was expected and
  where), or the regex error if either parser got as far as compiling the regex.

The package, from the top down: ``matcher`` (the Matcher type and the parsing API), ``classic``
and ``utf8`` (the two parsers), ``spec`` (what a parser hands back), ``syntax`` (operators,
errors, Go's characters and quoting) and ``regex`` (matcher regexes, compiled by RE2).
"""

from __future__ import annotations

from rules.matchers.matcher import (
    Matcher,
    MatcherList,
    format_matchers,
    matches_all,
    parse_matcher,
    parse_matchers,
    sort_matchers,
)
from rules.matchers.syntax import MatcherError, MatchType, ParseMode

__all__ = [
    "MatchType",
    "Matcher",
    "MatcherError",
    "MatcherList",
    "ParseMode",
    "format_matchers",
    "matches_all",
    "parse_matcher",
    "parse_matchers",
    "sort_matchers",
]
