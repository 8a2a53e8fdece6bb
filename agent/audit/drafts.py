"""Pre-filled drafts for the regulators, from the audit log: the ARS declaration, the NIS2 early
warning, notification and final report, the CNIL notification.

A field the log answers is filled with the log's words and the records it came from; a field it
cannot answer (the establishment's FINESS, the data categories, the cause...) is marked for a
person to complete, plainly: `[À COMPLÉTER : ...]` in the French forms, `[TO COMPLETE: ...]`
in the English ones. Nothing is guessed. Every draft's header says what it was built from: the
log directory (or the group's chain in PostgreSQL), the records' range, the chain head and
whether the chain verifies (a chain that does not verify is said first, in capitals).

Sections follow what the texts ask, as far as they could be checked (see `FORM_NOTES`); the
regulators' online forms may order or word them differently: a draft is something to copy from,
not the form itself.

Imports the standard library, Jinja2 and `agent.audit` reading modules; pure but for reading
the chain (`agent.audit.source`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from agent.audit import human
from agent.audit.facts import RunFacts
from agent.audit.report import TEMPLATES, Chain, Incident, Report, build, cite
from agent.audit.source import ChainRead, ChainSource
from agent.audit.verify import Verification
from agent.errors import ConfigError

__all__ = ["DRAFTS", "FORMATS", "Draft", "draft", "render"]

FORMATS = ("text", "md", "html")
# --for: (title, authority, language)
DRAFTS: dict[str, tuple[str, str, str]] = {
    "ars": (
        "Déclaration d'incident grave de sécurité des systèmes d'information",
        "ARS (portail de signalement des événements sanitaires indésirables, CERT Santé)",
        "fr",
    ),
    "nis2-early": (
        "NIS2 early warning (Art. 23(4)(a))",
        "ANSSI (CSIRT / competent authority)",
        "en",
    ),
    "nis2-notification": (
        "NIS2 incident notification (Art. 23(4)(b))",
        "ANSSI (CSIRT / competent authority)",
        "en",
    ),
    "nis2-final": (
        "NIS2 final report (Art. 23(4)(d))",
        "ANSSI (CSIRT / competent authority)",
        "en",
    ),
    "cnil": (
        "Notification de violation de données personnelles (RGPD art. 33)",
        "CNIL (téléservice de notification de violations)",
        "fr",
    ),
}
FORM_NOTES = {
    "ars": "Rubriques reprises des quatre parties que l'arrêté du 30 octobre 2017 (annexe) "
    "décrit pour le formulaire de déclaration : identification de la structure et du "
    "déclarant ; description de l'incident (date du constat, périmètre, systèmes et données "
    "concernés, état de la prise en charge) ; impacts ; causes. Les libellés exacts du portail "
    "n'ont pas pu être vérifiés.",
    "nis2": "Sections follow Directive (EU) 2022/2555 art. 23(4). The French transposition and "
    "ANSSI's own form could not be checked: its fields may differ.",
    "cnil": "Rubriques reprises de l'article 33(3) du RGPD et de la page de la CNIL « Notifier "
    "une violation de données personnelles ». Les libellés exacts du téléservice n'ont pas "
    "pu être vérifiés.",
}


@dataclass(frozen=True)
class Field:
    label: str
    value: str | None  # None: a person must complete it (`todo` says what)
    todo: str = ""
    seqs: tuple[int, ...] = ()  # the records it comes from

    @property
    def missing(self) -> bool:
        return self.value is None

    @property
    def source(self) -> str:
        """`[seq 1, 4-6]`, or "" for a field the log does not fill."""
        return cite(self.seqs) if self.seqs and not self.missing else ""


@dataclass(frozen=True)
class Section:
    title: str
    fields: list[Field]


@dataclass(frozen=True)
class Draft:
    kind: str
    title: str
    authority: str
    lang: str
    built_from: list[str]
    chain_ok: bool
    form_note: str
    sections: list[Section] = field(default_factory=list)

    def marker(self, what: str) -> str:
        return f"[À COMPLÉTER : {what}]" if self.lang == "fr" else f"[TO COMPLETE: {what}]"

    def shown(self, f: Field) -> str:
        return self.marker(f.todo) if f.value is None else f.value

    @property
    def to_complete(self) -> list[str]:
        return [f.label for s in self.sections for f in s.fields if f.missing]


def _fr(text: str, lang: str, en: str) -> str:
    return text if lang == "fr" else en


def _when(moment: datetime | None) -> str:
    return human.moment(moment)


def _measures(report: Report, lang: str) -> list[str]:
    lines = []
    for run in report.summary.runs:
        who = run.actor or _fr("inconnu", lang, "unknown")
        end = (
            _fr(
                f"fin {_when(run.finished_at)} ({run.outcome})",
                lang,
                f"ended {_when(run.finished_at)} ({run.outcome})",
            )
            if run.outcome
            else _fr("en cours", lang, "still running")
        )
        sites = ", ".join(run.sites) or "?"
        lines.append(
            _fr(
                f"{_when(run.started_at)} : {run.playbook} {run.run_id} sur {sites} (par {who}) "
                f"; {end} {cite(run.seqs)}",
                lang,
                f"{_when(run.started_at)}: {run.playbook} {run.run_id} on {sites} (by {who}); "
                f"{end} {cite(run.seqs)}",
            )
        )
    return lines


def _contained(report: Report, lang: str, inc_seq: int) -> list[str]:
    out = []
    for site in report.summary.sites:
        if site.time_to_contain is None:
            continue
        first = site.runs[0]
        seqs = cite(
            [
                first.verified_seq.get(site.site),
                inc_seq if site.contain_from == "declaration" else 0,
            ]
        )
        out.append(
            _fr(
                f"{site.site} : contenu à {_when(site.contained_at)}, "
                f"{human.span(site.time_to_contain)} après la déclaration, par {first.playbook} "
                f"{first.run_id} {seqs}",
                lang,
                f"{site.site}: contained at {_when(site.contained_at)}, "
                f"{human.span(site.time_to_contain)} after the declaration, by {first.playbook} "
                f"{first.run_id} {seqs}",
            )
            if site.contain_from == "declaration"
            else _fr(
                f"{site.site} : contenu à {_when(site.contained_at)}, par {first.playbook} "
                f"{first.run_id} {seqs}",
                lang,
                f"{site.site}: contained at {_when(site.contained_at)}, by {first.playbook} "
                f"{first.run_id} {seqs}",
            )
        )
    return out


# the regulatory clock (`agent.audit.report.CLOCKS`) each draft answers
CLOCK_OF = {
    "ars": "ars",
    "nis2-early": "nis2_early_warning",
    "nis2-notification": "nis2_notification",
    "nis2-final": "nis2_final_report",
    "cnil": "cnil",
}


def _deadline(kind: str, inc: Incident, lang: str, now: datetime) -> Field:
    """Where this draft's regulatory clock stands, as the report computes it."""
    label = _fr("Délai", lang, "Deadline")
    clock = next((c for c in inc.clocks if c.kind == CLOCK_OF[kind]), None)
    if clock is None:
        return Field(
            label, None, _fr("délai (aucune déclaration)", lang, "deadline (no declaration)")
        )
    to = f"{clock.to or '?'}, " + _fr("réf.", lang, "ref") + f" {clock.reference or '?'}"
    if clock.status == "due":
        since = human.span(now - clock.due)  # `due` is the declaration for "without delay"
        value = _fr(
            f"sans délai : à faire maintenant, pas encore notifiée ({since} depuis la déclaration)",
            lang,
            f"without delay: due now, not yet notified ({since} since the declaration)",
        )
    elif clock.notified_at is not None:
        value = _fr(
            f"notifiée le {_when(clock.notified_at)} à {to}",
            lang,
            f"notified at {_when(clock.notified_at)} to {to}",
        ) + (
            _fr(
                f" ; échéance {_when(clock.due)} ({clock.status})",
                lang,
                f"; due {_when(clock.due)} ({clock.status})",
            )
            if clock.status != "notified"
            else ""
        )
    else:
        value = _fr(
            f"échéance {_when(clock.due)} ({clock.rule}) : {clock.status}, {clock.note}",
            lang,
            f"due {_when(clock.due)} ({clock.rule}): {clock.status}, {clock.note}",
        )
    return Field(label, value, seqs=clock.seqs)


def _join(lines: list[str]) -> str | None:
    return "\n".join(lines) if lines else None


def _runs_seqs(runs: list[RunFacts]) -> tuple[int, ...]:
    return tuple(x for r in runs for x in r.seqs)


def _flow_lines(report: Report, lang: str) -> tuple[list[str], tuple[int, ...]]:
    """Each flow's last verdict the log records (cut: verified closed; kept: verified open)."""
    last = {f.flow: f for f in report.summary.flows}
    lines = []
    for f in sorted(last.values(), key=lambda x: (x.expected != "closed", x.flow)):
        what = {
            ("closed", "passed"): _fr("coupé (vérifié fermé)", lang, "cut (verified closed)"),
            ("open", "passed"): _fr("maintenu (vérifié ouvert)", lang, "kept (verified open)"),
        }.get(
            (f.expected or "", f.status),
            _fr(
                f"{f.status} (attendu {f.expected or '?'})",
                lang,
                f"{f.status} (expected {f.expected or '?'})",
            ),
        )
        lines.append(f"{f.flow}: {what}, {_when(f.at)} {cite([f.seq])}")
    return lines, tuple(f.seq for f in last.values())


def _common(report: Report, inc: Incident, lang: str) -> dict[str, Field]:
    """The fields several drafts share, in the draft's language."""
    s = report.summary
    sites = [x.site for x in s.sites]
    declared = (inc.declared_seq,) if inc.declared_seq else ()
    flows, flow_seqs = _flow_lines(report, lang)
    contained_seqs = tuple(
        x
        for site in s.sites
        if site.contained_at is not None
        for x in (site.runs[0].verified_seq.get(site.site, 0), *declared)
    )
    return {
        "entity": Field(
            _fr("Structure (raison sociale, FINESS, adresse)", lang, "Entity (name, sector)"),
            None,
            _fr("raison sociale, n° FINESS, adresse", lang, "legal name, sector, entity type"),
        ),
        "contact": Field(
            _fr("Déclarant (nom, fonction, téléphone, courriel)", lang, "Contact (name, role)"),
            None,
            _fr("nom, fonction, téléphone, courriel", lang, "name, role, 24/7 phone, e-mail"),
        ),
        "declared": Field(
            _fr("Date et heure du constat", lang, "Time of awareness (UTC)"),
            _fr(
                f"{_when(inc.declared_at)} (déclaration de l'incident dans Cordon par "
                f"{inc.declared_by or 'inconnu'} ; corriger si l'incident était connu plus tôt)",
                lang,
                f"{_when(inc.declared_at)} (incident declared in Cordon by "
                f"{inc.declared_by or 'unknown'}; correct it if it was known earlier)",
            ),
            seqs=declared,
        ),
        "what": Field(
            _fr("Description (telle que consignée)", lang, "What happened (as recorded)"),
            inc.reason,
            _fr("description de l'incident", lang, "description of the incident"),
            seqs=declared,
        ),
        "hit": Field(
            _fr("Site touché", lang, "Site hit"),
            inc.site,
            _fr("site touché", lang, "site hit"),
            seqs=declared,
        ),
        "sites": Field(
            _fr("Établissements / sites concernés", lang, "Sites affected"),
            ", ".join(sites) if sites else None,
            _fr("sites concernés (aucun run consigné)", lang, "sites affected (no run recorded)"),
            seqs=tuple(r.started_seq for r in s.runs if r.started_seq),  # sites: run.started
        ),
        "flows": Field(
            _fr(
                "Flux réseau coupés et maintenus (selon le journal)",
                lang,
                "Network flows cut and kept (per the log)",
            ),
            _join(flows),
            _fr(
                "flux coupés et maintenus (le journal ne consigne aucun résultat par flux)",
                lang,
                "flows cut and kept (the log records no per-flow result)",
            ),
            seqs=flow_seqs,
        ),
        "services": Field(
            _fr("Services et systèmes d'information touchés", lang, "Services affected"),
            None,
            _fr(
                "services de soins et applications touchés (le journal ne consigne que les flux "
                "réseau ci-dessus)",
                lang,
                "care services and applications affected (the log holds only the network flows "
                "above)",
            ),
        ),
        "measures": Field(
            _fr("Mesures prises (heure, action, sites, auteur)", lang, "Measures taken"),
            _join(_measures(report, lang)),
            _fr("mesures prises", lang, "measures taken"),
            seqs=_runs_seqs(s.runs),
        ),
        "contained": Field(
            _fr("Confinement par site", lang, "Containment per site"),
            _join(_contained(report, lang, inc.declared_seq or 0)),
            _fr("heure de confinement par site", lang, "time each site was contained"),
            seqs=contained_seqs,
        ),
        "degraded": Field(
            _fr("Encore dégradé (selon le journal)", lang, "Still degraded (per the log)"),
            _join(
                [
                    f"{line} {cite(seqs)}"
                    for line, seqs in zip(s.still_degraded, s.degraded_seqs, strict=True)
                ]
            )
            or _fr("rien que le journal consigne", lang, "nothing the log records"),
            seqs=tuple(x for seqs in s.degraded_seqs for x in seqs),
        ),
        "cause": Field(
            _fr("Causes identifiées", lang, "Root cause"),
            None,
            _fr("cause, si elle est identifiée", lang, "root cause, if identified"),
        ),
        "notified": Field(
            _fr("Notifications déjà faites", lang, "Notifications made"),
            _join(
                [
                    f"{n.kind} → {n.to or '?'} ({_when(n.at)}, réf. {n.ref or '?'})"
                    if lang == "fr"
                    else f"{n.kind} to {n.to or '?'} ({_when(n.at)}, ref {n.ref or '?'})"
                    for n in inc.notifications
                ]
            )
            or _fr("aucune consignée", lang, "none recorded"),
            seqs=tuple(n.seq for n in inc.notifications),
        ),
    }


def _sections(kind: str, report: Report, inc: Incident, now: datetime) -> list[Section]:
    lang = DRAFTS[kind][2]
    c = _common(report, inc, lang)

    def todo(label: str, what: str) -> Field:
        return Field(label, None, what)

    if kind == "ars":
        return [
            Section(
                "1. Identification de la structure et du déclarant", [c["entity"], c["contact"]]
            ),
            Section(
                "2. Description de l'incident",
                [
                    c["declared"],
                    c["what"],
                    c["hit"],
                    c["sites"],
                    c["flows"],
                    c["services"],
                    c["measures"],
                ],
            ),
            Section(
                "3. Impacts de l'incident",
                [
                    c["degraded"],
                    c["contained"],
                    todo("Impact sur la prise en charge des patients", "impact sur les soins"),
                    todo(
                        "Impact sur les données (disponibilité, intégrité, confidentialité)",
                        "données touchées",
                    ),
                ],
            ),
            Section("4. Causes de l'incident", [c["cause"]]),
            Section("Suivi", [_deadline(kind, inc, lang, now), c["notified"]]),
        ]
    if kind == "cnil":
        assert inc.declared_at is not None
        late = now > inc.declared_at + timedelta(hours=72)
        return [
            Section(
                "Responsable de traitement",
                [
                    c["entity"],
                    todo("Délégué à la protection des données (DPO)", "nom et coordonnées du DPO"),
                ],
            ),
            Section(
                "Nature de la violation",
                [
                    c["declared"],
                    c["what"],
                    todo(
                        "Nature (perte de disponibilité, d'intégrité, de confidentialité)",
                        "nature de la violation",
                    ),
                    todo(
                        "Catégories et nombre approximatif de personnes concernées",
                        "catégories et nombre de personnes",
                    ),
                    todo(
                        "Catégories et nombre approximatif d'enregistrements concernés",
                        "catégories et nombre d'enregistrements",
                    ),
                ],
            ),
            Section(
                "Conséquences probables",
                [
                    todo("Conséquences probables pour les personnes", "conséquences probables"),
                    c["degraded"],
                ],
            ),
            Section(
                "Mesures prises ou envisagées",
                [
                    c["measures"],
                    c["contained"],
                    todo(
                        "Mesures pour les personnes concernées (information, etc.)",
                        "mesures envers les personnes",
                    ),
                ],
            ),
            Section(
                "Délai",
                [
                    _deadline(kind, inc, lang, now),
                    *(
                        [
                            todo(
                                "Motifs du retard (notification au-delà de 72 h)",
                                "motifs du retard",
                            )
                        ]
                        if late
                        else []
                    ),
                    c["notified"],
                ],
            ),
        ]
    suspected = todo("Suspected unlawful or malicious act?", "yes / no / unknown")
    cross = todo("Possible cross-border impact?", "yes / no / unknown")
    if kind == "nis2-early":
        return [
            Section("Entity", [c["entity"], c["contact"]]),
            Section(
                "Early warning",
                [c["declared"], c["what"], suspected, cross, c["sites"], c["degraded"]],
            ),
            Section("Follow-up", [_deadline(kind, inc, lang, now), c["notified"]]),
        ]
    if kind == "nis2-notification":
        return [
            Section("Entity", [c["entity"], c["contact"]]),
            Section("Update of the early warning", [c["declared"], c["what"], suspected, cross]),
            Section(
                "Initial assessment",
                [
                    todo("Severity and impact", "severity and impact assessment"),
                    c["sites"],
                    c["flows"],
                    c["services"],
                    c["degraded"],
                    todo("Indicators of compromise", "indicators of compromise, where available"),
                ],
            ),
            Section("Measures", [c["measures"], c["contained"]]),
            Section("Follow-up", [_deadline(kind, inc, lang, now), c["notified"]]),
        ]
    return [  # nis2-final
        Section("Entity", [c["entity"], c["contact"]]),
        Section(
            "Detailed description",
            [
                c["declared"],
                c["what"],
                c["sites"],
                c["flows"],
                c["services"],
                todo("Severity and impact", "severity and impact"),
            ],
        ),
        Section("Type of threat or root cause", [c["cause"]]),
        Section(
            "Applied and ongoing mitigation measures",
            [c["measures"], c["contained"], c["degraded"]],
        ),
        Section("Cross-border impact", [cross]),
        Section("Notifications", [_deadline(kind, inc, lang, now), c["notified"]]),
    ]


def _verdict(chain: Chain, lang: str) -> str:
    if lang != "fr":
        return chain.summary
    if not chain.ok:
        return f"CHAÎNE ROMPUE ({chain.summary})"
    seals = (
        "sceaux signés et vérifiés"
        if chain.anchored
        else "sceaux NON ancrés (aucune clé publique épinglée)"
    )
    return (
        f"chaîne vérifiée jusqu'à sa tête (seq {chain.head_seq}), {chain.seals} sceau(x), {seals}"
    )


def _pick(chain: ChainRead, incident: str | None) -> str:
    log_dir = chain.label
    records = [
        r
        for r in chain.records
        if r["event"] == "incident.declared" and isinstance(r.get("incident_id"), str)
    ]
    declared = [str(r["incident_id"]) for r in records]
    if incident is not None:
        named = [str(r["incident_id"]) for r in records if r.get("name") == incident]
        incident = named[-1] if incident not in declared and named else incident
        if incident not in declared:
            raise ConfigError(
                f"no incident {incident!r} declared in the audit log {log_dir}",
                hint="see `cordon status` for incident ids, or name the log with --log-dir",
            )
        return incident
    if not declared:
        raise ConfigError(
            f"no incident declared in the audit log {log_dir}: a draft needs one",
            hint="declare it (`cordon incident open --reason ...`), or name the log with --log-dir",
        )
    return declared[-1]


def draft(
    kind: str,
    where: Path | str | ChainSource | ChainRead,
    *,
    incident: str | None = None,
    integrity: Verification | None = None,
    now: datetime | None = None,
) -> Draft:
    """The draft `kind` (one of `DRAFTS`) for `incident` (default: the last one declared), from
    the chain `where`: a log directory, or the group's chain in PostgreSQL (a URL or a
    `ChainSource`), or what was read of it already (`ChainRead`, with its `integrity`)."""
    if kind not in DRAFTS:
        raise ConfigError(f"no draft {kind!r}", hint=f"use one of {', '.join(DRAFTS)}")
    if not isinstance(where, ChainRead):
        # one read (a database: one snapshot) for the pick and the report
        with ChainSource.of(where).open() as read:
            return draft(kind, read, incident=incident, integrity=integrity, now=now)
    read = where
    iid = _pick(read, incident)
    report = build(read, incident=iid, integrity=integrity, now=now)
    inc = report.incidents[0]
    title, authority, lang = DRAFTS[kind]
    s, chain = report.summary, report.chain
    built = [
        _fr("Journal d'audit", lang, "Audit log") + f": {report.log_dir}",
        _fr("Incident", lang, "Incident") + f": {iid} ({inc.name or '?'})",
        _fr(
            f"Enregistrements : seq {s.first_seq}..{s.last_seq}, {_when(s.first_at)} → "
            f"{_when(s.last_at)} ({s.records})",
            lang,
            f"Records: seq {s.first_seq}..{s.last_seq}, {_when(s.first_at)} to "
            f"{_when(s.last_at)} ({s.records})",
        ),
        _fr("Tête de chaîne", lang, "Chain head")
        + (f": seq {chain.head_seq} sha256 {chain.head_hash}" if chain.head_hash else ": ?"),
        _fr("Vérification", lang, "Verification") + f": {_verdict(chain, lang)}",
        _fr("Établi le", lang, "Generated") + f": {_when(report.generated_at)}",
    ]
    return Draft(
        kind=kind,
        title=title,
        authority=authority,
        lang=lang,
        built_from=built,
        chain_ok=chain.ok,
        form_note=FORM_NOTES["nis2" if kind.startswith("nis2") else kind],
        sections=_sections(kind, report, inc, report.generated_at),
    )


def _lines(d: Draft, md: bool) -> Iterator[str]:
    fr = d.lang == "fr"
    yield ("# " if md else "") + ("BROUILLON : " if fr else "DRAFT: ") + d.title
    yield ""
    yield ("Destinataire : " if fr else "To: ") + d.authority
    if not d.chain_ok:
        yield ""
        yield (
            "ATTENTION : LA CHAÎNE D'AUDIT NE SE VÉRIFIE PAS ; ce brouillon ne peut pas être tenu "
            "pour fidèle au journal."
            if fr
            else "WARNING: THE AUDIT CHAIN DOES NOT VERIFY; this draft cannot be taken as "
            "faithful to the log."
        )
    yield ""
    yield "Établi à partir de :" if fr else "Built from:"
    yield from (f"- {line}" for line in d.built_from)
    yield ""
    yield ("Formulaire : " if fr else "Form: ") + d.form_note
    missing = d.to_complete
    yield ""
    yield (
        f"{len(missing)} rubrique(s) à compléter par une personne, marquées {d.marker('...')}."
        if fr
        else f"{len(missing)} field(s) a person must complete, marked {d.marker('...')}."
    )
    for section in d.sections:
        yield ""
        yield ("## " if md else "") + section.title
        if not md:
            yield "-" * len(section.title)
        for f in section.fields:
            value = d.shown(f)
            if md:
                value = value.replace("<", "&lt;").replace(">", "&gt;")
            src = (
                f"  ({'source' if fr else 'from'} {f.source})" if f.source and not f.missing else ""
            )
            if "\n" in value:
                yield f"{'- **' if md else '* '}{f.label}{'**' if md else ''}:{src}"
                yield from (f"{'  - ' if md else '    '}{line}" for line in value.splitlines())
            else:
                yield f"{'- **' if md else '* '}{f.label}{'**' if md else ''}: {value}{src}"


def render(d: Draft, fmt: str) -> str:
    """The draft as `text`, `md` or `html` (one page, prints well)."""
    if fmt == "html":
        return TEMPLATES.get_template("draft.html.j2").render(d=d) + "\n"
    if fmt in ("text", "md"):
        return "\n".join(_lines(d, fmt == "md")) + "\n"
    raise ConfigError(f"unknown draft format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
