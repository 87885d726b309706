"""The seed's class-based-view guard: the same as VerifiedSessionRequiredMixin."""

from __future__ import annotations

from two_factor.protection import VerifiedSessionRequiredMixin

TwoFactorMixin = VerifiedSessionRequiredMixin

__all__ = ["TwoFactorMixin", "VerifiedSessionRequiredMixin"]
