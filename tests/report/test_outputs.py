"""awqguard check's printout: text from results is shown as text, never read as rich markup."""

import io

from helpers import minimal_results
from rich.console import Console

from awqguard.report.outputs import OUTPUT_FILES, print_results, write_outputs


def test_printout_shows_brackets_in_fixes_notices_and_items(tmp_path):
    results = minimal_results()
    results["gates"][1]["fixes"] = ["add [tool.awqguard] to pyproject.toml"]
    results["gates"][1]["worst_items"] = [{"item": "q[bold]1", "value": 0.4}]
    results["notices"] = ["[red]not a style[/red]"]
    buffer = io.StringIO()
    print_results(results, Console(file=buffer, width=200, color_system=None), write_outputs(results, tmp_path))
    text = buffer.getvalue()
    assert "fix: add [tool.awqguard] to pyproject.toml" in text
    assert "worst items: q[bold]1 (0.400)" in text and "note: [red]not a style[/red]" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUT_FILES.values())
