"""`faqloop users ...` as an operator runs it: real subprocesses, real database, exit codes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from kb.db import make_engine, make_session_factory
from kb.models import AuditEvent, User
from tests.support import serve


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return serve.run(env, *args, stdin=stdin)


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(FAQLOOP_DATA_DIR=str(tmp_path / "data"), FAQLOOP_DATABASE_URL=db_url)
    return e


def test_first_admin_then_list_and_disable(env: dict[str, str], db_url: str) -> None:
    r = run(
        env, "users", "create", "--email", "Root@Example.com", "--name", "Rita Root",
        "--role", "admin", "--password-stdin", stdin="a long admin password\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "root@example.com" in r.stdout and "password" not in r.stdout
    r = run(
        env, "users", "create", "--email", "ed@example.com", "--name", "Ed",
        "--password-stdin", stdin="editor password",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = run(env, "users", "list").stdout.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        ["ed@example.com", "editor", "active"],
        ["root@example.com", "admin", "active"],
    ]
    r = run(env, "users", "disable", "ED@example.com")
    assert r.returncode == 0 and "disabled ed@example.com" in r.stdout
    assert "disabled" in run(env, "users", "list").stdout.splitlines()[-1]
    # The last active admin stays.
    r = run(env, "users", "disable", "root@example.com")
    assert r.returncode == 2 and "last active admin" in r.stderr

    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        root = s.scalar(select(User).where(User.email == "root@example.com"))
        assert root is not None and root.password_hash is not None
        assert root.password_hash.startswith("$argon2id$")
        assert "a long admin password" not in root.password_hash
        actions = [(e.action, e.actor_kind) for e in s.scalars(select(AuditEvent))]
    engine.dispose()
    assert actions == [
        ("user.create", "system"), ("user.create", "system"), ("user.disable", "system")
    ]  # fmt: skip


def test_bad_input_is_a_clear_error(env: dict[str, str]) -> None:
    base = ["users", "create", "--email", "a@example.com", "--name", "A"]
    r = run(env, *base)  # no --password-stdin: a password is never an argument
    assert r.returncode == 2 and "--password-stdin" in r.stderr
    r = run(env, *base, "--password-stdin", stdin="")
    assert r.returncode == 2 and "no password" in r.stderr
    r = run(env, *base, "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and "at least" in r.stderr
    r = run(env, *base, "--role", "agent", "--password-stdin", stdin="long enough pw\n")
    assert r.returncode == 2 and "editor or admin" in r.stderr
    r = run(env, "users", "create", "--email", "not-an-email", "--name", "A",
            "--password-stdin", stdin="long enough pw\n")  # fmt: skip
    assert r.returncode == 2 and "email" in r.stderr
    assert run(env, *base, "--password-stdin", stdin="long enough pw\n").returncode == 0
    r = run(env, "users", "create", "--email", "A@EXAMPLE.COM", "--name", "B",
            "--password-stdin", stdin="long enough pw\n")  # fmt: skip
    assert r.returncode == 2 and "already exists" in r.stderr
    r = run(env, "users", "disable", "nobody@example.com")
    assert r.returncode == 2 and "no user" in r.stderr
