"""Hostile input to the dataset validator: each scan is linear in the text, every parse error is a
malformed-line finding with its file and line (never a traceback), and over-long lines are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from click.testing import CliRunner
from loraplane.api.finetunejob import DatasetChecks, FineTuneJobSpec
from loraplane_trainer.dataset import check, open_uri, prepare
from loraplane_trainer.dataset.checks.pii import scan
from loraplane_trainer.dataset.cli import validate_command
from loraplane_trainer.dataset.sources import MAX_LINE_BYTES

GOOD = '{"prompt": "How do I reset my password?", "completion": "Use the link on the sign-in page."}\n'


def _runs_within(code: str, seconds: float) -> bool:
    """Whether `code` finishes in a fresh interpreter before `seconds` (a bound on quadratic blow-up, with a
    wide margin: the linear scans take milliseconds where the quadratic ones took minutes)."""
    try:
        subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_personal_data_scan_is_linear_on_dotted_and_bracketed_text():
    code = """
        from loraplane_trainer.dataset.checks.pii import scan
        from loraplane_trainer.dataset.checks.style import MARKDOWN
        assert scan("a." * 200_000) == []
        assert scan("x@" * 200_000 + "a") == []
        scan("sk-" * 100_000 + " xoxa-" * 50_000)
        MARKDOWN.search("[" * 400_000)
        MARKDOWN.search("[a](" * 100_000)
    """
    assert _runs_within(code, 30), "a 400 KB hostile text must not stall the scan"


def test_e_mail_addresses_are_still_found_and_masked():
    found = scan("Write to jane.doe+billing@mail.example.co.uk or to ops@example.com, not to @nobody.")
    assert found == [("e-mail", "j***@mail.example.co.uk"), ("e-mail", "o***@example.com")]
    assert scan("version 1.2.3@latest and foo@bar") == []


def test_an_integer_beyond_pythons_digit_limit_is_a_malformed_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(GOOD + '{"prompt": "q", "completion": "a", "n": ' + "7" * 5000 + "}\n" + GOOD)
    report = check(open_uri(str(path)), DatasetChecks(min_examples=1), max_tokens=1024)
    bad = report.finding("malformed")
    assert bad is not None and bad.severity == "error" and bad.lines == [2]
    assert "4300" in bad.locations[0].detail and bad.locations[0].file == str(path)
    # The same through the JSON-array reader.
    arr = tmp_path / "d.json"
    arr.write_text('[{"prompt": "q", "completion": "a"},\n{"prompt": "q2", "completion": "a", "n": ' + "7" * 5000 + "}]")
    bad = check(open_uri(str(arr)), DatasetChecks(min_examples=1)).finding("malformed")
    assert bad is not None and bad.lines == [2]


def test_the_cli_reports_the_line_not_a_traceback(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(GOOD * 3 + '{"prompt": ' + "9" * 4400 + ', "completion": "a"}\n')
    result = CliRunner().invoke(validate_command, [str(path), "--json"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    malformed = next(c for c in json.loads(result.output)["checks"] if c["check"] == "malformed")
    assert malformed["severity"] == "error" and malformed["locations"][0]["line"] == 4


def test_prepare_turns_the_bad_line_into_a_report_error_so_the_trainer_exits_as_bad_input(tmp_path):
    # The trainer maps report.has_errors to DatasetInvalid (exit 42, not retried); an exception here
    # would have been a crash, retried by the Job.
    path = tmp_path / "d.jsonl"
    path.write_text(GOOD * 60 + '{"prompt": "q", "completion": ' + "1" * 4301 + "}\n")
    spec = FineTuneJobSpec.model_validate({"baseModel": {"name": "m"}, "dataset": {"uri": str(path)},
                                           "output": {"uri": "file:///x"}})
    prepared = prepare(spec, tmp_path / "out")
    assert prepared.report.has_errors and prepared.report.finding("malformed").lines == [61]


def test_lines_over_one_mebibyte_are_refused(tmp_path):
    assert MAX_LINE_BYTES == 1024 * 1024
    path = tmp_path / "d.jsonl"
    huge = json.dumps({"prompt": "q", "completion": "a." * (MAX_LINE_BYTES // 2)}) + "\n"
    path.write_text(GOOD + huge + GOOD)
    bad = check(open_uri(str(path)), DatasetChecks(min_examples=1)).finding("malformed")
    assert bad is not None and bad.lines == [2] and "longer than" in bad.locations[0].detail
