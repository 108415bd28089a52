#!/usr/bin/env bash
# Build the worker image for linux/arm64, push it to the stack's ECR repository, and
# (with --deploy) roll the workers onto it by setting the stack's WorkerImageTag.
#
#   infra/deploy/push-worker-image.sh [--stack NAME] [--tag TAG] [--deploy] [--no-build]
#
#   --stack NAME  CloudFormation stack (default: $OFFLOAD_STACK or "offload")
#   --tag TAG     image tag (default: the current git commit, plus "-dirty" when the
#                 work tree has changes); tags are immutable, so each push needs a new one
#   --deploy      then update the stack with WorkerImageTag=TAG, keeping every other
#                 parameter and the deployed template as they are
#   --no-build    skip building and pushing: roll back (or forward) to a tag already in
#                 the repository, e.g. --tag <previous> --no-build --deploy
#
# Needs: aws CLI v2 with credentials for the stack's account and region (AWS_REGION or the
# profile's), docker with buildx (arm64 builds on x86 use QEMU emulation), git.
set -euo pipefail

stack=${OFFLOAD_STACK:-offload}
tag=""
deploy=0
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --stack) stack=${2:?--stack needs a name}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --deploy) deploy=1; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

for tool in aws docker git; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

if [ -z "$tag" ]; then
  tag=$(git rev-parse --short=12 HEAD)
  if [ -n "$(git status --porcelain -- pyproject.toml uv.lock shared functions worker infra/local)" ]; then
    tag="$tag-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
fi
if ! [[ "$tag" =~ ^[A-Za-z0-9_.-]{1,128}$ ]]; then
  echo "invalid tag: $tag" >&2
  exit 2
fi

output() {
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
repository=$(output WorkerRepositoryUri)
if [ -z "$repository" ] || [ "$repository" = "None" ]; then
  echo "stack $stack has no WorkerRepositoryUri output: deploy it first (sam deploy --guided)" >&2
  exit 1
fi
registry=${repository%%/*}
region=$(echo "$registry" | cut -d. -f4)

if [ "$build" -eq 1 ]; then
  echo "logging in to $registry"
  aws ecr get-login-password --region "$region" \
    | docker login --username AWS --password-stdin "$registry"
  echo "building and pushing $repository:$tag (linux/arm64)"
  docker buildx build --platform linux/arm64 --file worker/Dockerfile \
    --tag "$repository:$tag" --provenance=false --push .
else
  aws ecr describe-images --region "$region" --repository-name "${repository#*/}" \
    --image-ids imageTag="$tag" >/dev/null \
    || { echo "no image tagged $tag in $repository" >&2; exit 1; }
fi

if [ "$deploy" -ne 1 ]; then
  echo
  echo "pushed $repository:$tag. Roll the workers onto it with:"
  echo "  $0 --stack $stack --tag $tag --deploy"
  echo "or: sam deploy --parameter-overrides WorkerImageTag=$tag (plus your other overrides)"
  exit 0
fi

# Keep every other parameter's current value, change only WorkerImageTag.
params=("ParameterKey=WorkerImageTag,ParameterValue=$tag")
while read -r key; do
  [ "$key" = "WorkerImageTag" ] || params+=("ParameterKey=$key,UsePreviousValue=true")
done < <(aws cloudformation describe-stacks --stack-name "$stack" \
  --query 'Stacks[0].Parameters[].ParameterKey' --output text | tr '\t' '\n')

echo "updating $stack: WorkerImageTag=$tag"
aws cloudformation update-stack --stack-name "$stack" --use-previous-template \
  --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
  --parameters "${params[@]}"
aws cloudformation wait stack-update-complete --stack-name "$stack"
echo "done: the worker service now runs $repository:$tag (the circuit breaker rolls back a"
echo "deployment whose tasks fail to start or stay unhealthy)"
