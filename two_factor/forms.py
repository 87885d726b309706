from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext, gettext_lazy, ngettext


class PhoneNumberForm(forms.Form):
    number = forms.CharField(
        label=gettext_lazy("Mobile number"),
        max_length=32,
        help_text=gettext_lazy(
            "In international format, e.g. +44 7911 123456. We'll send you a code."
        ),
        widget=forms.TextInput(
            attrs={"autocomplete": "tel", "inputmode": "tel", "placeholder": "+44 7911 123456"}
        ),
    )


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=16,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "class": "code-input",
                "autofocus": True,
            }
        ),
    )

    # Only while TWO_FACTOR_REMEMBER_DAYS is above 0 (two_factor/services/devices.py).
    remember = forms.BooleanField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        length = settings.TWO_FACTOR_CODE_LENGTH
        self.fields["code"].help_text = gettext("The %(length)d-digit code we sent you.") % {
            "length": length
        }
        self.fields["code"].widget.attrs["pattern"] = rf"[0-9\s\-]{{{length},16}}"
        # live.js submits the form when this many digits are typed.
        self.fields["code"].widget.attrs["data-code-length"] = str(length)
        days = settings.TWO_FACTOR_REMEMBER_DAYS
        if days:
            self.fields["remember"].label = ngettext(
                "Remember this device for %(days)d day",
                "Remember this device for %(days)d days",
                days,
            ) % {"days": days}
        else:
            del self.fields["remember"]
