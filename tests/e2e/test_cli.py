"""The `partnerbot` command line, run as the installed console script in a subprocess.

Every run gets a temporary working directory, a database file under it, and fake secrets
in the environment; every run's stdout and stderr are checked for those secrets.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.model import OrderKind
from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.wiring import SystemClock
from storage.sqlite import SqliteStore
from tests.e2e import clean_env, console_script

TOKEN = "7357000001:AAFakeTokenForE2eTestsDoNotLeak_1234"
STRIPE_KEY = "sk_test_FakeKeyForE2eTestsDoNotLeak5678"
WEBHOOK_SECRET = "whsec_FakeSecretForE2eTestsDoNotLeak90"
SECRETS = (TOKEN, TOKEN.split(":", 1)[1], STRIPE_KEY, WEBHOOK_SECRET)
SECRET_ENV = {
    "PARTNERBOT_TELEGRAM__TOKEN": TOKEN,
    "PARTNERBOT_STRIPE__API_KEY": STRIPE_KEY,
    "PARTNERBOT_STRIPE__WEBHOOK_SECRET": WEBHOOK_SECRET,
}
CODE = re.compile(r"^invite code: ([A-Za-z0-9_-]+)$", re.MULTILINE)


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()


class Cli:
    """Runs the console script in `cwd` with a database at `db` and fake secrets set."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.db = cwd / "partnerbot.sqlite"
        self.env = clean_env(PARTNERBOT_DATABASE__PATH=str(self.db), **SECRET_ENV)

    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        unset: tuple[str, ...] = (),
        timeout: float = 60,
    ) -> Result:
        full = {**self.env, **(env or {})}
        for name in unset:
            full.pop(name, None)
        done = subprocess.run(
            [*console_script(), *args], capture_output=True, text=True, cwd=self.cwd,
            env=full, timeout=timeout, check=False,
        )
        result = Result(tuple(args), done.returncode, done.stdout, done.stderr)
        for secret in SECRETS:
            assert secret not in result.output, f"secret leaked by {args}: {result.output!r}"
        return result


def dump(db: Path) -> list[str]:
    """The whole database as SQL text, to show that a refused command changed nothing."""
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def one_error_line(result: Result) -> str:
    assert result.returncode != 0, result
    assert len(result.err_lines) == 1, result.stderr
    line = result.err_lines[0]
    assert line.startswith("partnerbot: "), line
    return line


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def _copy_db(source: Path, target: Path) -> None:
    for suffix in ("", "-wal"):  # closed cleanly, there is no WAL; copy one if there is
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")  # keeps its 0600


@pytest.fixture(scope="module")
def acme_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """`partner add Acme` run once per module through the CLI; tests get a copy."""
    cli = Cli(tmp_path_factory.mktemp("acme"))
    result = cli("partner", "add", "Acme", "--price", "10.00", "--currency", "usd")
    assert result.returncode == 0, result
    return cli.db, result


@pytest.fixture
def acme(cli: Cli, acme_template: tuple[Path, Result]) -> Result:
    """A database holding partner 1, Acme, at 10.00 USD (and the output that made it)."""
    source, result = acme_template
    _copy_db(source, cli.db)
    return result


async def _populate(db: Path) -> None:
    """Transfers 1-4 on partner 1 through the service layer:
    1 grant 100, 2 allocation 10, 3 purchase 60 (order 1), 4 allocation 5."""
    store = await SqliteStore.open(db)
    try:
        billing = BillingService(store, SystemClock(), BillingPolicy())
        await billing.grant_days(1, 100, "welcome", "support:1", "grant-1")
        await billing.create_channel(1, "main", "user:1", "channel-1")
        await billing.allocate_days(1, "main", 10, "user:1", "alloc-1")
        order = await billing.open_order(1, OrderKind.TOPUP, 60, "user:1")
        await billing.credit_paid_order(order.id, order.amount, order.currency, "stripe:evt_1")
        await billing.allocate_days(1, "main", 5, "user:1", "alloc-2")
        assert (await billing.verify()).ok
    finally:
        await store.close()


@pytest.fixture(scope="module")
def ledger_template(
    tmp_path_factory: pytest.TempPathFactory, acme_template: tuple[Path, Result]
) -> Path:
    db = tmp_path_factory.mktemp("ledger") / "ledger.sqlite"
    _copy_db(acme_template[0], db)
    asyncio.run(_populate(db))
    return db


@pytest.fixture
def ledger(cli: Cli, ledger_template: Path) -> Cli:
    """Acme with four transfers (see _populate)."""
    _copy_db(ledger_template, cli.db)
    return cli


def tamper(db: Path, script: str) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.executescript(script)
    finally:
        conn.close()


# partner add / list / show -----------------------------------------------------------


def test_partner_add_prints_the_id_and_an_invite_code(acme: Result) -> None:
    assert "id: 1" in acme.stdout.splitlines()
    codes = CODE.findall(acme.stdout)
    assert len(codes) == 1
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", codes[0]), codes
    assert "10.00 USD" in acme.stdout


def test_invite_codes_differ_and_only_their_hash_is_stored(cli: Cli, acme: Result) -> None:
    other = cli("partner", "add", "Globex")
    assert other.returncode == 0, other
    first, second = CODE.findall(acme.stdout)[0], CODE.findall(other.stdout)[0]
    assert first != second
    stored = "\n".join(dump(cli.db))
    assert first not in stored and second not in stored


def test_partner_list_shows_acme(cli: Cli, acme: Result) -> None:
    result = cli("partner", "list")
    assert result.returncode == 0, result
    assert result.stderr == ""
    line = next(ln for ln in result.stdout.splitlines() if "Acme" in ln)
    assert line.split()[0] == "1"
    assert "10.00 USD" in line


def test_output_into_a_closed_pipe_ends_quietly(cli: Cli, acme: Result) -> None:
    # `partnerbot partner show Acme | head -1`: the reader is gone before the last line.
    proc = subprocess.Popen(
        [*console_script(), "partner", "show", "Acme"], cwd=cli.cwd, env=cli.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # nothing will read what it writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert err == ""


def test_partner_show_by_name_and_by_id(cli: Cli, acme: Result) -> None:
    by_name = cli("partner", "show", "Acme")
    by_id = cli("partner", "show", "1")
    assert by_name.returncode == 0 and by_id.returncode == 0, (by_name, by_id)
    assert by_name.stdout.splitlines()[0] == "partner 1: Acme"
    assert "balance: 0 days" in by_name.stdout
    assert by_name.stdout == by_id.stdout
    assert cli("partner", "show", "acme").stdout == by_name.stdout  # names: any case


def test_partner_show_lists_channels_and_ledger(ledger: Cli) -> None:
    result = ledger("partner", "show", "Acme")
    assert result.returncode == 0, result
    assert "balance: 145 days" in result.stdout
    assert "main:" in result.stdout
    assert "#3" in result.stdout and "purchase" in result.stdout


# ledger verify -----------------------------------------------------------------------


def test_ledger_verify_ok(ledger: Cli) -> None:
    result = ledger("ledger", "verify")
    assert result.returncode == 0, result
    assert result.stdout.splitlines()[0].startswith("ledger ok")
    assert "4 transfers" in result.stdout


def test_ledger_verify_names_an_edited_transfer(ledger: Cli) -> None:
    tamper(ledger.db, "DROP TRIGGER transfers_no_update;"
                      " UPDATE transfers SET days = days + 5 WHERE id = 2;")
    result = ledger("ledger", "verify")
    assert result.returncode != 0
    assert not result.stdout.startswith("ledger ok")
    assert "transfers.id=2" in result.output
    assert "transfers.id=1:" not in result.output  # the rows before it are fine


def test_ledger_verify_catches_a_deleted_transfer(ledger: Cli) -> None:
    tamper(ledger.db, "DROP TRIGGER transfers_no_delete; DELETE FROM transfers WHERE id = 3;")
    result = ledger("ledger", "verify")
    assert result.returncode != 0
    # The chain breaks at the row after the hole; the paid order lost its credit.
    assert "transfers.id=4" in result.output
    assert "orders.id=1" in result.output


def test_ledger_verify_names_the_deleted_transfer_itself(ledger: Cli) -> None:
    tamper(ledger.db, "DROP TRIGGER transfers_no_delete; DELETE FROM transfers WHERE id = 3;")
    result = ledger("ledger", "verify")
    assert result.returncode != 0
    assert "transfers.id=3" in result.output


def test_ledger_verify_catches_a_truncated_tail(ledger: Cli) -> None:
    tamper(ledger.db, """
        DROP TRIGGER transfers_no_delete;
        DELETE FROM transfers WHERE id = 4;
        UPDATE accounts SET balance = balance + 5 WHERE code = 'partner:1';
        UPDATE accounts SET balance = balance - 5 WHERE code = 'channel:1';
    """)
    result = ledger("ledger", "verify")
    assert result.returncode != 0, result.stdout


@pytest.mark.parametrize("account", ["partner:1", "channel:1", "ext:grants"])
def test_ledger_verify_names_an_edited_cached_balance(ledger: Cli, account: str) -> None:
    tamper(ledger.db, f"UPDATE accounts SET balance = balance + 7 WHERE code = '{account}';")
    result = ledger("ledger", "verify")
    assert result.returncode != 0
    assert f"accounts.code={account}" in result.output
    assert "zero sum" in result.output


def test_ledger_verify_on_an_empty_database(cli: Cli) -> None:
    result = cli("ledger", "verify")
    assert result.returncode == 0, result
    assert result.stdout.startswith("ledger ok: 0 transfers")


# db backup ---------------------------------------------------------------------------


def test_backup_is_a_verified_copy(ledger: Cli) -> None:
    copy = ledger.cwd / "copy.db"
    result = ledger("db", "backup", str(copy))
    assert result.returncode == 0, result
    assert copy.is_file()
    assert not list(ledger.cwd.glob(".copy.db*")), "partial file left behind"
    checked = ledger("ledger", "verify", env={"PARTNERBOT_DATABASE__PATH": str(copy)})
    assert checked.returncode == 0, checked
    assert checked.stdout.startswith("ledger ok: 4 transfers")
    shown = ledger("partner", "show", "Acme", env={"PARTNERBOT_DATABASE__PATH": str(copy)})
    assert "balance: 145 days" in shown.stdout


def test_backup_relative_path_is_relative_to_the_working_directory(ledger: Cli) -> None:
    result = ledger("db", "backup", "rel.db")
    assert result.returncode == 0, result
    assert (ledger.cwd / "rel.db").is_file()


def test_backup_refuses_an_existing_path(ledger: Cli) -> None:
    target = ledger.cwd / "taken.db"
    target.write_bytes(b"precious")
    result = ledger("db", "backup", str(target))
    line = one_error_line(result)
    assert "exists" in line
    assert target.read_bytes() == b"precious"
    assert not list(ledger.cwd.glob(".taken.db*"))


def test_backup_into_a_missing_directory(ledger: Cli) -> None:
    result = ledger("db", "backup", str(ledger.cwd / "no" / "such" / "dir.db"))
    assert "does not exist" in one_error_line(result)


# refusals: one line on stderr, non-zero, nothing changed -----------------------------

REFUSALS = [
    pytest.param(("partner", "show", "Nope"), "Nope", id="unknown-name"),
    pytest.param(("partner", "show", "99"), "99", id="unknown-id"),
    pytest.param(("partner", "add", "X", "--price", "abc"), "amount", id="price-abc"),
    pytest.param(("partner", "add", "X", "--price", "-1"), "amount", id="price-negative"),
    pytest.param(("partner", "add", "X", "--price=-1"), "amount", id="price-negative-eq"),
    pytest.param(("partner", "add", "X", "--price", "1.234"), "amount", id="price-3-places"),
    pytest.param(("partner", "add", "X", "--price", "0"), "amount", id="price-zero"),
    pytest.param(("partner", "add", "X", "--price", "1e3"), "amount", id="price-exponent"),
    pytest.param(("partner", "add", "X", "--price", "1000000000"), "large", id="price-huge"),
    pytest.param(("partner", "add", "X", "--price", "10.5", "--currency", "jpy"), "JPY",
                 id="price-decimals-jpy"),
    pytest.param(("partner", "add", "X", "--currency", "xyz"), "currency", id="currency-xyz"),
    pytest.param(("partner", "add", "X", "--currency", "dollars"), "currency",
                 id="currency-word"),
    pytest.param(("partner", "add", "a" * 65), "64", id="name-65-chars"),
    pytest.param(("partner", "add", "12345"), "digits", id="name-all-digits"),
    pytest.param(("partner", "add", "   "), "name", id="name-blank"),
    pytest.param(("partner", "add", "Ac\u202eme"), "control", id="name-bidi-override"),
    pytest.param(("partner", "add", "Acme"), "Acme", id="duplicate-name"),
    pytest.param(("partner", "add", "ACME"), "already", id="duplicate-name-other-case"),
    pytest.param(("--config", "missing.toml", "partner", "list"), "missing.toml",
                 id="missing-config-file"),
]


@pytest.mark.parametrize(("args", "needle"), REFUSALS)
def test_refusals_are_one_line_and_change_nothing(
    cli: Cli, acme: Result, args: tuple[str, ...], needle: str
) -> None:
    before = dump(cli.db)
    result = cli(*args)
    line = one_error_line(result)
    assert needle.lower() in line.lower(), line
    assert result.stdout == ""
    assert dump(cli.db) == before


def test_a_name_of_64_characters_is_fine(cli: Cli, acme: Result) -> None:
    result = cli("partner", "add", "b" * 64)
    assert result.returncode == 0, result


@pytest.mark.parametrize(("args", "shown"), [
    (("--price", "12,50", "--currency", "USD"), "12.50 USD"),
    (("--price", "1500", "--currency", "jpy"), "1,500 JPY"),
    (("--currency", "eur"), "10.00 EUR"),  # the default price, billing.monthly_price
])
def test_prices_and_currencies_people_type(
    cli: Cli, acme: Result, args: tuple[str, ...], shown: str
) -> None:
    result = cli("partner", "add", "Initech", *args)
    assert result.returncode == 0, result
    assert shown in result.stdout


@pytest.mark.parametrize(("variable", "value", "key"), [
    ("PARTNERBOT_BILLING__MONTHLY_PRICE", "-5", "billing.monthly_price"),
    ("PARTNERBOT_BILLING__MONTHLY_PRICE", "ten", "billing.monthly_price"),
    ("PARTNERBOT_BILLING__CURRENCY", "xyz", "billing.currency"),
    ("PARTNERBOT_DATABASE__SYNCHRONOUS", "OFF", "database.synchronous"),
    ("PARTNERBOT_SERVER__PORT", "70000", "server.port"),
])
def test_an_invalid_setting_is_one_line_naming_the_key(
    cli: Cli, acme: Result, variable: str, value: str, key: str
) -> None:
    before = dump(cli.db)
    result = cli("partner", "add", "Initech", env={variable: value})
    assert result.returncode == 2, result
    assert key in one_error_line(result)
    assert result.stdout == ""
    assert dump(cli.db) == before


def test_config_errors_never_echo_a_secret_from_the_file(cli: Cli, acme: Result) -> None:
    config = cli.cwd / "secret.toml"
    config.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\nunknown = 1\n'
        f'[stripe]\napi_key = "{STRIPE_KEY}"\nwebhook_secret = "{WEBHOOK_SECRET}"\n',
        encoding="utf-8",
    )
    result = cli("--config", str(config), "partner", "list", unset=tuple(SECRET_ENV))
    assert "telegram.unknown" in one_error_line(result)
    config.write_text(f'[telegram]\ntoken = ["{TOKEN}"]\n', encoding="utf-8")
    result = cli("--config", str(config), "partner", "list", unset=tuple(SECRET_ENV))
    assert "telegram.token" in one_error_line(result)
    config.write_text(f'[telegram]\ntoken = "{TOKEN}\n', encoding="utf-8")  # unterminated
    result = cli("--config", str(config), "partner", "list", unset=tuple(SECRET_ENV))
    one_error_line(result)


def test_a_refusal_on_a_fresh_install_touches_nothing(cli: Cli) -> None:
    result = cli("partner", "add", "X", "--price", "abc")
    one_error_line(result)
    assert not cli.db.exists()


# configuration: --config anywhere, PARTNERBOT_CONFIG, ./config.toml ------------------


@pytest.fixture
def config_cli(cli: Cli) -> Cli:
    """No PARTNERBOT_DATABASE__PATH: the database and the price come from a file."""
    del cli.env["PARTNERBOT_DATABASE__PATH"]
    (cli.cwd / "other.toml").write_text(
        '[database]\npath = "from-file.db"\n[billing]\nmonthly_price = 2500\n',
        encoding="utf-8",
    )
    return cli


def test_config_before_the_subcommand(config_cli: Cli) -> None:
    result = config_cli("--config", "other.toml", "partner", "add", "Beta")
    assert result.returncode == 0, result
    assert "25.00 USD" in result.stdout
    assert (config_cli.cwd / "from-file.db").is_file()
    assert not (config_cli.cwd / "partnerbot.db").exists()


@pytest.mark.parametrize("where", ["after-action", "between"])
def test_config_after_the_subcommand(config_cli: Cli, where: str) -> None:
    assert config_cli("--config", "other.toml", "partner", "add", "Beta").returncode == 0
    args = (("partner", "list", "--config", "other.toml") if where == "after-action"
            else ("partner", "--config", "other.toml", "list"))
    result = config_cli(*args)
    assert result.returncode == 0, result
    assert "Beta" in result.stdout


def test_config_given_after_a_positional_argument(config_cli: Cli) -> None:
    result = config_cli("partner", "add", "Gamma", "--config", "other.toml")
    assert result.returncode == 0, result
    assert "25.00 USD" in result.stdout
    shown = config_cli("ledger", "verify", "--config", "other.toml")
    assert shown.returncode == 0 and "1 partners" in shown.stdout, shown


def test_partnerbot_config_variable(config_cli: Cli) -> None:
    assert config_cli("--config", "other.toml", "partner", "add", "Beta").returncode == 0
    result = config_cli("partner", "list", env={"PARTNERBOT_CONFIG": "other.toml"})
    assert result.returncode == 0, result
    assert "Beta" in result.stdout
    missing = config_cli("partner", "list", env={"PARTNERBOT_CONFIG": "gone.toml"})
    assert "gone.toml" in one_error_line(missing)


def test_config_option_wins_over_the_variable(config_cli: Cli) -> None:
    (config_cli.cwd / "third.toml").write_text('[database]\npath = "third.db"\n', "utf-8")
    result = config_cli(
        "--config", "third.toml", "partner", "add", "Delta",
        env={"PARTNERBOT_CONFIG": "other.toml"},
    )
    assert result.returncode == 0, result
    assert (config_cli.cwd / "third.db").is_file()
    assert not (config_cli.cwd / "from-file.db").exists()


def test_default_config_file_in_the_working_directory(config_cli: Cli) -> None:
    (config_cli.cwd / "config.toml").write_text(
        '[database]\npath = "default.db"\n', encoding="utf-8"
    )
    result = config_cli("partner", "add", "Epsilon")
    assert result.returncode == 0, result
    assert (config_cli.cwd / "default.db").is_file()


def test_environment_wins_over_the_file(config_cli: Cli) -> None:
    result = config_cli(
        "--config", "other.toml", "partner", "add", "Zeta",
        env={"PARTNERBOT_BILLING__MONTHLY_PRICE": "1200"},
    )
    assert result.returncode == 0, result
    assert "12.00 USD" in result.stdout


# run ----------------------------------------------------------------------------------


def test_run_without_a_token_names_telegram_token(cli: Cli) -> None:
    result = cli("run", unset=("PARTNERBOT_TELEGRAM__TOKEN",))
    assert result.returncode != 0
    assert "telegram.token" in one_error_line(result)
    assert not cli.db.exists(), "run touched the database before checking its settings"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local TCP port nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


def test_run_with_an_unreachable_bot_api_fails_cleanly_without_the_token(
    cli: Cli, acme: Result, closed_port: int
) -> None:
    # DEBUG logging, so every library's log line is searched for the token too.
    result = cli("run", env={
        "PARTNERBOT_TELEGRAM__API_BASE_URL": f"http://127.0.0.1:{closed_port}/bot",
        "PARTNERBOT_LOGGING__LEVEL": "DEBUG",
    })
    assert result.returncode == 2, result
    errors = [ln for ln in result.err_lines if ln.startswith("partnerbot: ")]
    assert len(errors) == 1 and "telegram.api_base_url" in errors[0], result.stderr
    # The token was loaded and scrubbed where a library logged it (so the search for it
    # was not vacuous).
    assert "[secret]" in result.stderr
    # At the default level: exactly the one line.
    quiet = cli("run", env={
        "PARTNERBOT_TELEGRAM__API_BASE_URL": f"http://127.0.0.1:{closed_port}/bot"
    })
    assert "telegram.api_base_url" in one_error_line(quiet)
