#!/usr/bin/env python3
"""What the schema and checkov do not know about adpipe's deployment artifacts.

On each kustomize-rendered manifest file given:
- the API Deployment runs ADPIPE_SERVER__RUN=api, the consumer one =consumer; readiness
  on /readyz, liveness on /healthz; every container has resource requests and limits and a
  hardened securityContext; credentials come only from Secret references;
- the HorizontalPodAutoscaler scales the consumers on CPU and memory, and never beyond the
  partitions of the rows topic ([bus] partitions in the ConfigMap's pipelines.toml);
- a PodDisruptionBudget selects each Deployment's pods;
- `adpipe check` accepts the ConfigMap's pipelines.toml with each Deployment's real
  environment (ConfigMap values as rendered, dummy Secret values), plugin paths pointed at
  a staging copy of the image's /app/dist/plugins.

And on the Dockerfile: the image layout it builds (/app/pipelines.toml and the plugins of
its PLUGINS argument under /app/dist/plugins) is staged from dist/plugins and passes
`adpipe check`.

Needs PyYAML (from the deploy venv of scripts/test-deploy).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

SECRET_DUMMIES = {
    "metadata-url": "postgres://adpipe:dummy@postgres:5432/adpipe",
    "cache-url": "redis://redis:6379",
    "jwt-secret": "0123456789abcdef0123456789abcdef-dummy",
}
CREDENTIAL_ENV = {"ADPIPE_METADATA__URL", "ADPIPE_CACHE__URL", "ADPIPE_AUTH__JWT_SECRET"}
IMAGE_PLUGIN_DIR = "/app/dist/plugins/"


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
        return ok


def dockerfile_plugins(dockerfile: Path) -> list[str]:
    m = re.search(r'^ARG PLUGINS="([^"]+)"', dockerfile.read_text(), re.M)
    if not m:
        raise SystemExit("Dockerfile: no ARG PLUGINS=\"...\" line")
    return m.group(1).split()


def dockerfile_env(dockerfile: Path) -> dict[str, str]:
    text = dockerfile.read_text().replace("\\\n", " ")
    env = {}
    for m in re.finditer(r"^ENV (.*)$", text, re.M):
        for pair in m.group(1).split():
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def stage_plugins(names: list[str], dist: Path, stage: Path) -> Path:
    plugins = stage / "app/dist/plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(dist / f"{name}.wasm", plugins / f"{name}.wasm")
    return plugins


def adpipe_check(bin_: str, config: Path, env: dict[str, str]) -> tuple[bool, str]:
    # Only the Deployment's environment reaches the check (no stray ADPIPE_* of the caller).
    base = {k: v for k, v in os.environ.items() if not k.startswith("ADPIPE_")}
    out = subprocess.run([bin_, "check", "--config", str(config)], env={**base, **env},
                         capture_output=True, text=True)
    return out.returncode == 0, (out.stdout + out.stderr).strip()


def server_run_supported(bin_: str, config: Path) -> bool:
    ok, _ = adpipe_check(bin_, config, {"ADPIPE_SERVER__RUN": "all"})
    return ok


def container_env(container: dict, configmaps: dict[str, dict]) -> tuple[dict[str, str], list[str]]:
    env, inline_credentials = {}, []
    for e in container.get("env", []):
        name = e["name"]
        if "value" in e:
            env[name] = str(e["value"])
            if name in CREDENTIAL_ENV:
                inline_credentials.append(name)
            continue
        src = e.get("valueFrom", {})
        if "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            if ref.get("optional") and ref["key"] not in SECRET_DUMMIES:
                continue
            env[name] = SECRET_DUMMIES.get(ref["key"], "dummy-secret-value")
        elif "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            env[name] = configmaps[ref["name"]]["data"][ref["key"]]
        else:
            inline_credentials.append(name)
    return env, inline_credentials


def check_rendered(path: Path, c: Checks, bin_: str, stage: Path, run_supported: bool) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    config_maps_with_toml = [d for d in configmaps.values() if "pipelines.toml" in d.get("data", {})]
    if not c.check(len(config_maps_with_toml) == 1, f"{path.name}: one ConfigMap holds pipelines.toml"):
        return
    toml_text = config_maps_with_toml[0]["data"]["pipelines.toml"]
    config = tomllib.loads(toml_text)
    staged = stage / f"{path.stem}-pipelines.toml"
    staged.write_text(toml_text.replace(IMAGE_PLUGIN_DIR, f"{stage}/app/dist/plugins/"))
    c.check(all(p["path"].startswith(IMAGE_PLUGIN_DIR) for p in config.get("plugins", [])),
            f"{path.name}: every plugin path is under {IMAGE_PLUGIN_DIR} (where the image keeps them)")

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    modes = {}
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        psc = pod.get("securityContext", {})
        c.check(psc.get("runAsNonRoot") is True and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                f"{path.name} {name}: pod runs as non-root with the RuntimeDefault seccomp profile")
        c.check(pod.get("automountServiceAccountToken") is False, f"{path.name} {name}: no service-account token")
        for ct in pod["containers"]:
            where = f"{path.name} {name}/{ct['name']}"
            res = ct.get("resources", {})
            c.check(all(k in res.get(w, {}) for w in ("requests", "limits") for k in ("cpu", "memory")),
                    f"{where}: cpu and memory requests and limits")
            sc = ct.get("securityContext", {})
            c.check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"],
                    f"{where}: read-only root, no privilege escalation, all capabilities dropped")
            c.check(ct.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
                    f"{where}: readiness on /readyz")
            c.check(ct.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
                    f"{where}: liveness on /healthz")
            env, inline = container_env(ct, configmaps)
            c.check(not inline, f"{where}: credentials only from Secret references (inline: {inline})")
            c.check(CREDENTIAL_ENV <= env.keys(), f"{where}: sets {sorted(CREDENTIAL_ENV)}")
            mode = env.get("ADPIPE_SERVER__RUN")
            modes[name] = mode
            check_env = dict(env)
            if not run_supported:
                check_env.pop("ADPIPE_SERVER__RUN", None)
            ok, out = adpipe_check(bin_, staged, check_env)
            c.check(ok, f"{where}: `adpipe check` of the ConfigMap's pipelines.toml with this environment: {out}")
        pdbs = [p for p in by_kind.get("PodDisruptionBudget", [])
                if all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())]
        c.check(len(pdbs) == 1, f"{path.name} {name}: exactly one PodDisruptionBudget selects its pods")
    c.check(modes.get("adpipe-api") == "api", f"{path.name}: adpipe-api runs ADPIPE_SERVER__RUN=api")
    c.check(modes.get("adpipe-consumer") == "consumer", f"{path.name}: adpipe-consumer runs ADPIPE_SERVER__RUN=consumer")

    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    if c.check(len(hpas) == 1, f"{path.name}: one HorizontalPodAutoscaler"):
        hpa = hpas[0]["spec"]
        c.check(hpa["scaleTargetRef"]["name"] == "adpipe-consumer", f"{path.name}: the HPA scales adpipe-consumer")
        resources = {m["resource"]["name"] for m in hpa.get("metrics", []) if m["type"] == "Resource"}
        c.check(resources == {"cpu", "memory"}, f"{path.name}: the HPA scales on cpu and memory (got {resources})")
        partitions = config.get("bus", {}).get("partitions", 6)
        c.check(hpa["maxReplicas"] <= partitions,
                f"{path.name}: HPA maxReplicas {hpa['maxReplicas']} <= {partitions} partitions (more would idle)")
        c.check("replicas" not in deployments["adpipe-consumer"]["spec"],
                f"{path.name}: the consumer Deployment leaves replicas to the HPA")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    ap.add_argument("rendered", nargs="+", type=Path)
    args = ap.parse_args()
    repo = Path(args.repo)
    c = Checks()
    stage = Path(tempfile.mkdtemp(prefix="adpipe-deploy-stage-"))
    try:
        # The image layout of the Dockerfile.
        names = dockerfile_plugins(repo / "Dockerfile")
        stage_plugins(names, repo / "dist/plugins", stage)
        shutil.copy2(repo / "pipelines.toml", stage / "app/pipelines.toml")
        image_env = dockerfile_env(repo / "Dockerfile")
        c.check(image_env.get("ADPIPE_SERVER__LISTEN", "").endswith(":8080"),
                f"Dockerfile: listens on 8080 (EXPOSE, HEALTHCHECK): {image_env}")
        ok, out = adpipe_check(args.bin, stage / "app/pipelines.toml", image_env)
        c.check(ok, f"Dockerfile: the image's /app/pipelines.toml with PLUGINS={names} and ENV {image_env}: {out}")
        wanted = {Path(p["path"]).name for p in tomllib.loads((repo / "pipelines.toml").read_text())["plugins"]}
        c.check(wanted == {f"{n}.wasm" for n in names},
                f"Dockerfile: PLUGINS {sorted(names)} are exactly the plugins pipelines.toml names {sorted(wanted)}")

        run_supported = server_run_supported(args.bin, stage / "app/pipelines.toml")
        for path in args.rendered:
            check_rendered(path, c, args.bin, stage, run_supported)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if not run_supported:
        print("note: this adpipe has no server.run key yet: `adpipe check` ran without ADPIPE_SERVER__RUN")
    for f in c.failed:
        print(f"  FAILED {f}")
    print(f"manifests: {c.passed} passed, {len(c.failed)} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
