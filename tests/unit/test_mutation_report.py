"""bench/mutation_report.py on a small fake of mutmut's results: the score per package, the
allow-list (and when its entries go stale), and which mutants a changed test file re-tests."""

from __future__ import annotations

import json

from bench import mutation_report as report

SOURCE = '''\
def x_double__mutmut_orig(n):
    return n * 2

def x_double__mutmut_1(n):
    return n / 2

def x_double__mutmut_2(n):
    return n * 3

def x_double__mutmut_3(n):
    return n * 2 + 0
'''
SPANS = {"x_double__mutmut_orig": [1, 2], "x_double__mutmut_1": [4, 5],
         "x_double__mutmut_2": [7, 8], "x_double__mutmut_3": [10, 11]}


def fake_results(tmp_path, codes, package="sip"):
    base = tmp_path / "mutants" / "sipxcc" / package
    base.mkdir(parents=True)
    (base / "calc.py").write_text(SOURCE)
    (base / "calc.py.spans").write_text(json.dumps({"version": 1, "spans": SPANS}))
    names = {f"sipxcc.{package}.calc.x_double__mutmut_{n}": code for n, code in codes.items()}
    (base / "calc.py.meta").write_text(json.dumps({"exit_code_by_key": names}))
    return tmp_path / "mutants"


def test_verdicts_diffs_and_scores(tmp_path):
    mutants = report.load_mutants(fake_results(tmp_path, {1: 1, 2: 0, 3: 33}))
    assert [m.status for m in mutants] == ["killed", "survived", "no tests"]
    assert mutants[1].diff.splitlines()[-2:] == ["-    return n * 2", "+    return n * 3"]
    assert len(mutants[1].fingerprint) == 12
    table = report.scores(mutants)
    assert (table["sipxcc.sip"].total, table["sipxcc.sip"].killed) == (3, 1)
    assert round(table["sipxcc.sip"].percent, 1) == 33.3
    assert table["sipxcc.web"].total == 0 and table["sipxcc.web"].percent == 100.0


def test_timeouts_count_as_killed_and_unknown_codes_do_not(tmp_path):
    mutants = report.load_mutants(fake_results(tmp_path, {1: 36, 2: -11, 3: None}))
    assert [m.killed for m in mutants] == [True, False, False]
    assert [m.status for m in mutants] == ["timeout", "other", "not checked"]


def test_an_allow_list_entry_excuses_only_the_mutant_it_fingerprints(tmp_path):
    mutants = report.load_mutants(fake_results(tmp_path, {1: 1, 2: 0, 3: 0}))
    survivor, equivalent = mutants[1], mutants[2]
    allow = tmp_path / "allow.txt"
    allow.write_text(f"# comment\n\n{equivalent.name} {equivalent.fingerprint} adds zero\n"
                     f"{survivor.name} 000000000000 stale on purpose\n"
                     f"{mutants[0].name} {mutants[0].fingerprint} killed meanwhile\n"
                     "sipxcc.sip.calc.gone__mutmut_9 0123456789ab no such mutant\n"
                     "not an entry\n")
    entries, errors = report.read_allow_list(allow)
    assert len(entries) == 4 and errors == [f"{allow}:7: not 'NAME FINGERPRINT REASON': "
                                            "not an entry"]
    stale = report.apply_allow_list(mutants, entries)
    assert [m.equivalent for m in mutants] == ["", "", "adds zero"]
    assert len(stale) == 3
    score = report.scores(mutants)["sipxcc.sip"]
    assert (score.killed, score.equivalent, score.unexplained) == (1, 1, 1)
    assert score.percent == 50.0
    text = report.render(mutants, stale, errors, when="now", command="make mutation")
    assert "| sipxcc.sip | 3 | 1 | 1 | 1 | 0 | 0 | 50.0 % (below goal) |" in text
    assert (f"- {survivor.name} (survived, {survivor.fingerprint}): "
            "`return n * 2` -> `return n * 3`") in text
    assert f"- {equivalent.name}: adds zero" in text


def test_changed_test_files_and_the_mutants_they_cover(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mutants_dir = fake_results(tmp_path, {1: 0, 2: 0, 3: 33})
    tests = tmp_path / "tests" / "unit"
    tests.mkdir(parents=True)
    (tests / "test_a.py").write_text("A = 1\n")
    (tests / "fakes.py").write_text("F = 1\n")
    saved = mutants_dir / ".sipxcc-unit-tests.json"
    assert report.changed_test_files(saved, report.test_file_hashes(tests)) == [
        str(tests / "fakes.py"), str(tests / "test_a.py")]
    saved.write_text(json.dumps(report.test_file_hashes(tests)))
    assert report.changed_test_files(saved, report.test_file_hashes(tests)) == []
    (tests / "test_a.py").write_text("A = 2\n")
    assert report.changed_test_files(saved, report.test_file_hashes(tests)) == [
        str(tests / "test_a.py")]

    stats = mutants_dir / "mutmut-stats.json"
    stats.write_text(json.dumps({"tests_by_mangled_function_name": {
        "sipxcc.sip.calc.x_double": ["tests/unit/test_a.py::test_double"]}}))
    mutants = report.load_mutants(mutants_dir)
    assert report.covered_by(mutants, stats, ["tests/unit/test_b.py"]) == []
    assert len(report.covered_by(mutants, stats, ["tests/unit/test_a.py"])) == 3
    # a changed helper may change any test: everything covered is re-tested
    assert len(report.covered_by(mutants, stats, ["tests/unit/fakes.py"])) == 3


def test_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fake_results(tmp_path, {1: 1, 2: 0, 3: 1})
    assert report.main(["--unkilled"]) == 0
    assert capsys.readouterr().out == "sipxcc.sip.calc.x_double__mutmut_2\n"
    assert report.main(["--out", "out/report.md"]) == 0
    assert "| sipxcc.sip | 3 | 2 | 0 | 1 |" in (tmp_path / "out" / "report.md").read_text()
    assert report.main(["--mutants", "nowhere"]) == 2


def test_a_listed_mutant_that_ran_out_of_time_stays_equivalent_and_is_not_a_kill(tmp_path):
    """An equivalent mutant can still hit the CPU limit on a loaded machine; that is no
    test telling it apart, so its entry keeps explaining it and it is not counted killed."""
    mutants = report.load_mutants(fake_results(tmp_path, {1: -24, 2: 1, 3: 0}))
    timed_out, killed, _ = mutants
    allow = tmp_path / "allow.txt"
    allow.write_text(f"{timed_out.name} {timed_out.fingerprint} same result, slower\n"
                     f"{killed.name} {killed.fingerprint} thought equivalent\n")
    entries, _ = report.read_allow_list(allow)
    stale = report.apply_allow_list(mutants, entries)
    assert stale == [f"line 2: {killed.name}: killed now, drop the entry"]
    assert [m.equivalent for m in mutants] == ["same result, slower", "", ""]
    score = report.scores(mutants)["sipxcc.sip"]
    assert (score.killed, score.equivalent, score.unexplained) == (1, 1, 1)
