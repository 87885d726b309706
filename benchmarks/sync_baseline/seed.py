"""Prepare the baseline's SQLite database: migrate, then create voters and one poll.

    python -m benchmarks.sync_baseline.seed --users 3000 --password PW

Prints ``{"question_id": N, "question_text": "..."}``. Run as its own process: the
harness itself is configured with Pollstr's settings.
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--username-prefix", default="voter")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.sync_baseline.settings")
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from benchmarks.sync_baseline.models import Choice, Question

    call_command("migrate", verbosity=0)
    hashed = make_password(args.password)
    users = [
        User(username=f"{args.username_prefix}{index}", password=hashed)
        for index in range(args.users)
    ]
    User.objects.bulk_create(users, batch_size=500, ignore_conflicts=True)
    question = Question.objects.create(text="Which figure matters most")
    Choice.objects.bulk_create(
        [Choice(question=question, text=text) for text in ("Latency", "Throughput", "Both")]
    )
    print(json.dumps({"question_id": question.pk, "question_text": question.text}))


if __name__ == "__main__":
    main()
