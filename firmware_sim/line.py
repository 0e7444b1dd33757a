"""The RS-485 line model (pure): how long a request and its response take on the wire.

A character is 1 start bit + 8 data bits + parity (if any) + stop bits: 10 bits at 8N1,
11 at 8E1/8O1/8N2. Each frame is followed by a silent gap of 3.5 characters, fixed at
1.75 ms above 19,200 baud. Modbus TCP requests are timed as the RTU frames they stand for
(the PDU plus a unit byte and a 2-byte CRC).
"""

from dataclasses import dataclass

from firmware_sim.errors import ConfigError

RTU_OVERHEAD = 3  # unit id + CRC
FAST_BAUD = 19_200
FAST_GAP_S = 0.00175
PARITIES = ("N", "E", "O")


@dataclass(frozen=True)
class Line:
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1

    def __post_init__(self) -> None:
        if self.baudrate <= 0:
            raise ConfigError("--baudrate", f"{self.baudrate}: must be positive")
        if self.parity not in PARITIES:
            raise ConfigError("--parity", f"{self.parity!r}: one of N, E, O")
        if self.stopbits not in (1, 2):
            raise ConfigError("--stopbits", f"{self.stopbits}: 1 or 2")

    @property
    def bits_per_char(self) -> int:
        return 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_s(self) -> float:
        return self.bits_per_char / self.baudrate

    @property
    def gap_s(self) -> float:
        """The silent interval that ends a frame."""
        return FAST_GAP_S if self.baudrate > FAST_BAUD else 3.5 * self.char_s

    def frame_s(self, rtu_bytes: int) -> float:
        """One frame of ``rtu_bytes`` bytes plus the gap after it."""
        return rtu_bytes * self.char_s + self.gap_s

    def exchange_s(self, request_bytes: int, response_bytes: int) -> float:
        """Request and response frames (RTU sizes), each with its gap."""
        return self.frame_s(request_bytes) + self.frame_s(response_bytes)

    def read_s(self, registers: int) -> float:
        """A read of ``registers`` 16-bit registers (function 3 or 4)."""
        request = RTU_OVERHEAD + 5  # fc, address, count
        response = RTU_OVERHEAD + 2 + 2 * registers  # fc, byte count, data
        return self.exchange_s(request, response)
