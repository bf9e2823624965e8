"""The image's build steps, run for real without a container engine: the build stage of the Dockerfile is
interpreted (ARG/ENV/WORKDIR/COPY/RUN) into a temporary directory standing in for the image's filesystem,
so the hash-locked install, the project install and the import check are exactly the Dockerfile's own
commands. Then the runtime entry point `greenmodel run --help` is executed from the resulting venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "unit"))
from test_chart_image import stages  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dockerfile_build_stage_installs_and_entrypoint_runs(tmp_path):
    build = stages()[0]
    image_root = tmp_path / "image"
    mapping = {"/opt/venv": str(image_root / "opt/venv"), "/src": str(image_root / "src")}

    def remap(text: str) -> str:
        for src, dst in mapping.items():
            text = text.replace(src, dst)
        return text

    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    python = shutil.which("python3.11") or sys.executable
    workdir = image_root
    ran = []
    for instr, args in build[1:]:
        if instr == "ENV":
            for assignment in args.split():
                key, _, value = assignment.partition("=")
                env[key] = value
        elif instr == "WORKDIR":
            workdir = Path(remap(args))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instr == "COPY":
            *sources, dest = args.split()
            target = Path(remap(dest)) if dest.startswith("/") else workdir / dest
            for src in sources:
                path = ROOT / src
                if path.is_dir():
                    shutil.copytree(path, target / src.rstrip("/").split("/")[-1] if dest.endswith("/") and dest != "./" else target,
                                    dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / path.name)
        elif instr == "RUN":
            command = remap(args).replace("python -m venv", f"{python} -m venv")
            proc = subprocess.run(command, shell=True, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"RUN {args}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            ran.append(args)
    assert any("--require-hashes" in r for r in ran)

    venv_bin = Path(mapping["/opt/venv"]) / "bin"
    # The runtime stage: venv on PATH, numeric user irrelevant here; the exec-form entry point must start.
    out = subprocess.run([str(venv_bin / "greenmodel"), "run", "--help"], capture_output=True, text=True, timeout=60,
                         env={"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "--config" in out.stdout
    # The installed project is the copy in the image root, not this checkout (no editable install).
    where = subprocess.run([str(venv_bin / "python"), "-c", "import greenmodel; print(greenmodel.__file__)"],
                           capture_output=True, text=True, timeout=60)
    assert str(image_root / "opt/venv") in where.stdout, where.stdout
    # setuptools/wheel were only for the build.
    frozen = subprocess.run([str(venv_bin / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, timeout=60)
    assert "setuptools==" not in frozen.stdout and "wheel==" not in frozen.stdout
