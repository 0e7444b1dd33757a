"""Every shipped register map loads; broken maps fail naming the file and the register."""

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware.codec import CodecError, decode_raw, encode_raw
from hardware.errors import RegisterMapError
from hardware.regmap import REGISTERS_DIR, available_models, load_file, load_model

SHIPPED = [
    "dds238-2-zn-sr",
    "modbus-relay-module",
    "sdm120",
    "sdm630",
    "sfar-1m-4di-gas",
    "sfar-1m-4di-water",
]

GOOD = """
model = "m"
kind = "meter"
description = "test meter"
source = "test document"
[[registers]]
name = "import_energy"
address = 0x0010
function = "input"
type = "float32"
unit = "kWh"
[[registers]]
name = "voltage"
address = 0x0000
function = "input"
type = "float32"
unit = "V"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


def test_every_shipped_model_loads() -> None:
    assert set(SHIPPED) <= set(available_models())
    for name in available_models():
        model = load_model(name)
        assert model.source
        if model.kind == "meter":
            assert model.has("import_energy")


def test_dds238_relay_is_holding_0x001a_written_with_function_16() -> None:
    model = load_model("dds238-2-zn-sr")
    assert model.relay is not None
    reg = model.register(model.relay.register_name)
    assert (reg.address, reg.function, model.relay.write_function) == (0x001A, "holding", 16)


def test_dds238_energy_is_exact_integer_wh() -> None:
    model = load_model("dds238-2-zn-sr")
    reg = model.register("import_energy")
    assert model.base_units(reg, encode_raw(123456789, "u32")) == 1234567890


def test_water_counter_gives_litres_low_word_first() -> None:
    model = load_model("sfar-1m-4di-water")
    reg = model.register("import_energy")
    assert (model.service, reg.address, reg.function, model.order_of(reg)) == (
        "water",
        0x0034,
        "holding",
        "little",
    )
    assert model.base_units(reg, [0x0001, 0x0002]) == 0x0002_0001  # pulses = litres


def test_gas_volume_becomes_wh_only_with_a_calorific_value() -> None:
    model = load_model("sfar-1m-4di-gas")
    reg = model.register("import_energy")
    words = encode_raw(12_345, "u32", "little")  # 123.45 m3
    with pytest.raises(RegisterMapError, match="calorific value"):
        model.base_units(reg, words)
    wh_per_m3 = Decimal("39.5") * Decimal("1.02264") * 1000 / Decimal("3.6")
    expected = (Decimal("123.45") * wh_per_m3).to_integral_value()
    assert model.base_units(reg, words, wh_per_m3=wh_per_m3) == int(expected) == 1_385_187


@pytest.mark.parametrize(
    ("service", "unit", "ok"),
    [
        ("electricity", "kWh", True),
        ("electricity", "L", False),
        ("water", "m3", True),
        ("water", "kWh", False),
        ("gas", "m3", True),
        ("gas", "kWh", True),
    ],
)
def test_the_energy_register_unit_must_fit_the_service(
    tmp_path: Path, service: str, unit: str, ok: bool
) -> None:
    text = GOOD.replace('kind = "meter"', f'kind = "meter"\nservice = "{service}"')
    path = write(tmp_path, text.replace('unit = "kWh"', f'unit = "{unit}"'))
    if ok:
        assert load_file(path).service == service
        return
    with pytest.raises(RegisterMapError, match=f"cannot meter {service}") as err:
        load_file(path)
    assert err.value.register == "import_energy"


def test_good_map_loads(tmp_path: Path) -> None:
    assert load_file(write(tmp_path, GOOD)).register("voltage").width == 2


@pytest.mark.parametrize(
    ("change", "register", "reason"),
    [
        (("0x0000\nfunction", "0x0011\nfunction"), "voltage", "overlaps"),
        (('type = "float32"\nunit = "V"', 'type = "float33"\nunit = "V"'), "voltage", "type"),
        (('name = "import_energy"', 'name = "energy"'), "import_energy", "energy register"),
        (('unit = "kWh"', 'unit = "V"'), "import_energy", "not an energy unit"),
        (('name = "voltage"', 'name = "import_energy"'), "import_energy", "declared twice"),
        (("0x0000\nfunction", "0x10000\nfunction"), "voltage", "address"),
    ],
)
def test_broken_map_names_file_and_register(
    tmp_path: Path, change: tuple[str, str], register: str, reason: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(RegisterMapError) as info:
        load_file(path)
    assert info.value.register == register
    assert str(path) in str(info.value)
    assert reason in str(info.value)


def test_unknown_key_and_bad_toml_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RegisterMapError, match=r"m\.toml.*colour"):
        load_file(write(tmp_path, GOOD + 'colour = "red"\n'))
    with pytest.raises(RegisterMapError, match="not valid TOML"):
        load_file(write(tmp_path, GOOD + "[[registers]\n"))


def test_relay_must_name_a_writable_register(tmp_path: Path) -> None:
    text = GOOD + '[relay]\nregister = "voltage"\nwrite_function = 16\n'
    with pytest.raises(RegisterMapError, match="cannot write a input") as info:
        load_file(write(tmp_path, text))
    assert info.value.register == "voltage"


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(RegisterMapError, match="sdm120"):
        load_model("no-such-meter")
    with pytest.raises(RegisterMapError, match="not a valid model name"):
        load_model("../etc/passwd")
    assert REGISTERS_DIR.is_dir()


@given(st.integers(0, 2**32 - 1), st.sampled_from(["big", "little"]))
def test_u32_roundtrip(value: int, order: str) -> None:
    assert decode_raw(encode_raw(value, "u32", order), "u32", order) == value  # type: ignore[arg-type]


@given(st.integers(-(2**15), 2**15 - 1))
def test_s16_roundtrip(value: int) -> None:
    assert decode_raw(encode_raw(value, "s16"), "s16") == value


def test_register_garbage_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        decode_raw([0x7FC0, 0], "float32")
    with pytest.raises(CodecError):
        decode_raw([1], "u32")
    with pytest.raises(CodecError):
        decode_raw([0x1FFFF], "u16")
