"""ask() on the seed article through the public API: answers, citations, retrieval, abstention, bad input.
The default reader's answers are checked through `default_engine`; the rest reads with the small one
(tests/conftest.py)."""

import math

import pytest
import torch

from rag import QuestionError, SettingsError, ask, get_engine
from rag.engine import Engine
from rag.config import ACCURATE_READER, DEFAULT_READER, READERS, SHIPPED_READER, Config
from rag.documents import make_document
from rag.normalize import normalize_answer

# Ten questions with their accepted answers (exact spans of the seed article).
TEN = [
    ("Who led the Russian delegation?", ["Vladimir Medinsky", "Presidential Aide Vladimir Medinsky"]),
    ("Who headed the Ukrainian delegation?", ["Rustem Umerov"]),
    ("Who is the Russian presidential spokesman?", ["Dmitry Peskov"]),
    ("Who is Turkey's foreign minister?", ["Hakan Fidan"]),
    ("How long did the talks last?", ["about 40 minutes", "40 minutes"]),
    ("When did the talks start?", ["8:37 p.m. local time", "8:37 p.m.", "8:37 p.m. local time (5:37 p.m. GMT)"]),
    ("Which news agency gathered the key information about the negotiations?", ["TASS"]),
    ("On what date did Istanbul host the second round of talks?", ["June 2"]),
    ("How many members does Ukraine's delegation have now?", ["14"]),
    ("What language were the talks held in?", ["Russian"]),
]
# Questions far from the article. (Near-topic unanswerables, e.g. "Which hotel hosted the
# negotiations?", are often still answered: see eval/results/seed_qa-*.md for the measured rate.)
UNANSWERABLE = [
    "What is the boiling point of mercury?",
    "What is the population of Istanbul?",
    "How many prisoners were released in July?",
]


def test_default_reader_is_the_accurate_one_rebuilt_from_its_shipped_change(default_engine):
    engine = default_engine
    assert engine.config.reader_model is None and DEFAULT_READER == "accurate"
    assert engine.reader.model_name == str(ACCURATE_READER)
    assert (ACCURATE_READER / "delta.safetensors").is_file()  # the change; the encoder comes from its packages
    assert engine.config.threshold == READERS["accurate"].threshold


def test_each_shipped_reader_is_chosen_by_name_with_its_own_threshold(default_engine):
    engine = default_engine
    small = engine.with_reader("small")
    assert small.reader.model_name == str(SHIPPED_READER) and (SHIPPED_READER / "model.safetensors").is_file()
    assert small.config.threshold == READERS["small"].threshold != READERS["accurate"].threshold
    assert small.embedder is engine.embedder and small.library is engine.library  # one more model, not an engine
    answer = small.ask("Who led the Russian delegation?")
    assert answer.text.endswith("Vladimir Medinsky") and not answer.abstained
    assert Config(reader_model="small", abstain_threshold=0.3).threshold == 0.3  # a threshold set wins
    # ... and its own early stop: how sure the first passage's answer must be to read no further.
    assert small.config.early_stop == READERS["small"].early_stop != READERS["accurate"].early_stop
    assert engine.config.early_stop == READERS["accurate"].early_stop
    assert Config(reader_model="small", early_stop_score=0.9).early_stop == 0.9
    for bad in (float("nan"), -0.1):
        with pytest.raises(SettingsError, match="early_stop_score"):
            Config(early_stop_score=bad)


def test_ask_answers_with_exact_spans_and_correct_citations(seed_text, default_engine):
    right = 0
    for question, golds in TEN:
        answer = default_engine.ask(question)
        assert 0.0 <= answer.score <= 1.0
        if answer.abstained or normalize_answer(answer.text) not in {normalize_answer(g) for g in golds}:
            continue
        c = answer.citations[0]
        assert seed_text[c.start:c.end] == c.sentence
        assert seed_text[c.answer_start:c.answer_end] == answer.text
        assert c.start <= c.answer_start < c.answer_end <= c.end
        right += 1
    # Issue 25's bar. The accurate reader answers all ten (2026-12-04); the small one 7/10: it names the
    # other delegation's head ("Andrey Yermak"), gives the second round's date for "When did the talks
    # start?" (the text says "kicked off") and "12 to 14" for how many members the delegation has now.
    assert right >= 9, f"{right}/10 answered exactly with a correct citation"


def test_the_example_from_the_readme(seed_text, default_engine):
    answer = default_engine.ask("Who led the Russian delegation?")
    assert answer.text.endswith("Vladimir Medinsky") and not answer.abstained
    assert answer.citations[0].sentence.startswith("Russia’s delegation was led by Presidential Aide")
    assert answer.citations[0].doc == "russia-ukraine-istanbul-talks-2025-07.txt"


def test_retrieval_finds_the_sentence_for_seed_questions(seed_qa):
    answerable = [q for q in seed_qa if q["answerable"]]
    assert len(answerable) >= 10
    engine = get_engine()
    found = 0
    for item in answerable:
        passages = engine.retriever.retrieve(engine.index(), item["question"], engine.config.top_k)
        found += any(any(a in p.text for a in item["answers"]) for p in passages)
    assert found == len(answerable)


def test_off_topic_questions_abstain_without_reading():
    answer = ask("What is the boiling point of mercury?")
    assert answer.abstained and answer.score == 0.0
    assert max(p.similarity for p in answer.passages) < get_engine().config.min_similarity


def test_more_passages_are_read_only_when_the_first_is_unsure():
    config = get_engine().config
    assert config.early_stop < math.inf and config.top_k > 1
    read_all = Engine(config.with_(early_stop_score=math.inf))
    sizes = set()
    for question, _ in TEN:
        answer = ask(question)
        sizes.add(len(answer.passages))
        if len(answer.passages) == 1:  # stopped early: the first passage held a confident answer
            assert answer.score >= config.early_stop and answer.text
            assert answer.citations[0].doc == answer.passages[0].doc
        else:
            assert len(answer.passages) == config.top_k
        assert len(read_all.ask(question).passages) == config.top_k
    assert 1 in sizes, "expected some answers from the first passage alone"


def test_the_first_batch_can_hold_the_best_two_passages():
    config = get_engine().config
    two_first = Engine(config.with_(first_read=2))
    sizes = set()
    for question, _ in TEN:
        answer = two_first.ask(question)
        sizes.add(len(answer.passages))
        if len(answer.passages) == 2:  # stopped after the first batch: one of the two was confident
            assert answer.score >= config.early_stop
    assert sizes <= {2, config.top_k} and 2 in sizes
    with pytest.raises(ValueError, match="first_read"):
        config.with_(first_read=0)


def test_later_passages_count_less():
    """rank_decay < 1 weighs spans of lower-ranked passages down: no answer gains confidence by it."""
    config = get_engine().config.with_(early_stop_score=math.inf)
    assert 0 < config.rank_decay < 1
    flat, decayed = Engine(config.with_(rank_decay=1.0)), Engine(config)
    lowered = 0
    for question, _ in TEN:
        a, b = flat.ask(question, threshold=0.0), decayed.ask(question, threshold=0.0)
        assert b.score <= a.score + 1e-6
        lowered += b.score < a.score - 1e-6
    assert lowered > 0, "expected some answers read beyond the first passage to be weighted down"


LIBRARY = ("Home | About | Contact us\n\nGreenfield Public Library\n\nOpening hours\n\n"
           "The library is open from 9 a.m. to 6 p.m. on weekdays and from 10 a.m. to 2 p.m. on Saturdays. "
           "It is closed on Sundays and public holidays.\n\nMembership\n\n"
           "Membership is free for residents of Greenfield. Non-residents pay an annual fee of £25.\n\n"
           "Adults may borrow up to 12 items at a time.\n\nChildren may borrow up to 6 items.")
LIGHTHOUSE = ("The Skerrymore Lighthouse stands on a granite reef eleven miles off the west coast. It was designed "
              "by the engineer Alan Stevenson and completed in 1844 after six years of work.\n\nThe tower's stones "
              "were cut on the island of Tiree and shipped to the reef, where the workers lived in a timber barracks "
              "raised on iron legs. A storm destroyed the first barracks in November 1838, but nobody was hurt.\n\n"
              "The light was first lit on 1 February 1844. Its lamp was visible for 18 nautical miles. In 1972 the "
              "light was automated and the last keepers left the rock.")


@pytest.mark.parametrize("name, text, question, expected", [
    # the page holds the question's words
    ("library.html", LIBRARY, "How much do non-residents pay?", "£25"),
    # "happened" is not in the text, but the sentence that answers holds the other two words and is close (0.50)
    ("lighthouse.txt", LIGHTHOUSE, "What happened in November 1838?", "storm destroyed the first barracks"),
])
def test_a_short_question_over_a_chunk_of_many_topics_is_still_read(name, text, question, expected):
    """The cosine of a short question with a chunk of several topics is under min_similarity
    (0.15 and 0.11 here), yet the chunk answers it: it must be read."""
    corpus = get_engine().library.build_corpus([make_document(name, text)])
    answer = ask(question, index=corpus)
    assert max(p.similarity for p in answer.passages) < get_engine().config.min_similarity
    assert expected in answer.text and expected in answer.citations[0].sentence
    assert ask("What is the boiling point of mercury?", index=corpus).reason.startswith("no passage")


def test_an_answer_stops_where_its_list_item_ends():
    """The reader reads "14 May\n2. Beta release" as a date "14 May 2"; no answer runs into the next item."""
    text = ("## Milestones\n1. Prototype ready by 14 May\n2. Beta release on 2 July\n"
            "3. Public launch planned for September\n")
    corpus = get_engine().library.build_corpus([make_document("notes.md", text)])
    answer = ask("When will the prototype be ready?", index=corpus)
    assert answer.text == "14 May"
    assert answer.citations[0].sentence == "1. Prototype ready by 14 May"  # the item with its number


FAQ = ("Home | Shop\n\nVoltline S2 electric scooter: frequently asked questions\n\nHow far can I ride on one charge?"
       "\n\nThe S2 has a range of up to 45 km in Eco mode, or about 30 km in Sport mode. Range depends on rider "
       "weight, temperature and hills.\n\nHow long does charging take?\n\nA full charge with the included 42 V "
       "charger takes about 6 hours. The optional fast charger cuts this to 3.5 hours.\n\nWhat is the top "
       "speed?\n\nThe top speed is limited to 25 km/h to comply with EU regulations.\n\nIs the scooter "
       "waterproof?\n\nThe S2 is rated IPX5: it resists splashes and light rain, but it must not be submerged "
       "or ridden through deep puddles.\n\nWhat does the warranty cover?\n\nThe frame is covered for 5 years, "
       "the battery and motor for 2 years. Tyres and brake pads are wear parts and are not covered.")


def test_a_faq_question_is_never_its_own_answer():
    """The reader, matching words, answered "How far" from the heading "How far can I ride on one charge?"."""
    corpus = get_engine().library.build_corpus([make_document("faq.html", FAQ)])
    answer = ask("How far can the scooter go on one charge?", index=corpus)
    assert "How far" not in answer.text + answer.reason
    assert not any(c.sentence.endswith("?") for c in answer.citations)
    # Nor is it the evidence for a yes/no question: the heading "Is the scooter waterproof?" was cited.
    evidence = ask("Is the scooter waterproof?", index=corpus).citations[0].sentence
    assert evidence.startswith("The S2 is rated IPX5")


def test_one_place_read_as_two_spans_counts_once():
    """"3.5 hours" and a span running on to "25 km/h", cut back to "3.5 hours." where its paragraph ends,
    are one place in the text: pooled as two, they outscored the right answer."""
    corpus = get_engine().library.build_corpus([make_document("faq.html", FAQ)])
    answer = ask("What is the top speed of the S2?", index=corpus)
    assert answer.text == "25 km/h"


def test_a_yes_no_question_gets_no_span_but_the_sentence_to_judge_by(seed_text):
    """An extractive reader has no span that says yes or no: it answered "a one-on-one meeting" (0.17)."""
    answer = ask("Did the talks take place in Russian?")
    assert answer.abstained and answer.text == "" and "yes/no question" in answer.reason
    c = answer.citations[0]
    assert c.sentence == "The talks were held in Russian." == seed_text[c.start:c.end]
    assert ask("Was the meeting delayed?").citations[0].sentence.endswith("was delayed by more than an hour.")
    # Alternatives are answered by a span.
    assert ask("Were the talks held in Russian or English?").text == "Russian"


def test_a_misspelt_question_abstains_and_suggests_the_documents_spelling():
    """Never answered in the user's place (the unknown word may be another word, not a typo), but the
    respelt question is suggested when it would be answered."""
    answer = ask("Who led the Rusian delegaton?")
    assert answer.abstained
    assert answer.reason.endswith('did you mean "Who led the Russian delegation?"')
    assert not ask("Who led the Russian delegation?").abstained
    assert "did you mean" not in ask("What is the boiling point of mercury?").reason
    assert "did you mean" not in ask("Which hotel hosted the negotiations?").reason
    seed = get_engine().index()
    assert seed.respell("Who led the Rusian delegaton?") == "Who led the Russian delegation?"
    assert seed.respell("Which foreign ministers met?") == "Which foreign ministers met?"  # inflections are known


def test_an_answer_stays_inside_its_table_cell():
    """"How much does a bicycle cost?" over a fares table was answered "£180 | £90", two cells."""
    text = ("# Harbour Ferry timetable and fares\n\nThe Harbour Ferry links Westport and the island of Inchmore "
            "all year round.\n\n| Fare | Adult | Child |\n|------|-------|-------|\n| Single | £6.50 | £3.20 |\n"
            "| Return | £11.00 | £5.50 |\n| Season ticket | £180 | £90 |\n\nBicycles travel free. Dogs on leads "
            "are welcome but must stay on the outer deck.\n")
    corpus = get_engine().library.build_corpus([make_document("ferry.md", text)])
    assert "|" not in ask("How much does a bicycle cost?", index=corpus).text
    assert ask("How much is an adult return ticket?", index=corpus).text == "£11.00"


def test_a_markdown_table_row_is_judged_with_its_header():
    """The relevance gate compares sentences with the question; the row "| Student | €9 |" alone holds 1
    of the 3 content words of "What does a student ticket cost?", which was refused as unrelated."""
    text = ("# Harbour Museum\n\nThe museum is open every day except Monday, from 9:30 to 17:30.\n\n## Tickets\n\n"
            "| Ticket | Price |\n|---|---|\n| Adult | €14 |\n| Student | €9 |\n| Child (6–17) | €5 |\n\n"
            "Children under six enter free.\n")
    corpus = get_engine().library.build_corpus([make_document("museum.md", text)])
    answer = ask("What does a student ticket cost?", index=corpus)
    assert answer.text == "€9" and answer.citations[0].sentence == "| Student | €9 |"
    assert ask("What is the boiling point of mercury?", index=corpus).abstained


def test_a_dotted_abbreviation_keeps_its_last_period():
    """The reader's span ends before the final period of "a.m." (a token of its own); the answer keeps it."""
    text = "The museum opens at 10 a.m. on Sundays. Entry is free for children under twelve."
    corpus = get_engine().library.build_corpus([make_document("museum.txt", text)])
    answer = ask("When does the museum open on Sundays?", index=corpus)
    assert answer.text == "10 a.m."
    c = answer.citations[0]
    assert text[c.answer_start:c.answer_end] == "10 a.m." and c.sentence == "The museum opens at 10 a.m. on Sundays."


def test_an_answer_stays_inside_its_sentence():
    """The reader ran "`/var/log/orbit/access.log`. Log files" on into the next sentence, which holds
    the question's words; the answer stops where its sentence does, without the sentence's full stop."""
    text = ("# Orbit HTTP Server\n\nThe server binds to 127.0.0.1 by default.\n\n## Logging\n\nLogs are written "
            "to `/var/log/orbit/access.log`. Log files are rotated every night at midnight and kept for 14 days.\n")
    corpus = get_engine().library.build_corpus([make_document("orbit.md", text)])
    answer = ask("Where are the logs written?", index=corpus)
    assert answer.text == "/var/log/orbit/access.log"  # the code span's backticks are marks, not the answer
    assert answer.citations[0].sentence == "Logs are written to `/var/log/orbit/access.log`."


NORTHWIND = ("The Northwind team is based in **Oslo**, close to the harbour. It was founded in _2011_ by four "
             "engineers. Its product is written in Python, and the entry point is the `__init__` method of the "
             "class Robot.")


@pytest.mark.parametrize("name", ["notes.txt", "notes.md", "notes.html"])
def test_emphasis_marks_never_start_or_end_an_answer(name):
    """A .txt document saying `based in **Oslo**` was answered `**Oslo` (issue 29, defect 7): where
    nothing blanks the marks, they are still no part of the answer, in any format; a name made with
    underscores keeps them."""
    corpus = get_engine().library.build_corpus([make_document(name, NORTHWIND)])
    for question, expected in [("Where is the Northwind team based?", "Oslo"),
                               ("When was the Northwind team founded?", "2011")]:
        answer = ask(question, index=corpus)
        assert answer.text == expected, (name, question, answer.text)
        c = answer.citations[0]
        assert NORTHWIND[c.answer_start:c.answer_end] == expected
    # Whatever the span's confidence (the reader shipped on 2026-12-04 scores it 0.17 in the .html
    # variant, under its threshold 0.21): what is asserted is that the name keeps its underscores.
    assert "__init__" in ask("What is the entry point of the product?", index=corpus, threshold=0.0).text


def test_a_time_before_a_capitalised_word_does_not_end_the_sentence():
    """"6:00 p.m. Eastern Time" is one sentence: an answer is cut where its sentence ends, so a false
    sentence end after "p.m." would cut the answer, and the citation, in two."""
    text = "The show airs on Sundays from 12:00 to 6:00 p.m. Eastern Time on channel four. It began in 1994."
    corpus = get_engine().library.build_corpus([make_document("tv.txt", text)])
    answer = ask("On which channel does the show air?", index=corpus)
    assert answer.text.endswith("four")
    assert answer.citations[0].sentence == text.split(" It began")[0]


def test_a_how_many_question_gets_a_number_or_no_answer():
    """The article does not say how many civilians. A weaker reader offered "not only service members"
    (0.11), and a rule once dropped spans without a number for "how many"; both shipped readers now
    abstain here by themselves, and the rule went (eval/results/rules-sweep-accurate-full-2026-12-04.md)."""
    answer = ask("How many civilians will be exchanged?")
    assert answer.abstained, answer.text
    assert ask("How many experts are on Russia's team?").text == "four"


def test_abstains_on_questions_the_article_cannot_answer(default_engine):
    for question in UNANSWERABLE:
        answer = default_engine.ask(question)
        assert answer.abstained, (question, answer.text, answer.score)
        assert answer.text == "" and answer.citations == []
        assert answer.passages  # what it looked at is still there to show


def test_bad_questions_are_refused_clearly():
    for bad in ["", "   \n\t "]:
        with pytest.raises(QuestionError, match="empty"):
            ask(bad)
    with pytest.raises(QuestionError, match="2,000"):
        ask("why " * 600)


def test_second_ask_loads_nothing_again():
    engine = get_engine()
    ask("Who led the Russian delegation?")
    loaded = (engine.reader._model, engine.reader._onnx, engine.embedder._model, engine.embedder._onnx)
    corpus = engine.index()
    assert any(x is not None for x in loaded[:2])
    ask("Who headed the Ukrainian delegation?")
    assert (engine.reader._model, engine.reader._onnx, engine.embedder._model, engine.embedder._onnx) == loaded
    assert engine.index() is corpus


def test_onnx_runtime_answers_exactly_like_pytorch():
    assert get_engine().config.backend == "onnx"
    fast = Engine(get_engine().config.with_(reader_dtype="float32"))
    reference = Engine(fast.config.with_(backend="torch"))
    for question, _ in TEN + [(q, None) for q in UNANSWERABLE]:
        a, b = fast.ask(question), reference.ask(question)
        assert (a.text, a.abstained, [p.chunk_id for p in a.passages]) == \
            (b.text, b.abstained, [p.chunk_id for p in b.passages]), question
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert [p.similarity for p in a.passages] == pytest.approx([p.similarity for p in b.passages], abs=1e-5)
    assert fast.reader._onnx is not None and fast.embedder._onnx is not None  # the fast path really ran
    assert reference.reader._onnx is None and reference.embedder._onnx is None


def test_bfloat16_reader_answers_like_float32():
    """bfloat16 (RAG_READER_DTYPE=bfloat16: PyTorch, faster per passage on CPUs with AVX-512 BF16)
    must not change the answers."""
    fast = Engine(get_engine().config.with_(reader_dtype="bfloat16"))
    reference = Engine(get_engine().config.with_(reader_dtype="float32"))
    same = 0
    for question, _ in TEN + [(q, None) for q in UNANSWERABLE]:
        a, b = fast.ask(question), reference.ask(question)
        same += (a.text, a.abstained) == (b.text, b.abstained)
        assert a.score == pytest.approx(b.score, abs=0.05), question
    assert same >= len(TEN) + len(UNANSWERABLE) - 1
    assert fast.reader._model.dtype == torch.bfloat16 and fast.reader._onnx is None


def test_without_a_usable_onnx_cache_it_warns_and_runs_in_pytorch(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    engine = Engine(get_engine().config.with_(cache_dir=blocked, reader_dtype="float32"))
    with pytest.warns(UserWarning, match="running it in PyTorch"):
        answer = engine.ask("Who led the Russian delegation?")
    assert answer.text == ask("Who led the Russian delegation?").text
    assert engine.reader._onnx is None and engine.embedder._onnx is None
