from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Count, Q
from django.utils import timezone

from pollstr.db.prepared import PreparedRead


class QuestionQuerySet(models.QuerySet["Question"]):
    def published(self) -> QuestionQuerySet:
        return self.filter(pub_date__lte=timezone.now())


class Question(models.Model):
    text = models.CharField(max_length=200)
    pub_date = models.DateTimeField("published", default=timezone.now)
    closes_at = models.DateTimeField(
        "closes", null=True, blank=True, help_text="Leave empty to keep the poll open."
    )

    objects = QuestionQuerySet.as_manager()

    class Meta:
        ordering = ["-pub_date", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(closes_at__isnull=True) | Q(closes_at__gt=models.F("pub_date")),
                name="question_closes_after_publication",
            )
        ]

    def __str__(self) -> str:
        return self.text

    @property
    def is_published(self) -> bool:
        return self.pub_date <= timezone.now()

    @property
    def is_closed(self) -> bool:
        return self.closes_at is not None and self.closes_at <= timezone.now()

    def results(self) -> dict[str, object]:
        """Template context for the results partial: choices annotated with `votes` and
        `percent`, counted from the votes themselves (no counter that could drift)."""
        choices = list(self.choices.annotate(votes=Count("vote_set")).order_by("id"))
        total = sum(choice.votes for choice in choices)
        for choice in choices:
            # A display attribute for the template, beside the annotated count.
            choice.percent = round(100 * choice.votes / total) if total else 0  # type: ignore[attr-defined]
        return {"question": self, "choices": choices, "total": total}


class Choice(models.Model):
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="choices")
    text = models.CharField(max_length=200)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.text


class Vote(models.Model):
    # Empty once the voter deleted their account: the vote stays counted, and its phone
    # hash keeps that phone from voting again on this question.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="votes",
    )
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="votes")
    choice = models.ForeignKey(Choice, on_delete=models.CASCADE, related_name="vote_set")
    cast_at = models.DateTimeField(default=timezone.now)
    # Which verified phone cast it, as a keyed hash (polls/phone_hashes.py), never the
    # number: one vote per phone, even when a number moves to another account or the
    # account is deleted. The version names the VOTE_HASH_KEYS key that made it.
    phone_hash = models.CharField(max_length=64, blank=True, default="")
    phone_hash_version = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "question"], name="one_vote_per_user_per_question"
            ),
            models.UniqueConstraint(
                fields=["phone_hash", "question"],
                condition=~models.Q(phone_hash=""),
                name="one_vote_per_phone_per_question",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or 'a deleted account'} → {self.choice}"


# The poll page's reads, compiled once per process (pollstr/db/prepared.py): a question by
# its id (whether it is published is the caller's to check), its choices in order.
QUESTION_BY_ID: PreparedRead[Question] = PreparedRead(Question, "pk")
CHOICES_OF_QUESTION: PreparedRead[Choice] = PreparedRead(Choice, "question")
CHOICE_BY_ID: PreparedRead[Choice] = PreparedRead(Choice, "pk")
# A voter's past vote on a question: at most one per account and one per phone hash (the
# two unique constraints above).
VOTE_OF_USER: PreparedRead[Vote] = PreparedRead(Vote, "question", "user")
VOTE_OF_PHONE_HASH: PreparedRead[Vote] = PreparedRead(Vote, "question", "phone_hash")
