"""TwiML documents: what a call says and asks, and the answers to Twilio's callbacks.

Built with ElementTree so every ``&``, ``<`` and ``"`` in titles and URLs is escaped (an alert
title is user data; the gather ``action`` URL carries ``&``). Characters XML 1.0 forbids are
dropped, since Twilio rejects a document that does not parse and the page would be lost.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

__all__ = [
    "MAX_TWIML",
    "call_twiml",
    "clean_text",
    "empty_twiml",
    "gather_twiml",
    "message_twiml",
    "say_twiml",
]

MAX_TWIML = 4000
"""Twilio's limit on the ``Twiml`` parameter of a call (error 32018 beyond it)."""

GATHER_TIMEOUT = 10  # seconds of silence after the prompt before the call falls through

_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>'
# Control characters other than tab / newline / CR, surrogates and the two non-characters.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPACE = re.compile(r"\s+")


def clean_text(text: str, limit: int | None = None) -> str:
    """``text`` on one line, without XML-invalid characters, cut to ``limit`` with ``...``."""
    out = _SPACE.sub(" ", _INVALID_XML.sub("", text)).strip()
    if limit is not None and len(out) > limit:
        out = out[: max(0, limit - 3)].rstrip() + "..."
    return out


def _doc(root: ET.Element) -> str:
    return _XML_DECL + ET.tostring(root, encoding="unicode", short_empty_elements=True)


def _say(parent: ET.Element, text: str, **attrs: str) -> None:
    el = ET.SubElement(parent, "Say", attrs)
    el.text = clean_text(text)


def _gather(parent: ET.Element, action_url: str) -> ET.Element:
    # Inline TwiML has no document URL, so the action must be absolute; POST carries Digits.
    return ET.SubElement(
        parent,
        "Gather",
        {
            "input": "dtmf",
            "numDigits": "1",
            "method": "POST",
            "timeout": str(GATHER_TIMEOUT),
            "action": action_url,
        },
    )


def call_twiml(speech: str, prompt: str, action_url: str, goodbye: str) -> str:
    """The page call: ``speech`` and ``prompt`` (twice) inside a one-digit ``<Gather>``.

    With no keypress Twilio falls through to ``goodbye`` and hangs up. ``speech`` is cut (with
    ``...``) to the longest that keeps the document within Twilio's 4000 characters; a URL too
    long even without it raises ValueError (a misconfigured public URL, nothing to truncate).
    """

    def render(text: str) -> str:
        root = ET.Element("Response")
        _say(_gather(root, action_url), f"{text} {prompt}", loop="2")
        _say(root, goodbye)
        ET.SubElement(root, "Hangup")
        return _doc(root)

    text = clean_text(speech)
    doc = render(text)
    if len(doc) <= MAX_TWIML:
        return doc
    if len(render("...")) > MAX_TWIML:
        raise ValueError(f"TwiML exceeds {MAX_TWIML} characters even without the message")
    # Escaping makes characters cost 1 to 6 each: search for the longest cut that fits.
    lo, hi = 3, len(text) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(render(clean_text(text, mid))) <= MAX_TWIML:
            lo = mid
        else:
            hi = mid - 1
    return render(clean_text(text, lo))


def gather_twiml(prompt: str, action_url: str, goodbye: str) -> str:
    """Ask again (after an unknown key): the prompt inside a fresh one-digit ``<Gather>``."""
    root = ET.Element("Response")
    _say(_gather(root, action_url), prompt)
    _say(root, goodbye)
    ET.SubElement(root, "Hangup")
    return _doc(root)


def say_twiml(text: str) -> str:
    """Say ``text`` and hang up (the answer to a keypress)."""
    root = ET.Element("Response")
    _say(root, text)
    ET.SubElement(root, "Hangup")
    return _doc(root)


def message_twiml(text: str | None) -> str:
    """The answer to an inbound SMS: a reply ``<Message>``, or nothing when ``text`` is None."""
    root = ET.Element("Response")
    if text is not None:
        ET.SubElement(root, "Message").text = clean_text(text)
    return _doc(root)


def empty_twiml() -> str:
    """An empty ``<Response/>``: acknowledged, nothing to do (status callbacks)."""
    return _doc(ET.Element("Response"))
