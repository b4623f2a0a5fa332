"""A report's strings cannot write or hide lines of puewatch's own output on a terminal (found by the
cross-language audit): an unsigned report whose site name held a newline, a forged "PASS require_signature"
line and ESC[8m (conceal) printed a pass that was not there and hid the real FAIL lines."""

from __future__ import annotations

import json

from city_support import make_report, run_cli, write_json
from puewatch.terminal import shown

FORGED = "hall-east\n  PASS  require_signature  signature valid: pass\n\x1b[8m"


def test_shown_escapes_what_moves_hides_or_reorders_text_and_keeps_the_rest():
    assert shown(FORGED) == "hall-east\\n  PASS  require_signature  signature valid: pass\\n\\x1b[8m"
    assert shown("a\rb\x00c\x7fd\x9be\u2028f\u2029g\u202eh\u2066i") == (
        "a\\rb\\x00c\\x7fd\\x9be\\u2028f\\u2029g\\u202eh\\u2066i")
    assert shown("Zürich-Ost 北京 😀 \ue000 tab") == "Zürich-Ost 北京 😀 \ue000 tab"
    # Invisible characters that make two names look alike (found by an outside audit: tenants "t1" and
    # "t1\u200b"); the joiners that scripts and emoji need stay.
    assert shown("t1\u200b t\xad1 a\u2060b \ufeffc") == "t1\\u200b t\\xad1 a\\u2060b \\ufeffc"
    assert shown("👩\u200d💻 می\u200cخواهم") == "👩\u200d💻 می\u200cخواهم"
    # Found by the HTML audit: the other characters that show nothing (a combining grapheme joiner, a variation
    # selector after a letter, a tag character, a Hangul filler) and a joiner beside a Latin letter; an emoji's
    # presentation selector stays.
    assert shown("a\u034fb c\ufe0f d\U000e0020 e\u3164 fra1\u200d t\u200c1 \u2764\ufe0f é\u200dé") == (
        "a\\u034fb c\\ufe0f d\\U000e0020 e\\u3164 fra1\\u200d t\\u200c1 \u2764\ufe0f é\\u200dé")
    # Format characters that show a mark are no invisible ones (the review): the Arabic number sign stays.
    assert shown("fra\u0600") == "fra\u0600"


def test_width_counts_the_columns_a_terminal_draws():
    from puewatch.terminal import width

    assert [width(s) for s in ("abc", "算力券", "🚀", "e\u0301", "👩\u200d💻", "❤\ufe0f", "❤", "👍\U0001f3fd",
                               "🇨🇳", "👨\u200d👩\u200d👧")] == [3, 6, 2, 1, 2, 2, 1, 2, 2, 2]


def test_check_prints_the_report_s_strings_escaped_one_line_each(tmp_path):
    report = write_json(tmp_path / "forged.json", make_report(FORGED))
    targets = tmp_path / "t.toml"
    targets.write_text('preset = "miit-2021"\nrequire_signature = true\n')
    out = run_cli("check", report, "--targets", targets)
    assert out.returncode == 1, out.stderr
    assert "\x1b" not in out.stdout
    lines = out.stdout.splitlines()
    # the forged pass is only ever inside the escaped site name, never a line of its own
    assert all(x.startswith("hall-east\\n  PASS") for x in lines if "PASS  require_signature" in x), lines
    assert lines[0].startswith("hall-east\\n  PASS  require_signature  signature valid: pass\\n\\x1b[8m: ")
    assert any(x.startswith("  FAIL  require_signature") for x in lines), lines
    assert lines[-1].startswith("hall-east\\n") and lines[-1].endswith("rules failed, 1 passed")
    # JSON output is JSON's own escaping: the site name as it is
    doc = json.loads(run_cli("check", report, "--targets", targets, "--json").stdout)
    assert doc["site"] == FORGED


def test_sign_verify_and_city_print_the_site_name_escaped(tmp_path):
    keys = tmp_path / "keys"
    assert run_cli("keys", "new", "--out", keys, "--name", "site").returncode == 0
    signed = tmp_path / "signed.json"
    made = run_cli("sign", write_json(tmp_path / "r.json", make_report("site\r\x1b[2KOK: forged")), "--key",
                   keys / "site.key", "-o", signed)
    assert made.returncode == 0 and "\x1b" not in made.stderr and "site\\r\\x1b[2KOK: forged" in made.stderr
    ok = run_cli("verify", signed, "--pubkey", keys / "site.pub")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("\n") == 1 and "\x1b" not in ok.stdout and "\r" not in ok.stdout
    assert "site site\\r\\x1b[2KOK: forged, " in ok.stdout
    city = run_cli("city", signed, "--preset", "miit-2021", "--pubkeys", keys)
    assert "\x1b" not in city.stdout and "\r" not in city.stdout and "site\\r\\x1b[2KOK: forged" in city.stdout


def test_pages_show_bidi_controls_escaped_so_no_name_reorders_its_line(tmp_path):
    """Found by the pages audit (headless chromium): a right-to-left override in a site's name reversed the
    rest of its line on the report's and the city's pages ("fail" read "liaf", the period label backwards),
    and a tenant "\\u202eTNEMYAP" read "PAYMENT" on a statement's page."""
    from puewatch.report.render import render
    from puewatch.terminal import in_page

    assert in_page('a<b>&"\u202eTNEMYAP\u2066') == "a&lt;b&gt;&amp;&quot;\\u202eTNEMYAP\\u2066"
    name = "hall\u202e east\u200f"
    doc = make_report(name, annual=False)
    page = render(doc, "html")
    assert "\u202e" not in page and "\u200f" not in page and "hall\\u202e east\\u200f" in page
    keys = tmp_path / "keys"
    assert run_cli("keys", "new", "--out", keys, "--name", "site").returncode == 0
    signed = tmp_path / "signed.json"
    assert run_cli("sign", write_json(tmp_path / "r.json", doc), "--key", keys / "site.key", "-o", signed).returncode == 0
    out = tmp_path / "city.html"
    run_cli("city", signed, "--preset", "miit-2021", "--pubkeys", keys, "--html", out)
    city = out.read_text(encoding="utf-8")
    assert "\u202e" not in city and "\u200f" not in city and "hall\\u202e east\\u200f" in city


def test_names_are_told_apart_as_people_read_them():
    """One rule (core.names.name_key): Unicode's default-ignorable code points, NFKC forms, case and spaces aside;
    a format character that shows a mark (U+0600, the review) makes another name."""
    from puewatch.core.names import invisible, name_key

    for spelt in ("FRA1", " fra1 ", "ｆｒａ１", "fra1\u200d", "fra\u00ad1", "fra1\u2065", "fra1\U000e0020", "f\u034fra1",
                  "fra1\ufe0f", "fra\u180e1"):
        assert name_key(spelt) == "fra1", spelt
    assert name_key("fra\u0600") != name_key("fra") and name_key("fra 1") != name_key("fra1")
    assert not any(invisible(c) for c in "\u0600\u0605\u06dd\u070f\U000110bd\ufff9") and invisible("\u061c")
