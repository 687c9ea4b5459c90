"""``jobtrio users`` (the USERS_FILE) and ``jobtrio login`` (a token from a node).

    jobtrio users add alice --role admin          # the password from a prompt, twice
    echo "$PW" | jobtrio users add ci --role user # or from stdin when it is not a terminal
    jobtrio users list
    jobtrio users passwd alice                    # revokes alice's tokens
    jobtrio users remove alice                    # revokes them too
    export JOBTRIO_TOKEN=$(jobtrio login alice)

The users commands edit the file named by ``--file`` or ``USERS_FILE`` on
this machine (every node must be given the same file; a running node
re-reads it when it changes). They never take a password as an argument: it
would stay in the shell's history and in ``ps``. ``program.py`` adds both
to the ``jobtrio`` group.
"""

from __future__ import annotations

import os
import ssl
import sys

import click
import httpx
from rich.table import Table

from ..jobs import to_iso
from ..users import Role, Users, UsersFileError
from .exits import EXIT_OK, Failure, SettingsFailure
from .output import out, print_json
from .remote import ca_file_option

ROLES = click.Choice([r.value for r in Role])


def _users_file(path: str | None) -> str:
    found = path or os.environ.get("USERS_FILE", "")
    if not found:
        raise SettingsFailure("no users file: pass --file PATH or set USERS_FILE")
    return found


def _read_password(confirm: bool) -> str:
    """A password from a hidden prompt (twice), or the first line of stdin in a script."""
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=confirm))
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


FILE_OPTION = click.option(
    "--file",
    "path",
    metavar="PATH",
    help="The users file [env: USERS_FILE].",
)


@click.group()
def users() -> None:
    """Manage the users who may log in (USERS_FILE; AUTH_ENABLED=true)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=ROLES, required=True, help="admin, user or worker.")
@FILE_OPTION
def add_user(name: str, role: str, path: str | None) -> int:
    """Add a user; the password is read from a prompt or stdin, never an argument."""
    try:
        found = Users.open_or_create(_users_file(path))
        password = _read_password(confirm=True)
        found.add(name, Role(role), password)
        found.save()
    except UsersFileError as exc:
        raise Failure(str(exc)) from None
    out.print(f"Added {name} ({role}) to {found.path}.")
    return EXIT_OK


@users.command("passwd")
@click.argument("name")
@FILE_OPTION
def passwd(name: str, path: str | None) -> int:
    """Change a user's password; the tokens issued to them stop working."""
    try:
        found = Users.load(_users_file(path))
        found.set_password(name, _read_password(confirm=True))
        found.save()
    except UsersFileError as exc:
        raise Failure(str(exc)) from None
    out.print(f"Changed the password of {name}; their earlier tokens are revoked.")
    return EXIT_OK


@users.command("role")
@click.argument("name")
@click.argument("role", type=ROLES)
@FILE_OPTION
def set_role(name: str, role: str, path: str | None) -> int:
    """Change a user's role; the tokens issued to them stop working."""
    try:
        found = Users.load(_users_file(path))
        found.set_role(name, Role(role))
        found.save()
    except UsersFileError as exc:
        raise Failure(str(exc)) from None
    out.print(f"{name} is now {role}; their earlier tokens are revoked.")
    return EXIT_OK


@users.command("remove")
@click.argument("name")
@FILE_OPTION
def remove_user(name: str, path: str | None) -> int:
    """Remove a user; the tokens issued to them stop working."""
    try:
        found = Users.load(_users_file(path))
        found.remove(name)
        found.save()
    except UsersFileError as exc:
        raise Failure(str(exc)) from None
    out.print(f"Removed {name}; their tokens are revoked.")
    return EXIT_OK


@users.command("list")
@FILE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_users(path: str | None, as_json: bool) -> int:
    """The users and their roles (never their hashes)."""
    try:
        found = Users.load(_users_file(path))
    except UsersFileError as exc:
        raise Failure(str(exc)) from None
    items = [
        {"name": u.name, "role": str(u.role), "updated_at": to_iso(u.updated_at)} for u in found
    ]
    if as_json:
        print_json({"users": items, "count": len(items)})
        return EXIT_OK
    if not items:
        out.print("No users.")
        return EXIT_OK
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "ROLE", "UPDATED"):
        table.add_column(column)
    for item in items:
        table.add_row(item["name"], item["role"], item["updated_at"] or "-")
    out.print(table)
    return EXIT_OK


@click.command()
@click.argument("name")
@click.option(
    "--url",
    envvar="JOBTRIO_URL",
    default="http://localhost:8080",
    show_default=True,
    metavar="URL",
    help="The node to log in to [env: JOBTRIO_URL].",
)
@click.option("--json", "as_json", is_flag=True, help="Print {token, role, expires_at}.")
@ca_file_option
def login(name: str, url: str, as_json: bool, verify: bool | ssl.SSLContext) -> int:
    """Log in and print a token (export it as JOBTRIO_TOKEN); password from prompt or stdin."""
    password = _read_password(confirm=False)
    try:
        response = httpx.post(
            url.rstrip("/") + "/auth/login",
            json={"username": name, "password": password},
            timeout=30.0,
            verify=verify,
        )
    except httpx.HTTPError as exc:
        raise Failure(f"cannot reach {url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict) or "token" not in body:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        message = error.get("message") if isinstance(error, dict) else None
        raise Failure(f"login refused (HTTP {response.status_code}): {message or 'no reason'}")
    if as_json:
        print_json(body)
    else:
        click.echo(body["token"])
    return EXIT_OK
