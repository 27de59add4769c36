from __future__ import annotations

import uuid
from typing import Any

from django import forms

from orders.exceptions import InvalidQuantity, NotEnoughStock, OrderError, UnknownItem
from orders.models import MAX_UNITS, InventoryItem
from orders.selectors import Quote, inventory_list, order_quote


class ItemChoice(forms.RadioSelect):
    """One radio button per item; the template draws each as a card (name, price, stock). An
    item with nothing free cannot be chosen."""

    def create_option(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(*args, **kwargs)
        item = getattr(option["value"], "instance", None)
        if isinstance(item, InventoryItem) and item.on_hand < 1:
            option["attrs"]["disabled"] = True
        return option


class OrderForm(forms.Form):
    item = forms.ModelChoiceField(
        label="Item",
        queryset=InventoryItem.objects.none(),
        widget=ItemChoice,
        empty_label=None,
        error_messages={
            "required": "Choose an item.",
            "invalid_choice": "That item is not in the inventory.",
        },
    )
    quantity = forms.IntegerField(
        label="Quantity",
        min_value=1,
        max_value=MAX_UNITS,
        initial=1,
        error_messages={
            "invalid": "Enter a whole number.",
            "min_value": "Order at least 1.",
            "max_value": "No item is stocked in that number; order fewer.",
        },
    )

    # Made each time the form is shown and sent back with it: the same form sent twice places
    # one order (order_place checks it).
    form_token = forms.CharField(
        required=False, widget=forms.HiddenInput, initial=lambda: uuid.uuid4().hex
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["item"].queryset = inventory_list()  # type: ignore[attr-defined]
        self.fields["quantity"].widget.attrs.update(min=1, inputmode="numeric")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        item, quantity = cleaned.get("item"), cleaned.get("quantity")
        if item is not None and quantity is not None and quantity > item.on_hand:
            self.add_error("quantity", f"Only {item.on_hand} {item.name} in stock; order fewer.")
        return cleaned

    def add_order_error(self, error: OrderError) -> None:
        """Show a refusal from ``order_place`` next to the field it concerns."""
        fields = {UnknownItem: "item", NotEnoughStock: "quantity", InvalidQuantity: "quantity"}
        field = next((name for kind, name in fields.items() if isinstance(error, kind)), None)
        self.add_error(field, str(error))

    def quote(self) -> Quote | None:
        """The total of what the form holds so far; None until it names an item and a quantity
        that can be ordered."""
        if not self.is_bound or not self.is_valid():
            return None
        return order_quote(item=self.cleaned_data["item"], quantity=self.cleaned_data["quantity"])
