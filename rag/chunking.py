"""Splitting documents into overlapping, sentence-aware chunks that remember their offsets."""

from __future__ import annotations

from .schema import Chunk, Document

# Paragraphs first, then sentence ends, then lines (list items; a line of hard-wrapped text is not a
# unit), then words: a chunk breaks mid-sentence only when one sentence alone is longer than the
# chunk size.
_SEPARATORS = ["\n\n", r"(?<=[.!?])\s+", "\n", r"(?<=[;:,])\s+", " ", ""]


def chunk_documents(docs: list[Document], chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        separators=_SEPARATORS,
        is_separator_regex=True,
        keep_separator="end",
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        add_start_index=True,
        strip_whitespace=True,
    )
    chunks = []
    for doc_id, doc in enumerate(docs):
        for piece in splitter.create_documents([doc.text]):
            start = piece.metadata["start_index"]
            text = piece.page_content
            if start < 0 or doc.text[start : start + len(text)] != text:
                start = doc.text.find(text)  # never expected; keeps offsets exact if it happens
            chunks.append(Chunk(doc_id=doc_id, start=start, end=start + len(text), text=text))
    return chunks
