"""Bad input gets a clear error, never a traceback (issue #11, item 4): hostile YAML (alias bombs,
self-referring aliases, control characters, deep nesting, a folder) in every loader, a generated
corpus of malformed inventories, playbooks, roles files, CLI arguments and API requests, each
answered with the documented exit code (README "Exit codes": 2 invalid input, 13 access refused),
the file named, nothing sent to a device. Hypothesis examples are bounded to stay fast."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import audit
from agent.api.auth import Policy
from agent.audit.redact import scrub
from agent.errors import ConfigError, CordonError, InventoryError, PlaybookError
from agent.inventory import load as load_inventory
from agent.inventory.models import Inventory
from agent.playbook import load as load_playbook
from tests.conftest import EXAMPLE, ROOT, require_root

CORPUS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ROLES = "oncall: [alice]\noperator: [bob]\nauditor: [dave]\n"
PLAYBOOK = (ROOT / "playbooks" / "preventive-degraded.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(EXAMPLE)


def load_roles(path: Path) -> object:
    path.chmod(0o644)
    return Policy.load(path)


Loader = Callable[[Path], object]


@pytest.fixture(params=["inventory", "playbook", "roles"])
def loader(request: pytest.FixtureRequest, inv: Inventory) -> Loader:
    """Each loader of a person-written YAML file, raising its documented error."""
    kind = request.param
    if kind == "inventory":
        return load_inventory
    if kind == "playbook":
        return lambda path: load_playbook(path, inv)
    return load_roles


def refused(load: Loader, path: Path) -> CordonError:
    """`load(path)` must refuse with exit code 2 naming the file; returns the error."""
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert err.exit_code == 2
    assert str(path) in err.message
    return err


def bomb(levels: int) -> str:
    """The "billion laughs": each level repeats the previous one nine times through aliases."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_in_every_loader(loader: Loader, tmp_path: Path) -> None:
    """A 240-byte file that expands to 59,000 nodes (9 levels: 387 million): refused as an
    alias bomb, with the line, using little memory (was: expanded in full, 1.15 GiB)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(5), encoding="utf-8")
    assert path.stat().st_size < 250
    tracemalloc.start()
    try:
        err = refused(loader, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "YAML aliases repeat more than 10000 nodes" in err.message
    assert f"{path}:1:" in err.message
    assert peak < 64 * 1024 * 1024, peak


@pytest.mark.parametrize(
    ("text", "words", "line"),
    [
        ("a: 1\nb: x\x00y\n", "control character U+0000 at column 5", 2),
        ("a: 1\nb: \x1b[31mred\n", "control character U+001B at column 4", 2),
        ('a: 1\nb: "x\\0y"\n', "control character U+0000 in a value", 2),
        ('a: 1\nb: "\\x07"\n', "control character U+0007 in a value", 2),
        ("a: &x [1, *x]\n", "a YAML alias refers to a node that contains it", 1),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "nested deeper than 64 levels", None),
        ("a: b: c\n", "YAML syntax error", 1),
    ],
    ids=["raw-nul", "raw-escape", "escaped-nul", "escaped-bell", "recursive", "deep", "syntax"],
)
def test_hostile_yaml_is_refused_with_its_line(
    loader: Loader, tmp_path: Path, text: str, words: str, line: int | None
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    err = refused(loader, path)
    assert words in err.message
    if line is not None:
        assert f"{path}:{line}:" in err.message


def test_a_folder_is_not_an_input_file(loader: Loader, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    assert "is a directory" in refused(loader, tmp_path / "logs").message


# -- the generated corpus: mutations of valid files ----------------------------------------------

NOISE = st.text(
    alphabet=st.sampled_from(list("\x00\x01\x07\x1b\x7f\x85\t\n :-[]{}&*!|>'\"#%@`,?é\u202e")),
    min_size=1,
    max_size=12,
)


def mutate(text: str, data: st.DataObject) -> str:
    """Insert noise somewhere, or cut a piece out, or duplicate a line."""
    kind = data.draw(st.sampled_from(["insert", "cut", "duplicate"]))
    at = data.draw(st.integers(0, len(text)))
    if kind == "insert":
        return text[:at] + data.draw(NOISE) + text[at:]
    if kind == "cut":
        return text[:at] + text[at + data.draw(st.integers(1, 40)) :]
    lines = text.splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1))
    return "".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])


def accepted_or_refused(load: Loader, path: Path) -> None:
    """Either valid, or the documented error naming the file; nothing else escapes."""
    error: CordonError | None = None
    try:
        load(path)
    except (InventoryError, PlaybookError, ConfigError) as err:
        error = err
    if error is not None:
        assert error.exit_code == 2
        assert str(path) in error.message
        assert "Traceback" not in error.message


@CORPUS
@given(data=st.data())
def test_corpus_playbooks(inv: Inventory, tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "pb.yaml"
    path.write_text(mutate(PLAYBOOK, data), encoding="utf-8")
    accepted_or_refused(lambda p: load_playbook(p, inv), path)


@CORPUS
@given(data=st.data())
def test_corpus_roles(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "roles.yaml"
    path.write_text(mutate(ROLES, data), encoding="utf-8")
    accepted_or_refused(load_roles, path)


@settings(CORPUS, max_examples=8)
@given(data=st.data())
def test_corpus_inventories(tmp_path: Path, data: st.DataObject) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    path = tmp_path / "inventory" / "inv.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(mutate(text, data), encoding="utf-8")
    accepted_or_refused(load_inventory, path)


# -- the command line ---------------------------------------------------------------------------


def cordon(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`cordon ARGS` in this process, through `agent.cli.main` (the exit code it documents)."""
    from agent.cli import main  # noqa: PLC0415

    argv = sys.argv
    sys.argv = ["cordon", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
        audit.close()
    out, err = capsys.readouterr()
    return code, out, err


def test_inventory_check_of_an_alias_bomb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(9), encoding="utf-8")
    code, _, err = cordon(capsys, "inventory", "check", str(path))
    assert code == 2
    assert f"{path}:1:" in err and "alias" in err
    assert "Traceback" not in err


@CORPUS
@given(token=st.text(min_size=1, max_size=40).filter(lambda t: not t.isascii() or " " in t))
def test_non_ascii_token_is_invalid_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], token: str
) -> None:
    """A token with an accent, a space or a control character: exit 2 before anything is sent,
    and the token is not echoed (was: UnicodeEncodeError traceback)."""
    code, out, err = cordon(capsys, "status", "--state-dir", str(tmp_path), "--token", token)
    assert code == 2, err
    assert "bearer token" in err and "Traceback" not in err
    if len(token.strip()) > 3:
        assert token not in out + err


def test_local_refuses_a_roles_file_of_the_callers_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--local` as a user other than root, with a roles file that user wrote: exit 13, nothing
    read from the journal (was: any local user could make themselves operator)."""
    require_root()
    nobody = pwd.getpwnam("nobody").pw_uid
    roles = tmp_path / "mine.yaml"
    roles.write_text("operator: [nobody]\n", encoding="utf-8")
    roles.chmod(0o644)
    os.chown(roles, nobody, -1)
    state = tmp_path / "state"
    monkeypatch.setattr(os, "geteuid", lambda: nobody)
    monkeypatch.setenv("CORDON_LOG_DIR", str(tmp_path / "logs"))
    code, _, err = cordon(
        capsys, "status", "--local", "--roles", str(roles), "--state-dir", str(state)
    )
    assert code == 13, err
    assert "owned by nobody" in err
    assert not (state / "journal.sqlite").exists()
    # the same file owned by root, which nobody else may write: accepted
    os.chown(roles, 0, -1)
    from agent.api.auth import check_local_roles  # noqa: PLC0415

    check_local_roles(roles, uid=nobody, state_dir=state)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory `nobody` can traverse (pytest's tmp_path is root's alone)."""
    require_root()
    path = Path(tempfile.mkdtemp(prefix="cordon-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_journal_that_cannot_be_written_is_a_clear_error(
    open_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only state directory and journal (here: a user who may not write them): a clear
    error naming the cause, no traceback. The CLI runs in a child that has become `nobody`."""
    state = open_dir / "state"
    roles = roles_for_nobody(open_dir)
    monkeypatch.setenv("CORDON_LOG_DIR", str(open_dir / "root-logs"))
    args = ["incident", "open", "--local", "--state-dir", str(state), "--roles", str(roles)]
    code, _, err = cordon(capsys, *args, "--reason", "x")
    assert code == 0, err
    for p in (state, *state.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)
    nobody_logs = open_dir / "nobody-logs"
    nobody_logs.mkdir(mode=0o777)
    nobody_logs.chmod(0o777)
    result = as_nobody([*args, "--reason", "y"], {"CORDON_LOG_DIR": str(nobody_logs)})
    assert "crash" not in result, result
    assert result["code"] in (2, 11), result
    assert "Traceback" not in result["err"]
    assert str(state) in result["err"] or "journal cannot be used" in result["err"], result


def roles_for_nobody(tmp_path: Path) -> Path:
    path = tmp_path / "roles.yaml"
    if not path.exists():
        path.write_text("operator: [nobody]\nroot_is: operator\n", encoding="utf-8")
        path.chmod(0o644)
    return path


def as_nobody(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run `cordon ARGS` in a forked child that has become nobody; its exit code and stderr."""
    import io  # noqa: PLC0415

    from agent.cli import main  # noqa: PLC0415

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        out: dict[str, Any] = {}
        try:
            os.setgroups([])
            os.setgid(pwd.getpwnam("nobody").pw_gid)
            os.setuid(pwd.getpwnam("nobody").pw_uid)
            os.environ.update(env)
            sys.argv = ["cordon", *args]
            sys.stderr = io.StringIO()
            sys.stdout = io.StringIO()
            try:
                main()
                out["code"] = 0
            except SystemExit as exc:
                out["code"] = int(exc.code or 0)
            out["err"] = sys.stderr.getvalue()
        except BaseException as exc:
            out = {"crash": repr(exc)}
        data = json.dumps(out).encode()
        while data:
            data = data[os.write(write_end, data) :]
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(data)
    return result


# -- small things a user hit (item 9) ------------------------------------------------------------


def test_prose_about_a_token_is_not_scrubbed() -> None:
    """ "bearer token presented" is prose, not a secret; a value after the keyword still is."""
    text = "the bearer token presented (by uid 0) matches no operator"
    assert scrub(text) == text
    assert scrub("token s3cr3t-V4lue") == "token [REDACTED]"
    assert scrub("username admin password 0 T0psy") == "username admin password 0 [REDACTED]"
