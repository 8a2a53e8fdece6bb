"""Brings the digital twin up and down: applies a blueprint with `ip -batch`, writes the twin's
secrets where the inventory's references point, starts the real daemons, journals all of it, and
returns only once the twin is ready (`agent.lab.ready`: the kernel's link state settled, every
declared flow working). What a device of each platform runs is its platform's twin module
(`agent.lab.twins`, through the registry).

Imports the lab's own modules and the inventory; never a driver. Root only.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import secrets as pysecrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from agent.errors import LabError, SafetyError
from agent.inventory.models import Inventory
from agent.lab import daemons, netns, probepoints, ready, streams, twins
from agent.lab import state as lab_state
from agent.lab.services import Listener, ServiceSpec, dump_spec
from agent.lab.state import LabState, state_root
from agent.lab.topology import ROOT_LINK, SANDBOX, Blueprint, DaemonSpec, blueprint
from agent.secrets import ref_path

DEFAULT_LAB = lab_state.DEFAULT_LAB  # defined with the state file (the verifier reads it alone)

LOCK_PATH = Path("/run/cordon-lab.lock")
GUARD_TABLE = "cordon_lab_guard"  # root-namespace nft table: never forward to or from the twin


# how many `exclusive` blocks of this process hold the machine's lock now (a test session holds
# it throughout; a drill run inside that session must not wait for its own process)
_held = 0
_held_guard = threading.Lock()


@contextmanager
def exclusive(on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Exclusive use of this machine's twin (one twin per machine: it owns 198.19/16 in the root
    namespace). A test session holds it throughout; `lab up/down` and the demo wait for it.
    Reentrant within a process: a nested block (a drill inside a test session that holds the
    lock) proceeds, since flock would otherwise make the process wait for itself."""
    global _held  # noqa: PLW0603 - the process's one count of its holds of the machine lock
    require_root()
    with _held_guard:
        nested = _held > 0
        if nested:
            _held += 1
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held -= 1
        return
    with LOCK_PATH.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait("the twin is in use by another session (a test run?); waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        with _held_guard:
            _held += 1
        try:
            yield
        finally:
            with _held_guard:
                _held -= 1


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the digital twin needs root (network namespaces, daemons)",
            hint="run as root, e.g. `sudo .venv/bin/cordon lab up`",
        )


def up(inv: Inventory, lab: str = DEFAULT_LAB) -> LabState:
    """Build the twin of `inv` and return once every declared flow works (`ready.check`, within
    CORDON_LAB_READY_S). Refuses if a twin is already up; undoes a failed build, a twin that is
    not ready included (LabError naming the flows, the device and the hop at fault)."""
    require_root()
    # One twin per machine: every twin's management veth is the root namespace's ROOT_LINK and
    # its guard is GUARD_TABLE. A second one would fail half-built, and undoing it would take
    # the first twin's management link and guard with it: refused before anything is touched.
    for other in [lab, *sorted(p.parent.name for p in state_root().glob("*/state.json"))]:
        existing = LabState.load(other)
        if existing is not None:
            raise LabError(
                f"a twin is already up (lab {other!r}, built from {existing.inventory} "
                f"at {existing.started_at}, phase {existing.phase}); one twin at a time",
                hint=f"take twin {other!r} down first (`cordon lab down` for the default one; "
                "it also cleans up after an interrupted build)",
            )
    if netns.run(["ip", "link", "show", ROOT_LINK], check=False).returncode == 0:
        raise LabError(
            f"the root namespace already has a link {ROOT_LINK} but no twin state records it",
            hint="a twin of another state directory may be up: take it down, or remove the "
            "link by hand after checking what owns it",
        )
    bp = blueprint(inv, lab)  # SafetyError here, before anything is touched
    t0 = time.perf_counter()
    stray = [ns for ns in bp.nodes if netns.exists(ns)]  # read-only: before any change
    if stray:
        raise LabError(
            f"namespaces {', '.join(stray[:3])} already exist but no twin state records them",
            hint="remove them by hand after checking what owns them",
        )
    blackhole_preexisting = _has_blackhole()
    netns.ensure_blackhole()  # first change to the system, always
    state = LabState(
        lab=lab,
        inventory=inv.path,
        started_at=datetime.now(UTC).isoformat(),
        namespaces=sorted(bp.nodes),
        root_links=[ROOT_LINK],
    )
    state.extra["blackhole_installed"] = not blackhole_preexisting
    state.extra["guard_table"] = GUARD_TABLE
    state.dirs.append(str(state.dir))
    state.save()  # journal intent before creating anything
    try:
        _build(inv, bp, state)
    except BaseException:
        down(lab)
        raise
    state.timings["total_s"] = round(time.perf_counter() - t0, 3)
    state.phase = "up"
    state.save()
    return state


def _build(inv: Inventory, bp: Blueprint, state: LabState) -> None:
    t = time.perf_counter()
    _guard_root()
    _batch("ip", [f"netns add {ns}" for ns in sorted(bp.nodes)])
    _batch("ip", [_veth_line(v.a_ns, v.a_if, v.b_ns, v.b_if) for v in bp.veths])
    _configure(bp)
    state.timings["network_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    material = _write_secrets(inv, bp, state)
    state.save()
    _start_daemons(inv, bp, state, material)
    state.timings["daemons_s"] = round(time.perf_counter() - t, 3)
    # The kernel applies carrier changes asynchronously (see agent.lab.ready): links set up by
    # the batches above may not be forwarding yet. Waited for after the daemons, which overlap.
    deadline = time.monotonic() + ready.bound()
    state.timings["settle_s"] = round(ready.wait_links(bp, deadline), 3)
    t = time.perf_counter()
    spec_path = state.dir / "services.json"
    listeners = tuple(Listener(s.ns, str(s.address), s.port, s.banner) for s in bp.services)
    dump_spec(ServiceSpec(listeners, ready_file=str(state.dir / "services.ready")), spec_path)
    proc = daemons.start_services(spec_path, state.dir)
    state.procs.append(proc.as_dict())
    state.save()
    state.timings["services_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    ready.wait_flows(inv, bp, deadline)
    state.timings["flows_s"] = round(time.perf_counter() - t, 3)
    if probepoints.start(inv, bp, state):  # the sites' probe points (#15), when declared
        probepoints.wait_ready(inv, time.monotonic() + probepoints.READY_S)
    t = time.perf_counter()
    spec = streams.spec_for(inv, bp, state.dir)
    if spec.streams:  # the clinical traffic of the must-survive flows (see agent.lab.streams)
        streams.dump_spec(spec, state.dir / "streams-spec.json")
        state.procs.append(streams.start(state.dir / "streams-spec.json", state.dir).as_dict())
        state.save()
    state.timings["streams_s"] = round(time.perf_counter() - t, 3)


def _veth_line(a_ns: str, a_if: str, b_ns: str, b_if: str) -> str:
    b = f"name {b_if} netns {b_ns}" if b_ns else f"name {b_if}"
    return f"link add {a_if} netns {a_ns} type veth peer {b}"


def _configure(bp: Blueprint) -> None:
    """Per namespace: bridges, ports, addresses, links up, routes (one `ip -b` each)."""
    per_ns: dict[str, list[str]] = {ns: ["link set lo up"] for ns in bp.nodes}
    up_links: dict[str, list[str]] = {ns: [] for ns in bp.nodes}
    for v in bp.veths:
        up_links[v.a_ns].append(v.a_if)
        if v.b_ns:
            up_links[v.b_ns].append(v.b_if)
    for br in bp.bridges:
        per_ns[br.ns].append(f"link add {br.name} type bridge stp_state 0 forward_delay 0")
        per_ns[br.ns].extend(f"link set {p} master {br.name}" for p in br.ports)
        up_links[br.ns].append(br.name)
    for ns, links in up_links.items():
        per_ns[ns].extend(f"link set {name} up" for name in links)
    for a in bp.addresses:
        per_ns[a.ns].append(f"addr add {a.cidr} dev {a.ifname}")
    for r in bp.routes:
        per_ns[r.ns].append(f"route replace {r.dst} via {r.via}")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda item: _batch("ip", item[1], netns_name=item[0]), per_ns.items()))
    # The root end of the management veth: the agent reaches every device through it only.
    assert bp.root_address is not None
    netns.run(["ip", "addr", "add", str(bp.root_address), "dev", ROOT_LINK])
    netns.run(["ip", "link", "set", ROOT_LINK, "up"])
    for dst, via in bp.root_routes:  # in band: the data networks, through the twin's veth only
        _root_route(dst, via)
    forwarders = [n.ns for n in bp.nodes.values() if n.forwarding]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(_forwarding, forwarders))
    if bp.in_band:
        return  # no out-of-band interface to keep apart from the data plane
    # each device's own management interface (the inventory's, named as the twin's kernel has it)
    guarded = {n.ns: n.mgmt_if for n in bp.nodes.values() if n.kind in ("firewall", "switch")}

    def guard(ns: str) -> None:
        mgmt_if = guarded[ns]
        if mgmt_if is None:
            raise LabError(f"twin node {ns} has no management interface")
        netns.run(["nft", "-f", "-"], netns=ns, input=base_rules(mgmt_if, str(bp.mgmt_subnet)))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(guard, sorted(guarded)))


def _root_route(dst: ipaddress.IPv4Network, via: ipaddress.IPv4Address) -> None:
    """In band: a root-namespace route to twin networks through the twin's veth only, more
    specific than the blackhole of the whole sandbox (which stays: a twin address outside `dst`
    still goes nowhere). Refused for anything outside the sandbox."""
    if not dst.subnet_of(SANDBOX) or dst == SANDBOX:
        raise SafetyError(f"root route {dst} is not a part of the sandbox {SANDBOX}")
    netns.check_twin_address(str(via), "root route gateway")
    netns.run(["ip", "route", "replace", str(dst), "via", str(via), "dev", ROOT_LINK])


def frr_pathspace(lab: str, device: str) -> str:
    """The FRR instance name of a switch of the twin (vtysh -N)."""
    return f"{lab}-{device}"


def _forwarding(ns: str) -> None:
    netns.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], netns=ns)


def base_rules(mgmt_if: str, mgmt_subnet: str) -> str:
    """The management interface is out of band: nothing is routed between it and the data plane,
    and the management addresses answer on it only (Linux would otherwise answer a zone host
    that targets the firewall's management address: the weak host model).

    This table belongs to the twin; the agent manages only its own `cordon` table."""
    return (
        "table inet twin_base {\n"
        "  chain forward {\n    type filter hook forward priority -10; policy accept;\n"
        f'    iifname "{mgmt_if}" drop\n    oifname "{mgmt_if}" drop\n  }}\n'
        "  chain input {\n    type filter hook input priority -10; policy accept;\n"
        f'    iifname != "{mgmt_if}" ip daddr {mgmt_subnet} drop\n  }}\n'
        "}\n"
    )


def _guard_root() -> None:
    """A root-namespace table that drops anything forwarded to or from the twin's veth."""
    rules = (
        f"table inet {GUARD_TABLE} {{\n chain forward {{\n"
        "  type filter hook forward priority -300; policy accept;\n"
        f'  iifname "{ROOT_LINK}" drop\n  oifname "{ROOT_LINK}" drop\n'
        f"  ip daddr {SANDBOX} drop\n }}\n}}\n"
    )
    netns.run(["nft", "-f", "-"], input=rules)


def _batch(tool: str, lines: Iterable[str], netns_name: str | None = None) -> None:
    lines = list(lines)
    if not lines:
        return
    with tempfile.NamedTemporaryFile("w", prefix="cordon-lab-", suffix=".batch") as fh:
        fh.write("\n".join(lines) + "\n")
        fh.flush()
        argv = [tool] + (["-n", netns_name] if netns_name else []) + ["-b", fh.name]
        done = netns.run(argv, check=False, timeout=120)
    if done.returncode != 0:
        raise LabError(
            f"building the twin failed ({tool} batch"
            f"{' in ' + netns_name if netns_name else ''}): {done.stderr.strip()}"
        )


class Material:
    """Key material and secret values the twin generated for its daemons (never logged)."""

    def __init__(self) -> None:
        self.authorized_keys: Path | None = None
        self.host_keys: dict[str, Path] = {}
        self.snmp: dict[str, tuple[str, str]] = {}  # device -> (auth, priv)
        self.https: dict[str, twins.Https] = {}  # device -> its HTTPS API's certificate, secrets


def _claim_file(state: LabState, path: Path) -> None:
    """Record a file the twin is about to make; refuse to overwrite one it did not make."""
    if path.exists():
        raise LabError(
            f"{path} already exists; the twin writes its generated secrets there "
            "and will not overwrite a file it did not make",
            hint="move it away, or point the inventory's reference elsewhere",
        )
    for parent in reversed(path.parents):
        if not parent.exists():
            state.dirs.append(str(parent))
            parent.mkdir(mode=0o700)
    state.files.append(str(path))
    state.save()


def _write_secret(state: LabState, path: Path, value: str) -> None:
    _claim_file(state, path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def _client_keys(inv: Inventory, state: LabState) -> list[str]:
    """Generate the agent's SSH client key(s) where the inventory's references point."""
    base = Path(inv.path).parent
    pubkeys: list[str] = []
    done: set[str] = set()
    for _site, device in inv.devices():
        ref = device.ssh.key
        if ref is None or not ref.startswith("file:"):
            raise LabError(
                f"{device.name}: the twin logs in with a generated key, so ssh.key "
                f"must be a 'file:' reference (got {ref!r})"
            )
        if device.ssh.host_key is not None:
            raise LabError(
                f"{device.name}: pins a host key inline; the twin generates host keys "
                "at `lab up`: pin through group.known_hosts instead"
            )
        if ref not in done:
            path = ref_path(ref, base)
            _claim_file(state, path)
            state.files.append(str(path) + ".pub")
            pubkeys.append(daemons.gen_client_key(path).public_line)
            done.add(ref)
    return pubkeys


def _write_secrets(inv: Inventory, bp: Blueprint, state: LabState) -> Material:
    """Generate every credential the inventory references and write it where it points."""
    base = Path(inv.path).parent
    mat = Material()
    pubkeys = _client_keys(inv, state)
    mat.authorized_keys = state.dir / "authorized_keys"
    mat.authorized_keys.write_text("\n".join(pubkeys) + "\n")
    os.chmod(mat.authorized_keys, 0o600)
    known: list[str] = []
    for _site, device in inv.devices():
        node_dir = state.dir / device.name
        node_dir.mkdir(mode=0o700, exist_ok=True)
        key = node_dir / "ssh_host_ed25519_key"
        public = daemons.gen_ssh_host_key(key)
        mat.host_keys[device.name] = key
        known.append(public.known_hosts_line(str(device.management.address), device.ssh.port))
    if inv.group.known_hosts is None:
        raise LabError("the twin writes pinned host keys to group.known_hosts; set it")
    kh = base / inv.group.known_hosts
    _claim_file(state, kh)
    kh.write_text("\n".join(known) + "\n")
    os.chmod(kh, 0o600)
    values: dict[str, str] = {}
    for _site, device in inv.devices():
        snmp = device.snmp
        if snmp is None:
            continue
        if snmp.version != "v3" or snmp.auth is None or snmp.priv is None:
            raise LabError(f"{device.name}: the twin's SNMP agents speak v3 authPriv only")
        pair = []
        for ref in (snmp.auth, snmp.priv):
            if ref not in values:
                if not ref.startswith("file:"):
                    raise LabError(f"{device.name}: SNMP secret {ref!r} is not a file reference")
                values[ref] = pysecrets.token_urlsafe(18)
                _write_secret(state, ref_path(ref, base), values[ref])
            pair.append(values[ref])
        mat.snmp[device.name] = (pair[0], pair[1])
    _https_material(inv, state, mat, values)
    return mat


def _https_material(inv: Inventory, state: LabState, mat: Material, values: dict[str, str]) -> None:
    """For each device with an HTTPS API: a self-signed certificate pinned in group.tls_pins, and
    its API token and password generated where the inventory's references point."""
    base = Path(inv.path).parent
    pins: list[str] = []
    for _site, device in inv.devices():
        https = device.https
        if https is None:
            continue
        if https.certificate is not None:
            raise LabError(
                f"{device.name}: pins a certificate inline; the twin generates certificates "
                "at `lab up`: pin through group.tls_pins instead"
            )
        node_dir = state.dir / device.name
        cert, key = node_dir / "https_cert.pem", node_dir / "https_key.pem"
        pin = daemons.gen_tls_cert(cert, key, device.name, str(device.management.address))
        pins.append(f"{device.name} {pin}")
        secrets: dict[str, str | None] = {"token": None, "password": None}
        for what, ref in (("token", https.token), ("password", https.password)):
            if ref is None:
                continue
            if ref not in values:
                if not ref.startswith("file:"):
                    raise LabError(f"{device.name}: HTTPS {what} {ref!r} is not a file reference")
                values[ref] = pysecrets.token_urlsafe(24)
                _write_secret(state, ref_path(ref, base), values[ref])
            secrets[what] = values[ref]
        mat.https[device.name] = twins.Https(
            cert=cert,
            key=key,
            port=https.port,
            username=https.username,
            token=secrets["token"],
            password=secrets["password"],
        )
    if not pins:
        return
    if inv.group.tls_pins is None:
        raise LabError("the twin writes pinned certificates to group.tls_pins; set it")
    path = base / inv.group.tls_pins
    _claim_file(state, path)
    path.write_text("\n".join(pins) + "\n")
    os.chmod(path, 0o600)


def _start_daemons(inv: Inventory, bp: Blueprint, state: LabState, mat: Material) -> None:
    """Start every device's daemons in parallel, each by its platform's twin (`agent.lab.twins`);
    each is journaled the moment it exists, so a failure half-way through a device never leaves
    a process `lab down` does not know about."""
    assert mat.authorized_keys is not None
    authorized = mat.authorized_keys
    lock = threading.Lock()

    def record(proc: daemons.DaemonProc) -> None:
        with lock:
            state.procs.append(proc.as_dict())
            state.save()

    def keep(kind: str, path: str) -> None:
        with lock:
            state.extra.setdefault(kind, []).append(path)
            state.save()

    def start(spec: DaemonSpec) -> None:
        found = inv.find_device(spec.device)
        assert found is not None
        twins.start(
            twins.Node(
                spec=spec,
                device=found[1],
                lab=bp.lab,
                dir=state.dir / spec.device,
                host_key=mat.host_keys[spec.device],
                authorized_keys=authorized,
                snmp_secrets=mat.snmp.get(spec.device),
                https=mat.https.get(spec.device),
                record=record,
                keep=keep,
            )
        )

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(start, spec) for spec in bp.daemons]
        errors = [exc for fut in futures if (exc := fut.exception()) is not None]
    if errors:
        raise LabError(f"{len(errors)} device(s) failed to start their daemons; first: {errors[0]}")


def down(lab: str = DEFAULT_LAB) -> list[str]:
    """Undo everything the twin's journal records, and nothing else. Returns what was done."""
    require_root()
    state = LabState.load(lab)
    if state is None:
        return []
    state.phase = "stopping"
    state.save()
    done: list[str] = []
    procs = [daemons.DaemonProc.from_dict(p) for p in reversed(state.procs)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        stopped = sum(pool.map(daemons.stop, procs))
    done.append(f"stopped {stopped} of {len(procs)} processes")
    present = [ns for ns in state.namespaces if netns.exists(ns)]
    _stop_strays(present)
    _batch("ip", [f"netns del {ns}" for ns in present])
    done.append(f"deleted {len(present)} namespaces")
    for link in state.root_links:
        _wait_link_gone(link)
    guard = state.extra.get("guard_table")
    if (
        guard
        and netns.run(["nft", "list", "table", "inet", str(guard)], check=False).returncode == 0
    ):
        netns.run(["nft", "delete", "table", "inet", str(guard)])
    for f in reversed(state.files):
        Path(f).unlink(missing_ok=True)
    done.append(f"removed {len(state.files)} files")
    for d in state.extra.get("frr_dirs", []):  # ours alone: checked absent before we made it
        _rmtree_if_ours(Path(d))
    for d in sorted(set(state.dirs) - {str(state.dir)}, key=len, reverse=True):
        with contextlib.suppress(OSError):  # a parent we made: removed only if left empty
            Path(d).rmdir()
    if state.extra.get("blackhole_installed"):
        netns.run(["ip", "route", "del", "blackhole", str(SANDBOX)], check=False)
    _rmtree_if_ours(state.dir)
    with contextlib.suppress(OSError):  # the state root too, when no other twin state is left
        state_root().rmdir()
    return done


DEADMAN_FILES = Path("/run/cordon")  # the twin's firewalls share the host's filesystem


# Processes in the twin's namespaces that `lab down` stops even when no record names them,
# recognised by their command line: an agent's dead-man timer, and an infected host's scanner
# whose starter died before it could journal the PID (recorded scanners are stopped by PID).
_STRAY_MARKERS = (b"cordon-deadman-", b"-m agent.lab.scanner ")


def _stop_strays(namespaces: list[str]) -> None:
    """An agent's dead-man timer armed on a twin firewall outlives the sshd session that
    started it: stop those (recognised by their command line, nothing else), and remove the
    revert scripts they wait on. Same for an unrecorded scanner (see `agent.lab.infect`)."""
    for ns in namespaces:
        for pid in netns.pids(ns):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if any(marker in cmdline for marker in _STRAY_MARKERS):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
    for leftover in DEADMAN_FILES.glob("cordon-deadman-*"):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the timers' folder, only if nothing else is in it
        DEADMAN_FILES.rmdir()


def _wait_link_gone(link: str, timeout: float = 10.0) -> None:
    """The kernel frees a deleted namespace's veths asynchronously; wait, then force."""
    deadline = time.monotonic() + timeout
    while netns.run(["ip", "link", "show", link], check=False).returncode == 0:
        if time.monotonic() > deadline:
            netns.run(["ip", "link", "del", link], check=False)
            return
        time.sleep(0.05)


def _rmtree_if_ours(path: Path) -> None:
    """Remove a directory the twin made (its own files inside it included)."""
    if not path.exists():
        return
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()


def _has_blackhole() -> bool:
    out = netns.run(["ip", "route", "show", "type", "blackhole"], check=False).stdout
    return any(line.split()[1:2] == [str(SANDBOX)] for line in out.splitlines() if line)


def status(lab: str = DEFAULT_LAB) -> dict[str, object]:
    state = LabState.load(lab)
    if state is None:
        return {"lab": lab, "up": False, "state_dir": str(state_root() / lab)}
    procs = {
        str(p["name"]): daemons.is_running(daemons.DaemonProc.from_dict(p)) for p in state.procs
    }
    spaces = {ns: netns.exists(ns) for ns in state.namespaces}
    return {
        "lab": lab,
        "up": state.phase == "up",
        "phase": state.phase,
        "inventory": state.inventory,
        "started_at": state.started_at,
        "namespaces": len(spaces),
        "namespaces_missing": [n for n, ok in spaces.items() if not ok],
        "processes": len(procs),
        "processes_dead": [n for n, ok in procs.items() if not ok],
        "timings": state.timings,
    }
