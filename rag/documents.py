"""Reading files into text documents, with errors a user can act on.

Supported: .txt, .md, .html/.htm, .pdf (via pypdf), .docx (via python-docx). Text that is not
valid UTF-8 (nor, for an HTML page, in the charset it declares) is decoded with U+FFFD replacement
characters and a note on the document, so nothing is refused for one bad byte.
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from .errors import DocumentError, SettingsError
from .schema import Document
from .sentences import block_breaks, split_sentences

MARKDOWN_SUFFIXES = {".md", ".markdown"}
TEXT_SUFFIXES = {".txt"} | MARKDOWN_SUFFIXES
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
WORD_SUFFIXES = {".docx"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | WORD_SUFFIXES
_MD_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\([^)\n]*\)")  # [text](target), ![alt](image)
_MD_LITERAL = re.compile(r"`[^`\n]+`|(?<!\w)__[A-Za-z0-9]\w*?__(?!\w)")  # `code` on one line; __dunder__ names
_MD_MARKS = re.compile(r"""
    \*{3} | _{3} | \*\* | __ | `                     # bold italic, bold, code
    | (?<![\w*])\*(?=[^\s*]) | (?<=[^\s*])\*(?![\w*])   # *italic*, not "2 * 3" nor a "* item"
    | (?<!\w)_(?=[^\s_]) | (?<=[^\s_])_(?!\w)        # _italic_, not snake_case
""", re.VERBOSE)
_CLOSING = set(".!?:;,")  # a line ending in one of these needs no full stop to end it
_REPLACED = "not valid UTF-8: undecodable bytes were replaced by U+FFFD"
_SURROGATE = re.compile("[\ud800-\udfff]")
_BLOCK_TAGS = {"p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
               "article", "header", "footer", "blockquote", "pre", "title", "dt", "dd", "figcaption", "nav", "main",
               "aside", "caption", "summary", "address"}


def make_document(name: str, text: str, notes: list[str] | None = None) -> Document:
    """A document from text already in memory; refuses text with nothing to read."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DocumentError(f"{name}: the document is empty (no text to index).")
    return Document(name=name, text=text, sentences=split_sentences(text), notes=list(notes or []))


def table_row_in_context(name: str, text: str, start: int, end: int) -> str:
    """`text[start:end]` (a sentence), after its table's header row when it is a row of a Markdown table
    in a plain-text or Markdown document: "| Ticket | Price |\n| Student | €9 |". A row alone does not
    say what its values are, and the relevance gate, which compares sentences with the question,
    refused "What does a student ticket cost?" over the row "| Student | €9 |" (1 of 3 content words).
    (HTML and Word rows already carry their header in the text: see `_keyed`.) The header is looked
    for at most `_HEADER_LOOKBACK` characters up, so a long table costs no more than a short one."""
    sentence = text[start:end]
    if Path(name).suffix.lower() not in TEXT_SUFFIXES or not sentence.lstrip().startswith("|"):
        return sentence
    floor = max(0, start - _HEADER_LOOKBACK)
    line_start = text.rfind("\n", floor, start) + 1
    while line_start > floor:
        above_start = text.rfind("\n", floor, line_start - 1) + 1
        above = text[above_start:line_start - 1]
        if not above.lstrip().startswith("|"):
            return sentence
        if _MD_DELIMITER.fullmatch(above):
            header_start = text.rfind("\n", floor, above_start - 1) + 1
            header = text[header_start:above_start - 1] if above_start > floor else ""
            return f"{header}\n{sentence}" if header.lstrip().startswith("|") else sentence
        line_start = above_start
    return sentence


_HEADER_LOOKBACK = 20_000
_MD_DELIMITER = re.compile(r"\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*")


def reading_view(name: str, text: str) -> str:
    """What the reader reads of a passage of the document `name`, the same length as the passage so
    that offsets stay the document's and the answer is cut from the document itself:

    - for Markdown and plain text (where notes often carry Markdown's marks), the text with its
      inline markup (emphasis marks, backticks, link targets) blanked out. A code span's text and a
      name like `__init__` are not markup, and stay. The reader learned from plain prose: on SQuAD
      tuning paragraphs marked up at random, markup cost it 2.9 F1 and blanking it won back all but
      0.3 (eval/results/markdown-reading-2026-11-26.md); `based in **Oslo**, near the harbour` in a
      .txt was answered `Oslo**, near the harbour`.
    - in every format, the line break that ends a block (a paragraph, list item, heading or table
      row: where the sentence splitter ends a sentence at a line break) read as a full stop unless
      the line ends in punctuation: its tokenizer reads a line break as a space, so a list's items
      ran together into one sentence ("Free plan: 100 requests per minute Pro plan: 1,000 requests
      per minute"), which the reader learned from prose cannot tell apart
      (eval/results/layout-reading-2026-12-03.md). A break that only wraps a paragraph stays a space."""
    if Path(name).suffix.lower() in TEXT_SUFFIXES:
        text = _MD_LINK.sub(_link_text, text)
        pieces, last = [], 0
        for kept in _MD_LITERAL.finditer(text):
            literal = " " + kept[0][1:-1] + " " if kept[0].startswith("`") else kept[0]
            pieces += [_blank_marks(text[last:kept.start()]), literal]
            last = kept.end()
        text = "".join(pieces) + _blank_marks(text[last:])
    chars = list(text)
    for end in block_breaks(text):
        line = text[text.rfind("\n", 0, end) + 1:end].rstrip()
        if line and line[-1] not in _CLOSING:
            chars[end] = "."
    return "".join(chars)


def _blank_marks(text: str) -> str:
    return _MD_MARKS.sub(lambda m: " " * len(m[0]), text)


def _link_text(link: re.Match) -> str:
    """`[text](target)` as ` text` and blanks, `![alt](image)` as `  alt` and blanks: the same length."""
    before = len(link[1]) + 1
    return " " * before + link[2] + " " * (len(link[0]) - before - len(link[2]))


@dataclass(frozen=True)
class DocumentLimits:
    """What one document may cost, checked before the work it bounds: its size on disk (before it
    is read whole), a Word file's unpacked size (before it is unzipped: a 1.6 MB zip bomb held
    1.5 GB), and its text's length (before it is split and embedded). Each message names its limit
    and how to raise it."""

    max_file_mb: float = field(default_factory=lambda: _env_number("RAG_MAX_DOCUMENT_MB", 50.0))
    max_unpacked_mb: float = field(default_factory=lambda: _env_number("RAG_MAX_UNPACKED_MB", 200.0))
    max_chars: int = field(default_factory=lambda: int(_env_number("RAG_MAX_DOCUMENT_CHARS", 20_000_000)))


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number.") from None
    if not number > 0:
        raise SettingsError(f"{name}={value!r}: the limit must be above 0.")
    return number


def read_document(path: Path, name: str | None = None, limits: DocumentLimits | None = None) -> Document:
    """One file as a Document named by its file name (or `name`)."""
    path = Path(path)
    limits = limits or DocumentLimits()
    name = printable(name or path.name)
    if not path.exists():
        raise DocumentError(f"{_shown(path)}: no such file.")
    if not path.is_file():
        raise DocumentError(f"{_shown(path)}: not a regular file.")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(
            f"{_shown(path)}: unsupported file type '{suffix or '(none)'}'; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}."
        )
    size = path.stat().st_size
    if size > limits.max_file_mb * 1e6:
        raise DocumentError(f"{_shown(path)}: {size / 1e6:,.1f} MB, over the limit of {limits.max_file_mb:g} MB for "
                            f"one document; split it, or raise the limit with RAG_MAX_DOCUMENT_MB.")
    data = path.read_bytes()
    if suffix in PDF_SUFFIXES:
        text, notes = _pdf_text(path, data), []
    elif suffix in WORD_SUFFIXES:
        text, notes = _docx_text(path, data, limits), []
    else:
        text, notes = _text(path, data, suffix)
    if len(text) > limits.max_chars:
        raise DocumentError(f"{_shown(path)}: {len(text):,} characters of text, over the limit of "
                            f"{limits.max_chars:,} for one document; split it, or raise the limit with "
                            f"RAG_MAX_DOCUMENT_CHARS.")
    return make_document(name, text, notes)


def _text(path: Path, data: bytes, suffix: str) -> tuple[str, list[str]]:
    """A text, Markdown or HTML file's text: UTF-16 where a byte-order mark says so, and binary
    data (a NUL byte in the first 8 KB of a file without one) refused."""
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        try:
            text, notes = data.decode("utf-16"), []
        except UnicodeDecodeError:
            text, notes = data.decode("utf-16", errors="replace"), [_REPLACED]
    elif b"\x00" in data[:8192]:
        raise DocumentError(f"{_shown(path)}: looks like a binary file, not {suffix} text.")
    elif suffix in HTML_SUFFIXES:
        text, notes = _decode(data, declared=_declared_encoding(data))
    else:
        text, notes = _decode(data)
    return (_html_text(text) if suffix in HTML_SUFFIXES else text), notes


def printable(text: str) -> str:
    """Text that can be printed and stored: bytes of a file name or argument that are not UTF-8
    (Python keeps them as lone surrogates, which no UTF-8 writer accepts) become U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def collect_files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files named directly, plus supported files found under folders (recursively).

    Returns the files and notes on what was skipped inside folders: unsupported types, links that
    lead out of the folder (a link `passwd.txt -> /etc/passwd` must not put that file in the index)
    or nowhere, and what is not a regular file (a FIFO would block the reading). A link that stays
    inside the folder is followed. A missing path is an error.
    """
    files, skipped = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise DocumentError(f"{path}: no such file or folder.")
        if path.is_dir():
            root = path.resolve()
            for child in _walk(path):
                why = _not_collected(child, root)
                if why:
                    skipped.append(f"{_shown(child)}: skipped ({why}).")
                elif child.is_file():
                    files.append(child)
        else:
            files.append(path)
    unique = {f.resolve(): f for f in reversed(files)}  # a file named twice (directly, inside a folder) once
    return [f for f in files if unique.get(f.resolve()) is f], skipped


def _walk(folder: Path) -> list[Path]:
    """Everything under `folder` but hidden names, sorted; links to folders are listed, not entered
    (one inside the folder adds nothing new, and one outside is not read)."""
    found = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(top)
        found += [base / d for d in dirs if (base / d).is_symlink()]
        found += [base / n for n in names if not n.startswith(".")]
    return sorted(found)


def _not_collected(child: Path, root: Path) -> str | None:
    """Why a path found under the folder `root` is not read (None: it is, or it is a folder)."""
    if child.is_symlink() and not child.exists():
        return "a link to nothing"
    if not child.resolve().is_relative_to(root):
        return "a link to a place outside the folder"
    if child.is_dir():
        return None if child.resolve() != root else "a link to the folder itself"
    if not child.is_file():
        return "not a regular file"
    if child.suffix.lower() not in SUPPORTED_SUFFIXES:
        return f"unsupported type '{child.suffix or '(none)'}'"
    return None


def _shown(path: Path) -> str:
    return printable(str(path))


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
    return data.decode("utf-8", errors="replace"), [_REPLACED]


def _declared_encoding(html: bytes) -> str | None:
    """The charset an HTML page declares (<meta charset>, or http-equiv Content-Type), if any."""
    from bs4.dammit import EncodingDetector

    return EncodingDetector.find_declared_encoding(html, is_html=True)


def _html_text(html: str) -> str:
    """A page's visible text: each block element its own paragraph, table cells kept apart
    ("DVDs | 1 week") and keyed by their column's header cell when the table has a header row
    ("Item: DVDs | Loan period: 1 week"), scripts, styles and the head left out. Read as a stream of
    tags by the standard library's parser (the one BeautifulSoup uses), in time linear in the page:
    editing BeautifulSoup's tree costs time in proportion to its depth at every block, and 100,000
    nested <div> in a 1 MB page never finished."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n\n".join(line for line in lines if line)  # each block its own paragraph: never joined as wrapped text


@dataclass
class _Table:
    """An open <table>: where its rows are written, its header cells (one per column spanned) and the
    row being read."""

    outer: list[str]  # the page, or the cell of an enclosing table
    header: list[str] | None = None
    row: list[tuple[str, int, bool]] | None = None  # (text, columns spanned, is a <th>) of each cell so far
    cell: list[str] | None = None  # the text of the open cell
    cell_span: int = 1
    cell_is_head: bool = False


class _VisibleText(HTMLParser):
    """Collects the text a browser shows, with a line break around every block element.

    A table row is written out whole when it ends, its cells joined by " | ". When a table's first row
    is all header cells (<th>), each later cell is written "Header: cell": a row alone then says what its
    values are ("Ticket: Student | Price: €9"). The reader reads a row as a sentence; without its header
    it answered "How much is an adult ticket?" with the header cell "Price", and the relevance gate
    refused "What does a student ticket cost?" over the row "Student | €9"
    (eval/results/table-headers-2026-12-04.md)."""

    _HIDDEN = {"script", "style", "noscript", "template", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0  # open hidden elements around the current position
        self.tables: list[_Table] = []

    def _sink(self) -> list[str]:
        """Where text goes now: the open cell of the innermost table, or where that table is written."""
        if not self.tables:
            return self.parts
        table = self.tables[-1]
        return table.cell if table.cell is not None else table.outer

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "body":  # a head left open ends where the body starts
            self.hidden = 0
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in _BLOCK_TAGS or tag == "br":
            self._sink().append("\n")
        if tag == "table":
            self.tables.append(_Table(outer=self._sink()))
        elif tag == "tr" and self.tables:
            self._end_row(self.tables[-1])
            self.tables[-1].row = []
        elif tag in ("td", "th") and self.tables:
            table = self.tables[-1]
            self._end_cell(table)
            if table.row is None:
                table.row = []
            span = dict(attrs).get("colspan") or "1"
            table.cell, table.cell_is_head = [], tag == "th"
            table.cell_span = min(int(span), 100) if span.isdigit() and int(span) > 0 else 1

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag == "br" or tag in _BLOCK_TAGS:
            self._sink().append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        if tag in ("td", "th") and self.tables:
            self._end_cell(self.tables[-1])
        elif tag == "tr" and self.tables:
            self._end_row(self.tables[-1])
        elif tag == "table" and self.tables:
            self._end_row(self.tables.pop())
        if tag not in self._HIDDEN and tag in _BLOCK_TAGS:
            self._sink().append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self._sink().append(data)

    def close(self) -> None:
        super().close()
        while self.tables:
            self._end_row(self.tables.pop())

    @staticmethod
    def _end_cell(table: _Table) -> None:
        if table.cell is not None and table.row is not None:
            lines = ("".join(table.cell)).splitlines()  # a cell's own blocks stay lines: a page laid out in one cell
            text = "\n".join(" ".join(line.split()) for line in lines if line.strip())
            table.row.append((text, table.cell_span, table.cell_is_head))
        table.cell = None

    def _end_row(self, table: _Table) -> None:
        self._end_cell(table)
        if not table.row:
            table.row = None
            return
        if table.header is None:
            # The first row: the header when every cell of it is a <th>; otherwise the table has none.
            table.header = ([text for text, span, _ in table.row for _ in range(span)]
                            if all(head for _, _, head in table.row) else [])
            cells = [text for text, _, _ in table.row]
        else:
            cells, column = [], 0
            for text, span, head in table.row:
                key = table.header[column] if column < len(table.header) and not head else ""
                cells.append(_keyed(key, text))
                column += span
        table.row = None
        table.outer.append("\n" + " | ".join(cell for cell in cells if cell) + "\n")


_MAX_HEADER_CHARS = 60


def _keyed(header: str, cell: str) -> str:
    """A table cell as read: "Price: €9" under the header "Price". Left bare when either is empty, when
    they are the same, or when the header is too long to be a column's name (repeating it in every row
    would multiply a page's text: a 1 MB header cell over many short rows)."""
    if not header or not cell or header == cell or len(header) > _MAX_HEADER_CHARS:
        return cell
    return f"{header}: {cell}"


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
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise DocumentError(f"{_shown(path)}: not a readable PDF ({exc}).") from exc
    except Exception as exc:  # a parser meeting hostile input can raise anything; one file must not stop a folder
        raise DocumentError(f"{_shown(path)}: not a readable PDF ({type(exc).__name__}: {exc}).") from exc
    if not text.strip():
        raise DocumentError(f"{path.name}: the PDF has no text layer (scanned pages are images: run OCR on it "
                            f"first, e.g. with ocrmypdf).")
    return text


def _docx_text(path: Path, data: bytes, limits: DocumentLimits) -> str:
    """A Word document's body in order: each paragraph its own paragraph, each table row a line of
    "cell | cell" (a merged cell once), as for HTML. Headers and footers are left out: page furniture.
    Refused before unzipping when its parts unpack to more than the limit (a zip never yields more
    than the sizes it declares)."""
    import io
    import zipfile

    import docx
    from docx.opc.exceptions import OpcError
    from docx.oxml.ns import qn
    from docx.table import Table

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError(f"{_shown(path)}: not a readable Word document ({exc}).") from exc
    if unpacked > limits.max_unpacked_mb * 1e6:
        raise DocumentError(f"{_shown(path)}: unpacks to {unpacked / 1e6:,.0f} MB, over the limit of "
                            f"{limits.max_unpacked_mb:g} MB for one Word document; raise it with RAG_MAX_UNPACKED_MB.")
    try:
        body = docx.Document(io.BytesIO(data))
        blocks = []
        for item in body.iter_inner_content():
            if isinstance(item, Table):
                header: list[str] = []
                for n, row in enumerate(item.rows):
                    unique = {id(cell._tc): cell for cell in row.cells}.values()  # merged: one cell, repeated
                    cells = [" ".join(cell.text.split()) for cell in unique]
                    if n == 0 and row._tr.trPr is not None and row._tr.trPr.find(qn("w:tblHeader")) is not None:
                        header = cells  # marked "repeat as header row": keys the rows below, as <th> in HTML
                    elif len(header) == len(cells):
                        cells = [_keyed(key, text) for key, text in zip(header, cells)]
                    blocks.append(" | ".join(cells))
            else:
                blocks.append(" ".join(item.text.split()))
    except (OpcError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(f"{_shown(path)}: not a readable Word document ({exc}).") from exc
    except Exception as exc:  # lxml's limits (XMLSyntaxError) and whatever else hostile input provokes
        raise DocumentError(f"{_shown(path)}: not a readable Word document ({type(exc).__name__}: {exc}).") from exc
    return "\n\n".join(block for block in blocks if block.strip(" |"))
