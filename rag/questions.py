"""What kind of question was asked, from its first words; and which sentences of a document ask one."""

from __future__ import annotations

import re

# Auxiliary and modal verbs that open a yes/no question ("Did the talks take place in Russian?").
_AUXILIARIES = {"is", "are", "was", "were", "am", "do", "does", "did", "has", "have", "had", "can", "could",
                "will", "would", "should", "shall", "may", "might", "must", "isn't", "aren't", "wasn't",
                "weren't", "don't", "doesn't", "didn't", "hasn't", "haven't", "hadn't", "can't", "couldn't",
                "won't", "wouldn't", "shouldn't"}


def is_yes_no(question: str) -> bool:
    """A question answered by yes or no, which no span of the text can be: it opens with an
    auxiliary verb and offers no alternatives ("Were the talks held in Russian or English?" is
    answered by a span: "Russian")."""
    words = re.findall(r"[a-z']+", question.lower().replace("’", "'"))
    return bool(words) and words[0] in _AUXILIARIES and "or" not in words


def is_question(sentence: str) -> bool:
    """A document's sentence that asks rather than states (a FAQ's heading): never an answer or evidence."""
    return sentence.rstrip().endswith("?")
