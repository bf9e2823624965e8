"""Kubernetes resource quantities ("4", "500m", "32Gi", "1.5G"): parsed, multiplied, and written in the
canonical form the API server writes back, so what we apply compares equal to what we read."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_UNITS = {None: 1, "m": Decimal("0.001"), "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15,
          "E": 10 ** 18, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def parse(q: str) -> Decimal | None:
    """The value of a quantity in base units (bytes, cores), or None if ``q`` is not one."""
    m = _QUANTITY.match(q)
    if not m:
        return None
    try:
        return Decimal(m.group(1)) * _UNITS[m.group(2)]
    except InvalidOperation:
        return None


def times(q: str, n: int) -> str:
    """``n`` times a quantity, in the quantity's own unit ("4Gi" x 2 = "8Gi")."""
    m = _QUANTITY.match(q)
    if not m:
        raise ValueError(f"not a quantity: {q!r}")
    v = Decimal(m.group(1)) * n
    return f"{v.normalize():f}{m.group(2) or ''}"


def from_gib(gib: float) -> str:
    """GiB (to the MiB) as the API server writes it back: the largest binary unit that keeps it whole."""
    mib = int(gib * 1024)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"
