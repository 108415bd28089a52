#!/usr/bin/env bash
# Build the worker image for linux/arm64, push it to the stack's ECR repository, record its
# tag in SSM (/offload/<Stage>/worker-image-tag, which every deploy of the stack reads) and
# (with --deploy) roll the workers onto it at once.
#
#   infra/deploy/push-worker-image.sh --init [--stage STAGE]
#   infra/deploy/push-worker-image.sh [--stack NAME] [--tag TAG] [--deploy] [--no-build]
#
#   --init        before the first deploy: create the SSM parameter with the value "none"
#                 (the stack then runs no workers, and alarms as soon as a job waits)
#   --stage NAME  the stack's Stage, for --init (default: $OFFLOAD_STAGE or "prod")
#   --stack NAME  CloudFormation stack (default: $OFFLOAD_STACK or "offload")
#   --tag TAG     image tag (default: the current git commit, plus "-dirty" when the
#                 work tree has changes); tags are immutable, so each push needs a new one
#   --deploy      then update the stack, keeping the deployed template and every parameter;
#                 without it the next `sam deploy` rolls the workers onto the tag
#   --no-build    skip building and pushing: roll back (or forward) to a tag already in
#                 the repository, e.g. --tag <previous> --no-build --deploy
#
# Needs: aws CLI with credentials for the stack's account and region (AWS_REGION or the
# profile's), and to build: docker with buildx (arm64 on x86 uses QEMU emulation), git.
set -euo pipefail

stack=${OFFLOAD_STACK:-offload}
stage=${OFFLOAD_STAGE:-prod}
tag=""
deploy=0
build=1
init=0
while [ $# -gt 0 ]; do
  case "$1" in
    --init) init=1; shift ;;
    --stage) stage=${2:?--stage needs a name}; shift 2 ;;
    --stack) stack=${2:?--stack needs a name}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --deploy) deploy=1; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

tools=(aws)
[ "$build" -eq 1 ] && [ "$init" -eq 0 ] && tools+=(docker)
[ -z "$tag" ] && [ "$init" -eq 0 ] && tools+=(git)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

parameter_name() { echo "/offload/$1/worker-image-tag"; }

if [ "$init" -eq 1 ]; then
  name=$(parameter_name "$stage")
  # No --overwrite: an existing tag (a running service) is never reset to "none".
  if aws ssm put-parameter --name "$name" --type String --value none \
      --description "Offload $stage worker image tag (infra/deploy/push-worker-image.sh)" \
      >/dev/null 2>"${TMPDIR:-/tmp}/offload-init.$$"; then
    echo "created $name = none: deploy the stack now (sam deploy --guided, Stage=$stage)"
  elif grep -q ParameterAlreadyExists "${TMPDIR:-/tmp}/offload-init.$$"; then
    echo "$name already exists ($(aws ssm get-parameter --name "$name" \
      --query Parameter.Value --output text)); left as it is"
  else
    cat "${TMPDIR:-/tmp}/offload-init.$$" >&2
    rm -f "${TMPDIR:-/tmp}/offload-init.$$"
    exit 1
  fi
  rm -f "${TMPDIR:-/tmp}/offload-init.$$"
  exit 0
fi

if [ -z "$tag" ]; then
  tag=$(git rev-parse --short=12 HEAD)
  if [ -n "$(git status --porcelain -- pyproject.toml uv.lock shared functions worker infra/local)" ]; then
    tag="$tag-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
fi
if ! [[ "$tag" =~ ^[A-Za-z0-9_.-]{1,128}$ ]] || [ "$tag" = none ]; then
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
stage=$(aws cloudformation describe-stacks --stack-name "$stack" \
  --query "Stacks[0].Parameters[?ParameterKey=='Stage'].ParameterValue" --output text)
name=$(parameter_name "$stage")
# AWS reports an SSM-typed parameter's key as its value: it must be this stage's name.
read_from=$(aws cloudformation describe-stacks --stack-name "$stack" \
  --query "Stacks[0].Parameters[?ParameterKey=='WorkerImageTag'].ParameterValue" --output text)
if [[ "$read_from" == /* ]] && [ "$read_from" != "$name" ]; then
  echo "stack $stack reads its image tag from $read_from, not $name: redeploy it with" >&2
  echo "WorkerImageTag=$name (one parameter per stage)" >&2
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
    --build-arg "PYTHON_VERSION=$(cat infra/python-version)" \
    --tag "$repository:$tag" --provenance=false --push .
else
  aws ecr describe-images --region "$region" --repository-name "${repository#*/}" \
    --image-ids imageTag="$tag" >/dev/null \
    || { echo "no image tagged $tag in $repository" >&2; exit 1; }
fi

aws ssm put-parameter --name "$name" --type String --value "$tag" --overwrite >/dev/null
echo "recorded $name = $tag"

if [ "$deploy" -ne 1 ]; then
  echo
  echo "The next deploy of $stack rolls the workers onto $tag: sam deploy, or now with"
  echo "  $0 --stack $stack --tag $tag --no-build --deploy"
  exit 0
fi

# The deployed template and every parameter as they are: CloudFormation re-reads the
# SSM parameter on each update, so only the image changes.
params=("ParameterKey=WorkerImageTag,ParameterValue=$name")
while read -r key; do
  [ "$key" = WorkerImageTag ] || params+=("ParameterKey=$key,UsePreviousValue=true")
done < <(aws cloudformation describe-stacks --stack-name "$stack" \
  --query 'Stacks[0].Parameters[].ParameterKey' --output text | tr '\t' '\n')

echo "updating $stack onto $tag"
if ! aws cloudformation update-stack --stack-name "$stack" --use-previous-template \
    --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
    --parameters "${params[@]}" >/dev/null 2>"${TMPDIR:-/tmp}/offload-update.$$"; then
  if grep -q "No updates are to be performed" "${TMPDIR:-/tmp}/offload-update.$$"; then
    rm -f "${TMPDIR:-/tmp}/offload-update.$$"
    echo "done: $stack already runs $tag"
    exit 0
  fi
  cat "${TMPDIR:-/tmp}/offload-update.$$" >&2
  rm -f "${TMPDIR:-/tmp}/offload-update.$$"
  exit 1
fi
rm -f "${TMPDIR:-/tmp}/offload-update.$$"
aws cloudformation wait stack-update-complete --stack-name "$stack"
echo "done: the worker service now runs $repository:$tag (the circuit breaker rolls back a"
echo "deployment whose tasks fail to start or stay unhealthy)"
