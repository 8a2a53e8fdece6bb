"""Verification of the audit trail: hash chain, order, gaps, seals (tail) and referenced evidence.

Imports only the standard library, `cryptography` (through `seals`), `agent.errors` and
`agent.audit` modules below the pipeline; never structlog or the engine. Returns data
(`Verification`); the CLI decides what to raise.

Verdict (`Verification.verdict`), worst first:
  broken     findings below: the log was tampered with (or is damaged beyond a torn last write)
  torn       the newest file ends with an incomplete line and no newline: the last write was cut
             (disk full, crash); the records before it verify. Not tampering.
  unsealed   every record verifies, but the last N are not covered by a (signed) seal yet:
             cutting them would not be detected. Normal while a writer runs; `cordon audit seal`.
  ok         every record verifies and is covered by a seal
Separately, `anchored` says whether the seals were checked against a pinned public key: without
one, whoever can write the log directory can rewrite the chain and `seals.jsonl` together.

Finding kinds, each naming the first record concerned by file, line and seq:
  edited     the record's content no longer matches its hash
  inserted   a record that the chain skips over (or a second record claiming the same seq)
  deleted    a gap in seq with a broken link (records or a whole rotated file removed)
  reordered  records present but out of order
  relinked   a record's `prev` does not match the hash before it (re-hashed edit or forgery)
  malformed  a line that is not a chain record (not JSON, fields missing)
  truncated  a cut last line, or the log ends before the last seal
  rewritten  a sealed seq now has another hash (an edit followed by re-hashing the chain)
  renamed    a record sits in another file than the one it was written to (a day file renamed)
  forged     a seal that the pinned public key did not sign (seals re-made by someone else)
  seals      seals that should exist do not: `seals.jsonl` deleted while records exist, or, with
             a public key pinned, no seal signed by it at all
  evidence   a referenced evidence blob is missing or altered
  fenced     (PostgreSQL chain) a record claiming a lease epoch older than one before it, or an
             epoch claimed by two writers: appended by a deposed node

`verify_url` checks the group's chain in PostgreSQL (`agent.audit.pgchain`) the same way: the
table's rows in seq order stand for the files' lines (located as `cordon_audit:<seq>`), the seals
table for `seals.jsonl`, the evidence table for the evidence directory; the head row is checked
against the last record (rows deleted at the tail, rows added without the lock).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.audit import evidence
from agent.audit.chain import FILE_RE, GENESIS, audit_files, canonical, iter_lines
from agent.audit.pgchain import TABLE, PgSnapshot, reading
from agent.audit.seals import ENV_PUBLIC_KEY, SEALS_NAME, check_signature, key_id, read_seals
from agent.errors import AuditError

__all__ = ["Finding", "Verification", "verify", "verify_snapshot", "verify_url"]

PG_SEALS = "cordon_audit_seals"

_LOOKAHEAD = 10_000  # records read ahead to tell a reordering from a deletion
_MAX_FINDINGS = 1_000


def _seqs(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}..{last}"


def _short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "-"


@dataclass(frozen=True)
class Finding:
    """One problem, located at a file, line and (when readable) seq."""

    kind: str
    file: str
    line: int | None
    seq: int | None
    message: str

    @property
    def where(self) -> str:
        loc = self.file if self.line is None else f"{self.file}:{self.line}"
        return loc if self.seq is None else f"{loc} (seq {self.seq})"

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": self.file,
            "line": self.line,
            "seq": self.seq,
            "message": self.message,
        }


@dataclass
class Verification:
    """What `verify` saw: counts, the head, the findings (first = first bad record), warnings."""

    path: str
    files: list[str] = field(default_factory=list)
    records: int = 0
    first_seq: int | None = None
    head_seq: int | None = None
    head_hash: str | None = None
    head_where: str | None = None
    seals: int = 0
    signed_seals: int = 0
    anchored: bool = False
    key: str | None = None
    sealed_seq: int | None = None
    unsealed: int = 0
    torn: str | None = None
    findings: list[Finding] = field(default_factory=list)
    more_findings: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No tampering found (a torn last write or an unsealed tail is not tampering)."""
        return not self.findings

    @property
    def verdict(self) -> str:
        """broken | torn | unsealed | ok (see the module docstring)."""
        if self.findings:
            return "broken"
        if self.torn is not None:
            return "torn"
        if self.unsealed:
            return "unsealed"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "verdict": self.verdict,
            "files": self.files,
            "records": self.records,
            "first_seq": self.first_seq,
            "head": {"seq": self.head_seq, "hash": self.head_hash, "where": self.head_where},
            "seals": self.seals,
            "signed_seals": self.signed_seals,
            "anchored": self.anchored,
            "key": self.key,
            "sealed_seq": self.sealed_seq,
            "unsealed": self.unsealed,
            "torn": self.torn,
            "findings": [f.as_dict() for f in self.findings],
            "more_findings": self.more_findings,
            "warnings": self.warnings,
        }


@dataclass(slots=True)
class _Entry:
    file: str
    line: int
    seq: int | None = None
    prev: str | None = None
    hash: str | None = None
    valid: bool = False
    problem: str | None = None
    noncanonical: bool = False
    moved: str | None = None  # why the record does not belong in this file, if it does not
    cut: bool = False  # the line has no newline (last line of its file)
    refs: dict[str, list[str]] | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _evidence_refs(record: dict[str, Any]) -> dict[str, list[str]]:
    refs: dict[str, list[str]] = {}
    for key, value in record.items():
        if key.endswith("_sha256") and value:
            values = value if isinstance(value, list) else [value]
            refs[key] = [str(v) for v in values]
    return refs


@lru_cache(maxsize=64)
def _file_day(file: str) -> str:
    match = FILE_RE.match(file)
    return match.group(1) if match else ""


def _moved(record: dict[str, Any], file: str) -> str | None:
    """Why `record` does not belong in `file`, or None if it does.

    Records name their file; records of older logs (no `file`) can at least not be stamped on a
    later day than their file's (the writer never appends to an older day's file).
    """
    written = record.get("file")
    if written is not None:
        return None if written == file else f"it was written to {written}"
    ts, day = record.get("ts"), _file_day(file)
    if isinstance(ts, str) and day and ts[:10] > day:
        return f"it is stamped {ts[:10]}, after the day of its file"
    return None


def _parse(file: str, line: int, raw: bytes) -> _Entry:
    entry = _Entry(file, line)
    cut = entry.cut = not raw.endswith(b"\n")
    try:
        record = json.loads(raw)
    except ValueError:
        entry.problem = "cut short (no newline, not JSON)" if cut else "not JSON"
        return entry
    if not isinstance(record, dict):
        entry.problem = "not a JSON object"
        return entry
    digest = record.pop("hash", None)
    seq, prev = record.get("seq"), record.get("prev")
    if type(seq) is not int or not isinstance(prev, str) or not isinstance(digest, str):
        entry.problem = "not a chain record (seq, prev or hash missing or mistyped)"
        return entry
    entry.seq, entry.prev, entry.hash = seq, prev, digest
    try:
        body = canonical(record)
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON: never written by Cordon
        entry.problem = "not a chain record (invalid Unicode)"
        return entry
    entry.valid = hashlib.sha256(body).hexdigest() == digest
    if entry.valid and raw.rstrip(b"\n") != body[:-1] + b',"hash":"' + digest.encode() + b'"}':
        # Same parsed content, other bytes: duplicate keys or reformatting, which other JSON
        # readers may interpret differently. The writer only ever writes the canonical bytes.
        entry.valid = False
        entry.noncanonical = True
    if entry.valid:
        entry.moved = _moved(record, file)
    if b'_sha256"' in raw:
        entry.refs = _evidence_refs(record)
    return entry


class _Stream:
    """Parsed entries with unbounded look-ahead (used only around an anomaly)."""

    def __init__(self, entries: Iterator[_Entry]) -> None:
        self._it = entries
        self._buf: deque[_Entry] = deque()

    def next(self) -> _Entry | None:
        if self._buf:
            return self._buf.popleft()
        return next(self._it, None)

    def peek(self, index: int = 0) -> _Entry | None:
        while len(self._buf) <= index:
            entry = next(self._it, None)
            if entry is None:
                return None
            self._buf.append(entry)
        return self._buf[index]


class _Checker:
    """Walks the entries once, keeping the last trusted record (`base`) and classifying breaks."""

    def __init__(
        self,
        stream: _Stream,
        result: Verification,
        *,
        anchored: bool,
        seals: dict[int, dict[str, Any]],
        evidence_problem: Callable[[str], str | None],
        newest: str | None,
        seals_name: str = SEALS_NAME,
    ) -> None:
        self.stream = stream
        self.result = result
        self.anchored = anchored  # False in single-file mode: the first record is taken as is
        self.seals = seals
        self.evidence_problem = evidence_problem  # sha256 -> None, or what is wrong with it
        self.seals_name = seals_name  # where the seals are, for messages
        self.newest = newest  # the newest audit file of the directory: only it can end torn
        self._renamed: set[str] = set()
        self._evidence_seen: dict[str, str | None] = {}
        self.base: _Entry | None = None
        self.base_seq = 0
        self.base_hash = GENESIS
        self.lenient = False
        self.last: _Entry | None = None  # last well-formed entry read
        self.torn: _Entry | None = None  # the newest file's cut last line, if any
        self.max_seq = 0

    # -- bookkeeping ---------------------------------------------------------------------------

    def report(self, kind: str, entry: _Entry | None, message: str, seq: int | None = None) -> None:
        if len(self.result.findings) >= _MAX_FINDINGS:
            self.result.more_findings += 1
            return
        file, line = (entry.file, entry.line) if entry is not None else ("-", None)
        if seq is None and entry is not None:
            seq = entry.seq
        self.result.findings.append(Finding(kind, file, line, seq, message))

    def accept(self, entry: _Entry, seq: int | None = None) -> None:
        self.base = entry
        self.base_seq = entry.seq if seq is None else seq  # type: ignore[assignment]
        self.base_hash = entry.hash or GENESIS

    def observe(self, entry: _Entry) -> None:
        """Checks that do not depend on order: seals and evidence of a self-consistent record."""
        self.result.records += 1
        if entry.problem is not None:
            return
        assert entry.seq is not None
        self.last = entry
        self.max_seq = max(self.max_seq, entry.seq)
        if self.result.first_seq is None:
            self.result.first_seq = entry.seq
        if not entry.valid:
            return
        seal = self.seals.get(entry.seq)
        if seal is not None and seal["hash"] != entry.hash:
            self.report(
                "rewritten",
                entry,
                f"{self.seals_name}:{seal['line']} sealed seq {entry.seq} with hash "
                f"{_short(seal['hash'])} at {seal.get('ts', '?')}, the log now has "
                f"{_short(entry.hash)}: the chain was re-hashed after an edit",
            )
        elif seal is not None and seal["file"] != entry.file:
            self.renamed(entry, f"{self.seals_name}:{seal['line']} sealed it in {seal['file']}")
        if entry.moved is not None:
            self.renamed(entry, entry.moved)
        if entry.refs:
            self.check_evidence(entry, entry.refs)

    def renamed(self, entry: _Entry, why: str) -> None:
        if entry.file in self._renamed:
            return
        self._renamed.add(entry.file)
        self.report(
            "renamed",
            entry,
            f"this record does not belong in {entry.file}: {why}; the file was renamed "
            "(or its records moved)",
        )

    def check_evidence(self, entry: _Entry, refs: dict[str, list[str]]) -> None:
        for key, digests in refs.items():
            for digest in digests:
                if digest not in self._evidence_seen:
                    self._evidence_seen[digest] = self.evidence_problem(digest)
                problem = self._evidence_seen[digest]
                if problem is not None:
                    self.report("evidence", entry, f"{key} sha256:{_short(digest)} {problem}")

    # -- the walk ------------------------------------------------------------------------------

    def run(self) -> None:
        while (entry := self.stream.next()) is not None:
            self.observe(entry)
            self.step(entry)

    def step(self, entry: _Entry) -> None:
        if entry.problem is not None:
            if entry.cut and entry.file == self.newest and self.stream.peek() is None:
                self.torn = entry
                self.result.torn = (
                    f"{entry.where}: the last write was cut ({entry.problem}): a crash or a "
                    "full disk while writing, not tampering; the records before it verify"
                )
                return
            kind = "truncated" if entry.problem.startswith("cut") else "malformed"
            self.report(kind, entry, entry.problem)
            self.lenient = True
            return
        if not entry.valid:
            self.on_bad_hash(entry)
            return
        assert entry.seq is not None
        expected = self.base_seq + 1
        if not self.anchored:
            self.anchored = True
            if entry.seq != 1 or entry.prev == GENESIS:
                self.accept(entry)
                return
        if self.lenient:
            self.lenient = False
            if entry.seq in (expected, expected + 1):
                self.accept(entry)
                return
        if entry.seq == expected and entry.prev == self.base_hash:
            self.accept(entry)
            return
        self.on_link_break(entry, expected)

    def _links_to_base(self, entry: _Entry | None) -> bool:
        return (
            entry is not None
            and entry.problem is None
            and entry.seq == self.base_seq + 1
            and entry.prev == self.base_hash
        )

    def on_bad_hash(self, entry: _Entry) -> None:
        if self._links_to_base(self.stream.peek()):
            self.report(
                "inserted",
                entry,
                "record does not belong to the chain: its hash does not match its content and "
                f"the next record links to seq {self.base_seq}",
            )
            return
        self.report(
            "edited",
            entry,
            "the line is not in the canonical form its writer used (duplicate keys or "
            "reformatting): its bytes were changed after it was written"
            if entry.noncanonical
            else f"content does not match its hash {_short(entry.hash)}: "
            "a field was changed after the record was written",
        )
        self.accept(entry, seq=self.base_seq + 1)

    def on_link_break(self, entry: _Entry, expected: int) -> None:
        assert entry.seq is not None
        if entry.seq > expected:
            self.on_jump(entry, expected)
        elif entry.seq == expected:
            base = self.base
            where = f"seq {self.base_seq} at {base.where}" if base else "the genesis"
            self.report(
                "relinked",
                base or entry,
                f"the next record ({entry.where}, seq {entry.seq}) links to "
                f"{_short(entry.prev)}, not to the hash of {where}: one of them was re-hashed "
                "after an edit, or forged",
                seq=self.base_seq if base else entry.seq,
            )
            self.accept(entry)
        else:
            self.on_backwards(entry)

    def _index_ahead(self, entry: _Entry) -> int | None:
        """Where the same seq shows up again within the look-ahead window, if it does."""
        for index in range(_LOOKAHEAD):
            ahead = self.stream.peek(index)
            if ahead is None:
                return None
            if ahead.seq == entry.seq:
                return index
        return None

    def on_jump(self, entry: _Entry, expected: int) -> None:
        """A self-consistent record further on than expected: a copy, a reordering or a gap."""
        again = self._index_ahead(entry)
        if again is not None:
            twin = self.stream.peek(again)
            assert twin is not None
            self.report(
                "inserted",
                entry,
                f"seq {entry.seq} appears again at {twin.where}, in its place: this one is a "
                "copy or a forgery",
            )
            return
        if self.try_reordered(entry, expected):
            return
        if self._links_to_base(self.stream.peek()):
            self.report(
                "inserted",
                entry,
                f"not part of the chain: the next record links to seq {self.base_seq}",
            )
            return
        self.on_gap(entry, expected)

    def on_gap(self, entry: _Entry, expected: int) -> None:
        assert entry.seq is not None
        missing = _seqs(expected, entry.seq - 1)
        base = self.base
        if base is None:
            message = f"{missing} missing before the first record (oldest records or files removed)"
        elif base.file != entry.file and entry.line == 1:
            message = (
                f"{missing} missing between {base.where} and {entry.where}: records deleted "
                "across a rotation, or a whole rotated file removed"
            )
        else:
            message = f"{missing} missing after {base.where}: records deleted"
        sealed_files = sorted(
            {s["file"] for q, s in self.seals.items() if expected <= q < entry.seq}
            - set(self.result.files)
        )
        if sealed_files:
            message += f" (sealed file(s) now absent: {', '.join(sealed_files)})"
        self.report("deleted", entry, message)
        self.accept(entry)

    def try_reordered(self, entry: _Entry, expected: int) -> bool:
        """If the missing seqs show up a little later, report one reordering and skip past it."""
        assert entry.seq is not None
        region = [entry]
        seqs = {entry.seq}
        index = 0
        while index < _LOOKAHEAD:
            ahead = self.stream.peek(index)
            if ahead is None or ahead.problem is not None or not ahead.valid:
                return False
            assert ahead.seq is not None
            index += 1
            region.append(ahead)
            seqs.add(ahead.seq)
            if min(seqs) == expected and len(seqs) == len(region) == max(seqs) - expected + 1:
                break
        else:
            return False
        for _ in range(index):
            consumed = self.stream.next()
            assert consumed is not None
            self.observe(consumed)
        ordered = sorted(region, key=lambda e: e.seq or 0)
        first_late = min(region[1:], key=lambda e: e.seq or 0)
        linked = (
            all(later.prev == earlier.hash for earlier, later in itertools.pairwise(ordered))
            and ordered[0].prev == self.base_hash
        )
        self.report(
            "reordered",
            entry,
            f"seq {entry.seq} comes before seq {first_late.seq} ({first_late.where}); records "
            f"seq {expected}..{max(seqs)} are out of order"
            + ("" if linked else " and do not link in seq order either"),
        )
        self.accept(ordered[-1])
        return True

    def on_backwards(self, entry: _Entry) -> None:
        base = self.base
        if base is not None and entry.seq == base.seq and entry.prev == base.prev:
            ahead = self.stream.peek()
            if ahead is not None and ahead.problem is None and ahead.prev == entry.hash:
                self.report(
                    "inserted",
                    base,
                    f"not part of the chain: {entry.where} holds the same seq and the chain "
                    "continues from it",
                )
                self.accept(entry)
                return
            self.report(
                "inserted",
                entry,
                f"duplicates seq {entry.seq} of {base.where}; the chain does not continue from it",
            )
            return
        self.report(
            "inserted",
            entry,
            f"seq {entry.seq} appears after seq {self.base_seq}: a replayed or misplaced record",
        )

    # -- the tail ------------------------------------------------------------------------------

    def check_tail(self, seals: list[dict[str, Any]], anchors: list[dict[str, Any]]) -> None:
        """Truncation against every usable seal; the unsealed tail against the anchoring ones."""
        if anchors:
            top_anchor = max(anchors, key=lambda s: s["seq"])
            self.result.sealed_seq = top_anchor["seq"]
            self.result.unsealed = max(0, self.max_seq - top_anchor["seq"])
        else:
            self.result.unsealed = self.max_seq
        if not seals:
            return
        top = max(seals, key=lambda s: s["seq"])
        if top["seq"] > self.max_seq and self.torn is not None:
            # A sealed record was complete: its cut line is truncation, not a torn write.
            self.result.torn = None
            self.report(
                "truncated",
                self.torn,
                f"{self.torn.problem}, and {self.seals_name}:{top['line']} sealed seq "
                f"{top['seq']} in {top['file']} at {top.get('ts', '?')}: records "
                f"{_seqs(self.max_seq + 1, top['seq'])} were cut after they were sealed",
            )
        elif top["seq"] > self.max_seq:
            last = self.last
            ends = f"seq {self.max_seq} ({last.where})" if last else "no record at all"
            present = "" if top["file"] in self.result.files else f"; {top['file']} is absent"
            self.report(
                "truncated",
                last,
                f"the log ends at {ends} but {self.seals_name}:{top['line']} sealed seq "
                f"{top['seq']} in {top['file']} at {top.get('ts', '?')}: records "
                f"{_seqs(self.max_seq + 1, top['seq'])} were cut{present}",
                seq=self.max_seq if last else None,
            )


def _entries(paths: list[Path]) -> Iterator[_Entry]:
    for file, line, raw in iter_lines(paths):
        yield _parse(file, line, raw)


def _check_seals(
    seals: list[dict[str, Any]],
    public_key: Ed25519PublicKey | None,
    result: Verification,
    seals_name: str = SEALS_NAME,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(seals usable for consistency checks, seals that anchor the tail); forgeries reported.

    With a public key, a seal counts as an anchor only if it carries a valid signature by that
    key; an unsigned seal is tolerated (as a legacy one, not an anchor) only before the first
    signed seal, i.e. written before signing was configured. Without a key every seal is taken
    at its word: anchors, but `anchored` stays False.
    """
    if public_key is None:
        result.signed_seals = sum(1 for s in seals if "sig" in s)
        return seals, seals
    kid = key_id(public_key)
    usable: list[dict[str, Any]] = []
    anchors: list[dict[str, Any]] = []
    legacy = 0
    for seal in seals:
        if "sig" not in seal:
            if anchors:
                result.findings.append(
                    Finding(
                        "forged",
                        seals_name,
                        seal["line"],
                        seal["seq"],
                        "unsigned seal after signed ones: written by someone without the "
                        f"signing key (key {kid})",
                    )
                )
                continue
            legacy += 1
            usable.append(seal)
        elif check_signature(seal, public_key):
            usable.append(seal)
            anchors.append(seal)
        else:
            other = seal.get("key")
            named = f" (the seal names key {other})" if other != kid else ""
            result.findings.append(
                Finding(
                    "forged",
                    seals_name,
                    seal["line"],
                    seal["seq"],
                    f"the signature is not valid for the pinned key {kid}{named}: the seal was "
                    "forged or altered",
                )
            )
    result.signed_seals = len(anchors)
    if legacy:
        result.warnings.append(
            f"{legacy} unsigned seal(s) before the first signed one (written before signing was "
            "configured): they are checked for consistency but anchor nothing"
        )
    return usable, anchors


def verify(path: Path, *, public_key: Ed25519PublicKey | None = None) -> Verification:
    """Verify a log directory (every file, the seals, the evidence) or one audit file alone.

    `public_key`: the seal key pinned in the configuration (`$CORDON_AUDIT_SEAL_PUBKEY`); without
    it the seals are unanchored and the result says so. Raises `AuditError` only when there is
    nothing to verify; tampering is reported as findings.
    """
    if path.is_dir():
        log_dir, paths, anchored = path, audit_files(path), True
    elif path.is_file():
        log_dir, paths, anchored = path.parent, [path], False
    else:
        raise AuditError(
            f"no audit log at {path}", hint="pass the log directory (CORDON_LOG_DIR or ./logs)"
        )
    result = Verification(path=str(path), files=[p.name for p in paths])
    loaded = read_seals(log_dir)
    if loaded is None:
        seals: list[dict[str, Any]] = []
    else:
        seals, problems = loaded
        result.warnings.extend(problems)
    if not anchored:
        seals = [s for s in seals if s["file"] == path.name]
    if not paths and not seals:
        raise AuditError(
            f"no audit files (audit-YYYY-MM-DD.jsonl) in {path}",
            hint="pass the log directory (CORDON_LOG_DIR or ./logs)",
        )
    result.seals = len(seals)
    usable, anchors = _check_seals(seals, public_key, result)
    every = audit_files(log_dir)
    newest = every[-1].name if every else None
    checker = _Checker(
        _Stream(_entries(paths)),
        result,
        anchored=anchored,
        seals={s["seq"]: s for s in usable},
        evidence_problem=lambda digest: evidence.check(log_dir, digest),
        newest=newest,
    )
    checker.run()
    checker.check_tail(usable, anchors)
    if not anchored:
        result.unsealed = 0  # one file alone: its tail may be sealed in the next file
    _judge_seals(
        result, log_dir, public_key, loaded is not None, whole=anchored, max_seq=checker.max_seq
    )
    if checker.last is not None:
        result.head_seq = checker.last.seq
        result.head_hash = checker.last.hash
        result.head_where = checker.last.where
    return result


def _judge_seals(
    result: Verification,
    log_dir: Path | str,
    public_key: Ed25519PublicKey | None,
    have_file: bool,
    *,
    whole: bool,
    max_seq: int,
    seals_name: str = SEALS_NAME,
) -> None:
    """Findings and warnings about the seals as a whole, once the records are known."""
    if public_key is not None:
        result.key = key_id(public_key)
    if max_seq == 0:
        return
    if not have_file:
        if whole:
            result.findings.append(
                Finding(
                    "seals",
                    seals_name,
                    None,
                    None,
                    f"{seals_name} is missing from {log_dir} but the log holds records up to "
                    f"seq {max_seq}: the writer seals the first record at once, so the seals "
                    "were deleted",
                )
            )
        else:
            result.warnings.append(f"no {seals_name} beside the file: its tail is not sealed")
    elif public_key is not None and result.signed_seals == 0 and whole:
        result.findings.append(
            Finding(
                "seals",
                seals_name,
                None,
                None,
                f"none of the {result.seals} seal(s) is signed by the pinned key {result.key}: "
                "the seals were re-made without the signing key, or the log was written "
                f"without it (${ENV_PUBLIC_KEY} names the wrong key?)",
            )
        )
    if public_key is None:
        signed = f" ({result.signed_seals} seal(s) carry a signature nobody checked)"
        result.warnings.append(
            "SEALS NOT ANCHORED: no public key is pinned (--public-key or "
            f"${ENV_PUBLIC_KEY}){signed if result.signed_seals else ''}; whoever can write "
            f"{log_dir} can rewrite the chain and {seals_name} together and this check "
            "would pass"
        )
    else:
        result.anchored = result.signed_seals > 0
    if result.unsealed and whole:
        last = result.sealed_seq
        after = (
            f"after the last {'signed ' if public_key else ''}seal (seq {last})"
            if last
            else ("and no seal covers any record")
        )
        result.warnings.append(
            f"{result.unsealed} record(s) {after} are not yet sealed: cutting them would not be "
            "detected (`cordon audit seal` seals the head now)"
        )


def _pg_seals(snap: PgSnapshot, result: Verification) -> list[dict[str, Any]]:
    seals: list[dict[str, Any]] = []
    for ident, line in snap.seals:
        try:
            seal = json.loads(line)
        except ValueError:
            seal = None
        if (
            not isinstance(seal, dict)
            or type(seal.get("seq")) is not int
            or not isinstance(seal.get("hash"), str)
            or not isinstance(seal.get("file"), str)
        ):
            result.warnings.append(f"{PG_SEALS}:{ident}: not a seal (needs file, seq, hash)")
            continue
        seal["line"] = ident
        seals.append(seal)
    return seals


def _check_epochs(snap: PgSnapshot, checker: _Checker) -> None:
    """The fencing, as recorded: the epochs claimed by active writers never go back, and one
    epoch has one writer. A record breaking either was appended by a deposed node."""
    top = 0
    holders: dict[int, str] = {}
    for seq, line in snap.rows:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # reported as malformed by the chain walk
        if not isinstance(record, dict):
            continue
        epoch, writer = record.get("writer_epoch"), record.get("writer")
        if type(epoch) is not int:
            continue
        rec_seq = record.get("seq")
        entry = _Entry(TABLE, seq, seq=rec_seq if type(rec_seq) is int else None)
        if epoch < top:
            checker.report(
                "fenced",
                entry,
                f"written by {writer} as the active node with epoch {epoch} after a record of "
                f"epoch {top} (by {holders.get(top)}): a deposed node extended the chain",
            )
        elif holders.setdefault(epoch, str(writer)) != str(writer):
            checker.report(
                "fenced",
                entry,
                f"{writer} claims epoch {epoch}, which {holders[epoch]} held: one epoch has one "
                "holder",
            )
        top = max(top, epoch)


def _check_head(snap: PgSnapshot, checker: _Checker) -> None:
    """The head row (moved by every append, under its lock) against the last record."""
    head, last = snap.head, checker.last
    if head is None:
        checker.report("seals", None, "the head row of cordon_audit_head is missing")
        return
    top, top_hash = checker.max_seq, (last.hash if last is not None else GENESIS)
    if head.seq > top:
        checker.report(
            "truncated",
            last,
            f"the head row says the chain reached seq {head.seq} ({_short(head.hash)}) but "
            f"the table ends at seq {top}: records {_seqs(top + 1, head.seq)} were deleted",
            seq=top if last else None,
        )
    elif head.seq < top:
        checker.report(
            "inserted",
            last,
            f"the table goes on to seq {top} past the head row (seq {head.seq}): records "
            "were added without the head lock, not by a Cordon writer",
        )
    elif head.hash != top_hash:
        checker.report(
            "rewritten",
            last,
            f"the head row holds {_short(head.hash)} for seq {head.seq}, the record has "
            f"{_short(top_hash)}: the record was replaced after it was written",
        )


def verify_url(url: str, *, public_key: Ed25519PublicKey | None = None) -> Verification:
    """Verify the group's chain in the PostgreSQL database of `url` (`agent.audit.pgchain`):
    the same checks as a log directory's (hash chain, order, seals, evidence), plus the head
    row and the fencing epochs recorded in each record (kind `fenced`). Read in one snapshot.
    Raises `AuditError` when there is no chain there or no server."""
    with reading(url) as snap:
        return verify_snapshot(snap, public_key=public_key)


def verify_snapshot(
    snap: PgSnapshot, *, public_key: Ed25519PublicKey | None = None
) -> Verification:
    """`verify_url` of a chain already read (`pgchain.reading`): a report verifies and reads
    the one snapshot; the evidence blobs the records cite are fetched one by one and hashed."""
    result = Verification(path=snap.where, files=[TABLE])
    seals = _pg_seals(snap, result)
    if not snap.rows and not seals:
        raise AuditError(
            f"the audit chain at {snap.where} holds no record yet",
            hint="records appear at the first event of a daemon or command on this database",
        )
    result.seals = len(seals)
    usable, anchors = _check_seals(seals, public_key, result, PG_SEALS)
    entries = [_parse(TABLE, seq, line.encode("utf-8") + b"\n") for seq, line in snap.rows]
    # the blobs the records cite, streamed and hashed in batches (never the whole table)
    snap.check_evidence(d for e in entries if e.refs for ds in e.refs.values() for d in ds)
    checker = _Checker(
        _Stream(iter(entries)),
        result,
        anchored=True,
        seals={s["seq"]: s for s in usable},
        evidence_problem=snap.evidence_problem,
        newest=TABLE,
        seals_name=PG_SEALS,
    )
    checker.run()
    checker.check_tail(usable, anchors)
    _check_head(snap, checker)
    _check_epochs(snap, checker)
    _judge_seals(
        result,
        snap.where,
        public_key,
        bool(seals),
        whole=True,
        max_seq=checker.max_seq,
        seals_name=PG_SEALS,
    )
    if checker.last is not None:
        result.head_seq = checker.last.seq
        result.head_hash = checker.last.hash
        result.head_where = f"{TABLE} seq {checker.last.seq}"
    return result
