from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from two_factor.models import PhoneNumber, ProviderCallback, Verification, VerificationEvent


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    list_display = ["user", "masked", "verified_at", "updated_at"]
    search_fields = ["user__username"]
    readonly_fields = ["verified_at", "created_at", "updated_at"]


class VerificationEventInline(admin.TabularInline):
    model = VerificationEvent
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "from_status", "to_status", "reason", "ip"]
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Verification)
class VerificationAdmin(admin.ModelAdmin):
    """Read-only: state changes only through the services' transition path."""

    list_display = ["id", "user", "masked_number", "status", "channel", "wrong_codes", "created_at"]
    list_filter = ["status", "channel"]
    search_fields = ["user__username", "request_id"]
    inlines = [VerificationEventInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


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
