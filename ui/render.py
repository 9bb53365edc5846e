"""Turning answers into chat markdown and passage HTML. All document text is escaped here:
HTML entities for <, >, & and quotes, and numeric entities for markdown's special characters,
so a document shows exactly its characters and can neither run script nor restyle the page."""

from __future__ import annotations

import html
import re

from rag.engine import UNRELATED
from rag.schema import Answer, Citation, Document, Passage

_MARKDOWN_SPECIALS = re.compile(r"[\\`*_{}\[\]()#+\-.!|~$]")


def text(value: str) -> str:
    """Document text safe inside Gradio markdown (which also renders HTML), escaped exactly once.
    Quotes stay as they are: this text never lands inside an HTML attribute, and escaping them made
    `&#x27;`, whose `#` the markdown step then escaped again, so "Turkey's" showed as `Turkey&#x27;s`."""
    escaped = html.escape(value, quote=False)
    return _MARKDOWN_SPECIALS.sub(lambda m: f"&#{ord(m.group())};", escaped).replace("\n", " ")


def highlighted(sentence: str, start: int, end: int) -> str:
    """The sentence with [start, end) (sentence-relative) wrapped in <mark>."""
    return f"{text(sentence[:start])}<mark>{text(sentence[start:end])}</mark>{text(sentence[end:])}"


def citation_label(number: int, c: Citation) -> str:
    """The plain-text label of a citation in the sources list (Gradio renders it as text)."""
    snippet = c.sentence if len(c.sentence) <= 90 else c.sentence[:87] + "…"
    return f"[{number}] {c.doc} · {snippet}"


def passage_label(number: int, p: Passage) -> str:
    snippet = p.text if len(p.text) <= 90 else p.text[:87] + "…"
    return f"[{number}] {p.doc} · {' '.join(snippet.split())}"


def answer_markdown(answer: Answer, max_passages: int = 3) -> str:
    if answer.abstained and answer.citations:  # a yes/no question: the closest sentence, to judge by
        lines = ["**No span of the documents answers this question.**", f"({text(answer.reason)})", ""]
        lines += [f"[{i}] {text(c.sentence)} <small>— *{text(c.doc)}*, characters {c.start}–{c.end}</small>"
                  for i, c in enumerate(answer.citations, start=1)]
        return "\n".join(lines)
    if answer.abstained:
        lines = ["**The documents do not answer this question.**", f"({text(answer.reason)})"]
        if answer.passages and answer.reason != UNRELATED:  # passages read, not ones found unrelated
            lines += ["", "Closest passages looked at:"]
            for i, p in enumerate(answer.passages[:max_passages], start=1):
                snippet = p.text if len(p.text) <= 240 else p.text[:237] + "…"
                lines.append(f"{i}. *{text(p.doc)}*: {text(snippet)}")
        return "\n".join(lines)
    lines = [f"**{text(answer.text)}**  ", f"confidence {answer.score:.2f}", ""]
    for i, c in enumerate(answer.citations, start=1):
        body = highlighted(c.sentence, c.answer_start - c.start, c.answer_end - c.start)
        lines.append(f"[{i}] {body} <small>— *{text(c.doc)}*, characters {c.start}–{c.end}</small>")
        lines.append("")
    lines.append("<small>Click this answer or a source on the right to read it in its paragraph.</small>")
    return "\n".join(lines)


def paragraph_bounds(doc_text: str, start: int, end: int) -> tuple[int, int]:
    """The paragraph (text between blank lines, else between line breaks) around [start, end)."""
    for sep in ("\n\n", "\n"):
        p_start = doc_text.rfind(sep, 0, start)
        p_end = doc_text.find(sep, end)
        p_start = 0 if p_start < 0 else p_start + len(sep)
        p_end = len(doc_text) if p_end < 0 else p_end
        if p_end - p_start <= 3000:
            return p_start, p_end
    return max(0, start - 1000), min(len(doc_text), end + 1000)


def passage_html(doc: Document, start: int, end: int, answer_start: int | None = None,
                 answer_end: int | None = None) -> str:
    """The paragraph around a cited sentence [start, end), the sentence marked, the answer in bold."""
    p_start, p_end = paragraph_bounds(doc.text, start, end)
    t = doc.text

    def esc(a: int, b: int) -> str:
        return html.escape(t[a:b]).replace("\n", "<br>")

    if answer_start is not None and start <= answer_start <= answer_end <= end:
        inner = f"{esc(start, answer_start)}<strong>{esc(answer_start, answer_end)}</strong>{esc(answer_end, end)}"
    else:
        inner = esc(start, end)
    return (f"<div class='passage'><div class='passage-doc'>{html.escape(doc.name)} · characters {start}–{end}</div>"
            f"<p>{esc(p_start, start)}<mark>{inner}</mark>{esc(end, p_end)}</p></div>")
