"""What differs between a simulated device and real hardware, behind small interfaces.

* :mod:`.bootenv` — the boot environment (a JSON file here; U-Boot's env via fw_setenv there);
* :mod:`.slots` — the A/B slots (folders here; partitions there);
* :mod:`.bootloader` — the boot ROM and bootloader: slot choice, boot counter, verified boot,
  measurement (a :class:`Measurer`, a TPM on hardware);
* :mod:`.faults` — fault injection for tests and the simulation only.
"""

from trustfleet.agent.platform.bootenv import (
    DEFAULT_BOOTLIMIT,
    BootEnv,
    BootEnvStore,
    FileBootEnv,
    Slot,
    other_slot,
)
from trustfleet.agent.platform.bootloader import (
    BootResult,
    Fuses,
    Measurer,
    NoMeasurer,
    SlotVerdict,
    boot,
    read_fuses,
    verify_slot,
)
from trustfleet.agent.platform.faults import NO_FAULTS, FaultPlan, Faults
from trustfleet.agent.platform.layout import DeviceLayout
from trustfleet.agent.platform.slots import Slots, SlotWriter, sha256_file

__all__ = [
    "DEFAULT_BOOTLIMIT",
    "NO_FAULTS",
    "BootEnv",
    "BootEnvStore",
    "BootResult",
    "DeviceLayout",
    "FaultPlan",
    "Faults",
    "FileBootEnv",
    "Fuses",
    "Measurer",
    "NoMeasurer",
    "Slot",
    "SlotVerdict",
    "SlotWriter",
    "Slots",
    "boot",
    "other_slot",
    "read_fuses",
    "sha256_file",
    "verify_slot",
]
