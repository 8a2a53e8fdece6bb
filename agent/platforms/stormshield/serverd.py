"""Owns reading the SNS "SSL API" (serverd over HTTPS) answers, as the official client
`stormshield.sns.sslclient` reads them: the authentication page's `<nws msg="AUTH_SUCCESS">`,
the session's `<nws code="100"><sessionid>`, and a command's `<nws code=..><serverd ret= code=
msg=>[<data format=..>]</serverd>[<serverd ret= code= msg=/>]</nws>` (the final code of a
multi-part answer is the last `serverd` element's), with its data in the formats `section`,
`section_line`, `list`, `xml` and `raw`; and the text form the client prints (`101 code=00a01000
msg="Begin" format="section_line"` ... `100 code=00a00100 msg="Ok"`). Also the CRC of a
download (the client's `crc.py`: CRC-32, no final inversion). Pure: the standard library only.
Fixtures of every shape: `fixtures/` beside this module."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

NWS_OK = 100
# nws-level codes (the client's SSL_SERVERD_*): the HTTPS front's own answer about a request
NWS_MSG = {
    200: "Request error",
    201: "Unknown command",
    202: "Command error",
    203: "Invalid session",
    204: "Expired session",
    205: "Authentication error",
    206: "Pending transfer",
    207: "Upload pending",
    500: "Server overheat",
    501: "Server unreachable",
    502: "Server disconnected",
    900: "Internal error",
}
WAIT_DOWNLOAD = "00a01c00"  # serverd code: the command's file waits at /api/download


class WireError(ValueError):
    """An answer that is not what serverd's HTTPS front sends."""


@dataclass(frozen=True)
class Reply:
    """One command's answer: the nws code, serverd's final `ret`/`code`/`msg`, and its data."""

    nws: int
    nws_msg: str
    ret: int
    code: str
    msg: str
    format: str | None = None
    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    lines: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    items: dict[str, list[str]] = field(default_factory=dict)
    element: ET.Element | None = None
    raw: str = ""
    text: str = ""

    @property
    def ok(self) -> bool:
        """Success, as the client's `Response.__bool__`: ret 100-199."""
        return 100 <= self.ret < 200

    @property
    def status(self) -> str:
        return f'{self.ret} code={self.code} msg="{self.msg}"'


def _root(body: bytes) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise WireError("the answer declares a DTD or entities; serverd sends none")
    try:
        return ET.fromstring(body)  # noqa: S314 (no DTD, no entity: refused above)
    except ET.ParseError as exc:
        raise WireError(f"the answer is not XML: {exc}") from None


def auth_result(body: bytes) -> tuple[str, str | None]:
    """(msg, delay) of `/auth/admin.html`'s answer: AUTH_SUCCESS, AUTH_FAILED, ERR_BRUTEFORCE
    (with its delay in seconds), NEED_TOTP_AUTH."""
    root = _root(body)
    if root.tag != "nws" or "msg" not in root.attrib:
        raise WireError("the authentication answer has no <nws msg=...>")
    return root.attrib["msg"], root.attrib.get("delay")


def session(body: bytes) -> tuple[int, str, str | None]:
    """(code, msg, session id) of `/api/auth/login`'s answer."""
    root = _root(body)
    try:
        code = int(root.attrib["code"])
    except (KeyError, ValueError):
        raise WireError("the session answer has no numeric <nws code=...>") from None
    sid = root.findtext("sessionid")
    return code, root.attrib.get("msg", ""), sid


def _quote(value: str) -> str:
    return f'"{value}"' if " " in value else value


def reply(body: bytes) -> Reply:  # noqa: PLR0912, PLR0915 (one branch per data format)
    """A command's answer (`/api/command`)."""
    root = _root(body)
    if root.tag != "nws":
        raise WireError(f"the answer's root is <{root.tag}>, not <nws>")
    try:
        nws = int(root.attrib["code"])
    except (KeyError, ValueError):
        raise WireError("the answer has no numeric <nws code=...>") from None
    nws_msg = root.attrib.get("msg", "")
    parts = [e for e in root if e.tag == "serverd"]
    if not parts:
        return Reply(nws, nws_msg, 0, "", NWS_MSG.get(nws, nws_msg), text="")
    first, last = parts[0], parts[-1]
    try:
        ret = int(last.attrib["ret"])
    except (KeyError, ValueError):
        raise WireError("a <serverd> element has no numeric ret") from None
    code, msg = last.attrib.get("code", ""), last.attrib.get("msg", "")
    data = first.find("data")
    head = (
        f'{first.attrib.get("ret")} code={first.attrib.get("code")} msg="{first.attrib.get("msg")}"'
    )
    out = Reply(nws, nws_msg, ret, code, msg)
    if data is None:
        text = head if len(parts) == 1 else f'{head}\n{ret} code={code} msg="{msg}"'
        return Reply(nws, nws_msg, ret, code, msg, text=text)
    fmt = data.attrib.get("format", "")
    body_lines: list[str] = []
    sections: dict[str, dict[str, str]] = {}
    lines: dict[str, list[dict[str, str]]] = {}
    items: dict[str, list[str]] = {}
    raw = ""
    element: ET.Element | None = None
    if fmt == "raw":
        raw = data.text or ""
        body_lines.append(raw.rstrip("\n"))
    elif fmt == "xml":
        element = data
        body_lines.append(ET.tostring(data, encoding="unicode"))
    else:
        # a section_line answer's rows may come in several sections of one title, or in several
        # <serverd> parts: every row of every one is kept (the Stormshield flush decides from
        # them which hosts hold states: a row dropped here would be a host left unflushed)
        found = [d for d in (p.find("data") for p in parts) if d is not None]
        if fmt == "section_line" and any(d.attrib.get("format", "") != fmt for d in found):
            raise WireError("a section_line answer has a part in another data format")
        secs = [sec for d in (found if fmt == "section_line" else [data]) for sec in d]
        for sec in (e for e in secs if e.tag == "section"):
            title = sec.attrib.get("title", "")
            body_lines.append(f"[{title}]")
            if fmt == "section":
                keys = {k.attrib.get("name", ""): k.attrib.get("value", "") for k in sec}
                sections[title] = keys
                body_lines += [f"{k}={_quote(v)}" for k, v in keys.items()]
            elif fmt == "section_line":
                rows = []
                for ln in sec.findall("line"):
                    row = {k.attrib.get("name", ""): k.attrib.get("value", "") for k in ln}
                    rows.append(row)
                    body_lines.append(" ".join(f"{k}={_quote(v)}" for k, v in row.items()))
                lines.setdefault(title, []).extend(rows)
            elif fmt == "list":
                vals = [ln.text or "" for ln in sec.findall("line")]
                items[title] = vals
                body_lines += vals
            else:
                raise WireError(f"unknown data format {fmt!r}")
    tail = f'{ret} code={code} msg="{msg}"' if len(parts) > 1 else ""
    text = "\n".join([f'{head} format="{fmt}"', *body_lines, *([tail] if tail else [])])
    return Reply(
        out.nws,
        nws_msg,
        ret,
        code,
        msg,
        format=fmt,
        sections=sections,
        lines=lines,
        items=items,
        element=element,
        raw=raw,
        text=text,
    )


def first_code(body: bytes) -> str:
    """The code of the first `serverd` element (a download's WAIT code comes there)."""
    root = _root(body)
    part = root.find("serverd")
    return part.attrib.get("code", "") if part is not None else ""


def sns_crc(data: bytes) -> str:
    """The CRC serverd announces for a download: CRC-32 of the bytes, without the final
    inversion (the client's crc.py), upper-case hexadecimal."""
    return f"{zlib.crc32(data) ^ 0xFFFFFFFF:X}"


def download_announce(r: Reply) -> tuple[str, int]:
    """(crc, size) that a command answering WAIT_DOWNLOAD announces (`format=...,crc=..,size=..`
    as the first key of its `Result` section)."""
    result = r.sections.get("Result") or {}
    value = next(iter(result.values()), "")
    parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    try:
        return parts["crc"].upper(), int(parts["size"])
    except (KeyError, ValueError):
        raise WireError(f"the download announce {value!r} has no crc and size") from None
