from __future__ import annotations

import uuid
from typing import Any

from django import forms

from orders.models import MAX_UNITS, InventoryItem, amount_text
from orders.selectors import inventory_list


class ItemChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: InventoryItem) -> str:  # type: ignore[override]
        return f"{obj.name} (${amount_text(obj.unit_cost)} each, {obj.on_hand} in stock)"


class OrderForm(forms.Form):
    item = ItemChoiceField(
        label="Item",
        queryset=InventoryItem.objects.none(),
        empty_label=None,
        error_messages={"invalid_choice": "That item is not in the inventory."},
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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        item, quantity = cleaned.get("item"), cleaned.get("quantity")
        if item is not None and quantity is not None and quantity > item.on_hand:
            self.add_error("quantity", f"Only {item.on_hand} {item.name} in stock; order fewer.")
        return cleaned
