"""The block planner: contiguous registers in one request, never above the model's limit."""

import itertools
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.modbus.plan import base_unit_decoder, plan, plan_model
from agent.modbus.poller import current_of
from hardware.codec import encode_raw
from hardware.regmap import CURRENT_REGISTERS, MeterModel, Register, available_models, load_model


def _reg(name: str, address: int, rtype: str = "u16", function: str = "holding") -> Register:
    return Register(name=name, address=address, function=function, type=rtype)


def test_contiguous_registers_share_one_request() -> None:
    blocks = plan([_reg("a", 10, "u32"), _reg("b", 12), _reg("c", 13)], max_count=32)
    assert [(b.address, b.count) for b in blocks] == [(10, 4)]


def test_gap_splits_unless_allowed() -> None:
    regs = [_reg("a", 10, "u32"), _reg("r", 26)]
    assert [(b.address, b.count) for b in plan(regs, 32)] == [(10, 2), (26, 1)]
    assert [(b.address, b.count) for b in plan(regs, 32, max_gap=14)] == [(10, 17)]


def test_limit_and_functions_split() -> None:
    regs = [_reg(f"r{i}", i) for i in range(10)] + [_reg("i", 0, function="input")]
    blocks = plan(regs, max_count=4)
    assert [(b.function, b.address, b.count) for b in blocks] == [
        ("holding", 0, 4),
        ("holding", 4, 4),
        ("holding", 8, 2),
        ("input", 0, 1),
    ]


def test_dds238_energy_and_relay() -> None:
    model = load_model("dds238-2-zn-sr")
    blocks = plan_model(model, ["import_energy", "relay", "not-there"])
    assert [(b.address, b.count) for b in blocks] == [(0x0A, 2), (0x1A, 1)]
    words = [0, 1234, 0, 0]
    assert blocks[0].words_of(model.register("import_energy"), words) == [0, 1234]


@given(
    st.lists(
        st.tuples(st.integers(0, 200), st.sampled_from(["u16", "u32", "u64"])),
        min_size=1,
        max_size=30,
    ),
    st.integers(4, 40),
    st.integers(0, 5),
)
def test_every_register_read_exactly_within_limit(
    specs: list[tuple[int, str]], limit: int, gap: int
) -> None:
    regs = []
    address = 0
    for i, (skip, rtype) in enumerate(specs):  # a map never overlaps registers
        reg = _reg(f"r{i}", address + skip, rtype)
        regs.append(reg)
        address = reg.end
    blocks = plan(regs, limit, gap)
    covered = [r for b in blocks for r in b.registers]
    assert sorted(r.name for r in covered) == sorted(r.name for r in regs)
    for b in blocks:
        assert 1 <= b.count <= limit
        for r in b.registers:
            assert b.address <= r.address and r.end <= b.end
    for a, b in itertools.pairwise(blocks):
        assert a.end <= b.address or a.function != b.function


@pytest.mark.parametrize("name", [m for m in available_models() if load_model(m).kind == "meter"])
@given(words=st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4))
def test_fast_energy_decoder_matches_the_register_map(name: str, words: list[int]) -> None:
    model = load_model(name)
    reg = model.register("import_energy")
    part = words[: reg.width]
    wh_per_m3 = Decimal("11220.5") if model.converts_volume(reg) else None
    decode = base_unit_decoder(model, reg, wh_per_m3)
    try:
        expected = model.base_units(reg, part, wh_per_m3=wh_per_m3)
    except (ValueError, ArithmeticError) as exc:
        with pytest.raises(type(exc)):
            decode(part)
        return
    assert decode(part) == expected


def test_energy_and_current_in_one_request_where_the_map_joins_them() -> None:
    """The DDS238 maps the voltage between its energy and current: one request reads all three;
    the SDM meters map gaps between them: two requests, never an unmapped word."""
    names = ["import_energy", *CURRENT_REGISTERS]
    dds = plan_model(load_model("dds238-2-zn-sr"), names, bridge=True)
    assert [(b.address, b.count) for b in dds] == [(0x0A, 4)]
    assert [r.name for r in dds[0].registers] == ["import_energy", "voltage", "current"]
    sdm120 = plan_model(load_model("sdm120"), names, bridge=True)
    assert [(b.address, b.count) for b in sdm120] == [(0x06, 2), (0x48, 2)]
    sdm630 = plan_model(load_model("sdm630"), names, bridge=True)
    assert [(b.address, b.count) for b in sdm630] == [(0x06, 6), (0x48, 2)]
    # without bridging, the DDS238's energy and current are two requests
    plain = plan_model(load_model("dds238-2-zn-sr"), names)
    assert [(b.address, b.count) for b in plain] == [(0x0A, 2), (0x0D, 1)]


def test_a_bridge_never_exceeds_the_request_limit() -> None:
    regs = [_reg("e", 0, "u32"), _reg("v", 2), _reg("c", 3)]
    model = MeterModel(model="x", kind="meter", description="x", source="x",
                       max_registers_per_request=3, registers=tuple(regs))  # fmt: skip
    blocks = plan_model(model, ["e", "c"], bridge=True)
    assert [(b.address, b.count) for b in blocks] == [(0, 2), (3, 1)]


@pytest.mark.parametrize(
    ("model", "words", "amps"),
    [
        ("dds238-2-zn-sr", {"current": [915]}, 9.15),
        ("sdm120", {"current": encode_raw(9.15, "float32")}, 9.15),
        ("sdm630", {f"current_l{i}": encode_raw(a, "float32") for i, a in ((1, 2.5), (2, 7.25),
                                                                          (3, 0.0))}, 7.25),
        # garbage is no current (the energy still counts): NaN, negative, absurd, missing words
        ("sdm120", {"current": [0x7FC0, 0]}, None),
        ("sdm120", {"current": encode_raw(-1.0, "float32")}, None),
        ("sdm120", {"current": encode_raw(1e9, "float32")}, None),
        ("sdm120", {"current": [1]}, None),
        ("sdm630", {"current_l1": encode_raw(1.0, "float32")}, None),
    ],
)  # fmt: skip
def test_the_current_of_a_poll(model: str, words: dict[str, list[int]], amps: float | None) -> None:
    meter = load_model(model)
    regs = tuple(meter.register(n) for n in CURRENT_REGISTERS if meter.has(n))
    found = current_of(meter, regs, words)
    assert found == pytest.approx(amps) if amps is not None else found is None
