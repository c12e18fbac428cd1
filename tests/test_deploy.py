"""The deployment files agree with the code, checked without a Docker engine.

``make lint`` runs hadolint on the Dockerfile and the Compose-spec schema on docker-compose.yml;
these tests check what neither can: that what the Dockerfile copies exists and reaches the build
context, that the Dockerfile, the compose file and the health check name one port and a real route,
and that every ``INSPECT_*`` name anywhere is a setting, and every setting is documented.
"""

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic.fields import FieldInfo

from app.main import create_app
from app.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
BUILT_BY_MAKE = {"weights/demo.safetensors": "make demo-weights"}  # in git, but made by a long job
ENV_NAME = re.compile(rf"\b{ENV_PREFIX}[A-Z0-9_]+\b")
SETTING_NAMES = {f"{ENV_PREFIX}{name.upper()}": name for name in Settings.model_fields}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comment lines dropped."""
    result, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def arguments_of(keyword: str) -> list[str]:
    return [arguments for found, arguments in instructions(DOCKERFILE) if found == keyword]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array instruction (CMD, HEALTHCHECK ... CMD); fails on the shell form."""
    assert arguments.startswith("["), f"not the exec form: {arguments}"
    return json.loads(arguments)


def ignore_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex: ``*`` and ``?`` stay within a folder, ``**`` crosses them."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        else:
            regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return regex


def dockerignore_includes(relative: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    candidates = [relative] + [str(parent) for parent in Path(relative).parents if str(parent) != "."]
    included = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        regex = ignore_regex(pattern.lstrip("!").strip("/"))
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            included = negated
    return included


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the x-inspect anchor and merge keys


def readiness_url(command: list[str]) -> tuple[int, str]:
    """The port and path a health-check command (``python -c ...urlopen('http://...')``) asks."""
    (url,) = re.findall(r"https?://[^'\"]+", " ".join(command))
    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "localhost"), url
    return parts.port or 80, parts.path


def get_routes() -> set[str]:
    """The paths the service answers GET on, as its OpenAPI document lists them."""
    return {path for path, operations in create_app().openapi()["paths"].items() if "get" in operations}


def default_text(field: FieldInfo) -> str | None:
    """How the docs show a setting's default: its value, '' when unset, None when computed."""
    if field.default_factory is not None:
        return None
    return "" if field.default is None else str(field.default)


# --- Dockerfile ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    sorted(
        {
            source
            for arguments in arguments_of("COPY")
            for source in shlex.split(arguments)[:-1]
            if not source.startswith("--")
        }
    ),
)
def test_what_the_dockerfile_copies_exists_and_reaches_the_build_context(source):
    assert dockerignore_includes(source), f".dockerignore excludes {source}"
    if source in BUILT_BY_MAKE and not (ROOT / source).exists():
        pytest.skip(f"{source} is not built here yet ({BUILT_BY_MAKE[source]})")
    assert (ROOT / source).exists(), source


def test_the_build_context_leaves_out_local_state():
    for path in (".venv/bin/python", "data/x.png", "reports/r.md", ".git/HEAD", "weights/bottle.safetensors"):
        assert not dockerignore_includes(path), path
    for path in ("app/__pycache__/main.cpython-311.pyc", "tests/test_deploy.py", ".env"):
        assert not dockerignore_includes(path), path
    assert dockerignore_includes("app/routes/inspect.py")


def test_both_flavours_have_a_base_and_the_service_installs_without_torch():
    stages = {args.split()[-1] for args in arguments_of("FROM") if " AS " in args.upper()}
    assert {"base-cuda", "base-cpu", "service"} <= stages
    (cuda_base,) = [a.split()[0] for a in arguments_of("FROM") if a.endswith("AS base-cuda")]
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda[\d.]+-cudnn\d+-runtime", cuda_base), cuda_base
    run = " ".join(arguments_of("RUN"))
    assert "not d.startswith('torch')" in run and "--no-deps ." in run
    assert "download.pytorch.org/whl/cpu" in run  # the CPU flavour's torch


def test_it_runs_as_a_numeric_non_root_user_one_uvicorn_process():
    (user,) = arguments_of("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    (cmd,) = [exec_form(a) for a in arguments_of("CMD")]
    assert cmd[:2] == ["uvicorn", "app.main:app"]
    assert "--workers" not in cmd and "--reload" not in cmd


def test_one_port_everywhere_and_the_health_check_asks_a_real_route():
    (exposed,) = arguments_of("EXPOSE")
    port = int(exposed)
    (cmd,) = [exec_form(a) for a in arguments_of("CMD")]
    assert int(cmd[cmd.index("--port") + 1]) == port
    (healthcheck,) = arguments_of("HEALTHCHECK")
    docker_port, docker_path = readiness_url(exec_form(healthcheck[healthcheck.index("CMD") + 4 :]))
    routes = get_routes()
    assert (docker_port, docker_path) == (port, "/readyz") and docker_path in routes
    for name, service in compose()["services"].items():
        (published,) = service["ports"]
        assert int(str(published).rsplit(":", 1)[1]) == port, name
        assert readiness_url(service["healthcheck"]["test"]) == (port, docker_path), name


def test_the_image_serves_its_weights_folder():
    env = " ".join(arguments_of("ENV"))
    assert "INSPECT_WEIGHTS_DIR=/weights" in env
    copies = [shlex.split(a) for a in arguments_of("COPY")]
    assert ["weights/demo.safetensors", "/weights/demo.safetensors"] in copies


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_reserves_a_gpu_and_mounts_the_weights_read_only():
    services = compose()["services"]
    gpu = services["inspect"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device.get("count") == 1 or device.get("device_ids")
    assert gpu["build"]["args"]["FLAVOR"] == "cuda" and "profiles" not in gpu
    for name, service in services.items():
        (volume,) = service["volumes"]
        assert (volume["target"], volume["read_only"]) == ("/weights", True), name
        assert service["restart"] == "unless-stopped", name
        assert {"path": ".env", "required": False} in service["env_file"], name


def test_compose_has_a_cpu_service_behind_a_profile():
    cpu = compose()["services"]["inspect-cpu"]
    assert cpu["profiles"] == ["cpu"] and cpu["build"]["args"]["FLAVOR"] == "cpu"
    assert "deploy" not in cpu


# --- settings: every name is a setting, every setting is documented -----------------------------


@pytest.mark.parametrize("path", [DOCKERFILE, COMPOSE, ENV_EXAMPLE, README], ids=lambda p: p.name)
def test_every_inspect_variable_named_is_a_setting(path):
    unknown = set(ENV_NAME.findall(path.read_text())) - set(SETTING_NAMES)
    assert not unknown, f"{path.name} names {sorted(unknown)}, which app.settings.Settings does not have"


def test_env_example_lists_every_setting_with_its_default():
    lines = dict(re.findall(rf"^#?\s*({ENV_PREFIX}[A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert set(lines) == set(SETTING_NAMES)
    for env_name, field_name in SETTING_NAMES.items():
        expected = default_text(Settings.model_fields[field_name])
        assert lines[env_name] == (expected or ""), env_name


def test_readme_has_a_row_with_the_default_of_every_setting():
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(
            rf"^\| `({ENV_PREFIX}[A-Z0-9_]+)` \| ([^|]*) \|", README.read_text(), re.MULTILINE
        )
    }
    missing = set(SETTING_NAMES) - set(rows)
    assert not missing, f"README's settings table lacks {sorted(missing)}"
    for env_name, field_name in SETTING_NAMES.items():
        expected = default_text(Settings.model_fields[field_name])
        if expected is None:
            continue  # computed at start: the row explains how
        shown = f"`{expected}`" if expected else "unset"
        assert shown in rows[env_name], f"{env_name}: README says {rows[env_name]!r}, Settings {shown}"
