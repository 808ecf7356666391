"""The Databricks Asset Bundle: derived from the DAG, deterministic, identical to the committed files, and checked
offline against the databricks-bundles dataclasses and the bundle schema subset."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from goldgate.bundle import (
    JOBS,
    ROOT_FILE,
    BundleError,
    bundle_diff,
    job_dependencies,
    job_errors,
    render_bundle,
    validate_bundle,
    write_bundle,
)
from goldgate.cli import app
from goldgate.dag import STEP_NAMES, Step, get_step
from goldgate.usecase import load_usecase, parse_usecase

REPO = Path(__file__).resolve().parents[1]
JOB_FILES = [f"resources/{spec.key}.job.yml" for spec in JOBS]
runner = CliRunner()


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return render_bundle(load_usecase("fx"))


def _jobs(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for path in JOB_FILES:
        jobs |= yaml.safe_load(files[path])["resources"]["jobs"]
    return jobs


def test_committed_bundle_matches_a_fresh_generation(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bundle", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for path in [ROOT_FILE, *JOB_FILES]:
        committed = REPO / path
        assert committed.is_file(), f"{path} is missing: run `goldgate bundle` at the repository root"
        assert (tmp_path / path).read_bytes() == committed.read_bytes(), f"{path} is stale: run `goldgate bundle`"


def test_generation_is_deterministic(files: dict[str, str]) -> None:
    assert render_bundle(load_usecase("fx")) == files


def test_pipeline_job_has_one_task_per_step_with_the_dag_dependencies(files: dict[str, str]) -> None:
    tasks = _jobs(files)["goldgate_pipeline"]["tasks"]
    assert [t["task_key"] for t in tasks] == list(STEP_NAMES)
    for task in tasks:
        deps = [d["task_key"] for d in task.get("depends_on", [])]
        assert deps == list(get_step(task["task_key"]).depends_on)
        wheel = task["python_wheel_task"]
        assert (wheel["package_name"], wheel["entry_point"]) == ("goldgate", "goldgate")
        assert wheel["parameters"][:4] == ["step", task["task_key"], "--usecase", "${var.usecase}"]
        assert task["libraries"] == [{"whl": "../dist/*.whl"}]


def test_smaller_jobs_depend_on_their_nearest_steps_in_the_dag(files: dict[str, str]) -> None:
    jobs = _jobs(files)
    scoring = {
        t["task_key"]: [d["task_key"] for d in t.get("depends_on", [])] for t in jobs["goldgate_scoring"]["tasks"]
    }
    # score depends on register in the DAG; in a job without train..register it runs after features
    assert scoring == {
        "ingest": [],
        "silver": ["ingest"],
        "gold": ["silver"],
        "features": ["gold"],
        "score": ["features"],
    }
    assert [t["task_key"] for t in jobs["goldgate_monitoring"]["tasks"]] == ["monitor"]
    assert "depends_on" not in jobs["goldgate_monitoring"]["tasks"][0]


def test_nearest_dependencies_look_through_left_out_branches() -> None:
    dag = (
        Step("a", "m:a", (), ""),
        Step("b", "m:b", ("a",), ""),
        Step("c", "m:c", ("a",), ""),
        Step("d", "m:d", ("b", "c"), ""),
    )
    assert job_dependencies(["a", "d"], dag) == {"a": (), "d": ("a",)}
    assert job_dependencies(["b", "c", "d"], dag) == {"b": (), "c": (), "d": ("b", "c")}
    with pytest.raises(BundleError, match="unknown steps"):
        job_dependencies(["a", "z"], dag)


def test_retries_and_time_limits_come_from_the_use_case(files: dict[str, str]) -> None:
    data = yaml.safe_load((REPO / "src/goldgate/usecases/fx.yaml").read_text())
    data["orchestration"] = {
        "defaults": {"retries": 0, "retry_delay_seconds": 2.5},
        "steps": {"train": {"retries": 3, "timeout_seconds": 1800}},
    }
    tasks = {t["task_key"]: t for t in _jobs(render_bundle(parse_usecase(data)))["goldgate_pipeline"]["tasks"]}
    assert (tasks["train"]["max_retries"], tasks["train"]["timeout_seconds"]) == (3, 1800)
    assert (tasks["ingest"]["max_retries"], tasks["ingest"]["min_retry_interval_millis"]) == (0, 2500)
    # the committed files use the defaults: one retry after 30 s, one hour per attempt
    committed = {t["task_key"]: t for t in _jobs(files)["goldgate_pipeline"]["tasks"]}
    assert {(t["max_retries"], t["min_retry_interval_millis"], t["timeout_seconds"]) for t in committed.values()} == {
        (1, 30000, 3600)
    }


def test_targets_variables_schedules_and_notifications(files: dict[str, str]) -> None:
    root = yaml.safe_load(files[ROOT_FILE])
    assert list(root["targets"]) == ["dev", "staging", "prod"]
    assert root["targets"]["dev"]["mode"] == "development"
    assert root["targets"]["prod"]["mode"] == "production"
    assert root["artifacts"]["goldgate_wheel"]["type"] == "whl"
    assert {"catalog", "schema", "usecase", "failure_email"} <= set(root["variables"])
    for key, job in _jobs(files).items():
        assert job["schedule"]["quartz_cron_expression"].startswith("${var."), key
        assert job["email_notifications"]["on_failure"] == ["${var.failure_email}"]
        env = job["job_clusters"][0]["new_cluster"]["spark_env_vars"]
        # what goldgate.catalog_names reads on the cluster
        assert (env["GOLDGATE_UC_CATALOG"], env["GOLDGATE_UC_SCHEMA"]) == ("${var.catalog}", "${var.schema}")
        assert env["GOLDGATE_REGISTRY_URI"] == "databricks-uc"
        assert env["GOLDGATE_ENV"] == "${bundle.target}"


def test_quartz_defaults_have_seven_fields(files: dict[str, str]) -> None:
    variables = yaml.safe_load(files[ROOT_FILE])["variables"]
    for spec in JOBS:
        # Quartz: seconds minutes hours day-of-month month day-of-week, one of the two days being '?'
        fields = variables[spec.cron_variable]["default"].split()
        assert len(fields) == 6, spec.cron_variable
        assert "?" in (fields[3], fields[5])


@pytest.mark.parametrize(
    ("break_job", "problem"),
    [
        (lambda job: job["tasks"][0].update(python_wheel_tsk={}), "Unexpected field 'python_wheel_tsk' for class Task"),
        (lambda job: job["tasks"][1].update(max_retries="twice"), "invalid literal for int()"),
        (lambda job: job["job_clusters"][0]["new_cluster"].update(data_security_mode="OPEN"), "not a valid"),
        (lambda job: job["tasks"][1].update(depends_on="ingest"), "Unexpected type"),
        (lambda job: job["tasks"][1].update(depends_on=[{"task_key": "ingets"}]), "depends on unknown task ingets"),
        (lambda job: job["tasks"][2].update(job_cluster_key="big"), "task gold uses unknown job cluster"),
        (lambda job: job["tasks"][0].update(depends_on=[{"task_key": "monitor"}]), "cycle in the DAG"),
    ],
)
def test_validation_catches_a_broken_job(files: dict[str, str], break_job: Any, problem: str) -> None:
    path = "resources/goldgate_pipeline.job.yml"
    doc = yaml.safe_load(files[path])
    job = doc["resources"]["jobs"]["goldgate_pipeline"]
    assert job_errors("goldgate_pipeline", copy.deepcopy(job), path) == []
    break_job(job)
    broken = {**files, path: yaml.safe_dump(doc, sort_keys=False)}
    with pytest.raises(BundleError, match="goldgate_pipeline") as info:
        validate_bundle(broken)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("break_root", "problem"),
    [
        (lambda root: root.update(bundel={"name": "x"}), "Additional properties are not allowed ('bundel'"),
        (
            lambda root: root["targets"]["prod"].update(mode="prod"),
            "'prod' is not one of ['development', 'production']",
        ),
        (lambda root: root["variables"].pop("catalog"), "${var.catalog} is not declared"),
        (lambda root: root["targets"]["dev"]["variables"].update(catalgo="x"), "sets undeclared variable catalgo"),
    ],
)
def test_validation_catches_a_broken_root_file(files: dict[str, str], break_root: Any, problem: str) -> None:
    root = yaml.safe_load(files[ROOT_FILE])
    break_root(root)
    with pytest.raises(BundleError) as info:
        validate_bundle({**files, ROOT_FILE: yaml.safe_dump(root, sort_keys=False)})
    assert problem in str(info.value)


def test_check_passes_on_fresh_files_and_fails_with_a_diff_on_drift(files: dict[str, str], tmp_path: Path) -> None:
    write_bundle(files, tmp_path)
    ok = runner.invoke(app, ["bundle", "--check", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert bundle_diff(files, tmp_path) == ""

    job_file = tmp_path / "resources/goldgate_scoring.job.yml"
    job_file.write_text(job_file.read_text().replace("max_retries: 1", "max_retries: 5", 1))
    (tmp_path / "resources/goldgate_retired.job.yml").write_text("resources: {}\n")
    (tmp_path / "resources/team_dashboard.yml").write_text("resources: {}\n")  # not goldgate's: left alone
    drift = runner.invoke(app, ["bundle", "--check", "--out", str(tmp_path)])
    assert drift.exit_code == 1
    assert "-        max_retries: 5" in drift.output
    assert "+        max_retries: 1" in drift.output
    assert "a/resources/goldgate_retired.job.yml" in drift.output
    assert "team_dashboard" not in drift.output
    assert "differ from the DAG" in drift.output

    write_bundle(files, tmp_path)  # regenerating repairs the drift and removes only goldgate's stale job file
    assert bundle_diff(files, tmp_path) == ""
    assert not (tmp_path / "resources/goldgate_retired.job.yml").exists()
    assert (tmp_path / "resources/team_dashboard.yml").exists()
