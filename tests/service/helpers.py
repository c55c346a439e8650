"""Shared values and event builders of the service tests."""

from __future__ import annotations

from typing import Any

ADMIN = "admin-token-for-tests-0123456789"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def transfer(i: int, **fields: Any) -> dict[str, Any]:
    event = {"event_id": f"e{i}", "timestamp": T0 + i * 1000, "pay_account": "A",
             "rcv_account": "B", "amount": 10.0}
    event.update(fields)
    return event
