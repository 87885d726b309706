from __future__ import annotations

from django.conf import settings
from django.db import models


class TwoFactor(models.Model):
    """The tutorial's model: the user's phone number."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    number = models.CharField(max_length=20)

    def __str__(self) -> str:
        return self.number


class Question(models.Model):
    text = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.text


class Choice(models.Model):
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="choices")
    text = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.text
