"""The benchmarks' started servers (``benchmarks.servers``): where their logs go."""

from benchmarks.servers import report_log_dir


def test_a_reports_log_folder_keeps_only_its_latest_runs_server_logs(tmp_path):
    first = report_log_dir(tmp_path, "compare")
    assert first == tmp_path / "logs" / "compare" and first.is_dir()
    (first / "bench-service-abc.log").write_text("the previous run's server\n")
    (first / "notes.txt").write_text("an integrator's own file\n")
    other = report_log_dir(tmp_path, "serve_load")
    (other / "bench-naive-def.log").write_text("another report's server\n")

    again = report_log_dir(tmp_path, "compare")

    assert again == first
    assert sorted(p.name for p in again.iterdir()) == ["notes.txt"]  # the old server log went
    assert (other / "bench-naive-def.log").exists()  # another report's logs are not touched
