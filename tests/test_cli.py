import json
import subprocess
import sys

import pytest

from graphrec.cli import main


def test_help_everywhere(capsys):
    for args in ([], ["build"], ["info"], ["split"], ["generate"], ["generate", "pinterest"], ["demo"]):
        assert main([*args, "--help"]) == 0
        assert "Usage:" in capsys.readouterr().out


def test_generate_build_info_split(tmp_path, capsys):
    data, graph = tmp_path / "data", tmp_path / "g"
    assert main(["-q", "generate", "pinterest", "--users", "300", "--pins", "400", "--boards", "40",
                 "--authors", "30", "--saves", "5000", "--clusters", "5", "--seed", "1", "--out", str(data)]) == 0
    from tests.conftest import ROOT

    assert main(["-q", "build", "--schema", str(ROOT / "graphs" / "pinterest-synthetic.yaml"),
                 "--data", str(data), "--out", str(graph)]) == 0
    capsys.readouterr()
    assert main(["info", str(graph), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["node_types"]["pin"]["count"] == 400
    assert any(r["relation"] == "user:saves:pin" and r["edges"] == 5000 for r in info["relations"])
    assert main(["-q", "split", str(graph), "--relation", "user:saves:pin", "--out", str(tmp_path / "s")]) == 0
    # second build into the same place refuses, --overwrite replaces
    assert main(["-q", "build", "--schema", str(ROOT / "graphs" / "pinterest-synthetic.yaml"),
                 "--data", str(data), "--out", str(graph)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("args, needle", [
    (["info", "/nonexistent/graph"], "not a graph store"),
    (["build", "--schema", "/nonexistent.yaml", "--out", "x"], "schema file not found"),
    (["build", "--out", "x"], "exactly one of --schema or --triples"),
])
def test_errors_are_messages_not_tracebacks(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0 and needle in err and "Traceback" not in err


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "graphrec.cli", "info", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "graphrec.cli", "--debug", "info", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_demo(tmp_path, capsys):
    assert main(["-q", "demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "components:" in out and "PageRank top pins" in out
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["graph"]["node_types"]["pin"]["count"] == 10000
