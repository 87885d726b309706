"""The French and Spanish catalogues cover every sentence of the project: a msgid the
code or a template has and a catalogue lacks (or has untranslated, or fuzzy) fails here,
so a new sentence cannot ship in English only. `make messages` refreshes the catalogues."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

ROOT = Path(settings.BASE_DIR)
# What makemessages reads: the apps, the task layer and the templates.
SOURCES = ("accounts", "polls", "pollstr", "tasks", "two_factor", "templates")
TRANSLATED = [code for code, _name in settings.LANGUAGES if code != "en"]


def catalogue(path: Path) -> dict[str, dict[str, object]]:
    """msgid -> {"msgstr": [...], "fuzzy": bool} of a .po file (the header left out)."""
    entries: dict[str, dict[str, object]] = {}
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        fuzzy = False
        for line in block.splitlines():
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            elif line.startswith("#") or not line.strip():
                continue
            elif line.startswith('"'):
                fields[key] += ast.literal_eval(line)
            else:
                key, value = line.split(" ", 1)
                fields[key] = ast.literal_eval(value)
        msgid = fields.get("msgid", "")
        if msgid:
            strings = [v for k, v in fields.items() if k.startswith("msgstr")]
            entries[msgid] = {"msgstr": strings, "fuzzy": fuzzy}
    return entries


@pytest.fixture(scope="module")
def project_msgids(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every msgid of the project, extracted afresh by makemessages from a copy of its
    sources (so the committed catalogues are not touched)."""
    copy = tmp_path_factory.mktemp("sources")
    for name in SOURCES:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "locale" / "fr" / "LC_MESSAGES").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(copy)
        patch.setattr(settings, "LOCALE_PATHS", [copy / "locale"])
        call_command("makemessages", locale=["fr"], verbosity=0, no_location=True)
    return set(catalogue(copy / "locale" / "fr" / "LC_MESSAGES" / "django.po"))


def test_the_extraction_finds_the_sentences_it_should(project_msgids: set[str]) -> None:
    # A guard on the guard: an extraction that found nothing would pass everything below.
    assert "Enter your code" in project_msgids  # two_factor/status.py
    assert "Checking your code…" in project_msgids  # templates/two_factor/verify.html
    assert "Send it by WhatsApp instead" in project_msgids  # two_factor/channels.py
    assert "This code has expired. Ask for a new code." in project_msgids  # outcomes
    assert len(project_msgids) > 200


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_sentence_is_translated(language: str, project_msgids: set[str]) -> None:
    entries = catalogue(ROOT / "locale" / language / "LC_MESSAGES" / "django.po")
    missing = sorted(project_msgids - set(entries))
    assert not missing, f"{language}: run `make messages` and translate: {missing[:10]}"
    untranslated = sorted(msgid for msgid in project_msgids if not all(entries[msgid]["msgstr"]))
    assert not untranslated, f"{language}: untranslated: {untranslated[:10]}"
    fuzzy = sorted(msgid for msgid, entry in entries.items() if entry["fuzzy"])
    assert not fuzzy, f"{language}: fuzzy entries (check, then drop the flag): {fuzzy[:10]}"
    stale = sorted(set(entries) - project_msgids)
    assert not stale, f"{language}: msgids no longer used (run `make messages`): {stale[:10]}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_every_placeholder(language: str) -> None:
    entries = catalogue(ROOT / "locale" / language / "LC_MESSAGES" / "django.po")
    placeholder = re.compile(r"%\(\w+\)[sd]|<[^>]+>")
    for msgid, entry in entries.items():
        wanted = sorted(placeholder.findall(msgid))
        for msgstr in entry["msgstr"]:
            assert sorted(placeholder.findall(str(msgstr))) == wanted, (msgid, msgstr)


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalogues_compile_cleanly(language: str, tmp_path: Path) -> None:
    po = ROOT / "locale" / language / "LC_MESSAGES" / "django.po"
    result = subprocess.run(
        ["msgfmt", "--check", "-o", str(tmp_path / "django.mo"), str(po)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_make_compiles_the_catalogues_for_run_and_for_the_tests() -> None:
    makefile = (ROOT / "Makefile").read_text()
    prerequisites = {
        target: rest.split()
        for target, rest in re.findall(r"^([\w.$()/-]+):(?!=)(.*)$", makefile, re.M)
    }
    assert "translations" in prerequisites["run"]
    assert "translations" in prerequisites["pytest"]
    assert "compilemessages" in makefile
    assert "*.mo" in (ROOT / ".gitignore").read_text().splitlines()
