"""JSON Schemas of the MQTT payloads, generated from the message models.

``python -m protocol.schemas docs/protocol`` writes one file per payload; a test keeps the
committed files equal to the models, so the published contract cannot drift from the code.
"""

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from protocol.messages import (
    BusHealth,
    Command,
    CreditState,
    EventMessage,
    ResumePoint,
    Status,
    UsageMessage,
)
from protocol.receipts import Receipt

PAYLOADS: dict[str, type[BaseModel]] = {
    "usage": UsageMessage,
    "events": EventMessage,
    "status": Status,
    "cmd": Command,
    "credit-state": CreditState,
    "resume": ResumePoint,
    "receipt": Receipt,
    "bus-health": BusHealth,  # what an online status carries per meter under meters.<id>.bus
}


def schema(name: str) -> str:
    """The JSON Schema of payload ``name`` as stable, pretty-printed text."""
    document = PAYLOADS[name].model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["$id"] = f"smsa/v1/{name}.schema.json"
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PAYLOADS:
        path = folder / f"{name}.schema.json"
        path.write_text(schema(name))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m protocol.schemas FOLDER", file=sys.stderr)
        return 2
    for path in write(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
