from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone

from two_factor import services
from two_factor.models import (
    PhoneNumber,
    ProviderCallback,
    SendPause,
    Status,
    TrustedDevice,
    Verification,
    VerificationEvent,
)

# Operators search verifications by what the pages show of a number: its last digits.
NUMBER_SUFFIX_DIGITS = (2, 6)


def to_the_second(moment: datetime | None) -> str:
    """``2025-03-01 14:05:09 CET+0100``: audit times with seconds and the zone."""
    if moment is None:
        return "—"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z%z")


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    list_display = ["user", "masked", "verified_at", "updated_at"]
    search_fields = ["user__username"]
    readonly_fields = ["verified_at", "created_at", "updated_at"]


class VerificationEventInline(admin.TabularInline):
    model = VerificationEvent
    extra = 0
    can_delete = False
    readonly_fields = ("at", "from_status", "to_status", "channel", "reason", "ip")
    fields = readonly_fields

    @admin.display(description="at", ordering="created_at")
    def at(self, event: VerificationEvent) -> str:
        return to_the_second(event.created_at)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(VerificationEvent)
class VerificationEventAdmin(admin.ModelAdmin):
    """The audit trail, append-only: readable, never changed or deleted here.

    Registered (not only inline) so Django's delete confirmation checks this admin's
    permission for every event a cascade would take with it, and refuses.
    """

    list_display = ["at", "verification", "from_status", "to_status", "channel", "reason", "ip"]
    list_filter = ["to_status", "channel"]
    search_fields = ["verification__id", "verification__request_id"]

    @admin.display(description="at", ordering="created_at")
    def at(self, event: VerificationEvent) -> str:
        return to_the_second(event.created_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Verification)
class VerificationAdmin(admin.ModelAdmin):
    """Read-only: state changes only through the services' transition path (the cancel
    action calls the service, so the provider's request is cancelled too)."""

    list_display = [
        "id",
        "user",
        "masked_number",
        "status",
        "channel",
        "wrong_codes",
        "created",
    ]
    list_filter = ["status", "channel"]
    search_fields = ["user__username", "request_id"]
    search_help_text = "Username, provider request id, or the last digits of the number."
    readonly_fields = ["created", "updated", "sent", "verified", "consumed"]
    exclude = ["session_key_hash", "send_claim", "created_at", "updated_at", "sent_at"]
    inlines = [VerificationEventInline]
    actions = ["cancel_live_verifications"]

    @admin.display(description="created", ordering="created_at")
    def created(self, verification: Verification) -> str:
        return to_the_second(verification.created_at)

    @admin.display(description="updated")
    def updated(self, verification: Verification) -> str:
        return to_the_second(verification.updated_at)

    @admin.display(description="sent")
    def sent(self, verification: Verification) -> str:
        return to_the_second(verification.sent_at)

    @admin.display(description="verified")
    def verified(self, verification: Verification) -> str:
        return to_the_second(verification.verified_at)

    @admin.display(description="consumed")
    def consumed(self, verification: Verification) -> str:
        return to_the_second(verification.consumed_at)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Verification], search_term: str
    ) -> tuple[QuerySet[Verification], bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = re.sub(r"\D", "", search_term)
        # "3456", "•••• 3456", "+44 •• 3456": the digits a masked number shows.
        low, high = NUMBER_SUFFIX_DIGITS
        if low <= len(digits) <= high and not re.search(r"[A-Za-z]", search_term):
            results |= queryset.filter(number__endswith=digits)
        return results, may_have_duplicates

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The audit trail is append-only: a verification with events stays.
        if isinstance(obj, Verification) and obj.events.exists():
            return False
        return super().has_delete_permission(request, obj)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("two_factor.change_verification")

    @admin.action(description="Cancel the selected live verifications", permissions=["cancel"])
    def cancel_live_verifications(
        self, request: HttpRequest, queryset: QuerySet[Verification]
    ) -> None:
        cancelled = 0
        for verification in queryset:
            if verification.is_live:
                services.verification_cancel(
                    verification=verification, ip=request.META.get("REMOTE_ADDR")
                )
                cancelled += int(verification.status == Status.CANCELLED)
        skipped = queryset.count() - cancelled
        self.message_user(
            request,
            f"Cancelled {cancelled}; {skipped} not live, left as they were.",
            messages.SUCCESS if cancelled else messages.WARNING,
        )


@admin.register(ProviderCallback)
class ProviderCallbackAdmin(admin.ModelAdmin):
    """What the provider told us, as stored: read-only evidence for support."""

    list_display = ["received_at", "request_id", "type", "status", "result"]
    list_filter = ["type", "status"]
    search_fields = ["request_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SendPause)
class SendPauseAdmin(admin.ModelAdmin):
    """The conversion governor's pauses: what it saw, until when, and a button to lift
    one early (docs/OPERATIONS.md, "The SMS budget"). Written by the governor only."""

    list_display = ["destination", "state", "started", "ends", "sent", "verified", "rate"]
    list_filter = ["country"]
    search_fields = ["country", "prefix"]
    readonly_fields = (
        "country",
        "prefix",
        "started",
        "ends",
        "sent",
        "verified",
        "rate",
        "reason",
        "lifted",
        "lifted_by",
    )
    fields = readonly_fields
    actions = ["lift_pauses"]
    change_form_template = "admin/two_factor/sendpause/change_form.html"

    @admin.display(description="state")
    def state(self, pause: SendPause) -> str:
        if pause.lifted_at is not None:
            return "lifted"
        return "paused" if pause.is_active() else "ended"

    @admin.display(description="started", ordering="started_at")
    def started(self, pause: SendPause) -> str:
        return to_the_second(pause.started_at)

    @admin.display(description="until", ordering="until")
    def ends(self, pause: SendPause) -> str:
        return to_the_second(pause.until)

    @admin.display(description="lifted at")
    def lifted(self, pause: SendPause) -> str:
        return to_the_second(pause.lifted_at)

    @admin.display(description="conversion")
    def rate(self, pause: SendPause) -> str:
        return f"{pause.conversion:.0%}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # the governor's audit trail

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("two_factor.change_sendpause")

    @admin.action(description="Lift the selected pauses", permissions=["lift"])
    def lift_pauses(self, request: HttpRequest, queryset: QuerySet[SendPause]) -> None:
        lifted = sum(services.governor_lift(pause=pause, by=request.user) for pause in queryset)
        self.message_user(
            request,
            f"Lifted {lifted}; {queryset.count() - lifted} had already ended.",
            messages.SUCCESS if lifted else messages.WARNING,
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        pause = self.get_object(request, object_id)
        if request.method == "POST" and "_lift" in request.POST:
            if pause is None or not self.has_lift_permission(request):
                raise PermissionDenied
            if services.governor_lift(pause=pause, by=request.user):
                self.message_user(
                    request, f"Codes to {pause.destination} flow again.", messages.SUCCESS
                )
            else:
                self.message_user(request, "This pause had already ended.", messages.WARNING)
            return HttpResponseRedirect(request.path)
        can_lift = pause is not None and pause.is_active() and self.has_lift_permission(request)
        context = {**(extra_context or {}), "can_lift": can_lift}
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(TrustedDevice)
class TrustedDeviceAdmin(admin.ModelAdmin):
    """Remembered devices, to read: a voter forgets theirs on the account page. The token
    itself is nowhere to show (only its hash is stored), and the hash is not shown."""

    list_display = ["user", "label", "created_at", "last_used_at", "expires_at", "revoked_reason"]
    list_filter = ["revoked_reason"]
    search_fields = ["user__username"]
    fields = readonly_fields = (
        "user",
        "label",
        "created_at",
        "last_used_at",
        "times_used",
        "expires_at",
        "revoked_at",
        "revoked_reason",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
