"""``smsa-demo``: the whole system on one machine, an accelerated prepaid story, then the books.

It starts a broker (embedded amqtt unless ``--broker URL``), the hub on a temporary SQLite
database, ``smsa-meter-sim`` with four meters on Modbus TCP (and one over a socat pty pair when
socat is present) and ``smsa-agent``; provisions everything through the hub's public API; tops
up; and watches the story below happen live. It ends with each provider's settlement and the
ledger check, exits 0 only if the story happened, and stops every process it started.
"""

import argparse
import logging
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from demo.broker import EmbeddedBroker, mosquitto_path, start_mosquitto
from demo.procs import DemoError, Processes, free_port
from demo.stack import Stack, start_stack
from demo.story import BOB_SECOND_TOPUP, Story
from demo.view import View
from firmware_sim.process import terminate

log = logging.getLogger("demo")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="smsa-demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--broker",
        default="auto",
        help="auto (Mosquitto if installed, else embedded), embedded (amqtt in this process), "
        "mosquitto (started here), or the URL of a running broker",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the hub running; print the dashboard URL and an operator key",
    )
    parser.add_argument(
        "--speed", type=float, default=720.0, help="simulated seconds per real second (720)"
    )
    parser.add_argument(
        "--timeout", type=float, default=75.0, help="seconds the story may take (75)"
    )
    parser.add_argument("--no-serial", action="store_true", help="skip the RS-485 (socat) meter")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the database, configs and logs here (default: a temporary folder)",
    )
    args = parser.parse_args(argv)
    if args.speed <= 0 or args.timeout <= 0:
        parser.error("--speed and --timeout must be positive")
    return args


def run(args: argparse.Namespace, view: View) -> bool:
    with ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="smsa-demo-"))
        )
        work.mkdir(parents=True, exist_ok=True)
        procs = Processes(work)
        stack.callback(procs.stop_all)
        broker_url = start_broker(args.broker, stack, work)
        view.say(f"broker {broker_url}; logs in {work}")
        serial = not args.no_serial and shutil.which("socat") is not None
        system = start_stack(
            procs,
            stack,
            work=work,
            broker_url=broker_url,
            speed=args.speed,
            serial=serial,
            view=view,
        )
        story = Story(serial=serial)
        ok = watch(system, story, view, args.timeout)
        finish(system, story, view)
        if args.keep:
            keep(system, procs, view)
        return ok and system.ledger_ok


def start_broker(choice: str, stack: ExitStack, work: Path) -> str:
    """The URL of the broker to use, starting one unless ``choice`` is a URL."""
    if choice.startswith(("mqtt://", "mqtts://")):
        return choice
    if choice == "auto":
        choice = "mosquitto" if mosquitto_path() else "embedded"
    if choice == "mosquitto":
        port = free_port()
        try:
            proc = start_mosquitto(work, port)
        except RuntimeError as exc:
            raise DemoError(str(exc)) from exc
        stack.callback(terminate, proc)
        return f"mqtt://127.0.0.1:{port}"
    if choice == "embedded":
        broker = EmbeddedBroker()
        broker.start()
        stack.callback(broker.stop)
        return broker.url
    raise DemoError(
        f"--broker: expected auto, embedded, mosquitto or an mqtt:// URL, got {choice!r}"
    )


def watch(system: Stack, story: Story, view: View, timeout: float) -> bool:
    api = system.api
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if failed := system.procs.failed():
            raise DemoError(f"{failed[0]} stopped: {system.procs.tail(failed[0])}")
        meters = system.meters()
        # the story, not the traffic: acknowledgements of credit-state updates stay out
        events = api.get("/events", exclude="command_ack", limit="1000")
        story.observe(events, meters)
        if story.bob_cut() and not story.topped_up_bob:
            story.bob_notices = system.bob_api.get("/accounts/bob/notifications")
            api.topup("bob", BOB_SECOND_TOPUP)
            story.topped_up_bob = True
        view.show(f"SMSA demo - {system.hub_url}", meters, events, story.milestones())
        if story.done():
            return True
        time.sleep(0.5)
    return False


def finish(system: Stack, story: Story, view: View) -> None:
    view.say("")
    for text, done in story.milestones():
        view.say(f"  [{'x' if done else ' '}] {text}")
    if story.bob_notices is not None:
        show_notices(story.bob_notices, view)
    view.say("\nprovider settlement:")
    for provider in system.providers():
        view.say(f"  {provider['id']:<14} {provider['tier']:<13} {provider['balance']:>10} USD")
    check = system.api.get("/ledger/check")
    system.ledger_ok = bool(check.get("ok"))
    bad = [name for name, c in check.get("checks", {}).items() if not c.get("ok")]
    view.say(f"\nledger check: {'ok' if system.ledger_ok else 'FAILED: ' + ', '.join(bad)}")


def show_notices(notices: dict[str, Any], view: View) -> None:
    """What bob's own key read when he was cut off: his prompts and what would reconnect him."""
    view.say("\nbob's notifications when he was cut off, read with his own key:")
    for notice in notices["items"]:
        view.say(f"  notice  {notice['kind']:<16} {notice['meter']:<8} {notice['reason']}")
    amount, currency = notices["reconnect_amount"], notices["currency"]
    view.say(f"  balance {notices['balance']} {currency}; a top-up of {amount} {currency} "
             f"reconnects him: {notices['topup_url']}")  # fmt: skip


def keep(system: Stack, procs: Processes, view: View) -> None:
    view.say(f"\ndashboard: {system.hub_url}/   operator key: {system.operator_key}")
    view.say("the system keeps running; press Ctrl-C to stop it")
    try:
        while not procs.failed():
            time.sleep(1)
    except KeyboardInterrupt:
        view.say("stopping")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("amqtt").setLevel(logging.ERROR)
    view = View()
    started = time.monotonic()
    try:
        ok = run(args, view)
    except DemoError as exc:
        print(f"smsa-demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    took = time.monotonic() - started
    view.say(f"\n{'the story happened' if ok else 'the story did NOT happen'} in {took:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
