"""Agent configuration: the TOML file of contract section 2, plus ``SMSA_AGENT_…`` overrides.

:func:`load` reads and validates the file and returns :class:`AgentSettings`; every problem raises
:class:`agent.errors.ConfigError` naming the file and the key (``meters[1].bus``), before anything
touches a bus. Environment variables override the file: ``SMSA_AGENT_MQTT__URL``,
``SMSA_AGENT_STORAGE__PATH``, ``SMSA_AGENT_GATEWAY_ID`` … (``__`` separates nested keys).
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.errors import ConfigError
from hardware.errors import RegisterMapError
from hardware.regmap import ENERGY_REGISTER, MeterModel, load_model, search_path

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
MeterName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
Unit = Annotated[int, Field(ge=1, le=247)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MqttSettings(_Section):
    url: str = Field(pattern=r"^mqtts?://.+")
    username: str | None = None
    password: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    ca_file: Path | None = None
    # a record or event the hub has not confirmed (its receipt) is sent again after this long,
    # doubling with each try up to 10 minutes (and at once when the hub or broker comes back)
    resend_after_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _broker_url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError as exc:
            raise ValueError(f"not a broker URL: {exc}") from exc
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("expected mqtt[s]://[user[:password]@]host[:port]")
        return url


class SecuritySettings(_Section):
    command_key: str = Field(pattern=r"^(?:[0-9a-fA-F]{2}){16,64}$")


class StorageSettings(_Section):
    path: Path
    max_outbox_rows: int = Field(default=100_000, ge=10)


class TimingSettings(_Section):
    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    report_interval_s: float = Field(default=10.0, gt=0, le=86_400)


class StatusSettings(_Section):
    path: Path | None = None
    interval_s: float = Field(default=2.0, gt=0, le=3600)
    publish_s: float = Field(default=60.0, ge=1, le=3600)  # the retained MQTT status refresh


class MetricsSettings(_Section):
    """Prometheus metrics on a local HTTP port: off unless ``port`` is set."""

    port: int | None = Field(default=None, ge=1, le=65535)
    host: str = Field(default="127.0.0.1", min_length=1)


class TokensSettings(_Section):
    """Offline top-up tokens (``agent.tokens``): the local endpoint the CLI ``token`` command
    and a keypad talk to, and the lockout after repeated bad entries."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8764, ge=1, le=65535)
    lockout_after: int = Field(default=3, ge=1, le=100)
    lockout_base_s: float = Field(default=15.0, gt=0, le=86_400)
    lockout_max_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)


class _BusBase(_Section):
    name: Name
    timeout_s: float = Field(default=0.3, gt=0, le=30)
    retries: int = Field(default=1, ge=0, le=10)
    inter_frame_ms: float | None = Field(default=None, ge=0, le=1000)
    backoff_s: float = Field(default=2.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=60.0, gt=0, le=86_400)
    relay_read_every: int = Field(default=10, ge=1, le=3600)


class TcpBus(_BusBase):
    transport: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)


class RtuBus(_BusBase):
    transport: Literal["rtu"]
    device: str = Field(min_length=1)
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


BusSettings = Annotated[TcpBus | RtuBus, Field(discriminator="transport")]


class MeterSettings(_Section):
    id: MeterName
    bus: Name
    unit: Unit
    model: str = Field(min_length=1)
    timeout_s: float | None = Field(default=None, gt=0, le=30)
    relay_unit: Unit | None = None
    relay_model: str | None = None
    relay_channel: int | None = Field(default=None, ge=0, le=255)
    # A gas meter that counts volume: the declared calorific value of its supply (MJ/m3) and
    # the volume correction factor (1.02264, the UK's standard temperature and pressure one),
    # which turn m3 into the Wh the contract reports (hardware.regmap).
    calorific_value_mj_m3: Decimal | None = Field(default=None, gt=0, le=100, decimal_places=4)
    volume_correction: Decimal = Field(default=Decimal("1.02264"), gt=0, le=2, decimal_places=6)
    # Read the meter's current and send each interval's mean (``current_mean_a``, a protocol
    # extension a hub before it refuses: docs/protocol.md); off for such a hub.
    report_current: bool = True

    @property
    def wh_per_m3(self) -> Decimal | None:
        """Wh per m3 of this meter's gas: m3 x correction x MJ/m3 / 3.6 MJ per kWh x 1000."""
        if self.calorific_value_mj_m3 is None:
            return None
        return self.calorific_value_mj_m3 * self.volume_correction * 1000 / Decimal("3.6")


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SMSA_AGENT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    gateway_id: Name
    mqtt: MqttSettings
    security: SecuritySettings
    storage: StorageSettings
    timing: TimingSettings = TimingSettings()
    status: StatusSettings = StatusSettings()
    metrics: MetricsSettings = MetricsSettings()
    tokens: TokensSettings = TokensSettings()
    buses: list[BusSettings] = Field(min_length=1)
    meters: list[MeterSettings] = Field(min_length=1)
    # Directories of more register maps, searched after the shipped ``hardware/registers``,
    # separated like PATH ("/etc/smsa/registers:/opt/maps"); ``SMSA_AGENT_REGISTER_PATH``.
    register_path: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (which arrives as init arguments).
        return env_settings, init_settings

    def bus(self, name: str) -> TcpBus | RtuBus:
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise KeyError(name)

    def meters_on(self, bus: str) -> list[MeterSettings]:
        return [m for m in self.meters if m.bus == bus]

    @property
    def status_path(self) -> Path:
        return self.status.path or self.storage.path.with_suffix(".status.json")

    @property
    def register_dirs(self) -> tuple[Path, ...]:
        return tuple(Path(p) for p in self.register_path.split(os.pathsep) if p)


def load(path: Path) -> AgentSettings:
    """The validated settings in ``path`` (with environment overrides); ConfigError otherwise."""
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(where, "-", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(where, "-", "not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, "-", f"not valid TOML: {exc}") from exc
    try:
        settings = AgentSettings(**data)
    except ValidationError as exc:
        # a misspelt key shows up both as unknown and as missing: name the typo
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        key = _key(err["loc"])
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            key += ".transport"
        raise ConfigError(where, key, _message(err)) from exc
    _cross_check(where, settings)
    return settings


def _model(where: str, key: str, name: str, dirs: tuple[Path, ...]) -> MeterModel:
    try:
        return load_model(name, dirs)
    except RegisterMapError as exc:
        raise ConfigError(where, key, f"unknown model {name!r} ({exc.reason})") from exc


def _key(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("tcp", "rtu") and out.endswith("]"):
            continue  # the union tag pydantic inserts after a bus index
        else:
            out += f".{part}" if out else str(part)
    return out or "-"


def _message(err: Any) -> str:
    if err["type"] == "missing":
        return "missing required key"
    if err["type"] == "extra_forbidden":
        return "unknown key"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _cross_check(where: str, settings: AgentSettings) -> None:
    dirs = settings.register_dirs
    try:
        search_path(dirs)
    except RegisterMapError as exc:
        raise ConfigError(where, "register_path", f"{exc.path}: not a directory") from exc
    buses: set[str] = set()
    for i, bus in enumerate(settings.buses):
        if bus.name in buses:
            raise ConfigError(where, f"buses[{i}].name", f"duplicate bus {bus.name!r}")
        buses.add(bus.name)
    ids: set[str] = set()
    units: dict[tuple[str, int], str] = {}
    for i, meter in enumerate(settings.meters):
        key = f"meters[{i}]"
        if meter.id in ids:
            raise ConfigError(where, f"{key}.id", f"duplicate meter id {meter.id!r}")
        ids.add(meter.id)
        if meter.bus not in buses:
            raise ConfigError(where, f"{key}.bus", f"unknown bus {meter.bus!r}")
        model = _model(where, f"{key}.model", meter.model, dirs)
        if model.kind != "meter":
            raise ConfigError(where, f"{key}.model", f"{meter.model!r} is not a meter model")
        _check_gas(where, key, meter, model)
        other = units.get((meter.bus, meter.unit))
        if other is not None:
            raise ConfigError(
                where, f"{key}.unit", f"unit {meter.unit} on bus {meter.bus!r} is also {other!r}"
            )
        units[(meter.bus, meter.unit)] = meter.id
        _check_relay(where, key, meter, model, dirs)


def _check_gas(where: str, key: str, meter: MeterSettings, model: MeterModel) -> None:
    volume = model.converts_volume(model.register(ENERGY_REGISTER))
    if volume and meter.calorific_value_mj_m3 is None:
        why = f"{meter.model!r} counts gas volume: give the supply's calorific value (MJ/m3)"
        raise ConfigError(where, f"{key}.calorific_value_mj_m3", why)
    if not volume and meter.calorific_value_mj_m3 is not None:
        why = f"only for a gas meter that counts volume, not {meter.model!r}"
        raise ConfigError(where, f"{key}.calorific_value_mj_m3", why)


def _check_relay(
    where: str, key: str, meter: MeterSettings, model: MeterModel, dirs: tuple[Path, ...]
) -> None:
    if meter.relay_unit is None:
        if meter.relay_model is not None or meter.relay_channel is not None:
            raise ConfigError(where, f"{key}.relay_unit", "relay_model/relay_channel need it")
        return
    if meter.relay_model is None:
        raise ConfigError(where, f"{key}.relay_model", "missing required key with relay_unit")
    relay = _model(where, f"{key}.relay_model", meter.relay_model, dirs)
    if relay.relay is None:
        raise ConfigError(where, f"{key}.relay_model", f"{meter.relay_model!r} has no relay")
    channel = meter.relay_channel or 0
    if relay.channels and channel >= relay.channels:
        raise ConfigError(
            where, f"{key}.relay_channel", f"{relay.model!r} has {relay.channels} channels"
        )
    if relay.kind == "relay" and not relay.has(f"channel_{channel}"):
        raise ConfigError(where, f"{key}.relay_channel", f"no register channel_{channel}")
