"""The orders package's one exception hierarchy; views, admin and commands map it to messages."""

from __future__ import annotations


class OrderError(Exception):
    """Base class. ``str(error)`` is a sentence fit to show to the person who asked."""


class UnknownItem(OrderError):
    pass


class InvalidQuantity(OrderError):
    pass


class NotEnoughStock(OrderError):
    pass


class InvalidFormToken(OrderError):
    pass


class OrderNotFound(OrderError):
    pass


class ApprovalNotPermitted(OrderError):
    pass


class NotAwaitingApproval(OrderError):
    pass


class ApprovalWindowClosed(OrderError):
    pass


class OrderNotCancellable(OrderError):
    pass


class InventoryUpdateFailed(OrderError):
    """The sold units could not be taken from the order's reservation (raised in an activity)."""


class PaymentFailed(OrderError):
    pass


class EngineUnavailable(OrderError):
    """The workflow engine (embedded sidecar or daprd) could not be reached or refused a call."""


class WeakPassword(OrderError):
    pass
