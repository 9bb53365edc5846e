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


_HOW_MANY = re.compile(r"\bhow many\b", re.IGNORECASE)
# A count, written as digits or in words ("six", "a dozen", "hundreds", "a third", "several", "none").
_QUANTITY = re.compile(
    r"\d|\b(zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundreds?|"
    r"thousands?|millions?|billions?|trillions?|dozens?|half|third|quarter|several|few|many|both|single|"
    r"once|twice|no|none|all|most|majority|couple|pair)\b", re.IGNORECASE)


def asks_for_a_count(question: str) -> bool:
    """"How many ...?": 544 of the 548 SQuAD train answers to one hold a number or a word for one."""
    return bool(_HOW_MANY.search(question))


def is_quantity(answer: str) -> bool:
    """Whether an answer names a count: digits, or a word for a number or an amount."""
    return bool(_QUANTITY.search(answer))
