"""Reading files into text documents, with errors a user can act on.

Supported: .txt, .md, .html/.htm, .pdf (via pypdf), .docx (via python-docx). Text that is not
valid UTF-8 (nor, for an HTML page, in the charset it declares) is decoded with U+FFFD replacement
characters and a note on the document, so nothing is refused for one bad byte.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import DocumentError
from .schema import Document
from .sentences import split_sentences

MARKDOWN_SUFFIXES = {".md", ".markdown"}
TEXT_SUFFIXES = {".txt"} | MARKDOWN_SUFFIXES
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
WORD_SUFFIXES = {".docx"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | WORD_SUFFIXES
_MD_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\([^)\n]*\)")  # [text](target), ![alt](image)
_MD_MARKS = re.compile(r"""
    \*{3} | _{3} | \*\* | __ | `                     # bold italic, bold, code
    | (?<![\w*])\*(?=[^\s*]) | (?<=[^\s*])\*(?![\w*])   # *italic*, not "2 * 3" nor a "* item"
    | (?<!\w)_(?=[^\s_]) | (?<=[^\s_])_(?!\w)        # _italic_, not snake_case
""", re.VERBOSE)
_BLOCK_TAGS = ["p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
               "article", "header", "footer", "blockquote", "pre", "title", "dt", "dd", "figcaption", "nav", "main",
               "aside", "caption", "summary", "address"]


def make_document(name: str, text: str, notes: list[str] | None = None) -> Document:
    """A document from text already in memory; refuses text with nothing to read."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DocumentError(f"{name}: the document is empty (no text to index).")
    return Document(name=name, text=text, sentences=split_sentences(text), notes=list(notes or []))


def reading_view(name: str, text: str) -> str:
    """What the reader reads of a passage of the document `name`: for Markdown, the text with its
    inline markup (emphasis marks, backticks, link targets) blanked out, so that offsets stay the
    document's and the answer is cut from the document itself.

    The reader learned from plain prose: on SQuAD tuning paragraphs marked up at random, markup cost
    it 2.9 F1 and blanking it won back all but 0.3 (eval/results/markdown-reading-2026-11-26.md)."""
    if Path(name).suffix.lower() not in MARKDOWN_SUFFIXES:
        return text
    text = _MD_LINK.sub(_link_text, text)
    return _MD_MARKS.sub(lambda m: " " * len(m[0]), text)


def _link_text(link: re.Match) -> str:
    """`[text](target)` as ` text` and blanks, `![alt](image)` as `  alt` and blanks: the same length."""
    before = len(link[1]) + 1
    return " " * before + link[2] + " " * (len(link[0]) - before - len(link[2]))


def read_document(path: Path, name: str | None = None) -> Document:
    """One file as a Document named by its file name (or `name`)."""
    path = Path(path)
    name = name or path.name
    if not path.exists():
        raise DocumentError(f"{path}: no such file.")
    if not path.is_file():
        raise DocumentError(f"{path}: not a regular file.")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(
            f"{path}: unsupported file type '{suffix or '(none)'}'; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}."
        )
    data = path.read_bytes()
    if suffix in PDF_SUFFIXES:
        return make_document(name, _pdf_text(path, data))
    if suffix in WORD_SUFFIXES:
        return make_document(name, _docx_text(path, data))
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{path}: looks like a binary file, not {suffix} text.")
    if suffix in HTML_SUFFIXES:
        text, notes = _decode(data, declared=_declared_encoding(data))
        return make_document(name, _html_text(text), notes)
    text, notes = _decode(data)
    return make_document(name, text, notes)


def collect_files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files named directly, plus supported files found under folders (recursively).

    Returns the files and notes on what was skipped inside folders. A missing path is an error.
    """
    files, skipped = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise DocumentError(f"{path}: no such file or folder.")
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in child.relative_to(path).parts):
                    continue
                if child.suffix.lower() in SUPPORTED_SUFFIXES:
                    files.append(child)
                else:
                    skipped.append(f"{child}: skipped (unsupported type '{child.suffix or '(none)'}').")
        else:
            files.append(path)
    unique = {f.resolve(): f for f in reversed(files)}  # a file named twice (directly, inside a folder) once
    return [f for f in files if unique.get(f.resolve()) is f], skipped


def _decode(data: bytes, declared: str | None = None) -> tuple[str, list[str]]:
    """UTF-8, or else the encoding the file declares (an HTML page's charset), or else UTF-8 with
    U+FFFD for what does not decode, and a note saying so."""
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    if declared:
        try:
            return data.decode(declared), []
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("utf-8", errors="replace"), ["not valid UTF-8: undecodable bytes were replaced by U+FFFD"]


def _declared_encoding(html: bytes) -> str | None:
    """The charset an HTML page declares (<meta charset>, or http-equiv Content-Type), if any."""
    from bs4.dammit import EncodingDetector

    return EncodingDetector.find_declared_encoding(html, is_html=True)


def _html_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    for tag in soup.find_all(_BLOCK_TAGS):  # block elements end a line; inline ones (b, a, span) do not
        tag.insert_after("\n")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for cell in soup.find_all(["td", "th"]):  # a table row reads "DVDs | 1 week", not "DVDs1 week"
        if cell.find_previous_sibling(["td", "th"]) is not None:
            cell.insert_before(" | ")
    lines = (" ".join(line.split()) for line in soup.get_text().splitlines())
    return "\n\n".join(line for line in lines if line)  # each block its own paragraph: never joined as wrapped text


def _pdf_text(path: Path, data: bytes) -> str:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # an owner password alone still lets it be read
            raise DocumentError(f"{path.name}: the PDF is protected by a password; save a copy without it "
                                f"(e.g. qpdf --decrypt --password=... in.pdf out.pdf) and index that.")
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise DocumentError(f"{path}: not a readable PDF ({exc}).") from exc
    if not text.strip():
        raise DocumentError(f"{path.name}: the PDF has no text layer (scanned pages are images: run OCR on it "
                            f"first, e.g. with ocrmypdf).")
    return text


def _docx_text(path: Path, data: bytes) -> str:
    """A Word document's body in order: each paragraph its own paragraph, each table row a line of
    "cell | cell" (a merged cell once), as for HTML. Headers and footers are left out: page furniture."""
    import io
    import zipfile

    import docx
    from docx.opc.exceptions import OpcError
    from docx.table import Table

    try:
        body = docx.Document(io.BytesIO(data))
        blocks = []
        for item in body.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    cells = list({id(cell._tc): cell for cell in row.cells}.values())  # merged: one cell, repeated
                    blocks.append(" | ".join(" ".join(cell.text.split()) for cell in cells))
            else:
                blocks.append(" ".join(item.text.split()))
    except (OpcError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(f"{path}: not a readable Word document ({exc}).") from exc
    return "\n\n".join(block for block in blocks if block.strip(" |"))
