"""Walk an incident record's facts and check each against the audit chain it cites.

Used by the report tests on a written log and on the twin. The chain is read from the files, with
the chain's own reader (`audit_files`, `iter_lines`, `record_hash`), not through the report.

A fact is a line of the summary (a block, for a site written a block per row) or of "Who did
what". Each must cite records (`[seq 1, 4-6]`), and for each fact:
- every cited record is in the chain, its content still hashes to its `hash`, and "Records
  cited" shows that hash;
- every time the fact states is a cited record's time (`ts`, `notified_at`), or a regulatory
  deadline counted from a cited declaration or notification;
- every cited record is named by the fact (or its section's title): one of its run, incident,
  site, device, flow or reference appears in it (a declaration: "from the declaration"; in "Who
  did what", the actor and the event).
The HTML form: every `class="fact"` element's `data-seqs` are the seqs its `[seq ...]` links go
to, and each leads to a row of "Records cited" with the chain's hash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from agent.audit.chain import audit_files, iter_lines, record_hash
from agent.audit.report import add_month

CITE = re.compile(r"\[seq ([0-9, -]+)\]")
MOMENT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
NAMING = ("run_id", "incident_id", "site", "sites", "device", "flow", "ref")
# statements of an absence: nothing to cite
ABSENT = (
    "- nothing the log records as degraded",
    "no flow verification is recorded",
    "- No incident in the selection",
)


HEADERS = ("Site  Runs", "Flow  Expected")  # a table's header line (narrow tables)


def chain_records(log_dir: Path) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for _file, _line, raw in iter_lines(audit_files(log_dir)):
        record = json.loads(raw)
        if isinstance(record.get("seq"), int):
            out[record["seq"]] = record
    return out


def expand(cited: str) -> list[int]:
    seqs: list[int] = []
    for part in cited.split(","):
        lo, _, hi = part.strip().partition("-")
        seqs += range(int(lo), int(hi or lo) + 1)
    return seqs


@dataclass
class Fact:
    context: str  # the section title
    text: str
    seqs: list[int] = field(default_factory=list)


def _underline(line: str) -> bool:
    return bool(line) and set(line) <= {"-", "="}


def text_facts(text: str) -> list[Fact]:
    """The facts of the text report's summary and "Who did what"."""
    lines = text.splitlines()
    start = lines.index("SUMMARY")
    end = lines.index("CONFIGURATION CHANGES")
    who = lines.index("Who did what")
    cited = lines.index("RECORDS CITED")
    body = [*lines[start:end], *lines[who:cited]]
    facts: list[Fact] = []
    context = ""
    for i, line in enumerate(body):
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if not line.strip() or _underline(line) or line.strip().startswith(HEADERS):
            continue
        if _underline(nxt):
            context = line
            continue
        if line.startswith("      ") and facts:
            facts[-1].text += "\n" + line.strip()
        else:
            facts.append(Fact(context, line))
    for fact in facts:
        fact.seqs = [s for found in CITE.findall(fact.text) for s in expand(found)]
    return facts


def cited_hashes(text: str) -> dict[int, str]:
    """seq -> hash as "Records cited" shows them."""
    section = text.split("RECORDS CITED", 1)[1]
    return {
        int(m[1]): m[2]
        for m in re.finditer(r"^  #(\d+)\s.*?sha256 ([0-9a-f]{64})", section, flags=re.M)
    }


def _moments(record: dict[str, Any]) -> set[datetime]:
    out = set()
    for key in ("ts", "notified_at"):
        if record.get(key):
            out.add(datetime.fromisoformat(str(record[key])).replace(microsecond=0))
    return out


def _deadlines(records: list[dict[str, Any]]) -> set[datetime]:
    """What a clock may state from these records: a declaration +0/24/72 h, a month after the
    notification or after the declaration's 72 h."""
    out: set[datetime] = set()
    for rec in records:
        for moment in _moments(rec):
            if rec["event"] == "incident.declared":
                out |= {moment + timedelta(hours=h) for h in (0, 24, 72)}
                out.add(add_month(moment + timedelta(hours=72)))
            if rec["event"] == "regulatory.notified":
                out.add(add_month(moment))
    return out


def _named(record: dict[str, Any], context: str, text: str) -> bool:
    if record["event"] == "incident.declared" and "from the declaration" in text:
        return True  # a time to contain counted from it
    if context == "Who did what":  # a line an actor: the records are that actor's
        return text.startswith(f"- {record.get('actor')}: ") and record["event"] in text
    text = context + "\n" + text
    for key in NAMING:
        value = record.get(key)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and v and v in text for v in values):
            return True
    return False


def check_text(text: str, log_dir: Path) -> list[Fact]:
    """Every fact of the text report traced to the chain; the facts, for more checks."""
    chain = chain_records(log_dir)
    hashes = cited_hashes(text)
    facts = text_facts(text)
    assert facts, "no fact found in the report"
    for fact in facts:
        if not fact.seqs:
            assert fact.text.startswith(ABSENT), f"a fact without a record: {fact.text!r}"
            continue
        records = []
        for seq in fact.seqs:
            assert seq in chain, f"{fact.text!r} cites seq {seq}, not in the chain"
            record = chain[seq]
            body = {k: v for k, v in record.items() if k != "hash"}
            assert record_hash(body) == record["hash"], f"seq {seq} no longer hashes to its hash"
            assert hashes.get(seq) == record["hash"], f"seq {seq}: Records cited shows another hash"
            assert _named(record, fact.context, fact.text), (
                f"{fact.text!r} cites seq {seq} ({record['event']}), which it does not name"
            )
            records.append(record)
        allowed = {m for r in records for m in _moments(r)} | _deadlines(records)
        for shown in MOMENT.findall(fact.text):
            moment = datetime.strptime(shown, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
            assert moment in allowed, f"{fact.text!r} states {shown}, no cited record's time"
    return facts


class _Facts(HTMLParser):
    """`class="fact"` elements: their data-seqs and the seqs their links go to; the "Records
    cited" rows: seq -> data-hash."""

    def __init__(self) -> None:
        super().__init__()
        self.facts: list[tuple[list[int], list[int]]] = []
        self.rows: dict[int, str] = {}
        self._depth: list[str] = []
        self._open = 0  # depth of the fact element open, 0: none

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("li", "tr", "p"):
            if self._open == 0 and "fact" in (a.get("class") or "").split():
                seqs = [int(x) for x in (a.get("data-seqs") or "").split()]
                self.facts.append((seqs, []))
                self._open = len(self._depth) + 1
            if tag == "tr" and (a.get("id") or "").startswith("seq-"):
                self.rows[int(str(a["id"])[4:])] = a.get("data-hash") or ""
            self._depth.append(tag)
        if tag == "a" and self._open and (a.get("href") or "").startswith("#seq-"):
            self.facts[-1][1].append(int(str(a["href"])[5:]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("li", "tr", "p") and self._depth:
            if len(self._depth) == self._open:
                self._open = 0
            self._depth.pop()


def check_html(html: str, log_dir: Path) -> int:
    """Every fact of the HTML report links to its records, each a row of "Records cited" with
    the chain's hash. Returns how many facts."""
    chain = chain_records(log_dir)
    parser = _Facts()
    parser.feed(html)
    assert parser.facts, "no fact found in the HTML report"
    for seqs, links in parser.facts:
        assert seqs, "an HTML fact without a record"
        assert sorted(set(links)) == sorted(set(seqs)), (seqs, links)
        for seq in seqs:
            assert parser.rows.get(seq) == chain[seq]["hash"], f"seq {seq}: wrong hash in HTML"
    return len(parser.facts)


def check_draft(text: str, log_dir: Path) -> int:
    """Every line of a draft that cites records (`[seq ...]`: a field's source, or one line of
    a field of several): each record in the chain with its content still hashing to its hash,
    and every time the line states a cited record's time or a deadline counted from one.
    Returns how many lines cite records."""
    chain = chain_records(log_dir)
    checked = 0
    for line in text.splitlines():
        seqs = [s for found in CITE.findall(line) for s in expand(found)]
        if not seqs:
            continue
        records = []
        for seq in seqs:
            assert seq in chain, f"{line!r} cites seq {seq}, not in the chain"
            record = chain[seq]
            body = {k: v for k, v in record.items() if k != "hash"}
            assert record_hash(body) == record["hash"], f"seq {seq} no longer hashes to its hash"
            records.append(record)
        allowed = {m for r in records for m in _moments(r)} | _deadlines(records)
        for shown in MOMENT.findall(line):
            moment = datetime.strptime(shown, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
            assert moment in allowed, f"{line!r} states {shown}, no cited record's time"
        checked += 1
    return checked
