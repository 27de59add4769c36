"""The sweeps ``manage.py runworker`` runs at start and every ``ORDER_RESCHEDULE_INTERVAL``
seconds: they bring orders and their workflows back in line after a crash or an outage.

Each step is safe to repeat: scheduling looks before it starts a workflow, a second identical
decision event is never consumed, and closing an order happens once under its lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections

from orders import selectors, workflow_client
from orders.exceptions import EngineUnavailable, OrderError
from orders.services.approvals import order_send_decision
from orders.services.orders import order_fail_stuck, order_reschedule, order_schedule

logger = logging.getLogger(__name__)

# A scheduled order untouched this long is asked about at the engine.
IN_FLIGHT_CHECK_AFTER = timedelta(minutes=1)


def orders_reconcile(*, grace: timedelta) -> None:
    """Schedule orders that never got a workflow, deliver decisions that never arrived, close
    orders whose workflow ended without closing them. ``grace`` spares what the web process has
    just written and is still handing to the engine itself.

    Never raises: a sweep the engine or the database stops is logged, and the next one retries.
    """
    close_old_connections()  # a connection the database dropped since the last sweep
    try:
        _for_each(selectors.orders_never_scheduled(older_than=grace), _schedule)
        _for_each(selectors.orders_with_undelivered_decision(older_than=grace), _send_decision)
        _for_each(selectors.orders_in_flight(older_than=IN_FLIGHT_CHECK_AFTER), _check_in_flight)
    except OrderError as error:
        logger.warning("Sweep stopped early: %s", error)
    except DatabaseError:
        logger.exception("Sweep stopped early, the database failed; the next one retries")


def _for_each(order_ids: Iterable[str], handle: Callable[[str], object]) -> None:
    """``handle`` each order; one that fails for an unforeseen reason is logged and skipped, so
    that it cannot stop the worker or keep the sweep from the other orders. A refusal
    (``OrderError``, e.g. the engine is away) still ends the sweep: the rest would fail alike."""
    for order_id in order_ids:
        try:
            handle(order_id)
        except (OrderError, OperationalError, InterfaceError):
            raise  # the engine or the database is away: every other order would fail alike
        except Exception:
            logger.exception("Sweep skipped order %s", order_id)


def _schedule(order_id: str) -> None:
    if order_schedule(order_id=order_id):
        logger.info("Scheduled workflow for order %s", order_id)


def _send_decision(order_id: str) -> None:
    if order_send_decision(order_id=order_id):
        logger.info("Delivered the manager's decision for order %s", order_id)


def _check_in_flight(order_id: str) -> None:
    try:
        state = workflow_client.workflow_state(order_id)
    except EngineUnavailable as error:
        logger.warning("Cannot check order %s: %s", order_id, error)
        return
    if state is None:
        if order_reschedule(order_id=order_id):
            logger.info("Rescheduled order %s, its workflow was missing", order_id)
        return
    status = state.runtime_status.name
    if status in {"FAILED", "TERMINATED", "COMPLETED"}:
        order_fail_stuck(order_id=order_id, reason=f"workflow {status.lower()}")
